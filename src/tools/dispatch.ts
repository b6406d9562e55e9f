// Carries one validated tool call to a sandbox's guest agent and shapes the answer; the only tool implementation lives in the guest.
import { z } from "zod";
import { LuminaGuardError, ToolTimeoutError } from "../errors.js";
import type { GuestChannel } from "../guest/channel.js";
import type { GuestResult } from "../guest/protocol.js";
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_OUTPUT_MAX_BYTES,
  DEFAULT_READ_MAX_BYTES,
  MAX_WRITE_BYTES,
  toolArgSchemas,
  type ExecuteCommandArgs,
  type ListDirectoryArgs,
  type ReadFileArgs,
  type SearchArgs,
  type ToolName,
  type WriteFileArgs,
} from "./schemas.js";

/** Slack on top of a command's own timeout before the host declares the guest stalled. */
const HOST_DEADLINE_SLACK_MS = 15_000;
const FILE_OP_DEADLINE_MS = 60_000;

export interface CallOptions {
  signal?: AbortSignal;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  maxOutputBytes?: number;
  maxReadBytes?: number;
}

export interface ReadFileResult {
  content: Buffer;
  size: number;
  offset: number;
  bytesRead: number;
  eof: boolean;
}

export interface CommandResult {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  durationMs: number;
}

export type WriteFileResult = GuestResult<"write_file">;
export type ListDirectoryResult = GuestResult<"list_directory">;
export type SearchResult = GuestResult<"search">;

function opt<T extends object>(signal: AbortSignal | undefined, extra: T): T & { signal?: AbortSignal } {
  return signal ? { ...extra, signal } : (extra as T & { signal?: AbortSignal });
}

export async function readFile(channel: GuestChannel, args: ReadFileArgs, o: CallOptions = {}): Promise<ReadFileResult> {
  const r = await channel.request(
    "read_file",
    { path: args.path, offset: args.offset ?? 0, ...(args.length !== undefined ? { length: args.length } : {}), maxBytes: o.maxReadBytes ?? DEFAULT_READ_MAX_BYTES },
    opt(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
  const content = Buffer.from(r.content, "base64");
  if (content.length !== r.bytesRead) throw new LuminaGuardError("GUEST_PROTOCOL_VIOLATION", "read_file: content length does not match bytesRead");
  return { ...r, content };
}

export async function writeFile(channel: GuestChannel, args: WriteFileArgs, o: CallOptions = {}): Promise<WriteFileResult> {
  const bytes = args.encoding === "base64" ? Buffer.from(args.content, "base64") : Buffer.from(args.content, "utf8");
  if (bytes.length > MAX_WRITE_BYTES) {
    throw new LuminaGuardError("FILE_TOO_LARGE", `write_file: ${bytes.length} bytes exceeds the ${MAX_WRITE_BYTES}-byte limit`);
  }
  return await channel.request(
    "write_file",
    { path: args.path, content: bytes.toString("base64"), createParents: args.createParents ?? false },
    opt(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
}

export async function listDirectory(channel: GuestChannel, args: ListDirectoryArgs, o: CallOptions = {}): Promise<ListDirectoryResult> {
  return await channel.request(
    "list_directory",
    { path: args.path ?? ".", depth: args.depth ?? 1, limit: args.limit ?? 1000 },
    opt(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
}

export async function search(channel: GuestChannel, args: SearchArgs, o: CallOptions = {}): Promise<SearchResult> {
  return await channel.request(
    "search",
    {
      path: args.path ?? ".",
      ...(args.pattern !== undefined ? { pattern: args.pattern } : {}),
      ...(args.glob !== undefined ? { glob: args.glob } : {}),
      maxResults: args.maxResults ?? 100,
    },
    opt(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
}

export async function executeCommand(channel: GuestChannel, args: ExecuteCommandArgs, o: CallOptions = {}): Promise<CommandResult> {
  const argv = typeof args.command === "string" ? ["/bin/sh", "-c", args.command] : args.command;
  const timeoutMs = args.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const maxOutputBytes = o.maxOutputBytes ?? DEFAULT_OUTPUT_MAX_BYTES;
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  try {
    const r = await channel.request(
      "execute_command",
      {
        argv,
        ...(args.cwd !== undefined ? { cwd: args.cwd } : {}),
        ...(args.env !== undefined ? { env: args.env } : {}),
        ...(args.stdin !== undefined ? { stdin: Buffer.from(args.stdin, "utf8").toString("base64") } : {}),
        timeoutMs,
        maxOutputBytes,
      },
      opt(o.signal, {
        deadlineMs: timeoutMs + HOST_DEADLINE_SLACK_MS,
        maxStreamBytes: maxOutputBytes,
        onEvent: (stream: "stdout" | "stderr", data: Buffer) => {
          (stream === "stdout" ? out : err).push(data);
          (stream === "stdout" ? o.onStdout : o.onStderr)?.(data);
        },
      }),
    );
    return { ...r, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
  } catch (e) {
    if (e instanceof ToolTimeoutError) {
      throw new ToolTimeoutError(`command timed out after ${timeoutMs} ms; its process tree was killed`, {
        details: { timeoutMs, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") },
      });
    }
    throw e;
  }
}

/** Validates raw arguments against the tool's schema; a bad argument is INVALID_ARGUMENT with every issue named. */
export function parseToolArgs<T extends ToolName>(name: T, raw: unknown): z.infer<(typeof toolArgSchemas)[T]> {
  const parsed = toolArgSchemas[name].safeParse(raw ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "args"}: ${i.message}`);
    throw new LuminaGuardError("INVALID_ARGUMENT", `${name}: ${issues.join("; ")}`, { details: { issues } });
  }
  return parsed.data as z.infer<(typeof toolArgSchemas)[T]>;
}

/** JSON-safe result of any tool, as the CLI, MCP server and plans show it. */
export async function callTool(channel: GuestChannel, name: ToolName, raw: unknown, o: CallOptions = {}): Promise<Record<string, unknown>> {
  switch (name) {
    case "read_file": {
      const r = await readFile(channel, parseToolArgs("read_file", raw), o);
      const text = r.content.toString("utf8");
      const isText = Buffer.from(text, "utf8").equals(r.content) && !text.includes("\0");
      const { content: _content, ...rest } = r;
      return isText ? { ...rest, encoding: "utf8", content: text } : { ...rest, encoding: "base64", content: r.content.toString("base64") };
    }
    case "write_file":
      return await writeFile(channel, parseToolArgs("write_file", raw), o);
    case "list_directory":
      return await listDirectory(channel, parseToolArgs("list_directory", raw), o);
    case "search":
      return await search(channel, parseToolArgs("search", raw), o);
    case "execute_command":
      return { ...(await executeCommand(channel, parseToolArgs("execute_command", raw), o)) };
  }
}
