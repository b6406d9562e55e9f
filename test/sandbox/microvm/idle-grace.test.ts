// The pause grace adapts to the agent's gaps: the VmIdler's logic with a QMP that only records its commands.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { idleOptions, VmIdler } from "../../../src/sandbox/microvm/idle.js";
import type { QmpClient } from "../../../src/sandbox/microvm/qmp.js";
import { waitFor } from "../../fixtures.js";

function idler(graceMs: number, maxGraceMs: number): { idler: VmIdler; commands: string[] } {
  const commands: string[] = [];
  const qmp = { execute: async (cmd: string) => void commands.push(cmd), close: () => undefined } as unknown as QmpClient;
  const request = (async () => ({})) as unknown as ConstructorParameters<typeof VmIdler>[1];
  return { idler: new VmIdler(qmp, request, { pause: true, graceMs, maxGraceMs, gate: undefined, warmup: false, maxHoldMs: 1000 }, "t"), commands };
}

async function call(i: VmIdler): Promise<void> {
  i.hold();
  await i.enter();
  i.leave();
}

test("the grace grows to 1.5x an agent's gap, up to its maximum, and returns to the configured one after a long idle spell", async () => {
  const { idler: i, commands } = idler(20, 1000);
  assert.equal(i.graceMs, 20);
  await call(i);
  assert.ok(await waitFor(() => i.isPaused, 2000), "paused after the configured grace");
  // The agent asks again ~220 ms after its answer: that pause cost a stop and a cont for nothing.
  await sleep(200);
  await call(i);
  assert.ok(i.graceMs >= 300 && i.graceMs <= 1000, `grace ${i.graceMs}`);
  // Now an agent calling at a shorter interval keeps its VM running.
  const pauses = i.stats.pauses;
  for (let k = 0; k < 3; k++) {
    await sleep(60);
    assert.equal(i.isPaused, false);
    await call(i);
  }
  assert.equal(i.stats.pauses, pauses, "no pause between calls 60 ms apart");
  // An agent that stops: paused within the grown grace.
  assert.ok(await waitFor(() => i.isPaused, 3000), "paused once the agent stopped");
  // Back after longer than the maximum: pausing was right, the grace is the configured one again.
  await sleep(1100);
  await call(i);
  assert.equal(i.graceMs, 20);
  assert.deepEqual([...new Set(commands)].sort(), ["cont", "stop"]);
  i.close();
});

test("the grace never grows past its maximum, and with maximum = grace it does not adapt", async () => {
  const { idler: i } = idler(20, 20);
  await call(i);
  assert.ok(await waitFor(() => i.isPaused, 2000));
  await sleep(60);
  await call(i);
  assert.equal(i.graceMs, 20);
  i.close();
  const { idler: j } = idler(20, 300);
  await call(j);
  assert.ok(await waitFor(() => j.isPaused, 2000));
  await sleep(200);
  await call(j);
  assert.equal(j.graceMs, 300, "1.5 x a gap of ~220-260 ms, held to the maximum");
  j.close();
});

test("LUMINAGUARD_VM_PAUSE_GRACE_MAX_MS: 2 s by default, never below the grace", () => {
  assert.equal(idleOptions({}).maxGraceMs, 2000);
  assert.equal(idleOptions({ LUMINAGUARD_VM_PAUSE_GRACE_MAX_MS: "500" }).maxGraceMs, 500);
  assert.equal(idleOptions({ LUMINAGUARD_VM_PAUSE_GRACE_MS: "300", LUMINAGUARD_VM_PAUSE_GRACE_MAX_MS: "100" }).maxGraceMs, 300);
  assert.equal(idleOptions({ LUMINAGUARD_VM_PAUSE_GRACE_MAX_MS: "x" }).maxGraceMs, 2000);
});
