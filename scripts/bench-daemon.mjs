#!/usr/bin/env node
// spawn_first_call_ms through a daemon vs in-process (and `luminaguard exec -- true` both ways), one run, interleaved.
// Usage (after npm run build): node scripts/bench-daemon.mjs [--backend namespace|microvm] [--runs N] [--cli-runs N] [--json]
import process from "node:process";
import { parseArgs } from "node:util";
import { benchDaemon } from "../dist/src/daemon/bench.js";

const { values } = parseArgs({
  options: { backend: { type: "string", default: "namespace" }, runs: { type: "string", default: "50" }, "cli-runs": { type: "string", default: "20" }, json: { type: "boolean", default: false } },
});
const r = await benchDaemon({
  backend: values.backend,
  runs: Number(values.runs),
  cliRuns: Number(values["cli-runs"]),
  log: (l) => process.stderr.write(`${l}\n`),
});
if (values.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
else {
  const row = (name, s) => `${name.padEnd(34)} n=${String(s.n).padStart(3)}  median ${String(s.median).padStart(8)} ms  p95 ${String(s.p95).padStart(8)} ms  mean ${String(s.mean).padStart(8)} ms`;
  const f = r.spawn_first_call_ms;
  process.stdout.write(
    [
      `spawn_first_call_ms (${r.backend}): request -> first execute_command result`,
      row("  through the daemon (pool hot)", f.daemon_pool_hot),
      row("  in-process, no pool (today's CLI)", f.in_process_no_pool),
      row("  in-process, pool hot (reference)", f.in_process_pool_hot),
      `  ratio in-process/daemon: median ${r.ratio_median_in_process_over_daemon}x, p95 ${r.ratio_p95_in_process_over_daemon}x`,
      `luminaguard exec -- true, wall time of the whole process`,
      row("  through the daemon", r.cli_exec_true_ms.daemon),
      row("  --no-daemon", r.cli_exec_true_ms.in_process),
      `  ratio: median ${r.cli_ratio_median}x`,
      "",
    ].join("\n"),
  );
}
