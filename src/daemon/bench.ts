// spawn_first_call_ms through the daemon against in-process, measured in one run with the variants interleaved.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getBackend } from "../runtime/backends.js";
import { SandboxPool } from "../runtime/pool.js";
import { Sandbox, type SandboxApi } from "../runtime/sandbox.js";
import type { BackendName } from "../sandbox/types.js";

export interface DaemonBenchOptions {
  backend: BackendName;
  /** Iterations of each SDK variant. */
  runs: number;
  /** Iterations of each CLI variant (`luminaguard exec -- true`, a new process each). */
  cliRuns: number;
  /** Pause between iterations for both pools to refill; default 300 ms (namespace), 2000 ms (microvm). */
  pauseMs?: number;
  log?: (line: string) => void;
}

export interface Summary {
  n: number;
  median: number;
  p95: number;
  mean: number;
}

export interface DaemonBenchResult {
  backend: BackendName;
  /** Request → first execute_command result, ms. */
  spawn_first_call_ms: { daemon_pool_hot: Summary; in_process_no_pool: Summary; in_process_pool_hot: Summary };
  /** Wall time of `luminaguard exec -- true`, process start to exit, ms. */
  cli_exec_true_ms: { daemon: Summary; in_process: Summary };
  ratio_median_in_process_over_daemon: number;
  ratio_p95_in_process_over_daemon: number;
  cli_ratio_median: number;
}

export function summarize(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? NaN;
  const r = (v: number): number => Math.round(v * 100) / 100;
  return { n: s.length, median: r(rank(0.5)), p95: r(rank(0.95)), mean: r(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)) };
}

const MAIN = fileURLToPath(new URL("../cli/main.js", import.meta.url));

function healthy(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path: "/readyz" }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once("error", () => resolve(false));
    req.end();
  });
}

async function firstCall(create: () => Promise<SandboxApi>): Promise<{ ms: number; sandbox: SandboxApi }> {
  const t0 = performance.now();
  const sandbox = await create();
  const r = await sandbox.commands.run(["true"]);
  const ms = performance.now() - t0;
  if (r.exitCode !== 0) throw new Error(`true exited ${String(r.exitCode)}`);
  return { ms, sandbox };
}

/** A real `luminaguard serve` for a benchmark: a private socket and runtime directory, a warm pool of one backend. */
export interface BenchDaemon {
  socket: string;
  run: string;
  env: NodeJS.ProcessEnv;
  /** Resolves once the daemon's pool for the backend has `n` ready sandboxes (polls /v1/stats). */
  poolReady(n: number, timeoutMs?: number): Promise<void>;
  /** SIGTERM, wait for the exit, remove the directories. */
  stop(): Promise<void>;
}

/** Starts a daemon with a `pool` (MIN:MAX) of `backend` and no pool of the other, and waits until /readyz answers 200. */
export async function startBenchDaemon(backend: BackendName, pool = "2:8", extraArgs: readonly string[] = []): Promise<BenchDaemon> {
  const root = mkdtempSync(join(tmpdir(), "lg-bench-daemon-"));
  const run = join(root, "run");
  const home = join(root, "home");
  mkdirSync(run, { mode: 0o700 });
  mkdirSync(home, { mode: 0o700 });
  const socket = join(root, "d.sock");
  const env = { ...process.env, LUMINAGUARD_RUN: run, LUMINAGUARD_HOME: home, LUMINAGUARD_DAEMON: "" };
  const other = backend === "namespace" ? "microvm" : "namespace";
  const daemon = spawn(process.execPath, [MAIN, "serve", "--socket", socket, `--${backend}-pool`, pool, `--${other}-pool`, "0", "--no-recover", ...extraArgs], {
    env,
    stdio: ["ignore", "ignore", "inherit"],
  });
  const stop = async (): Promise<void> => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((r) => daemon.once("exit", r));
      daemon.kill("SIGTERM");
      await exited;
    }
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const end = Date.now() + 120_000;
    while (!(await healthy(socket))) {
      if (Date.now() > end || daemon.exitCode !== null) throw new Error("the daemon did not become ready");
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const poolReady = async (n: number, timeoutMs = 120_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const ready = (await getJson<{ pools: Record<string, { ready: number }> }>(socket, "/v1/stats")).pools[backend]?.ready ?? 0;
      if (ready >= n) return;
      if (Date.now() > end) throw new Error(`the daemon's ${backend} pool did not reach ${n} ready sandboxes within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { socket, run, env, poolReady, stop };
}

function getJson<T>(socket: string, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as T);
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.once("error", reject);
    req.end();
  });
}

/**
 * spawn_first_call_ms through a running daemon: `Sandbox.create({ daemon: true })` then `true`, with the daemon's
 * pool hot (`poolReady(2)` before each), `runs` times after 3 warm-up calls. Uses $LUMINAGUARD_SOCKET as set by the caller.
 */
export async function daemonFirstCalls(d: BenchDaemon, backend: BackendName, runs: number, progress?: (done: number) => void): Promise<number[]> {
  const out: number[] = [];
  for (let i = -3; i < runs; i++) {
    await d.poolReady(2);
    const { ms, sandbox } = await firstCall(() => Sandbox.create({ backend, daemon: true }));
    await sandbox.kill();
    if (i >= 0) {
      out.push(ms);
      progress?.(i);
    }
  }
  return out;
}

export async function benchDaemon(o: DaemonBenchOptions): Promise<DaemonBenchResult> {
  const say = o.log ?? (() => undefined);
  const d = await startBenchDaemon(o.backend);
  const { socket, run, env } = d;
  const savedSocket = process.env["LUMINAGUARD_SOCKET"];
  const savedRun = process.env["LUMINAGUARD_RUN"];
  process.env["LUMINAGUARD_SOCKET"] = socket;
  process.env["LUMINAGUARD_RUN"] = run;
  const pool = new SandboxPool({ backend: getBackend(o.backend), minSize: 2, maxSize: 8 });
  try {
    await pool.warm(2);
    const variants = {
      daemon_pool_hot: () => Sandbox.create({ backend: o.backend, daemon: true }),
      in_process_no_pool: () => Sandbox.create({ backend: o.backend, daemon: false }),
      in_process_pool_hot: () => pool.acquire(),
    };
    const samples: Record<keyof typeof variants, number[]> = { daemon_pool_hot: [], in_process_no_pool: [], in_process_pool_hot: [] };
    const names = Object.keys(variants) as (keyof typeof variants)[];
    for (let i = -3; i < o.runs; i++) {
      // Rotate the order so that no variant always runs right after another's teardown.
      for (let k = 0; k < names.length; k++) {
        const name = names[(k + Math.max(0, i)) % names.length] as keyof typeof variants;
        const { ms, sandbox } = await firstCall(variants[name]);
        await sandbox.kill();
        if (i >= 0) samples[name].push(ms);
      }
      // Both pools refill in the background between iterations (a namespace spawn with its own
      // size-limited workspace takes ~100 ms here, a micro-VM restore under TCG ~1 s): "pool hot".
      await new Promise((r) => setTimeout(r, o.pauseMs ?? (o.backend === "microvm" ? 2000 : 300)));
      if (i >= 0 && (i + 1) % 10 === 0) say(`sdk: ${i + 1}/${o.runs}`);
    }
    const cli: { daemon: number[]; in_process: number[] } = { daemon: [], in_process: [] };
    for (let i = 0; i < o.cliRuns; i++) {
      for (const which of i % 2 === 0 ? (["daemon", "in_process"] as const) : (["in_process", "daemon"] as const)) {
        const t0 = performance.now();
        const r = spawnSync(process.execPath, [MAIN, "exec", "--backend", o.backend, ...(which === "daemon" ? [] : ["--no-daemon"]), "--", "true"], {
          env: { ...env, LUMINAGUARD_SOCKET: socket },
          encoding: "utf8",
        });
        const ms = performance.now() - t0;
        if (r.status !== 0) throw new Error(`exec failed: ${r.stderr}`);
        if ((which === "daemon") !== r.stderr.includes("via the daemon")) throw new Error(`exec ${which} did not run where expected: ${r.stderr}`);
        cli[which].push(ms);
        await new Promise((res) => setTimeout(res, 100));
      }
      if ((i + 1) % 5 === 0) say(`cli: ${i + 1}/${o.cliRuns}`);
    }
    const s = {
      daemon_pool_hot: summarize(samples.daemon_pool_hot),
      in_process_no_pool: summarize(samples.in_process_no_pool),
      in_process_pool_hot: summarize(samples.in_process_pool_hot),
    };
    const c = { daemon: summarize(cli.daemon), in_process: summarize(cli.in_process) };
    const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
    return {
      backend: o.backend,
      spawn_first_call_ms: s,
      cli_exec_true_ms: c,
      ratio_median_in_process_over_daemon: ratio(s.in_process_no_pool.median, s.daemon_pool_hot.median),
      ratio_p95_in_process_over_daemon: ratio(s.in_process_no_pool.p95, s.daemon_pool_hot.p95),
      cli_ratio_median: ratio(c.in_process.median, c.daemon.median),
    };
  } finally {
    await pool.drain();
    if (savedSocket === undefined) delete process.env["LUMINAGUARD_SOCKET"];
    else process.env["LUMINAGUARD_SOCKET"] = savedSocket;
    if (savedRun === undefined) delete process.env["LUMINAGUARD_RUN"];
    else process.env["LUMINAGUARD_RUN"] = savedRun;
    await d.stop();
  }
}
