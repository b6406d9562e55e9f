// Success criteria per scenario and backend: the Phase 3 targets (the floor) and this project's own.
import type { CriterionDef } from "../metrics/schema.js";
import type { BackendName } from "../sandbox/types.js";

const c = (name: string, metric: string, stat: CriterionDef["stat"], op: CriterionDef["op"], target: number, source: CriterionDef["source"]): CriterionDef => ({
  name,
  metric,
  stat,
  op,
  target,
  source,
});

export function criteriaFor(scenario: string, backend: BackendName): CriterionDef[] {
  const out: CriterionDef[] = [];
  if (scenario === "spawn" || scenario === "all") {
    // Phase 3: median spawn under 100 ms, 95% under 120 ms, "< 5% variance" (the coefficient of
    // variation). For microvm "spawn" is a real restore.
    const spawnMetric = backend === "microvm" ? "restore_ms" : "spawn_ms";
    out.push(c("median spawn < 100 ms", spawnMetric, "p50", "<", 100, "phase3"));
    // As worded: the share of all spawns (over every run) under 120 ms, not a percentile of one run.
    out.push(c("95% of spawns < 120 ms", `${spawnMetric}_under_120ms_share_pct`, "p50", ">=", 95, "phase3"));
    out.push(c("spawn variance < 5% (coefficient of variation)", `${spawnMetric}_cv_pct`, "p50", "<=", 5, "phase3"));
    out.push(c("handout p50 ≤ 2 ms", "handout_ms", "p50", "<=", 2, "project"));
    if (backend === "namespace") {
      out.push(c("handout p95 ≤ 5 ms", "handout_ms", "p95", "<=", 5, "project"));
      out.push(c("first call (pool hot) p50 ≤ 15 ms", "spawn_first_call_ms", "p50", "<=", 15, "project"));
    } else {
      // Same-run ratios: absolute times differ 2-3x between our machines, these do not.
      out.push(c("restore p50 ≤ 2.5× bare QEMU start", "restore_over_bare_qemu", "p50", "<=", 2.5, "project"));
      out.push(c("restore p95 ≤ 1.3× its p50", "restore_ms_p95_over_p50", "p50", "<=", 1.3, "project"));
      out.push(c("first call (drained) p50 ≤ 3.5× bare QEMU start", "first_call_drained_over_bare_qemu", "p50", "<=", 3.5, "project"));
    }
  }
  if (scenario === "memory" || scenario === "all") {
    out.push(c("< 200 MB per agent (workload)", "pss_workload_mib", "max", "<", 200, "phase3"));
    // As worded: of the runs, the share whose peak (sampled through the workload) stays under 200 MB.
    out.push(c("90% of runs under 200 MB peak", "memory_runs_under_200mb_peak_share_pct", "p50", ">=", 90, "phase3"));
    if (backend === "microvm") {
      out.push(c("PSS idle ≤ 30 MiB per VM (10 alive)", "pss_idle_mib", "p50", "<=", 30, "project"));
      out.push(c("the file-tool jail adds ≤ 2 MiB per sandbox", "pss_file_jail_mib", "p50", "<=", 2, "project"));
    }
  }
  if (scenario === "tools" || scenario === "all") {
    out.push(c("1000+ tool executions/min", "throughput_ops_per_min", "p50", ">=", 1000, "phase3"));
    out.push(c("95% of runs at 1,000+ ops/min", "throughput_runs_at_1000_share_pct", "p50", ">=", 95, "phase3"));
    // "CPU < 50% 85% of the time": the share of samples at 1,000 executions a minute under 50 %.
    out.push(c("CPU < 50% in ≥ 85% of samples at 1,000 ops/min", "cpu_under_50_share_pct", "p50", ">=", 85, "phase3"));
    if (backend === "namespace") out.push(c("throughput ≥ 60,000 ops/min (C=8)", "throughput_ops_per_min", "p50", ">=", 60_000, "project"));
    if (backend === "microvm") {
      for (const tool of ["read_file", "write_file", "list_directory", "search"]) {
        out.push(c(`${tool} p50 ≤ 2× the namespace backend's`, `tool_over_namespace.${tool}`, "p50", "<=", 2, "project"));
      }
      out.push(c("execute_command p50 ≤ 6× unsandboxed", "execute_command_over_ref", "p50", "<=", 6, "project"));
      out.push(c("throughput ≥ 0.25× the namespace backend's (C=8)", "throughput_over_namespace", "p50", ">=", 0.25, "project"));
    }
  }
  if (scenario === "mcp" || scenario === "all") {
    out.push(c("MCP p95 < 50 ms (our server's read_file)", "mcp_latency_ms.server_read_file", "p95", "<", 50, "phase3"));
    out.push(c("90% of requests under 50 ms (our server's read_file)", "mcp_requests_under_50ms_share_pct", "p50", ">=", 90, "phase3"));
    out.push(c("our client → local stdio server p95 ≤ 5 ms", "mcp_latency_ms.client_fs_stdio", "p95", "<=", 5, "project"));
    if (backend === "namespace") {
      out.push(c("our sandboxed read_file p95 ≤ 5 ms", "mcp_latency_ms.server_read_file", "p95", "<=", 5, "project"));
      out.push(c("pipelined throughput ≥ 1.0× unsandboxed server-filesystem", "mcp_throughput_ratio.server_read_file_over_ref", "p50", ">=", 1.0, "project"));
    }
  }
  if (scenario === "scale") {
    // Phase 3, weeks 3-4: "no degradation up to 50 agents" (throughput never below 90% of the best at fewer agents).
    out.push(c("no degradation up to 50 agents", "scale_degradation_to_50_ratio", "min", ">=", 0.9, "phase3"));
    // "Graceful degradation" made measurable (issue 11).
    out.push(c("plateau past saturation: ≥ 90% of peak throughput at the most agents", "scale_plateau_ratio", "min", ">=", 0.9, "project"));
    out.push(c("no failure other than CAPACITY", "scale_failures_not_capacity", "max", "<=", 0, "project"));
    out.push(c("fairness (Jain's index) ≥ 0.9 at every agent count", "scale_fairness_jain_min", "min", ">=", 0.9, "project"));
    out.push(c("p99 wait for a sandbox within the spawn deadline", "scale_wait_p99_over_deadline", "max", "<=", 1, "project"));
  }
  if (scenario === "cli" || scenario === "all") {
    out.push(c("`luminaguard --version` ≤ 1.5× `node -e 0`", "cli_ratio.version_over_node", "p50", "<=", 1.5, "project"));
    out.push(c("`exec --backend namespace -- true` ≤ 0.5× `srt true`", "cli_ratio.exec_namespace_over_srt", "p50", "<=", 0.5, "project"));
    // Issue 12: "from a cold CLI (the service's pool, or a restore...)": the service path when measured (see the run's notes).
    out.push(c("`exec --backend microvm -- true` ≤ 1.0× `srt true` from a cold CLI (through the service's warm pool when measured)", "cli_ratio.exec_microvm_cold_cli_over_srt", "p50", "<=", 1.0, "project"));
    out.push(c("`exec --backend namespace -- true` ≤ 0.3× `srt true` with the service running", "cli_ratio.exec_namespace_daemon_over_srt", "p50", "<=", 0.3, "project"));
  }
  return out;
}

/** Where a scenario's samples accumulate (the Recorder), structurally. */
interface Samples {
  samples: Record<string, number[]>;
  units: Record<string, string>;
  notes: string[];
}

/** Percent of xs for which ok holds. */
function sharePct(xs: readonly number[], ok: (v: number) => boolean): number {
  return (100 * xs.filter(ok).length) / xs.length;
}

/** Coefficient of variation in percent: sample standard deviation over mean. */
export function cvPct(xs: readonly number[]): number {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1);
  return (100 * Math.sqrt(variance)) / mean;
}

/** 200 MB as the Phase 3 plan writes it (decimal megabytes), in the MiB our PSS figures use. */
export const MB200_IN_MIB = 200e6 / 2 ** 20;

/**
 * The Phase 3 acceptance figures computed exactly as worded, once every repeat of a scenario has run:
 * over all spawns, over runs (one figure per run), or over time samples. Each replaces whatever a single run
 * put under the same name, so that the criterion judges the whole set. `runs` is how many repeats ran.
 */
export function wordedFigures(rec: Samples, runs: number): void {
  const set = (metric: string, unit: string, value: number): void => {
    rec.samples[metric] = [value];
    rec.units[metric] = unit;
  };
  const few = (what: string, need: number, have: number): void => {
    if (have < need) rec.notes.push(`${what}: only ${have} run${have === 1 ? "" : "s"}; a share of runs needs at least ${need} to tell ${Math.round(100 - 100 / need)}% (use --repeat ${need})`);
  };
  for (const spawn of ["spawn_ms", "restore_ms"]) {
    const xs = rec.samples[spawn];
    if (!xs || xs.length === 0) continue;
    set(`${spawn}_under_120ms_share_pct`, "%", sharePct(xs, (v) => v < 120));
    if (xs.length > 1) set(`${spawn}_cv_pct`, "%", cvPct(xs));
  }
  const peaks = rec.samples["pss_run_peak_mib"];
  if (peaks && peaks.length > 0) {
    set("memory_runs_under_200mb_peak_share_pct", "%", sharePct(peaks, (v) => v < MB200_IN_MIB));
    few("90% of runs under 200 MB peak", 10, peaks.length);
  }
  const tp = rec.samples["throughput_ops_per_min"];
  if (tp && tp.length > 0) {
    set("throughput_runs_at_1000_share_pct", "%", sharePct(tp, (v) => v >= 1000));
    if (tp.length > 1) set("throughput_cv_pct", "%", cvPct(tp));
    few("95% of runs at 1,000+ ops/min", 20, tp.length);
  }
  const cpu = rec.samples["cpu_util_pct_at_seed_rate"];
  if (cpu && cpu.length > 0) set("cpu_under_50_share_pct", "%", sharePct(cpu, (v) => v < 50));
  const mcp = rec.samples["mcp_latency_ms.server_read_file"];
  if (mcp && mcp.length > 0) set("mcp_requests_under_50ms_share_pct", "%", sharePct(mcp, (v) => v < 50));
  if (runs > 1) rec.notes.push(`figures over ${runs} runs of the scenario (--repeat ${runs})`);
}
