// Spare VMMs that keep failing to start: three tries in a row, then a pause, then one more try per pause.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

test("close (resize to 0) destroys each ready spare once, and does not take it for one that died while it waited", async (t) => {
  const spares = new VmmSpares(1);
  const dir = mkdtempSync(join(tmpdir(), "lg-spare-fake-"));
  let closes = 0;
  let releases = 0;
  let replaced = 0;
  const children: ReturnType<typeof spawn>[] = [];
  t.after(() => {
    for (const c of children) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  // A stand-in VMM: a real process to kill and wait for, a QMP client and an identity that count.
  const launch = async (): Promise<SpareVmm> => {
    replaced++;
    const child = spawn("sleep", ["30"], { stdio: "ignore", detached: true });
    children.push(child);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
    const vm = { child, dir: mkdtempSync(join(dir, "vm-")), identity: { uid: 1, gid: 1, switched: false, release: () => void releases++ }, exited } as unknown as SpareVmm["vm"];
    return { vm, qmp: { close: () => void closes++ } as unknown as SpareVmm["qmp"] };
  };
  spares.refill("k", launch);
  assert.ok(await waitFor(() => spares.pids().length === 1, 5_000), "one spare ready");
  await spares.resize(0);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(spares.pids(), []);
  assert.equal(closes, 1, "its QMP client closed once");
  assert.equal(releases, 1, "its identity released once");
  assert.equal(replaced, 1, "and no replacement started");
});
