// What a benchmark must not leave behind: processes, run-dir entries, cgroups, temp workspaces.
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDir } from "../paths.js";
import { cmdline, descendants } from "../util/procfs.js";

export interface LeakSnapshot {
  processes: string[];
  runDir: string[];
  cgroups: string[];
  temp: string[];
}

const OURS = /qemu-system|bwrap|lg-agent|setpriv/;

/** Our sandbox processes (QEMU, bwrap, the agent) still below `root`, as "pid command line". */
function sandboxDescendants(root: number): string[] {
  return descendants(root).flatMap((pid) => {
    const c = cmdline(pid) ?? "";
    return OURS.test(c) ? [`${pid} ${c.slice(0, 120)}`] : [];
  });
}

/** Sandbox cgroups live under a `luminaguard` parent somewhere below each hierarchy (v1) or the v2 root. */
function cgroupDirs(): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      if (e.name === "luminaguard") {
        for (const c of readdirSync(p, { withFileTypes: true })) if (c.isDirectory()) out.push(join(p, c.name));
      } else if (depth > 0) walk(p, depth - 1);
    }
  };
  if (existsSync("/sys/fs/cgroup")) walk("/sys/fs/cgroup", 3);
  return out;
}

export function leakSnapshot(): LeakSnapshot {
  const rd = runDir();
  return {
    processes: sandboxDescendants(process.pid),
    runDir: [
      ...(existsSync(rd) ? readdirSync(rd).filter((n) => n !== "workspaces").map((n) => join(rd, n)) : []),
      ...(existsSync(join(rd, "workspaces")) ? readdirSync(join(rd, "workspaces")).map((n) => join(rd, "workspaces", n)) : []),
    ],
    cgroups: cgroupDirs(),
    temp: readdirSync(tmpdir()).filter((n) => n.startsWith("lg-ws-") || n.startsWith("lg-bench-")).map((n) => join(tmpdir(), n)),
  };
}

/** Everything present now that was not there before, as lines a person can act on. */
export function newLeaks(before: LeakSnapshot, after: LeakSnapshot = leakSnapshot()): string[] {
  const diff = (k: keyof LeakSnapshot): string[] => after[k].filter((x) => !before[k].includes(x)).map((x) => `${k}: ${x}`);
  return [...diff("processes"), ...diff("runDir"), ...diff("cgroups"), ...diff("temp")];
}
