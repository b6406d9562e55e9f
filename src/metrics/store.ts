// Where benchmark runs live: one JSON file per run under <dir>/<scenario>/<timestamp>.json, written atomically,
// read back through the zod schema so a corrupt file is a clear error and never a crash.
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, fsyncSync, linkSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync, mkdirSync } from "node:fs";
import { basename, join, relative, resolve, sep } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { parseWith, readJsonFile } from "../util/json-file.js";
import { benchRunSchema, MAX_SAMPLES_PER_METRIC, MAX_SERIES_POINTS, SCENARIO_NAME, type BenchRun, type CriterionDef, type Machine, type MetricSummary, type SeriesPoint } from "./schema.js";
import { capSamples, currentMachine, evaluate, gitCommit, summarizeAll } from "./stats.js";

/** `$LUMINAGUARD_METRICS_DIR`, else `<cwd>/.beads/metrics`. */
export function metricsDir(): string {
  return resolve(process.env["LUMINAGUARD_METRICS_DIR"] ?? join(process.cwd(), ".beads", "metrics"));
}

interface StoreOptions {
  /** The metrics directory; default metricsDir(). */
  dir?: string;
}

/** A run read from the store: its short id (`<scenario>/<file stem>`, or the path when outside the store), file and content. */
export interface StoredRun {
  id: string;
  path: string;
  run: BenchRun;
}

/** One file in the store, not yet read. */
export interface RunEntry {
  id: string;
  scenario: string;
  /** File name without .json: the run's start time, ':' replaced by '-' (plus -N if two runs started in the same millisecond). */
  stem: string;
  path: string;
  /** The start time as written in the stem (ISO 8601), or undefined when the stem is not a timestamp. */
  startedAt: string | undefined;
}

/** The first five issues, and how many more there are. */
function issuesText(issues: string[]): string {
  const more = issues.length - 5;
  return issues.slice(0, 5).join("; ") + (more > 0 ? `; and ${more} more` : "");
}

function parseRun(value: unknown, invalid: (issues: string) => LuminaGuardError): BenchRun {
  return parseWith(benchRunSchema, value, (issues) => invalid(issuesText(issues)), { root: "(root)" });
}

/** Validates a run; throws INVALID_ARGUMENT with the offending fields. */
function validateRun(value: unknown, what = "benchmark run"): BenchRun {
  return parseRun(value, (issues) => new LuminaGuardError("INVALID_ARGUMENT", `${what} is not valid: ${issues}`));
}

function stemFor(startedAt: string): string {
  const t = new Date(startedAt);
  if (Number.isNaN(t.getTime())) throw new LuminaGuardError("INVALID_ARGUMENT", `startedAt is not a date: ${JSON.stringify(startedAt)}`);
  return t.toISOString().replace(/:/g, "-");
}

function stemToIso(stem: string): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2})-(\d{2})-(\d{2}(?:\.\d+)?Z)(?:-\d+)?$/.exec(stem);
  return m ? `${m[1]}:${m[2]}:${m[3]}` : undefined;
}

/** JSON with one line per metric for samples and series (10,000 numbers one per line would be unreadable). */
function stringifyRun(run: BenchRun): string {
  const lines: string[] = [];
  const entries = Object.entries(run).filter(([, v]) => v !== undefined);
  entries.forEach(([key, value], i) => {
    const comma = i < entries.length - 1 ? "," : "";
    if ((key === "samples" || key === "series") && value !== null && typeof value === "object") {
      const inner = Object.entries(value as Record<string, unknown>);
      if (inner.length === 0) {
        lines.push(`  ${JSON.stringify(key)}: {}${comma}`);
        return;
      }
      lines.push(`  ${JSON.stringify(key)}: {`);
      inner.forEach(([name, arr], j) => lines.push(`    ${JSON.stringify(name)}: ${JSON.stringify(arr)}${j < inner.length - 1 ? "," : ""}`));
      lines.push(`  }${comma}`);
    } else {
      lines.push(`  ${JSON.stringify(key)}: ${JSON.stringify(value, null, 2).replace(/\n/g, "\n  ")}${comma}`);
    }
  });
  return `{\n${lines.join("\n")}\n}\n`;
}

function writeDurably(path: string, text: string): void {
  const fd = openSync(path, "wx", 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Validates and stores a run at `<dir>/<scenario>/<startedAt, ':' -> '-'>.json`, never overwriting another run
 * (a same-millisecond twin gets `-1`, `-2` ...). The file appears complete or not at all. Returns its path.
 */
export function saveRun(run: BenchRun, options: StoreOptions = {}): string {
  const valid = validateRun(run);
  const dir = join(options.dir ?? metricsDir(), valid.scenario);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new LuminaGuardError("IO_ERROR", `cannot create ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const stem = stemFor(valid.startedAt);
  const tmp = join(dir, `.${stem}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    writeDurably(tmp, stringifyRun(valid));
    for (let k = 0; k < 1000; k++) {
      const path = join(dir, `${k === 0 ? stem : `${stem}-${k}`}.json`);
      try {
        linkSync(tmp, path); // atomic and refuses to replace an existing run
        return path;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EEXIST") continue;
        if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "EXDEV") {
          if (existsSync(path)) continue; // no hard links on this filesystem: rename, after checking
          renameSync(tmp, path);
          return path;
        }
        throw err;
      }
    }
    throw new LuminaGuardError("IO_ERROR", `too many runs named ${stem} in ${dir}`);
  } catch (err) {
    if (err instanceof LuminaGuardError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new LuminaGuardError(code === "ENOSPC" ? "NO_SPACE" : code === "EACCES" ? "PERMISSION_DENIED" : "IO_ERROR", `cannot write a run to ${dir}: ${(err as Error).message}`, { cause: err });
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* renamed or never written */
    }
  }
}

function dirEntries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new LuminaGuardError("IO_ERROR", `cannot read ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Stored runs, newest first (by start time, then scenario). Files are not read: see loadRun. */
export function listRuns(options: StoreOptions & { scenario?: string } = {}): RunEntry[] {
  const root = options.dir ?? metricsDir();
  if (options.scenario !== undefined && !SCENARIO_NAME.test(options.scenario)) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `not a scenario name: ${JSON.stringify(options.scenario)}`);
  }
  const scenarios = options.scenario !== undefined ? [options.scenario] : dirEntries(root).filter((s) => SCENARIO_NAME.test(s) && isDir(join(root, s)));
  const out: RunEntry[] = [];
  for (const scenario of scenarios) {
    for (const file of dirEntries(join(root, scenario))) {
      if (!file.endsWith(".json") || file.startsWith(".")) continue;
      const stem = file.slice(0, -".json".length);
      out.push({ id: `${scenario}/${stem}`, scenario, stem, path: join(root, scenario, file), startedAt: stemToIso(stem) });
    }
  }
  // Stems are fixed-width UTC timestamps, so string order is time order; a -N twin sorts after its original.
  return out.sort((a, b) => (a.stem === b.stem ? a.scenario.localeCompare(b.scenario) : a.stem < b.stem ? 1 : -1));
}

/** Reads and validates one run file; a missing file is NOT_FOUND, anything else wrong is INVALID_ARGUMENT naming the file. */
export function readRunFile(path: string): BenchRun {
  const validate = (data: unknown): BenchRun => {
    const version = (data as { schema?: unknown } | null)?.schema;
    if (typeof version === "number" && version > 1) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `${path} has schema ${version}; this LuminaGuard reads schema 1 (upgrade to read it)`, { details: { path } });
    }
    return parseRun(data, (issues) => new LuminaGuardError("INVALID_ARGUMENT", `${path} is corrupt: not a valid benchmark run (${issues})`, { details: { path } }));
  };
  return readJsonFile(path, validate, {
    unreadable: (err) => {
      if (err.code === "ENOENT") return new LuminaGuardError("NOT_FOUND", `no benchmark run at ${path}`, { cause: err });
      if (err.code === "EISDIR") return new LuminaGuardError("IS_A_DIRECTORY", `${path} is a directory, not a benchmark run`, { cause: err });
      return new LuminaGuardError("IO_ERROR", `cannot read ${path}: ${err.message}`, { cause: err });
    },
    notJson: (err) => new LuminaGuardError("INVALID_ARGUMENT", `${path} is corrupt: not valid JSON (${err.message})`, { cause: err, details: { path } }),
  });
}

function idForPath(path: string, root: string): string {
  const rel = relative(root, path);
  const parts = rel.split(sep);
  if (parts.length === 2 && !rel.startsWith("..") && parts[1]?.endsWith(".json")) return `${parts[0]}/${basename(rel, ".json")}`;
  return path;
}

function loadEntry(e: RunEntry): StoredRun {
  return { id: e.id, path: e.path, run: readRunFile(e.path) };
}

/** Loads one run by id (`<scenario>/<stem>`, or a unique prefix of the stem) or by the path of a run file. */
export function loadRun(idOrPath: string, options: StoreOptions = {}): StoredRun {
  const root = options.dir ?? metricsDir();
  if (existsSync(idOrPath) && !isDir(idOrPath)) {
    const path = resolve(idOrPath);
    return { id: idForPath(path, root), path, run: readRunFile(path) };
  }
  const m = /^([^/]+)\/([^/]+)$/.exec(idOrPath);
  if (m && SCENARIO_NAME.test(m[1] as string)) {
    const scenario = m[1] as string;
    const stem = (m[2] as string).replace(/\.json$/, "");
    const exact = join(root, scenario, `${stem}.json`);
    if (existsSync(exact)) return { id: `${scenario}/${stem}`, path: exact, run: readRunFile(exact) };
    const matches = listRuns({ dir: root, scenario }).filter((e) => e.stem.startsWith(stem));
    if (matches.length === 1) return loadEntry(matches[0] as RunEntry);
    if (matches.length > 1) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `${idOrPath} is ambiguous: ${matches.slice(0, 5).map((e) => e.id).join(", ")}${matches.length > 5 ? ", ..." : ""}`);
    }
    if (!idOrPath.endsWith(".json")) throw new LuminaGuardError("NOT_FOUND", `no stored run ${idOrPath} in ${root} (see \`luminaguard metrics list\`)`);
  }
  if (idOrPath.endsWith(".json") || idOrPath.includes(sep)) readRunFile(resolve(idOrPath)); // throws NOT_FOUND / IS_A_DIRECTORY
  throw new LuminaGuardError("INVALID_ARGUMENT", `not a run id or run file: ${JSON.stringify(idOrPath)} (ids look like spawn/2025-01-31T12-00-00.000Z; see \`luminaguard metrics list\`)`);
}

/** Valid runs, newest first, optionally of one backend; files that fail validation are skipped (`metrics list` shows them). */
function* validRuns(entries: readonly RunEntry[], backend?: string): Generator<StoredRun> {
  for (const e of entries) {
    let s: StoredRun;
    try {
      s = loadEntry(e);
    } catch {
      continue;
    }
    if (backend === undefined || s.run.backend === backend) yield s;
  }
}

/** The newest valid run of a scenario (of one backend if given), or undefined when there is none. */
export function latestRun(scenario: string, backend?: string, options: StoreOptions = {}): StoredRun | undefined {
  for (const s of validRuns(listRuns({ ...options, scenario }), backend)) return s;
  return undefined;
}

/** The newest valid run of any scenario. */
function newestRun(options: StoreOptions = {}): StoredRun | undefined {
  for (const s of validRuns(listRuns(options))) return s;
  return undefined;
}

/** How `resolveRun` reads a reference; shown in the CLI's help. */
export const RUN_REF_HELP = `A run is named by:
  latest                    the newest run of any scenario
  previous                  the run before it (same scenario and backend)
  SCENARIO                  the newest run of SCENARIO, e.g. spawn
  SCENARIO:latest           the same
  SCENARIO:previous         the run before SCENARIO:latest with the same backend
  SCENARIO:~N               N runs before SCENARIO:latest, same backend (~0 = latest, ~1 = previous)
  SCENARIO@BACKEND[:...]    only runs on BACKEND, e.g. spawn@namespace:previous
  SCENARIO/STEM             one stored run by id (a unique prefix of the stem is enough)
  PATH.json                 a run file anywhere`;

const REF = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})(?:@([A-Za-z0-9._-]+))?(?::(latest|previous|~\d{1,4}))?$/;

function nth(scenario: string, backend: string | undefined, back: number, options: StoreOptions, ref: string): StoredRun {
  const root = options.dir ?? metricsDir();
  const entries = listRuns({ dir: root, scenario });
  const latest = validRuns(entries, backend).next();
  if (latest.done) {
    throw new LuminaGuardError("NOT_FOUND", `${ref}: no stored runs of ${scenario}${backend !== undefined ? ` on ${backend}` : ""} in ${root}`);
  }
  if (back === 0) return latest.value;
  const sameBackend = latest.value.run.backend;
  let k = 0;
  for (const s of validRuns(entries, sameBackend)) {
    if (k++ === back) return s;
  }
  throw new LuminaGuardError("NOT_FOUND", `${ref}: only ${k} run${k === 1 ? "" : "s"} of ${scenario} on ${sameBackend} in ${root}, need ${back + 1}`);
}

/** Resolves a run reference (see RUN_REF_HELP) to a stored run. */
export function resolveRun(ref: string, options: StoreOptions = {}): StoredRun {
  const root = options.dir ?? metricsDir();
  const r = ref.trim();
  if (r === "") throw new LuminaGuardError("INVALID_ARGUMENT", "empty run reference");
  if (r === "latest" || r === "previous") {
    const newest = newestRun({ dir: root });
    if (newest === undefined) throw new LuminaGuardError("NOT_FOUND", `no stored benchmark runs in ${root} (run \`luminaguard bench <scenario>\` first)`);
    return r === "latest" ? newest : nth(newest.run.scenario, newest.run.backend, 1, { dir: root }, r);
  }
  if (r.endsWith(".json") || r.includes("/") || r.includes(sep)) return loadRun(r, { dir: root });
  const m = REF.exec(r);
  if (!m) throw new LuminaGuardError("INVALID_ARGUMENT", `cannot read run reference ${JSON.stringify(ref)}\n${RUN_REF_HELP}`);
  const [, scenario, backend, sel] = m as unknown as [string, string, string | undefined, string | undefined];
  const back = sel === undefined || sel === "latest" ? 0 : sel === "previous" ? 1 : Number(sel.slice(1));
  return nth(scenario, backend, back, { dir: root }, r);
}

interface CreateRunInput {
  scenario: string;
  backend: string;
  /** kvm / tcg / ...; null (or omitted) where the backend has none. */
  accel?: string | null;
  startedAt: Date | string;
  durationMs: number;
  /** Raw samples per metric: summarised in full, then stored capped at MAX_SAMPLES_PER_METRIC (unless keepSamples is false). */
  samples: Readonly<Record<string, readonly number[]>>;
  /** Unit per metric (ms, MiB, ops/min, %, ratio ...). */
  units: Readonly<Record<string, string>>;
  /** Summaries measured some other way, merged over the computed ones. */
  summaries?: Readonly<Record<string, MetricSummary>>;
  criteria?: readonly CriterionDef[];
  series?: Readonly<Record<string, readonly SeriesPoint[]>>;
  notes?: readonly string[];
  baselines?: Readonly<Record<string, string>>;
  info?: Readonly<Record<string, string | number | boolean>>;
  /** Default: gitCommit() of the current directory. */
  commit?: string;
  /** Default: currentMachine(). */
  machine?: Machine;
  /** Store the raw samples (default true); they feed the report's CDFs and compare's noise estimate. */
  keepSamples?: boolean;
}

const sig6 = (v: number): number => Number(v.toPrecision(6));

function capSeries(points: readonly SeriesPoint[]): SeriesPoint[] {
  if (points.length <= MAX_SERIES_POINTS) return points.map((p) => ({ tMs: p.tMs, value: p.value }));
  const out: SeriesPoint[] = [];
  for (let i = 0; i < MAX_SERIES_POINTS; i++) {
    const p = points[Math.round((i * (points.length - 1)) / (MAX_SERIES_POINTS - 1))] as SeriesPoint;
    out.push({ tMs: p.tMs, value: p.value });
  }
  return out;
}

/**
 * Builds a validated run from what a scenario measured: summaries from all samples, criteria evaluated against
 * them, machine and commit filled in, samples capped (and rounded to 6 significant digits) for storage.
 */
export async function createRun(input: CreateRunInput): Promise<BenchRun> {
  const metrics = { ...summarizeAll(input.samples, input.units), ...(input.summaries ?? {}) };
  const samples: Record<string, number[]> = {};
  if (input.keepSamples !== false) {
    for (const [name, values] of Object.entries(input.samples)) {
      if (values.length > 0) samples[name] = capSamples(values, MAX_SAMPLES_PER_METRIC).map(sig6);
    }
  }
  const series: Record<string, SeriesPoint[]> = {};
  for (const [name, points] of Object.entries(input.series ?? {})) series[name] = capSeries(points);
  const startedAt = input.startedAt instanceof Date ? input.startedAt.toISOString() : input.startedAt;
  const run = {
    schema: 1 as const,
    scenario: input.scenario,
    backend: input.backend,
    accel: input.accel ?? null,
    commit: input.commit ?? (await gitCommit()),
    machine: input.machine ?? currentMachine(),
    startedAt,
    durationMs: input.durationMs,
    metrics,
    criteria: evaluate(input.criteria ?? [], metrics),
    ...(input.baselines !== undefined ? { baselines: { ...input.baselines } } : {}),
    notes: [...(input.notes ?? [])],
    ...(input.info !== undefined ? { info: { ...input.info } } : {}),
    ...(Object.keys(samples).length > 0 ? { samples } : {}),
    ...(Object.keys(series).length > 0 ? { series } : {}),
  };
  return validateRun(run, `run of ${input.scenario}`);
}
