// Warm pools on real backends: O(1) hand-out of never-used sandboxes, growth and shrink, named errors, clean drain.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { getBackend } from "../../src/runtime/backends.js";
import { SandboxPool } from "../../src/runtime/pool.js";
import type { BackendProbe, SandboxBackend, SandboxHandle, SandboxSpec } from "../../src/sandbox/types.js";
import { pidAlive } from "../../src/util/procfs.js";
import { unavailable, waitFor } from "../fixtures.js";

describe("warm pool", async () => {
  const skipNs = await unavailable("namespace");
  const skipVm = await unavailable("microvm");

  test("hands out ready, never-used sandboxes and destroys each after one use", { skip: skipNs }, async (t) => {
    const pool = new SandboxPool({ backend: getBackend("namespace"), minSize: 2, maxSize: 4 });
    t.after(() => pool.drain());
    await pool.warm(2);
    assert.equal(pool.stats.ready, 2);
    const a = await pool.acquire();
    const b = await pool.acquire();
    assert.notEqual(a.id, b.id);
    assert.notEqual(a.workspace, b.workspace, "each pooled sandbox has its own fresh workspace");
    const listing = await a.files.list();
    assert.deepEqual(listing.entries, [], "a handed-out sandbox has never been used");
    await a.files.write("mine.txt", "a's data");
    const pids = a.pids();
    await a.kill();
    assert.ok(await waitFor(() => pids.every((p) => !pidAlive(p)), 5000));
    assert.equal(existsSync(a.workspace), false, "the owned workspace goes with the sandbox");
    await pool.warm(2);
    const c = await pool.acquire();
    assert.deepEqual((await c.files.list()).entries, [], "no sandbox or workspace is ever reused");
    await Promise.all([b.kill(), c.kill()]);
    assert.ok(pool.stats.handedOut >= 3);
  });

  test("an empty pool makes a request wait for the next ready sandbox, and demand grows the target", { skip: skipNs }, async (t) => {
    // idleMs long enough for the three refills below (each mounts a size-limited workspace when root)
    // to finish before the pool shrinks; warm() would otherwise wait for a target that is gone.
    const pool = new SandboxPool({ backend: getBackend("namespace"), minSize: 1, maxSize: 3, idleMs: 1500 });
    t.after(() => pool.drain());
    await pool.warm(1);
    const got = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
    assert.equal(new Set(got.map((s) => s.id)).size, 3, "every waiter gets its own sandbox");
    assert.ok(pool.stats.target > 1, `demand grew the target (now ${pool.stats.target})`);
    await Promise.all(got.map((s) => s.kill()));
    await pool.warm(pool.stats.target);
    assert.ok(await waitFor(() => pool.stats.target === 1 && pool.stats.ready <= 1, 5000), "an idle pool shrinks back to its minimum");
  });

  test("a pool that cannot spawn reports a named error instead of hanging", async (t) => {
    const broken: SandboxBackend = {
      name: "namespace",
      probe: async (): Promise<BackendProbe> => ({ backend: "namespace", available: true, details: {} }),
      spawn: async (_spec: SandboxSpec): Promise<SandboxHandle> => {
        throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", "qemu-system-x86_64: not found (test backend)");
      },
    };
    const pool = new SandboxPool({ backend: broken, minSize: 1 });
    t.after(() => pool.drain());
    const started = Date.now();
    await assert.rejects(pool.acquire(), (err: unknown) => err instanceof LuminaGuardError && err.code === "SANDBOX_SPAWN_FAILED" && /not found/.test(err.message));
    assert.ok(Date.now() - started < 5000);
  });

  test("drain destroys ready sandboxes and those still spawning", { skip: skipVm }, async () => {
    const pool = new SandboxPool({ backend: getBackend("microvm"), minSize: 2 });
    await pool.warm(1);
    const sb = await pool.acquire();
    const r = await sb.commands.run(["echo", "pooled vm"]);
    assert.equal(r.stdout, "pooled vm\n");
    assert.equal(sb.info["start"], "restore");
    await sb.kill();
    await pool.drain();
    assert.equal(pool.stats.ready, 0);
    assert.equal(pool.stats.spawning, 0);
    await assert.rejects(pool.acquire(), (err: unknown) => err instanceof LuminaGuardError && err.code === "SANDBOX_CLOSED");
  });
});
