// The host's /proc as the runtime reads it: one process's stat and status, the process tree. Every reader
// returns nothing for a process that is gone: a pid may exit between listing /proc and reading it.
import { readFileSync, readdirSync } from "node:fs";

interface ProcStat {
  pid: number;
  /** Field 2 without its parentheses; it may itself contain spaces and parentheses. */
  comm: string;
  /** Field 3: R, S, D, Z (zombie), T, ... */
  state: string;
  ppid: number;
  /** Field 9: the kernel's PF_* flags (PF_EXITING, 0x4, once its exit has begun). */
  flags: number;
  /** Field 22, in clock ticks since boot: tells a pid apart from a later process that reused it. */
  startTime: string;
  /** Fields 14-17: CPU time of the process and of its reaped children, user + system, in clock ticks (USER_HZ, 100 on Linux). */
  cpuTicks: number;
}

/** /proc/PID/stat, or undefined when the process is gone. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name may contain spaces and parentheses: the fields after it start after the last ')'.
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  const cpuTicks = [11, 12, 13, 14].reduce((sum, i) => sum + (Number(fields[i]) || 0), 0);
  return { pid, comm: text.slice(text.indexOf("(") + 1, close), state: fields[0] ?? "", ppid: Number(fields[1]), flags: Number(fields[6]) || 0, startTime: fields[19] ?? "", cpuTicks };
}

/** True while `pid` exists and is not a zombie (a zombie has already exited and holds nothing but its pid). */
export function pidAlive(pid: number): boolean {
  const s = procStat(pid);
  return s !== undefined && s.state !== "Z";
}

const PF_EXITING = 0x4;
const SIGKILL_BIT = 1n << 8n;

/**
 * Whether a live process is on its way out: its exit has begun (PF_EXITING) or a SIGKILL is pending (a
 * kill, a parent-death signal). Until its exit is through, it still holds its open files, cwd and root.
 */
export function dying(pid: number): boolean {
  const s = procStat(pid);
  if (s === undefined || s.state === "Z") return false;
  if ((s.flags & PF_EXITING) !== 0) return true;
  const st = procStatus(pid);
  if (st === undefined) return false;
  const pending = (field: string): bigint => {
    try {
      return BigInt(`0x${st[field] ?? "0"}`);
    } catch {
      return 0n;
    }
  };
  return ((pending("SigPnd") | pending("ShdPnd")) & SIGKILL_BIT) !== 0n;
}

/** The start time of a live (not zombie) process, or undefined. */
export function liveStartTime(pid: number): string | undefined {
  const s = procStat(pid);
  return s && s.state !== "Z" ? s.startTime : undefined;
}

/**
 * The uids a live process runs with (real, effective, saved, filesystem; each once), or undefined for
 * a zombie (it holds nothing but its pid), a process that is gone, or one we may not read.
 */
export function liveUids(pid: number | string): number[] | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  if (/^State:\s+Z/m.test(status)) return undefined;
  const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
  return m ? [...new Set(m.slice(1).map(Number))] : undefined;
}

/** The pids /proc lists now ([] where there is no /proc). */
export function listPids(): number[] {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return [];
  }
  return names.filter((n) => /^\d+$/.test(n)).map(Number);
}

/** Each parent pid → its children, from one pass over /proc. */
export function childrenByParent(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const pid of listPids()) {
    const s = procStat(pid);
    if (!s) continue;
    const list = children.get(s.ppid);
    if (list) list.push(pid);
    else children.set(s.ppid, [pid]);
  }
  return children;
}

/** Every descendant of `root` (children first, then theirs), by the ppid links in /proc. */
export function descendants(root: number): number[] {
  const children = childrenByParent();
  const out: number[] = [];
  for (let i = -1; i < out.length; i++) {
    for (const c of children.get(i < 0 ? root : (out[i] as number)) ?? []) out.push(c);
  }
  return out;
}

/** The parent, grandparent, ... of `pid` up to (not including) init, at most `limit` of them. */
export function ancestors(pid: number, limit = 64): number[] {
  const out: number[] = [];
  for (let p = procStat(pid)?.ppid; p !== undefined && p > 1 && out.length < limit; p = procStat(p)?.ppid) out.push(p);
  return out;
}

/** /proc/PID/cmdline with its NUL separators as spaces, or undefined when the process is gone. */
export function cmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return undefined;
  }
}

/** /proc/PID/status as field → value ("Uid" → "0\t0\t0\t0"), or undefined when the process is gone. */
export function procStatus(pid: number): Record<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}
