// The periodic rescans of every watched workspace in a process share one budget (src/runtime/disk.ts):
// at 100 watched sandboxes a scan of each every 5 s took 10-15 % of a core under load, a cost per call
// that grew with the number of sandboxes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ScanBudget } from "../../src/runtime/disk.js";

test("scans that took ms push the next periodic turn ms/share later, from now or from the last turn", () => {
  let now = 1000;
  const b = new ScanBudget(0.05, () => now);
  assert.equal(b.turn(), true, "nothing spent yet");
  b.spent(4); // 4 ms at 5 %: the next turn 80 ms later
  assert.equal(b.turn(), false);
  now += 79;
  assert.equal(b.turn(), false);
  now += 1;
  assert.equal(b.turn(), true);
  // Several guards scanning at once queue their turns back to back.
  b.spent(4);
  b.spent(4);
  b.spent(4);
  now += 239;
  assert.equal(b.turn(), false, "three scans of 4 ms: 240 ms of turns");
  now += 1;
  assert.equal(b.turn(), true);
  // Time without scans is not banked: a long quiet spell gives one turn, not a burst.
  now += 60_000;
  b.spent(10);
  assert.equal(b.turn(), false);
  now += 200;
  assert.equal(b.turn(), true);
});

test("100 guards asking every 5 s get turns for about 5 % of a core of 4 ms scans", () => {
  let now = 0;
  const b = new ScanBudget(0.05, () => now);
  let scans = 0;
  // Each guard asks for a periodic scan every 50 ms of simulated time (100 guards, 5 s apart each).
  for (; now < 60_000; now += 50) {
    if (b.turn()) {
      b.spent(4);
      scans++;
    }
  }
  const share = (scans * 4) / 60_000;
  assert.ok(share <= 0.05 + 1e-9 && share >= 0.03, `scans took ${(share * 100).toFixed(1)} % of the time`);
});
