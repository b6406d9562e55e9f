// The /proc reader on real processes: a child whose name has spaces and parentheses, a tree of shells, a zombie.
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ancestors, childrenByParent, cmdline, descendants, listPids, liveStartTime, liveUids, pidAlive, procStat, procStatus } from "../../src/util/procfs.js";
import { waitFor } from "../fixtures.js";

/** A child that runs until killed, whose own children are `sleep`s (so the tree has two levels). */
function tree(t: { after: (fn: () => void) => void }, script: string): ChildProcess {
  const child = spawn("/bin/sh", ["-c", script], { stdio: "ignore" });
  t.after(() => {
    for (const p of child.pid ? descendants(child.pid) : []) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    child.kill("SIGKILL");
  });
  return child;
}

describe("procfs", () => {
  test("stat of this process: comm, state, ppid, start time", () => {
    const s = procStat(process.pid);
    assert.ok(s);
    assert.equal(s.pid, process.pid);
    assert.equal(s.ppid, process.ppid);
    assert.match(s.startTime, /^\d+$/);
    assert.ok(["R", "S"].includes(s.state), s.state);
    assert.equal(liveStartTime(process.pid), s.startTime);
    assert.ok(pidAlive(process.pid));
    assert.ok(listPids().includes(process.pid));
    assert.equal(procStatus(process.pid)?.["Pid"], String(process.pid));
    assert.equal(procStatus(process.pid)?.["PPid"], String(process.ppid));
  });

  test("a command name with spaces and parentheses does not shift the fields", async (t) => {
    // The kernel's comm is the name of the file executed: a symlink to sleep named ") S 1 (".
    const dir = mkdtempSync(join(tmpdir(), "lg-procfs-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const exe = join(dir, ") S 1 (");
    symlinkSync(execFileSync("/bin/sh", ["-c", "command -v sleep"], { encoding: "utf8" }).trim(), exe);
    const child = spawn(exe, ["30"], { stdio: "ignore" });
    t.after(() => child.kill("SIGKILL"));
    const pid = child.pid as number;
    assert.ok(await waitFor(() => procStat(pid)?.comm === ") S 1 (", 5000), JSON.stringify(procStat(pid)));
    const s = procStat(pid);
    assert.equal(s?.ppid, process.pid);
    assert.match(s?.state ?? "", /^[RS]$/, "the state field, not a piece of the name");
    assert.equal(cmdline(pid), `${exe} 30`);
    assert.deepEqual(childrenByParent().get(process.pid)?.includes(pid), true);
  });

  test("descendants, ancestors and cmdline of a real two-level tree", async (t) => {
    const child = tree(t, "sleep 30.1 & sleep 30.2 & (sleep 30.3 & wait) & wait");
    const pid = child.pid as number;
    assert.ok(await waitFor(() => descendants(pid).filter((p) => (cmdline(p) ?? "").startsWith("sleep 30.")).length === 3, 5000));
    const below = descendants(pid);
    const deepest = below.find((p) => cmdline(p) === "sleep 30.3") as number;
    assert.ok(deepest !== undefined, below.map((p) => cmdline(p)).join(" | "));
    // Children come before grandchildren.
    const direct = childrenByParent().get(pid) ?? [];
    assert.ok(!direct.includes(deepest));
    assert.ok(below.indexOf(deepest) >= direct.length);
    const up = ancestors(deepest);
    assert.equal(up[1], pid, "the subshell, then the shell");
    assert.ok(up.includes(process.pid));
    assert.equal(procStat(deepest)?.comm, "sleep");
  });

  test("a zombie is not alive and has no live start time; a gone pid reads as nothing", async (t) => {
    // Killed, the child is a zombie until node reaps it, then gone: neither counts as alive.
    const child = tree(t, "exec sleep 30");
    const pid = child.pid as number;
    assert.ok(pidAlive(pid));
    assert.deepEqual(liveUids(pid), [process.getuid?.()], "the uids of a live process, each once");
    const start = liveStartTime(pid);
    assert.ok(start);
    const exited = once(child, "exit");
    process.kill(pid, "SIGKILL");
    const zombie = await waitFor(() => procStat(pid)?.state === "Z" || procStat(pid) === undefined, 5000);
    assert.ok(zombie);
    assert.equal(pidAlive(pid), false);
    assert.equal(liveStartTime(pid), undefined);
    assert.equal(liveUids(pid), undefined, "a zombie runs as no one");
    await exited;
    await waitFor(() => procStat(pid) === undefined, 5000);
    assert.equal(procStat(pid), undefined);
    assert.equal(procStatus(pid), undefined);
    assert.equal(liveUids(pid), undefined);
    assert.equal(cmdline(pid), undefined);
    assert.deepEqual(descendants(pid), []);
  });
});
