// A short smoke of `luminaguard bench faults`: real cells in child processes, judged; and the judge itself
// fails a cell that crashed, hung, answered with the wrong code or logged nothing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FAULT_CELLS, judgeCell, runCell, type FaultCell } from "../../src/bench/faults.js";
import { createRun } from "../../src/metrics/store.js";
import { faultMatrixSection } from "../../src/metrics/report-faults.js";
import { unavailable } from "../fixtures.js";

const cell = (name: string): FaultCell => {
  const c = FAULT_CELLS.find((x) => x.fault === name);
  assert.ok(c, name);
  return c;
};

describe("bench faults", async () => {
  const skip = await unavailable("namespace");

  for (const name of ["guest-eio", "guest-crash", "channel-cut", "audit-write"]) {
    test(`the ${name} cell passes on namespace`, { skip }, async () => {
      const r = await runCell(cell(name), "namespace", 60_000);
      assert.deepEqual(r.problems, []);
      assert.equal(r.pass, true);
    });
  }

  test("the judge fails a crash, a hang, a wrong code and a missing log line", () => {
    const c = cell("guest-eio");
    const crashed = judgeCell(c, "namespace", { exitCode: 1, timedOut: false, stdout: "", stderr: "TypeError: boom" });
    assert.equal(crashed.pass, false);
    assert.equal(crashed.checks.caught, false);
    const hung = judgeCell(c, "namespace", { exitCode: null, timedOut: true, stdout: "", stderr: "" });
    assert.match(hung.problems.join(";"), /hung/);
    const attempt = { ok: false, ms: 5, code: "INTERNAL", message: "probe.txt: Input/output error", details: { sandboxId: "lg-1", callId: "lg-1#2" } };
    const outcome = { faulted: attempt, next: { ok: true, ms: 3 }, fresh: null, info: {}, fired: { "guest-eio": 1 } };
    const wrong = judgeCell(c, "namespace", { exitCode: 0, timedOut: false, stdout: JSON.stringify(outcome), stderr: "" });
    assert.equal(wrong.checks.code, false);
    assert.equal(wrong.checks.log, false);
    const right = { ...outcome, faulted: { ...attempt, code: "IO_ERROR" } };
    const line = JSON.stringify({ level: 40, sandboxId: "lg-1", callId: "lg-1#2", msg: "sandbox call failed" });
    const ok = judgeCell(c, "namespace", { exitCode: 0, timedOut: false, stdout: JSON.stringify(right), stderr: `${line}\n` });
    assert.deepEqual(ok.problems, []);
    assert.equal(ok.pass, true);
  });

  test("the report's section lists every cell with its checks and says how many fail", async () => {
    const ok = { caught: true, code: true, log: true, message: true, recovery: true };
    const info: Record<string, string | number | boolean> = { "cell.spawn": "PASS", "cell.spawn.errorCode": "SANDBOX_SPAWN_FAILED", "cell.slow-io": "FAIL", "cell.slow-io.errorCode": "none" };
    for (const [k, v] of Object.entries(ok)) {
      info[`cell.spawn.${k}`] = v;
      info[`cell.slow-io.${k}`] = k !== "recovery";
    }
    const run = await createRun({ scenario: "faults", backend: "namespace", startedAt: new Date(), durationMs: 1, samples: { cells_failed: [1] }, units: { cells_failed: "" }, info, commit: "test" });
    const md = faultMatrixSection([{ id: "faults/x", path: "x", run }]);
    assert.match(md, /\| spawn \| namespace \| PASS \| SANDBOX_SPAWN_FAILED \| yes \| yes \| yes \| yes \| yes \|/);
    assert.match(md, /\| slow-io \| namespace \| \*\*FAIL\*\* \| none \| yes \| yes \| yes \| yes \| \*\*no\*\* \|/);
    assert.match(md, /1 cell\(s\) fail/);
    assert.equal(faultMatrixSection([undefined]), "");
  });
});
