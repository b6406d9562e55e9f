// The micro-VM specifics: accelerator probe, own kernel, snapshots (fresh identity, corruption), no leftovers.
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { release } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { requireImage } from "../../../src/image/build.js";
import { getBackend } from "../../../src/runtime/backends.js";
import { MicroVmBackend } from "../../../src/sandbox/microvm/backend.js";
import { loadSnapshot } from "../../../src/sandbox/microvm/snapshot.js";
import { qemuVersion } from "../../../src/sandbox/microvm/accel.js";
import { runDir } from "../../../src/paths.js";
import { pidAlive } from "../../../src/util/procfs.js";
import { sandboxFor, tempWorkspace, unavailable, waitFor } from "../../fixtures.js";

describe("microvm backend", async () => {
  const skip = await unavailable("microvm");

  test("the accelerator comes from a real boot, not from /dev/kvm existing", { skip }, async () => {
    const backend = getBackend("microvm") as MicroVmBackend;
    const verdict = await backend.accelerator(await requireImage());
    assert.match(verdict.accel, /^(kvm|tcg)$/);
    assert.ok(verdict.reason.length > 0);
    if (existsSync("/sys/module/kvm_pvm") && !process.env["LUMINAGUARD_ACCEL"]) {
      // This machine's /dev/kvm is kvm-pvm, on which our guest crashes: the probe must notice.
      assert.equal(verdict.accel, "tcg", verdict.reason);
      assert.match(verdict.reason, /does not boot/);
    }
  });

  test("the guest runs its own kernel and knows its own identity", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const uname = await sandbox.commands.run(["uname", "-r"]);
    assert.notEqual(uname.stdout.trim(), release(), "the VM does not share the host kernel");
    assert.equal(sandbox.info["sharesHostKernel"], false);
    const host = await sandbox.commands.run(["hostname"]);
    assert.equal(host.stdout.trim(), sandbox.id);
  });

  test("clones restored from one snapshot get fresh randomness and the right clock", { skip }, async (t) => {
    const a = await sandboxFor(t, "microvm");
    const b = await sandboxFor(t, "microvm");
    assert.equal(a.sandbox.info["start"], "restore", `restored, not cold booted: ${String(a.sandbox.info["restoreFallback"] ?? "")}`);
    assert.equal(b.sandbox.info["start"], "restore");
    const cmd = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'";
    const [ra, rb] = await Promise.all([a.sandbox.commands.run(cmd), b.sandbox.commands.run(cmd)]);
    assert.equal(ra.stdout.length, 32);
    assert.notEqual(ra.stdout, rb.stdout, "two clones of one snapshot must not produce the same random bytes");
    const date = await a.sandbox.commands.run(["date", "+%s"]);
    assert.ok(Math.abs(Number(date.stdout.trim()) - Date.now() / 1000) < 30, `guest clock ${date.stdout.trim()} is close to the host's`);
  });

  test("a clone does not redo the kernel's deferred boot work: its clock source was switched in the template", { skip }, async (t) => {
    // The refined TSC calibration switches tsc-early to tsc about 1.5 s of guest time after boot;
    // a template saved before that made every clone switch it at some point of its first commands.
    const a = await sandboxFor(t, "microvm");
    assert.equal(a.sandbox.info["start"], "restore");
    const r = await a.sandbox.commands.run("cat /proc/uptime /sys/devices/system/clocksource/clocksource0/current_clocksource");
    const [uptime, source] = r.stdout.trim().split("\n");
    assert.notEqual(source, "tsc-early", `the clone started with the early clock source (uptime ${uptime ?? "?"})`);
  });

  test("a corrupt snapshot is detected and rebuilt, never used", { skip }, async (t) => {
    const image = await requireImage();
    const backend = getBackend("microvm") as MicroVmBackend;
    const { accel } = await backend.accelerator(image);
    const params = { image, accel, memoryMiB: 160, vcpus: 1, qemu: (await qemuVersion()) ?? "unknown" };
    const fresh = new MicroVmBackend();
    const first = await sandboxFor(t, "microvm", { memoryMiB: 160 });
    assert.equal(first.sandbox.info["start"], "restore");
    const snap = loadSnapshot(params);
    assert.ok(snap, "the snapshot is on disk");
    writeFileSync(join(snap.dir, "state"), Buffer.from("corrupted"));
    assert.equal(loadSnapshot(params), undefined, "a snapshot whose state changed is refused");
    assert.equal(existsSync(snap.dir), false, "and removed");
    const ws = tempWorkspace();
    t.after(ws.remove);
    const handle = await fresh.spawn({ id: "lg-corrupt-test", workspace: ws.dir, memoryMiB: 160, pidsMax: 64, vcpus: 1 });
    t.after(() => handle.destroy());
    assert.equal(handle.info["start"], "restore", "a new snapshot was made and used");
    assert.ok(loadSnapshot(params), "the rebuilt snapshot is valid");
  });

  test("destroying a VM leaves no process and no run directory", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const pids = sandbox.pids();
    const dir = join(runDir(), `vm-${sandbox.id}`);
    assert.ok(existsSync(dir));
    await sandbox.kill();
    assert.ok(await waitFor(() => pids.every((p) => !pidAlive(p)), 5000));
    assert.equal(existsSync(dir), false);
    assert.ok(!readdirSync(runDir()).includes(`vm-${sandbox.id}`));
  });
});
