// What a benchmark must not leave behind: processes, run-dir entries, cgroups, temp workspaces.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDir } from "../paths.js";

export interface LeakSnapshot {
  processes: string[];
  runDir: string[];
  cgroups: string[];
  temp: string[];
}

const OURS = /qemu-system|bwrap|lg-agent|setpriv/;

function descendants(root: number): string[] {
  const children = new Map<number, number[]>();
  const cmd = new Map<number, string>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const pid = Number(name);
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
      cmd.set(pid, readFileSync(`/proc/${name}/cmdline`, "utf8").replace(/\0/g, " ").trim());
    } catch {
      /* exited while we looked */
    }
  }
  const out: string[] = [];
  const stack = [...(children.get(root) ?? [])];
  while (stack.length) {
    const pid = stack.pop() as number;
    const c = cmd.get(pid) ?? "";
    if (OURS.test(c)) out.push(`${pid} ${c.slice(0, 120)}`);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
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
    processes: descendants(process.pid),
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
