// `metrics check`, the gate: exit code 1 when a criterion fails or a figure regresses beyond the noise against
// a baseline (a commit, previous, or a run reference); passes within the noise. Over a real store in a temp dir.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Command } from "commander";
import { registerMetricsCommand } from "../../src/cli/metrics.js";
import type { BenchRun } from "../../src/metrics/schema.js";
import { saveRun } from "../../src/metrics/store.js";
import { scaleRun, spawnRun, tempDir } from "./helpers.js";

let store: { dir: string; remove: () => void };

const at = (run: BenchRun, commit: string): BenchRun => ({ ...run, commit });

before(async () => {
  store = tempDir();
  // namespace spawn: a good run at aaa1111, a 20% slower one (still within every criterion) at bbb2222.
  saveRun(at(await spawnRun("2025-01-01T00:00:00.000Z", { seed: 1 }), "aaa1111"), { dir: store.dir });
  saveRun(at(await spawnRun("2025-01-02T00:00:00.000Z", { seed: 1, slowdown: 1.2 }), "bbb2222"), { dir: store.dir });
  // microvm spawn: two runs of the same distribution (different seeds): within the noise.
  saveRun(at(await spawnRun("2025-01-01T00:00:00.000Z", { backend: "microvm", seed: 3 }), "aaa1111"), { dir: store.dir });
  saveRun(at(await spawnRun("2025-01-02T00:00:00.000Z", { backend: "microvm", seed: 4 }), "bbb2222"), { dir: store.dir });
});

after(() => store.remove());

async function check(dir: string, ...args: string[]): Promise<{ out: string; code: number | undefined }> {
  let out = "";
  let code: number | undefined;
  const program = new Command().name("luminaguard").exitOverride();
  program.configureOutput({ writeOut: (s) => (out += s), writeErr: () => {} });
  registerMetricsCommand(program, { out: (s) => (out += s), dir, color: false, setExitCode: (c) => (code = c) });
  await program.parseAsync(["metrics", "check", ...args], { from: "user" });
  return { out, code };
}

test("check: every latest run passes its criteria: exit code untouched", async () => {
  const r = await check(store.dir);
  assert.equal(r.code, undefined, r.out);
  assert.match(r.out, /^PASS {2}spawn\/2025-01-02T00-00-00\.000Z(-1)? \(spawn on microvm\)$/m);
  assert.match(r.out, /^PASS {2}spawn\/2025-01-02T00-00-00\.000Z(-1)? \(spawn on namespace\)$/m);
  assert.match(r.out, /not measured: restore p50 ≤ 100 ms/, "an unmeasured criterion is said, and does not fail the gate");
  assert.match(r.out, /all 2 runs pass/);
});

test("check --baseline COMMIT: 20% slower outside the noise fails; the same distribution does not", async () => {
  const r = await check(store.dir, "--baseline", "aaa1111");
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^FAIL {2}\S+ \(spawn on namespace\) against spawn\/2025-01-01T00-00-00\.000Z/m);
  assert.match(r.out, /regression: spawn_ms slower: p50 [\d.]+ → [\d.]+ ms \(B\/A 1\.20, 95% CI 1\.\d\d–1\.\d\d\)/);
  assert.match(r.out, /^PASS {2}\S+ \(spawn on microvm\) against /m);
  assert.doesNotMatch(r.out, /regression: baseline_/, "the machine's own figures are not our regressions");
  const json = JSON.parse((await check(store.dir, "--baseline", "previous", "--json")).out) as { pass: boolean; runs: Array<{ backend: string; pass: boolean; regressions: Array<{ metric: string }> }> };
  assert.equal(json.pass, false);
  assert.deepEqual(json.runs.find((v) => v.backend === "namespace")?.regressions.map((m) => m.metric).sort(), ["handout_ms", "spawn_ms"]);
  assert.equal(json.runs.find((v) => v.backend === "microvm")?.pass, true);
});

test("check: a failed criterion fails the gate and says which; a baseline that does not exist is said, not a failure", async () => {
  const t = tempDir();
  try {
    saveRun(await spawnRun("2025-01-03T00:00:00.000Z", { slowdown: 2 }), { dir: t.dir });
    saveRun(await scaleRun("2025-01-03T00:00:00.000Z", { collapse: true, failures: { 25: { CAPACITY: 4 } } }), { dir: t.dir });
    let r = await check(t.dir, "spawn");
    assert.equal(r.code, 1);
    assert.match(r.out, /criterion failed: median spawn < 100 ms: 1\d\d(\.\d)? \(target p50 < 100\)/);
    r = await check(t.dir, "scale");
    assert.equal(r.code, 1);
    assert.match(r.out, /criterion failed: plateau past saturation.*: 0\.43/);
    assert.doesNotMatch(r.out, /no failure other than CAPACITY/, "CAPACITY alone is allowed");
    r = await check(t.dir, "--scenario", "spawn", "--baseline", "fff0000");
    assert.match(r.out, /no baseline run of this scenario and backend/);
  } finally {
    t.remove();
  }
});
