#!/usr/bin/env node
// Runs every compiled test file with node's test runner, one file at a time (VM tests share 2 cores),
// and ends with the summary line CI reads: "N passed, N failed, N skipped".
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";

const root = process.argv[2] ?? "dist/test";

// The micro-VM tests need the guest image of this exact source; building it is a no-op when current.
// If it cannot be built here, the microvm tests skip and print why (CI makes that a failure).
const image = spawnSync(process.execPath, ["dist/src/cli/main.js", "image", "build"], { stdio: ["ignore", "ignore", "inherit"] });
if (image.status !== 0) process.stderr.write("run-tests: guest image build failed; micro-VM tests will be skipped\n");
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.test\.(m?js)$/.test(name)) files.push(p);
  }
})(root);
const extra = ["guest-agent/test"].flatMap((d) => {
  try {
    return readdirSync(d).filter((n) => n.endsWith(".test.mjs")).map((n) => join(d, n));
  } catch {
    return [];
  }
});
const all = [...extra, ...files];

// What a sandbox leaves running or mounted when something goes wrong: processes of its kinds (or running
// as one of root's sandbox identities), workspace filesystems, loop devices of workspace images.
// Looked at before and after the suites: whatever the tests' own processes started and is still there
// once they have all ended is a leak, and fails the run (a pre-existing daemon's sandboxes are not ours).
const SANDBOX_EXES = new Set(["bwrap", "lg-agent", "lg-jailer", "qemu-system-x86_64", "qemu-system-aarch64"]);
const ID_BASE = Number(process.env.LUMINAGUARD_VMM_ID_BASE ?? 2_100_000_000);
function stat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), state: f[0], start: Number(f[19]) };
  } catch {
    return undefined;
  }
}
const self = stat(process.pid);
const ownAncestors = new Set([1]);
for (let p = process.pid; p > 1; p = stat(p)?.ppid ?? 1) ownAncestors.add(p);
function sandboxLike(pid) {
  let exe = "";
  try {
    exe = readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, "");
  } catch {
    /* not ours to read, or a kernel thread */
  }
  const base = exe.slice(exe.lastIndexOf("/") + 1);
  let uid = -1;
  try {
    uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  } catch {
    return undefined;
  }
  if (!SANDBOX_EXES.has(base) && !(uid > ID_BASE && uid <= ID_BASE + 65_535)) return undefined;
  let cmd = "";
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim().slice(0, 300);
  } catch {
    /* gone */
  }
  return { pid, uid, exe: base || "?", cmd };
}
/** Started after this script, and not below a process that was there before it (other than our own ancestors and init). */
function startedByUs(pid) {
  for (let p = pid, hops = 0; hops < 64; hops++) {
    if (ownAncestors.has(p)) return true;
    const s = stat(p);
    if (!s || s.start < (self?.start ?? 0)) return false;
    p = s.ppid;
  }
  return false;
}
function leftovers() {
  const out = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const s = stat(name);
    if (!s || s.state === "Z" || s.start < (self?.start ?? 0)) continue;
    const like = sandboxLike(name);
    if (like && startedByUs(Number(name))) out.push(`process ${like.pid} (${like.exe}, uid ${like.uid}, parent ${s.ppid}): ${like.cmd}`);
  }
  return out;
}
function mountsAndLoops() {
  const out = new Set();
  try {
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const mp = line.split(" ")[4] ?? "";
      if (/\/workspaces\/ws-|\/lg-ws-|luminaguard/.test(mp)) out.add(`mount ${mp}`);
    }
  } catch {
    /* no /proc */
  }
  try {
    for (const dev of readdirSync("/sys/block").filter((d) => d.startsWith("loop"))) {
      try {
        const file = readFileSync(`/sys/block/${dev}/loop/backing_file`, "utf8").trim();
        if (file.includes("workspace-images")) out.add(`loop device /dev/${dev} → ${file}`);
      } catch {
        /* not bound */
      }
    }
  } catch {
    /* no sysfs */
  }
  return out;
}
const mountsBefore = mountsAndLoops();
// The suites test the in-process runtime: a developer's running daemon must not take their sandboxes
// (test/daemon starts daemons of its own and asks for them explicitly).
const env = { ...process.env, LUMINAGUARD_DAEMON: process.env.LUMINAGUARD_DAEMON ?? "0" };
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=spec", ...all], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", maxBuffer: 256 * 1024 * 1024, env });
process.stdout.write(r.stdout ?? "");
const num = (label) => Number((r.stdout ?? "").match(new RegExp(`^ℹ ${label} (\\d+)$`, "m"))?.[1] ?? 0);
// Sandboxes die moments after their host; give stragglers a few seconds before calling them leaks.
let left = [];
for (let i = 0; i < 50; i++) {
  left = [...leftovers(), ...[...mountsAndLoops()].filter((m) => !mountsBefore.has(m))];
  if (left.length === 0) break;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
}
if (left.length > 0) process.stdout.write(`\nrun-tests: left running or mounted after every test had ended (a leak):\n${left.map((l) => `  ${l}`).join("\n")}\n`);
const passed = num("pass");
const failed = num("fail") + num("cancelled") + (left.length > 0 ? 1 : 0);
const skipped = num("skipped");
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(r.status === 0 && failed === 0 && passed > 0 ? 0 : 1);
