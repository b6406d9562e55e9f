// The tool registry: every built-in tool by name, parsing of their arguments (once, at the edge), and their JSON Schemas.
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { SERVED_BY } from "../sandbox/types.js";
import { executeCommandTool } from "./execute-command.js";
import { listDirectoryTool } from "./list-directory.js";
import { readFileTool } from "./read-file.js";
import { searchTool } from "./search.js";
import type { Valid } from "./tool.js";
import { writeFileTool } from "./write-file.js";

/** In the order tools are listed to hosts and models. Adding a tool: its module, and one entry here. */
const ALL = [readFileTool, writeFileTool, listDirectoryTool, searchTool, executeCommandTool] as const;

type Defs = { [D in (typeof ALL)[number] as D["name"]]: D };
export type ToolName = keyof Defs;

export const TOOLS: Readonly<Defs> = Object.fromEntries(ALL.map((d) => [d.name, d])) as unknown as Defs;
export const TOOL_NAMES: readonly ToolName[] = ALL.map((d) => d.name);

export function isToolName(name: string): name is ToolName {
  return Object.hasOwn(TOOLS, name);
}

/** Arguments of tool N as its schema outputs them. */
type ToolArgs<N extends ToolName> = z.output<Defs[N]["args"]>;
/** Arguments of tool N that passed `parseToolArgs`. */
export type ValidArgs<N extends ToolName> = Valid<ToolArgs<N>, N>;
/** The JSON-safe result of tool N. */
export type ToolResult<N extends ToolName> = z.output<Defs[N]["result"]>;
/** One built-in call whose arguments were validated at the edge; inner layers take this and never parse again. */
export type ValidatedCall = { [N in ToolName]: { readonly tool: N; readonly args: ValidArgs<N> } }[ToolName];

export const toolArgSchemas = mapTools((d) => d.args) as { readonly [N in ToolName]: Defs[N]["args"] };
/** Each tool's success answer from the guest agent; protocol/messages.ts adds the control ops. */
export const toolWireResults = mapTools((d) => d.wireResult) as { readonly [N in ToolName]: Defs[N]["wireResult"] };

/** Arguments parsed here, by tool; deep-frozen, so what was checked is what runs. */
const validated = new WeakMap<object, ToolName>();

/**
 * Validates raw arguments against the tool's schema; a bad argument is INVALID_ARGUMENT with every issue named.
 * Arguments this already validated for the same tool come back as they are.
 */
export function parseToolArgs<N extends ToolName>(name: N, raw: unknown): ValidArgs<N> {
  if (isValidArgs(name, raw)) return raw;
  const parsed = (TOOLS[name].args as z.ZodType).safeParse(raw ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "args"}: ${i.message}`);
    throw new LuminaGuardError("INVALID_ARGUMENT", `${name}: ${issues.join("; ")}`, { details: { issues } });
  }
  const args = deepFreeze(parsed.data) as object;
  validated.set(args, name);
  return args as ValidArgs<N>;
}

/** Whether `v` came out of `parseToolArgs(name, …)`. */
export function isValidArgs<N extends ToolName>(name: N, v: unknown): v is ValidArgs<N> {
  return typeof v === "object" && v !== null && validated.get(v) === name;
}

/** A call by name with raw arguments, validated. */
export function validateCall(tool: ToolName, raw: unknown): ValidatedCall {
  return { tool, args: parseToolArgs(tool, raw) } as ValidatedCall;
}

type JsonSchemaObject = { type: "object"; properties?: Record<string, object>; required?: string[]; [k: string]: unknown };

interface JsonSchemaOptions {
  /** Drop `maximum: Number.MAX_SAFE_INTEGER` (zod's bound on every integer), which tells a model nothing. */
  dropSafeIntegerBounds?: boolean;
}

/** The JSON Schema of a zod object schema, as MCP and the model APIs take it (no `$schema`, always `type: object`). */
function jsonSchemaOf(schema: z.ZodType, io: "input" | "output", o: JsonSchemaOptions = {}): JsonSchemaObject {
  const js = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<string, unknown>;
  delete js["$schema"];
  const out = { ...js, type: "object" as const };
  return o.dropSafeIntegerBounds === true ? (dropSafeIntegerBounds(out) as JsonSchemaObject) : out;
}

/** The input schema of a tool, each argument with its description. */
export function toolInputSchema(name: ToolName, o: JsonSchemaOptions = {}): JsonSchemaObject {
  const schema = jsonSchemaOf(TOOLS[name].args, "input", o);
  const descriptions: Record<string, string> = TOOLS[name].argDescriptions;
  const props: Record<string, object> = {};
  for (const [k, v] of Object.entries(schema.properties ?? {})) props[k] = descriptions[k] !== undefined ? { ...v, description: descriptions[k] } : v;
  return { ...schema, properties: props };
}

/** The output schema of a tool: its JSON-safe result. */
/** Where a call ran, stamped on every result by the runtime: inside the micro-VM, or in a namespace jail. */
const servedBySchema = z.enum(SERVED_BY).describe("where the call ran: inside the micro-VM, or in a namespace jail on the host kernel");

/** The JSON Schema of a tool's result as `Sandbox.callTool` returns it: the tool's own result and where it ran. */
export function toolOutputSchema(name: ToolName): JsonSchemaObject {
  return jsonSchemaOf(TOOLS[name].result.extend({ servedBy: servedBySchema }), "output");
}

function dropSafeIntegerBounds(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropSafeIntegerBounds);
  if (typeof v !== "object" || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === "maximum" && x === Number.MAX_SAFE_INTEGER) continue;
    out[k] = dropSafeIntegerBounds(x);
  }
  return out;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

function mapTools<R>(f: (d: (typeof ALL)[number]) => R): Record<ToolName, R> {
  return Object.fromEntries(ALL.map((d) => [d.name, f(d)])) as Record<ToolName, R>;
}
