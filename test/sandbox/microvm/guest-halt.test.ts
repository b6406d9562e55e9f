// A guest that halts or powers itself off (guest commands may do so as root) leaves QEMU running and the
// channel open: the call in flight must fail at once with GUEST_CHANNEL_LOST, the sandbox die, nothing stay.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runDir } from "../../../src/paths.js";
import { rejectsWith, sandboxFor, unavailable, waitFor } from "../../fixtures.js";

describe("a guest that stops itself", async () => {
  const skip = await unavailable("microvm");

  for (const command of ["halt -f", "poweroff -f"]) {
    test(`\`${command}\` fails the call at once with GUEST_CHANNEL_LOST and leaves nothing`, { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, "microvm");
      const pids = sandbox.pids();
      assert.ok(pids.length > 0);
      const started = Date.now();
      // Before the fix this waited out the whole deadline (60 s + 15 s) and then said "guest did not answer".
      const err = await rejectsWith(sandbox.commands.run(command, { timeoutMs: 60_000 }), "GUEST_CHANNEL_LOST");
      const ms = Date.now() - started;
      assert.ok(ms < 20_000, `noticed in ${ms} ms, not at the deadline`);
      assert.match(err.message, /shut itself down|exited|closed/);
      assert.ok(await waitFor(() => !sandbox.alive, 10_000), "the sandbox is killed");
      assert.ok(
        await waitFor(() => pids.every((pid) => { try { process.kill(pid, 0); return false; } catch { return true; } }), 10_000),
        "its processes are gone",
      );
      assert.equal(existsSync(join(runDir(), `vm-${sandbox.id}`)), false, "its run directory is removed");
      await rejectsWith(sandbox.commands.run("true"), "SANDBOX_CLOSED");
    });
  }
});
