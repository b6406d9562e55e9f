// Statistics for benchmark results: summaries, success criteria, noise-aware comparison, CPU sampling, machine facts.
import { readFileSync } from "node:fs";
import { cpus, hostname, release, totalmem } from "node:os";
import { LuminaGuardError } from "../errors.js";
import { run } from "../util/proc.js";
import type { Criterion, CriterionDef, Machine, MetricSummary, SeriesPoint, Stat } from "./schema.js";

/**
 * Percentile of ascending-sorted data by linear interpolation between closest ranks (Hyndman & Fan type 7,
 * the default of numpy, R and spreadsheets): rank h = (n - 1) q, value = x[floor h] + (h - floor h)(x[ceil h] - x[floor h]).
 * So p50 of [1, 2, 3, 4] is 2.5, and p0/p100 are the min/max.
 */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) throw new LuminaGuardError("INVALID_ARGUMENT", "percentile of no samples");
  if (!(q >= 0 && q <= 1)) throw new LuminaGuardError("INVALID_ARGUMENT", `percentile q must be in [0, 1], got ${q}`);
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (h - lo) * (b - a);
}

function sortedCopy(samples: readonly number[]): Float64Array {
  return Float64Array.from(samples).sort();
}

/** min, p50, p95, p99, max (linear-interpolated percentiles, see percentile()) and mean of the samples. */
export function summarize(samples: readonly number[], unit: string): MetricSummary {
  if (samples.length === 0) throw new LuminaGuardError("INVALID_ARGUMENT", "cannot summarize a metric with no samples");
  const bad = samples.find((v) => !Number.isFinite(v));
  if (bad !== undefined) throw new LuminaGuardError("INVALID_ARGUMENT", `samples must be finite numbers, got ${String(bad)}`);
  const s = sortedCopy(samples);
  let sum = 0;
  for (const v of s) sum += v;
  return {
    unit,
    n: s.length,
    min: s[0] as number,
    p50: percentile(s, 0.5),
    p95: percentile(s, 0.95),
    p99: percentile(s, 0.99),
    max: s[s.length - 1] as number,
    mean: sum / s.length,
  };
}

/** Summaries of every metric: samples per metric, units per metric (a metric without a unit gets ""). */
export function summarizeAll(samples: Readonly<Record<string, readonly number[]>>, units: Readonly<Record<string, string>>): Record<string, MetricSummary> {
  const out: Record<string, MetricSummary> = {};
  for (const [name, values] of Object.entries(samples)) {
    if (values.length === 0) continue;
    try {
      out[name] = summarize(values, units[name] ?? "");
    } catch (err) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `metric ${name}: ${(err as Error).message}`, { cause: err });
    }
  }
  return out;
}

/**
 * At most `max` samples that keep the distribution's shape: evenly spaced ranks of the sorted data (always
 * including min and max). Order is not kept, which nothing downstream (CDFs, bootstrap) needs.
 */
export function capSamples(samples: readonly number[], max: number): number[] {
  if (samples.length <= max) return [...samples];
  const s = sortedCopy(samples);
  const out: number[] = [];
  for (let i = 0; i < max; i++) out.push(s[Math.round((i * (s.length - 1)) / (max - 1))] as number);
  return out;
}

function statOf(summary: MetricSummary, stat: Stat): number {
  return summary[stat];
}

function holds(value: number, op: CriterionDef["op"], target: number): boolean {
  switch (op) {
    case "<":
      return value < target;
    case "<=":
      return value <= target;
    case ">":
      return value > target;
    case ">=":
      return value >= target;
  }
}

/** Checks each criterion against the measured metrics; a metric not measured gives value null and pass null. */
export function evaluate(defs: readonly CriterionDef[], metrics: Readonly<Record<string, MetricSummary>>): Criterion[] {
  return defs.map((d) => {
    const m = metrics[d.metric];
    const value = m === undefined ? null : statOf(m, d.stat);
    return {
      name: d.name,
      metric: d.metric,
      stat: d.stat,
      op: d.op,
      target: d.target,
      source: d.source,
      value,
      pass: value === null ? null : holds(value, d.op, d.target),
    };
  });
}

/** A small, fast, seedable PRNG (mulberry32): same seed, same sequence, so comparisons are repeatable. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface CompareOptions {
  /** Bootstrap resamples; default 2000. */
  resamples?: number;
  /** Confidence level of the interval; default 0.95. */
  confidence?: number;
  /** PRNG seed; default fixed, so the same inputs always give the same answer. */
  seed?: number;
}

interface SampleComparison {
  nA: number;
  nB: number;
  medianA: number;
  medianB: number;
  /** median(B) / median(A); null when median(A) is 0 and median(B) is not. */
  ratio: number | null;
  /** Bootstrap percentile interval of the ratio; null when either side has fewer than MIN_SAMPLES_FOR_NOISE samples. */
  ci: [number, number] | null;
  confidence: number;
  /** true when the interval excludes 1, false when it includes it, null when noise cannot be judged. */
  outsideNoise: boolean | null;
  method: "bootstrap-median-ratio";
}

/** Below this many samples on either side a bootstrap interval means little; comparisons report the noise as unknown. */
export const MIN_SAMPLES_FOR_NOISE = 5;

function medianOfSorted(s: Float64Array): number {
  return percentile(s, 0.5);
}

/** Median of a bootstrap resample of sorted data: draw n indices with replacement, count, walk to the middle ranks. */
function resampledMedian(s: Float64Array, counts: Uint32Array, rand: () => number): number {
  const n = s.length;
  counts.fill(0);
  for (let i = 0; i < n; i++) {
    const k = Math.floor(rand() * n);
    counts[k] = (counts[k] ?? 0) + 1;
  }
  const loRank = Math.floor((n - 1) / 2);
  const hiRank = Math.ceil((n - 1) / 2);
  let seen = 0;
  let lo = Number.NaN;
  for (let i = 0; i < n; i++) {
    seen += counts[i] as number;
    if (Number.isNaN(lo) && seen > loRank) lo = s[i] as number;
    if (seen > hiRank) return (lo + (s[i] as number)) / 2;
  }
  return lo;
}

function ratioOf(a: number, b: number): number | null {
  if (a === 0) return b === 0 ? 1 : null;
  return b / a;
}

/** The resample count and confidence level of a bootstrap, checked. */
function bootstrapOptions(options: CompareOptions): { resamples: number; confidence: number } {
  const resamples = options.resamples ?? 2000;
  const confidence = options.confidence ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 100) throw new LuminaGuardError("INVALID_ARGUMENT", "resamples must be an integer >= 100");
  if (!(confidence > 0 && confidence < 1)) throw new LuminaGuardError("INVALID_ARGUMENT", "confidence must be in (0, 1)");
  return { resamples, confidence };
}

/**
 * How far a statistic of `samples` (a coefficient of variation, a p95/p50) could be from the same
 * statistic of another run of the same size: a bootstrap percentile interval (the samples drawn with
 * replacement, `stat` given each draw sorted; seeded, so the same samples give the same interval).
 * null below MIN_SAMPLES_FOR_NOISE samples. A spread judged over 20 spawns is a rough figure; this says how rough.
 */
export function bootstrapInterval(samples: readonly number[], stat: (sortedDraw: Float64Array) => number, options: CompareOptions = {}): [number, number] | null {
  const { resamples, confidence } = bootstrapOptions(options);
  if (samples.some((x) => !Number.isFinite(x))) throw new LuminaGuardError("INVALID_ARGUMENT", "bootstrapInterval needs finite samples");
  const n = samples.length;
  if (n < MIN_SAMPLES_FOR_NOISE) return null;
  const rand = seededRandom(options.seed ?? 0x5eed_1234);
  const draw = new Float64Array(n);
  const stats = new Float64Array(resamples);
  for (let i = 0; i < resamples; i++) {
    for (let j = 0; j < n; j++) draw[j] = samples[Math.floor(rand() * n)] as number;
    draw.sort();
    stats[i] = stat(draw);
  }
  stats.sort();
  const alpha = (1 - confidence) / 2;
  return [percentile(stats, alpha), percentile(stats, 1 - alpha)];
}

/**
 * Is B different from A beyond the noise? Ratio of medians B/A with a bootstrap percentile confidence interval
 * (each side resampled independently, deterministic seeded PRNG); the change is "outside the noise" when the
 * interval excludes 1. Medians, not means: latency tails would otherwise dominate.
 */
export function compareSamples(a: readonly number[], b: readonly number[], options: CompareOptions = {}): SampleComparison {
  if (a.length === 0 || b.length === 0) throw new LuminaGuardError("INVALID_ARGUMENT", "compareSamples needs samples on both sides");
  const { resamples, confidence } = bootstrapOptions(options);
  const sa = sortedCopy(a);
  const sb = sortedCopy(b);
  const medianA = medianOfSorted(sa);
  const medianB = medianOfSorted(sb);
  const base = {
    nA: sa.length,
    nB: sb.length,
    medianA,
    medianB,
    ratio: ratioOf(medianA, medianB),
    confidence,
    method: "bootstrap-median-ratio" as const,
  };
  if (sa.length < MIN_SAMPLES_FOR_NOISE || sb.length < MIN_SAMPLES_FOR_NOISE) return { ...base, ci: null, outsideNoise: null };
  const rand = seededRandom(options.seed ?? 0x5eed_1234);
  const ca = new Uint32Array(sa.length);
  const cb = new Uint32Array(sb.length);
  const ratios = new Float64Array(resamples);
  for (let i = 0; i < resamples; i++) {
    const ma = resampledMedian(sa, ca, rand);
    const mb = resampledMedian(sb, cb, rand);
    ratios[i] = ratioOf(ma, mb) ?? Number.POSITIVE_INFINITY;
  }
  ratios.sort();
  const alpha = (1 - confidence) / 2;
  const ci: [number, number] = [percentile(ratios, alpha), percentile(ratios, 1 - alpha)];
  return { ...base, ci, outsideNoise: ci[0] > 1 || ci[1] < 1 };
}

interface CpuTimes {
  busy: number;
  total: number;
}

function readCpuTimes(): CpuTimes | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/stat", "utf8");
  } catch {
    return undefined;
  }
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (line === undefined) return undefined;
  // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already inside user/nice.
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (f.length < 4 || f.some((v) => !Number.isFinite(v))) return undefined;
  const total = f.reduce((x, y) => x + y, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

interface CpuSampler {
  /** Takes the first reading and starts sampling; calling it again restarts the series. */
  start(): void;
  /** Stops sampling (with a last point if at least half an interval passed) and returns the series. */
  stop(): SeriesPoint[];
  /** The points so far. */
  readonly series: readonly SeriesPoint[];
}

/**
 * Host CPU utilisation over time from /proc/stat's aggregate line: busy time / total time across all cores,
 * in percent of the whole machine (0..100; 100 = every core busy), one point every intervalMs, tMs from start().
 * Where /proc/stat cannot be read (not Linux) the series stays empty.
 */
export function cpuSampler(intervalMs = 1000): CpuSampler {
  if (!Number.isFinite(intervalMs) || intervalMs < 10) throw new LuminaGuardError("INVALID_ARGUMENT", "cpuSampler interval must be at least 10 ms");
  let points: SeriesPoint[] = [];
  let timer: NodeJS.Timeout | undefined;
  let t0 = 0;
  let lastAt = 0;
  let last: CpuTimes | undefined;
  const sample = (): void => {
    const nowTimes = readCpuTimes();
    const at = performance.now();
    if (nowTimes !== undefined && last !== undefined) {
      const dTotal = nowTimes.total - last.total;
      const dBusy = nowTimes.busy - last.busy;
      const value = dTotal > 0 ? Math.min(100, Math.max(0, (100 * dBusy) / dTotal)) : 0;
      points.push({ tMs: Math.round(at - t0), value: Math.round(value * 10) / 10 });
    }
    last = nowTimes;
    lastAt = at;
  };
  const stopTimer = (): void => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };
  return {
    start() {
      stopTimer();
      points = [];
      t0 = performance.now();
      lastAt = t0;
      last = readCpuTimes();
      timer = setInterval(sample, intervalMs);
      timer.unref();
    },
    stop() {
      if (timer !== undefined) {
        stopTimer();
        if (performance.now() - lastAt >= intervalMs / 2) sample();
      }
      return [...points];
    },
    get series() {
      return points;
    },
  };
}

function cpuModelName(): string {
  try {
    const text = readFileSync("/proc/cpuinfo", "utf8");
    // x86 "model name", arm64 "Model"/"Hardware", mips "cpu model"; case matters ("processor : 0" is an index).
    for (const key of ["model name", "Model", "cpu model", "Hardware"]) {
      const m = new RegExp(`^${key}\\s*:\\s*(.+)$`, "m").exec(text);
      if (m?.[1]?.trim()) return m[1].trim().replace(/\s+/g, " ");
    }
  } catch {
    /* not Linux */
  }
  return cpus()[0]?.model.trim() || "unknown";
}

/** Facts about this host that a benchmark result is meaningless without. */
export function currentMachine(): Machine {
  return {
    cpus: Math.max(1, cpus().length),
    cpuModel: cpuModelName(),
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    hostKernel: release(),
    node: process.version,
    // What node ran with matters as much as which node: V8's optimizing compiler off (--no-opt), for one,
    // changes a restore's spread and the host's throughput (docs/operations.md).
    ...(process.execArgv.length > 0 ? { nodeFlags: process.execArgv.slice(0, 64).map((f) => f.slice(0, 256)) } : {}),
    hostname: hostname(),
  };
}

/** The short commit hash of HEAD in cwd (git rev-parse, argv only, 5 s deadline); "unknown" outside a repository or without git. */
export async function gitCommit(cwd: string = process.cwd()): Promise<string> {
  try {
    const r = await run(["git", "rev-parse", "--short", "HEAD"], { cwd, timeoutMs: 5000, maxOutputBytes: 4096 });
    const hash = r.stdout.trim();
    return r.code === 0 && /^[0-9a-f]{4,64}$/.test(hash) ? hash : "unknown";
  } catch {
    return "unknown";
  }
}
