// The stored shape of one benchmark run (`.beads/metrics/<scenario>/<timestamp>.json`), versioned by `schema`.
import { z } from "zod";

/** Raw samples kept per metric in a stored run; summaries are always computed from all samples first. */
export const MAX_SAMPLES_PER_METRIC = 10_000;

/** Points kept per time series in a stored run. */
export const MAX_SERIES_POINTS = 10_000;

/** Scenario names become directory names: no separators, no dot-dot, nothing a shell would trip on. */
export const SCENARIO_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const STATS = ["min", "p50", "p95", "p99", "max", "mean"] as const;
const OPS = ["<=", ">=", "<", ">"] as const;

const finite = z.number().refine(Number.isFinite, { message: "must be a finite number" });

const metricSummarySchema = z.object({
  /** ms, MiB, ops/min, %, ratio ...; "" for a plain count. */
  unit: z.string().max(32),
  n: z.number().int().min(1),
  min: finite,
  p50: finite,
  p95: finite,
  p99: finite,
  max: finite,
  mean: finite,
});

/** Where a criterion comes from: the Phase 3 targets, or this project's own. */
export const CRITERION_SOURCES = ["phase3", "project"] as const;

/**
 * Runs stored before the labels were renamed said "seed" (with names "seed: ...") and "issue"; they read as
 * today's labels and names, so that old and new runs still compare criterion by criterion.
 */
function upgradeStoredCriterion(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  const c = value as Record<string, unknown>;
  if (c["source"] === "seed") return { ...c, source: "phase3", ...(typeof c["name"] === "string" ? { name: c["name"].replace(/^seed: /, "") } : {}) };
  if (c["source"] === "issue") return { ...c, source: "project" };
  return value;
}

const criterionDefShape = z.object({
  name: z.string().min(1),
  metric: z.string().min(1),
  stat: z.enum(STATS),
  op: z.enum(OPS),
  target: finite,
  source: z.enum(CRITERION_SOURCES),
});

export const criterionDefSchema = z.preprocess(upgradeStoredCriterion, criterionDefShape);

export const criterionSchema = z.preprocess(
  upgradeStoredCriterion,
  criterionDefShape.extend({
    /** The measured stat; null when the metric was not measured in this run. */
    value: finite.nullable(),
    /** null when value is null: not measured is neither a pass nor a fail. */
    pass: z.boolean().nullable(),
  }),
);

const machineSchema = z.object({
  cpus: z.number().int().min(1),
  cpuModel: z.string(),
  memGiB: z.number().min(0),
  hostKernel: z.string(),
  node: z.string(),
  /** node's own command-line flags (process.execArgv) when there were any: `--no-opt` alone changes what a run measures. */
  nodeFlags: z.array(z.string().max(256)).max(64).optional(),
  hostname: z.string().optional(),
});

const seriesPointSchema = z.object({ tMs: finite, value: finite });

export const benchRunSchema = z.object({
  schema: z.literal(1),
  scenario: z.string().regex(SCENARIO_NAME, "scenario must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit"),
  backend: z.string().min(1),
  /** kvm, tcg, ...; null where the backend has no accelerator (namespace). */
  accel: z.string().nullable(),
  commit: z.string(),
  machine: machineSchema,
  startedAt: z.iso.datetime({ offset: true }),
  durationMs: z.number().min(0),
  metrics: z.record(z.string().min(1), metricSummarySchema),
  criteria: z.array(criterionSchema),
  /** metric -> the metric it is measured against (e.g. restore_ms -> baseline_qemu_bare_start_ms). */
  baselines: z.record(z.string(), z.string()).optional(),
  notes: z.array(z.string()),
  /** Free-form facts about the run: options (runs, concurrency, duration), image hash, versions. */
  info: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  /** Raw samples per metric (capped), for CDFs and noise estimates. */
  samples: z.record(z.string(), z.array(finite).max(MAX_SAMPLES_PER_METRIC)).optional(),
  /** Time series, tMs from the start of the measurement (throughput per second, CPU % ...). */
  series: z.record(z.string(), z.array(seriesPointSchema).max(MAX_SERIES_POINTS)).optional(),
});

export type MetricSummary = z.infer<typeof metricSummarySchema>;
export type CriterionDef = z.infer<typeof criterionDefSchema>;
export type Criterion = z.infer<typeof criterionSchema>;
export type Machine = z.infer<typeof machineSchema>;
export type SeriesPoint = z.infer<typeof seriesPointSchema>;
export type BenchRun = z.infer<typeof benchRunSchema>;
export type Stat = (typeof STATS)[number];
export type Op = (typeof OPS)[number];

/** What `luminaguard bench --json` prints: the run without raw samples and series. */
export function runSummaryJson(run: BenchRun): Omit<BenchRun, "samples" | "series"> {
  const { samples: _samples, series: _series, ...rest } = run;
  return rest;
}
