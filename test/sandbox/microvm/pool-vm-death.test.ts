// A restored VM that dies while it waits in the warm pool (its QEMU killed before any hand-out): the
// pool drops it, restores a replacement, hands out only a live VM, and nothing of the dead one is left.
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runDir } from "../../../src/paths.js";
import { getBackend } from "../../../src/runtime/backends.js";
import { SandboxPool } from "../../../src/runtime/pool.js";
import type { SandboxBackend, SandboxHandle } from "../../../src/sandbox/types.js";
import { pidAlive } from "../../../src/util/procfs.js";
import { killAll, unavailable, waitFor } from "../../fixtures.js";

describe("microvm warm pool", async () => {
  const skip = await unavailable("microvm");

  test("a pooled VM whose QEMU is killed before hand-out is replaced, never handed out, and leaves nothing", { skip }, async (t) => {
    const inner = getBackend("microvm");
    const spawned: SandboxHandle[] = [];
    // The real backend; the pool's sandboxes are recorded so that the test can kill one of them.
    const backend: SandboxBackend = {
      name: inner.name,
      probe: () => inner.probe(),
      spawn: async (spec, signal) => {
        const h = await inner.spawn(spec, signal);
        spawned.push(h);
        return h;
      },
    };
    const pool = new SandboxPool({ backend, minSize: 1, maxSize: 1, refillConcurrency: 1 });
    t.after(() => pool.drain());
    await pool.warm(1);
    const victim = spawned[0];
    assert.ok(victim, "the pool restored a VM");
    const pids = victim.pids();
    assert.ok(pids.length > 0);
    killAll(pids);
    await victim.exited;
    assert.ok(await waitFor(() => pool.stats.spawned >= 2 && pool.stats.ready === 1, 60_000), `replaced: ${JSON.stringify(pool.stats)}`);
    const sb = await pool.acquire();
    t.after(() => sb.kill());
    assert.notEqual(sb.id, victim.id, "the dead VM is never handed out");
    assert.equal((await sb.commands.run(["echo", "live"])).stdout, "live\n");
    // The dead VM's processes and run directory are gone.
    assert.ok(await waitFor(() => pids.every((p) => !pidAlive(p)), 10_000));
    assert.ok(await waitFor(() => !existsSync(join(runDir(), `vm-${victim.id}`)), 10_000), "the dead VM's run directory is removed");
    assert.ok(!readdirSync(runDir()).some((n) => n.includes(victim.id)), "nothing named after the dead VM is left in the run directory");
  });
});
