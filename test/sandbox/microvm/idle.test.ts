// Idle micro-VMs are paused (QMP stop) and resumed for the next guest request: a paused VM costs no
// CPU, resumes for a command with its clock set, serves file tools without running, and a VM killed
// while paused is noticed. Real VMs.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runDir } from "../../../src/paths.js";
import { idlerOf } from "../../../src/sandbox/microvm/idle.js";
import type { SandboxApi } from "../../../src/runtime/sandbox.js";
import type { SandboxHandle } from "../../../src/sandbox/types.js";
import { rejectsWith, sandboxFor, unavailable, waitFor } from "../../fixtures.js";

const handleOf = (s: SandboxApi): SandboxHandle => (s as unknown as { handle: SandboxHandle }).handle;

/** The QEMU process of a sandbox (the pids are process-group leaders: jailer/setpriv exec into QEMU). */
function qemuPid(s: SandboxApi): number {
  for (const pid of s.pids()) {
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    if (comm.startsWith("qemu")) return pid;
  }
  throw new Error(`no QEMU among ${s.pids().join(",")}`);
}

/** CPU ticks (user+system) of a process so far. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

describe("microvm paused while idle", async () => {
  const skip = await unavailable("microvm");

  test("an idle VM is paused and costs no CPU; a command resumes it with its clock within 2 s of the host", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const idler = idlerOf(handleOf(sandbox));
    assert.ok(idler, "the VM has an idler");
    assert.ok(await waitFor(() => idler.isPaused, 5000), "paused after its grace period");
    const pid = qemuPid(sandbox);
    const before = cpuTicks(pid);
    // Long enough for a stopped clock to be far off (the guest's clock stands still while paused).
    await new Promise((r) => setTimeout(r, 6000));
    const used = cpuTicks(pid) - before;
    // Paused, nothing but noise. (Running idle, a tickless guest takes ~0 too, and a command's background
    // processes end with it: pausing is the backstop.)
    assert.ok(used <= 5, `a paused VM used ${used} ticks in 6 s`);
    const syncs = idler.stats.clockSyncs;
    const r = await sandbox.commands.run(["date", "+%s"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const skew = Number(r.stdout.trim()) - Date.now() / 1000;
    assert.ok(Math.abs(skew) < 2, `guest clock is ${skew.toFixed(2)} s off the host's after a 6 s pause`);
    assert.equal(idler.stats.clockSyncs, syncs + 1);
    assert.ok(idler.stats.resumes >= 1);
    // And it pauses again once the command is answered.
    assert.ok(await waitFor(() => idler.isPaused, 5000), "paused again after the command");
  });

  test("file tools work on a paused VM without resuming it (they run beside it)", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const idler = idlerOf(handleOf(sandbox));
    assert.ok(idler);
    assert.ok(await waitFor(() => idler.isPaused, 5000));
    const resumes = idler.stats.resumes;
    const w = await sandbox.files.write("p.txt", "written while paused\n");
    assert.equal(w.servedBy, "jail");
    assert.equal(await sandbox.files.readText("p.txt"), "written while paused\n");
    assert.deepEqual((await sandbox.files.list(".")).entries.map((e) => e.path), ["p.txt"]);
    assert.equal(idler.stats.resumes, resumes, "no resume for a file tool");
    assert.ok(idler.isPaused);
    // The guest sees the file at its next command.
    const r = await sandbox.commands.run(["cat", "/workspace/p.txt"]);
    assert.equal(r.stdout, "written while paused\n");
  });

  test("back-to-back commands and concurrent ones on a pausing VM all succeed", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const idler = idlerOf(handleOf(sandbox));
    assert.ok(idler);
    for (let i = 0; i < 10; i++) {
      const r = await sandbox.commands.run(["echo", String(i)]);
      assert.equal(r.stdout, `${i}\n`);
      // Vary the gap around the grace period so commands land on running, pausing and paused VMs.
      await new Promise((r) => setTimeout(r, (i * 13) % 60));
    }
    const all = await Promise.all(Array.from({ length: 8 }, (_, i) => sandbox.commands.run(["echo", `c${i}`])));
    assert.deepEqual(all.map((r) => r.stdout), Array.from({ length: 8 }, (_, i) => `c${i}\n`));
    assert.ok(idler.stats.pauses >= 1 && idler.stats.resumes >= 1, JSON.stringify(idler.stats));
  });

  test("a VM killed while paused is noticed: the next command is GUEST_CHANNEL_LOST at once, nothing is left", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const idler = idlerOf(handleOf(sandbox));
    assert.ok(idler);
    assert.ok(await waitFor(() => idler.isPaused, 5000));
    const pid = qemuPid(sandbox);
    const vmDir = join(runDir(), `vm-${handleOf(sandbox).id}`);
    assert.ok(existsSync(vmDir), vmDir);
    process.kill(pid, "SIGKILL");
    const started = Date.now();
    await rejectsWith(sandbox.commands.run(["true"]), "GUEST_CHANNEL_LOST");
    assert.ok(Date.now() - started < 5000, `noticed after ${Date.now() - started} ms`);
    await sandbox.kill();
    assert.ok(!existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z"), "QEMU is gone");
    assert.deepEqual(sandbox.pids(), []);
    assert.ok(!existsSync(vmDir), `${vmDir} is left`);
  });

  test("a cancelled command on a VM is cancelled in the guest, and the VM pauses afterwards", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const idler = idlerOf(handleOf(sandbox));
    assert.ok(idler);
    const ac = new AbortController();
    const p = sandbox.commands.run(["sleep", "30"], { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(idler.isPaused, false);
    ac.abort();
    await rejectsWith(p, "CANCELLED");
    assert.ok(await waitFor(() => idler.isPaused, 5000), "paused after the cancel");
    const r = await sandbox.commands.run(["echo", "after"]);
    assert.equal(r.stdout, "after\n");
  });
});
