// Plain-text tables for people: one run, a comparison, the list of stored runs; colour only on a terminal.
import type { MetricComparison, RunComparison } from "./compare.js";
import type { BenchRun, Criterion, MetricSummary } from "./schema.js";
import { scaleLevels } from "./scale-view.js";
import type { RunEntry } from "./store.js";

interface FormatOptions {
  /** ANSI colours for PASS/FAIL and verdicts; default false. Use colorFor(process.stdout). */
  color?: boolean;
}

/** Colour only on a terminal, and never with NO_COLOR set or TERM=dumb. */
export function colorFor(stream: { isTTY?: boolean }): boolean {
  return stream.isTTY === true && process.env["NO_COLOR"] === undefined && process.env["TERM"] !== "dumb";
}

const paint = (on: boolean, code: number, s: string): string => (on ? `\u001b[${code}m${s}\u001b[0m` : s);
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const width = (s: string): number => s.replace(ANSI, "").length;

/** A number for a table: about 3 significant digits below 100, one decimal to 10,000, then thousands separators. */
export function formatNumber(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 10_000) return Math.round(v).toLocaleString("en-US");
  if (a >= 100) return (Math.round(v * 10) / 10).toString();
  if (a >= 10) return (Math.round(v * 10) / 10).toString();
  if (a >= 1) return (Math.round(v * 100) / 100).toString();
  if (a >= 0.001) return Number(v.toPrecision(3)).toString();
  return v.toExponential(2);
}

export function formatRatio(r: number | null): string {
  if (r === null) return "—";
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

/** Columns padded to the widest cell; align "r" right-aligns (numbers). Two spaces between columns. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly ("l" | "r")[] = []): string {
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ""))));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => {
        const pad = " ".repeat(Math.max(0, (widths[i] ?? 0) - width(c)));
        return align[i] === "r" ? pad + c : c + pad;
      })
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "─".repeat(w))), ...rows.map(line)].join("\n");
}

function when(iso: string): string {
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function seconds(ms: number): string {
  return ms >= 60_000 ? `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** "p95 ≤ 120 ms" */
export function targetText(c: Pick<Criterion, "stat" | "op" | "target">, unit = ""): string {
  const op = { "<=": "≤", ">=": "≥", "<": "<", ">": ">" }[c.op];
  return `${c.stat} ${op} ${formatNumber(c.target)}${unit ? ` ${unit}` : ""}`;
}

function resultText(pass: boolean | null, color = false): string {
  if (pass === null) return "—";
  return pass ? paint(color, 32, "PASS") : paint(color, 31, "FAIL");
}

export function criteriaCounts(criteria: readonly Criterion[]): { pass: number; fail: number; unmeasured: number } {
  return {
    pass: criteria.filter((c) => c.pass === true).length,
    fail: criteria.filter((c) => c.pass === false).length,
    unmeasured: criteria.filter((c) => c.pass === null).length,
  };
}

export function criteriaSummary(criteria: readonly Criterion[]): string {
  if (criteria.length === 0) return "no criteria";
  const k = criteriaCounts(criteria);
  return `${k.pass} of ${criteria.length} criteria pass${k.fail ? `, ${k.fail} fail` : ""}${k.unmeasured ? `, ${k.unmeasured} not measured` : ""}`;
}

/**
 * node's flags in a run's machine line (", node flags --no-opt"), or "" for a run without any. Made
 * inert: a stored run is a file anyone could have written, and this goes to a terminal or a report.
 */
export function nodeFlags(m: Pick<BenchRun["machine"], "nodeFlags">): string {
  if (!m.nodeFlags || m.nodeFlags.length === 0) return "";
  // eslint-disable-next-line no-control-regex
  return `, node flags ${m.nodeFlags.map((f) => f.replace(/[\u0000-\u001f\u007f-\u009f`]/g, "?")).join(" ")}`;
}

/** The header line and machine line of a run. */
function runHeadline(run: BenchRun, id?: string): string {
  const m = run.machine;
  return [
    `${run.scenario} on ${run.backend}${run.accel ? ` (${run.accel})` : ""} · commit ${run.commit} · ${when(run.startedAt)} · ${seconds(run.durationMs)}${id ? ` · ${id}` : ""}`,
    `machine: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, kernel ${m.hostKernel}, node ${m.node}${nodeFlags(m)}${m.hostname ? `, ${m.hostname}` : ""}`,
  ].join("\n");
}

/** One run: headline, metrics table, baselines, criteria with PASS/FAIL/—, notes. */
/** Each metric the run compares with a baseline metric: both summaries, and the ratio of their p50s (null when not measured). */
export function baselineRatios(run: BenchRun): { metric: string; base: string; m: MetricSummary | undefined; b: MetricSummary | undefined; ratio: number | null }[] {
  return Object.entries(run.baselines ?? {}).map(([metric, base]) => {
    const m = run.metrics[metric];
    const b = run.metrics[base];
    return { metric, base, m, b, ratio: m !== undefined && b !== undefined && b.p50 !== 0 ? m.p50 / b.p50 : null };
  });
}

export function formatRun(run: BenchRun, options: FormatOptions & { id?: string } = {}): string {
  const color = options.color ?? false;
  const out: string[] = [runHeadline(run, options.id), ""];
  const levels = scaleLevels(run);
  if (levels.length > 0) {
    const n = (v: number | undefined): string => (v === undefined ? "—" : formatNumber(v));
    const rows = levels.map((l) => [
      String(l.agents),
      n(l.opsPerMin),
      n(l.agentOpsP50),
      n(l.latency?.p50),
      n(l.latency?.p99),
      n(l.wait?.p95),
      l.failures === 0 ? "0" : `${l.failures} (${Object.entries(l.byCode).map(([code, k]) => `${code}×${k}`).join(", ")})`,
      l.cpuMean === undefined ? "—" : `${n(l.cpuMean)}%`,
      n(l.pssPeakMiB),
      n(l.fairness),
    ]);
    out.push(table(["agents", "ops/min", "per agent", "call p50 ms", "call p99 ms", "wait p95 ms", "failures", "CPU", "PSS peak MiB", "Jain"], rows, ["r", "r", "r", "r", "r", "r", "l", "r", "r", "r"]), "");
  }
  const names = Object.keys(run.metrics);
  if (names.length === 0) out.push("no metrics");
  else {
    const rows = names.map((name) => {
      const s = run.metrics[name];
      if (s === undefined) return [name];
      return [name, s.unit, String(s.n), formatNumber(s.p50), formatNumber(s.p95), formatNumber(s.p99), formatNumber(s.max)];
    });
    out.push(table(["metric", "unit", "n", "p50", "p95", "p99", "max"], rows, ["l", "l", "r", "r", "r", "r", "r"]));
  }
  const baselines = baselineRatios(run);
  if (baselines.length > 0) {
    out.push("", "against baselines (p50 / baseline p50):");
    for (const { metric, base, m, b, ratio } of baselines) {
      out.push(`  ${metric} = ${formatRatio(ratio)} ${base}${m && b ? ` (${formatNumber(m.p50)} vs ${formatNumber(b.p50)} ${m.unit})` : " (not measured)"}`);
    }
  }
  if (run.criteria.length > 0) {
    const rows = run.criteria.map((c) => {
      const unit = run.metrics[c.metric]?.unit ?? "";
      return [c.name, c.source, targetText(c, unit), formatNumber(c.value), resultText(c.pass, color)];
    });
    out.push("", table(["criterion", "source", "target", "value", "result"], rows, ["l", "l", "l", "r", "l"]), criteriaSummary(run.criteria));
  }
  if (run.notes.length > 0) out.push("", "notes:", ...run.notes.map((n) => `  - ${n}`));
  return out.join("\n");
}

function verdictText(m: MetricComparison, color: boolean): string {
  if (m.verdict === "better") return paint(color, 32, m.label);
  if (m.verdict === "worse") return paint(color, 31, m.label);
  return m.label;
}

function ciText(ci: [number, number] | null): string {
  return ci === null ? "—" : `${ci[0].toFixed(2)}–${ci[1].toFixed(2)}`;
}

/** The comparison table (metric, A p50, B p50, B/A, 95% CI, verdict), metrics only in one run, and criteria that changed. */
export function formatComparison(cmp: RunComparison, labels: { a: string; b: string }, options: FormatOptions = {}): string {
  const color = options.color ?? false;
  const out: string[] = [`A: ${labels.a}`, `B: ${labels.b}`, ""];
  if (cmp.metrics.length === 0) out.push("no metric was measured in both runs");
  else {
    const rows = cmp.metrics.map((m) => [m.metric, m.unit, formatNumber(m.a.p50), formatNumber(m.b.p50), formatRatio(m.ratio), ciText(m.ci), verdictText(m, color)]);
    out.push(table(["metric", "unit", "A p50", "B p50", "B/A", "95% CI", "change"], rows, ["l", "l", "r", "r", "r", "r", "l"]));
    out.push(
      "",
      `B/A is the ratio of medians; the 95% CI is a bootstrap of it over the stored samples ("—": too few samples to judge noise). ` +
        `"within noise": the interval includes 1.00; changes under ${Math.round(cmp.minChange * 100)}% count as the same.`,
    );
  }
  if (cmp.onlyInA.length > 0) out.push("", `only in A: ${cmp.onlyInA.join(", ")}`);
  if (cmp.onlyInB.length > 0) out.push("", `only in B: ${cmp.onlyInB.join(", ")}`);
  if (cmp.criteria.length > 0) {
    const rows = cmp.criteria.map((c) => [
      c.name,
      c.a && c.a.value !== null ? `${formatNumber(c.a.value)} ${resultText(c.a.pass, color)}` : "—",
      c.b && c.b.value !== null ? `${formatNumber(c.b.value)} ${resultText(c.b.pass, color)}` : "—",
      c.change === "broke" ? paint(color, 31, "broke") : c.change === "fixed" ? paint(color, 32, "fixed") : c.change,
    ]);
    out.push("", table(["criterion", "A", "B", "change"], rows, ["l", "r", "r", "l"]));
  }
  return out.join("\n");
}

export interface ListedRun {
  entry: RunEntry;
  run?: BenchRun;
  error?: string;
}

/** The stored runs, newest first: id, backend, commit, start, criteria; corrupt files are listed as such. */
export function formatRunList(runs: readonly ListedRun[]): string {
  if (runs.length === 0) return "no stored runs";
  const rows = runs.map(({ entry, run, error }) => {
    if (run === undefined) return [entry.id, "", "", "", `error: ${(error ?? "unreadable").replace(`${entry.path} is corrupt: `, "").replace(`${entry.path} `, "")}`];
    const k = criteriaCounts(run.criteria);
    const crit = run.criteria.length === 0 ? "—" : `${k.pass}/${run.criteria.length} pass${k.fail ? `, ${k.fail} FAIL` : ""}`;
    return [entry.id, `${run.backend}${run.accel ? `/${run.accel}` : ""}`, run.commit, seconds(run.durationMs), crit];
  });
  return table(["id", "backend", "commit", "took", "criteria"], rows, ["l", "l", "l", "r", "l"]);
}

interface Progress {
  update(label: string, done: number, total: number): void;
  /** Clears the bar (TTY) so the next output starts on a clean line. */
  done(): void;
}

/**
 * A one-line progress bar redrawn in place on a TTY (at most every 100 ms), and nothing at all when the
 * stream is not a terminal (piped, CI): progress never ends up in a log or a JSON stream.
 */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { update() {}, done() {} };
  let last = 0;
  let shown = false;
  return {
    update(label, done, total) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const cols = Math.max(40, stream.columns ?? 80);
      const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
      const pct = `${Math.floor(frac * 100)}%`.padStart(4);
      const barW = Math.min(30, Math.max(10, cols - label.length - 10));
      const filled = Math.round(frac * barW);
      const text = `${"█".repeat(filled)}${"░".repeat(barW - filled)} ${pct} ${label}`;
      stream.write(`\r${text.slice(0, cols - 1)}\u001b[K`);
      shown = true;
    },
    done() {
      if (shown) stream.write("\r\u001b[K");
      shown = false;
    },
  };
}
