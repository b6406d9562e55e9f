// The collection a timed spawn makes first (gcBeforeRun, noiseProbe): which one, and that it is that one.
import assert from "node:assert/strict";
import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { gcBeforeRun, noiseProbe } from "../../src/bench/measure.js";

test("LG_BENCH_GC: minor by default, full or none on request, anything else refused with its value", () => {
  assert.equal(gcBeforeRun({}), "minor");
  assert.equal(gcBeforeRun({ LG_BENCH_GC: "" }), "minor");
  assert.equal(gcBeforeRun({ LG_BENCH_GC: "minor" }), "minor");
  assert.equal(gcBeforeRun({ LG_BENCH_GC: "full" }), "full");
  assert.equal(gcBeforeRun({ LG_BENCH_GC: "0" }), "none");
  assert.equal(gcBeforeRun({ LG_BENCH_GC: "none" }), "none");
  for (const bad of ["1", "major", "FULL", "x".repeat(500)]) {
    assert.throws(
      () => gcBeforeRun({ LG_BENCH_GC: bad }),
      (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT" && e.message.includes("minor, full or 0") && e.message.length < 200,
    );
  }
});

/** The kinds of the collections V8 reports while `fn` runs (entries arrive asynchronously). */
async function collections(fn: () => void): Promise<number[]> {
  const kinds: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) kinds.push(e.detail?.kind ?? -1);
  });
  observer.observe({ entryTypes: ["gc"] });
  try {
    fn();
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    observer.disconnect();
  }
  return kinds;
}

test("noiseProbe's gc('minor') is a scavenge only, gc('full') a mark-compact", async () => {
  const probe = noiseProbe();
  try {
    assert.ok(probe.gc, "node lets a process expose gc at run time");
    const gc = probe.gc;
    // Garbage in the young generation, so that a scavenge has something to do.
    const churn = (): void => {
      let keep = 0;
      for (let i = 0; i < 50_000; i++) keep += { i }.i;
      assert.ok(keep > 0);
    };
    const minor = await collections(() => {
      churn();
      gc("minor");
    });
    assert.ok(minor.includes(constants.NODE_PERFORMANCE_GC_MINOR), `a scavenge was reported: ${JSON.stringify(minor)}`);
    assert.ok(!minor.includes(constants.NODE_PERFORMANCE_GC_MAJOR), `no mark-compact: ${JSON.stringify(minor)}`);
    const full = await collections(() => gc("full"));
    assert.ok(full.includes(constants.NODE_PERFORMANCE_GC_MAJOR), `a mark-compact was reported: ${JSON.stringify(full)}`);
  } finally {
    probe.close();
  }
});
