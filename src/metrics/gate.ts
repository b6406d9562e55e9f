// The gate behind `luminaguard metrics check`: a run fails when one of its criteria fails, or when a figure
// got worse than its baseline run's beyond the noise (the bootstrap comparison of compare.ts).
import { compareRuns, type MetricComparison } from "./compare.js";
import type { BenchRun, Criterion } from "./schema.js";

/** Figures that describe the machine or a reference, not LuminaGuard: a change there is no regression of ours. */
const NOT_OURS = /^(baseline_|ref_)|_host_mem_available|^cpu_util_pct|_cpu_pct\b|event_loop_delay|_over_deadline$/;

export interface GateRun {
  id: string;
  run: BenchRun;
  /** The run it is compared with, when a baseline was asked for and one was found. */
  baseline?: { id: string; run: BenchRun };
}

export interface GateVerdict {
  id: string;
  scenario: string;
  backend: string;
  failed: Criterion[];
  unmeasured: Criterion[];
  /** Metrics worse than the baseline's, outside the bootstrap's 95% interval and by more than the minimum change. */
  regressions: MetricComparison[];
  baselineId?: string;
  /** A baseline was asked for and none of the same scenario and backend exists. */
  noBaseline: boolean;
  pass: boolean;
}

export function judgeRun(g: GateRun, wantBaseline: boolean): GateVerdict {
  const failed = g.run.criteria.filter((c) => c.pass === false);
  const unmeasured = g.run.criteria.filter((c) => c.pass === null);
  let regressions: MetricComparison[] = [];
  if (g.baseline) {
    regressions = compareRuns(g.baseline.run, g.run).metrics.filter((m) => m.verdict === "worse" && m.method === "bootstrap" && !NOT_OURS.test(m.metric));
  }
  return {
    id: g.id,
    scenario: g.run.scenario,
    backend: g.run.backend,
    failed,
    unmeasured,
    regressions,
    ...(g.baseline ? { baselineId: g.baseline.id } : {}),
    noBaseline: wantBaseline && !g.baseline,
    pass: failed.length === 0 && regressions.length === 0,
  };
}
