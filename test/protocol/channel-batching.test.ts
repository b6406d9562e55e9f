// Guest requests made in one tick leave in one write (pipelined MCP calls wake the agent once), and every one is answered.
import assert from "node:assert/strict";
import { PassThrough, Writable } from "node:stream";
import { test } from "node:test";
import { GuestChannel } from "../../src/protocol/channel.js";
import { FrameDecoder, encodeFrame } from "../../src/protocol/messages.js";
import { LuminaGuardError } from "../../src/errors.js";

/** The host→guest byte stream, recording each write the channel's stream hands to the OS side. */
class Recording extends Writable {
  readonly writes: Buffer[][] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writes.push([chunk]);
    cb();
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.writes.push(chunks.map((c) => c.chunk));
    cb();
  }
}

test("eight requests made in one tick reach the guest in one writev, in order, and all are answered; a later one goes on its own", async () => {
  const input = new PassThrough();
  const output = new Recording();
  const fatal: LuminaGuardError[] = [];
  const channel = new GuestChannel({ input, output }, (e) => fatal.push(e));
  const calls = Array.from({ length: 8 }, (_, i) => channel.request("read_file", { path: `f${i}` }, { deadlineMs: 10_000 }));
  assert.equal(output.writes.length, 0, "nothing leaves before the tick ends");
  await new Promise((r) => setImmediate(r));
  assert.equal(output.writes.length, 1, "one write for the lot");
  const decoder = new FrameDecoder();
  const sent = decoder.push(Buffer.concat(output.writes[0] ?? [])).map((f) => JSON.parse(f.toString("utf8")) as { id: number; op: string; args: { path: string } });
  assert.deepEqual(sent.map((m) => m.args.path), Array.from({ length: 8 }, (_, i) => `f${i}`));
  // The guest answers each (here: NOT_FOUND) in one burst.
  input.write(Buffer.concat(sent.map((m) => encodeFrame({ id: m.id, ok: false, error: { code: "NOT_FOUND", message: `${m.args.path}: no such file` } }))));
  const results = await Promise.allSettled(calls);
  assert.deepEqual(
    results.map((r) => (r.status === "rejected" && r.reason instanceof LuminaGuardError ? r.reason.code : r.status)),
    Array.from({ length: 8 }, () => "NOT_FOUND"),
  );
  const late = channel.request("read_file", { path: "late" }, { deadlineMs: 10_000 });
  await new Promise((r) => setImmediate(r));
  assert.equal(output.writes.length, 2);
  const [again] = decoder.push(Buffer.concat(output.writes[1] ?? [])).map((f) => JSON.parse(f.toString("utf8")) as { id: number });
  input.write(encodeFrame({ id: again?.id, ok: false, error: { code: "NOT_FOUND", message: "late" } }));
  await assert.rejects(late, (e: unknown) => e instanceof LuminaGuardError && e.code === "NOT_FOUND");
  assert.deepEqual(fatal, []);
  channel.fail(new LuminaGuardError("CANCELLED", "test over"));
});
