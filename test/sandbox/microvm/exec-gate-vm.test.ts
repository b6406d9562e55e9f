// The exec gate on real VMs: with one slot, commands of several VMs all complete (no deadlock), and a
// long command lends its slot out after the hold limit instead of parking every other command.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { vmExecGate } from "../../../src/runtime/exec-gate.js";
import { sandboxFor, unavailable } from "../../fixtures.js";

// Read when the first VM starts (this file runs in its own process).
process.env["LUMINAGUARD_VM_EXEC_SLOTS"] = "1";
process.env["LUMINAGUARD_VM_EXEC_HOLD_MS"] = "500";

describe("microvm exec gate", async () => {
  const skip = await unavailable("microvm");

  test("one slot, two VMs, concurrent commands: every one completes and the gate ends empty", { skip }, async (t) => {
    const [a, b] = await Promise.all([sandboxFor(t, "microvm"), sandboxFor(t, "microvm")]);
    const gate = vmExecGate();
    assert.equal(gate.slots, 1);
    const runs = [a, b].flatMap(({ sandbox }, v) => Array.from({ length: 6 }, (_, i) => sandbox.commands.run(["echo", `${v}-${i}`])));
    const out = await Promise.all(runs);
    assert.deepEqual(
      out.map((r) => r.stdout),
      [0, 1].flatMap((v) => Array.from({ length: 6 }, (_, i) => `${v}-${i}\n`)),
    );
    assert.equal(gate.active, 0);
    assert.equal(gate.waiting, 0);
  });

  test("a long command gives its slot back after the hold limit: a short one is not parked behind it", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const long = sandbox.commands.run(["sleep", "4"]);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const short = await sandbox.commands.run(["echo", "short"]);
    const waited = Date.now() - started;
    assert.equal(short.stdout, "short\n");
    assert.ok(waited < 3000, `the short command waited ${waited} ms behind the long one`);
    assert.equal((await long).exitCode, 0);
    assert.equal(vmExecGate().active, 0);
  });
});
