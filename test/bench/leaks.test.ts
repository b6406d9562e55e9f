// The benchmarks' leak check judges its own run: another process's sandbox, made and alive during the
// run, is no leak of it; a sandbox this run left behind (processes, cgroup, workspace) still is.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { endLeakCheck, foreignSince, leakSnapshot, newLeaks } from "../../src/bench/leaks.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { descendants, pidAlive } from "../../src/util/procfs.js";
import { killAll, unavailable, waitFor } from "../fixtures.js";

const SANDBOX_MODULE = fileURLToPath(new URL("../../src/runtime/sandbox.js", import.meta.url));

/**
 * A sandbox in another process outside this one's tree (as a daemon or a second benchmark would hold):
 * its launcher exits at once. It writes what it made to `<dir>/ready` and ends when `<dir>/stop` appears.
 */
function outsider(dir: string): string {
  const code = `
import { existsSync, writeFileSync } from "node:fs";
import { Sandbox } from ${JSON.stringify(SANDBOX_MODULE)};
const sb = await Sandbox.create({ backend: "namespace", daemon: false });
await sb.files.write("x.txt", "outside\\n");
writeFileSync(${JSON.stringify(join(dir, "ready"))}, JSON.stringify({ pid: process.pid, workspace: sb.workspace, pids: sb.pids() }));
const end = Date.now() + 120000;
while (!existsSync(${JSON.stringify(join(dir, "stop"))}) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
await sb.kill();
`;
  return `
import { spawn } from "node:child_process";
spawn(process.execPath, ["--input-type=module", "-e", ${JSON.stringify(code)}], { stdio: "ignore", detached: true }).unref();
`;
}

/** Gone or a zombie (an orphan's zombie may wait for a reaper that never comes). */
function gone(pid: number): boolean {
  return !pidAlive(pid);
}

async function settledLeaks(before: ReturnType<typeof leakSnapshot>, want: (l: string[]) => boolean): Promise<string[]> {
  let leaks = newLeaks(before);
  await waitFor(() => want((leaks = newLeaks(before))), 5_000, 50);
  return leaks;
}

test("a sandbox of another process, made during the run, is not this run's leak", { skip: await unavailable("namespace") }, async (t) => {
  const before = leakSnapshot();
  t.after(() => endLeakCheck(before));
  const dir = mkdtempSync(join(tmpdir(), "lg-test-outsider-"));
  const launcher = spawn(process.execPath, ["--input-type=module", "-e", outsider(dir)], { stdio: "inherit", env: { ...process.env, LUMINAGUARD_DAEMON: "0" } });
  const seen: { outside?: { pid: number; workspace: string; pids: number[] } } = {};
  t.after(async () => {
    writeFileSync(join(dir, "stop"), "");
    const o = seen.outside;
    if (o && !(await waitFor(() => gone(o.pid), 10_000))) killAll([o.pid, ...o.pids]);
    rmSync(dir, { recursive: true, force: true });
  });
  assert.ok(await waitFor(() => existsSync(join(dir, "ready")), 30_000), "the outside sandbox started");
  const outside = JSON.parse(readFileSync(join(dir, "ready"), "utf8")) as { pid: number; workspace: string; pids: number[] };
  seen.outside = outside;
  await waitFor(() => launcher.exitCode !== null, 10_000);
  assert.ok(!outside.pids.some((p) => descendants(process.pid).includes(p)), "the outsider is not below this process");
  // This run's own sandbox, made and killed properly meanwhile.
  const own = await Sandbox.create({ backend: "namespace", daemon: false });
  await own.files.write("y.txt", "inside\n");
  await own.kill();
  const leaks = await settledLeaks(before, (l) => l.length === 0);
  assert.deepEqual(leaks, [], "no false leak");
  // The outside sandbox is really there, and a check of everything new would have blamed this run.
  const foreign = foreignSince(before);
  assert.ok(foreign.some((f) => f.includes(outside.workspace)), `the outsider's workspace is seen as foreign: ${foreign.join("; ")}`);
  const { watch: _ignored, ...machineWide } = before;
  const naive = newLeaks(machineWide);
  assert.ok(naive.some((l) => l.includes(outside.workspace)), "the machine-wide diff (the old check) would have reported it");
});

test("a sandbox this run leaves behind is reported: its processes, cgroup and workspace", { skip: await unavailable("namespace") }, async (t) => {
  const before = leakSnapshot();
  t.after(() => endLeakCheck(before));
  const left = await Sandbox.create({ backend: "namespace", daemon: false });
  t.after(() => left.kill());
  const leaks = newLeaks(before);
  assert.ok(leaks.some((l) => l.startsWith("processes: ") && /bwrap|lg-agent/.test(l)), `processes reported: ${leaks.join("; ")}`);
  assert.ok(leaks.some((l) => l.includes(left.workspace)), `its workspace reported: ${leaks.join("; ")}`);
  if (left.info["limits"] === "memory+pids") assert.ok(leaks.some((l) => l.startsWith("cgroups: ") && l.includes(left.id)), `its cgroup reported: ${leaks.join("; ")}`);
  if (left.diskLimit === "kernel") assert.ok(leaks.some((l) => l.startsWith("mounts: ") && l.includes(left.workspace)), `its mount reported: ${leaks.join("; ")}`);
  // Once killed, nothing of it remains.
  await left.kill();
  assert.deepEqual(await settledLeaks(before, (l) => l.length === 0), []);
});
