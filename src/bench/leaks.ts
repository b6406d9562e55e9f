// What a benchmark must not leave behind: processes, mounts, run-dir entries, cgroups, workspaces,
// workspace images, temp directories. Only its own: the runtime records what this process creates
// while a check watches (runtime/created.ts), so a daemon or another run beside it, creating and
// removing sandboxes of its own meanwhile, is never counted as a leak of this one.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { activeRunDir } from "../paths.js";
import { watchCreated, type CreatedWatch } from "../runtime/created.js";
import { cmdline, descendants } from "../util/procfs.js";

export interface LeakSnapshot {
  processes: string[];
  mounts: string[];
  runDir: string[];
  cgroups: string[];
  temp: string[];
  /** The record of what this process creates from now on (started by leakSnapshot()). */
  watch?: CreatedWatch;
}

const OURS = /qemu-system|bwrap|lg-agent|setpriv/;

/** Our sandbox processes (QEMU, bwrap, the agent) still below `root`, as "pid command line". */
function sandboxDescendants(root: number): string[] {
  return descendants(root).flatMap((pid) => {
    const c = cmdline(pid) ?? "";
    return OURS.test(c) ? [`${pid} ${c.slice(0, 120)}`] : [];
  });
}

/** Every sandbox-like process on the machine whose command line names one of `paths` (one that left our tree). */
function processesNaming(paths: readonly string[]): string[] {
  if (paths.length === 0) return [];
  const out: string[] = [];
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((n) => /^\d+$/.test(n));
  } catch {
    return [];
  }
  for (const p of pids) {
    const c = cmdline(Number(p));
    if (c === undefined || !OURS.test(c)) continue;
    if (paths.some((x) => c.includes(x))) out.push(`${p} ${c.slice(0, 120)}`);
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
        try {
          for (const c of readdirSync(p, { withFileTypes: true })) if (c.isDirectory()) out.push(join(p, c.name));
        } catch {
          /* removed meanwhile */
        }
      } else if (depth > 0) walk(p, depth - 1);
    }
  };
  if (existsSync("/sys/fs/cgroup")) walk("/sys/fs/cgroup", 3);
  return out;
}

/** Mount points (mountinfo field 5, octal escapes undone) below `under`. */
function mountsBelow(under: string | undefined): string[] {
  if (under === undefined) return [];
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .map((l) => (l.split(" ")[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === under || m.startsWith(`${under}/`));
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).map((n) => join(dir, n));
  } catch {
    return [];
  }
}

function runDirEntries(): string[] {
  const rd = activeRunDir();
  if (rd === undefined) return [];
  return [...list(rd).filter((p) => basename(p) !== "workspaces"), ...list(join(rd, "workspaces"))];
}

function exists(p: string): boolean {
  try {
    return existsSync(p);
  } catch {
    return false;
  }
}

/** The machine as it is now (everything, whoever made it), and, first time, the start of this run's record. */
export function leakSnapshot(): LeakSnapshot {
  return { ...leakSnapshotNoWatch(), watch: watchCreated() };
}

const KINDS = ["processes", "mounts", "runDir", "cgroups", "temp"] as const;

/** What kind of leftover a created path is, for the message. */
function kindOf(path: string): string {
  if (path.startsWith("/sys/fs/cgroup/")) return "cgroups";
  if (path.endsWith(".ext4")) return "workspace-images";
  const rd = activeRunDir();
  if (rd !== undefined && path.startsWith(`${rd}/`)) return "runDir";
  return "temp";
}

/**
 * This run's leftovers, as lines a person can act on: sandbox processes below this process or naming
 * something it created, mounts on what it created, and every run directory, cgroup, workspace, image
 * and temp directory it created that still exists. Without a record (a snapshot taken elsewhere),
 * falls back to everything new since `before`.
 */
export function newLeaks(before: LeakSnapshot, after: LeakSnapshot = leakSnapshotNoWatch()): string[] {
  if (before.watch === undefined) {
    const diff = (k: (typeof KINDS)[number]): string[] => after[k].filter((x) => !before[k].includes(x)).map((x) => `${k}: ${x}`);
    return KINDS.flatMap(diff);
  }
  const created = before.watch.created();
  const stillThere = created.filter(exists);
  const procs = [...new Set([...after.processes, ...processesNaming(created)])].filter((p) => !before.processes.includes(p));
  const mounts = after.mounts.filter((m) => created.some((c) => m === c || m.startsWith(`${c}/`)));
  return [...procs.map((p) => `processes: ${p}`), ...mounts.map((m) => `mounts: ${m}`), ...stillThere.map((p) => `${kindOf(p)}: ${p}`)];
}

/**
 * What appeared since `before` that this run did not create (another process's sandboxes): not a
 * leak of this run, reported so a reader knows the machine was shared.
 */
export function foreignSince(before: LeakSnapshot): string[] {
  const after = leakSnapshotNoWatch();
  const created = new Set(before.watch?.created() ?? []);
  const out: string[] = [];
  for (const k of ["runDir", "cgroups", "temp"] as const) {
    for (const x of after[k]) if (!before[k].includes(x) && !created.has(x)) out.push(`${k}: ${x}`);
  }
  return out;
}

/** Ends the record started by `snapshot`. */
export function endLeakCheck(snapshot: LeakSnapshot): void {
  snapshot.watch?.stop();
}

function leakSnapshotNoWatch(): LeakSnapshot {
  return {
    processes: sandboxDescendants(process.pid),
    mounts: mountsBelow(activeRunDir()),
    runDir: runDirEntries(),
    cgroups: cgroupDirs(),
    temp: readdirSync(tmpdir()).filter((n) => n.startsWith("lg-ws-") || n.startsWith("lg-bench-")).map((n) => join(tmpdir(), n)),
  };
}

/**
 * The end of a run's leak check: waits up to `waitMs` for what the run started to be reaped, notes in
 * `notes` what another process made meanwhile (not a leak of this run), ends the record, and returns
 * this run's leftovers (empty when nothing is left).
 */
export async function settleLeaks(before: LeakSnapshot, notes: string[], waitMs = 5000): Promise<string[]> {
  let leaks = newLeaks(before);
  for (const end = performance.now() + waitMs; leaks.length > 0 && performance.now() < end; leaks = newLeaks(before)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const foreign = foreignSince(before);
  if (foreign.length) notes.push(`not ours (another process's sandboxes during the run): ${foreign.length} entries`);
  endLeakCheck(before);
  return leaks;
}

/** Every path below `dir` (lost+found not entered; a directory that vanishes meanwhile is skipped). */
export function pathsBelow(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      out.push(join(d, e.name));
      if (e.isDirectory() && e.name !== "lost+found") walk(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

/** Every write_file temp file (`.lg-*`) left below `dir`. */
export function tempFilesBelow(dir: string): string[] {
  return pathsBelow(dir).filter((p) => basename(p).startsWith(".lg-"));
}
