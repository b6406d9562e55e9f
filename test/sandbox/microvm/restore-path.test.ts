// The restore path: state through QEMU's stdin (no QMP wait, no cont), init carried by the hello,
// hellos that back off, and a VMM that dies while it waits in -incoming or while it loads.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { PassThrough } from "node:stream";
import { describe, test, type TestContext } from "node:test";
import { requireImage } from "../../../src/image/build.js";
import { LuminaGuardError } from "../../../src/errors.js";
import { GuestChannel } from "../../../src/protocol/channel.js";
import { FrameDecoder, encodeFrame } from "../../../src/protocol/messages.js";
import { getBackend } from "../../../src/runtime/backends.js";
import type { MicroVmBackend } from "../../../src/sandbox/microvm/backend.js";
import { destroyVm, launchVm } from "../../../src/sandbox/microvm/qemu.js";
import { restoreInto } from "../../../src/sandbox/microvm/snapshot.js";
import { pidAlive } from "../../../src/util/procfs.js";
import { execOn, tempWorkspace, unavailable } from "../../fixtures.js";

/** A channel whose guest side is ours: counts the hellos and answers the n-th one after `answerAfterMs`. */
function scriptedGuest(answerAfterMs: number): { channel: GuestChannel; hellos: () => number; close: () => void } {
  const toGuest = new PassThrough();
  const fromGuest = new PassThrough();
  const channel = new GuestChannel({ input: fromGuest, output: toGuest }, () => undefined);
  const decoder = new FrameDecoder();
  let hellos = 0;
  const started = Date.now();
  toGuest.on("data", (chunk: Buffer) => {
    for (const body of decoder.push(chunk)) {
      const msg = JSON.parse(body.toString("utf8")) as { id: number; op: string };
      if (msg.op !== "hello") continue;
      hellos++;
      if (Date.now() - started >= answerAfterMs) fromGuest.write(encodeFrame({ id: msg.id, ok: true, result: { v: 1, agent: "scripted", pid: 1 } }));
    }
  });
  return { channel, hellos: () => hellos, close: () => channel.fail(new LuminaGuardError("SANDBOX_CLOSED", "test done")) };
}

describe("handshake pacing", () => {
  /** Hellos sent until a guest that answers from 200 ms on is answered, on a mocked clock moved 1 ms at a time. */
  async function hellosUntilAnswered(t: TestContext, maxIntervalMs?: number): Promise<number> {
    t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 0 });
    try {
      const guest = scriptedGuest(200);
      let answered = false;
      const done = guest.channel.handshake(5000, 2, maxIntervalMs === undefined ? {} : { maxIntervalMs }).then(() => (answered = true));
      for (let ms = 0; ms < 1000 && !answered; ms++) {
        t.mock.timers.tick(1);
        await new Promise((r) => setImmediate(r));
      }
      await done;
      guest.close();
      return guest.hellos();
    } finally {
      t.mock.timers.reset();
    }
  }

  test("a guest that answers after 200 ms gets ~16 hellos with back-off, ~100 at a fixed 2 ms", async (t) => {
    const fixed = await hellosUntilAnswered(t);
    const backoff = await hellosUntilAnswered(t, 16);
    // Sent at 0, 2, 6, 14, then every 16 ms: 16 by 200 ms; the fixed pace sends one every 2 ms.
    assert.ok(backoff >= 14 && backoff <= 18, `back-off sent ${backoff} hellos`);
    assert.ok(fixed >= 95 && fixed <= 105, `fixed pace sent ${fixed} hellos`);
  });
});

describe("microvm restore path", async () => {
  const skip = await unavailable("microvm");

  async function template() {
    const image = await requireImage();
    const backend = getBackend("microvm") as MicroVmBackend;
    const { accel } = await backend.accelerator(image);
    return { image, accel, snapshot: await backend.snapshot(image, accel, 256, 1), backend };
  }

  test("a restore takes one QMP exchange and one hello: no migrate/cont phases, init applied with the hello", { skip }, async (t) => {
    const { backend } = await template();
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const id = `lg-rp-${process.pid}`;
    const handle = await backend.spawn({ id, workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 });
    t.after(() => handle.destroy());
    assert.equal(handle.info["start"], "restore", String(handle.info["restoreFallback"] ?? ""));
    assert.equal(handle.info["initWithHello"], true);
    assert.equal(typeof handle.info["phaseMs.qmp"], "number");
    assert.equal(handle.info["phaseMs.migrate"], undefined, "no migration polling on the restore path");
    assert.equal(handle.info["phaseMs.cont"], undefined, "no cont: the clone starts by itself");
    // What init does reached the guest: its name and clock.
    assert.equal((await execOn(handle, ["hostname"])).stdout.trim(), id);
    const date = await execOn(handle, ["date", "+%s"]);
    assert.ok(Math.abs(Number(date.stdout.trim()) - Date.now() / 1000) < 30, `guest clock ${date.stdout.trim()}`);
  });

  test("a damaged migration stream: QEMU exits by itself within seconds and nothing is left", { skip }, async (t) => {
    const { image, accel, snapshot } = await template();
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const vm = await launchVm({
      id: `lg-rp-bad-${process.pid}`,
      accel,
      image,
      memoryMiB: 256,
      vcpus: 1,
      workspace: ws.dir,
      memoryFile: { path: snapshot.ramPath, share: false },
      incoming: "stdin",
    });
    const damaged = Buffer.from(snapshot.state);
    damaged.fill(0x5a, Math.floor(damaged.length / 3));
    // QMP may answer before QEMU reads the stream, or QEMU may already be gone: either is fine here.
    await restoreInto(vm, { ...snapshot, state: damaged }, 15_000).catch(() => undefined);
    const started = Date.now();
    const exit = await Promise.race([vm.exited, new Promise<"running">((r) => setTimeout(() => r("running"), 10_000))]);
    const pid = vm.child.pid ?? 0;
    await destroyVm(vm);
    assert.notEqual(exit, "running", `QEMU still runs ${Date.now() - started} ms after a damaged load`);
    assert.notEqual(exit === "running" ? 0 : exit.code, 0, "a failed load is a failure exit");
    assert.equal(pidAlive(pid), false);
    assert.equal(existsSync(vm.dir), false, "the VM's run directory is removed");
  });

  test("a VMM killed while it waits in -incoming: the restore fails fast with a named error, nothing is left", { skip }, async (t) => {
    const { image, accel, snapshot } = await template();
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const vm = await launchVm({
      id: `lg-rp-kill-${process.pid}`,
      accel,
      image,
      memoryMiB: 256,
      vcpus: 1,
      workspace: ws.dir,
      memoryFile: { path: snapshot.ramPath, share: false },
      incoming: "stdin",
    });
    const pid = vm.child.pid ?? 0;
    process.kill(-pid, "SIGKILL");
    await vm.exited;
    const started = Date.now();
    const err = await restoreInto(vm, snapshot, 15_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    const ms = Date.now() - started;
    await destroyVm(vm);
    assert.ok(err instanceof LuminaGuardError, `a named error, not ${String(err)}`);
    assert.equal(err.code, "SANDBOX_SPAWN_FAILED");
    assert.ok(ms < 5_000, `failed in ${ms} ms, not at a deadline`);
    assert.equal(existsSync(vm.dir), false);
  });
});
