// Start-up recovery: what a crashed LuminaGuard process left behind (VM run directories, VMM identity locks,
// workspaces and their mounts and images, cgroups), found by name where the runtime puts them and removed
// when nothing alive holds them.
//
// "Alive" is decided by the kernel, not by names: a VM's run directory is alive while a process has its
// console log open (QEMU does, through its whole life) or runs as the directory's owner (the VMM identity);
// an identity while the process that took it lives (what runs as it after that is an orphan and is
// killed: sandbox/jailer/identity.ts); a workspace while a process has it as cwd, root or an
// open descriptor (the guest agent does; QEMU's 9p export does); a cgroup while it has a process. Anything
// younger than `graceMs` is left alone too: another process may be between creating it and using it.
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, rmSync, rmdirSync, statSync, unlinkSync, type Stats } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { log } from "../log.js";
import { attachedImages, backingFile, imageInTheMaking } from "../runtime/disk.js";
import { cacheDir, knownRunDirs, RUN_DIR_TEMP_PREFIX } from "../paths.js";
import { reapOrphanedIdentities, vmmIdBase } from "../sandbox/jailer/identity.js";
import { probeCgroups } from "../sandbox/namespace/cgroup.js";
import { run } from "../util/proc.js";
import { dying, listPids, liveUids } from "../util/procfs.js";

export type LeftoverKind = "orphan-process" | "vm-run-dir" | "vmm-identity" | "workspace" | "workspace-mount" | "workspace-image" | "cgroup" | "run-dir" | "placeholder";

export interface Removed {
  kind: LeftoverKind;
  path: string;
  /** Why it counted as dead. */
  why: string;
}

export interface RecoveryReport {
  removed: Removed[];
  /** Leftover-looking things that something alive still holds (or that are too young to judge). */
  kept: number;
  /** What could not be removed, with the reason. */
  failed: { path: string; error: string }[];
}

export interface RecoverOptions {
  /** Anything younger than this is left alone (another process may be about to use it). Default 5 s. */
  graceMs?: number;
  /** Runtime directories to look in; default knownRunDirs() and this user's temporary ones in tmpdir(). */
  runDirs?: string[];
  /** Cgroup parents (the `luminaguard` directories); default from probeCgroups(). */
  cgroupParents?: string[];
  /** Where size-limited workspace images live; default $LUMINAGUARD_CACHE/workspace-images. */
  imagesDir?: string;
}

function euid(): number {
  return process.geteuid?.() ?? -1;
}

function lstatOrNone(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function key(st: Stats): string {
  return `${st.dev}:${st.ino}`;
}

interface Liveness {
  uids: Set<number>;
  /** dev:ino of every file, directory and cwd/root a live process holds. */
  held: Set<string>;
}

/** Every live process's uids and what it holds open; only what we may read (as root: everything). */
function liveness(): Liveness {
  const uids = new Set<number>();
  const held = new Set<string>();
  for (const pid of listPids()) {
    // A zombie holds nothing but its pid; a process gone meanwhile holds nothing either.
    const ids = liveUids(pid);
    if (!ids) continue;
    for (const u of ids) uids.add(u);
    for (const link of ["cwd", "root"]) {
      try {
        held.add(key(statSync(`/proc/${pid}/${link}`)));
      } catch {
        /* not ours to read, or gone */
      }
    }
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        held.add(key(statSync(`/proc/${pid}/fd/${fd}`)));
      } catch {
        /* closed meanwhile, or a socket without an inode we care about */
      }
    }
  }
  return { uids, held };
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mount points in our mount namespace (octal escapes undone), each with its source device (the last mount on top). */
function mountPoints(): Map<string, string> {
  const out = new Map<string, string>();
  try {
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const [pre, post] = line.split(" - ");
      const mp = pre?.split(" ")[4];
      if (mp !== undefined) out.set(unescapeMount(mp), unescapeMount(post?.split(" ")[1] ?? ""));
    }
  } catch {
    /* no /proc: nothing is mounted that we could see */
  }
  return out;
}

/**
 * The last path components of the mount roots (mountinfo's 4th field) that contain `marker`, in the
 * mount namespace of every live process we may read: a directory bound into another namespace.
 */
function mountRootsNamed(marker: string): Set<string> {
  const out = new Set<string>();
  const seen = new Set<string>();
  for (const pid of listPids()) {
    let ns: string;
    try {
      ns = readlinkSync(`/proc/${pid}/ns/mnt`);
    } catch {
      continue;
    }
    if (seen.has(ns)) continue;
    seen.add(ns);
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/mountinfo`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const root = line.split(" ")[3];
      if (root === undefined || !root.includes(marker)) continue;
      const last = unescapeMount(root).split("/").pop();
      if (last) out.add(last);
    }
  }
  return out;
}

/** The image file a loop device is bound to, if any. */

function umountTool(): string {
  for (const d of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) if (existsSync(join(d, "umount"))) return join(d, "umount");
  return "umount";
}

/** How long recovery waits for processes that are being killed to finish exiting. */
const DYING_WAIT_MS = 1_000;

/** Waits up to `ms` for every dying process (procfs dying()) to be gone; returns those still there. */
async function dyingGone(ms: number): Promise<number[]> {
  const until = performance.now() + ms;
  for (;;) {
    const left = listPids().filter((pid) => pid !== process.pid && dying(pid));
    if (left.length === 0 || performance.now() >= until) return left;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** This user's per-process temporary runtime directories (`luminaguard-<uid>-*` in tmpdir()). */
function tempRunDirs(): string[] {
  try {
    return readdirSync(tmpdir())
      .filter((n) => n.startsWith(`${RUN_DIR_TEMP_PREFIX}${euid()}-`))
      .map((n) => join(tmpdir(), n));
  } catch {
    return [];
  }
}

/** A directory of ours we may clean: a real directory (never a symlink) owned by us. */
function ownDir(path: string): boolean {
  const st = lstatOrNone(path);
  return st !== undefined && st.isDirectory() && st.uid === euid();
}

export async function recover(o: RecoverOptions = {}): Promise<RecoveryReport> {
  const graceMs = o.graceMs ?? 5_000;
  const report: RecoveryReport = { removed: [], kept: 0, failed: [] };
  // First what still runs as the host identity of a process that is gone (killed here), so that what
  // those orphans held is free for the passes below.
  const reaped = reapOrphanedIdentities({ graceMs });
  for (const k of reaped.killed) report.removed.push({ kind: "orphan-process", path: `pid ${k.pid}`, why: `it ran as uid ${k.uid}, whose holder is gone` });
  for (const path of reaped.released) report.removed.push({ kind: "vmm-identity", path, why: "its holder is gone and nothing runs as its uid" });
  report.kept += reaped.kept;
  // A process on its way out still holds its files until its exit is through: a dead host's jailer or
  // bwrap ended by its parent-death signal, an orphan killed above. Judged now, a workspace it holds
  // would be kept (and stay mounted until the next recovery) although it is free moments later.
  const stillDying = await dyingGone(DYING_WAIT_MS);
  if (stillDying.length > 0) log.warn({ pids: stillDying }, "processes being killed had not exited after a second; what they hold is kept");
  const now = Date.now();
  const young = (st: Stats): boolean => now - st.mtimeMs < graceMs;
  const live = liveness();
  const remove = (kind: LeftoverKind, path: string, why: string, fn: () => void): void => {
    try {
      fn();
      report.removed.push({ kind, path, why });
      log.info({ kind, path, why }, "recovery: removed a leftover");
    } catch (err) {
      report.failed.push({ path, error: (err as Error).message });
    }
  };

  const runDirs = o.runDirs ?? [...new Set([...knownRunDirs(), ...tempRunDirs()])];
  const mounts = mountPoints();
  let placeholdersInUse: Set<string> | undefined;
  for (const dir of runDirs) {
    if (!ownDir(dir)) continue;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(dir, name);
      const st = lstatOrNone(path);
      if (!st?.isDirectory()) continue;
      if (name.startsWith("vm-")) {
        // QEMU keeps its console log open for its whole life; the directory belongs to its VMM identity.
        const console = lstatOrNone(join(path, "console.log"));
        if ((console && live.held.has(key(console))) || (st.uid !== euid() && live.uids.has(st.uid)) || young(st)) report.kept++;
        else remove("vm-run-dir", path, "no process holds its console log or runs as its owner", () => rmSync(path, { recursive: true, force: true }));
      } else if (name.startsWith("awaiting-")) {
        // The empty placeholder of a file jail started ahead of its sandbox: its jail's mount
        // namespace has it as the root of a mount while the jail lives.
        if (young(st) || (placeholdersInUse ??= mountRootsNamed("/awaiting-")).has(name)) report.kept++;
        else remove("placeholder", path, "no live process has it mounted", () => rmdirSync(path));
      } else if (name === "vmm-ids") {
        recoverIdentities(path, live, young, report, remove);
      } else if (name === "workspaces") {
        await recoverWorkspaces(path, live, mounts, young, report, remove);
      }
    }
    // A temporary runtime directory of a process that is gone: empty now, removed.
    if (dir.startsWith(join(tmpdir(), RUN_DIR_TEMP_PREFIX))) {
      const st = lstatOrNone(dir);
      const rest = (() => {
        try {
          return readdirSync(dir).filter((n) => !(n === "workspaces" || n === "vmm-ids") || readdirSync(join(dir, n)).length > 0);
        } catch {
          return ["?"];
        }
      })();
      if (st && rest.length === 0 && !young(st) && !live.held.has(key(st))) {
        remove("run-dir", dir, "a temporary runtime directory with nothing alive in it", () => rmSync(dir, { recursive: true, force: true }));
      }
    }
  }

  // Size-limited workspace images: deleted once no loop device has them attached.
  const images = o.imagesDir ?? join(cacheDir(), "workspace-images");
  if (ownDir(images)) {
    const attached = attachedImages();
    for (const name of readdirSync(images)) {
      const path = join(images, name);
      const st = lstatOrNone(path);
      if (!name.endsWith(".ext4") || !st?.isFile()) continue;
      if (attached.has(path) || young(st) || imageInTheMaking(path, st.mtimeMs, now)) report.kept++;
      else remove("workspace-image", path, "not attached to any loop device", () => rmSync(path, { force: true }));
    }
  }

  // Sandbox cgroups with no process left in them.
  const parents = o.cgroupParents ?? probeCgroups().parents;
  for (const parent of parents) {
    let names: string[];
    try {
      names = readdirSync(parent, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(parent, name);
      const st = lstatOrNone(path);
      if (!st) continue;
      let procs = "";
      try {
        procs = readFileSync(join(path, "cgroup.procs"), "utf8").trim();
      } catch {
        continue;
      }
      if (procs !== "" || young(st)) report.kept++;
      else remove("cgroup", path, "no process left in it", () => rmdirSync(path));
    }
    try {
      rmdirSync(parent); // the shared parent, once it is empty
    } catch {
      /* busy (live sandboxes) or already gone */
    }
  }
  return report;
}

type RemoveFn = (kind: LeftoverKind, path: string, why: string, fn: () => void) => void;

/**
 * VMM identity locks of older versions, kept per runtime directory (`vmm-ids/<slot>`): held while a
 * process runs as uid base+slot. Today's are machine-wide, with their holder (reapOrphanedIdentities).
 */
function recoverIdentities(dir: string, live: Liveness, young: (st: Stats) => boolean, report: RecoveryReport, remove: RemoveFn): void {
  if (!ownDir(dir)) return;
  let base: number;
  try {
    base = vmmIdBase();
  } catch {
    return;
  }
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatOrNone(path);
    if (!st?.isFile() || !/^\d+$/.test(name)) continue;
    const uid = base + Number(name);
    if (live.uids.has(uid) || young(st)) report.kept++;
    else remove("vmm-identity", path, `no process runs as uid ${uid}`, () => unlinkSync(path));
  }
}

/** Owned workspaces (`workspaces/ws-*`): alive while a process holds them; a size-limited one is unmounted first. */
async function recoverWorkspaces(
  dir: string,
  live: Liveness,
  mounts: Map<string, string>,
  young: (st: Stats) => boolean,
  report: RecoveryReport,
  remove: RemoveFn,
): Promise<void> {
  if (!ownDir(dir)) return;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatOrNone(path);
    if (!st?.isDirectory() || !name.startsWith("ws-")) continue;
    const mounted = mounts.has(path);
    // stat (not lstat) of a mount point is the mounted filesystem's root: what a sandbox holds.
    let root: Stats | undefined;
    try {
      root = statSync(path);
    } catch {
      root = undefined;
    }
    if ((root && live.held.has(key(root))) || young(st)) {
      report.kept++;
      continue;
    }
    if (mounted) {
      const device = mounts.get(path) ?? "";
      const image = loopImage(device);
      const r = await run([umountTool(), path], { timeoutMs: 10_000 }).catch((err: unknown) => ({ code: -1, stdout: "", stderr: String(err) }));
      if (r.code !== 0) {
        report.failed.push({ path, error: `umount failed: ${r.stderr.trim()}` });
        continue;
      }
      report.removed.push({ kind: "workspace-mount", path, why: "nothing alive holds the size-limited filesystem" });
      log.info({ path }, "recovery: unmounted a leftover workspace filesystem");
      // Never delete through a mount that is still there (a second one stacked on the same point).
      if (mountPoints().has(path)) {
        report.failed.push({ path, error: "still mounted after umount" });
        continue;
      }
      // The loop device lets go of its image within milliseconds of the unmount (autoclear); then the image goes.
      if (image !== undefined) {
        for (let i = 0; i < 20 && loopImage(device) === image; i++) await new Promise((r) => setTimeout(r, 10));
        if (loopImage(device) !== image) remove("workspace-image", image, "its filesystem was unmounted", () => rmSync(image, { force: true }));
      }
    }
    remove("workspace", path, "no process holds it", () => rmSync(path, { recursive: true, force: true }));
  }
}

/** One line per removed leftover, for the daemon's start-up message. */
export function formatRecovery(r: RecoveryReport): string[] {
  return [
    ...r.removed.map((x) => `removed ${x.kind} ${x.path} (${x.why})`),
    ...r.failed.map((f) => `could not remove ${f.path}: ${f.error}`),
  ];
}

/** The image behind a loop device, without the "(deleted)" sysfs adds once its file is gone. */
function loopImage(device: string): string | undefined {
  return backingFile(device)?.replace(/ \(deleted\)$/, "");
}
