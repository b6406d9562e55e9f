// Per-sandbox disk limits: a size-capped filesystem under the workspaces we create, a watch on the user's own.
//
// What the kernel can enforce here: ext4 on the host has no project quotas turned on, so a directory
// of the user's cannot be given a byte or inode budget. A workspace LuminaGuard creates itself can:
// run as root it is a sparse ext4 image of the limit's size, loop-mounted at the workspace path
// (bytes and inodes fixed at mkfs time; a write past them fails with ENOSPC in the sandbox and the
// host's disk never holds more than the image). Everywhere else a DiskGuard measures what the sandbox
// added: write_file is refused before it writes (`NO_SPACE`, nothing partial), and a command that
// pushes the workspace past the limit is stopped within one poll interval (5 ms near the limit)
// plus one scan; it can overshoot by what it writes meanwhile.
import { chmodSync, closeSync, constants, existsSync, ftruncateSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, rmdirSync, statSync, statfsSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { LuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { cacheDir } from "../paths.js";
import { run } from "../util/proc.js";
import { recordCreated } from "./created.js";
import { DEFAULT_DISK_MIB, MAX_DISK_MIB, MIN_DISK_MIB } from "../sandbox/types.js";
import { formatFromTemplate } from "./disk-template.js";

export interface DiskLimit {
  /** Bytes the sandbox may add to its workspace, in MiB. */
  mib: number;
  /** Files, directories and links it may add. */
  inodes: number;
}

/** "kernel": a loop-mounted ext4 of the limit's size; "watched": a DiskGuard on a directory the kernel cannot limit. */
export type DiskLimitMode = "kernel" | "watched";

export { DEFAULT_DISK_MIB, MAX_DISK_MIB, MIN_DISK_MIB };
/** Inodes per MiB of the limit when the caller does not say: one per 16 KiB, like mke2fs's default ratio. */
const INODES_PER_MIB = 64;
const MIB = 1024 * 1024;

export function diskLimit(mib: number = DEFAULT_DISK_MIB, inodes?: number): DiskLimit {
  if (!Number.isInteger(mib) || mib < MIN_DISK_MIB || mib > MAX_DISK_MIB) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `disk limit must be an integer number of MiB between ${MIN_DISK_MIB} and ${MAX_DISK_MIB}, not ${mib}`);
  }
  const n = inodes ?? Math.max(1024, mib * INODES_PER_MIB);
  if (!Number.isInteger(n) || n < 16 || n > 2 ** 31) throw new LuminaGuardError("INVALID_ARGUMENT", `inode limit must be an integer between 16 and 2^31, not ${n}`);
  return { mib, inodes: n };
}

interface DiskUsage {
  bytes: number;
  inodes: number;
}

/**
 * How close to the limit counts as "full" when a command fails: ext4 refuses a write while some
 * blocks are still free (allocator preallocation, the writer's chunk size), measured here at up to
 * ~0.8 MiB left on a 32 MiB filesystem after `dd bs=1M` hit ENOSPC.
 */
export function fullSlackBytes(limit: DiskLimit): number {
  return Math.max(MIB, Math.floor((limit.mib * MIB) / 32));
}

/** Lets the event loop run after this long of synchronous scanning. */
const SCAN_SLICE_MS = 4;

/**
 * Bytes (allocated blocks, so a sparse file counts what it occupies) and entries under `root`, never
 * following a symlink; entries that vanish during the walk are skipped, a file with several links
 * counts once. Synchronous syscalls in slices of a few ms: ~4 µs an entry against ~25 µs for the
 * promise API, and the event loop still runs between slices.
 */
export async function measure(root: string): Promise<DiskUsage> {
  let bytes = 0;
  let inodes = 0;
  const linked = new Set<string>();
  const stack = [root];
  let slice = performance.now();
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    let names: string[];
    try {
      // One readdir per directory: half the cost of a Dir handle read entry by entry.
      names = readdirSync(dir);
    } catch {
      continue; // went away, or unreadable
    }
    for (const name of names) {
      const path = `${dir}/${name}`; // not join(): it normalizes, and costs a third of the walk
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (st === undefined) continue;
      if (st.nlink > 1 && !st.isDirectory()) {
        const key = `${st.dev}:${st.ino}`;
        if (linked.has(key)) continue;
        linked.add(key);
      }
      inodes += 1;
      bytes += st.blocks * 512;
      if (st.isDirectory()) stack.push(path);
      if (performance.now() - slice > SCAN_SLICE_MS) {
        await new Promise((r) => setImmediate(r));
        slice = performance.now();
      }
    }
  }
  return { bytes, inodes };
}

interface FsUse {
  /** Bytes and inodes in use on the whole filesystem. */
  used: number;
  inodesUsed: number;
  /** Whether the filesystem counts inodes at all (btrfs and some others report 0). */
  countsInodes: boolean;
  /** Bytes an unprivileged writer can still get, and the filesystem's size. */
  avail: number;
  size: number;
  blockSize: number;
}

/**
 * One statfs, synchronous: ~1 µs of CPU against ~30-36 µs for the promise API's round trip through the
 * thread pool (measured here), and it runs at every write_file and command of a watched workspace and
 * at each poll while a command runs. The workspace is also walked with synchronous calls (measure).
 */
function fsUse(path: string): FsUse | undefined {
  try {
    const s = statfsSync(path);
    return {
      used: (s.blocks - s.bfree) * s.bsize,
      inodesUsed: s.files - s.ffree,
      countsInodes: s.files > 0,
      avail: s.bavail * s.bsize,
      size: s.blocks * s.bsize,
      blockSize: s.bsize,
    };
  } catch {
    return undefined;
  }
}

/** What a watched sandbox leaves free on the host filesystem holding its workspace: 2% of it, at most 512 MiB. */
function hostReserve(fs: FsUse): number {
  return Math.min(512 * MIB, Math.floor(fs.size / 50));
}

export function noSpace(limit: DiskLimit, what: string, details: Record<string, unknown> = {}): LuminaGuardError {
  return new LuminaGuardError("NO_SPACE", `the sandbox's disk limit (${limit.mib} MiB, ${limit.inodes} files) is reached: ${what}`, {
    details: { diskMiB: limit.mib, diskInodes: limit.inodes, ...details },
  });
}

/** A full scan at least this often while the sandbox writes or runs commands (see DiskGuard.estimate)... */
const FULL_SCAN_EVERY_MS = 5_000;
/** ...unless periodic scans of every guard in this process would take more than this share of a core... */
const PERIODIC_SCAN_SHARE = 0.05;
/** ...and never less often than this. */
const FULL_SCAN_AT_MOST_MS = 30_000;

/**
 * Spaces the periodic rescans of every DiskGuard in a process so that together they take about
 * `share` of one core: at 100 watched workspaces of 1,000 files each, one scan per guard every 5 s
 * took 10-15 % of a core under load, a per-call cost that grew with the number of sandboxes. A scan
 * that took `ms` moves the next periodic turn `ms / share` later. Urgent scans (the bound past half
 * the limit) never wait for a turn.
 */
export class ScanBudget {
  private nextTurn = -Infinity;

  constructor(
    private readonly share: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether a periodic scan may run now. */
  turn(): boolean {
    return this.now() >= this.nextTurn;
  }

  /** A scan (of any kind) took `ms`. */
  spent(ms: number): void {
    this.nextTurn = Math.max(this.nextTurn, this.now()) + ms / this.share;
  }
}

const periodicScans = new ScanBudget(PERIODIC_SCAN_SHARE);
/**
 * How often a running command's workspace is polled (statfs, one syscall; a scan only when needed):
 * the time a writer at the assumed rates needs to use up what is left (bytes or files), between 5
 * and 250 ms. Close to the limit that is 5 ms; far from it a poll costs nothing noticeable either way.
 */
const WATCH_POLL_MIN_MS = 5;
const WATCH_POLL_MAX_MS = 250;
/** Bytes per ms: 4 GiB/s, above the 2.5 GB/s that 8 parallel writers reach into the page cache here. */
const WATCH_ASSUMED_RATE = (4 * 1024 * MIB) / 1000;
/** Files per ms: a shell loop creating empty files makes ~50 a ms here. */
const WATCH_ASSUMED_FILE_RATE = 100;

const ZERO: DiskUsage = { bytes: 0, inodes: 0 };

function sum(...us: DiskUsage[]): DiskUsage {
  return us.reduce((a, u) => ({ bytes: a.bytes + u.bytes, inodes: a.inodes + u.inodes }), ZERO);
}

/**
 * Watches what a sandbox adds to a workspace the kernel cannot limit.
 *
 * A full scan (measure, ~4 µs per entry of the workspace) gives the exact figure. It runs at start
 * (the baseline), and afterwards only when a cheap upper bound gets past half the limit or the last
 * scan is 5 s old (up to 30 s when the periodic scans of all guards in the process would otherwise
 * take more than 5 % of a core: ScanBudget); only writes and commands ask, never the read-only tools. The bound: the last
 * scan's figure, plus every increase of the host filesystem's usage seen between two statfs samples
 * since (taken at each check, and every 5-250 ms while a command runs), plus what admitted writes
 * may occupy. Other writers on that filesystem only raise it. Space freed in the same interval as
 * the sandbox writes (by anyone, including ext4 releasing the sandbox's own deleted blocks at its
 * next journal commit) hides that much of those writes from it; hence the half-limit trust, the 5 s
 * rescan, and the overshoot bound stated in docs/security.md.
 */
export class DiskGuard {
  private last: { added: DiskUsage; at: number } = { added: ZERO, at: performance.now() };
  /** The latest statfs sample, and the increases seen between samples since the last scan. */
  private sample: FsUse | undefined;
  private grown: DiskUsage = ZERO;
  /** Admitted writes: still in flight, and landed since the last scan. */
  private inFlight: DiskUsage = ZERO;
  private landed: DiskUsage = ZERO;
  private scanning: Promise<DiskUsage> | undefined;
  private scanMs = 0;

  private constructor(
    readonly workspace: string,
    readonly limit: DiskLimit,
    private baseline: DiskUsage,
  ) {}

  /** Measures the baseline; never rejects (a workspace that cannot be read measures as empty). */
  static async start(workspace: string, limit: DiskLimit): Promise<DiskGuard> {
    const guard = new DiskGuard(workspace, limit, ZERO);
    guard.takeSample();
    guard.baseline = await measure(workspace);
    guard.last = { added: ZERO, at: performance.now() };
    guard.grown = ZERO;
    return guard;
  }

  get limitBytes(): number {
    return this.limit.mib * MIB;
  }

  private takeSample(): FsUse | undefined {
    const fs = fsUse(this.workspace);
    if (fs && this.sample) {
      this.grown = sum(this.grown, {
        bytes: Math.max(0, fs.used - this.sample.used),
        // Without inode counts (btrfs) only scans see files that hold no blocks.
        inodes: fs.countsInodes ? Math.max(0, fs.inodesUsed - this.sample.inodesUsed) : 0,
      });
    }
    if (fs) this.sample = fs;
    return fs;
  }

  /** What the sandbox added since it started, by a full scan (never negative: deleting the user's files frees room). */
  async added(): Promise<DiskUsage> {
    this.scanning ??= (async () => {
      try {
        const t0 = performance.now();
        this.takeSample();
        // From here on, growth and landed writes count anew (what the walk also sees counts twice: safe).
        this.grown = ZERO;
        this.landed = ZERO;
        const now = await measure(this.workspace);
        this.scanMs = performance.now() - t0;
        periodicScans.spent(this.scanMs);
        const added = { bytes: Math.max(0, now.bytes - this.baseline.bytes), inodes: Math.max(0, now.inodes - this.baseline.inodes) };
        this.last = { added, at: t0 };
        return added;
      } finally {
        this.scanning = undefined;
      }
    })();
    return await this.scanning;
  }

  private over(u: DiskUsage, extra: DiskUsage = ZERO, share = 1): boolean {
    return u.bytes + extra.bytes > this.limitBytes * share || u.inodes + extra.inodes > this.limit.inodes * share;
  }

  /**
   * What the sandbox has added, as cheaply as the question allows: the bound (see the class comment)
   * while it is under half the limit with `extra` on top and the last scan is recent, else a scan
   * (exact, plus admitted writes in flight). `mayScan` (urgent: the bound is over the whole limit)
   * lets a poll hold scans back. Also refuses when the host filesystem is nearly full.
   */
  private async estimate(extra: DiskUsage, mayScan: (urgent: boolean) => boolean = () => true): Promise<{ usage: DiskUsage; exact: boolean }> {
    const fs = this.takeSample();
    if (fs && fs.avail - extra.bytes < hostReserve(fs)) {
      throw noSpace(this.limit, `the host filesystem holding the workspace is nearly full (${Math.round(fs.avail / MIB)} MiB free)`);
    }
    const usage = sum(this.last.added, this.grown, this.landed, this.inFlight);
    const age = performance.now() - this.last.at;
    const fresh = fs !== undefined && (age <= FULL_SCAN_EVERY_MS || (age <= FULL_SCAN_AT_MOST_MS && !periodicScans.turn()));
    if (fresh && !this.over(usage, extra, 0.5)) return { usage, exact: false };
    if (!mayScan(this.over(usage, extra))) return { usage, exact: false };
    return { usage: sum(await this.added(), this.inFlight), exact: true };
  }

  /**
   * Admits a write of `bytes` that may create `entries` new files and directories, or refuses it
   * (NO_SPACE) before anything is written. Call the returned function when the write is done.
   */
  async admitWrite(bytes: number, entries = 1): Promise<() => void> {
    const block = this.sample?.blockSize ?? 4096;
    // What the file may occupy: its blocks rounded up, plus a block for the directory growing.
    const cost = { bytes: Math.ceil(bytes / block) * block + block * entries, inodes: entries };
    const { usage } = await this.estimate(cost);
    if (this.over(usage, cost)) {
      throw noSpace(this.limit, `writing ${bytes} bytes would exceed it (${Math.round(usage.bytes / 1024)} KiB and ${usage.inodes} files already added)`);
    }
    this.inFlight = sum(this.inFlight, cost);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight = sum(this.inFlight, { bytes: -cost.bytes, inodes: -cost.inodes });
      this.landed = sum(this.landed, cost);
    };
  }

  /** Throws NO_SPACE when the sandbox has added more than its limit (or the host filesystem is nearly full). */
  async check(): Promise<void> {
    const { usage } = await this.estimate(ZERO);
    if (this.over(usage)) throw noSpace(this.limit, `${Math.round(usage.bytes / 1024)} KiB and ${usage.inodes} files added`);
  }

  /** Whether what the sandbox added is within `fullSlackBytes` of the limit, or at its inode limit. */
  async nearlyFull(): Promise<boolean> {
    const slack = { bytes: fullSlackBytes(this.limit), inodes: 1 };
    const { usage } = await this.estimate(slack);
    return this.over(usage, slack);
  }

  /**
   * Polls while a command runs and calls `onExceeded` once when the command takes the workspace past
   * the limit. A workspace already over it when the command starts (the last command wrote on for a
   * moment after it was stopped) must also grow past the first scan made during this one: a command
   * run to clean it up (`rm`) is left alone. A poll is one statfs; it scans
   * when estimate() says so, but no sooner after the last scan than ten times that scan's duration
   * (scanning then costs at most ~10% of a core), or once its duration when the bound is over the
   * whole limit.
   */
  watch(onExceeded: (err: LuminaGuardError) => void): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let lastScanEnd = 0;
    const start = sum(this.last.added, this.landed, this.inFlight);
    let floor = this.over(start) ? undefined : start;
    const next = (usage: DiskUsage): number => {
      const ms = Math.min(Math.max(0, this.limitBytes - usage.bytes) / WATCH_ASSUMED_RATE, Math.max(0, this.limit.inodes - usage.inodes) / WATCH_ASSUMED_FILE_RATE);
      return Math.min(WATCH_POLL_MAX_MS, Math.max(WATCH_POLL_MIN_MS, ms));
    };
    const tick = async (): Promise<void> => {
      if (stopped) return;
      let usage: DiskUsage;
      try {
        const e = await this.estimate(ZERO, (urgent) => performance.now() - lastScanEnd >= this.scanMs * (urgent ? 1 : 10));
        usage = e.usage;
        if (e.exact) lastScanEnd = performance.now();
        if (e.exact && floor === undefined) floor = usage;
        const grew = floor !== undefined && (usage.bytes > floor.bytes || usage.inodes > floor.inodes);
        if (e.exact && grew && this.over(usage)) throw noSpace(this.limit, `${Math.round(usage.bytes / 1024)} KiB and ${usage.inodes} files added`);
      } catch (err) {
        if (!stopped) {
          stopped = true;
          onExceeded(err instanceof LuminaGuardError ? err : noSpace(this.limit, String(err)));
        }
        return;
      }
      if (!stopped) timer = setTimeout(() => void tick(), next(usage));
    };
    timer = setTimeout(() => void tick(), next(start));
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }
}

const TOOL_DIRS = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/** A system tool by absolute path: root's PATH under sudo or a service may lack the sbin directories. */
function tool(name: string): string | undefined {
  for (const dir of TOOL_DIRS) if (existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

function imagesDir(): string {
  return join(cacheDir(), "workspace-images");
}

/** Image files currently attached to a loop device (sysfs names the backing file of each bound one). */
export function attachedImages(): Set<string> {
  const out = new Set<string>();
  let names: string[] = [];
  try {
    names = readdirSync("/sys/block").filter((n) => n.startsWith("loop"));
  } catch {
    return out;
  }
  for (const n of names) {
    const f = backingFile(`/dev/${n}`);
    if (f !== undefined) out.add(f.replace(/ \(deleted\)$/, ""));
  }
  return out;
}

/** The image file behind loop device `device` (/dev/loopN), as sysfs names it; undefined when none. */
export function backingFile(device: string): string | undefined {
  if (!/^(\/dev\/)?loop\d+$/.test(device)) return undefined;
  try {
    return readFileSync(`/sys/block/${device.replace(/^\/dev\//, "")}/loop/backing_file`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** The device mounted at `path`, from our mount table (mount points are octal-escaped there). */
function mountSource(path: string): string | undefined {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  let table = "";
  try {
    table = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return undefined;
  }
  let found: string | undefined;
  for (const line of table.split("\n")) {
    const [pre, post] = line.split(" - ");
    if (pre === undefined || post === undefined) continue;
    if (unescape(pre.split(" ")[4] ?? "") === path) found = unescape(post.split(" ")[1] ?? ""); // the last one is on top
  }
  return found;
}

let swept = false;

/** How long an image may be in the making (its mkfs, then its mount) before a sweep may take it. */
export const IMAGE_MAKING_MS = 60_000;

/**
 * Whether a workspace image is still being made: younger than IMAGE_MAKING_MS and never mounted (the
 * ext4 superblock's last-mount time, at byte 1068, is 0 from mkfs until the first mount; an image whose
 * mkfs has not written it yet reads 0 too). Between its mkfs and its mount an image is attached to no loop
 * device, and a sweep (another process's, or a daemon's start-up recovery) must not take it then.
 */
export function imageInTheMaking(path: string, mtimeMs: number, now = Date.now()): boolean {
  if (now - mtimeMs >= IMAGE_MAKING_MS) return false;
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 1068) < 4 || b.readUInt32LE(0) === 0;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Deletes images a crashed process left behind: not attached to any loop device and older than a
 * minute (an image lives unattached only for the milliseconds between its mkfs and its mount).
 */
function sweepStaleImages(dir: string): void {
  if (swept) return;
  swept = true;
  try {
    const attached = attachedImages();
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (!name.endsWith(".ext4") || attached.has(p)) continue;
      if (Date.now() - statSync(p).mtimeMs > 60_000) rmSync(p, { force: true });
    }
  } catch (err) {
    log.debug({ dir, err: String(err) }, "workspace image sweep failed");
  }
}

/** A workspace that is a loop-mounted ext4 image of exactly the limit's size (root only). */
export class LimitedWorkspace {
  private removed: Promise<void> | undefined;
  private loopDevice: string | undefined;

  private constructor(
    readonly path: string,
    readonly image: string,
    readonly limit: DiskLimit,
  ) {}

  /** Whether this process can make one: root, with loop devices, mkfs.ext4 and mount. */
  static supported(): boolean {
    return (process.getuid?.() ?? 1) === 0 && existsSync("/dev/loop-control") && tool("mkfs.ext4") !== undefined && tool("mount") !== undefined && tool("umount") !== undefined;
  }

  /** Mounts a fresh filesystem of `limit` at the existing empty directory `path` (mode 0700, owned by us). */
  static async create(path: string, limit: DiskLimit): Promise<LimitedWorkspace> {
    const dir = imagesDir();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    sweepStaleImages(dir);
    // The image is sparse: it takes host space only as the sandbox writes. A host with less room than
    // the limit would fail the sandbox's writes as I/O errors instead of a clean ENOSPC.
    const host = fsUse(dir);
    if (host && host.avail < limit.mib * MIB) {
      throw new LuminaGuardError("NO_SPACE", `the host filesystem holding ${dir} has ${Math.round(host.avail / MIB)} MiB free, less than the sandbox's disk limit of ${limit.mib} MiB; free space or choose a smaller --disk`);
    }
    const image = join(dir, `${randomBytes(8).toString("hex")}.ext4`);
    const fd = openSync(image, "wx", 0o600);
    recordCreated(image);
    try {
      ftruncateSync(fd, limit.mib * MIB);
    } finally {
      closeSync(fd);
    }
    const ws = new LimitedWorkspace(path, image, limit);
    try {
      const uid = process.getuid?.() ?? 0;
      const gid = process.getgid?.() ?? 0;
      // 4 KiB blocks (mke2fs would pick 1 KiB for a small image: slower, more metadata). No journal:
      // the filesystem is thrown away with the sandbox, so crash consistency buys nothing and the
      // journal would take up to 64 MiB of the limit. No reserved blocks: the sandbox gets it all.
      // -N is a minimum; mke2fs rounds it up to fill whole inode tables.
      await formatFromTemplate(image, tool("mkfs.ext4") ?? "mkfs.ext4", tool("filefrag"), [
        "-q",
        "-F",
        "-b",
        "4096",
        "-N",
        String(limit.inodes),
        "-m",
        "0",
        "-O",
        "^has_journal,^resize_inode",
        "-E",
        `lazy_itable_init=1,nodiscard,root_owner=${uid}:${gid}`,
      ], limit.mib * MIB);
      // noinit_itable: the sparse image already reads as zeroed inode tables; the kernel's background
      // zeroing would only write megabytes into every image. nobarrier: an fsync in the sandbox (every
      // write_file) reaches the host's page cache but does not flush the host disk, which would cost
      // ~6 ms a write for durability a workspace deleted with its sandbox has no use for. Loop mounts
      // detach the device on unmount.
      await mustRun([tool("mount") ?? "mount", "-o", "loop,nosuid,nodev,noinit_itable,nobarrier", "-t", "ext4", image, path]);
      ws.loopDevice = mountSource(path);
      // lost+found is e2fsck's; a sandbox's file tools would list it as the sandbox's own.
      rmdirSync(join(path, "lost+found"));
      chmodSync(path, 0o700);
      return ws;
    } catch (err) {
      await ws.remove();
      throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `cannot create a size-limited workspace: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Whether our filesystem is still mounted at the workspace path. */
  mounted(): boolean {
    return this.loopDevice !== undefined && mountSource(this.path) === this.loopDevice;
  }

  /** Whether the filesystem is within `fullSlackBytes` of full, or out of inodes. */
  async nearlyFull(): Promise<boolean> {
    try {
      const s = await statfs(this.path);
      return s.bavail * s.bsize < fullSlackBytes(this.limit) || s.ffree === 0;
    } catch {
      return false;
    }
  }

  /**
   * Unmounts, waits for the loop device to be released, and deletes the image; the workspace
   * directory itself is the caller's to remove. Call it after the sandbox's processes are gone: a
   * mount namespace still holding the filesystem keeps the loop device bound.
   */
  remove(): Promise<void> {
    this.removed ??= (async () => {
      const umount = tool("umount") ?? "umount";
      const r = await run([umount, this.path], { timeoutMs: 10_000 }).catch(() => undefined);
      if (r && r.code !== 0 && !/not mounted|no mount point/.test(r.stderr)) {
        // Something still holds it (a process that has not died yet): detach now, freed when released.
        log.warn({ path: this.path, err: r.stderr.trim() }, "workspace busy at unmount; detaching lazily");
        await run([umount, "-l", this.path], { timeoutMs: 10_000 }).catch(() => undefined);
      }
      const dev = this.loopDevice;
      if (dev !== undefined) {
        // The kernel detaches an auto-clearing loop device (mount -o loop sets that) within
        // milliseconds of its last user letting go. A mount namespace made while this one was mounted
        // may still hold a private copy of the mount: the namespace backend's staging namespace (run
        // as root) copies the whole host tree and keeps it until its own sandbox ends. The device and
        // the deleted image's blocks are released then; detaching (losetup -d) would not be sooner.
        const bound = (): boolean => backingFile(dev)?.replace(/ \(deleted\)$/, "") === this.image;
        for (let i = 0; i < 10 && bound(); i++) await new Promise((res) => setTimeout(res, 10));
        if (bound()) log.debug({ device: dev, image: this.image }, "loop device still held by another mount namespace; released when it ends");
      }
      try {
        rmSync(this.image, { force: true });
      } catch (err) {
        log.error({ image: this.image, err: String(err) }, "cannot delete a workspace image");
      }
    })();
    return this.removed;
  }
}

async function mustRun(argv: string[]): Promise<void> {
  const r = await run(argv, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${argv[0] ?? "?"} failed: ${(r.stderr || r.stdout).trim()}`);
}
