// `luminaguard bench` end to end on a real backend: JSON shape, stored run, criteria, no leftovers.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { unavailable } from "../fixtures.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

test("bench spawn --json prints one result object and stores it under the metrics dir", { skip: await unavailable("namespace") }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lg-metrics-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [MAIN, "bench", "spawn", "--backend", "namespace", "--runs", "5", "--json"], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, LUMINAGUARD_METRICS_DIR: dir },
  });
  assert.equal(r.status, 0, r.stderr);
  const run = JSON.parse(r.stdout) as {
    scenario: string;
    backend: string;
    commit: string;
    machine: { cpus: number };
    metrics: Record<string, { unit: string; n: number; p50: number; p95: number }>;
    criteria: Array<{ name: string; source: string; pass: boolean | null }>;
    samples?: unknown;
    notes: string[];
  };
  assert.equal(run.scenario, "spawn");
  assert.ok(run.notes.includes("a young-generation GC runs before each spawn_ms (outside the timed window)"), run.notes.join("; "));
  assert.equal(run.backend, "namespace");
  assert.ok(run.machine.cpus >= 1);
  for (const m of ["spawn_ms", "handout_ms", "spawn_first_call_ms", "baseline_bwrap_true_ms", "baseline_process_spawn_ms"]) {
    assert.equal(run.metrics[m]?.n, 5, `${m} has 5 samples`);
    assert.ok((run.metrics[m]?.p50 ?? 0) > 0);
  }
  assert.ok(run.criteria.some((c) => c.source === "phase3"), "the Phase 3 targets are evaluated");
  assert.equal(run.samples, undefined, "--json leaves raw samples out");
  const stored = readdirSync(join(dir, "spawn"));
  assert.equal(stored.length, 1);
  assert.match(stored[0] ?? "", /\.json$/);
});

test("bench spawn refuses an LG_BENCH_GC it does not know before it measures anything", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lg-metrics-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [MAIN, "bench", "spawn", "--backend", "namespace", "--runs", "1", "--json"], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, LUMINAGUARD_METRICS_DIR: dir, LG_BENCH_GC: "major" },
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /LG_BENCH_GC must be minor, full or 0, not "major"/);
  assert.equal(r.stdout, "");
  assert.deepEqual(readdirSync(dir), [], "no result is stored");
});

test("bench spawn --repeat 2: derived figures come once, from both repeats' samples pooled", { skip: await unavailable("namespace") }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lg-metrics-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [MAIN, "bench", "spawn", "--backend", "namespace", "--runs", "4", "--repeat", "2", "--json"], {
    encoding: "utf8",
    timeout: 180_000,
    env: { ...process.env, LUMINAGUARD_METRICS_DIR: dir },
  });
  assert.equal(r.status, 0, r.stderr);
  const run = JSON.parse(r.stdout) as { metrics: Record<string, { n: number }> };
  assert.equal(run.metrics["spawn_ms"]?.n, 8, "both repeats' spawns are pooled");
  // One figure over the pool, not one per repeat over the samples so far (which weighs the first repeat most).
  for (const m of ["spawn_ms_cv_pct", "spawn_ms_p95_over_p50", "baseline_bwrap_true_ms_cv_pct"]) assert.equal(run.metrics[m]?.n, 1, `${m} is derived once`);
});
