// How a `bench scale` run reads: one row per agent count (from its `<metric>.c<C>` figures), and the two
// charts against agents: throughput, and latency (tool calls and the wait for a sandbox).
import type { BenchRun } from "./schema.js";
import { lineChart, PALETTE, type LineSeries } from "./svg.js";

export interface ScaleLevel {
  agents: number;
  opsPerMin: number | undefined;
  agentOpsP50: number | undefined;
  latency: { p50: number; p95: number; p99: number } | undefined;
  wait: { p50: number; p95: number; max: number } | undefined;
  failures: number;
  notCapacity: number;
  /** Failures per error code. */
  byCode: Record<string, number>;
  cpuMean: number | undefined;
  pssPeakMiB: number | undefined;
  fairness: number | undefined;
  loopMaxMs: number | undefined;
}

const LEVEL = /^scale_throughput_ops_per_min\.c(\d+)$/;

/** The levels a scale run measured, fewest agents first; empty for any other run. */
export function scaleLevels(run: BenchRun): ScaleLevel[] {
  const agents = Object.keys(run.metrics)
    .map((m) => LEVEL.exec(m)?.[1])
    .filter((c): c is string => c !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  return agents.map((c) => {
    const m = (name: string) => run.metrics[`${name}.c${c}`];
    const sum = (name: string): number => (run.samples?.[`${name}.c${c}`] ?? (m(name) ? [(m(name)?.mean ?? 0) * (m(name)?.n ?? 0)] : [])).reduce((a, b) => a + b, 0);
    const byCode: Record<string, number> = {};
    const prefix = `scale_failures.c${c}.`;
    for (const [name, s] of Object.entries(run.metrics)) if (name.startsWith(prefix)) byCode[name.slice(prefix.length)] = s.mean * s.n;
    const lat = m("scale_tool_latency_ms");
    const wait = m("scale_sandbox_wait_ms");
    return {
      agents: c,
      opsPerMin: m("scale_throughput_ops_per_min")?.p50,
      agentOpsP50: m("scale_agent_ops_per_min")?.p50,
      latency: lat ? { p50: lat.p50, p95: lat.p95, p99: lat.p99 } : undefined,
      wait: wait ? { p50: wait.p50, p95: wait.p95, max: wait.max } : undefined,
      failures: sum("scale_failures"),
      notCapacity: sum("scale_failures_not_capacity"),
      byCode,
      cpuMean: m("scale_cpu_pct")?.mean,
      pssPeakMiB: m("scale_pss_total_mib")?.max,
      fairness: m("scale_fairness_jain")?.min,
      loopMaxMs: m("scale_event_loop_delay_max_ms")?.max,
    };
  });
}

interface ScaleChart {
  name: string;
  title: string;
  svg: string;
}

/** Throughput and latency against agents; none when the run has fewer than two levels. */
export function scaleCharts(run: BenchRun, subtitle: string): ScaleChart[] {
  const levels = scaleLevels(run);
  if (levels.length < 2) return [];
  const pts = (f: (l: ScaleLevel) => number | undefined): Array<[number, number]> =>
    levels.flatMap((l) => {
      const v = f(l);
      return v === undefined ? [] : [[l.agents, v] as [number, number]];
    });
  const tp = pts((l) => l.opsPerMin);
  const peak = Math.max(...tp.map((p) => p[1]));
  const throughput = lineChart({
    title: "Throughput against agents",
    subtitle,
    xLabel: "agents at once",
    yLabel: "tool calls (ops/min, all agents)",
    xScale: "auto",
    series: [{ name: "ops/min, all agents", points: tp, color: PALETTE[0] as string }],
    yRefs: [
      { value: peak, label: `peak ${Math.round(peak).toLocaleString("en-US")}`, color: "#555" },
      { value: 0.9 * peak, label: "90% of peak (plateau floor)", color: "#c0392b" },
    ],
    legend: [
      { label: "ops/min, all agents", color: PALETTE[0] as string },
      { label: "90% of peak: the plateau floor", color: "#c0392b", dash: "4 4" },
    ],
  });
  const lat: LineSeries[] = [
    { name: "tool call p50", points: pts((l) => l.latency?.p50), color: PALETTE[0] as string },
    { name: "tool call p95", points: pts((l) => l.latency?.p95), color: PALETTE[1] as string },
    { name: "tool call p99", points: pts((l) => l.latency?.p99), color: PALETTE[2] as string },
  ].filter((s) => s.points.length > 0);
  const latency = lineChart({
    title: "Latency against agents",
    subtitle,
    xLabel: "agents at once",
    yLabel: "tool call (ms)",
    xScale: "auto",
    series: lat,
  });
  const charts = [
    { name: "throughput-vs-agents", title: "Throughput against agents", svg: throughput },
    { name: "latency-vs-agents", title: "Latency against agents", svg: latency },
  ];
  // Seconds where calls take milliseconds: its own chart, so that neither flattens the other.
  const wait: LineSeries[] = [
    { name: "wait p50", points: pts((l) => l.wait?.p50), color: PALETTE[0] as string },
    { name: "wait p95", points: pts((l) => l.wait?.p95), color: PALETTE[1] as string },
    { name: "wait max", points: pts((l) => l.wait?.max), color: PALETTE[2] as string, dash: "6 4" },
  ].filter((s) => s.points.length > 0);
  if (wait.length > 0) {
    charts.push({
      name: "sandbox-wait-vs-agents",
      title: "Time to get a sandbox against agents",
      svg: lineChart({ title: "Time to get a sandbox against agents", subtitle, xLabel: "agents at once (all asking at once)", yLabel: "request → sandbox ready (ms)", xScale: "auto", series: wait }),
    });
  }
  return charts;
}
