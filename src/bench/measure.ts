// Small measuring tools for the scenarios: timers, PSS of a set of pids, baseline process spawns.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

export function now(): number {
  return performance.now();
}

export async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

/** Proportional set size in MiB of these pids together: a page shared by k processes counts 1/k to each. */
export function pssMiB(pids: readonly number[]): number {
  let kib = 0;
  for (const pid of pids) {
    try {
      const m = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+) kB/m);
      kib += Number(m?.[1] ?? 0);
    } catch {
      /* exited */
    }
  }
  return kib / 1024;
}

/** ms from spawn to exit of argv (with `env` added to ours); rejects on a non-zero exit. */
export function timeProcess(argv: readonly string[], env?: Record<string, string>): Promise<number> {
  const [file, ...args] = argv;
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const c = spawn(file as string, args, { stdio: "ignore", ...(env ? { env: { ...process.env, ...env } } : {}) });
    c.on("error", reject);
    c.on("close", (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`${argv.join(" ")} exited ${code}`))));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
