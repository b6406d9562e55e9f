// Start-up recovery on real leftovers: sandboxes started by a process that is then SIGKILLed, and a daemon killed the same way.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { recover } from "../../src/daemon/recovery.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { probeCgroups } from "../../src/sandbox/namespace/cgroup.js";
import { dying, pidAlive } from "../../src/util/procfs.js";
import { unavailable, waitFor } from "../fixtures.js";
import { daemonDirs, http, startTestDaemon } from "./helpers.js";

const SANDBOX_JS = fileURLToPath(new URL("../../src/runtime/sandbox.js", import.meta.url));
const GRACE_MS = 1_500;

interface Started {
  id: string;
  backend: string;
  workspace: string;
  pids: number[];
}

function mounted(path: string): boolean {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === path);
}

/** The image file behind a loop-mounted workspace. */
function imageOf(path: string): string | undefined {
  const line = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[4] === path)
    .pop();
  const device = line?.split(" - ")[1]?.split(" ")[1];
  if (!device?.startsWith("/dev/loop")) return undefined;
  try {
    return readFileSync(`/sys/block/${device.slice(5)}/loop/backing_file`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** The sandbox cgroup directories for `id` that exist now. */
function cgroupsOf(id: string): string[] {
  return probeCgroups()
    .parents.map((p) => join(p, id))
    .filter((d) => existsSync(d));
}

test("recover() removes what a SIGKILLed process left and keeps what is alive", async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  const withVm = (await unavailable("microvm")) === undefined;
  const dirs = daemonDirs();
  const savedRun = process.env["LUMINAGUARD_RUN"];
  process.env["LUMINAGUARD_RUN"] = dirs.run;
  const held: { live?: Awaited<ReturnType<typeof Sandbox.create>>; child?: ReturnType<typeof spawn> } = {};
  // One hook, in order: the killed process, the live sandbox (its workspace is mounted in dirs), then dirs.
  t.after(async () => {
    held.child?.kill("SIGKILL");
    await held.live?.kill();
    if (savedRun === undefined) delete process.env["LUMINAGUARD_RUN"];
    else process.env["LUMINAGUARD_RUN"] = savedRun;
    dirs.remove();
  });

  // A process that starts sandboxes (with workspaces of their own: mounted filesystems as root) and is then killed.
  const script = `
    const { Sandbox } = await import(${JSON.stringify(SANDBOX_JS)});
    for (const backend of process.env.BACKENDS.split(",")) {
      const s = await Sandbox.create({ backend, daemon: false });
      process.stdout.write(JSON.stringify({ id: s.id, backend, workspace: s.workspace, pids: s.pids() }) + "\\n");
    }
    process.stdout.write("ready\\n");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    env: { ...process.env, LUMINAGUARD_RUN: dirs.run, BACKENDS: withVm ? "namespace,microvm" : "namespace" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  held.child = child;
  const started: Started[] = [];
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === "ready") break;
    started.push(JSON.parse(line) as Started);
  }
  assert.equal(started.length, withVm ? 2 : 1);
  // Identity locks are machine-wide (one directory for every LuminaGuard process of root).
  const lockDir = "/run/luminaguard-vmm-ids";
  const vmmIds = () => (existsSync(lockDir) ? readdirSync(lockDir).filter((n) => /^\d+$/.test(n)) : []);
  const root = (process.geteuid?.() ?? 1) === 0;

  const leftSlots = vmmIds();
  // A sandbox of this process, alive, in the same runtime directory: recovery must leave it alone.
  const live = await Sandbox.create({ backend: "namespace", daemon: false });
  held.live = live;
  const liveSlots = vmmIds().filter((n) => !leftSlots.includes(n)).sort();

  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
  const pids = started.flatMap((s) => s.pids);
  assert.ok(await waitFor(() => pids.every((p) => !pidAlive(p)), 10_000), "the sandboxes die with the process that started them");

  // What it left: workspaces (mounted, as root), VMM identity locks, cgroups, a VM's run directory.
  for (const s of started) assert.ok(existsSync(s.workspace), `${s.backend}: its workspace is left`);
  if (root) {
    for (const s of started) assert.ok(mounted(s.workspace), `${s.backend}: its workspace filesystem is still mounted`);
    assert.ok(leftSlots.length >= started.length, "identity locks are left");
  }
  const cgroups = started.flatMap((s) => [...cgroupsOf(s.id), ...cgroupsOf(`${s.id}-files`)]);
  if (probeCgroups().usable) assert.ok(cgroups.length > 0, "cgroups are left");
  const vm = started.find((s) => s.backend === "microvm");
  if (vm) assert.ok(existsSync(join(dirs.run, `vm-${vm.id}`)), "the VM's run directory is left");

  // The images behind the mounted workspaces (loop devices), to see them deleted too.
  const images = root ? started.map((s) => imageOf(s.workspace)).filter((i): i is string => i !== undefined) : [];
  if (root) assert.equal(images.length, started.length, "each workspace is a loop-mounted image");
  await new Promise((r) => setTimeout(r, GRACE_MS + 100));
  const report = await recover({ graceMs: GRACE_MS, runDirs: [dirs.run] });
  const kinds = new Set(report.removed.map((r) => r.kind));
  assert.deepEqual(report.failed, []);
  for (const s of started) {
    assert.equal(existsSync(s.workspace), false, `${s.backend}: workspace removed`);
    assert.ok(report.removed.some((r) => r.kind === "workspace" && r.path === s.workspace));
  }
  assert.ok(kinds.has("workspace"));
  if (root) {
    assert.ok(kinds.has("workspace-mount") && kinds.has("vmm-identity"), [...kinds].join(","));
    assert.deepEqual(vmmIds().sort(), liveSlots, "only the live sandbox's identity lock is left");
  }
  for (const c of cgroups) assert.equal(existsSync(c), false, `cgroup ${c} removed`);
  if (vm) {
    assert.equal(existsSync(join(dirs.run, `vm-${vm.id}`)), false, "the VM's run directory is removed");
    assert.ok(kinds.has("vm-run-dir"));
  }

  // The live sandbox is untouched and works.
  assert.ok(existsSync(live.workspace));
  assert.equal((await live.commands.run("echo alive")).stdout, "alive\n");
  assert.ok(cgroupsOf(live.id).length > 0 || !probeCgroups().usable, "the live sandbox keeps its cgroup");

  // An image is deleted once no loop device has it. The live sandbox's mount namespace, made while the
  // dead ones' filesystems were mounted, may hold a copy of their mounts (and so the loop devices) until
  // it ends; then the next recovery deletes them.
  await live.kill();
  const gone = () => images.every((i) => !existsSync(i));
  for (let i = 0; i < 20 && !gone(); i++) {
    await recover({ graceMs: GRACE_MS, runDirs: [dirs.run] });
    if (!gone()) await new Promise((r) => setTimeout(r, 100));
  }
  for (const i of images) assert.equal(existsSync(i), false, `image ${i} removed`);
});

test("a SIGKILLed daemon: the next one replaces its stale socket, removes what it left and says so", async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  const dirs = daemonDirs();
  t.after(() => dirs.remove());
  const first = await startTestDaemon(undefined, ["--namespace-pool", "1:1", "--microvm-pool", "0"], { dirs, keepDirs: true });
  t.after(() => first.stop("SIGKILL"));
  const c = await http(first, "POST", "/v1/sandboxes", { backend: "namespace" });
  assert.equal(c.status, 201);
  const { id, workspace } = c.json() as { id: string; workspace: string };
  assert.ok(existsSync(workspace));
  await first.stop("SIGKILL");
  assert.ok(existsSync(first.socket), "a killed daemon leaves its socket");
  await new Promise((r) => setTimeout(r, GRACE_MS + 500));

  const second = await startTestDaemon(undefined, ["--namespace-pool", "0", "--microvm-pool", "0", "--recovery-grace", String(GRACE_MS)], { dirs, keepDirs: true });
  t.after(() => second.stop());
  const err = second.stderr();
  assert.match(err, /recovery: [1-9]\d* leftover\(s\) of a previous run removed/);
  assert.ok(err.includes(`removed workspace ${workspace}`), err);
  assert.equal(existsSync(workspace), false);
  if (probeCgroups().usable) assert.deepEqual(cgroupsOf(id), [], "its sandbox's cgroup is gone");
  assert.equal(readdirSync(join(dirs.run, "workspaces")).length, 0, "the pool's workspaces are gone too");
  assert.equal((await http(second, "GET", "/healthz")).status, 200, "the new daemon serves on the same socket");
  assert.equal(await second.stop(), 0);
  assert.equal(existsSync(second.socket), false, "a drained daemon removes its socket");
});

test("recovery leaves a workspace image in the making (never mounted, young) to its maker; a mounted-once or old one goes", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "lg-test-images-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const images = join(root, "workspace-images");
  mkdirSync(images, { mode: 0o700 });
  const run = join(root, "run");
  mkdirSync(run, { mode: 0o700 });
  const make = (name: string, lastMount: number, ageMs: number): string => {
    const p = join(images, name);
    const b = Buffer.alloc(4096);
    b.writeUInt32LE(lastMount, 1068); // ext4 superblock s_mtime: 0 until the first mount
    writeFileSync(p, b);
    const at = (Date.now() - ageMs) / 1000;
    utimesSync(p, at, at);
    return p;
  };
  const making = make("a.ext4", 0, 10_000); // past the grace, but mkfs done and not mounted yet: another process's next step
  const emptied = make("b.ext4", 1_700_000_000, 10_000); // mounted once, now attached to nothing: a crash's leftover
  const stale = make("c.ext4", 0, 120_000); // never mounted for two minutes: its maker died between mkfs and mount
  const report = await recover({ graceMs: 1000, runDirs: [run], cgroupParents: [], imagesDir: images });
  assert.equal(existsSync(making), true, "the image in the making is kept");
  assert.equal(existsSync(emptied), false);
  assert.equal(existsSync(stale), false);
  assert.deepEqual(report.removed.filter((r) => r.kind === "workspace-image").map((r) => r.path).sort(), [emptied, stale].sort());
});

test("a workspace held only by a process being killed is removed once that process is through its exit, not kept", async (t) => {
  // A dead host's jailer or bwrap, ended by its parent-death signal, holds the workspace until its exit
  // is through; identity.test.ts's randomly killed hosts found recovery keeping (and leaving mounted)
  // a workspace whose only holder was such a process. Here the holder is made to stay dying: frozen
  // (the v1 freezer lets no signal through, SIGKILL included) and then SIGKILLed; thawed while
  // recovery runs.
  const freezerRoot = "/sys/fs/cgroup/freezer";
  if ((process.getuid?.() ?? 1) !== 0) return void t.skip("needs root (a freezer cgroup)");
  if (!existsSync(join(freezerRoot, "tasks"))) return void t.skip("needs the cgroup v1 freezer to hold a process in its dying state");
  const run = mkdtempSync(join(tmpdir(), "lg-recovery-dying-"));
  const ws = join(run, "workspaces", "ws-dying");
  mkdirSync(ws, { recursive: true, mode: 0o700 });
  const freezer = join(freezerRoot, `lg-test-dying-${process.pid}`);
  mkdirSync(freezer);
  const holder = spawn("/bin/sleep", ["60"], { cwd: ws, stdio: "ignore" });
  const pid = holder.pid as number;
  t.after(async () => {
    try {
      writeFileSync(join(freezer, "freezer.state"), "THAWED");
    } catch {
      /* gone */
    }
    holder.kill("SIGKILL");
    // A cgroup directory goes with rmdir, once its process has left (exited) it.
    await waitFor(() => {
      try {
        rmdirSync(freezer);
        return true;
      } catch {
        return false;
      }
    }, 5_000);
    rmSync(run, { recursive: true, force: true });
  });
  writeFileSync(join(freezer, "tasks"), String(pid));
  writeFileSync(join(freezer, "freezer.state"), "FROZEN");
  assert.ok(await waitFor(() => readFileSync(join(freezer, "freezer.state"), "utf8").trim() === "FROZEN", 5_000), "the holder is frozen");
  assert.equal(dying(pid), false, "a frozen process is not dying");
  process.kill(pid, "SIGKILL");
  assert.ok(await waitFor(() => dying(pid), 2_000), "a frozen process with a SIGKILL pending is dying");
  assert.ok(pidAlive(pid), "and still alive, holding its cwd in the workspace");
  const recovery = recover({ graceMs: 0, runDirs: [run], cgroupParents: [] });
  setTimeout(() => writeFileSync(join(freezer, "freezer.state"), "THAWED"), 300);
  const report = await recovery;
  assert.deepEqual(report.failed, []);
  assert.ok(
    report.removed.some((r) => r.kind === "workspace" && r.path === ws),
    `the workspace was removed once its dying holder was gone: ${JSON.stringify(report)}`,
  );
  assert.equal(existsSync(ws), false);
});
