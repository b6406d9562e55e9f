// A VMM that dies before it greets (a damaged kernel beside an intact snapshot): the restore fails at
// once with a named error, never hangs (a hung promise lets `exec` drain its event loop and exit 0
// without running the command), and leaves nothing behind.
import assert from "node:assert/strict";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { requireImage } from "../../../src/image/build.js";
import { LuminaGuardError } from "../../../src/errors.js";
import { getBackend } from "../../../src/runtime/backends.js";
import { connectVm, type MicroVmBackend } from "../../../src/sandbox/microvm/backend.js";
import { destroyVm, launchVm } from "../../../src/sandbox/microvm/qemu.js";
import { restoreInto } from "../../../src/sandbox/microvm/snapshot.js";
import { tempWorkspace, unavailable } from "../../fixtures.js";

describe("a VMM that exits before its QMP greeting", async () => {
  const skip = await unavailable("microvm");

  test("restoreInto rejects with SANDBOX_SPAWN_FAILED within seconds and the VM's directory goes", { skip }, async (t) => {
    const image = await requireImage();
    const backend = getBackend("microvm") as MicroVmBackend;
    const { accel } = await backend.accelerator(image);
    const snapshot = await backend.snapshot(image, accel, 256, 1);
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const damaged = join(ws.dir, "..", `lg-damaged-kernel-${process.pid}`);
    writeFileSync(damaged, Buffer.alloc(4096, 0x5a));
    t.after(() => rmSync(damaged, { force: true }));
    const vm = await launchVm({
      id: `lg-early-exit-${process.pid}`,
      accel,
      image: { ...image, kernel: damaged },
      memoryMiB: 256,
      vcpus: 1,
      workspace: ws.dir,
      memoryFile: { path: snapshot.ramPath, share: false },
      incoming: true,
    });
    const started = Date.now();
    const err = await restoreInto(vm, snapshot, 15_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    const ms = Date.now() - started;
    await destroyVm(vm);
    assert.ok(err instanceof LuminaGuardError, `a named error, not ${String(err)}`);
    assert.equal(err.code, "SANDBOX_SPAWN_FAILED");
    assert.ok(ms < 10_000, `failed in ${ms} ms, not at a deadline`);
    assert.equal(existsSync(vm.dir), false, "the VM's run directory is removed");
  });
});

describe("a guest that panics before its first answer", async () => {
  const skip = await unavailable("microvm");

  test("the spawn fails at once, saying QEMU exited and what the guest console said last", { skip, timeout: 60_000 }, async (t) => {
    const image = await requireImage();
    const backend = getBackend("microvm") as MicroVmBackend;
    const { accel } = await backend.accelerator(image);
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    // No init to run: the kernel panics, and panic=-1 with -no-reboot ends QEMU.
    const broken = { ...image, cmdline: image.cmdline.replace(/rdinit=\S+/, "rdinit=/lg-no-such-init") };
    assert.notEqual(broken.cmdline, image.cmdline);
    const vm = await launchVm({ id: `lg-panic-${process.pid}`, accel, image: broken, memoryMiB: 256, vcpus: 1, workspace: ws.dir });
    t.after(() => destroyVm(vm));
    const spec = { id: `lg-panic-${process.pid}`, workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 };
    const started = Date.now();
    const err = await connectVm(vm, spec, accel, image, 50_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    const ms = Date.now() - started;
    assert.ok(err instanceof LuminaGuardError, `a named error, not ${String(err)}`);
    assert.equal(err.code, "SANDBOX_SPAWN_FAILED");
    assert.match(err.message, /QEMU exited \(code \d+\)/, err.message);
    assert.match(err.message, /guest console: .*Kernel panic/, err.message);
    assert.ok(![...err.message].some((c) => (c.codePointAt(0) ?? 0) < 0x20), "the guest's bytes are made inert: no control characters");
    assert.ok(ms < 40_000, `failed in ${ms} ms, not at its deadline`);
    assert.equal(existsSync(vm.dir), false, "the VM's run directory is removed");
  });
});
