// The abort kit on real signals and a real child: hooks are unhooked, waits end with the caller's own error.
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, test } from "node:test";
import { onAbort, raceAbort, sleep } from "../../src/util/abort.js";
import { run } from "../../src/util/proc.js";

class Cancelled extends Error {}
const cancelled = (): Error => new Cancelled("cancelled by the caller");
const never = new Promise<never>(() => undefined);

describe("onAbort", () => {
  test("runs once on abort, and leaves no listener behind once unhooked", () => {
    const c = new AbortController();
    let calls = 0;
    const unhook = onAbort(c.signal, () => calls++);
    assert.equal(getEventListeners(c.signal, "abort").length, 1);
    c.abort();
    c.abort();
    assert.equal(calls, 1);
    const c2 = new AbortController();
    onAbort(c2.signal, () => calls++)();
    assert.equal(getEventListeners(c2.signal, "abort").length, 0);
    c2.abort();
    assert.equal(calls, 1, "an unhooked hook does not run");
    unhook();
  });

  test("runs at once, before returning, on a signal that has already aborted", () => {
    let ran = false;
    onAbort(AbortSignal.abort(), () => (ran = true));
    assert.equal(ran, true);
    assert.doesNotThrow(() => onAbort(undefined, () => assert.fail("no signal, no call"))());
  });
});

describe("raceAbort", () => {
  test("passes the work's value and error through and unhooks", async () => {
    const c = new AbortController();
    assert.equal(await raceAbort(Promise.resolve(7), c.signal, cancelled), 7);
    await assert.rejects(raceAbort(Promise.reject(new RangeError("own")), c.signal, cancelled), RangeError);
    assert.equal(getEventListeners(c.signal, "abort").length, 0);
  });

  test("an abort ends the wait with the caller's error, before or during", async () => {
    await assert.rejects(raceAbort(never, AbortSignal.abort(), cancelled), Cancelled);
    const c = new AbortController();
    const p = raceAbort(never, c.signal, cancelled);
    setTimeout(() => c.abort(), 10);
    await assert.rejects(p, { message: "cancelled by the caller" });
  });

  test("a deadline ends the wait with its own error; a past deadline at once", async () => {
    const expired = (): Error => new Error("too late");
    const t0 = Date.now();
    await assert.rejects(raceAbort(never, undefined, cancelled, { ms: 30, expired }), { message: "too late" });
    assert.ok(Date.now() - t0 >= 25);
    await assert.rejects(raceAbort(never, new AbortController().signal, cancelled, { ms: 0, expired }), { message: "too late" });
  });
});

describe("sleep", () => {
  test("waits, or ends at the abort with the caller's error", async () => {
    const t0 = Date.now();
    await sleep(30, new AbortController().signal, cancelled);
    assert.ok(Date.now() - t0 >= 25);
    const c = new AbortController();
    const p = sleep(60_000, c.signal, cancelled);
    setTimeout(() => c.abort(), 10);
    await assert.rejects(p, Cancelled);
    await assert.rejects(sleep(60_000, AbortSignal.abort(), cancelled), Cancelled);
  });
});

describe("a real child under an abort signal", () => {
  test("run() kills the child when the signal aborts, and when it had aborted already", async () => {
    const c = new AbortController();
    const t0 = Date.now();
    setTimeout(() => c.abort(), 100);
    const r = await run(["sleep", "30"], { timeoutMs: 30_000, signal: c.signal });
    assert.equal(r.signal, "SIGKILL");
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal(getEventListeners(c.signal, "abort").length, 0);
    const again = await run(["sleep", "30"], { timeoutMs: 30_000, signal: AbortSignal.abort() });
    assert.equal(again.signal, "SIGKILL");
  });
});
