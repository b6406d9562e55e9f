// The CPU priority of sandboxed code: below the host process that serves every sandbox's calls.
//
// Why: one Node process carries the calls of all its sandboxes (frames, validation, the disk watch).
// Under the scheduler it is one task among the sandboxes' runnable ones, so with many busy sandboxes
// it got ever less of the CPU it needs to feed them: on 2 cores, 150 namespace agents gave ~30 % less
// throughput than 10, with the host's event loop busy (a CPU profile showed the Node thread
// descheduled inside its socket writes to the agents it had just woken). Sandboxed code at nice 10
// (weight 110 against 1,024) still shares the cores equally among sandboxes (fairness is unchanged)
// and takes all the CPU the host does not use; the host's dispatch is never starved by the work it
// dispatches. A sandbox can only raise its nice value further, never lower it (no CAP_SYS_NICE).
import { readdirSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { LuminaGuardError } from "../errors.js";

export const DEFAULT_SANDBOX_NICE = 10;

/** LUMINAGUARD_SANDBOX_NICE: 0..19 (0: same priority as the host process), default 10. */
export function sandboxNice(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env["LUMINAGUARD_SANDBOX_NICE"]?.trim();
  if (raw === undefined || raw === "") return DEFAULT_SANDBOX_NICE;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 19) throw new LuminaGuardError("INVALID_ARGUMENT", `LUMINAGUARD_SANDBOX_NICE must be an integer from 0 to 19, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * Lowers the priority of `pid` (one thread: call it before the process forks or starts threads, so
 * that everything it runs inherits it) to the host's own nice value plus sandboxNice(). Best effort:
 * a process already gone, or a host without the right to renice it, keeps the host's priority.
 */
export function lowerPriority(pid: number, nice = sandboxNice()): void {
  if (nice === 0) return;
  try {
    setPriority(pid, Math.min(19, currentNice() + nice));
  } catch {
    // ESRCH (gone) or EPERM/EACCES (another user's process, no CAP_SYS_NICE): leave it as it is.
  }
}

/**
 * Lowers every thread of `pid` (a nice value is per thread on Linux): for a process that may have
 * started threads before lowerPriority reached it (QEMU's vCPU and I/O threads). Threads it starts
 * later inherit from the thread that starts them.
 */
export function lowerAllThreads(pid: number, nice = sandboxNice()): void {
  if (nice === 0) return;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return; // gone
  }
  for (const tid of tids) if (/^\d+$/.test(tid)) lowerPriority(Number(tid), nice);
}

/** This process's own nice value: the sandbox's is relative to it. */
function currentNice(): number {
  try {
    return getPriority(0);
  } catch {
    return 0;
  }
}
