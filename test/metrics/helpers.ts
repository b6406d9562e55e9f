// Synthetic but realistic benchmark runs (seeded, so every test run sees the same numbers) and temp directories.
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchRun, CriterionDef, Machine, SeriesPoint } from "../../src/metrics/schema.js";
import { seededRandom } from "../../src/metrics/stats.js";
import { createRun } from "../../src/metrics/store.js";

export const MACHINE: Machine = { cpus: 2, cpuModel: "Test CPU @ 2.0GHz", memGiB: 7.8, hostKernel: "6.1.0-test", node: "v20.20.2" };

export function tempDir(prefix = "lg-metrics-test-"): { dir: string; remove: () => void } {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** n samples of a log-normal distribution with this median and spread (sigma of the log). */
export function lognormal(n: number, median: number, sigma: number, seed: number): number[] {
  const rand = seededRandom(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    // Box-Muller
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    out.push(median * Math.exp(sigma * z));
  }
  return out;
}

export const SPAWN_CRITERIA: CriterionDef[] = [
  { name: "median spawn < 100 ms", metric: "spawn_ms", stat: "p50", op: "<", target: 100, source: "phase3" },
  { name: "95% of spawns < 120 ms", metric: "spawn_ms", stat: "p95", op: "<", target: 120, source: "phase3" },
  { name: "handout p50 ≤ 2 ms", metric: "handout_ms", stat: "p50", op: "<=", target: 2, source: "project" },
  { name: "restore p50 ≤ 100 ms", metric: "restore_ms", stat: "p50", op: "<=", target: 100, source: "project" },
];

/** A spawn-like run: spawn latencies (scaled by `slowdown`), handouts, a baseline; criteria evaluated. */
export function spawnRun(startedAt: string, options: { backend?: string; slowdown?: number; seed?: number } = {}): Promise<BenchRun> {
  const k = options.slowdown ?? 1;
  const seed = options.seed ?? 1;
  return createRun({
    scenario: "spawn",
    backend: options.backend ?? "namespace",
    accel: null,
    startedAt,
    durationMs: 12_345,
    samples: {
      spawn_ms: lognormal(200, 60 * k, 0.25, seed),
      handout_ms: lognormal(200, 0.8 * k, 0.4, seed + 1),
      baseline_process_spawn_ms: lognormal(50, 1.1, 0.2, seed + 2),
    },
    units: { spawn_ms: "ms", handout_ms: "ms", baseline_process_spawn_ms: "ms" },
    criteria: SPAWN_CRITERIA,
    baselines: { spawn_ms: "baseline_process_spawn_ms" },
    notes: ["synthetic data for tests"],
    info: { runs: 200 },
    commit: "abc1234",
    machine: MACHINE,
  });
}

/** A tools-and-memory run with many samples, time series and PSS per sandbox. */
export function toolsRun(startedAt: string): Promise<BenchRun> {
  const tools = ["read_file", "write_file", "list_dir", "exec", "search"];
  const samples: Record<string, number[]> = {};
  const units: Record<string, string> = {};
  tools.forEach((t, i) => {
    samples[`tool_latency_ms.${t}`] = lognormal(2000, 2 + i * 3, 0.5, 10 + i);
    samples[`ref_tool_latency_ms.${t}`] = lognormal(2000, 0.2 + i * 0.4, 0.4, 20 + i);
    units[`tool_latency_ms.${t}`] = "ms";
    units[`ref_tool_latency_ms.${t}`] = "ms";
  });
  const rand = seededRandom(99);
  const throughput: SeriesPoint[] = Array.from({ length: 30 }, (_, i) => ({ tMs: i * 1000, value: Math.round(1100 + 150 * Math.sin(i / 3) + rand() * 80) }));
  const cpu: SeriesPoint[] = Array.from({ length: 60 }, (_, i) => ({ tMs: i * 500, value: Math.round((38 + 10 * Math.sin(i / 6) + rand() * 6) * 10) / 10 }));
  samples["throughput_ops_per_min"] = [66_123];
  units["throughput_ops_per_min"] = "ops/min";
  samples["cpu_util_pct"] = cpu.map((p) => p.value);
  units["cpu_util_pct"] = "%";
  samples["pss_idle_mib"] = lognormal(10, 24, 0.08, 7);
  samples["pss_workload_mib"] = lognormal(10, 61, 0.1, 8);
  samples["pss_idle_total_mib"] = [243];
  units["pss_idle_mib"] = "MiB";
  units["pss_workload_mib"] = "MiB";
  units["pss_idle_total_mib"] = "MiB";
  return createRun({
    scenario: "tools",
    backend: "microvm",
    accel: "kvm",
    startedAt,
    durationMs: 95_000,
    samples,
    units,
    series: { throughput_ops_per_s: throughput, cpu_util_pct: cpu },
    criteria: [
      { name: "1000+ tool executions/min", metric: "throughput_ops_per_min", stat: "p50", op: ">=", target: 1000, source: "phase3" },
      { name: "CPU < 50% under concurrency (mean)", metric: "cpu_util_pct", stat: "mean", op: "<", target: 50, source: "phase3" },
      { name: "< 200 MB per agent (workload)", metric: "pss_workload_mib", stat: "max", op: "<", target: 200, source: "phase3" },
      { name: "PSS idle ≤ 30 MiB per VM", metric: "pss_idle_mib", stat: "p50", op: "<=", target: 30, source: "project" },
      { name: "read_file p95 ≤ 3 ms", metric: "tool_latency_ms.read_file", stat: "p95", op: "<=", target: 3, source: "project" },
      { name: "never measured", metric: "nope_ms", stat: "p50", op: "<", target: 1, source: "project" },
    ],
    notes: ["tools: 0 operations failed"],
    commit: "def5678",
    machine: MACHINE,
  });
}

/** A scale run: throughput, latency, waits and fairness per agent count; `collapse` makes throughput fall past the peak. */
export function scaleRun(startedAt: string, options: { collapse?: boolean; failures?: Record<number, Record<string, number>> } = {}): Promise<BenchRun> {
  const agents = [1, 5, 10, 25];
  const samples: Record<string, number[]> = {};
  const units: Record<string, string> = {};
  const put = (name: string, unit: string, values: number[]): void => {
    samples[name] = values;
    units[name] = unit;
  };
  const tp: Record<number, number> = options.collapse ? { 1: 2000, 5: 6700, 10: 5000, 25: 2900 } : { 1: 2000, 5: 6000, 10: 6400, 25: 6300 };
  for (const c of agents) {
    put(`scale_throughput_ops_per_min.c${c}`, "ops/min", [tp[c] as number]);
    put(`scale_agent_ops_per_min.c${c}`, "ops/min", Array.from({ length: c }, (_, i) => (tp[c] as number) / c + (i % 2 ? 5 : -5)));
    put(`scale_tool_latency_ms.c${c}`, "ms", lognormal(300, 1 + c / 5, 0.6, c));
    put(`scale_sandbox_wait_ms.c${c}`, "ms", lognormal(c, 100 * c, 0.2, c + 100));
    put(`scale_fairness_jain.c${c}`, "", [0.99]);
    put(`scale_cpu_pct.c${c}`, "%", [Math.min(100, 40 * c)]);
    put(`scale_pss_total_mib.c${c}`, "MiB", [c * 20, c * 25]);
    const byCode = options.failures?.[c] ?? {};
    let all = 0;
    let notCapacity = 0;
    for (const [code, n] of Object.entries(byCode)) {
      put(`scale_failures.c${c}.${code}`, "", [n]);
      all += n;
      if (code !== "CAPACITY") notCapacity += n;
    }
    put(`scale_failures.c${c}`, "", [all]);
    put(`scale_failures_not_capacity.c${c}`, "", [notCapacity]);
  }
  const peak = Math.max(...Object.values(tp));
  put("scale_plateau_ratio", "ratio", [(tp[25] as number) / peak]);
  put("scale_failures_not_capacity", "", [Object.values(options.failures ?? {}).reduce((a, m) => a + Object.entries(m).reduce((b, [code, n]) => b + (code === "CAPACITY" ? 0 : n), 0), 0)]);
  return createRun({
    scenario: "scale",
    backend: "namespace",
    accel: null,
    startedAt,
    durationMs: 200_000,
    samples,
    units,
    criteria: [
      { name: "plateau past saturation: ≥ 90% of peak throughput at the most agents", metric: "scale_plateau_ratio", stat: "min", op: ">=", target: 0.9, source: "project" },
      { name: "no failure other than CAPACITY", metric: "scale_failures_not_capacity", stat: "max", op: "<=", target: 0, source: "project" },
    ],
    notes: [],
    commit: "abc1234",
    machine: MACHINE,
  });
}
