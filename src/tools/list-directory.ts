// list_directory: a workspace directory's entries, depth-first and sorted, without following symlinks.
import { z } from "zod";
import type { GuestChannel } from "../protocol/channel.js";
import { FILE_OP_DEADLINE_MS, WORKSPACE_PATH_TEXT, count, defineTool, requestOptions, workspacePath, type CallOptions, type Valid } from "./tool.js";

const DEFAULT_LIST_DEPTH = 1;
const DEFAULT_LIST_LIMIT = 1000;

export const listDirectoryArgs = z.strictObject({
  path: workspacePath.optional(),
  depth: z.number().int().min(1).max(64).optional(),
  limit: z.number().int().min(1).max(100_000).optional(),
});
export type ListDirectoryArgs = z.infer<typeof listDirectoryArgs>;

const wireResult = z.object({
  entries: z.array(z.object({ path: z.string().max(4096), type: z.enum(["file", "dir", "symlink", "other"]), size: count, mtimeMs: z.number() })),
  truncated: z.boolean(),
});
export type ListDirectoryResult = z.infer<typeof wireResult>;

const result = wireResult.extend({ filtered: count.optional().describe("entries withheld because the approval policy denies reading them") });

export async function listDirectory(channel: GuestChannel, args: Valid<ListDirectoryArgs, "list_directory">, o: CallOptions = {}): Promise<ListDirectoryResult> {
  return await channel.request(
    "list_directory",
    { path: args.path ?? ".", depth: args.depth ?? DEFAULT_LIST_DEPTH, limit: args.limit ?? DEFAULT_LIST_LIMIT },
    requestOptions(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
}

export const listDirectoryTool = defineTool({
  name: "list_directory",
  title: "List directory",
  describe: () =>
    "List a directory of the sandbox workspace, depth-first and sorted by name, with each entry's type, size and modification time. Symlinks are not followed.",
  argDescriptions: {
    path: `${WORKSPACE_PATH_TEXT} Default: the workspace root.`,
    depth: `How many levels to descend (1 = this directory only; default ${DEFAULT_LIST_DEPTH}).`,
    limit: `Most entries to return (default ${DEFAULT_LIST_LIMIT}); \`truncated\` says when more exist.`,
  },
  args: listDirectoryArgs,
  wireResult,
  result,
  readOnly: true,
  idempotent: true,
  risk: "low",
  pathList: "entries",
  call: listDirectory,
});
