// `luminaguard metrics list|show|compare|report`: the stored benchmark runs, for people and for scripts (--json).
import { join } from "node:path";
import type { Command } from "commander";
import { LuminaGuardError } from "../errors.js";
import { compareRuns } from "../metrics/compare.js";
import { colorFor, criteriaCounts, formatComparison, formatNumber, formatRun, formatRunList, targetText, type ListedRun } from "../metrics/format.js";
import { judgeRun, type GateRun, type GateVerdict } from "../metrics/gate.js";
import { writeReport, type ReportInput } from "../metrics/report.js";
import { runSummaryJson, SCENARIO_NAME, type BenchRun } from "../metrics/schema.js";
import { listRuns, metricsDir, readRunFile, resolveRun, RUN_REF_HELP, type StoredRun } from "../metrics/store.js";

interface MetricsIo {
  /** Where requested output goes; default process.stdout. */
  out?: (text: string) => void;
  /** ANSI colours in tables; default: when stdout is a terminal (and NO_COLOR is unset). */
  color?: boolean;
  /** Metrics directory; default metricsDir() at the time each command runs. */
  dir?: string;
  /** Current directory for the default report location; default process.cwd(). */
  cwd?: string;
  /** How `metrics check` reports a failed gate; default sets process.exitCode. */
  setExitCode?: (code: number) => void;
}

/**
 * The baseline of a run for `metrics check --baseline REF`: REF a commit (the newest run of the same scenario
 * and backend measured at it), `previous` or `~N` (counted back from that scenario and backend's latest run),
 * or any run reference (used for runs of its own scenario and backend only).
 */
function baselineOf(ref: string, s: StoredRun, dir: string): StoredRun | undefined {
  const r = ref.trim();
  if (/^[0-9a-f]{4,40}$/i.test(r)) {
    for (const e of listRuns({ dir, scenario: s.run.scenario })) {
      let run: BenchRun;
      try {
        run = readRunFile(e.path);
      } catch {
        continue;
      }
      if (run.backend === s.run.backend && e.path !== s.path && (run.commit.startsWith(r) || r.startsWith(run.commit))) return { id: e.id, path: e.path, run };
    }
  }
  const relative = /^(previous|~\d{1,4})$/.test(r) ? `${s.run.scenario}@${s.run.backend}:${r}` : r;
  let b: StoredRun;
  try {
    b = resolveRun(relative, { dir });
  } catch (err) {
    if (err instanceof LuminaGuardError && err.code === "NOT_FOUND") return undefined;
    throw err;
  }
  return b.run.scenario === s.run.scenario && b.run.backend === s.run.backend && b.path !== s.path ? b : undefined;
}

function formatVerdicts(verdicts: readonly GateVerdict[]): string {
  const out: string[] = [];
  for (const v of verdicts) {
    out.push(`${v.pass ? "PASS" : "FAIL"}  ${v.id} (${v.scenario} on ${v.backend})${v.baselineId ? ` against ${v.baselineId}` : v.noBaseline ? " — no baseline run of this scenario and backend" : ""}`);
    for (const c of v.failed) out.push(`      criterion failed: ${c.name}: ${formatNumber(c.value)} (target ${targetText(c)})`);
    for (const m of v.regressions) out.push(`      regression: ${m.metric} ${m.label}: p50 ${formatNumber(m.a.p50)} → ${formatNumber(m.b.p50)} ${m.unit} (B/A ${m.ratio?.toFixed(2) ?? "—"}, 95% CI ${m.ci ? `${m.ci[0].toFixed(2)}–${m.ci[1].toFixed(2)}` : "—"})`);
    if (v.unmeasured.length > 0) out.push(`      not measured: ${v.unmeasured.map((c) => c.name).join("; ")}`);
  }
  const failed = verdicts.filter((v) => !v.pass).length;
  out.push("", failed === 0 ? `all ${verdicts.length} run${verdicts.length === 1 ? "" : "s"} pass` : `${failed} of ${verdicts.length} run${verdicts.length === 1 ? "" : "s"} fail`);
  return out.join("\n");
}

function positiveInt(name: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new LuminaGuardError("INVALID_ARGUMENT", `${name} must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };
}

function scenarioName(v: string): string {
  if (!SCENARIO_NAME.test(v)) throw new LuminaGuardError("INVALID_ARGUMENT", `not a scenario name: ${JSON.stringify(v)}`);
  return v;
}

function label(s: StoredRun): string {
  return `${s.id} (${s.run.backend}${s.run.accel ? `/${s.run.accel}` : ""}, commit ${s.run.commit})`;
}

/** The newest `last` valid runs per scenario and backend, oldest first within each group. */
function recentRuns(dir: string, scenario: string | undefined, last: number): StoredRun[] {
  const groups = new Map<string, StoredRun[]>();
  for (const e of listRuns({ dir, ...(scenario !== undefined ? { scenario } : {}) })) {
    let run: BenchRun;
    try {
      run = readRunFile(e.path);
    } catch {
      continue;
    }
    const key = `${run.scenario}\u0000${run.backend}`;
    const g = groups.get(key) ?? [];
    if (g.length < last) g.push({ id: e.id, path: e.path, run });
    groups.set(key, g);
  }
  return [...groups.keys()].sort().flatMap((k) => [...(groups.get(k) ?? [])].reverse());
}

/** Two refs from `compare A [B]`: with only A (a scenario), the previous run against the latest. */
function compareRefs(a: string, b: string | undefined): [string, string] {
  if (b !== undefined) return [a, b];
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*(?:@[A-Za-z0-9._-]+)?)(?::latest)?$/.exec(a);
  if (a === "latest") return ["previous", "latest"];
  if (!m) throw new LuminaGuardError("INVALID_ARGUMENT", `compare needs two runs, or one scenario to compare its previous run with its latest (got ${JSON.stringify(a)})`);
  return [`${m[1]}:previous`, `${m[1]}:latest`];
}

/**
 * Adds `metrics` with list, show, compare and report to the program. Output goes to io.out (stdout), nothing
 * else is printed; failures are thrown as LuminaGuardError for the CLI's top level to report.
 */
export function registerMetricsCommand(program: Command, io: MetricsIo = {}): Command {
  const out = io.out ?? ((t: string) => void process.stdout.write(t));
  const color = (): boolean => io.color ?? colorFor(process.stdout);
  const dir = (): string => io.dir ?? metricsDir();
  const print = (text: string): void => out(text.endsWith("\n") ? text : `${text}\n`);
  const json = (value: unknown): void => print(JSON.stringify(value, null, 2));

  const metrics = program
    .command("metrics")
    .description("stored benchmark runs: list, show one, compare two, check against the criteria (the gate), write a Markdown report with charts")
    .addHelpText("after", `\nRuns are stored in $LUMINAGUARD_METRICS_DIR, default ./.beads/metrics/<scenario>/<timestamp>.json.\n\n${RUN_REF_HELP}`);

  metrics
    .command("list")
    .description("list stored runs, newest first")
    .option("--scenario <name>", "only this scenario", scenarioName)
    .option("--limit <n>", "at most this many", positiveInt("--limit", 1_000_000))
    .option("--json", "print a JSON array")
    .action((o: { scenario?: string; limit?: number; json?: boolean }) => {
      const entries = listRuns({ dir: dir(), ...(o.scenario !== undefined ? { scenario: o.scenario } : {}) }).slice(0, o.limit ?? Infinity);
      const listed: ListedRun[] = entries.map((entry) => {
        try {
          return { entry, run: readRunFile(entry.path) };
        } catch (err) {
          return { entry, error: err instanceof Error ? err.message : String(err) };
        }
      });
      if (!o.json) {
        print(formatRunList(listed));
        return;
      }
      json(
        listed.map(({ entry, run, error }) =>
          run === undefined
            ? { id: entry.id, path: entry.path, scenario: entry.scenario, error }
            : {
                id: entry.id,
                path: entry.path,
                scenario: run.scenario,
                backend: run.backend,
                accel: run.accel,
                commit: run.commit,
                startedAt: run.startedAt,
                durationMs: run.durationMs,
                criteria: criteriaCounts(run.criteria),
              },
        ),
      );
    });

  metrics
    .command("show")
    .description("show one run: metrics, success criteria with PASS/FAIL, notes")
    .argument("[run]", "which run (see below)", "latest")
    .option("--json", "print the run as JSON (without raw samples and series unless --full)")
    .option("--full", "with --json: include raw samples and time series")
    .addHelpText("after", `\n${RUN_REF_HELP}`)
    .action((ref: string, o: { json?: boolean; full?: boolean }) => {
      const s = resolveRun(ref, { dir: dir() });
      if (o.json) json({ id: s.id, path: s.path, ...(o.full ? s.run : runSummaryJson(s.run)) });
      else print(formatRun(s.run, { color: color(), id: s.id }));
    });

  metrics
    .command("compare")
    .description("compare run B with run A: ratio of medians per metric, and whether the change is outside the noise")
    .argument("<a>", "the older run (A); alone, a scenario: its previous run against its latest")
    .argument("[b]", "the newer run (B)")
    .option("--json", "print the comparison as JSON")
    .addHelpText(
      "after",
      `
Examples:
  luminaguard metrics compare spawn                          # spawn:previous vs spawn:latest (same backend)
  luminaguard metrics compare spawn:previous spawn:latest    # the same, spelled out
  luminaguard metrics compare spawn@microvm spawn@namespace  # latest of each backend
  luminaguard metrics compare spawn/2025-01-31T12-00 spawn:latest

B/A is the ratio of medians; noise is judged by a 95% bootstrap interval over the stored samples
(deterministic): "within noise" when it includes 1. Metrics with fewer than 5 samples report the
noise as unknown; changes under 2% count as the same.

${RUN_REF_HELP}`,
    )
    .action((aRef: string, bRef: string | undefined, o: { json?: boolean }) => {
      const [ra, rb] = compareRefs(aRef, bRef);
      const a = resolveRun(ra, { dir: dir() });
      const b = resolveRun(rb, { dir: dir() });
      const cmp = compareRuns(a.run, b.run);
      if (o.json) {
        const side = (s: StoredRun) => ({ id: s.id, path: s.path, scenario: s.run.scenario, backend: s.run.backend, accel: s.run.accel, commit: s.run.commit, startedAt: s.run.startedAt });
        json({ a: side(a), b: side(b), ...cmp });
      } else {
        const warn = a.run.scenario !== b.run.scenario || a.run.backend !== b.run.backend ? `\nnote: A and B differ in ${a.run.scenario !== b.run.scenario ? "scenario" : "backend"}; ratios compare unlike things.\n` : "";
        print(formatComparison(cmp, { a: label(a), b: label(b) }, { color: color() }) + warn);
      }
    });

  metrics
    .command("report")
    .description("write report.md with SVG charts (latency CDFs, throughput and CPU over time, memory per sandbox); prints its path")
    .argument("[runs...]", "runs to include (see below); default: the latest run of every scenario and backend")
    .option("--out <dir>", "output directory (default .beads/reports/<timestamp>/)")
    .option("--scenario <name>", "without runs: only this scenario", scenarioName)
    .option("--last <n>", "without runs: the newest N runs per scenario and backend, compared in order", positiveInt("--last", 1000), 1)
    .addHelpText("after", `\n${RUN_REF_HELP}`)
    .action((refs: string[], o: { out?: string; scenario?: string; last: number }) => {
      const d = dir();
      let runs: StoredRun[];
      if (refs.length > 0) {
        if (o.scenario !== undefined) throw new LuminaGuardError("INVALID_ARGUMENT", "give either runs or --scenario, not both");
        runs = refs.map((r) => resolveRun(r, { dir: d }));
      } else {
        runs = recentRuns(d, o.scenario, o.last);
        if (runs.length === 0) throw new LuminaGuardError("NOT_FOUND", `no stored runs${o.scenario !== undefined ? ` of ${o.scenario}` : ""} in ${d} (run \`luminaguard bench <scenario>\` first)`);
      }
      const stamp = new Date().toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
      const outDir = o.out ?? join(io.cwd ?? process.cwd(), ".beads", "reports", stamp);
      const inputs: ReportInput[] = runs.map((s) => ({ id: s.id, run: s.run }));
      print(writeReport(inputs, outDir).markdown);
    });

  metrics
    .command("check")
    .description("the gate: exit 1 when a criterion fails, or (with --baseline) a figure got worse beyond the noise")
    .argument("[runs...]", "runs to check (see below); default: the latest run of every scenario and backend")
    .option("--scenario <name>", "without runs: only this scenario", scenarioName)
    .option("--baseline <ref>", "compare each run with a baseline: a commit, previous, ~N, or a run reference")
    .option("--json", "print the verdicts as JSON")
    .addHelpText(
      "after",
      `
A run fails when one of its success criteria fails (a criterion not measured does not fail it), or, with
--baseline, when a metric is worse than the baseline run's: the 95% bootstrap interval of the ratio of
medians excludes 1 and the change is 2% or more (see \`metrics compare\`); a metric with fewer than 5
samples in either run has no noise estimate and is not judged (\`bench --repeat 5\` or more gives one
sample per run to figures measured once a run). Figures of the machine and of
the unsandboxed references (baseline_*, ref_*, host CPU and memory) are not judged against the baseline.

--baseline REF: a commit hash (the newest run of the same scenario and backend measured at that commit),
previous or ~N (counted back from the latest run of each scenario and backend), or a run reference below
(compared with runs of its own scenario and backend).

${RUN_REF_HELP}`,
    )
    .action((refs: string[], o: { scenario?: string; baseline?: string; json?: boolean }) => {
      const d = dir();
      let runs: StoredRun[];
      if (refs.length > 0) {
        if (o.scenario !== undefined) throw new LuminaGuardError("INVALID_ARGUMENT", "give either runs or --scenario, not both");
        runs = refs.map((r) => resolveRun(r, { dir: d }));
      } else {
        runs = recentRuns(d, o.scenario, 1);
        if (runs.length === 0) throw new LuminaGuardError("NOT_FOUND", `no stored runs${o.scenario !== undefined ? ` of ${o.scenario}` : ""} in ${d} (run \`luminaguard bench <scenario>\` first)`);
      }
      const verdicts = runs.map((s) => {
        const baseline = o.baseline !== undefined ? baselineOf(o.baseline, s, d) : undefined;
        const g: GateRun = { id: s.id, run: s.run, ...(baseline ? { baseline: { id: baseline.id, run: baseline.run } } : {}) };
        return judgeRun(g, o.baseline !== undefined);
      });
      if (o.json) json({ pass: verdicts.every((v) => v.pass), runs: verdicts });
      else print(formatVerdicts(verdicts));
      if (!verdicts.every((v) => v.pass)) (io.setExitCode ?? ((c: number) => void (process.exitCode = c)))(1);
    });

  return metrics;
}
