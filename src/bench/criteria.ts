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
    out.push(c("95% of spawns < 120 ms", spawnMetric, "p95", "<", 120, "phase3"));
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
    if (backend === "microvm") {
      out.push(c("PSS idle ≤ 30 MiB per VM (10 alive)", "pss_idle_mib", "p50", "<=", 30, "project"));
      out.push(c("the file-tool jail adds ≤ 2 MiB per sandbox", "pss_file_jail_mib", "p50", "<=", 2, "project"));
    }
  }
  if (scenario === "tools" || scenario === "all") {
    out.push(c("1000+ tool executions/min", "throughput_ops_per_min", "p50", ">=", 1000, "phase3"));
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
    out.push(c("our client → local stdio server p95 ≤ 5 ms", "mcp_latency_ms.client_fs_stdio", "p95", "<=", 5, "project"));
    if (backend === "namespace") {
      out.push(c("our sandboxed read_file p95 ≤ 5 ms", "mcp_latency_ms.server_read_file", "p95", "<=", 5, "project"));
      out.push(c("pipelined throughput ≥ 1.0× unsandboxed server-filesystem", "mcp_throughput_ratio.server_read_file_over_ref", "p50", ">=", 1.0, "project"));
    }
  }
  if (scenario === "cli" || scenario === "all") {
    out.push(c("`luminaguard --version` ≤ 1.5× `node -e 0`", "cli_ratio.version_over_node", "p50", "<=", 1.5, "project"));
    out.push(c("`exec --backend namespace -- true` ≤ 0.5× `srt true`", "cli_ratio.exec_namespace_over_srt", "p50", "<=", 0.5, "project"));
    out.push(c("`exec --backend microvm -- true` ≤ 1.0× `srt true`", "cli_ratio.exec_microvm_over_srt", "p50", "<=", 1.0, "project"));
  }
  return out;
}
