// A guest kernel that halts or powers off (microvm with acpi=off has no power-off device, so QEMU runs on)
// leaves the channel open: the call in flight must fail at once with GUEST_CHANNEL_LOST, the sandbox die,
// nothing stay. Before the fix the call waited out its whole deadline and said "guest did not answer".
import assert from "node:assert/strict";
import { appendFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runDir } from "../../../src/paths.js";
import { rejectsWith, sandboxFor, unavailable, waitFor } from "../../fixtures.js";

const gone = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
};

describe("a guest that stops itself", async () => {
  const skip = await unavailable("microvm");

  // Guest commands run as the VMM's unprivileged uid, so a command cannot halt the kernel here; root in
  // the guest (a guest kernel exploit) can. What the host sees then is the kernel's last line on the
  // serial console, which is what these tests write into the console log.
  for (const line of ["reboot: System halted", "reboot: Power down"]) {
    test(`the kernel's "${line}" fails the call in flight at once with GUEST_CHANNEL_LOST and leaves nothing`, { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, "microvm");
      const pids = sandbox.pids();
      assert.ok(pids.length > 0);
      const dir = join(runDir(), `vm-${sandbox.id}`);
      assert.ok(existsSync(join(dir, "console.log")));
      const started = Date.now();
      const call = sandbox.commands.run("sleep 30", { timeoutMs: 60_000 });
      setTimeout(() => appendFileSync(join(dir, "console.log"), `\r\n[   12.345678] ${line}\r\n`), 500);
      const err = await rejectsWith(call, "GUEST_CHANNEL_LOST");
      const ms = Date.now() - started;
      assert.ok(ms < 10_000, `noticed in ${ms} ms, not at the deadline`);
      assert.match(err.message, /shut itself down/);
      assert.match(err.message, /create a new sandbox/);
      assert.ok(await waitFor(() => !sandbox.alive, 10_000), "the sandbox is killed");
      assert.ok(await waitFor(() => pids.every(gone), 10_000), "its processes are gone");
      assert.ok(await waitFor(() => !existsSync(dir), 10_000), "its run directory is removed");
      const next = await rejectsWith(sandbox.commands.run("true"), "SANDBOX_CLOSED");
      assert.match(next.message, /is gone/);
    });
  }

  test("`halt -f` and `poweroff -f` by a command are refused (it is not root) and the sandbox works on", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    for (const command of ["halt -f", "poweroff -f"]) {
      const r = await sandbox.commands.run(command, { timeoutMs: 10_000 });
      assert.notEqual(r.exitCode, 0, `${command} must fail`);
      assert.match(r.stderr, /not permitted/);
    }
    assert.equal((await sandbox.commands.run("echo alive")).stdout, "alive\n");
  });
});
