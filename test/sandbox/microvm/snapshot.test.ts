// How a template's device state is taken: the migration stream QEMU sends to a socket of ours.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { LuminaGuardError } from "../../../src/errors.js";
import { receiveMigration } from "../../../src/sandbox/microvm/snapshot.js";

/** A VM's run directory as receiveMigration sees it (the host's view and QEMU's are the same path here). */
function runDir(t: { after: (fn: () => void) => void }): { dir: string; qemuRunDir: string; identity: { switched: boolean; uid: number; gid: number } } {
  const dir = mkdtempSync(join(tmpdir(), "lg-migrate-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, qemuRunDir: dir, identity: { switched: false, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 } };
}

/** A stream that begins as QEMU's do ("QEVM", version 3), then `n` bytes. */
function stream(n: number): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(0x5145564d, 0);
  head.writeUInt32BE(3, 4);
  return Buffer.concat([head, randomBytes(n)]);
}

const socketPath = (uri: string): string => uri.replace(/^unix:/, "");

describe("receiveMigration", () => {
  test("a stream QEMU calls complete before it was even accepted is received whole, not taken as empty", async (t) => {
    const vm = runDir(t);
    const sent = stream(150_000);
    // QEMU's "completed" comes once the stream is in the socket: here, before the event loop has run the accept.
    const got = await receiveMigration(vm, async (uri) => {
      connect(socketPath(uri)).end(sent);
    });
    assert.equal(got.length, sent.length);
    assert.ok(got.equals(sent), "byte for byte");
    assert.equal(existsSync(join(vm.dir, "migrate.sock")), false, "the socket is removed");
  });

  test("an empty or foreign stream is refused as not a QEMU migration stream", async (t) => {
    const vm = runDir(t);
    for (const sent of [Buffer.alloc(0), Buffer.from("GET / HTTP/1.1\r\n\r\n")]) {
      await assert.rejects(
        receiveMigration(vm, async (uri) => {
          const c = connect(socketPath(uri));
          await new Promise<void>((r) => c.end(sent, () => r()));
        }),
        (err: unknown) => {
          assert.ok(err instanceof LuminaGuardError);
          assert.equal(err.code, "SANDBOX_SPAWN_FAILED");
          assert.match(err.message, new RegExp(`not a QEMU migration stream \\(${sent.length} bytes\\)`));
          return true;
        },
      );
    }
  });

  test("a second connection to the socket is dropped, never mixed into the stream", async (t) => {
    const vm = runDir(t);
    const sent = stream(20_000);
    const open: ReturnType<typeof connect>[] = [];
    t.after(() => open.forEach((s) => s.destroy()));
    const got = await receiveMigration(vm, async (uri) => {
      const first = connect(socketPath(uri));
      open.push(first);
      await new Promise<void>((r) => first.once("connect", () => r()));
      // The first one is accepted once the event loop runs; this one comes after it.
      await new Promise((r) => setTimeout(r, 50));
      const second = connect(socketPath(uri));
      open.push(second);
      second.on("error", () => undefined);
      second.write(Buffer.alloc(4096, 0x41));
      // Time for its bytes to be read, were it accepted, before the first stream is sent.
      await new Promise((r) => setTimeout(r, 100));
      first.end(sent);
    });
    assert.ok(got.equals(sent), `the first stream alone (${got.length} bytes received, ${sent.length} sent)`);
  });

  test("a stream that never ends fails at its deadline, not never", async (t) => {
    const vm = runDir(t);
    const c: { s?: ReturnType<typeof connect> } = {};
    t.after(() => c.s?.destroy());
    await assert.rejects(
      receiveMigration(
        vm,
        async (uri) => {
          c.s = connect(socketPath(uri));
          c.s.write(stream(10));
        },
        300,
      ),
      /did not end within 300 ms/,
    );
  });
});
