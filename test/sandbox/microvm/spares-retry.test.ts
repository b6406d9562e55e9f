// Spare VMMs that keep failing to start: three tries in a row, then a pause, then one more try per pause.
import assert from "node:assert/strict";
import { test } from "node:test";
import { LuminaGuardError } from "../../../src/errors.js";
import { VmmSpares, type SpareVmm } from "../../../src/sandbox/microvm/spares.js";
import { waitFor } from "../../fixtures.js";

test("a launch that keeps failing is tried three times, then not until the pause is over", async () => {
  const spares = new VmmSpares(1, 300);
  let calls = 0;
  const launch = async (): Promise<SpareVmm> => {
    calls++;
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", "QEMU could not start");
  };
  spares.refill("k", launch);
  assert.ok(await waitFor(() => calls === 3, 2_000), `three tries in a row (${calls})`);
  await new Promise((r) => setTimeout(r, 50));
  spares.refill("k", launch);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, 3, "no try during the pause, whoever asks");
  await new Promise((r) => setTimeout(r, 300));
  spares.refill("k", launch);
  assert.ok(await waitFor(() => calls === 4, 2_000), "one try once the pause is over");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, 4, "and a failure then pauses again at once");
  assert.deepEqual(spares.pids(), []);
  await spares.resize(0);
});
