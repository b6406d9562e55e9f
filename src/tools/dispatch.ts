// Carries one validated tool call to a sandbox's guest agent over the channel the caller picks; each tool's
// host side lives in its module, and the only tool implementation in the guest.
import type { GuestChannel } from "../protocol/channel.js";
import { TOOLS, type ToolResult, type ValidatedCall } from "./registry.js";
import type { CallOptions } from "./tool.js";

export { executeCommand, type CommandResult } from "./execute-command.js";
export { listDirectory, type ListDirectoryResult } from "./list-directory.js";
export { readFile, type ReadFileResult } from "./read-file.js";
export { search, type SearchResult } from "./search.js";
export { writeFile, type WriteFileResult } from "./write-file.js";
export { parseToolArgs } from "./registry.js";
export type { CallOptions } from "./tool.js";

/** The JSON-safe result of any tool, as the CLI, MCP server and plans show it. */
export async function callTool(channel: GuestChannel, call: ValidatedCall, o: CallOptions = {}): Promise<ToolResult<ValidatedCall["tool"]>> {
  // One correlated lookup: `call.args` belongs to `call.tool`, which the union type cannot say to `TOOLS[call.tool]`.
  const run = TOOLS[call.tool].call as (channel: GuestChannel, args: ValidatedCall["args"], o: CallOptions) => Promise<ToolResult<ValidatedCall["tool"]>>;
  return await run(channel, call.args, o);
}
