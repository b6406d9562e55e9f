// The per-sandbox disk limit on both backends: kernel-enforced on workspaces we create (a loop-mounted
// ext4, run as root), watched on a user's own directory; NO_SPACE, no partial file, nothing left behind.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, linkSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { getBackend } from "../../src/runtime/backends.js";
import { DiskGuard, LimitedWorkspace, diskLimit, measure } from "../../src/runtime/disk.js";
import { SandboxPool } from "../../src/runtime/pool.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import type { SandboxBackend } from "../../src/sandbox/types.js";
import { BACKENDS, rejectsWith, sandboxFor, tempWorkspace, unavailable } from "../fixtures.js";

const MIB = 1024 * 1024;
/** What a watched sandbox may overshoot by in these tests: ~15 ms of writing (docs/security.md, "Disk"). */
const WATCH_MARGIN = 32 * MIB;
const kernelSkip = LimitedWorkspace.supported() ? false : "kernel-enforced limits need root, loop devices and mkfs.ext4";

function mountedAt(path: string): string | undefined {
  const lines = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  let source: string | undefined;
  for (const l of lines) {
    const [pre, post] = l.split(" - ");
    if (pre?.split(" ")[4] === path) source = post?.split(" ")[1];
  }
  return source;
}

function backingFile(device: string): string | undefined {
  try {
    return readFileSync(`/sys/block/${device.replace("/dev/", "")}/loop/backing_file`, "utf8").trim();
  } catch {
    return undefined;
  }
}

interface Loop {
  path: string;
  device: string;
  image: string;
}

/** The loop device and image file behind a kernel-limited workspace. */
function loopOf(path: string): Loop {
  const device = mountedAt(path);
  if (!device?.startsWith("/dev/loop")) assert.fail(`a loop device is mounted at ${path} (${device ?? "nothing"})`);
  const image = backingFile(device);
  if (!image) assert.fail(`${device} has a backing file`);
  return { path, device, image };
}

/** What a killed kernel-limited sandbox left behind: its mount, loop device, image or directory. */
function leftovers(l: Loop): string[] {
  const out: string[] = [];
  if (mountedAt(l.path) !== undefined) out.push(`mount at ${l.path}`);
  if (backingFile(l.device)?.startsWith(l.image)) out.push(`${l.device} bound to ${l.image}`);
  if (existsSync(l.image)) out.push(`image ${l.image}`);
  if (existsSync(l.path)) out.push(`directory ${l.path}`);
  return out;
}

/** A sandbox on a workspace of our own, killed when the test ends. */
async function ownedSandbox(t: TestContext, backend: (typeof BACKENDS)[number], o: { diskMiB: number; diskInodes?: number }): Promise<Sandbox> {
  const sandbox = await Sandbox.create({ backend, ...o, daemon: false });
  t.after(() => sandbox.kill());
  return sandbox;
}

function entries(dir: string): string[] {
  return readdirSync(dir).sort();
}

test("limits are validated: INVALID_ARGUMENT before anything is spawned", async () => {
  for (const [mib, inodes] of [[4, undefined], [1.5, undefined], [2 * 1024 * 1024, undefined], [32, 3], [32, 0.5]] as const) {
    assert.throws(() => diskLimit(mib, inodes), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT");
    await rejectsWith(Sandbox.create({ backend: "namespace", diskMiB: mib, ...(inodes !== undefined ? { diskInodes: inodes } : {}) }), "INVALID_ARGUMENT");
  }
  assert.deepEqual(diskLimit(), { mib: 1024, inodes: 65_536 });
  assert.deepEqual(diskLimit(8), { mib: 8, inodes: 1024 });
  assert.throws(() => new SandboxPool({ backend: getBackend("namespace"), diskMiB: 0 }), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT");
  const r = spawnSync(process.execPath, ["dist/src/cli/main.js", "exec", "--disk", "4", "--", "true"], { encoding: "utf8" });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /INVALID_ARGUMENT.*--disk must be an integer from 8/);
});

test("DiskGuard: counts what was added (a hard link once) against a baseline, admits or refuses a write before it happens", async () => {
  const dir = mkdtempSync(join(tmpdir(), "lg-guard-"));
  try {
    writeFileSync(join(dir, "user.bin"), Buffer.alloc(3 * MIB, 1));
    const guard = await DiskGuard.start(dir, diskLimit(8, 100));
    assert.deepEqual(await guard.added(), { bytes: 0, inodes: 0 }, "the user's own files are the baseline");
    const release = await guard.admitWrite(5 * MIB);
    await rejectsWith(guard.admitWrite(4 * MIB), "NO_SPACE"); // the admitted 5 MiB are still in flight
    writeFileSync(join(dir, "a.bin"), Buffer.alloc(5 * MIB, 1));
    release();
    linkSync(join(dir, "a.bin"), join(dir, "a-link.bin"));
    const added = await guard.added();
    assert.ok(added.bytes >= 5 * MIB && added.bytes < 5 * MIB + 64 * 1024, `a hard link counts once: ${added.bytes}`);
    await guard.check();
    await rejectsWith(guard.admitWrite(3 * MIB), "NO_SPACE");
    (await guard.admitWrite(2 * MIB))();
    writeFileSync(join(dir, "b.bin"), Buffer.alloc(4 * MIB, 1));
    await rejectsWith(guard.check(), "NO_SPACE");
    assert.equal(await guard.nearlyFull(), true);
    // The accounting is net: deleting the user's own files makes room.
    rmSync(join(dir, "user.bin"));
    await guard.check();
    for (let i = 0; i < 120; i++) writeFileSync(join(dir, `f${i}`), "");
    const e = await rejectsWith(guard.check(), "NO_SPACE");
    assert.match(e.message, /files added/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const backend of BACKENDS) {
  describe(`disk limit on ${backend}`, async () => {
    const skip = await unavailable(backend);

    test("kernel (owned workspace): filling it is NO_SPACE, the image never outgrows the limit, a write that does not fit leaves no file, kill leaves nothing", { skip: skip ?? kernelSkip }, async (t) => {
      const sandbox = await ownedSandbox(t, backend, { diskMiB: 32 });
      assert.equal(sandbox.info["diskLimit"], "kernel");
      assert.equal(sandbox.info["diskMiB"], 32);
      const loop = loopOf(sandbox.workspace);
      assert.match(mountedAt(sandbox.workspace) ?? "", /^\/dev\/loop/);

      const e = await rejectsWith(sandbox.commands.run("dd if=/dev/zero of=/workspace/big bs=1M count=200"), "NO_SPACE");
      assert.notEqual(e.details["exitCode"], 0, "the command saw the failure");
      assert.match(String(e.details["stderr"]), /No space left on device/);
      assert.ok(statSync(loop.image).blocks * 512 <= 32 * MIB, `the image holds ${statSync(loop.image).blocks * 512} bytes`);
      assert.ok((await measure(sandbox.workspace)).bytes <= 32 * MIB);

      // A command that succeeds on a full workspace keeps its result.
      assert.equal((await sandbox.commands.run("ls /workspace")).exitCode, 0);
      // Deleting makes room again; a write larger than what is left is refused whole.
      assert.equal((await sandbox.commands.run("rm /workspace/big && dd if=/dev/zero of=/workspace/big bs=1M count=28 2>/dev/null")).exitCode, 0);
      await rejectsWith(sandbox.files.write("w.bin", new Uint8Array(6 * MIB)), "NO_SPACE");
      assert.deepEqual(entries(sandbox.workspace), ["big"], "no w.bin, no temp file");
      assert.equal((await sandbox.files.write("small.txt", "fits")).bytesWritten, 4);

      await sandbox.kill();
      assert.deepEqual(leftovers(loop), []);
    });

    test("kernel (owned workspace): running out of inodes is NO_SPACE", { skip: skip ?? kernelSkip }, async (t) => {
      const sandbox = await ownedSandbox(t, backend, { diskMiB: 16, diskInodes: 256 });
      const loop = loopOf(sandbox.workspace);
      const e = await rejectsWith(sandbox.commands.run("i=0; while [ $i -lt 5000 ]; do : > /workspace/f$i || exit 1; i=$((i+1)); done"), "NO_SPACE");
      assert.match(String(e.details["stderr"]), /No space left on device/);
      const n = readdirSync(sandbox.workspace).length;
      assert.ok(n >= 200 && n < 1024, `the filesystem took ${n} files`);
      await sandbox.kill();
      assert.deepEqual(leftovers(loop), []);
    });

    test("watched (user workspace): the user's files are the baseline; filling, looping and flooding files are NO_SPACE within the margin; a write that does not fit leaves no file", { skip }, async (t) => {
      const ws = tempWorkspace();
      t.after(() => ws.remove());
      writeFileSync(join(ws.dir, "user.bin"), Buffer.alloc(40 * MIB, 7)); // more than the limit: not the sandbox's
      const before = await measure(ws.dir);
      const { sandbox } = await sandboxFor(t, backend, { workspace: ws.dir, diskMiB: 32, diskInodes: 256 });
      assert.equal(sandbox.info["diskLimit"], "watched");
      const added = async (): Promise<{ bytes: number; inodes: number }> => {
        const now = await measure(ws.dir);
        return { bytes: now.bytes - before.bytes, inodes: now.inodes - before.inodes };
      };

      // One file: capped at the limit by the agent (RLIMIT_FSIZE), then the workspace is full.
      await rejectsWith(sandbox.commands.run("dd if=/dev/zero of=/workspace/big bs=1M count=200"), "NO_SPACE");
      assert.ok((await added()).bytes <= 32 * MIB + 64 * 1024, `added ${(await added()).bytes}`);
      assert.equal((await sandbox.commands.run("rm -f /workspace/big")).exitCode, 0, "deleting brings it back under");

      // A write that does not fit in what is left: refused before anything is written.
      assert.equal((await sandbox.commands.run("dd if=/dev/zero of=/workspace/big bs=1M count=28 2>/dev/null")).exitCode, 0);
      await rejectsWith(sandbox.files.write("w.bin", new Uint8Array(6 * MIB)), "NO_SPACE");
      await rejectsWith(sandbox.callTool("write_file", { path: "w.bin", content: Buffer.alloc(6 * MIB).toString("base64"), encoding: "base64" }), "NO_SPACE");
      assert.deepEqual(entries(ws.dir), ["big", "user.bin"]);

      // A command that never stops writing: stopped by the watch, long before its own timeout.
      const t0 = performance.now();
      await rejectsWith(
        sandbox.commands.run("rm -f /workspace/big; i=0; while :; do dd if=/dev/zero of=/workspace/f$i bs=1M count=4 2>/dev/null; i=$((i+1)); done", { timeoutMs: 120_000 }),
        "NO_SPACE",
      );
      assert.ok(performance.now() - t0 < 60_000, "stopped by the watch, not the timeout");
      await new Promise((r) => setTimeout(r, 200)); // anything still in flight when it was stopped
      assert.ok((await added()).bytes <= 32 * MIB + WATCH_MARGIN, `added ${(await added()).bytes} bytes`);
      assert.equal((await sandbox.commands.run("rm -f /workspace/f*")).exitCode, 0);

      // Files without bytes: the inode limit.
      await rejectsWith(sandbox.commands.run("i=0; while :; do : > /workspace/e$i; i=$((i+1)); done", { timeoutMs: 120_000 }), "NO_SPACE");
      await new Promise((r) => setTimeout(r, 200));
      assert.ok((await added()).inodes <= 256 + 4096, `added ${(await added()).inodes} files`);

      assert.equal(statSync(join(ws.dir, "user.bin")).size, 40 * MIB, "the user's file is untouched");
    });
  });
}

test("pool: kernel-limited workspaces are unmounted and deleted on kill, drain and failed spawns", { skip: kernelSkip }, async (t) => {
  if (await unavailable("namespace")) return t.skip("namespace backend unavailable");
  const real = getBackend("namespace");
  const seen: Loop[] = [];
  let failNext = false;
  const recording: SandboxBackend = {
    name: real.name,
    probe: () => real.probe(),
    spawn: (spec, signal) => {
      seen.push(loopOf(spec.workspace));
      assert.equal(spec.diskMiB, 16, "the limit reaches the backend (and the agent's init)");
      if (failNext) return Promise.reject(new LuminaGuardError("SANDBOX_SPAWN_FAILED", "test: spawn fails"));
      return real.spawn(spec, signal);
    },
  };
  const pool = new SandboxPool({ backend: recording, minSize: 2, maxSize: 2, diskMiB: 16 });
  t.after(() => pool.drain());
  await pool.warm(2);
  const sandbox = await pool.acquire();
  assert.equal(sandbox.info["diskLimit"], "kernel");
  const mine = loopOf(sandbox.workspace);
  await rejectsWith(sandbox.commands.run("dd if=/dev/zero of=/workspace/big bs=1M count=100"), "NO_SPACE");
  await sandbox.kill();
  // The other pool sandbox is still alive: its staging mount namespace must not pin this workspace
  // (lg-jailer detaches other sandboxes' mounts); the loop device detaches asynchronously.
  for (let i = 0; i < 100 && leftovers(mine).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(leftovers(mine), []);
  failNext = true;
  await pool.drain();
  assert.ok(seen.length >= 2);
  // Every sandbox is gone now, so are the namespaces that held copies of the mounts (released asynchronously).
  const clean = (): boolean => seen.every((l) => leftovers(l).length === 0);
  for (let i = 0; i < 100 && !clean(); i++) await new Promise((r) => setTimeout(r, 20));
  for (const l of seen) assert.deepEqual(leftovers(l), [], l.path);

  const failing = new SandboxPool({ backend: recording, minSize: 1, diskMiB: 16 });
  const before = seen.length;
  await assert.rejects(failing.acquire(), /spawn fails/);
  await failing.drain();
  assert.ok(seen.length > before);
  for (const l of seen) assert.deepEqual(leftovers(l), [], l.path);
});

test("a later namespace sandbox does not pin an earlier sandbox's workspace after that one is killed", { skip: kernelSkip }, async (t) => {
  const first = await Sandbox.create({ backend: "namespace", diskMiB: 16 });
  t.after(() => first.kill()); // idempotent: also when an assertion below fails first
  const mine = loopOf(first.workspace);
  // Started while the first one's workspace is mounted: its staging mount namespace began as a copy.
  const later = await sandboxFor(t, "namespace");
  for (const pid of later.sandbox.pids()) {
    const mounts = readFileSync(`/proc/${pid}/mountinfo`, "utf8");
    assert.ok(!mounts.includes(` ${first.workspace} `), `pid ${pid} of the later sandbox holds a copy of ${first.workspace}`);
  }
  await first.kill();
  for (let i = 0; i < 100 && leftovers(mine).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(leftovers(mine), [], "loop device and image released while the later sandbox still runs");
  assert.equal((await later.sandbox.commands.run("true")).exitCode, 0);
});
