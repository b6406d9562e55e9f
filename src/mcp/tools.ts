// The five tools as MCP presents them: descriptions, JSON input/output schemas, annotations, and result shaping.
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { toLuminaGuardError } from "../errors.js";
import { TOOL_NAMES, toolArgSchemas, type ToolName } from "../tools/registry.js";

/** Reads over this size need offset/length: the answer carries the bytes twice (text and structured) and hosts cap messages near 10 MiB. */
export const MCP_READ_MAX_BYTES = 2 * 1024 * 1024;
/** Output kept per stream of execute_command. */
export const MCP_OUTPUT_MAX_BYTES = 512 * 1024;
/** A serialised result over this is refused rather than sent. */
export const MCP_RESULT_MAX_BYTES = 8 * 1024 * 1024;

const count = z.number().int().nonnegative();

/** The structured result of each tool, exactly as `Sandbox.callTool` returns it. */
export const toolResultSchemas = {
  read_file: z.object({
    content: z.string().describe("the bytes read: UTF-8 text, or base64 when `encoding` is base64"),
    encoding: z.enum(["utf8", "base64"]),
    size: count.describe("size of the whole file in bytes"),
    offset: count,
    bytesRead: count,
    eof: z.boolean().describe("true when the read reached the end of the file"),
  }),
  write_file: z.object({ path: z.string(), bytesWritten: count }),
  list_directory: z.object({
    entries: z.array(z.object({ path: z.string(), type: z.enum(["file", "dir", "symlink", "other"]), size: count, mtimeMs: z.number() })),
    truncated: z.boolean(),
    filtered: count.optional().describe("entries withheld because the approval policy denies reading them"),
  }),
  search: z.object({
    matches: z.array(z.object({ path: z.string(), line: count.optional(), text: z.string().optional() })),
    truncated: z.boolean(),
    filesScanned: count,
    filtered: count.optional().describe("matches withheld because the approval policy denies reading their files"),
  }),
  execute_command: z.object({
    exitCode: z.number().int().nullable(),
    signal: z.string().nullable(),
    stdout: z.string(),
    stderr: z.string(),
    stdoutTruncated: z.boolean(),
    stderrTruncated: z.boolean(),
    durationMs: z.number().nonnegative(),
  }),
} as const satisfies Record<ToolName, z.ZodType>;

const PATH = "Workspace path: relative paths resolve in /workspace; nothing outside the workspace is reachable (PATH_ESCAPE).";

const DESCRIPTIONS: Record<ToolName, { title: string; description: string; properties: Record<string, string> }> = {
  read_file: {
    title: "Read file",
    description:
      `Read a file from the sandbox workspace. Text comes back as UTF-8, anything else as base64. Files over ${MCP_READ_MAX_BYTES / 1048576} MiB must be read in parts with offset and length.`,
    properties: { path: PATH, offset: "Byte offset to start reading at (default 0).", length: "Bytes to read at most (default: to the end)." },
  },
  write_file: {
    title: "Write file",
    description: "Create or replace a file in the sandbox workspace. The write is atomic and on disk before the call returns. Up to 8 MiB.",
    properties: {
      path: PATH,
      content: "The new content of the file.",
      encoding: 'How `content` is encoded: "utf8" (default) or "base64" for binary data.',
      createParents: "Create missing parent directories (default false).",
    },
  },
  list_directory: {
    title: "List directory",
    description: "List a directory of the sandbox workspace, depth-first and sorted by name, with each entry's type, size and modification time. Symlinks are not followed.",
    properties: { path: `${PATH} Default: the workspace root.`, depth: "How many levels to descend (1 = this directory only; default 1).", limit: "Most entries to return (default 1000); `truncated` says when more exist." },
  },
  search: {
    title: "Search files",
    description: "Search the sandbox workspace: lines matching a POSIX extended regular expression, files whose name matches a glob, or both (matching lines in matching files). Binary files are skipped.",
    properties: {
      path: `Directory to search in. ${PATH} Default: the workspace root.`,
      pattern: "POSIX extended regular expression matched against each line.",
      glob: 'Shell-style pattern matched against file names, e.g. "*.ts".',
      maxResults: "Most matches to return (default 100).",
    },
  },
  execute_command: {
    title: "Execute command",
    description:
      "Run a command inside the sandbox with /workspace as the working directory and no network. A string runs under `sh -c`; an array runs that argv directly. Returns exit code, stdout and stderr. The whole process tree is killed at the timeout.",
    properties: {
      command: "A shell command line (run with sh -c) or an argv array.",
      cwd: `Working directory. ${PATH}`,
      env: "Extra environment variables.",
      stdin: "Text fed to the command's standard input.",
      timeoutMs: "Kill the command after this many milliseconds (default 60000).",
    },
  },
};

const ANNOTATIONS: Record<ToolName, NonNullable<Tool["annotations"]>> = {
  read_file: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  write_file: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  list_directory: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  search: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  execute_command: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
};

type JsonSchemaObject = { type: "object"; properties?: Record<string, object>; required?: string[]; [k: string]: unknown };

function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): JsonSchemaObject {
  const js = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<string, unknown>;
  delete js["$schema"];
  return { ...js, type: "object" };
}

function withDescriptions(schema: JsonSchemaObject, descriptions: Record<string, string>): JsonSchemaObject {
  const props: Record<string, object> = {};
  for (const [k, v] of Object.entries(schema.properties ?? {})) props[k] = descriptions[k] ? { ...v, description: descriptions[k] } : v;
  return { ...schema, properties: props };
}

/** The tools/list answer, computed once. */
export const MCP_TOOLS: readonly Tool[] = TOOL_NAMES.map((name) => ({
  name,
  title: DESCRIPTIONS[name].title,
  description: DESCRIPTIONS[name].description,
  inputSchema: withDescriptions(jsonSchemaOf(toolArgSchemas[name], "input"), DESCRIPTIONS[name].properties),
  outputSchema: jsonSchemaOf(toolResultSchemas[name], "output"),
  annotations: { title: DESCRIPTIONS[name].title, ...ANNOTATIONS[name] },
}));

/** A successful call: the structured result, plus its text for hosts that only show content blocks. */
export function successResult(name: ToolName, result: Record<string, unknown>): CallToolResult {
  // read_file's text block is the file itself when it is text: what a model wants to see, as server-filesystem does.
  const text = name === "read_file" && result["encoding"] === "utf8" && typeof result["content"] === "string" ? result["content"] : JSON.stringify(result);
  return { content: [{ type: "text", text }], structuredContent: result };
}

/** A tool failure as an `isError` result: the model sees `CODE: message` and can correct itself. */
export function errorResult(err: unknown): CallToolResult {
  const e = toLuminaGuardError(err);
  let text = `${e.code}: ${e.message}`;
  // A timed-out command's partial output is what the model needs to see next.
  for (const stream of ["stdout", "stderr"] as const) {
    const out = e.details[stream];
    if (typeof out === "string" && out !== "") text += `\n${stream} so far:\n${out.slice(-16384)}`;
  }
  return {
    content: [{ type: "text", text }],
    isError: true,
    _meta: { "luminaguard/error": e.toJSON() },
  };
}
