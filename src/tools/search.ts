// search: lines matching a regular expression, files matching a name glob, or both, under a workspace directory.
import { z } from "zod";
import type { GuestChannel } from "../protocol/channel.js";
import { FILE_OP_DEADLINE_MS, WORKSPACE_PATH_TEXT, count, defineTool, requestOptions, workspacePath, type CallOptions, type Valid } from "./tool.js";

const DEFAULT_SEARCH_MAX_RESULTS = 100;

export const searchArgs = z
  .strictObject({
    path: workspacePath.optional(),
    pattern: z.string().min(1).max(4096).optional(),
    glob: z.string().min(1).max(1024).optional(),
    maxResults: z.number().int().min(1).max(10_000).optional(),
  })
  .refine((a) => a.pattern !== undefined || a.glob !== undefined, { message: "search needs a pattern, a glob or both" });
export type SearchArgs = z.infer<typeof searchArgs>;

const wireResult = z.object({
  matches: z.array(z.object({ path: z.string().max(4096), line: count.optional(), text: z.string().max(4096).optional() })),
  truncated: z.boolean(),
  filesScanned: count,
});
export type SearchResult = z.infer<typeof wireResult>;

const result = wireResult.extend({ filtered: count.optional().describe("matches withheld because the approval policy denies reading their files") });

export async function search(channel: GuestChannel, args: Valid<SearchArgs, "search">, o: CallOptions = {}): Promise<SearchResult> {
  return await channel.request(
    "search",
    {
      path: args.path ?? ".",
      ...(args.pattern !== undefined ? { pattern: args.pattern } : {}),
      ...(args.glob !== undefined ? { glob: args.glob } : {}),
      maxResults: args.maxResults ?? DEFAULT_SEARCH_MAX_RESULTS,
    },
    requestOptions(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
}

export const searchTool = defineTool({
  name: "search",
  title: "Search files",
  describe: () =>
    "Search the sandbox workspace: lines matching a POSIX extended regular expression, files whose name matches a glob, or both (matching lines in matching files). Binary files are skipped.",
  argDescriptions: {
    path: `Directory to search in. ${WORKSPACE_PATH_TEXT} Default: the workspace root.`,
    pattern: "POSIX extended regular expression matched against each line.",
    glob: 'Shell-style pattern matched against file names, e.g. "*.ts".',
    maxResults: `Most matches to return (default ${DEFAULT_SEARCH_MAX_RESULTS}).`,
  },
  args: searchArgs,
  wireResult,
  result,
  readOnly: true,
  idempotent: true,
  risk: "low",
  pathList: "matches",
  call: search,
});
