// Host identities: machine-wide locks with their holder, and what runs as the identity of a host that died.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { recover } from "../../../src/daemon/recovery.js";
import { allocateIdentity, reapOrphanedIdentities, vmmIdBase, VMM_ID_SLOTS } from "../../../src/sandbox/jailer/identity.js";
import { identityLockDir } from "../../../src/paths.js";
import { liveStartTime, pidAlive } from "../../../src/util/procfs.js";
import { unavailable, waitFor } from "../../fixtures.js";

const IDENTITY_JS = fileURLToPath(new URL("../../../src/sandbox/jailer/identity.js", import.meta.url));
const SANDBOX_JS = fileURLToPath(new URL("../../../src/runtime/sandbox.js", import.meta.url));
const root = (process.geteuid?.() ?? 1) === 0;
const NOT_ROOT = "host identities are only handed out as root (an ordinary user's sandboxes run as that user)";

/** Every live (non-zombie) process whose uids include one of LuminaGuard's identity range. */
function processesInRange(): { pid: number; uid: number }[] {
  const base = vmmIdBase();
  const out: { pid: number; uid: number }[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${name}/status`, "utf8");
    } catch {
      continue;
    }
    if (/^State:\s+Z/m.test(status)) continue;
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (uid > base && uid <= base + VMM_ID_SLOTS) out.push({ pid: Number(name), uid });
  }
  return out;
}

/** A node process that takes an identity, leaves `sleep` running as it (detached, as a stuck sandbox would be) and waits. */
async function holderWithOrphan(): Promise<{ holder: ReturnType<typeof spawn>; uid: number; sleeper: number }> {
  const script = `
    import { spawn } from "node:child_process";
    const { allocateIdentity } = await import(${JSON.stringify(IDENTITY_JS)});
    const id = allocateIdentity();
    const s = spawn("/bin/sleep", ["600"], { uid: id.uid, gid: id.gid, detached: true, stdio: "ignore" });
    s.unref();
    process.stdout.write(JSON.stringify({ uid: id.uid, sleeper: s.pid }) + "\\n");
    setInterval(() => {}, 1000);
  `;
  const holder = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  for await (const line of createInterface({ input: holder.stdout! })) {
    const { uid, sleeper } = JSON.parse(line) as { uid: number; sleeper: number };
    return { holder, uid, sleeper };
  }
  throw new Error("the holder printed nothing");
}

async function killAndWait(child: ReturnType<typeof spawn>): Promise<void> {
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

test("an identity lock is machine-wide and names its holder", (t) => {
  if (!root) return void t.skip(NOT_ROOT);
  const saved = process.env["LUMINAGUARD_RUN"];
  const id = allocateIdentity();
  t.after(() => id.release());
  const lock = join(identityLockDir(), String(id.uid));
  assert.ok(existsSync(lock), "the lock file is there");
  const [pid, start, pidns] = readFileSync(lock, "utf8").trim().split(" ");
  assert.equal(Number(pid), process.pid);
  assert.match(start ?? "", /^\d+$/);
  assert.equal(`pid:[${pidns ?? ""}]`, readlinkSync("/proc/self/ns/pid"), "and its pid namespace");
  // Another runtime directory does not give another lock space.
  process.env["LUMINAGUARD_RUN"] = "/tmp/lg-identity-test-elsewhere";
  try {
    assert.equal(identityLockDir(), "/run/luminaguard-vmm-ids");
  } finally {
    if (saved === undefined) delete process.env["LUMINAGUARD_RUN"];
    else process.env["LUMINAGUARD_RUN"] = saved;
  }
  id.release();
  assert.equal(existsSync(lock), false, "released");
  // A second release of the same identity is a no-op: it never unlinks the lock of a later holder of that uid.
  writeFileSync(lock, "a later holder\n");
  try {
    id.release();
    assert.equal(existsSync(lock), true, "a later holder's lock stays");
  } finally {
    rmSync(lock, { force: true });
  }
});

test("what runs as the identity of a host that was SIGKILLed is killed and the identity freed; a live holder's is not touched", async (t) => {
  if (!root) return void t.skip(NOT_ROOT);
  const mine = allocateIdentity();
  const myChild = spawn("/bin/sleep", ["600"], { uid: mine.uid, gid: mine.gid, stdio: "ignore" });
  const { holder, uid, sleeper } = await holderWithOrphan();
  t.after(() => {
    myChild.kill("SIGKILL");
    holder.kill("SIGKILL");
    try {
      process.kill(sleeper, "SIGKILL");
    } catch {
      /* gone, as it should be */
    }
    mine.release();
  });
  await killAndWait(holder);
  assert.ok(pidAlive(sleeper), "the orphan outlives its host (as a sandbox stuck in bwrap's start does)");
  const lock = join(identityLockDir(), String(uid));
  assert.ok(existsSync(lock));

  // The daemon's start-up recovery finds it: before, a uid something ran as counted as alive.
  const report = await recover({ runDirs: [] });
  assert.ok(
    report.removed.some((r) => r.kind === "orphan-process" && r.path === `pid ${sleeper}`),
    JSON.stringify(report.removed),
  );
  assert.ok(report.removed.some((r) => r.kind === "vmm-identity" && r.path === lock));
  assert.ok(await waitFor(() => !pidAlive(sleeper), 5_000), "the orphan is gone");
  assert.equal(existsSync(lock), false, "its identity is free again");
  assert.ok(myChild.exitCode === null && pidAlive(myChild.pid!), "a live holder's process runs on");
  assert.ok(existsSync(join(identityLockDir(), String(mine.uid))), "and its lock stays");
});

test("the next allocation reaps too: no daemon needed", async (t) => {
  if (!root) return void t.skip(NOT_ROOT);
  const { holder, uid, sleeper } = await holderWithOrphan();
  t.after(() => {
    holder.kill("SIGKILL");
    try {
      process.kill(sleeper, "SIGKILL");
    } catch {
      /* gone */
    }
  });
  await killAndWait(holder);
  // A fresh process (its first allocation always looks) takes an identity and gives it back.
  const script = `const { allocateIdentity } = await import(${JSON.stringify(IDENTITY_JS)}); allocateIdentity().release();`;
  const next = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "inherit"] });
  const code = await new Promise((r) => next.once("exit", r));
  assert.equal(code, 0);
  assert.ok(await waitFor(() => !pidAlive(sleeper), 5_000), "the orphan is killed by the next process's allocation");
  assert.equal(existsSync(join(identityLockDir(), String(uid))), false);
});

test("reaping kills nothing outside the identity range, nor for a lock without a holder", async (t) => {
  if (!root) return void t.skip(NOT_ROOT);
  const dir = identityLockDir();
  // A lock naming a uid outside the range, with a dead holder, and a process running as that uid.
  const outside = 65_533;
  const victim = spawn("/bin/sleep", ["600"], { uid: outside, gid: outside, stdio: "ignore" });
  const foreign = join(dir, String(outside));
  writeFileSync(foreign, "1 1\n", { mode: 0o600 });
  // A lock of an older version (no holder written), old, with something running as its uid: kept.
  const legacy = allocateIdentity();
  writeFileSync(join(dir, String(legacy.uid)), "");
  utimesSync(join(dir, String(legacy.uid)), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const legacyChild = spawn("/bin/sleep", ["600"], { uid: legacy.uid, gid: legacy.gid, stdio: "ignore" });
  t.after(() => {
    victim.kill("SIGKILL");
    legacyChild.kill("SIGKILL");
    legacy.release();
    rmSync(foreign, { force: true });
  });
  await new Promise((r) => setTimeout(r, 100));
  const report = reapOrphanedIdentities();
  assert.equal(report.killed.some((k) => k.pid === victim.pid || k.pid === legacyChild.pid), false, JSON.stringify(report));
  assert.ok(pidAlive(victim.pid!) && pidAlive(legacyChild.pid!));
  assert.ok(existsSync(join(dir, String(legacy.uid))), "a holderless lock whose uid is in use stays");
  legacyChild.kill("SIGKILL");
  await new Promise((r) => legacyChild.once("exit", r));
  const again = reapOrphanedIdentities();
  assert.ok(again.released.includes(join(dir, String(legacy.uid))), "once nothing runs as it, it is freed");
});

test("a holder record left unlinked by a process killed while taking an identity is removed; a live one's is not", async (t) => {
  if (!root) return void t.skip(NOT_ROOT);
  const dead = spawn("/bin/true");
  await new Promise((r) => dead.once("exit", r));
  const left = join(identityLockDir(), `.new-${dead.pid}-0123456789ab`);
  const mine = join(identityLockDir(), `.new-${process.pid}-0123456789ab`);
  writeFileSync(left, "");
  writeFileSync(mine, "");
  t.after(() => {
    rmSync(left, { force: true });
    rmSync(mine, { force: true });
  });
  const report = reapOrphanedIdentities();
  assert.ok(report.released.includes(left), JSON.stringify(report));
  assert.equal(existsSync(left), false);
  assert.ok(existsSync(mine), "a live process's record stays");
});

test("a holder recorded from another pid namespace is never judged dead from here", async (t) => {
  if (!root) return void t.skip(NOT_ROOT);
  const id = allocateIdentity();
  const child = spawn("/bin/sleep", ["600"], { uid: id.uid, gid: id.gid, stdio: "ignore" });
  t.after(() => {
    child.kill("SIGKILL");
    id.release();
  });
  // pid 1 with a start time it does not have, from a namespace that is not ours.
  writeFileSync(join(identityLockDir(), String(id.uid)), "1 1 1\n");
  const report = reapOrphanedIdentities();
  assert.equal(report.killed.some((k) => k.pid === child.pid), false);
  assert.ok(pidAlive(child.pid!));
  assert.ok(existsSync(join(identityLockDir(), String(id.uid))));
});

test("hosts SIGKILLed at random moments of their spawns: after the next recovery nothing runs without a live holder, nothing is mounted", async (t) => {
  if (!root) return void t.skip(NOT_ROOT);
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  // Each host starts namespace sandboxes back to back (bwrap through lg-jailer, as its own identity,
  // a loop-mounted workspace each) and is killed at a random moment: before, between or inside its spawns.
  const run = mkdtempSync(join(tmpdir(), "lg-identity-test-"));
  const script = `
    const { Sandbox } = await import(${JSON.stringify(SANDBOX_JS)});
    process.stdout.write("go\\n");
    for (;;) await Sandbox.create({ backend: "namespace", daemon: false });
  `;
  const children: ReturnType<typeof spawn>[] = [];
  t.after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await recover({ graceMs: 0, runDirs: [run] });
    rmSync(run, { recursive: true, force: true });
  });
  for (let i = 0; i < 12; i++) {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, LUMINAGUARD_RUN: run }, stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    for await (const line of createInterface({ input: child.stdout! })) if (line === "go") break;
    await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 400)));
    await killAndWait(child);
  }
  // What a SIGKILLed host leaves (its workspaces, mounted) is for the next process's recovery, as the daemon's.
  const report = await recover({ graceMs: 0, runDirs: [run] });
  assert.deepEqual(report.failed, []);
  const dir = identityLockDir();
  const held = (uid: number): boolean => {
    try {
      const [pid, start] = readFileSync(join(dir, String(uid)), "utf8").trim().split(" ");
      return liveStartTime(Number(pid)) === start;
    } catch {
      return false;
    }
  };
  assert.ok(
    await waitFor(() => processesInRange().every((p) => held(p.uid)), 5_000),
    `running as an identity without a live holder: ${JSON.stringify(processesInRange().filter((p) => !held(p.uid)))}`,
  );
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => (l.split(" ")[4] ?? "").startsWith(run));
  assert.deepEqual(mounts, [], "no workspace of theirs is still mounted");
  const workspaces = join(run, "workspaces");
  assert.deepEqual(existsSync(workspaces) ? readdirSync(workspaces) : [], [], "their workspaces are removed");
});
