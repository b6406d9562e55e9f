// Percentiles, summaries, criteria, the noise-aware comparison, and the host samplers, on known data.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { compareRuns, betterWhen } from "../../src/metrics/compare.js";
import { bootstrapInterval, capSamples, compareSamples, cpuSampler, currentMachine, evaluate, gitCommit, percentile, seededRandom, summarize } from "../../src/metrics/stats.js";
import { LuminaGuardError } from "../../src/errors.js";
import { lognormal, spawnRun, tempDir } from "./helpers.js";

const near = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps, `${a} ≈ ${b}`);

test("percentiles interpolate linearly between closest ranks (type 7)", () => {
  const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  near(percentile(ten, 0.5), 5.5);
  near(percentile(ten, 0.95), 9.55);
  near(percentile(ten, 0.99), 9.91);
  near(percentile(ten, 0), 1);
  near(percentile(ten, 1), 10);
  near(percentile([1, 2, 3, 4], 0.5), 2.5);
  near(percentile([7], 0.99), 7);
  const hundred = Array.from({ length: 101 }, (_, i) => i); // 0..100: p_k is exactly k
  near(percentile(hundred, 0.95), 95);
  near(percentile(hundred, 0.99), 99);
  assert.throws(() => percentile([], 0.5), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT");
});

test("summarize sorts unsorted samples and reports every stat; bad input is a clear error", () => {
  const s = summarize([10, 1, 9, 2, 8, 3, 7, 4, 6, 5], "ms");
  assert.deepEqual({ ...s, p95: Number(s.p95.toFixed(6)), p99: Number(s.p99.toFixed(6)) }, { unit: "ms", n: 10, min: 1, p50: 5.5, p95: 9.55, p99: 9.91, max: 10, mean: 5.5 });
  assert.throws(() => summarize([], "ms"), /no samples/);
  assert.throws(() => summarize([1, Number.NaN], "ms"), /finite/);
  assert.throws(() => summarize([1, Number.POSITIVE_INFINITY], "ms"), /finite/);
});

test("evaluate: pass, fail, and not measured (null) for each operator", () => {
  const metrics = { a_ms: summarize([1, 2, 3, 4, 5], "ms"), tp: summarize([1200], "ops/min") };
  const out = evaluate(
    [
      { name: "a p50 < 3", metric: "a_ms", stat: "p50", op: "<", target: 3, source: "phase3" },
      { name: "a p50 <= 3", metric: "a_ms", stat: "p50", op: "<=", target: 3, source: "phase3" },
      { name: "a max > 5", metric: "a_ms", stat: "max", op: ">", target: 5, source: "project" },
      { name: "tp >= 1000", metric: "tp", stat: "p50", op: ">=", target: 1000, source: "phase3" },
      { name: "missing", metric: "nope", stat: "p95", op: "<", target: 1, source: "project" },
    ],
    metrics,
  );
  assert.deepEqual(
    out.map((c) => [c.name, c.value, c.pass]),
    [
      ["a p50 < 3", 3, false],
      ["a p50 <= 3", 3, true],
      ["a max > 5", 5, false],
      ["tp >= 1000", 1200, true],
      ["missing", null, null],
    ],
  );
  assert.equal(out[0]?.source, "phase3");
});

test("capSamples keeps min, max and the shape of the distribution", () => {
  const big = lognormal(50_000, 10, 0.5, 3);
  const capped = capSamples(big, 10_000);
  assert.equal(capped.length, 10_000);
  const full = summarize(big, "ms");
  const small = summarize(capped, "ms");
  assert.equal(small.min, full.min);
  assert.equal(small.max, full.max);
  for (const k of ["p50", "p95", "p99"] as const) assert.ok(Math.abs(small[k] / full[k] - 1) < 0.01, `${k}: ${small[k]} vs ${full[k]}`);
  assert.deepEqual(capSamples([3, 1, 2], 10), [3, 1, 2]);
});

test("seededRandom is deterministic and uniform-ish", () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const xs = Array.from({ length: 10_000 }, () => a());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.02, `mean ${mean}`);
});

test("compareSamples detects a 2x shift and gives the ratio of medians with a CI that excludes 1", () => {
  const a = lognormal(200, 50, 0.3, 1);
  const b = lognormal(200, 100, 0.3, 2);
  const c = compareSamples(a, b);
  assert.equal(c.outsideNoise, true);
  assert.ok(c.ratio !== null && c.ratio > 1.8 && c.ratio < 2.2, `ratio ${c.ratio}`);
  assert.ok(c.ci !== null && c.ci[0] > 1.5 && c.ci[1] < 2.6, `ci ${String(c.ci)}`);
  assert.ok(c.ci !== null && c.ci[0] <= (c.ratio ?? 0) && (c.ratio ?? 0) <= c.ci[1]);
  const back = compareSamples(b, a);
  assert.equal(back.outsideNoise, true);
  assert.ok(back.ratio !== null && back.ratio < 0.56 && back.ratio > 0.45);
});

test("compareSamples calls identical distributions within noise, and is repeatable", () => {
  const a = lognormal(200, 50, 0.3, 11);
  const b = lognormal(200, 50, 0.3, 12);
  const c = compareSamples(a, b);
  assert.equal(c.outsideNoise, false, `ci ${String(c.ci)} ratio ${c.ratio}`);
  assert.ok(c.ci !== null && c.ci[0] < 1 && c.ci[1] > 1);
  assert.deepEqual(compareSamples(a, b), c, "same inputs, same answer");
  const self = compareSamples(a, a);
  assert.equal(self.ratio, 1);
  assert.equal(self.outsideNoise, false);
});

test("compareSamples: few samples means the noise is unknown, not a verdict", () => {
  const c = compareSamples([1, 2, 3], [2, 4, 6]);
  assert.equal(c.ratio, 2);
  assert.equal(c.ci, null);
  assert.equal(c.outsideNoise, null);
  assert.equal(compareSamples([0, 0, 0, 0, 0], [1, 1, 1, 1, 1]).ratio, null);
  assert.throws(() => compareSamples([], [1]), /both sides/);
});

test("compareSamples handles 10,000 samples per side quickly", () => {
  const a = lognormal(10_000, 5, 0.4, 5);
  const b = lognormal(10_000, 5.25, 0.4, 6);
  const t = performance.now();
  const c = compareSamples(a, b);
  const ms = performance.now() - t;
  assert.ok(ms < 5000, `took ${ms} ms`);
  assert.equal(c.outsideNoise, true, "a 5% shift is resolvable with 10k samples");
});

test("compareRuns: per-metric verdicts with direction, and criteria changes", async () => {
  const a = await spawnRun("2025-01-01T00:00:00.000Z", { seed: 1 });
  const b = await spawnRun("2025-01-02T00:00:00.000Z", { seed: 1, slowdown: 2 });
  const cmp = compareRuns(a, b);
  const spawn = cmp.metrics.find((m) => m.metric === "spawn_ms");
  assert.equal(spawn?.verdict, "worse");
  assert.equal(spawn?.label, "slower");
  assert.equal(spawn?.method, "bootstrap");
  assert.ok(spawn?.ratio !== null && spawn !== undefined && Math.abs((spawn.ratio ?? 0) - 2) < 0.01);
  const baseline = cmp.metrics.find((m) => m.metric === "baseline_process_spawn_ms");
  assert.equal(baseline?.verdict, "same", "the baseline did not change");
  const median = cmp.criteria.find((c) => c.name.startsWith("median"));
  assert.equal(median?.change, "broke", "120 ms median breaks the < 100 ms criterion");
  const faster = compareRuns(b, a).metrics.find((m) => m.metric === "spawn_ms");
  assert.equal(faster?.verdict, "better");
  assert.equal(faster?.label, "faster");
  assert.equal(betterWhen("throughput_ops_per_min", "ops/min"), "higher");
  assert.equal(betterWhen("pss_idle_mib", "MiB"), "lower");
  assert.equal(betterWhen("spawn_ms", "ms"), "lower");
});

test("cpuSampler reads /proc/stat into a 0..100 series with start/stop", async () => {
  const s = cpuSampler(50);
  s.start();
  const end = performance.now() + 400;
  while (performance.now() < end) {
    // keep a core busy so utilisation is above zero
    await new Promise((r) => setImmediate(r));
  }
  const series = s.stop();
  assert.ok(series.length >= 3, `${series.length} points`);
  for (const p of series) {
    assert.ok(p.value >= 0 && p.value <= 100, `value ${p.value}`);
    assert.ok(p.tMs > 0);
  }
  assert.ok(series.some((p) => p.value > 0), "a busy loop shows up");
  assert.deepEqual(
    series.map((p) => p.tMs),
    [...series.map((p) => p.tMs)].sort((x, y) => x - y),
  );
  assert.deepEqual(s.stop(), series, "stop twice is harmless");
  assert.throws(() => cpuSampler(1), /at least 10 ms/);
});

test("currentMachine records node's own flags, which change what a run measures, and none when node had none", () => {
  const stats = new URL("../../src/metrics/stats.js", import.meta.url).href;
  const t = tempDir();
  try {
    // A script file, not -e: node counts -e and its code among its flags.
    const probe = join(t.dir, "probe.mjs");
    writeFileSync(probe, `import { currentMachine } from ${JSON.stringify(stats)};\nprocess.stdout.write(JSON.stringify(currentMachine()));\n`);
    const machineOf = (flags: string[]): Record<string, unknown> => {
      const r = spawnSync(process.execPath, [...flags, probe], { encoding: "utf8", timeout: 30_000, killSignal: "SIGKILL" });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    assert.deepEqual(machineOf(["--no-opt"])["nodeFlags"], ["--no-opt"]);
    assert.equal("nodeFlags" in machineOf([]), false);
  } finally {
    t.remove();
  }
});

test("bootstrapInterval: repeatable, around the statistic, narrower with more samples; none below 5; bad input refused", () => {
  const cvOf = (d: Float64Array): number => {
    const mean = d.reduce((a, b) => a + b, 0) / d.length;
    return Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / (d.length - 1)) / mean;
  };
  const small = lognormal(20, 10, 0.2, 7);
  const large = lognormal(2000, 10, 0.2, 7);
  const a = bootstrapInterval(small, cvOf);
  assert.ok(a);
  assert.deepEqual(bootstrapInterval(small, cvOf), a, "same samples, same interval");
  assert.ok(a[0] < cvOf(Float64Array.from(small)) && cvOf(Float64Array.from(small)) < a[1], `${String(a)} holds the point value`);
  const b = bootstrapInterval(large, cvOf);
  assert.ok(b);
  assert.ok(b[1] - b[0] < (a[1] - a[0]) / 3, `2,000 samples pin it down better than 20: ${String(b)} against ${String(a)}`);
  // lognormal sigma 0.2: CV = sqrt(exp(0.04) - 1) ≈ 0.2020
  assert.ok(b[0] < 0.202 && 0.202 < b[1], `the true CV is inside ${String(b)}`);
  const ratio = bootstrapInterval(small, (d) => percentile(d, 0.95) / percentile(d, 0.5));
  assert.ok(ratio && ratio[0] >= 1, "a p95 over a p50 of sorted draws is at least 1");
  assert.equal(bootstrapInterval([1, 2, 3, 4], cvOf), null);
  assert.throws(() => bootstrapInterval([1, 2, 3, 4, Number.NaN], cvOf), /finite/);
  assert.throws(() => bootstrapInterval(small, cvOf, { resamples: 10 }), /resamples/);
  assert.throws(() => bootstrapInterval(small, cvOf, { confidence: 1 }), /confidence/);
});

test("currentMachine and gitCommit describe this host", async () => {
  const m = currentMachine();
  assert.ok(m.cpus >= 1);
  assert.ok(m.cpuModel.length > 0);
  assert.doesNotMatch(m.cpuModel, /^\d+$/, "a model name, not the processor index");
  assert.ok(m.memGiB > 0);
  assert.match(m.node, /^v\d+\./);
  assert.ok(m.hostKernel.length > 0);
  const here = await gitCommit();
  assert.match(here, /^([0-9a-f]{4,64}|unknown)$/);
  const t = tempDir();
  try {
    assert.equal(await gitCommit(t.dir), "unknown", "not a repository");
    assert.equal(await gitCommit("/nonexistent/dir"), "unknown");
  } finally {
    t.remove();
  }
});
