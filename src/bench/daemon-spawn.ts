// spawn_first_call_ms through a real daemon (`luminaguard serve`, its pool hot), beside the in-process figures of the
// spawn scenario, and the ratios between them measured in the same run.
import { daemonFirstCalls, startBenchDaemon } from "../daemon/bench.js";
import { percentile } from "../metrics/stats.js";
import type { Recorder, ScenarioOptions } from "./scenarios.js";

function median(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : percentile(Float64Array.from(xs).sort(), 0.5);
}

/**
 * Adds `spawn_first_call_daemon_ms` (request to a daemon → first `true` answered, the daemon's pool hot) and, when
 * spawnScenario ran before in this run, `spawn_first_call_in_process_over_daemon` (today's in-process CLI path, no
 * pool: spawn_first_call_drained_ms, over the daemon's) and `spawn_first_call_daemon_over_in_process_pool_hot`.
 */
export async function daemonSpawnScenario(rec: Recorder, o: ScenarioOptions): Promise<void> {
  const d = await startBenchDaemon(o.backend, "2:4");
  const saved = process.env["LUMINAGUARD_SOCKET"];
  process.env["LUMINAGUARD_SOCKET"] = d.socket;
  try {
    const samples = await daemonFirstCalls(d, o.backend, o.runs, (i) => o.progress("spawn_first_call_daemon_ms (daemon pool hot)", i, o.runs));
    for (const ms of samples) rec.add("spawn_first_call_daemon_ms", "ms", ms);
  } finally {
    if (saved === undefined) delete process.env["LUMINAGUARD_SOCKET"];
    else process.env["LUMINAGUARD_SOCKET"] = saved;
    await d.stop();
  }
  const viaDaemon = median(rec.samples["spawn_first_call_daemon_ms"] ?? []);
  const noPool = median(rec.samples["spawn_first_call_drained_ms"] ?? []);
  const poolHot = median(rec.samples["spawn_first_call_ms"] ?? []);
  if (Number.isFinite(noPool)) rec.add("spawn_first_call_in_process_over_daemon", "ratio", noPool / viaDaemon);
  if (Number.isFinite(poolHot)) rec.add("spawn_first_call_daemon_over_in_process_pool_hot", "ratio", viaDaemon / poolHot);
}
