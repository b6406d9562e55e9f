// Derived bench figures (ratios, spreads) come from the pooled samples of every repeat, once.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cliFigures } from "../../src/bench/cli.js";
import { Recorder, spawnFigures, toolsFigures } from "../../src/bench/scenarios.js";

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

test("tools: each ratio is one figure, the pooled p50s' ratio", () => {
  const rec = new Recorder();
  // Three repeats; the first one's read_file is slow (a cold start), as seen in a stored run.
  const vm = [0.32, 0.33, 0.31, 0.07, 0.08, 0.076, 0.11, 0.112, 0.111];
  const ns = [0.12, 0.121, 0.119, 0.07, 0.071, 0.069, 0.117, 0.118, 0.116];
  for (const v of vm) rec.add("tool_latency_ms.read_file", "ms", v);
  for (const v of ns) rec.add("ns_tool_latency_ms.read_file", "ms", v);
  for (const [a, b] of [[60_937, 256_632], [63_828, 276_117], [64_614, 281_321]] as const) {
    rec.add("throughput_ops_per_min", "ops/min", a);
    rec.add("ns_throughput_ops_per_min", "ops/min", b);
  }
  toolsFigures(rec);
  assert.deepEqual(rec.samples["tool_over_namespace.read_file"], [median(vm) / median(ns)]);
  assert.deepEqual(rec.samples["throughput_over_namespace"], [63_828 / 276_117]);
});

test("spawn: the spread and the ratio to the bare start, once over the pool", () => {
  const rec = new Recorder();
  const xs = [8, 9, 10, 8.5, 12, 7.5];
  for (const x of xs) rec.add("restore_ms", "ms", x);
  for (const x of [20, 21, 19]) rec.add("baseline_qemu_bare_start_ms", "ms", x);
  spawnFigures(rec, "microvm");
  assert.equal(rec.samples["restore_ms_cv_pct"]?.length, 1);
  const mean = xs.reduce((a, b) => a + b) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  assert.ok(Math.abs((rec.samples["restore_ms_cv_pct"]?.[0] ?? 0) - (100 * sd) / mean) < 1e-9);
  assert.deepEqual(rec.samples["restore_over_bare_qemu"], [median(xs) / 20]);
  // How far another run of as many restores could land: an interval around each judged point value.
  const note = rec.notes.find((n) => n.startsWith("restore_ms over 6 spawns:"));
  assert.ok(note, rec.notes.join("\n"));
  const m = /CV ([\d.]+) % \(95 % bootstrap interval ([\d.]+)–([\d.]+) %\), p95\/p50 ([\d.]+) \(([\d.]+)–([\d.]+)\)/.exec(note);
  assert.ok(m, note);
  const [cvPct, lo, hi, tail, tLo, tHi] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  assert.equal(cvPct, Number((rec.samples["restore_ms_cv_pct"]?.[0] ?? NaN).toFixed(1)));
  assert.ok(lo <= cvPct && cvPct <= hi && lo < hi, note);
  assert.equal(tail, Number((rec.samples["restore_ms_p95_over_p50"]?.[0] ?? NaN).toFixed(2)));
  assert.ok(tLo <= tail && tail <= tHi, note);
  // Too few to say: no interval, no note.
  const few = new Recorder();
  for (const x of [8, 9, 10]) few.add("restore_ms", "ms", x);
  spawnFigures(few, "microvm");
  assert.equal(few.samples["restore_ms_cv_pct"]?.length, 1);
  assert.equal(few.notes.some((n) => n.includes("bootstrap")), false);
});

test("cli: ratios of medians where both commands were measured, none without srt", () => {
  const rec = new Recorder();
  for (const v of [60, 62, 64]) rec.add("cli_ms.node_e0", "ms", v);
  for (const v of [66, 70, 68]) rec.add("cli_ms.version", "ms", v);
  for (const v of [140, 150]) rec.add("cli_ms.exec_namespace", "ms", v);
  cliFigures(rec);
  assert.deepEqual(rec.samples["cli_ratio.version_over_node"], [68 / 62]);
  assert.equal(rec.samples["cli_ratio.exec_namespace_over_srt"], undefined, "srt was not measured");
  for (const v of [300, 320]) rec.add("cli_ms.srt_true", "ms", v);
  const again = new Recorder();
  for (const [k, xs] of Object.entries(rec.samples)) if (k.startsWith("cli_ms.")) for (const v of xs) again.add(k, "ms", v);
  cliFigures(again);
  assert.deepEqual(again.samples["cli_ratio.exec_namespace_over_srt"], [145 / 310]);
});
