// The run store on real files: round trip, ordering, references, atomic names, and corrupt files as clear errors.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { benchRunSchema, runSummaryJson } from "../../src/metrics/schema.js";
import { createRun, latestRun, listRuns, loadRun, metricsDir, resolveRun, saveRun } from "../../src/metrics/store.js";
import { MACHINE, spawnRun, tempDir } from "./helpers.js";

let tmp: { dir: string; remove: () => void };
let saved: string | undefined;

beforeEach(() => {
  tmp = tempDir();
  saved = process.env["LUMINAGUARD_METRICS_DIR"];
  process.env["LUMINAGUARD_METRICS_DIR"] = tmp.dir;
});

afterEach(() => {
  if (saved === undefined) delete process.env["LUMINAGUARD_METRICS_DIR"];
  else process.env["LUMINAGUARD_METRICS_DIR"] = saved;
  tmp.remove();
});

const isCode = (code: string, pattern?: RegExp) => (e: unknown) => e instanceof LuminaGuardError && e.code === code && (pattern === undefined || pattern.test(e.message));

test("metricsDir honours LUMINAGUARD_METRICS_DIR, else <cwd>/.beads/metrics", () => {
  assert.equal(metricsDir(), tmp.dir);
  delete process.env["LUMINAGUARD_METRICS_DIR"];
  assert.equal(metricsDir(), join(process.cwd(), ".beads", "metrics"));
});

test("save and load round-trip a run exactly, at <dir>/<scenario>/<timestamp>.json", async () => {
  const run = await spawnRun("2025-01-31T12:34:56.789Z");
  const path = saveRun(run);
  assert.equal(path, join(tmp.dir, "spawn", "2025-01-31T12-34-56.789Z.json"));
  const back = loadRun("spawn/2025-01-31T12-34-56.789Z");
  assert.deepEqual(back.run, run);
  assert.equal(back.id, "spawn/2025-01-31T12-34-56.789Z");
  assert.equal(back.path, path);
  assert.deepEqual(loadRun(path).run, run, "by path too");
  assert.equal(loadRun(path).id, "spawn/2025-01-31T12-34-56.789Z", "a path inside the store gets its short id");
  assert.deepEqual(loadRun("spawn/2025-01-31T12").run, run, "a unique prefix of the stem is enough");
  // samples are one line per metric, not one number per line
  const text = readFileSync(path, "utf8");
  assert.ok(text.split("\n").length < 120, `${text.split("\n").length} lines`);
  assert.deepEqual(JSON.parse(text), run);
  assert.equal(readdirSync(join(tmp.dir, "spawn")).filter((f) => f.endsWith(".tmp")).length, 0, "no temp file left");
});

test("two runs in the same millisecond never overwrite each other", async () => {
  const run = await spawnRun("2025-01-31T12:00:00.000Z");
  const p1 = saveRun(run);
  const p2 = saveRun({ ...run, notes: ["second"] });
  assert.notEqual(p1, p2);
  assert.match(p2, /2025-01-31T12-00-00\.000Z-1\.json$/);
  assert.deepEqual(loadRun(p1).run.notes, ["synthetic data for tests"]);
  assert.deepEqual(loadRun(p2).run.notes, ["second"]);
  assert.equal(listRuns()[0]?.path, p2, "the twin sorts as newer");
});

test("listRuns is newest first, by scenario, and skips temp files", async () => {
  saveRun(await spawnRun("2025-01-01T00:00:00.000Z"));
  saveRun(await spawnRun("2025-01-03T00:00:00.000Z"));
  saveRun({ ...(await spawnRun("2025-01-02T00:00:00.000Z")), scenario: "memory" });
  writeFileSync(join(tmp.dir, "spawn", ".2025-01-09T00-00-00.000Z.123.abcd.tmp"), "{");
  mkdirSync(join(tmp.dir, "not a scenario!"));
  const all = listRuns();
  assert.deepEqual(
    all.map((e) => e.id),
    ["spawn/2025-01-03T00-00-00.000Z", "memory/2025-01-02T00-00-00.000Z", "spawn/2025-01-01T00-00-00.000Z"],
  );
  assert.equal(all[0]?.startedAt, "2025-01-03T00:00:00.000Z");
  assert.deepEqual(
    listRuns({ scenario: "memory" }).map((e) => e.scenario),
    ["memory"],
  );
  assert.deepEqual(listRuns({ scenario: "nothing-here" }), []);
  assert.throws(() => listRuns({ scenario: "../etc" }), isCode("INVALID_ARGUMENT"));
  assert.deepEqual(listRuns({ dir: join(tmp.dir, "missing") }), [], "no store yet is an empty list");
});

test("latestRun, and references: latest, previous, SCENARIO:~N, @backend, paths", async () => {
  saveRun(await spawnRun("2025-01-01T00:00:00.000Z", { backend: "namespace" }));
  saveRun(await spawnRun("2025-01-02T00:00:00.000Z", { backend: "microvm" }));
  saveRun(await spawnRun("2025-01-03T00:00:00.000Z", { backend: "namespace" }));
  saveRun(await spawnRun("2025-01-04T00:00:00.000Z", { backend: "microvm" }));
  saveRun({ ...(await spawnRun("2025-01-05T00:00:00.000Z")), scenario: "tools" });
  const id = (ref: string): string => resolveRun(ref).id;
  assert.equal(latestRun("spawn")?.id, "spawn/2025-01-04T00-00-00.000Z");
  assert.equal(latestRun("spawn", "namespace")?.id, "spawn/2025-01-03T00-00-00.000Z");
  assert.equal(latestRun("nothing"), undefined);
  assert.equal(id("latest"), "tools/2025-01-05T00-00-00.000Z");
  assert.equal(id("spawn"), "spawn/2025-01-04T00-00-00.000Z");
  assert.equal(id("spawn:latest"), "spawn/2025-01-04T00-00-00.000Z");
  assert.equal(id("spawn:previous"), "spawn/2025-01-02T00-00-00.000Z", "previous = same backend as latest");
  assert.equal(id("spawn:~1"), "spawn/2025-01-02T00-00-00.000Z");
  assert.equal(id("spawn:~0"), "spawn/2025-01-04T00-00-00.000Z");
  assert.equal(id("spawn@namespace"), "spawn/2025-01-03T00-00-00.000Z");
  assert.equal(id("spawn@namespace:previous"), "spawn/2025-01-01T00-00-00.000Z");
  assert.equal(id(join(tmp.dir, "spawn", "2025-01-02T00-00-00.000Z.json")), "spawn/2025-01-02T00-00-00.000Z");
  assert.throws(() => resolveRun("spawn:~2"), isCode("NOT_FOUND", /only 2 runs of spawn on microvm/));
  assert.throws(() => resolveRun("previous"), isCode("NOT_FOUND", /only 1 run of tools/));
  assert.throws(() => resolveRun("nothing"), isCode("NOT_FOUND", /no stored runs of nothing/));
  assert.throws(() => resolveRun("spawn:yesterday"), isCode("INVALID_ARGUMENT", /cannot read run reference/));
  assert.throws(() => resolveRun("spawn/2025-01-0"), isCode("INVALID_ARGUMENT", /ambiguous/));
  assert.throws(() => resolveRun("spawn/1999"), isCode("NOT_FOUND"));
  assert.throws(() => resolveRun("/no/such/run.json"), isCode("NOT_FOUND", /no benchmark run at/));
});

test("a corrupt file is a clear INVALID_ARGUMENT naming the file, never a crash; selectors skip it", async () => {
  const good = saveRun(await spawnRun("2025-01-01T00:00:00.000Z"));
  const dir = join(tmp.dir, "spawn");
  const truncated = join(dir, "2025-01-02T00-00-00.000Z.json");
  writeFileSync(truncated, readFileSync(good, "utf8").slice(0, 200));
  assert.throws(() => loadRun("spawn/2025-01-02T00-00-00.000Z"), (e: unknown) => {
    assert.ok(e instanceof LuminaGuardError);
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.ok(e.message.includes(truncated), e.message);
    assert.match(e.message, /corrupt: not valid JSON/);
    return true;
  });
  const wrongShape = join(dir, "2025-01-03T00-00-00.000Z.json");
  const broken = JSON.parse(readFileSync(good, "utf8")) as Record<string, unknown>;
  delete broken["machine"];
  (broken["metrics"] as Record<string, Record<string, unknown>>)["spawn_ms"]!["p50"] = "fast";
  writeFileSync(wrongShape, JSON.stringify(broken));
  assert.throws(() => loadRun(wrongShape), isCode("INVALID_ARGUMENT", /2025-01-03T00-00-00\.000Z\.json is corrupt: not a valid benchmark run \(.*machine.*metrics\.spawn_ms\.p50/));
  const future = join(dir, "2025-01-04T00-00-00.000Z.json");
  writeFileSync(future, JSON.stringify({ schema: 2 }));
  assert.throws(() => loadRun(future), isCode("INVALID_ARGUMENT", /schema 2; this LuminaGuard reads schema 1/));
  writeFileSync(join(dir, "2025-01-05T00-00-00.000Z.json"), "null");
  assert.throws(() => loadRun("spawn/2025-01-05T00-00-00.000Z"), isCode("INVALID_ARGUMENT", /corrupt/));
  assert.equal(latestRun("spawn")?.path, good, "the newest valid run");
  assert.equal(listRuns().length, 5, "list still shows every file");
});

test("saveRun validates: bad scenario names cannot escape the store, bad values are rejected", async () => {
  const run = await spawnRun("2025-01-01T00:00:00.000Z");
  assert.throws(() => saveRun({ ...run, scenario: "../escape" }), isCode("INVALID_ARGUMENT", /scenario/));
  assert.throws(() => saveRun({ ...run, scenario: "a/b" }), isCode("INVALID_ARGUMENT"));
  assert.throws(() => saveRun({ ...run, startedAt: "yesterday" }), isCode("INVALID_ARGUMENT", /startedAt/));
  assert.throws(() => saveRun({ ...run, durationMs: -1 }), isCode("INVALID_ARGUMENT", /durationMs/));
  assert.equal(existsSync(join(tmp.dir, "..", "escape")), false);
});

test("createRun summarises all samples, caps stored ones, evaluates criteria and fills machine and commit", async () => {
  const many = Array.from({ length: 25_000 }, (_, i) => i + 1);
  const run = await createRun({
    scenario: "big",
    backend: "namespace",
    startedAt: new Date("2025-02-01T00:00:00Z"),
    durationMs: 1,
    samples: { x_ms: many, empty: [] },
    units: { x_ms: "ms" },
    series: { cpu_util_pct: [{ tMs: 0, value: 1 }] },
    criteria: [{ name: "x p50 < 20000", metric: "x_ms", stat: "p50", op: "<", target: 20_000, source: "project" }],
  });
  assert.equal(run.metrics["x_ms"]?.n, 25_000, "summary from all samples");
  assert.equal(run.metrics["x_ms"]?.p50, 12_500.5);
  assert.equal(run.samples?.["x_ms"]?.length, 10_000, "stored samples capped");
  assert.equal(run.metrics["empty"], undefined);
  assert.equal(run.criteria[0]?.pass, true);
  assert.equal(run.accel, null);
  assert.equal(run.startedAt, "2025-02-01T00:00:00.000Z");
  assert.ok(run.machine.cpus >= 1);
  assert.match(run.commit, /^([0-9a-f]{4,64}|unknown)$/);
  assert.equal(benchRunSchema.safeParse(run).success, true);
  const summary = runSummaryJson(run);
  assert.equal("samples" in summary || "series" in summary, false);
  const noSamples = await createRun({ scenario: "s", backend: "b", startedAt: "2025-02-01T00:00:00Z", durationMs: 1, samples: { a: [1] }, units: {}, keepSamples: false, commit: "x", machine: MACHINE });
  assert.equal(noSamples.samples, undefined);
  await assert.rejects(
    createRun({ scenario: "s", backend: "b", startedAt: "2025-02-01T00:00:00Z", durationMs: 1, samples: { a: [1, Number.NaN] }, units: {}, commit: "x", machine: MACHINE }),
    isCode("INVALID_ARGUMENT", /metric a: samples must be finite/),
  );
});

test("runs stored with the old criterion labels (seed, issue) read as phase3 and project, names without the seed: prefix", async () => {
  const path = saveRun(await spawnRun("2025-03-01T00:00:00.000Z"));
  const stored = JSON.parse(readFileSync(path, "utf8")) as { criteria: Array<Record<string, unknown>> };
  for (const c of stored.criteria) {
    if (c["source"] === "phase3") Object.assign(c, { source: "seed", name: `seed: ${String(c["name"])}` });
    else c["source"] = "issue";
  }
  writeFileSync(path, JSON.stringify(stored));
  const back = loadRun(path).run;
  assert.deepEqual(
    back.criteria.map((c) => [c.name, c.source]),
    [
      ["median spawn < 100 ms", "phase3"],
      ["95% of spawns < 120 ms", "phase3"],
      ["handout p50 ≤ 2 ms", "project"],
      ["restore p50 ≤ 100 ms", "project"],
    ],
  );
  assert.ok(benchRunSchema.safeParse(stored).success);
});
