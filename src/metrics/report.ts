// A Markdown report with hand-made SVG charts: latency CDFs, throughput and CPU over time, memory per sandbox.
import { faultMatrixSection } from "./report-faults.js";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { compareRuns, type RunComparison } from "./compare.js";
import { baselineRatios, criteriaSummary, formatNumber, formatRatio, nodeFlags, targetText } from "./format.js";
import type { BenchRun, Criterion, SeriesPoint } from "./schema.js";
import { scaleCharts, scaleLevels } from "./scale-view.js";
import { percentile } from "./stats.js";
import { barChart, lineChart, PALETTE, type Bar, type LegendItem, type LineSeries, type RefLine } from "./svg.js";

interface Chart {
  /** File name inside the report directory. */
  file: string;
  title: string;
  svg: string;
}

export interface ReportInput {
  id: string;
  run: BenchRun;
}

interface ReportResult {
  dir: string;
  /** Path of report.md. */
  markdown: string;
  /** Paths of the SVG files written. */
  charts: string[];
}

const TIME_UNITS = /^(ns|us|µs|ms|s)$/i;
const MAX_LINES_PER_CHART = 10;
const CDF_POINTS = 400;

const slug = (s: string): string =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 48) || "x";

const pct = (v: number): string => `${Math.round(v * 100)}%`;

function opText(op: Criterion["op"]): string {
  return { "<=": "≤", ">=": "≥", "<": "<", ">": ">" }[op];
}

/** Points of an empirical CDF: a step per sample when few, CDF_POINTS quantiles when many. */
export function cdfPoints(samples: readonly number[]): { points: Array<[number, number]>; step: boolean } {
  const s = Float64Array.from(samples).sort();
  const n = s.length;
  if (n === 0) return { points: [], step: false };
  if (n <= 300) {
    const points: Array<[number, number]> = [[s[0] as number, 0]];
    s.forEach((v, i) => points.push([v, (i + 1) / n]));
    return { points, step: true };
  }
  const points: Array<[number, number]> = [];
  for (let k = 0; k <= CDF_POINTS; k++) points.push([percentile(s, k / CDF_POINTS), k / CDF_POINTS]);
  return { points, step: false };
}

interface Family {
  key: string;
  members: Array<{ metric: string; label: string; reference: boolean }>;
}

/**
 * Latency metrics with samples, grouped for one chart each: `X.suffix` and `ref_X.suffix` share a chart
 * (colour per suffix, the unsandboxed reference dashed); undotted metrics form one family, baselines dashed.
 */
export function latencyFamilies(run: BenchRun): Family[] {
  const fams = new Map<string, Family>();
  for (const [metric, m] of Object.entries(run.metrics)) {
    if (!TIME_UNITS.test(m.unit) || (run.samples?.[metric]?.length ?? 0) < 2) continue;
    const dot = metric.indexOf(".");
    let key: string;
    let label: string;
    let reference: boolean;
    if (dot > 0) {
      const prefix = metric.slice(0, dot);
      reference = prefix.startsWith("ref_");
      key = reference ? prefix.slice(4) : prefix;
      label = metric.slice(dot + 1);
    } else {
      key = "";
      label = metric;
      reference = metric.startsWith("baseline_") || metric.startsWith("ref_");
    }
    const fam = fams.get(key) ?? { key, members: [] };
    fam.members.push({ metric, label, reference });
    fams.set(key, fam);
  }
  return [...fams.values()];
}

function targetsFor(run: BenchRun, metrics: readonly string[]): Criterion[] {
  return run.criteria.filter((c) => metrics.includes(c.metric));
}

function subtitleOf(run: BenchRun, extra: string): string {
  return `${run.scenario} on ${run.backend}${run.accel ? ` (${run.accel})` : ""} · commit ${run.commit} · ${run.startedAt.slice(0, 16).replace("T", " ")} UTC${extra ? ` · ${extra}` : ""}`;
}

function cdfCharts(run: BenchRun, prefix: string): Chart[] {
  const charts: Chart[] = [];
  for (const fam of latencyFamilies(run)) {
    // Colour per label, so a tool and its unsandboxed reference share one.
    const labels = [...new Set(fam.members.map((m) => m.label))];
    const dotted = fam.key !== "";
    for (let start = 0; start < labels.length; start += MAX_LINES_PER_CHART) {
      const chunk = labels.slice(start, start + MAX_LINES_PER_CHART);
      const members = fam.members.filter((m) => chunk.includes(m.label));
      const unit = run.metrics[members[0]?.metric ?? ""]?.unit ?? "ms";
      const colorOf = (label: string): string => PALETTE[chunk.indexOf(label) % PALETTE.length] ?? "#444";
      const series: LineSeries[] = members.map((m) => {
        const { points, step } = cdfPoints(run.samples?.[m.metric] ?? []);
        return { name: m.metric, points, step, color: colorOf(m.label), ...(m.reference ? { dash: "6 4" } : {}) };
      });
      const legend: LegendItem[] = dotted
        ? chunk.map((label) => {
            const own = run.metrics[`${fam.key}.${label}`];
            return { label: `${label}${own ? ` · p50 ${formatNumber(own.p50)} ${unit}` : ""}`, color: colorOf(label) };
          })
        : members.map((m) => {
            const s = run.metrics[m.metric];
            return { label: `${m.label}${s ? ` · p50 ${formatNumber(s.p50)} ${unit}` : ""}`, color: colorOf(m.label), ...(m.reference ? { dash: "6 4" } : {}) };
          });
      if (dotted && members.some((m) => m.reference)) legend.push({ label: "dashed: unsandboxed reference", color: "#777", dash: "6 4" });
      const targets = targetsFor(run, members.map((m) => m.metric)).filter((c) => c.stat !== "mean");
      const memberOf = (metric: string) => members.find((m) => m.metric === metric);
      const xRefs: RefLine[] = targets.map((c) => {
        const m = memberOf(c.metric);
        const who = m ? (dotted ? m.label : m.metric) : c.metric;
        return { value: c.target, label: `${who} ${c.stat} ${opText(c.op)} ${formatNumber(c.target)} ${unit}`, color: m ? colorOf(m.label) : "#c0392b" };
      });
      if (xRefs.length > 0) legend.push({ label: "dotted: target", color: "#555", dash: "2 3" });
      const part = labels.length > MAX_LINES_PER_CHART ? ` (${start / MAX_LINES_PER_CHART + 1})` : "";
      const title = dotted ? `${fam.key}: latency CDF by ${fam.key.includes("tool") ? "tool" : "kind"}${part}` : `${run.scenario}: latency CDF${part}`;
      const svg = lineChart({
        title,
        subtitle: subtitleOf(run, ""),
        xLabel: `latency (${unit})`,
        yLabel: "share of samples ≤ x",
        series,
        xScale: "auto",
        yDomain: [0, 1],
        yTicks: [0, 0.25, 0.5, 0.75, 1],
        yFormat: pct,
        yRefs: [
          { value: 0.5, label: "p50" },
          { value: 0.95, label: "p95" },
        ],
        xRefs,
        legend,
      });
      charts.push({ file: `${prefix}-cdf-${slug(fam.key || "latency")}${part ? `-${start / MAX_LINES_PER_CHART + 1}` : ""}.svg`, title, svg });
    }
  }
  return charts;
}

function unitOfSeries(run: BenchRun, name: string): string {
  const known = run.metrics[name]?.unit;
  if (known) return known;
  if (/_pct$|cpu/i.test(name)) return "%";
  if (/_per_s$/.test(name)) return name.includes("ops") ? "ops/s" : "/s";
  if (/_per_min$/.test(name)) return "ops/min";
  if (/_ms$/.test(name)) return "ms";
  if (/_mib$/i.test(name)) return "MiB";
  return "";
}

function seriesCharts(run: BenchRun, prefix: string): Chart[] {
  const charts: Chart[] = [];
  for (const [name, pts] of Object.entries(run.series ?? {})) {
    // A scale run keeps a series per agent count; its charts are against agents instead (scaleCharts).
    if (pts.length < 2 || /\.c\d+$/.test(name)) continue;
    const isCpu = /cpu/i.test(name);
    const unit = unitOfSeries(run, name);
    const mean = pts.reduce((a, p) => a + p.value, 0) / pts.length;
    const points = pts.map((p: SeriesPoint) => [p.tMs / 1000, p.value] as [number, number]);
    const targets = targetsFor(run, [name]).map((c) => ({ value: c.target, label: `target ${c.stat} ${opText(c.op)} ${formatNumber(c.target)}${unit === "%" ? "%" : ""}`, color: "#c0392b" }));
    const meanLabel = `mean ${formatNumber(mean)}${unit === "%" ? "%" : ` ${unit}`}`;
    const lineColor = (isCpu ? PALETTE[3] : PALETTE[0]) as string;
    const title = isCpu ? "CPU utilisation over time" : /throughput|ops/i.test(name) ? "Throughput over time" : `${name} over time`;
    const human = name.replace(/_(ops_per_s|ops_per_min|per_s|per_min|pct|ms|mib)$/i, "").replace(/_/g, " ");
    const yLabel = isCpu ? "CPU busy (% of all cores)" : unit ? `${human} (${unit})` : human;
    const svg = lineChart({
      title,
      subtitle: subtitleOf(run, `${pts.length} points`),
      xLabel: "time since start (s)",
      yLabel,
      series: [{ name, points, color: lineColor }],
      xScale: "linear",
      xMin: 0,
      ...(isCpu ? { yDomain: [0, 100] as [number, number], yTicks: [0, 25, 50, 75, 100], yFormat: (v: number) => `${v}%` } : {}),
      yRefs: [{ value: mean, label: meanLabel, color: "#555" }, ...targets],
      legend: [
        { label: `${name}`, color: lineColor },
        { label: meanLabel, color: "#555", dash: "4 4" },
        ...(targets.length > 0 ? [{ label: "target", color: "#c0392b", dash: "4 4" }] : []),
      ],
    });
    charts.push({ file: `${prefix}-${isCpu ? "cpu" : "series"}-${slug(name)}.svg`, title, svg });
  }
  return charts;
}

function memoryChart(run: BenchRun, prefix: string): Chart[] {
  const pss = Object.keys(run.metrics).filter((n) => n.startsWith("pss_"));
  const perSandbox = pss.filter((n) => !/total/i.test(n));
  const names = perSandbox.length > 0 ? perSandbox : pss;
  if (names.length === 0) return [];
  const unit = run.metrics[names[0] as string]?.unit ?? "MiB";
  const bars: Bar[] = names.map((n, i) => {
    const m = run.metrics[n];
    const samples = run.samples?.[n] ?? [];
    const crit = run.criteria.find((c) => c.metric === n && (c.op === "<" || c.op === "<="));
    return {
      label: `${n.replace(/^pss_/, "").replace(/_mib$|_mb$|_kib$/i, "")}${m ? ` (n=${m.n})` : ""}`,
      value: m?.p50 ?? 0,
      ...(m && m.n > 1 ? { min: m.min, max: m.max } : {}),
      ...(samples.length > 1 && samples.length <= 64 ? { points: samples } : {}),
      color: PALETTE[i % PALETTE.length] as string,
      ...(crit ? { target: { value: crit.target, label: `target: ${crit.stat} ${opText(crit.op)} ${formatNumber(crit.target)} ${unit}` } } : {}),
    };
  });
  const title = "Memory per sandbox (PSS)";
  const svg = barChart({
    title,
    subtitle: subtitleOf(run, ""),
    yLabel: `PSS per sandbox (${unit})`,
    xLabel: "bar: median across sandboxes · whisker: min–max · dot: one sandbox",
    bars,
    plotHeight: 280,
  });
  return [{ file: `${prefix}-memory-pss.svg`, title, svg }];
}

/** Every chart of one run; file names start with prefix. */
function runCharts(run: BenchRun, prefix: string): Chart[] {
  const scale = scaleCharts(run, subtitleOf(run, "")).map((c) => ({ file: `${prefix}-${c.name}.svg`, title: c.title, svg: c.svg }));
  return [...scale, ...cdfCharts(run, prefix), ...seriesCharts(run, prefix), ...memoryChart(run, prefix)];
}

const mdCell = (s: string): string => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

function mdTable(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly ("l" | "r")[] = []): string {
  const sep = headers.map((_, i) => (align[i] === "r" ? "---:" : "---"));
  return [headers, sep, ...rows].map((r) => `| ${r.map(mdCell).join(" | ")} |`).join("\n");
}

function passCell(pass: boolean | null): string {
  return pass === null ? "— not measured" : pass ? "✅ PASS" : "❌ FAIL";
}

function criteriaTable(run: BenchRun): string {
  return mdTable(
    ["result", "criterion", "source", "target", "value"],
    run.criteria.map((c) => {
      const unit = run.metrics[c.metric]?.unit ?? "";
      return [passCell(c.pass), c.name, c.source, `\`${c.metric}\` ${targetText(c, unit)}`, c.value === null ? "—" : `${formatNumber(c.value)} ${unit}`.trim()];
    }),
    ["l", "l", "l", "l", "r"],
  );
}

/** Every criterion of every run in one table: Phase 3 first, failures first within each, with the run it comes from. */
export function summaryTable(inputs: readonly ReportInput[]): string {
  const rows = inputs.flatMap(({ id, run }) => run.criteria.map((c) => ({ id, run, c })));
  const rank = (p: boolean | null): number => (p === false ? 0 : p === null ? 1 : 2);
  rows.sort((x, y) => (x.c.source === y.c.source ? 0 : x.c.source === "phase3" ? -1 : 1) || rank(x.c.pass) - rank(y.c.pass));
  return mdTable(
    ["result", "criterion", "source", "value", "target", "run"],
    rows.map(({ id, run, c }) => {
      const unit = run.metrics[c.metric]?.unit ?? "";
      return [passCell(c.pass), c.name, c.source === "phase3" ? "Phase 3" : "project", c.value === null ? "—" : `${formatNumber(c.value)} ${unit}`.trim(), `\`${c.metric}\` ${targetText(c, unit)}`, `[\`${id}\`](#${anchorOf(id)}) ${run.backend}`];
    }),
    ["l", "l", "l", "r", "l", "l"],
  );
}

/** One row per agent count of a scale run. */
function scaleTable(run: BenchRun): string {
  const n = (v: number | undefined): string => (v === undefined ? "—" : formatNumber(v));
  return mdTable(
    ["agents", "ops/min", "per agent p50", "call p50 / p95 / p99 ms", "sandbox wait p50 / p95 ms", "failures", "CPU mean", "PSS peak MiB", "Jain", "loop stall max ms"],
    scaleLevels(run).map((l) => [
      String(l.agents),
      n(l.opsPerMin),
      n(l.agentOpsP50),
      l.latency ? `${n(l.latency.p50)} / ${n(l.latency.p95)} / ${n(l.latency.p99)}` : "—",
      l.wait ? `${n(l.wait.p50)} / ${n(l.wait.p95)}` : "—",
      l.failures === 0 ? "0" : `${l.failures} (${Object.entries(l.byCode).map(([code, k]) => `${code}×${k}`).join(", ")})`,
      l.cpuMean === undefined ? "—" : `${n(l.cpuMean)}%`,
      n(l.pssPeakMiB),
      n(l.fairness),
      n(l.loopMaxMs),
    ]),
    ["r", "r", "r", "r", "r", "l", "r", "r", "r", "r"],
  );
}

function metricsTable(run: BenchRun): string {
  return mdTable(
    ["metric", "unit", "n", "min", "p50", "p95", "p99", "max", "mean"],
    Object.entries(run.metrics).map(([name, s]) => [`\`${name}\``, s.unit, String(s.n), ...[s.min, s.p50, s.p95, s.p99, s.max, s.mean].map(formatNumber)]),
    ["l", "l", "r", "r", "r", "r", "r", "r", "r"],
  );
}

function comparisonTable(cmp: RunComparison): string {
  const rows = cmp.metrics.map((m) => [
    `\`${m.metric}\``,
    m.unit,
    formatNumber(m.a.p50),
    formatNumber(m.b.p50),
    formatRatio(m.ratio),
    m.ci ? `${m.ci[0].toFixed(2)}–${m.ci[1].toFixed(2)}` : "—",
    m.verdict === "worse" ? `**${m.label}**` : m.label,
  ]);
  let out = mdTable(["metric", "unit", "A p50", "B p50", "B/A", "95% CI", "change"], rows, ["l", "l", "r", "r", "r", "r", "l"]);
  const changed = cmp.criteria.filter((c) => c.change !== "same");
  if (changed.length > 0) out += `\n\nCriteria that changed: ${changed.map((c) => `${c.name} (${c.change})`).join("; ")}.`;
  return out;
}

function normalize(runs: ReadonlyArray<BenchRun | ReportInput>): ReportInput[] {
  return runs.map((r, i) => ("run" in r && "id" in r ? r : { id: `run ${i + 1}`, run: r }));
}

/** The Markdown of a report whose charts are `charts[i]` for run i (relative links). */
function markdown(inputs: readonly ReportInput[], charts: readonly Chart[][], title: string, generatedAt: Date): string {
  const out: string[] = [`# ${title}`, "", `Generated ${generatedAt.toISOString().slice(0, 19).replace("T", " ")} UTC from ${inputs.length} run${inputs.length === 1 ? "" : "s"}.`, ""];
  const all = inputs.flatMap((r) => r.run.criteria);
  if (all.length > 0) {
    const failed = all.filter((c) => c.pass === false).length;
    out.push("## Summary: every criterion", "", `${failed === 0 ? "✅" : "❌"} ${criteriaSummary(all)} — the Phase 3 acceptance criteria as worded first, then this project's own targets; failures first.`, "", summaryTable(inputs), "");
  }
  out.push("## Runs", "");
  out.push(
    mdTable(
      ["run", "scenario", "backend", "commit", "started (UTC)", "took", "criteria"],
      inputs.map(({ id, run }) => [
        `[\`${id}\`](#${anchorOf(id)})`,
        run.scenario,
        `${run.backend}${run.accel ? ` (${run.accel})` : ""}`,
        `\`${run.commit}\``,
        run.startedAt.slice(0, 19).replace("T", " "),
        `${(run.durationMs / 1000).toFixed(1)} s`,
        criteriaSummary(run.criteria),
      ]),
    ),
    "",
  );
  inputs.forEach(({ id, run }, i) => {
    const m = run.machine;
    out.push(`<a id="${anchorOf(id)}"></a>`, "", `## ${run.scenario} on ${run.backend} — ${run.startedAt.slice(0, 16).replace("T", " ")} UTC`, "");
    out.push(`Run \`${id}\`, commit \`${run.commit}\`, ${(run.durationMs / 1000).toFixed(1)} s. Machine: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, kernel ${m.hostKernel}, node ${m.node}${nodeFlags(m)}.`, "");
    if (run.info && Object.keys(run.info).length > 0) out.push(`Options: ${Object.entries(run.info).map(([k, v]) => `${k}=${String(v)}`).join(", ")}.`, "");
    if (run.criteria.length > 0) out.push("### Success criteria", "", criteriaTable(run), "", `${criteriaSummary(run.criteria)}.`, "");
    if (scaleLevels(run).length > 0) out.push("### Per agent count", "", scaleTable(run), "");
    const runCh = charts[i] ?? [];
    if (runCh.length > 0) {
      out.push("### Charts", "");
      for (const c of runCh) out.push(`![${c.title}](${encodeURI(c.file)})`, "");
    }
    out.push("### Metrics", "", metricsTable(run), "");
    const baselines = baselineRatios(run);
    if (baselines.length > 0) {
      out.push("Against baselines (ratio of p50s):", "");
      for (const { metric, base, ratio } of baselines) out.push(`- \`${metric}\` is ${ratio !== null ? formatRatio(ratio) : "—"} \`${base}\``);
      out.push("");
    }
    if (run.notes.length > 0) out.push("### Notes", "", ...run.notes.map((n) => `- ${n}`), "");
  });
  // The fault matrix of the newest fault run per backend among the inputs: one row per fault.
  const faultRuns = ["namespace", "microvm"].map((b) => inputs.filter((r) => r.run.scenario === "faults" && r.run.backend === b).sort((x, y) => x.run.startedAt.localeCompare(y.run.startedAt)).at(-1));
  const matrix = faultMatrixSection(faultRuns);
  if (matrix !== "") out.push(matrix, "");
  const groups = new Map<string, ReportInput[]>();
  for (const r of inputs) {
    const k = `${r.run.scenario} on ${r.run.backend}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const pairs = [...groups.entries()].filter(([, g]) => g.length > 1);
  if (pairs.length > 0) {
    out.push("## Comparisons", "", "Each newer run (B) against the one before it (A): B/A is the ratio of medians, the 95% CI a bootstrap of it over the stored samples; “within noise” means the interval includes 1.", "");
    for (const [k, g] of pairs) {
      const sorted = [...g].sort((x, y) => x.run.startedAt.localeCompare(y.run.startedAt));
      for (let j = 1; j < sorted.length; j++) {
        const a = sorted[j - 1] as ReportInput;
        const b = sorted[j] as ReportInput;
        out.push(`### ${k}: \`${a.id}\` → \`${b.id}\``, "", comparisonTable(compareRuns(a.run, b.run)), "");
      }
    }
  }
  return `${out.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd()}\n`;
}

function anchorOf(id: string): string {
  return `run-${slug(id)}`;
}

/**
 * Writes `<outDir>/report.md` and its SVG charts (latency CDFs, throughput and CPU over time, memory per sandbox),
 * with runs in the order given (ids label them; plain runs are called "run N"). Returns the paths.
 */
export function writeReport(runs: ReadonlyArray<BenchRun | ReportInput>, outDir: string, options: { title?: string; now?: Date } = {}): ReportResult {
  const inputs = normalize(runs);
  if (inputs.length === 0) throw new LuminaGuardError("INVALID_ARGUMENT", "a report needs at least one run");
  const dir = resolve(outDir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new LuminaGuardError("IO_ERROR", `cannot create ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const charts = inputs.map(({ run }, i) => runCharts(run, `${String(i + 1).padStart(2, "0")}-${slug(run.scenario)}-${slug(run.backend)}`));
  const written: string[] = [];
  try {
    for (const c of charts.flat()) {
      const p = join(dir, c.file);
      writeFileSync(p, c.svg);
      written.push(p);
    }
    const md = join(dir, "report.md");
    writeFileSync(md, markdown(inputs, charts, options.title ?? "LuminaGuard benchmark report", options.now ?? new Date()));
    return { dir, markdown: md, charts: written };
  } catch (err) {
    throw new LuminaGuardError("IO_ERROR", `cannot write the report to ${dir}: ${(err as Error).message}`, { cause: err });
  }
}
