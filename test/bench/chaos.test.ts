// `bench chaos` smoke: a few seconds of the chaos monkey on each backend that runs here. The checks
// are the benchmark's own: no acknowledged write lost, every failure named and in time, the pool full
// again, and nothing of the run left behind.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runChaos } from "../../src/bench/chaos.js";
import { privateMetricsDir, unavailable } from "../fixtures.js";

const max = (run: Awaited<ReturnType<typeof runChaos>>["run"], metric: string): number => {
  const m = run.metrics[metric];
  assert.ok(m, `${metric} is recorded`);
  return m.max;
};

describe("bench chaos (smoke)", async () => {
  for (const [backend, agents, kills, durationS] of [
    ["namespace", 2, 8, 4],
    ["microvm", 1, 3, 10],
  ] as const) {
    const skip = await unavailable(backend);
    test(`${backend}: ${kills} kills, no acknowledged write lost, every failure named, no leak`, { skip }, async (t) => {
      const dir = privateMetricsDir(t);
      const { run, path, leaks } = await runChaos({ backend, agents, kills, durationS, seed: 11 });
      assert.deepEqual(leaks, [], "nothing of the run is left");
      assert.ok(path.startsWith(join(dir, "chaos")), "stored under the metrics dir's chaos/");
      assert.equal(readdirSync(join(dir, "chaos")).length, 1);
      assert.equal(run.info?.["seed"], 11, "the seed is recorded");
      assert.ok(max(run, "kills_injected") >= kills, `at least ${kills} kills injected`);
      assert.ok(max(run, "acknowledged_writes") > 0, "writes were acknowledged");
      assert.equal(max(run, "acknowledged_writes_lost"), 0, run.notes.join("; "));
      assert.equal(max(run, "temp_files_left"), 0, run.notes.join("; "));
      assert.equal(max(run, "unnamed_failures"), 0, run.notes.join("; "));
      assert.equal(max(run, "calls_past_deadline"), 0, run.notes.join("; "));
      assert.equal(max(run, "pool_full"), 1);
      assert.ok(max(run, "calls_failed") >= 1, "the faults made calls fail");
      assert.ok((run.metrics["recovery_ms"]?.n ?? 0) >= kills, "a recovery time per kill at least");
      assert.ok(run.criteria.every((c) => c.pass === true), JSON.stringify(run.criteria.filter((c) => c.pass !== true)));
    });
  }

  test("through the daemon, killed and restarted: no acknowledged write lost, every failure named, no leak", { skip: await unavailable("namespace") }, async (t) => {
    privateMetricsDir(t);
    const { run, leaks } = await runChaos({ backend: "namespace", agents: 2, kills: 4, durationS: 5, seed: 5, daemon: true });
    assert.deepEqual(leaks, [], "nothing of the run or of its daemons is left");
    assert.ok(max(run, "faults.daemon_kill") >= 1, "the daemon was killed and restarted");
    assert.ok(max(run, "acknowledged_writes") > 0);
    assert.equal(max(run, "acknowledged_writes_lost"), 0);
    assert.equal(max(run, "unnamed_failures"), 0, run.notes.join("; "));
    assert.equal(max(run, "calls_past_deadline"), 0);
    assert.equal(max(run, "pool_full"), 1, "a fresh sandbox answers after the run");
    assert.ok(run.criteria.every((c) => c.pass === true), JSON.stringify(run.criteria.filter((c) => c.pass !== true)));
  });
});
