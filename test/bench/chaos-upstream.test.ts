// `bench chaos`, the upstream part (smoke): real upstream MCP servers (server-filesystem over stdio,
// server-everything over Streamable HTTP) SIGKILLed and stopped while calls go through the pooled MCP
// client: every failed call a named upstream error within its deadline, the pool recovers, the killed
// stdio server is restarted under a new pid, no server process left.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { upstreamChaos, upstreamChaosCriteria } from "../../src/bench/chaos-upstream.js";
import { Recorder } from "../../src/bench/scenarios.js";

const max = (rec: Recorder, metric: string): number => {
  const xs = rec.samples[metric];
  assert.ok(xs && xs.length > 0, `${metric} is recorded`);
  return Math.max(...xs);
};

describe("bench chaos: upstream MCP servers killed and hung (smoke)", () => {
  test("every failure named and in time, every fault recovered from, nothing left", async () => {
    const rec = new Recorder();
    await upstreamChaos(rec, { durationS: 5, faults: 6, seed: 3, callTimeoutMs: 1500 });
    const notes = rec.notes.join("; ");
    assert.equal(max(rec, "upstream_faults_injected"), 6, notes);
    assert.ok(max(rec, "upstream_calls_ok") > 10, "calls went through between the faults");
    assert.ok(max(rec, "upstream_calls_failed") >= 1, "the faults made calls fail");
    assert.equal(max(rec, "upstream_unnamed_failures"), 0, notes);
    assert.equal(max(rec, "upstream_calls_past_deadline"), 0, notes);
    assert.equal(max(rec, "upstream_unrecovered_faults"), 0, notes);
    assert.equal(max(rec, "upstream_next_call_ok"), 1, notes);
    assert.equal(max(rec, "upstream_leaked_processes"), 0, notes);
    assert.equal((rec.samples["upstream_recovery_ms"] ?? []).length, 6, "a recovery time per fault");
    // Seed 3 draws at least one SIGKILL of the stdio server: the pool started another one.
    assert.ok(max(rec, "upstream_faults.kill_stdio") >= 1, "a kill of the stdio server was drawn");
    assert.equal(Math.min(...(rec.samples["upstream_stdio_restarted"] ?? [0])), 1, "the pool restarted the killed stdio server");
    for (const c of upstreamChaosCriteria()) assert.ok(rec.samples[c.metric], `${c.metric} (criterion ${c.name}) is recorded`);
  });
});
