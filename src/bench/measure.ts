// Small measuring tools for the scenarios: timers, PSS of a set of pids, baseline process spawns.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { PerformanceObserver, monitorEventLoopDelay } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { LuminaGuardError } from "../errors.js";

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
 * What is collected before each timed run: "minor" (the default) empties the young generation, so
 * that no scavenge of the previous run's garbage lands in the next run's window; "full" also marks and
 * compacts the old generation; "none" forces nothing (LG_BENCH_GC=0).
 *
 * A full collection before every run is not what a service does between requests, and it changes what
 * is measured: it clears the objects V8's optimized code holds weakly, that code is thrown away
 * ("weak objects" in `--trace-deopt`), and the next run recompiles it on V8's background threads,
 * on the same two cores as the restore (here ~2 ms of CPU in most restores' windows).
 */
export type GcBeforeRun = "minor" | "full" | "none";

/** LG_BENCH_GC: "minor" (default), "full", or "0"/"none"; anything else is refused. */
export function gcBeforeRun(env: NodeJS.ProcessEnv = process.env): GcBeforeRun {
  const v = env["LG_BENCH_GC"];
  if (v === undefined || v === "" || v === "minor") return "minor";
  if (v === "full") return "full";
  if (v === "0" || v === "none") return "none";
  throw new LuminaGuardError("INVALID_ARGUMENT", `LG_BENCH_GC must be minor, full or 0, not ${JSON.stringify(v.slice(0, 40))}`);
}

/**
 * The noise a timed spawn can pick up from this process itself: garbage collection pauses and event
 * loop stalls inside the timed window, and a collection before it (gcBeforeRun) so that the previous
 * run's garbage is not collected during the next one. `gc` is undefined where V8 refuses --expose-gc.
 */
export interface NoiseProbe {
  gc: ((kind: "minor" | "full") => void) | undefined;
  start(): void;
  /** GC pause ms and the longest event-loop stall (ms) since start(). */
  stop(): { gcMs: number; loopMaxMs: number };
  close(): void;
}

export function noiseProbe(): NoiseProbe {
  let gc: ((kind: "minor" | "full") => void) | undefined;
  try {
    setFlagsFromString("--expose-gc");
    const v8gc = runInNewContext("gc") as (options?: { type: "minor" }) => void;
    // Node 20's V8 takes `{ type: "major" }` for a scavenge too: a full collection is `gc()` alone.
    gc = (kind) => (kind === "minor" ? v8gc({ type: "minor" }) : v8gc());
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
