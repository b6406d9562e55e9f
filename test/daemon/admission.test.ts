// The admission queue on its own: budget, FIFO per client, round-robin across clients, deadlines, cancellation, drain.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Admission, defaultMemoryBudgetMiB, MICROVM_OVERHEAD_MIB, sandboxCostMiB, type AdmissionOutcome, type Ticket } from "../../src/daemon/admission.js";
import { rejectsWith } from "../fixtures.js";

function admission(o: Partial<ConstructorParameters<typeof Admission>[0]> = {}): { a: Admission; outcomes: AdmissionOutcome[] } {
  const outcomes: AdmissionOutcome[] = [];
  const a = new Admission({ memoryBudgetMiB: 1024, maxSandboxes: 4, maxCalls: 2, defaultWaitMs: 5_000, onOutcome: (_k, o2) => outcomes.push(o2), ...o });
  return { a, outcomes };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test("a sandbox commits its limit; a micro-VM its RAM and QEMU's share; the default budget keeps a reserve", () => {
  assert.equal(sandboxCostMiB("namespace", 256), 256);
  assert.equal(sandboxCostMiB("microvm", 256), 256 + MICROVM_OVERHEAD_MIB);
  assert.equal(defaultMemoryBudgetMiB(20_000, 24_000), 20_000 - 2_400);
  assert.equal(defaultMemoryBudgetMiB(3_000, 4_000), 3_000 - 1_024);
  assert.equal(defaultMemoryBudgetMiB(500, 4_000), 256, "never below one small sandbox");
});

test("within budget admits at once; past the memory budget a request waits until room is given back", async () => {
  const { a } = admission();
  const t1 = await a.admit({ kind: "sandbox", client: "x", memoryMiB: 512 });
  const t2 = await a.admit({ kind: "sandbox", client: "x", memoryMiB: 512 });
  assert.equal(a.stats.memoryCommittedMiB, 1024);
  let got: Ticket | undefined;
  const p = a.admit({ kind: "sandbox", client: "y", memoryMiB: 256 }).then((t) => (got = t));
  await tick();
  assert.equal(got, undefined, "no room: it waits");
  assert.equal(a.stats.queued.sandbox, 1);
  t1.release();
  t1.release(); // idempotent: gives back once
  const t3 = await p;
  assert.equal(got, t3);
  assert.equal(a.stats.memoryCommittedMiB, 512 + 256);
  assert.equal(a.stats.queued.sandbox, 0);
  t2.release();
  t3.release();
  assert.equal(a.stats.memoryCommittedMiB, 0);
  assert.equal(a.stats.sandboxes, 0);
});

test("sandboxes and calls have their own limits", async () => {
  const { a } = admission();
  const s = await Promise.all([1, 2, 3, 4].map(() => a.admit({ kind: "sandbox", client: "x", memoryMiB: 1 })));
  const c = await Promise.all(["x", "y"].map((client) => a.admit({ kind: "call", client })));
  // A fifth sandbox waits; a third call waits; neither blocks the other kind.
  await rejectsWith(a.admit({ kind: "sandbox", client: "x", memoryMiB: 1, waitMs: 20 }), "CAPACITY");
  await rejectsWith(a.admit({ kind: "call", client: "x", waitMs: 20 }), "CAPACITY");
  for (const t of [...s, ...c]) t.release();
  assert.deepEqual([a.stats.sandboxes, a.stats.calls], [0, 0]);
});

test("no client holds every call slot: a quarter (at least one) stays for the others", async () => {
  const { a } = admission({ maxCalls: 4 });
  assert.equal(a.callShare, 3);
  const flood = await Promise.all([1, 2, 3].map(() => a.admit({ kind: "call", client: "flood" })));
  // The flooder's fourth call waits although a slot is free; another client gets that slot at once.
  const fourth = a.admit({ kind: "call", client: "flood", waitMs: 5_000 });
  const t0 = Date.now();
  const quiet = await a.admit({ kind: "call", client: "quiet", waitMs: 5_000 });
  assert.ok(Date.now() - t0 < 100, "the quiet client is not queued behind the flood");
  assert.equal(a.stats.calls, 4);
  (flood[0] as { release(): void }).release();
  (await fourth).release();
  for (const t of [...flood.slice(1), quiet]) t.release();
  assert.equal(a.stats.calls, 0);
});

test("the deadline is honoured: CAPACITY with a retry hint after about waitMs, never before", async () => {
  const { a, outcomes } = admission({ retryAfterMs: 1500 });
  const hold = await a.admit({ kind: "sandbox", client: "x", memoryMiB: 1024 });
  const t0 = Date.now();
  const e = await rejectsWith(a.admit({ kind: "sandbox", client: "y", memoryMiB: 1, waitMs: 200 }), "CAPACITY");
  const waited = Date.now() - t0;
  assert.ok(waited >= 195 && waited < 2_000, `waited ${waited} ms`);
  assert.equal(e.details["retryAfterMs"], 1500);
  assert.match(e.message, /within 200 ms/);
  assert.equal(a.stats.queued.sandbox, 0, "a timed-out request leaves the queue");
  assert.deepEqual(outcomes, ["admitted", "timeout"]);
  hold.release();
});

test("a full queue is CAPACITY at once; a sandbox larger than the whole budget too", async () => {
  const { a, outcomes } = admission({ maxQueue: 2 });
  const hold = await a.admit({ kind: "sandbox", client: "x", memoryMiB: 1024 });
  const w1 = a.admit({ kind: "sandbox", client: "a", memoryMiB: 1 });
  const w2 = a.admit({ kind: "sandbox", client: "b", memoryMiB: 1 });
  const t0 = Date.now();
  await rejectsWith(a.admit({ kind: "sandbox", client: "c", memoryMiB: 1 }), "CAPACITY");
  assert.ok(Date.now() - t0 < 100, "refused at once");
  await rejectsWith(a.admit({ kind: "sandbox", client: "c", memoryMiB: 4096 }), "CAPACITY");
  hold.release();
  (await w1).release();
  (await w2).release();
  assert.ok(outcomes.includes("queue_full") && outcomes.includes("too_large"));
});

test("FIFO per client and round-robin across clients: a flooding client does not starve another", async () => {
  const { a } = admission({ maxSandboxes: 1, maxQueue: 100 });
  const hold = await a.admit({ kind: "sandbox", client: "flood", memoryMiB: 1 });
  const order: string[] = [];
  const waits: Promise<void>[] = [];
  const ask = (client: string, tag: string): void => {
    waits.push(
      a.admit({ kind: "sandbox", client, memoryMiB: 1 }).then((t) => {
        order.push(tag);
        // Each admitted request holds its slot briefly, then gives it back.
        setImmediate(() => t.release());
      }),
    );
  };
  for (let i = 0; i < 10; i++) ask("flood", `f${i}`);
  ask("quiet", "q0");
  ask("quiet", "q1");
  hold.release();
  await Promise.all(waits);
  assert.deepEqual(
    order.filter((x) => x.startsWith("f")),
    Array.from({ length: 10 }, (_, i) => `f${i}`),
    "the flooder is served in its own order",
  );
  assert.deepEqual(order.filter((x) => x.startsWith("q")), ["q0", "q1"], "so is the quiet client");
  assert.ok(order.indexOf("q0") <= 1, `the quiet client's first request is served first or second, not after the flood: ${order.join(" ")}`);
  assert.ok(order.indexOf("q1") <= 3, `its second right after another flood request: ${order.join(" ")}`);
});

test("a client that goes away leaves the queue (CANCELLED), and the one behind it moves up", async () => {
  const { a } = admission({ maxSandboxes: 1 });
  const hold = await a.admit({ kind: "sandbox", client: "x", memoryMiB: 1 });
  const ac = new AbortController();
  const gone = a.admit({ kind: "sandbox", client: "y", memoryMiB: 1, signal: ac.signal });
  const next = a.admit({ kind: "sandbox", client: "y", memoryMiB: 1 });
  await tick();
  assert.equal(a.stats.queued.sandbox, 2);
  ac.abort();
  await rejectsWith(gone, "CANCELLED");
  assert.equal(a.stats.queued.sandbox, 1);
  hold.release();
  (await next).release();
  assert.equal(a.stats.sandboxes, 0);
});

test("a pool's reserve counts against memory, not sandboxes; it never takes room a waiter needs; close refuses every waiter", async () => {
  const { a } = admission({ memoryBudgetMiB: 1000 });
  const r1 = a.tryReserve(400);
  const r2 = a.tryReserve(400);
  assert.ok(r1 && r2);
  assert.equal(a.tryReserve(400), undefined, "the reserve never grows past the budget");
  assert.equal(a.stats.sandboxes, 0);
  assert.equal(a.stats.memoryPooledMiB, 800);
  const hold = await a.admit({ kind: "sandbox", client: "x", memoryMiB: 200 });
  const waiting = a.admit({ kind: "sandbox", client: "y", memoryMiB: 300 });
  r1.release();
  const t = await waiting;
  assert.equal(a.stats.memoryCommittedMiB, 900, "the room given back went to the waiter");
  assert.equal(a.tryReserve(200), undefined, "and the reserve does not grow past the budget");
  // A reserve handed out starts counting as a sandbox.
  r2.count();
  assert.equal(a.stats.sandboxes, 3);
  assert.equal(a.stats.memoryPooledMiB, 0);
  const late = a.admit({ kind: "call", client: "z", waitMs: 10_000 });
  const blocked = a.admit({ kind: "sandbox", client: "z", memoryMiB: 500 });
  a.close();
  await rejectsWith(blocked, "SHUTTING_DOWN");
  (await late).release();
  await rejectsWith(a.admit({ kind: "call", client: "z" }), "SHUTTING_DOWN");
  for (const x of [hold, t, r2]) x.release();
  assert.equal(a.stats.memoryCommittedMiB, 0);
});

test("a call never waits behind sandbox requests (they use different room), even with the queue full of them", async () => {
  const { a } = admission({ maxSandboxes: 1, maxQueue: 1 });
  const hold = await a.admit({ kind: "sandbox", client: "x", memoryMiB: 1 });
  const waiting = a.admit({ kind: "sandbox", client: "x", memoryMiB: 1 });
  const call = await a.admit({ kind: "call", client: "x", waitMs: 0 });
  assert.equal(a.stats.calls, 1);
  call.release();
  hold.release();
  (await waiting).release();
});

test("a full queue pushes back on the client that fills it: another client still gets a place in the queue", async () => {
  const { a } = admission({ maxCalls: 1, maxQueue: 4 });
  const hold = await a.admit({ kind: "call", client: "flood", waitMs: 5_000 });
  const flood = Array.from({ length: 4 }, () => a.admit({ kind: "call", client: "flood", waitMs: 5_000 }));
  const settled = flood.map((p) => p.then((t) => ({ t }), (e: unknown) => ({ e })));
  const at = (i: number): (typeof settled)[number] => settled[i] ?? assert.fail(`no waiter ${i}`);
  // The flood's fifth waiter: the queue is full of its own, refused at once.
  await rejectsWith(a.admit({ kind: "call", client: "flood", waitMs: 5_000 }), "CAPACITY");
  // Another client: the flood's newest waiter makes room for it (before the fix: CAPACITY at once).
  const quiet = a.admit({ kind: "call", client: "quiet", waitMs: 5_000 });
  const evicted = await at(3);
  assert.ok("e" in evicted && evicted.e instanceof Error && /holds the most/.test(evicted.e.message), "the flood's newest waiter was refused");
  assert.equal(a.stats.queued.call, 4, "the queue stays bounded");
  hold.release();
  // Round-robin: the quiet client is served right after the flood's first waiter.
  const first = await at(0);
  assert.ok("t" in first);
  first.t.release();
  (await quiet).release();
  for (const s of settled.slice(1, 3)) {
    const r = await s;
    if ("t" in r) r.t.release();
  }
  assert.equal(a.stats.calls, 0);
});
