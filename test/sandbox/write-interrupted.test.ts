// A write_file cut short by the sandbox's death leaves no partial file in the workspace: the target is
// its old self or the whole new content, and a temp file exists only once complete (O_TMPFILE, named
// just before the rename), so one left by a kill in that instant is a complete copy, never a fragment.
import assert from "node:assert/strict";
import { readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { tempWorkspace, unavailable } from "../fixtures.js";

describe("write_file interrupted by a SIGKILL", async () => {
  const skip = await unavailable("namespace");

  test("killed the moment a temp name appears: no partial temp file, the target old or complete", { skip }, async (t) => {
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const size = 8 * 1024 * 1024;
    const big = "x".repeat(size - 1) + "\n";
    for (let i = 0; i < 5; i++) {
      writeFileSync(join(ws.dir, "target.txt"), "old\n");
      const sandbox = await Sandbox.create({ backend: "namespace", workspace: ws.dir });
      const pids = sandbox.pids();
      let settled = false;
      const call = sandbox.files.write("target.txt", big).finally(() => (settled = true));
      call.catch(() => undefined);
      // Watch for the temp name and kill the sandbox the moment it shows.
      const deadline = Date.now() + 10_000;
      while (!settled && Date.now() < deadline && !readdirSync(ws.dir).some((n) => n.startsWith(".lg-"))) await new Promise((r) => setImmediate(r));
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          /* already gone */
        }
      }
      await call.catch(() => undefined);
      await sandbox.kill();
      for (const name of readdirSync(ws.dir).filter((n) => n.startsWith(".lg-"))) {
        assert.equal(statSync(join(ws.dir, name)).size, size, `${name} left by the kill is a partial file`);
        rmSync(join(ws.dir, name));
      }
      const now = readFileSync(join(ws.dir, "target.txt"), "utf8");
      assert.ok(now === "old\n" || now === big, `target.txt is old or complete, never partial (length ${now.length})`);
    }
  });
});
