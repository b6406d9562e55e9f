// Host side of the guest agent protocol (docs/protocol.md): framing and zod schemas for every guest message.
import { z } from "zod";
import { toolWireResults } from "../tools/registry.js";
import { base64 as b64, count } from "../tools/tool.js";

export const PROTOCOL_VERSION = 1;
const MAX_FRAME_BYTES = 16 * 1024 * 1024;

const u32 = z.number().int().min(0).max(0xffffffff);

const guestErrorSchema = z.object({
  code: z.string().max(64),
  message: z.string().max(8192),
  errno: z.string().max(32).optional(),
});

export const guestMessageSchema = z.union([
  z.object({ id: u32, ok: z.literal(true), result: z.record(z.string(), z.unknown()) }),
  z.object({ id: u32, ok: z.literal(false), error: guestErrorSchema }),
  z.object({ id: u32, event: z.enum(["stdout", "stderr"]), data: b64 }),
]);

const positiveInt32 = z.number().int().min(1).max(0x7fffffff);

/**
 * The arguments of `init` (docs/protocol.md), for the host to check what it sends; the agent
 * enforces the same bounds. commandUid/commandGid: who commands run as in the VM (default
 * 1000/1000), which must be the guest owner of the workspace's files for commands to change them.
 */
export const initArgsSchema = z.strictObject({
  seed: b64,
  timeMs: z.number().nonnegative(),
  id: z.string().min(1).max(64),
  /**
   * `lazy`: mount before the first op that uses the workspace in the VM, not during init. `subdir`:
   * the workspace is this directory of the share's root (one path component), not the root itself.
   */
  mount: z
    .strictObject({
      tag: z.string().min(1).max(255),
      lazy: z.boolean().optional(),
      subdir: z
        .string()
        .min(1)
        .max(255)
        .refine((d) => !d.includes("/") && !d.includes("\0") && d !== "." && d !== "..", "one path component")
        .optional(),
    })
    .optional(),
  diskMiB: positiveInt32.optional(),
  commandUid: positiveInt32.optional(),
  commandGid: positiveInt32.optional(),
});
export type InitArgs = z.infer<typeof initArgsSchema>;

/** What each op's success result must look like (the tools' answers are in their modules); anything else is a protocol violation. */
export const resultSchemas = {
  // `init: true`: the hello carried init's arguments (args.init) and the agent applied them.
  hello: z.object({ v: z.literal(PROTOCOL_VERSION), agent: z.string().max(128), pid: count, init: z.literal(true).optional() }),
  init: z.object({}),
  // Only a VM's init with no workspace (a spare warming up, spares.ts): mounts the share aside, read-only, and unmounts it.
  warmup: z.object({}),
  ...toolWireResults,
  cancel: z.object({ found: z.boolean() }),
  shutdown: z.object({}),
} as const;

export type GuestOp = keyof typeof resultSchemas;
export type GuestResult<Op extends GuestOp> = z.infer<(typeof resultSchemas)[Op]>;

export function encodeFrame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), "utf8");
  if (body.length > MAX_FRAME_BYTES) throw new RangeError(`frame of ${body.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/**
 * Incremental frame decoder. Keeps a list of chunks rather than concatenating on every read, so a
 * large frame arriving in small pieces costs one copy, not a quadratic number.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes: number = MAX_FRAME_BYTES) {}

  /** Returns the complete frame bodies in `chunk`; throws RangeError on an oversized length header. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Buffer[] = [];
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const length = head.readUInt32BE(0);
      if (length > this.maxFrameBytes) throw new RangeError(`guest frame of ${length} bytes exceeds ${this.maxFrameBytes}`);
      if (this.buffered < 4 + length) break;
      const all = this.take(4 + length);
      frames.push(all.subarray(4));
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0] !== undefined && this.chunks[0].length >= n) return this.chunks[0];
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}
