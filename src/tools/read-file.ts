// read_file: bytes of one workspace file, from an offset, as text when they are UTF-8 and base64 otherwise.
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import type { GuestChannel } from "../protocol/channel.js";
import { DEFAULT_READ_MAX_BYTES, FILE_OP_DEADLINE_MS, WORKSPACE_PATH_TEXT, base64, count, defineTool, requestOptions, workspacePath, type CallOptions, type Valid } from "./tool.js";

const DEFAULT_READ_OFFSET = 0;

export const readFileArgs = z.strictObject({
  path: workspacePath,
  offset: z.number().int().nonnegative().optional(),
  length: z.number().int().nonnegative().optional(),
});
export type ReadFileArgs = z.infer<typeof readFileArgs>;

const wireResult = z.object({
  content: base64,
  size: count.describe("size of the whole file in bytes"),
  offset: count,
  bytesRead: count,
  eof: z.boolean().describe("true when the read reached the end of the file"),
});

const { content: _wireContent, ...wireFields } = wireResult.shape;
const result = z.object({
  content: z.string().describe("the bytes read: UTF-8 text, or base64 when `encoding` is base64"),
  encoding: z.enum(["utf8", "base64"]),
  ...wireFields,
});

export interface ReadFileResult extends Omit<z.infer<typeof wireResult>, "content"> {
  content: Buffer;
}

export async function readFile(channel: GuestChannel, args: Valid<ReadFileArgs, "read_file">, o: CallOptions = {}): Promise<ReadFileResult> {
  const r = await channel.request(
    "read_file",
    {
      path: args.path,
      offset: args.offset ?? DEFAULT_READ_OFFSET,
      ...(args.length !== undefined ? { length: args.length } : {}),
      maxBytes: o.maxReadBytes ?? DEFAULT_READ_MAX_BYTES,
    },
    requestOptions(o.signal, { deadlineMs: FILE_OP_DEADLINE_MS }),
  );
  const content = Buffer.from(r.content, "base64");
  if (content.length !== r.bytesRead) throw new LuminaGuardError("GUEST_PROTOCOL_VIOLATION", "read_file: content length does not match bytesRead");
  return { ...r, content };
}

export const readFileTool = defineTool({
  name: "read_file",
  title: "Read file",
  describe: (limits) =>
    `Read a file from the sandbox workspace. Text comes back as UTF-8, anything else as base64. Files over ${limits.maxReadBytes / 1048576} MiB must be read in parts with offset and length.`,
  argDescriptions: {
    path: WORKSPACE_PATH_TEXT,
    offset: `Byte offset to start reading at (default ${DEFAULT_READ_OFFSET}).`,
    length: "Bytes to read at most (default: to the end).",
  },
  args: readFileArgs,
  wireResult,
  result,
  readOnly: true,
  idempotent: true,
  risk: "low",
  async call(channel, args, o) {
    const r = await readFile(channel, args, o);
    const text = r.content.toString("utf8");
    const isText = Buffer.from(text, "utf8").equals(r.content) && !text.includes("\0");
    const { content: _content, ...rest } = r;
    return isText ? { ...rest, encoding: "utf8" as const, content: text } : { ...rest, encoding: "base64" as const, content: r.content.toString("base64") };
  },
});
