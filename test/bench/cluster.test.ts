// `bench cluster` smoke: a real 3-server NATS cluster and 3 nodes, a few samples of each figure; the run is stored
// (in a temporary metrics directory) with every metric the scenario promises, NODE_LOST measured, no failure
// other than CAPACITY, and nothing of the run left behind.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runClusterBench } from "../../src/bench/cluster.js";
import { privateMetricsDir, unavailable } from "../fixtures.js";
import { natsServerMissing } from "../cluster/nats.js";

const skip = natsServerMissing() ?? (await unavailable("namespace"));

describe("bench cluster (smoke)", { skip, timeout: 300_000 }, () => {
  test("every figure measured, stored under <metrics>/cluster/, nothing left", async (t) => {
    const dir = privateMetricsDir(t);
    const { run, path, leaks } = await runClusterBench({ runs: 5, concurrency: 2, durationS: 1, progress: () => undefined });
    assert.deepEqual(leaks, []);
    assert.deepEqual(run.notes.filter((n) => n.startsWith("LEAK")), [], "every node's directory removed (nothing mounted left)");
    assert.ok(path.startsWith(join(dir, "cluster")), path);
    assert.ok(existsSync(path));
    for (const m of [
      "cluster_claim_ms",
      "cluster_claim_concurrent_ms",
      "cluster_claims_per_s",
      "cluster_call_ms.read_file",
      "local_call_ms.read_file",
      "cluster_call_ms.execute_command",
      "local_call_ms.execute_command",
      "cluster_call_overhead_ms.read_file",
      "cluster_over_local.read_file",
      "cluster_calls_per_s.three_nodes",
      "cluster_calls_per_s.one_node",
      "cluster_nats_kill_first_call_ms",
      "cluster_nats_kill_claim_ms",
      "cluster_node_lost_ms",
    ]) {
      assert.ok(run.metrics[m] !== undefined, `${m} measured (notes: ${run.notes.join("; ")})`);
    }
    assert.equal(run.metrics["cluster_claim_ms"]?.n, 5);
    // 5 bursts of 2 clients × 3 claims, each from full pools, each its claims/s.
    assert.equal(run.metrics["cluster_claim_concurrent_ms"]?.n, 30);
    assert.equal(run.metrics["cluster_claims_per_s"]?.n, 5);
    assert.ok(run.metrics["cluster_claims_spawned"] !== undefined);
    assert.equal(run.metrics["cluster_failures"]?.max, 0, run.notes.join("; "));
    // The judged criteria are all there (their pass/fail is for a quiet machine to say).
    for (const name of ["cluster_call_overhead_ms.read_file", "cluster_claims_per_s", "cluster_node_lost_over_ttl", "cluster_nats_kill_first_call_ms"]) {
      const c = run.criteria.find((x) => x.metric === name);
      assert.ok(c && c.pass !== null, `${name} judged`);
    }
  });
});
