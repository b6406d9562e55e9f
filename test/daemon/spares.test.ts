// The service's spare VMMs: shown in /v1/stats and /metrics, their memory in the admission budget, gone after a drain.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { unavailable, waitFor } from "../fixtures.js";
import { cmdline, descendants } from "../../src/util/procfs.js";
import { http, startTestDaemon } from "./helpers.js";


interface Stats {
  vmmSpares: { ready: number; target: number };
  pools: Record<string, { ready: number }>;
  admission: { memoryCommittedMiB: number; memoryPooledMiB: number };
}

test("a daemon with a micro-VM pool keeps a warmed spare, counts it in its budget and metrics, and drains it", { timeout: 240_000 }, async (t) => {
  const skip = await unavailable("microvm");
  if (skip) return void t.skip(skip);
  const env: NodeJS.ProcessEnv = { LUMINAGUARD_VMM_SPARES: "" };
  const d = await startTestDaemon(t, ["--namespace-pool", "0", "--microvm-pool", "1:1", "--memory-budget", "4096", "--drain-grace", "10"], { env });
  const stats = async (): Promise<Stats> => (await http(d, "GET", "/v1/stats")).json() as Stats;
  assert.equal((await stats()).vmmSpares.target, 1);
  // The pool's restore starts the spare (warmed, then paused).
  let s = await stats();
  const poll = async (): Promise<boolean> => {
    for (const end = Date.now() + 120_000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      s = await stats();
      if (s.vmmSpares.ready === 1 && (s.pools["microvm"]?.ready ?? 0) === 1) return true;
    }
    return false;
  };
  assert.ok(await poll(), `a pooled VM and a spare are ready: ${JSON.stringify(s)}`);
  // One pooled VM (256 MiB + QEMU's 64) and one spare (QEMU's 64).
  assert.equal(s.admission.memoryCommittedMiB, 256 + 64 + 64, JSON.stringify(s.admission));
  assert.equal(s.admission.memoryPooledMiB, 256 + 64 + 64);
  const metrics = (await http(d, "GET", "/metrics")).text;
  assert.match(metrics, /^luminaguard_vmm_spares\{state="ready"\} 1$/m);
  assert.match(metrics, /^luminaguard_vmm_spares\{state="target"\} 1$/m);
  const ui = (await http(d, "GET", "/ui")).text;
  assert.match(ui, /id="spares"/, "the dashboard has a place for the spares");
  // The drain destroys the spare with the pool: none of the daemon's QEMUs is left.
  const qemus = descendants(d.pid).filter((p) => /qemu-system/.test(cmdline(p) ?? ""));
  assert.ok(qemus.length >= 2, `the pooled VM and the spare are the daemon's QEMUs (${qemus.join(" ")})`);
  assert.equal(await d.stop(), 0);
  const alive = (): number[] => qemus.filter((p) => existsSync(`/proc/${p}`));
  assert.ok(await waitFor(() => alive().length === 0, 10_000), `QEMU left running: ${alive().join(" ")}`);
});
