// A request waiting for an exec-gate slot keeps its VM running: past saturation every command waits at
// the gate, and pausing the VM meanwhile cost a `stop`, a `cont` and a clock-syncing `hello` per
// command (an idle guest is tickless, so a running one costs nothing while it waits). Real VMs.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { vmExecGate } from "../../../src/runtime/exec-gate.js";
import { idlerOf } from "../../../src/sandbox/microvm/idle.js";
import type { SandboxApi } from "../../../src/runtime/sandbox.js";
import type { SandboxHandle } from "../../../src/sandbox/types.js";
import { sandboxFor, unavailable, waitFor } from "../../fixtures.js";

// Read when the first VM starts (this file runs in its own process).
process.env["LUMINAGUARD_VM_EXEC_SLOTS"] = "1";
process.env["LUMINAGUARD_VM_EXEC_HOLD_MS"] = "10000";
process.env["LUMINAGUARD_VM_PAUSE_GRACE_MS"] = "300";

const handleOf = (s: SandboxApi): SandboxHandle => (s as unknown as { handle: SandboxHandle }).handle;

describe("microvm exec gate and pausing", async () => {
  const skip = await unavailable("microvm");

  test("a command queued behind another VM's does not let its own VM be paused while it waits", { skip }, async (t) => {
    const [a, b] = await Promise.all([sandboxFor(t, "microvm"), sandboxFor(t, "microvm")]);
    assert.equal(vmExecGate().slots, 1);
    const idler = idlerOf(handleOf(b.sandbox));
    assert.ok(idler, "the VM has an idler");
    assert.equal((await b.sandbox.commands.run(["true"])).exitCode, 0);
    assert.equal(idler.isPaused, false, "running right after its answer (300 ms grace)");
    const { pauses, resumes } = idler.stats;
    const long = a.sandbox.commands.run(["sleep", "2"]);
    assert.ok(await waitFor(() => vmExecGate().active === 1, 1000), "the other VM's command holds the only slot");
    const started = Date.now();
    const queued = await b.sandbox.commands.run(["echo", "after"]);
    const waited = Date.now() - started;
    assert.equal(queued.stdout, "after\n");
    assert.ok(waited > 1000, `it waited ${waited} ms for the slot (the gate held it)`);
    // Before: paused 300 ms into its wait, then resumed (and its clock re-synced) for the command.
    assert.equal(idler.stats.pauses, pauses, "not paused while it waited at the gate");
    assert.equal(idler.stats.resumes, resumes, "so no resume either");
    assert.equal((await long).exitCode, 0);
    assert.ok(await waitFor(() => idler.isPaused, 5000), "idle again after the command: paused");
  });
});
