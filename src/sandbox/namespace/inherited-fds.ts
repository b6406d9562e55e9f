// Keeps descriptors this process inherited without FD_CLOEXEC from leaking into a sandbox.
//
// A child gets every descriptor of its parent that lacks FD_CLOEXEC, and bwrap passes them all on to
// the sandboxed program. Node and libuv open everything close-on-exec, so such descriptors come from
// whoever started us (a shell, a CI runner, socket activation); one that names a host directory or a
// socket would be a way out of the sandbox. Node cannot close-on-exec them, but spawn() can place
// something else at any child descriptor number: each leaked number gets /dev/null instead.
import { openSync, readFileSync, readdirSync } from "node:fs";

/** Whether descriptor `fd` is open and would survive exec. */
function inheritable(fd: number): boolean {
  try {
    const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
    // O_CLOEXEC is 02000000 (octal) in the flags fdinfo reports.
    return flags !== null && (parseInt(flags[1] ?? "0", 8) & 0o2000000) === 0;
  } catch {
    return false; // closed meanwhile (readdir's own descriptor, for one)
  }
}

/** What the first full scan found: the only descriptors of ours that can lack close-on-exec. */
let startedWith: number[] | undefined;

/**
 * This process's descriptors >= 3 that would survive exec. Node and libuv open every descriptor they
 * make close-on-exec, so only those the process was started with can lack it: one full scan of
 * /proc/self/fdinfo finds them, and every later spawn re-checks just those (one may have been closed
 * and its number reused). A scan per spawn read every descriptor's fdinfo: a daemon or benchmark
 * holding 100 micro-VMs (thousands of descriptors) spent a second of its event loop on it.
 */
function inheritableFds(): number[] {
  if (startedWith === undefined) {
    let names: string[] = [];
    try {
      names = readdirSync("/proc/self/fdinfo");
    } catch {
      /* no /proc: nothing found */
    }
    startedWith = names
      .map(Number)
      .filter((fd) => Number.isInteger(fd) && fd >= 3 && inheritable(fd))
      .sort((a, b) => a - b);
  }
  return startedWith.filter(inheritable);
}

let devNull: number | undefined;

/**
 * Extends a spawn() stdio array so that every inheritable descriptor of ours that the child would
 * otherwise receive is replaced by /dev/null. Entries the caller set are kept as they are.
 */
export function shieldStdio<T>(stdio: T[]): Array<T | number | "ignore"> {
  const leaked = inheritableFds().filter((fd) => fd >= stdio.length);
  if (leaked.length === 0) return stdio;
  // Opened close-on-exec (Node's default) and kept for the life of the process: one descriptor total.
  devNull ??= openSync("/dev/null", "r");
  const out: Array<T | number | "ignore"> = [...stdio];
  const max = leaked[leaked.length - 1] as number;
  for (let fd = stdio.length; fd <= max; fd++) out.push(leaked.includes(fd) ? devNull : "ignore");
  return out;
}
