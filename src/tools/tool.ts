// What one tool module declares, and the pieces the five share: path and base64 schemas, call options, deadlines.
import { z } from "zod";
import type { GuestChannel, RequestOptions } from "../protocol/channel.js";

/** Reads return at most this many bytes unless the caller caps them lower (the MCP server does). */
export const DEFAULT_READ_MAX_BYTES = 8 * 1024 * 1024;
/** Output kept per stream of a command unless the caller caps it lower. */
export const DEFAULT_OUTPUT_MAX_BYTES = 1024 * 1024;
/** The guest has this long to answer a file operation before the host declares it stalled. */
export const FILE_OP_DEADLINE_MS = 60_000;

/** A workspace path argument: relative paths resolve in /workspace; the guest refuses anything outside (PATH_ESCAPE). */
export const workspacePath = z.string().min(1, "path must not be empty").max(4096).refine((p) => !p.includes("\0"), "path must not contain NUL");
export const WORKSPACE_PATH_TEXT = "Workspace path: relative paths resolve in /workspace; nothing outside the workspace is reachable (PATH_ESCAPE).";

export const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
export const base64 = z.string().regex(BASE64_RE, "not base64");
export const count = z.number().int().nonnegative();

/** The caps a caller applies to reads and command output; descriptions quote them. */
interface ToolLimits {
  maxReadBytes: number;
  maxOutputBytes: number;
}

export const DEFAULT_LIMITS: ToolLimits = { maxReadBytes: DEFAULT_READ_MAX_BYTES, maxOutputBytes: DEFAULT_OUTPUT_MAX_BYTES };

export interface CallOptions {
  signal?: AbortSignal;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  maxOutputBytes?: number;
  maxReadBytes?: number;
}

declare const VALID: unique symbol;
/**
 * Arguments of tool `N` that passed its schema once, at the edge. Only `parseToolArgs` (registry.ts)
 * makes them, deep-frozen, so inner layers take this type and never parse again.
 */
export type Valid<T, N extends string> = T & { readonly [VALID]: N };

/** Risk of a tool's call when no policy rule names one; the policy's scale goes up to "critical". */
type ToolRisk = "low" | "medium" | "high";

export interface ToolDefinition<Name extends string, Args extends z.ZodType<Record<string, unknown>>, Wire extends z.ZodType, Result extends z.ZodType<Record<string, unknown>>> {
  readonly name: Name;
  readonly title: string;
  /** What the tool does, for a model or an MCP host; `limits` are the caps the caller will apply. */
  describe(limits: ToolLimits): string;
  /** One sentence per argument (defaults included), shown in the input schema. */
  readonly argDescriptions: { readonly [K in keyof z.input<Args>]-?: string };
  readonly args: Args;
  /** The guest agent's success answer (docs/protocol.md); anything else is a protocol violation. */
  readonly wireResult: Wire;
  /** The JSON-safe result `call` returns, as the CLI, the MCP server and the agent see it. */
  readonly result: Result;
  /** Only reads the workspace: Green, runs without asking. Everything else is Red. */
  readonly readOnly: boolean;
  /** Calling it twice with the same arguments leaves the workspace as calling it once. */
  readonly idempotent: boolean;
  readonly risk: ToolRisk;
  /** Id of its built-in "ask" policy rule when it is not read-only (default "default:<name>"); read-only tools share "default:read-only". */
  readonly defaultRule?: string;
  /** The member of its result listing workspace paths, withheld per entry when the policy denies reading them. */
  readonly pathList?: string;
  /** Sends the call to the guest agent over `channel` and shapes the answer. */
  call(channel: GuestChannel, args: Valid<z.output<Args>, Name>, o: CallOptions): Promise<z.output<Result>>;
}

/** Identity, for inference: a tool module's `export const fooTool = defineTool({...})`. */
export function defineTool<Name extends string, Args extends z.ZodType<Record<string, unknown>>, Wire extends z.ZodType, Result extends z.ZodType<Record<string, unknown>>>(
  def: ToolDefinition<Name, Args, Wire, Result>,
): ToolDefinition<Name, Args, Wire, Result> {
  return def;
}

/** Channel request options with the caller's signal, when it has one. */
export function requestOptions(signal: AbortSignal | undefined, extra: RequestOptions): RequestOptions {
  return signal ? { ...extra, signal } : extra;
}
