// write_file: create or replace one workspace file, atomically and durably, from UTF-8 text or base64.
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import type { GuestChannel } from "../protocol/channel.js";
import { BASE64_RE, FILE_OP_DEADLINE_MS, WORKSPACE_PATH_TEXT, count, defineTool, requestOptions, workspacePath, type CallOptions, type Valid } from "./tool.js";

const MAX_WRITE_BYTES = 8 * 1024 * 1024;

export const writeFileArgs = z
  .strictObject({
    path: workspacePath,
    content: z.string(),
    encoding: z.enum(["utf8", "base64"]).optional(),
    createParents: z.boolean().optional(),
  })
  .refine((a) => a.encoding !== "base64" || BASE64_RE.test(a.content), {
    message: "content is not valid base64",
    path: ["content"],
  });
export type WriteFileArgs = z.infer<typeof writeFileArgs>;

const wireResult = z.object({ path: z.string().max(4096), bytesWritten: count });
export type WriteFileResult = z.infer<typeof wireResult>;

/** The bytes a write_file call puts in the file. */
export function writeBytes(args: Pick<WriteFileArgs, "content" | "encoding">): Buffer {
  return args.encoding === "base64" ? Buffer.from(args.content, "base64") : Buffer.from(args.content, "utf8");
}

export async function writeFile(channel: GuestChannel, args: Valid<WriteFileArgs, "write_file">, o: CallOptions = {}): Promise<WriteFileResult> {
  const bytes = writeBytes(args);
  if (bytes.length > MAX_WRITE_BYTES) {
    throw new LuminaGuardError("FILE_TOO_LARGE", `write_file: ${bytes.length} bytes exceeds the ${MAX_WRITE_BYTES}-byte limit`);
  }
  return await channel.request(
    "write_file",
    { path: args.path, content: bytes.toString("base64"), createParents: args.createParents ?? false },
    requestOptions(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
}

export const writeFileTool = defineTool({
  name: "write_file",
  title: "Write file",
  describe: () =>
    `Create or replace a file in the sandbox workspace. The write is atomic and on disk before the call returns. Up to ${MAX_WRITE_BYTES / 1048576} MiB.`,
  argDescriptions: {
    path: WORKSPACE_PATH_TEXT,
    content: "The new content of the file.",
    encoding: 'How `content` is encoded: "utf8" (default) or "base64" for binary data.',
    createParents: "Create missing parent directories (default false).",
  },
  args: writeFileArgs,
  wireResult,
  result: wireResult,
  readOnly: false,
  idempotent: true,
  risk: "medium",
  defaultRule: "default:write",
  call: writeFile,
});
