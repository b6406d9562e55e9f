// Per-sandbox cgroups (memory and pids limits, kill-all on destroy) on cgroup v1 or v2, probed once.
//
// Where the sandbox cgroups live:
// - v1: `<hierarchy>/<our own cgroup>/luminaguard/<id>` in the memory and the pids hierarchy. Nesting
//   under the launcher's own cgroup keeps every limit the launcher runs under (a systemd unit, a
//   container) in force for its sandboxes: a sandbox must never escape into a less limited cgroup.
// - v2: `LUMINAGUARD_CGROUP_PARENT` (a delegated cgroup) if set, else `<mount>/luminaguard`. v2 forbids
//   processes in a cgroup whose controllers are delegated to children, so nesting under our own,
//   populated cgroup would mean moving this process; the root-level parent is what container runtimes'
//   cgroupfs drivers use.
// The `luminaguard` parent is removed again when it empties, so nothing is left once sandboxes are gone.
// pids.max counts every task in the sandbox, bwrap's pid-1 reaper and the agent included (and, when
// lg-jailer placed bwrap in the cgroup, bwrap's own process outside the sandbox).
// How a sandbox gets into its cgroup before it runs anything: launch.ts.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { recordCreated } from "../../runtime/created.js";

type CgroupVersion = "v1" | "v2";

export interface CgroupSupport {
  version: CgroupVersion | "none";
  /** A sandbox cgroup with memory and pids limits can be created here. */
  usable: boolean;
  /** Why not, in words a user can act on. */
  reason?: string;
  /** Parent directories (v1: memory then pids hierarchy; v2: one). */
  parents: string[];
  /** v1 `memory.memsw.limit_in_bytes` / v2 `memory.swap.max` exists, so swap is limited too. */
  swapLimited: boolean;
  /** v2 `cgroup.kill` exists (Linux 5.14+). */
  killFile: boolean;
}

interface CgroupLimits {
  memoryMiB: number;
  pidsMax: number;
}

const PARENT_NAME = "luminaguard";

interface MountEntry {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function readMounts(): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    const root = left[3];
    const mountPoint = left[4];
    const fsType = right[0];
    if (root === undefined || mountPoint === undefined || fsType === undefined) continue;
    entries.push({
      root: unescapeMountPath(root),
      mountPoint: unescapeMountPath(mountPoint),
      fsType,
      superOptions: (right[2] ?? "").split(","),
    });
  }
  return entries;
}

/** `/proc/self/cgroup`: controller list (v1, comma separated) or "" (v2) → our path in that hierarchy. */
function readOwnCgroups(): Map<string, string> {
  const own = new Map<string, string>();
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const controllers = m[1] ?? "";
    const path = m[2] ?? "/";
    if (controllers === "") own.set("", path);
    for (const c of controllers.split(",")) if (c !== "") own.set(c, path);
  }
  return own;
}

/** Our own cgroup's directory in a mounted hierarchy (a container may mount only a subtree). */
function ownDirIn(mount: MountEntry, ownPath: string): string {
  const root = mount.root === "/" ? "" : mount.root;
  if (root !== "" && !(ownPath === root || ownPath.startsWith(`${root}/`))) return mount.mountPoint;
  return join(mount.mountPoint, ownPath.slice(root.length));
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? "";
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function locate(): Omit<CgroupSupport, "usable" | "swapLimited" | "killFile"> & { v2Mount?: string } {
  const mounts = readMounts();
  const own = readOwnCgroups();
  const v1 = (controller: string): MountEntry | undefined =>
    mounts.find((m) => m.fsType === "cgroup" && m.superOptions.includes(controller));
  const mem = v1("memory");
  const pids = v1("pids");
  // A controller bound to a v1 hierarchy is unavailable in v2, so v1 wins when it holds both.
  if (mem && pids) {
    return {
      version: "v1",
      parents: [
        join(ownDirIn(mem, own.get("memory") ?? "/"), PARENT_NAME),
        join(ownDirIn(pids, own.get("pids") ?? "/"), PARENT_NAME),
      ],
    };
  }
  if (mem || pids) {
    return {
      version: "v1",
      parents: [],
      reason: `cgroup v1 has no ${mem ? "pids" : "memory"} hierarchy mounted: mount it (e.g. mount -t cgroup -o ${mem ? "pids" : "memory"} cgroup /sys/fs/cgroup/${mem ? "pids" : "memory"})`,
    };
  }
  const unified = mounts.find((m) => m.fsType === "cgroup2");
  if (!unified) return { version: "none", parents: [], reason: "no cgroup filesystem is mounted at all" };
  const controllers = readFileSync(join(unified.mountPoint, "cgroup.controllers"), "utf8").trim().split(/\s+/);
  const missing = ["memory", "pids"].filter((c) => !controllers.includes(c));
  if (missing.length > 0) {
    return {
      version: "v2",
      parents: [],
      reason: `cgroup v2 at ${unified.mountPoint} lacks the ${missing.join(" and ")} controller${missing.length > 1 ? "s" : ""} (bound to v1 or disabled on the kernel command line)`,
    };
  }
  const override = process.env["LUMINAGUARD_CGROUP_PARENT"];
  const parent = override !== undefined && override !== "" ? override : join(unified.mountPoint, PARENT_NAME);
  return { version: "v2", parents: [parent], v2Mount: unified.mountPoint };
}

/** v2: a cgroup can only enable controllers for its children that its own parent enabled for it. */
function enableV2Controllers(dir: string, mount: string): void {
  const chain: string[] = [];
  for (let d = dirname(dir); d.length >= mount.length; d = dirname(d)) {
    chain.unshift(d);
    if (d === mount) break;
  }
  for (const d of [...chain, dir]) {
    const file = join(d, "cgroup.subtree_control");
    const enabled = readFileSync(file, "utf8").trim().split(/\s+/);
    const need = ["memory", "pids"].filter((c) => !enabled.includes(c));
    if (need.length > 0) writeFileSync(file, need.map((c) => `+${c}`).join(" "));
  }
}

function mkdirParents(support: CgroupSupport, v2Mount: string | undefined): void {
  for (const parent of support.parents) {
    mkdirSync(parent, { recursive: true });
    if (support.version === "v2" && v2Mount !== undefined) enableV2Controllers(parent, v2Mount);
  }
}

function writeLimits(support: CgroupSupport, dirs: readonly string[], limits: CgroupLimits): void {
  const bytes = String(Math.floor(limits.memoryMiB) * 1024 * 1024);
  if (support.version === "v1") {
    const [memDir, pidsDir] = dirs;
    if (memDir === undefined || pidsDir === undefined) throw new Error("v1 needs a memory and a pids cgroup");
    writeFileSync(join(memDir, "memory.limit_in_bytes"), bytes);
    // memsw (memory+swap) must be >= the memory limit, so it is written second; equal means no swap.
    if (support.swapLimited) writeFileSync(join(memDir, "memory.memsw.limit_in_bytes"), bytes);
    writeFileSync(join(pidsDir, "pids.max"), String(limits.pidsMax));
  } else {
    const [dir] = dirs;
    if (dir === undefined) throw new Error("v2 needs a cgroup");
    writeFileSync(join(dir, "memory.max"), bytes);
    if (support.swapLimited) writeFileSync(join(dir, "memory.swap.max"), "0");
    writeFileSync(join(dir, "pids.max"), String(limits.pidsMax));
  }
}

/** Removes the shared parent when it is empty; a concurrent sandbox keeps it busy, which is fine. */
function tryRemoveParents(parents: readonly string[]): void {
  for (const parent of parents) {
    try {
      rmdirSync(parent);
    } catch {
      /* busy (another sandbox) or already gone */
    }
  }
}

/** A sandbox cgroup this old and empty was left by a process that died before its destroy(). */
const STALE_AFTER_MS = 60_000;

/**
 * Removes empty sandbox cgroups left behind by a LuminaGuard process that was killed (its sandboxes
 * died with it through --die-with-parent, but nobody removed their directories). The age check keeps
 * it away from a concurrent process's cgroup that is created but not yet populated.
 */
export function sweepStale(parents: readonly string[]): number {
  let removed = 0;
  for (const parent of parents) {
    let names: string[];
    try {
      names = readdirSync(parent);
    } catch {
      continue;
    }
    for (const name of names) {
      const dir = join(parent, name);
      try {
        if (!statSync(dir).isDirectory() || Date.now() - statSync(dir).mtimeMs < STALE_AFTER_MS) continue;
        if (readPids(dir).length > 0) continue;
        rmdirSync(dir);
        removed++;
      } catch {
        /* busy, in use or gone: not ours to worry about */
      }
    }
  }
  if (removed > 0) log.info({ removed }, "removed stale sandbox cgroups");
  return removed;
}

let probed: { support: CgroupSupport; v2Mount: string | undefined } | undefined;

/**
 * Finds the cgroup version and proves a limited sandbox cgroup can be made there (mkdir, limits,
 * rmdir), once per process. Never throws: an unusable setup comes back with a reason.
 */
export function probeCgroups(): CgroupSupport {
  if (probed) return probed.support;
  let support: CgroupSupport;
  let v2Mount: string | undefined;
  try {
    const found = locate();
    v2Mount = found.v2Mount;
    const first = found.parents[0];
    const swapFile = found.version === "v1" ? "memory.memsw.limit_in_bytes" : "memory.swap.max";
    support = {
      version: found.version,
      usable: false,
      parents: found.parents,
      swapLimited: false,
      killFile: false,
      ...(found.reason === undefined ? {} : { reason: found.reason }),
    };
    if (found.reason === undefined && first !== undefined) {
      const trial = `probe-${process.pid}-${Date.now()}`;
      const dirs = found.parents.map((p) => join(p, trial));
      try {
        mkdirParents(support, v2Mount);
        for (const d of dirs) mkdirSync(d);
        support.swapLimited = existsSync(join(dirs[0] as string, swapFile));
        support.killFile = found.version === "v2" && existsSync(join(dirs[0] as string, "cgroup.kill"));
        writeLimits(support, dirs, { memoryMiB: 64, pidsMax: 16 });
        support.usable = true;
        sweepStale(found.parents);
      } catch (err) {
        const code = errnoOf(err);
        support.reason =
          code === "EACCES" || code === "EPERM" || code === "EROFS"
            ? `cannot create cgroups under ${dirname(first)} (${code}): run as root` +
              (found.version === "v2" ? ", or set LUMINAGUARD_CGROUP_PARENT to a cgroup delegated to this user with memory and pids enabled" : "")
            : `cgroup ${found.version} trial under ${dirname(first)} failed: ${describe(err)}`;
      } finally {
        for (const d of dirs) {
          try {
            rmdirSync(d);
          } catch {
            /* never created */
          }
        }
        tryRemoveParents(found.parents);
      }
    }
  } catch (err) {
    support = { version: "none", usable: false, parents: [], swapLimited: false, killFile: false, reason: `cannot read cgroup setup: ${describe(err)}` };
  }
  probed = { support, v2Mount };
  return support;
}

function readPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, "cgroup.procs"), "utf8")
      .split("\n")
      .filter((s) => s !== "")
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

/** One sandbox's cgroup (one directory per v1 hierarchy, or one v2 directory). */
export class SandboxCgroup {
  private destroying: Promise<void> | undefined;

  private constructor(
    readonly support: CgroupSupport,
    /** v1: [memory, pids]; v2: [unified]. */
    readonly dirs: readonly string[],
    private readonly limitsSet: CgroupLimits,
  ) {}

  /** Creates the cgroup with its limits set; nothing is in it yet. */
  static create(id: string, limits: CgroupLimits): SandboxCgroup {
    const support = probeCgroups();
    if (!support.usable) throw new LuminaGuardError("BACKEND_UNAVAILABLE", `cgroups unusable: ${support.reason ?? "unknown"}`);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw new LuminaGuardError("INVALID_ARGUMENT", `unsafe cgroup name ${JSON.stringify(id)}`);
    const dirs = support.parents.map((p) => join(p, id));
    const created: string[] = [];
    try {
      // A concurrent destroy may remove the empty shared parent between our mkdirs: retry then.
      for (let attempt = 0; ; attempt++) {
        try {
          mkdirParents(support, probed?.v2Mount);
          for (const d of dirs) {
            if (created.includes(d)) continue;
            mkdirSync(d);
            recordCreated(d);
            created.push(d);
          }
          break;
        } catch (err) {
          if (errnoOf(err) !== "ENOENT" || attempt >= 3) throw err;
        }
      }
      writeLimits(support, dirs, limits);
    } catch (err) {
      for (const d of created.reverse()) {
        try {
          rmdirSync(d);
        } catch {
          /* best effort */
        }
      }
      if (err instanceof LuminaGuardError) throw err;
      throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `cannot create cgroup for ${id}: ${describe(err)}`, { cause: err });
    }
    return new SandboxCgroup(support, dirs, limits);
  }

  /** Whether process `pid` is in this sandbox cgroup, in every hierarchy. */
  holds(pid: number): boolean {
    return this.dirs.every((d) => {
      try {
        return readFileSync(join(d, "cgroup.procs"), "utf8").split("\n").includes(String(pid));
      } catch {
        return false;
      }
    });
  }

  /**
   * Moves a process (all its threads) in; its children from now on are born inside. A cgroup that
   * is gone (ENOENT) is made again with its limits first: while it is still empty, another process's
   * sweep of stale cgroups (a daemon's start-up recovery) may take it, and a spawn slowed past that
   * sweep's grace by many others at once (100 micro-VMs) failed with SANDBOX_SPAWN_FAILED. The
   * process being added runs no sandboxed code yet (launch.ts), so nothing escaped the limits meanwhile.
   *
   * Asynchronous: the kernel makes the first migration into a hierarchy wait for an RCU grace period
   * (cgroup_threadgroup_rwsem taken for writing), 5-20 ms on these machines. Written synchronously
   * that stalled the event loop: every call of every other sandbox of a daemon, per spawn.
   */
  async add(pid: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        for (const d of this.dirs) await writeFile(join(d, "cgroup.procs"), String(pid));
        return;
      } catch (err) {
        if (errnoOf(err) !== "ENOENT" || attempt >= 3) throw err;
        log.info({ dirs: this.dirs }, "sandbox cgroup removed before its process was added; making it again");
        mkdirParents(this.support, probed?.v2Mount);
        for (const d of this.dirs) {
          try {
            mkdirSync(d);
            recordCreated(d);
          } catch (e) {
            if (errnoOf(e) !== "EEXIST") throw e;
          }
        }
        writeLimits(this.support, this.dirs, this.limitsSet);
      }
    }
  }

  /** Host pids of every process in the sandbox cgroup. */
  procs(): number[] {
    const all = new Set<number>();
    for (const d of this.dirs) for (const p of readPids(d)) all.add(p);
    return [...all].sort((a, b) => a - b);
  }

  /** What the limits actually are, read back from the kernel. */
  limits(): { memoryBytes: number; pidsMax: number | "max" } {
    const read = (f: string): string => readFileSync(f, "utf8").trim();
    if (this.support.version === "v1") {
      const [memDir, pidsDir] = this.dirs as [string, string];
      const pids = read(join(pidsDir, "pids.max"));
      return { memoryBytes: Number(read(join(memDir, "memory.limit_in_bytes"))), pidsMax: pids === "max" ? "max" : Number(pids) };
    }
    const [dir] = this.dirs as [string];
    const pids = read(join(dir, "pids.max"));
    return { memoryBytes: Number(read(join(dir, "memory.max"))), pidsMax: pids === "max" ? "max" : Number(pids) };
  }

  /** v1 `memory.failcnt` / v2 `memory.events` oom_kill: how often the memory limit bit. */
  memoryEvents(): { oomKills: number | undefined; failcnt: number | undefined } {
    try {
      if (this.support.version === "v1") {
        const memDir = this.dirs[0] as string;
        const oc = readFileSync(join(memDir, "memory.oom_control"), "utf8");
        const kills = /oom_kill (\d+)/.exec(oc);
        return { oomKills: kills ? Number(kills[1]) : undefined, failcnt: Number(readFileSync(join(memDir, "memory.failcnt"), "utf8")) };
      }
      const ev = readFileSync(join(this.dirs[0] as string, "memory.events"), "utf8");
      const kills = /oom_kill (\d+)/.exec(ev);
      return { oomKills: kills ? Number(kills[1]) : undefined, failcnt: undefined };
    } catch {
      return { oomKills: undefined, failcnt: undefined };
    }
  }

  /**
   * Kills everything inside, waits until the cgroup is empty and removes it. Idempotent. v2 uses
   * `cgroup.kill` (atomic, forks cannot race it); v1 has no such file, so it loops SIGKILL over
   * cgroup.procs until a read comes back empty: a forking process is killed on the next pass, and
   * pids.max bounds how many there can be.
   */
  destroy(timeoutMs = 10_000): Promise<void> {
    this.destroying ??= this.doDestroy(timeoutMs);
    return this.destroying;
  }

  private async doDestroy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    if (this.support.version === "v2" && this.support.killFile) {
      for (const d of this.dirs) {
        try {
          writeFileSync(join(d, "cgroup.kill"), "1");
        } catch (err) {
          if (errnoOf(err) !== "ENOENT") log.warn({ err: describe(err), dir: d }, "cgroup.kill failed");
        }
      }
    }
    const pending = new Set(this.dirs);
    for (let pass = 0; pending.size > 0; pass++) {
      for (const d of [...pending]) {
        if (!existsSync(d)) {
          pending.delete(d);
          continue;
        }
        const pids = readPids(d);
        for (const pid of pids) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* exited meanwhile */
          }
        }
        if (pids.length > 0) continue;
        try {
          rmdirSync(d);
          pending.delete(d);
        } catch (err) {
          // EBUSY: the last tasks are still exiting (a dying task leaves cgroup.procs before the
          // cgroup is released); retry.
          if (errnoOf(err) === "ENOENT") pending.delete(d);
          else if (errnoOf(err) !== "EBUSY") throw new LuminaGuardError("INTERNAL", `cannot remove cgroup ${d}: ${describe(err)}`, { cause: err });
        }
      }
      if (pending.size === 0) break;
      if (Date.now() > deadline) {
        throw new LuminaGuardError("INTERNAL", `cgroup not empty after ${timeoutMs} ms: ${[...pending].join(", ")}`, {
          details: { pids: [...pending].flatMap(readPids) },
        });
      }
      await sleep(pass < 20 ? 1 : 10);
    }
    tryRemoveParents(this.support.parents);
  }
}
