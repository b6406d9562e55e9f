// Small measuring tools for the scenarios: timers, PSS of a set of pids, baseline process spawns.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { PerformanceObserver, monitorEventLoopDelay } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

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

/**
 * The noise a timed spawn can pick up from this process itself: garbage collection pauses and event
 * loop stalls inside the timed window, and a full collection before it (so that the previous run's
 * garbage is not collected during the next one). `gc` is undefined where V8 refuses --expose-gc.
 */
export interface NoiseProbe {
  gc: (() => void) | undefined;
  start(): void;
  /** GC pause ms and the longest event-loop stall (ms) since start(). */
  stop(): { gcMs: number; loopMaxMs: number };
  close(): void;
}

export function noiseProbe(): NoiseProbe {
  let gc: (() => void) | undefined;
  try {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as () => void;
  } catch {
    gc = undefined;
  }
  let since = 0;
  let gcMs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.startTime >= since) gcMs += e.duration;
  });
  observer.observe({ entryTypes: ["gc"] });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  return {
    gc,
    start() {
      since = performance.now();
      gcMs = 0;
      loop.reset();
    },
    stop() {
      // Entries are delivered asynchronously; those of the window are in by the next macrotask at worst.
      return { gcMs, loopMaxMs: loop.max / 1e6 };
    },
    close() {
      observer.disconnect();
      loop.disable();
    },
  };
}
