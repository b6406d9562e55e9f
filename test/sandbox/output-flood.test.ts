// A command that floods its output past the cap is killed there, not left running (holding a core) until its timeout.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BACKENDS, sandboxFor, unavailable } from "../fixtures.js";

for (const backend of BACKENDS) {
  describe(`output flood (${backend})`, async () => {
    const skip = await unavailable(backend);

    test("`yes` past the output cap is killed at the cap, and the result says so", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      const started = Date.now();
      // Its own timeout is 60 s: before the fix it ran (and held a core) for all of it.
      const r = await sandbox.commands.run(["yes"], { timeoutMs: 60_000 });
      const ms = Date.now() - started;
      assert.equal(r.stdoutTruncated, true);
      assert.equal(r.killedAtOutputCap, true);
      assert.equal(r.signal, "SIGKILL");
      assert.equal(r.exitCode, null);
      assert.equal(r.stdout.length, 1024 * 1024);
      assert.ok(ms < 30_000, `a flood past the cap ends well before its 60 s timeout (took ${ms} ms)`);
      // The sandbox is fine afterwards.
      const next = await sandbox.commands.run("echo ok");
      assert.equal(next.stdout, "ok\n");
      assert.equal(next.killedAtOutputCap, false);
    });

    test("a command that writes a little over the cap on stderr is killed there too; one under it is not", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      const over = await sandbox.commands.run("head -c 2000000 /dev/zero >&2; sleep 50", { timeoutMs: 60_000 });
      assert.equal(over.stderrTruncated, true);
      assert.equal(over.killedAtOutputCap, true);
      assert.ok(over.durationMs < 30_000, `killed at the cap, not after the sleep (${over.durationMs} ms)`);
      const under = await sandbox.commands.run("head -c 1000 /dev/zero; echo done >&2");
      assert.equal(under.killedAtOutputCap, false);
      assert.equal(under.exitCode, 0);
      assert.equal(under.stderr, "done\n");
    });
  });
}
