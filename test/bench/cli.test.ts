// `bench cli` end to end: whole processes of the bin (the bundle), and `exec` through a private running
// daemon that is stopped afterwards, nothing of it left.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { privateMetricsDir, unavailable } from "../fixtures.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("bench cli times exec through a running daemon it starts and stops (own socket), with the srt ratio when srt is here", { skip: await unavailable("namespace"), timeout: 300_000 }, (t) => {
  const metrics = privateMetricsDir(t);
  const r = spawnSync(process.execPath, [MAIN, "bench", "cli", "--runs", "3", "--json"], {
    encoding: "utf8",
    timeout: 280_000,
    env: { ...process.env, LUMINAGUARD_METRICS_DIR: metrics, LUMINAGUARD_DAEMON: "0" },
  });
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  const run = JSON.parse(r.stdout) as {
    metrics: Record<string, { n: number; p50: number }>;
    criteria: Array<{ metric: string; pass: boolean | null }>;
    notes?: string[];
  };
  for (const m of ["cli_ms.node_e0", "cli_ms.version", "cli_ms.exec_namespace", "cli_ms.exec_namespace_daemon"]) {
    assert.equal(run.metrics[m]?.n, 3, `${m}: ${JSON.stringify(run.metrics[m])} ${JSON.stringify(run.notes)}`);
  }
  assert.ok(run.criteria.some((c) => c.metric === "cli_ratio.exec_namespace_daemon_over_srt"), "the daemon target is judged");
  if (run.metrics["cli_ms.srt_true"]) assert.ok((run.metrics["cli_ratio.exec_namespace_daemon_over_srt"]?.p50 ?? 0) > 0);
  // With micro-VMs here, exec --backend microvm is timed through a service with a warm micro-VM pool too,
  // and the microvm target is judged on that path (issue 12: "from a cold CLI (the service's pool...)").
  assert.ok(run.criteria.some((c) => c.metric === "cli_ratio.exec_microvm_cold_cli_over_srt"), "the microvm target is judged");
  if (run.metrics["cli_ms.exec_microvm"]) {
    assert.equal(run.metrics["cli_ms.exec_microvm_daemon"]?.n, 3, `${JSON.stringify(run.metrics["cli_ms.exec_microvm_daemon"])} ${JSON.stringify(run.notes)}`);
    if (run.metrics["cli_ms.srt_true"]) {
      assert.equal(run.metrics["cli_ratio.exec_microvm_cold_cli_over_srt"]?.p50, run.metrics["cli_ratio.exec_microvm_daemon_over_srt"]?.p50);
      assert.ok((run.metrics["cli_ratio.exec_microvm_over_srt"]?.p50 ?? 0) > 0, "the figure without the service is still reported");
    }
  }
  // Each daemon said where it served and as which process: all of them are gone now.
  const daemons = [...r.stderr.matchAll(/daemon (\d+) serving on unix:(\S+)/g)];
  assert.equal(daemons.length, run.metrics["cli_ms.exec_microvm"] ? 2 : 1, r.stderr.slice(-2000));
  for (const m of daemons) {
    assert.equal(alive(Number(m[1])), false, "the bench's daemon was stopped");
    assert.equal(existsSync(dirname(m[2] as string)), false, "its socket directory was removed");
  }
});
