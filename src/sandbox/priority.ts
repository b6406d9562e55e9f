// The CPU priority of sandboxed code: below the host process that serves every sandbox's calls.
//
// Off by default (0), a knob: one Node process carries the calls of all its sandboxes, and with many
// busy sandboxes a CPU profile showed it descheduled inside its writes to agents it had just woken,
// so lowering the sandboxes (nice 10: weight 110 against 1,024) looked like the cure. Measured on a
// quiet 2-core machine (bench scale, namespace, 10 and 150 agents, alternating pairs) it was not:
// nice 10 raised 10 agents' throughput (~179k against 115–153k ops/min) but lowered 150 agents'
// (145k and 123k against 188k and 132k), a plateau of 0.81 and 0.69 against 1.0 and 1.0 at nice 0.
// Fed sandboxes that cannot run are no faster than starved ones. Where the host process must win
// (a daemon whose API must answer under load), set it. A sandbox can only raise its nice value
// further, never lower it (no CAP_SYS_NICE).
import { readdirSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { LuminaGuardError } from "../errors.js";

export const DEFAULT_SANDBOX_NICE = 0;

/** LUMINAGUARD_SANDBOX_NICE: 0..19 (0, the default: same priority as the host process). */
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
