// The one argument contract for the five tools, shared by the SDK, CLI, MCP server, plans and HTTP API.
import { z } from "zod";

const workspacePath = z.string().min(1, "path must not be empty").max(4096).refine((p) => !p.includes("\0"), "path must not contain NUL");

export const DEFAULT_READ_MAX_BYTES = 8 * 1024 * 1024;
export const DEFAULT_OUTPUT_MAX_BYTES = 1024 * 1024;
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
export const MAX_WRITE_BYTES = 8 * 1024 * 1024;

export const readFileArgs = z.strictObject({
  path: workspacePath,
  offset: z.number().int().nonnegative().optional(),
  length: z.number().int().nonnegative().optional(),
});

export const writeFileArgs = z
  .strictObject({
    path: workspacePath,
    content: z.string(),
    encoding: z.enum(["utf8", "base64"]).optional(),
    createParents: z.boolean().optional(),
  })
  .refine((a) => a.encoding !== "base64" || /^[A-Za-z0-9+/]*={0,2}$/.test(a.content), {
    message: "content is not valid base64",
    path: ["content"],
  });

export const listDirectoryArgs = z.strictObject({
  path: workspacePath.optional(),
  depth: z.number().int().min(1).max(64).optional(),
  limit: z.number().int().min(1).max(100_000).optional(),
});

export const searchArgs = z
  .strictObject({
    path: workspacePath.optional(),
    pattern: z.string().min(1).max(4096).optional(),
    glob: z.string().min(1).max(1024).optional(),
    maxResults: z.number().int().min(1).max(10_000).optional(),
  })
  .refine((a) => a.pattern !== undefined || a.glob !== undefined, { message: "search needs a pattern, a glob or both" });

export const executeCommandArgs = z.strictObject({
  command: z.union([
    z.string().min(1, "command must not be empty"),
    z.array(z.string().refine((s) => !s.includes("\0"), "argv must not contain NUL")).min(1, "argv must not be empty"),
  ]),
  cwd: workspacePath.optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "invalid environment variable name"), z.string()).optional(),
  stdin: z.string().optional(),
  timeoutMs: z.number().int().min(1).max(24 * 3600 * 1000).optional(),
});

export type ReadFileArgs = z.infer<typeof readFileArgs>;
export type WriteFileArgs = z.infer<typeof writeFileArgs>;
export type ListDirectoryArgs = z.infer<typeof listDirectoryArgs>;
export type SearchArgs = z.infer<typeof searchArgs>;
export type ExecuteCommandArgs = z.infer<typeof executeCommandArgs>;

export const toolArgSchemas = {
  read_file: readFileArgs,
  write_file: writeFileArgs,
  list_directory: listDirectoryArgs,
  search: searchArgs,
  execute_command: executeCommandArgs,
} as const;

export type ToolName = keyof typeof toolArgSchemas;
export const TOOL_NAMES = Object.keys(toolArgSchemas) as ToolName[];

export function isToolName(name: string): name is ToolName {
  return Object.hasOwn(toolArgSchemas, name);
}
