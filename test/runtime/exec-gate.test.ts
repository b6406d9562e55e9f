// The exec gate: a fair FIFO semaphore that bounds how many VMs execute at once; it never deadlocks.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ExecGate, defaultExecSlots } from "../../src/runtime/exec-gate.js";
import { rejectsWith } from "../fixtures.js";

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("exec gate", () => {
  test("grants slots in arrival order and never more than its bound", async () => {
    const gate = new ExecGate(2);
    const order: number[] = [];
    let inside = 0;
    let most = 0;
    const release: Array<() => void> = [];
    const all = Array.from({ length: 10 }, (_, i) =>
      gate.run(async () => {
        order.push(i);
        inside++;
        most = Math.max(most, inside);
        await new Promise<void>((r) => release.push(r));
        inside--;
      }),
    );
    await tick();
    assert.deepEqual(order, [0, 1]);
    assert.equal(gate.active, 2);
    assert.equal(gate.waiting, 8);
    // Release the later holder first: the slot still goes to the oldest waiter (2), and a newcomer
    // that asked while 8 waited is served after all of them.
    const late = gate.acquire().then((slot) => (order.push(-1), slot));
    const freed = new Set<number>();
    const free = async (k: number): Promise<void> => {
      freed.add(k);
      release[k]?.();
      await tick();
      await tick();
    };
    await free(1);
    assert.deepEqual(order, [0, 1, 2]);
    while (freed.size < 10) {
      const k = release.findIndex((_, i) => !freed.has(i));
      assert.ok(k >= 0, `nothing to release at ${order.join(",")}`);
      await free(k);
    }
    await Promise.all(all);
    (await late).release();
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1]);
    assert.equal(most, 2);
    assert.equal(gate.active, 0);
    assert.equal(gate.waiting, 0);
  });

  test("a free slot is not taken past a waiter (no barging)", async () => {
    const gate = new ExecGate(1);
    const first = await gate.acquire();
    const served: string[] = [];
    const a = gate.acquire().then((s) => (served.push("a"), s));
    first.release();
    // `a` was granted the slot at release; a newcomer in the same tick queues behind it.
    const b = gate.acquire().then((s) => (served.push("b"), s));
    (await a).release();
    (await b).release();
    assert.deepEqual(served, ["a", "b"]);
    assert.equal(gate.active, 0);
  });

  test("a waiter that is cancelled leaves the queue, takes no slot, and blocks nobody", async () => {
    const gate = new ExecGate(1);
    const held = await gate.acquire();
    const ac = new AbortController();
    const cancelled = gate.acquire(ac.signal);
    const next = gate.acquire();
    ac.abort();
    await rejectsWith(cancelled, "CANCELLED");
    assert.equal(gate.waiting, 1);
    held.release();
    const slot = await next;
    assert.equal(gate.active, 1);
    // Releasing twice gives back one slot, not two.
    slot.release();
    slot.release();
    assert.equal(gate.active, 0);
    await rejectsWith(gate.acquire(AbortSignal.abort()), "CANCELLED");
    assert.equal(gate.active, 0);
  });

  test("a failing holder releases its slot: no deadlock after errors", async () => {
    const gate = new ExecGate(1);
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        gate.run(async () => {
          await tick();
          if (i % 3 === 0) throw new Error(`boom ${i}`);
          return i;
        }),
      ),
    );
    assert.equal(results.filter((r) => r.status === "rejected").length, 17);
    assert.equal(gate.active, 0);
    assert.equal(gate.waiting, 0);
  });

  test("sized from the environment: 4 × cores by default, 0 or off for no bound, garbage refused", () => {
    assert.ok(defaultExecSlots({}) >= 2);
    assert.equal(defaultExecSlots({ LUMINAGUARD_VM_EXEC_SLOTS: "3" }), 3);
    assert.equal(defaultExecSlots({ LUMINAGUARD_VM_EXEC_SLOTS: "0" }), Infinity);
    assert.equal(defaultExecSlots({ LUMINAGUARD_VM_EXEC_SLOTS: "off" }), Infinity);
    assert.throws(() => defaultExecSlots({ LUMINAGUARD_VM_EXEC_SLOTS: "-1" }), { code: "INVALID_ARGUMENT" });
    assert.throws(() => defaultExecSlots({ LUMINAGUARD_VM_EXEC_SLOTS: "2.5" }), { code: "INVALID_ARGUMENT" });
    assert.throws(() => new ExecGate(0), { code: "INVALID_ARGUMENT" });
    const open = new ExecGate(Infinity);
    assert.equal(open.slots, Infinity);
  });
});
