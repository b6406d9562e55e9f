// Two runs side by side: per metric the ratio of medians B/A, whether it is outside the noise, and which way is better.
import type { BenchRun, Criterion, MetricSummary } from "./schema.js";
import { compareSamples, MIN_SAMPLES_FOR_NOISE, type CompareOptions } from "./stats.js";

type Direction = "lower" | "higher";

/** Throughput and rates are better higher; latencies, memory, CPU and everything else better lower. */
export function betterWhen(metric: string, unit: string): Direction {
  if (/\/(s|sec|min|h)$/i.test(unit) || /^(ops|req|calls)\b/i.test(unit)) return "higher";
  if (/throughput|ops_per_|per_s(ec)?$|per_min$|_rate$|speedup/i.test(metric)) return "higher";
  return "lower";
}

type Kind = "time" | "rate" | "size" | "other";

function kindOf(metric: string, unit: string): Kind {
  if (/^(ns|us|µs|ms|s|sec|min)$/i.test(unit)) return "time";
  if (/^(b|bytes|kb|kib|mb|mib|gb|gib)$/i.test(unit)) return "size";
  if (betterWhen(metric, unit) === "higher") return "rate";
  return "other";
}

type Verdict = "better" | "worse" | "same" | "unknown";

export interface MetricComparison {
  metric: string;
  unit: string;
  a: MetricSummary;
  b: MetricSummary;
  /** B p50 / A p50 (or the medians of the stored samples when both runs kept them). */
  ratio: number | null;
  ci: [number, number] | null;
  outsideNoise: boolean | null;
  /** How noise was judged: bootstrap over the raw samples, or not at all (too few samples / none stored). */
  method: "bootstrap" | "none";
  better: Direction;
  verdict: Verdict;
  /** faster / slower / smaller / larger / higher / lower / same (within noise) / ... : what a person reads. */
  label: string;
}

interface CriterionChange {
  name: string;
  a: Criterion | undefined;
  b: Criterion | undefined;
  /** fixed: failed (or unmeasured) in A, passes in B; broke: the reverse; gone: not measured in B. */
  change: "fixed" | "broke" | "same" | "new" | "gone";
}

export interface RunComparison {
  metrics: MetricComparison[];
  onlyInA: string[];
  onlyInB: string[];
  criteria: CriterionChange[];
  /** Changes smaller than this (relative) are called "same" even when statistically outside the noise. */
  minChange: number;
}

interface CompareRunsOptions extends CompareOptions {
  /** Default 0.02: a 1% shift that the bootstrap can resolve is still "same" for a person. */
  minChange?: number;
}

function words(kind: Kind, better: Direction, up: boolean): string {
  switch (kind) {
    case "time":
      return up ? "slower" : "faster";
    case "rate":
      return up ? "faster" : "slower";
    case "size":
      return up ? "larger" : "smaller";
    case "other":
      return up ? "higher" : "lower";
  }
  return better;
}

function judge(metric: string, a: MetricSummary, b: MetricSummary, sa: readonly number[] | undefined, sb: readonly number[] | undefined, options: CompareRunsOptions, minChange: number): MetricComparison {
  const unit = b.unit || a.unit;
  const better = betterWhen(metric, unit);
  const kind = kindOf(metric, unit);
  let ratio: number | null;
  let ci: [number, number] | null = null;
  let outsideNoise: boolean | null = null;
  let method: MetricComparison["method"] = "none";
  if (sa !== undefined && sb !== undefined && sa.length >= MIN_SAMPLES_FOR_NOISE && sb.length >= MIN_SAMPLES_FOR_NOISE) {
    const c = compareSamples(sa, sb, options);
    ratio = c.ratio;
    ci = c.ci;
    outsideNoise = c.outsideNoise;
    method = "bootstrap";
  } else {
    ratio = a.p50 === 0 ? (b.p50 === 0 ? 1 : null) : b.p50 / a.p50;
  }
  let verdict: Verdict;
  let label: string;
  if (ratio === null) {
    verdict = "unknown";
    label = `${words(kind, better, true)} (from 0)`;
  } else if (outsideNoise === false) {
    verdict = "same";
    label = "same (within noise)";
  } else if (Math.abs(ratio - 1) < minChange) {
    verdict = "same";
    label = `same (< ${Math.round(minChange * 100)}% change)`;
  } else {
    const up = ratio > 1;
    const good = (better === "higher") === up;
    const word = words(kind, better, up);
    if (outsideNoise === null) {
      verdict = "unknown";
      label = `${word}? (noise unknown, n=${Math.min(sa?.length ?? a.n, sb?.length ?? b.n)})`;
    } else {
      verdict = good ? "better" : "worse";
      label = kind === "other" ? `${word} (${good ? "better" : "worse"})` : word;
    }
  }
  return { metric, unit, a, b, ratio, ci, outsideNoise, method, better, verdict, label };
}

/** Compares every metric both runs measured, and how each success criterion changed. */
export function compareRuns(a: BenchRun, b: BenchRun, options: CompareRunsOptions = {}): RunComparison {
  const minChange = options.minChange ?? 0.02;
  const metrics: MetricComparison[] = [];
  const onlyInA: string[] = [];
  const onlyInB: string[] = [];
  const names = [...new Set([...Object.keys(a.metrics), ...Object.keys(b.metrics)])].sort();
  for (const name of names) {
    const ma = a.metrics[name];
    const mb = b.metrics[name];
    if (ma === undefined) onlyInB.push(name);
    else if (mb === undefined) onlyInA.push(name);
    else metrics.push(judge(name, ma, mb, a.samples?.[name], b.samples?.[name], options, minChange));
  }
  const criteria: CriterionChange[] = [];
  const critNames = [...new Set([...a.criteria.map((c) => c.name), ...b.criteria.map((c) => c.name)])];
  for (const name of critNames) {
    const ca = a.criteria.find((c) => c.name === name);
    const cb = b.criteria.find((c) => c.name === name);
    const change: CriterionChange["change"] =
      ca === undefined ? "new" : cb === undefined || cb.pass === null ? (ca.pass === null && cb !== undefined ? "same" : "gone") : ca.pass === cb.pass ? "same" : cb.pass ? "fixed" : "broke";
    criteria.push({ name, a: ca, b: cb, change });
  }
  return { metrics, onlyInA, onlyInB, criteria, minChange };
}
