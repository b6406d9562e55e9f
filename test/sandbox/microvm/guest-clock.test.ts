// The guest keeps time with the TSC and stops its tick when idle. Under TCG the minimal kernel cannot
// calibrate its TSC (no PIT or HPET reference), so before the image carried the host's rate
// (tsc_early_khz) it fell back to the jiffies clocksource, which can never stop the tick: an idle VM
// took 250 timer interrupts a second, ~3.7 % of a host core each, and 100 idle VMs took both cores.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { sandboxFor, unavailable } from "../../fixtures.js";

describe("the guest clock", async () => {
  const skip = await unavailable("microvm");

  test("the guest's clocksource is the TSC and an idle guest is tickless", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const r = await sandbox.commands.run(
      "cat /sys/devices/system/clocksource/clocksource0/current_clocksource; grep LOC: /proc/interrupts; sleep 2; grep LOC: /proc/interrupts",
      { timeoutMs: 30_000 },
    );
    assert.equal(r.exitCode, 0, r.stderr);
    const [source, before, after] = r.stdout.trim().split("\n");
    assert.match(source ?? "", /^tsc/, `clocksource ${source}`);
    const loc = (line: string | undefined): number => Number(/LOC:\s+(\d+)/.exec(line ?? "")?.[1]);
    const ticks = loc(after) - loc(before);
    assert.ok(Number.isFinite(ticks) && ticks >= 0, `LOC lines: ${before} / ${after}`);
    // A periodic 250 Hz tick gives ~500 in 2 s; tickless, the sleeping guest wakes a few times.
    assert.ok(ticks < 100, `${ticks} local timer interrupts in 2 s of an idle guest (a 250 Hz tick gives ~500)`);
  });
});
