// Host identities for sandboxes when LuminaGuard runs as root: one unprivileged uid per live VMM or
// bwrap, machine-wide unique, and taken back from a host process that died without giving it back.
//
// A lock file per uid in one fixed root-only directory says which host process holds the uid (its pid
// and start time). The directory is the same for every LuminaGuard process on the machine, whatever its
// LUMINAGUARD_RUN, so two of them never hand out the same uid. When the holder is gone (SIGKILLed, say),
// whatever still runs as the uid is an orphan of ours: QEMU and bwrap die with their host through their
// parent-death signal, but a sandbox caught between bwrap's clone and bwrap telling it to go on waits
// on an eventfd forever once bwrap is gone, holding its workspace. The next allocation, or the daemon's
// start-up recovery, kills such orphans and frees the uid.
import { closeSync, linkSync, lstatSync, openSync, readFileSync, readdirSync, readlinkSync, unlinkSync, writeSync, constants } from "node:fs";
import { randomBytes, randomInt } from "node:crypto";
import { join } from "node:path";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { identityLockDir } from "../../paths.js";
import { liveStartTime, liveUids, listPids } from "../../util/procfs.js";

export interface VmmIdentity {
  uid: number;
  gid: number;
  /** Whether we switch to it (root) or run as ourselves (an ordinary user has nothing to drop). */
  switched: boolean;
  release(): void;
}

/**
 * uid BASE+slot, one per live sandbox (so one VMM or bwrap can neither signal, ptrace nor read another),
 * and gid BASE shared by all (it owns the snapshot RAM files every micro-VM clone maps). No passwd entry
 * is needed; LUMINAGUARD_VMM_ID_BASE moves the range if it collides. The range is LuminaGuard's: a
 * process running as one of its uids whose holder is gone is killed.
 */
export function vmmIdBase(): number {
  const raw = process.env["LUMINAGUARD_VMM_ID_BASE"];
  const base = raw === undefined ? 2_100_000_000 : Number(raw);
  if (!Number.isInteger(base) || base < 100_000 || base > 4_000_000_000) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `LUMINAGUARD_VMM_ID_BASE must be an integer between 100000 and 4000000000, not ${raw ?? ""}`);
  }
  return base;
}

export const VMM_ID_SLOTS = 65_535;

/** How often allocateIdentity() looks for identities whose holder died (a few reads when there is none). */
const REAP_EVERY_MS = 10_000;
let lastReap = -Infinity;

/** Our pid namespace: a holder's pid means something only in the namespace it was written from. */
function pidNamespace(): string {
  try {
    return /^pid:\[(\d+)\]$/.exec(readlinkSync("/proc/self/ns/pid"))?.[1] ?? "?";
  } catch {
    return "?";
  }
}

/** "pid starttime pidns": the holder, told apart from a later process with the same pid (and from another pid namespace's). */
function ownerRecord(): string {
  return `${process.pid} ${liveStartTime(process.pid) ?? "?"} ${pidNamespace()}\n`;
}

/** A fresh identity for one VMM; its lock file keeps every other LuminaGuard process from taking the uid. */
export function allocateIdentity(): VmmIdentity {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) return { uid, gid, switched: false, release: () => undefined };
  const base = vmmIdBase();
  const dir = identityLockDir();
  if (performance.now() - lastReap >= REAP_EVERY_MS) {
    lastReap = performance.now();
    reapOrphanedIdentities({ dir });
  }
  // The record is written first and linked into place: a lock is never seen without its holder.
  const tmp = join(dir, `.new-${process.pid}-${randomBytes(6).toString("hex")}`);
  const fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  try {
    writeSync(fd, ownerRecord());
  } finally {
    closeSync(fd);
  }
  try {
    for (let attempt = 0; attempt < 64; attempt++) {
      const id = base + randomInt(1, VMM_ID_SLOTS + 1);
      const lock = join(dir, String(id));
      try {
        linkSync(tmp, lock);
      } catch {
        continue;
      }
      // Once only: a second call would unlink the lock of whoever holds this uid by then.
      let released = false;
      return {
        uid: id,
        gid: base,
        switched: true,
        release: () => {
          if (released) return;
          released = true;
          try {
            unlinkSync(lock);
          } catch {
            /* already released */
          }
        },
      };
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* gone */
    }
  }
  throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", "no free VMM identity (64 random uids were taken)");
}

export interface ReapReport {
  /** Orphans killed: processes running as the uid of a holder that is gone. */
  killed: { pid: number; uid: number }[];
  /** Lock files removed (holder gone, nothing runs as the uid any more). */
  released: string[];
  /** Locks whose holder is alive, or that are too young to judge. */
  kept: number;
}

/** The holder a lock names, or undefined when the file says nothing we understand. */
function readOwner(path: string): { pid: number; start: string; pidns: string } | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const m = /^(\d+) (\d+) (\d+)\n$/.exec(text);
  return m ? { pid: Number(m[1]), start: m[2] as string, pidns: m[3] as string } : undefined;
}

/** Every live process's uids (real, effective, saved, filesystem), zombies left out. */
function processesByUid(wanted: Set<number>): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const pid of listPids()) {
    for (const u of liveUids(pid) ?? []) {
      if (!wanted.has(u)) continue;
      const list = out.get(u) ?? [];
      list.push(pid);
      out.set(u, list);
    }
  }
  return out;
}

/**
 * Kills what runs as an identity whose holder is gone and frees the identity once nothing does. A lock
 * file younger than `graceMs` without a readable holder is left alone (a writer of an older version may
 * be between creating and using it); one without a holder and older is judged by whether anything runs
 * as its uid. Synchronous and cheap when every holder is alive: a directory listing and one small read
 * and one /proc stat per live identity.
 */
export function reapOrphanedIdentities(o: { dir?: string; graceMs?: number } = {}): ReapReport {
  const report: ReapReport = { killed: [], released: [], kept: 0 };
  if ((process.geteuid?.() ?? -1) !== 0) return report;
  let dir: string;
  let names: string[];
  try {
    dir = o.dir ?? identityLockDir();
    names = readdirSync(dir);
  } catch {
    return report;
  }
  let base: number;
  try {
    base = vmmIdBase();
  } catch {
    return report;
  }
  const graceMs = o.graceMs ?? 5_000;
  const ownNs = pidNamespace();
  const orphaned = new Map<number, string>();
  const unowned = new Map<number, string>();
  for (const name of names) {
    // A holder record not yet linked into place, left by a process killed between writing and linking it.
    const tmp = /^\.new-(\d+)-[0-9a-f]+$/.exec(name);
    if (tmp) {
      if (liveStartTime(Number(tmp[1])) === undefined && unlinkQuietly(join(dir, name))) report.released.push(join(dir, name));
      continue;
    }
    if (!/^\d+$/.test(name)) continue;
    const uid = Number(name);
    const path = join(dir, name);
    // Only our range: a lock file can never make us kill a process of anyone else.
    if (uid <= base || uid > base + VMM_ID_SLOTS) continue;
    const owner = readOwner(path);
    // A holder in another pid namespace (a container sharing /run) cannot be judged from here: kept.
    if (owner !== undefined && owner.pidns !== ownNs) {
      report.kept++;
      continue;
    }
    if (owner !== undefined) {
      if (liveStartTime(owner.pid) === owner.start) report.kept++;
      else orphaned.set(uid, path);
      continue;
    }
    let young = true;
    try {
      young = Date.now() - lstatSync(path).mtimeMs < graceMs;
    } catch {
      continue;
    }
    if (young) report.kept++;
    else unowned.set(uid, path);
  }
  if (orphaned.size === 0 && unowned.size === 0) return report;
  const running = processesByUid(new Set([...orphaned.keys(), ...unowned.keys()]));
  for (const [uid, path] of unowned) {
    if (running.has(uid)) report.kept++;
    else if (unlinkQuietly(path)) report.released.push(path);
  }
  for (const [uid] of orphaned) {
    for (const pid of running.get(uid) ?? []) {
      try {
        process.kill(pid, "SIGKILL");
        report.killed.push({ pid, uid });
      } catch {
        /* gone meanwhile */
      }
    }
  }
  // SIGKILL takes effect before a process runs again; its exit follows within moments (one wait for all
  // of them, 1 s at most: a process stuck in the kernel is left for the next look). A lock goes once
  // nothing runs as its uid, so the uid is never handed out while an orphan still has it.
  const still = report.killed.length > 0 ? stillRunning(new Set([...orphaned.keys()].filter((u) => running.has(u))), 1_000) : new Set<number>();
  for (const [uid, path] of orphaned) {
    if (still.has(uid)) report.kept++;
    else if (unlinkQuietly(path)) report.released.push(path);
  }
  if (report.killed.length > 0) log.warn({ killed: report.killed, released: report.released.length }, "killed sandbox processes whose host process is gone");
  else if (report.released.length > 0) log.info({ released: report.released.length }, "freed the identities of sandbox host processes that are gone");
  return report;
}

/** Which of `uids` something still runs as after waiting up to `ms` for them all to be gone. */
function stillRunning(uids: Set<number>, ms: number): Set<number> {
  const until = performance.now() + ms;
  for (;;) {
    const left = new Set(processesByUid(uids).keys());
    if (left.size === 0 || performance.now() >= until) return left;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
}

function unlinkQuietly(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}
