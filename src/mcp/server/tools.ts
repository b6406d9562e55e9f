// The built-in tools as MCP presents them (tools/list, from the registry), and their results as MCP carries them.
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { toLuminaGuardError } from "../../errors.js";
import { TOOL_NAMES, TOOLS, toolInputSchema, toolOutputSchema, type ToolName } from "../../tools/registry.js";

/** Reads over this size need offset/length: the answer carries the bytes twice (text and structured) and hosts cap messages near 10 MiB. */
export const MCP_READ_MAX_BYTES = 2 * 1024 * 1024;
/** Output kept per stream of execute_command. */
export const MCP_OUTPUT_MAX_BYTES = 512 * 1024;
/** A serialised result over this is refused rather than sent. */
export const MCP_RESULT_MAX_BYTES = 8 * 1024 * 1024;

/** The tools/list answer, computed once from the registry. */
export const MCP_TOOLS: readonly Tool[] = TOOL_NAMES.map((name) => {
  const t = TOOLS[name];
  return {
    name,
    title: t.title,
    description: t.describe({ maxReadBytes: MCP_READ_MAX_BYTES, maxOutputBytes: MCP_OUTPUT_MAX_BYTES }),
    inputSchema: toolInputSchema(name),
    outputSchema: toolOutputSchema(name),
    // The sandbox has no network: no built-in tool reaches an open world.
    annotations: { title: t.title, readOnlyHint: t.readOnly, destructiveHint: !t.readOnly, idempotentHint: t.idempotent, openWorldHint: false },
  };
});

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
