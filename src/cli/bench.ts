// `luminaguard bench <scenario>`: the benchmark, judged against its targets; results go to .beads/metrics/ and the screen.
import { Argument, Option, type Command } from "commander";
import { runBench, SCENARIOS, type ScenarioName } from "../bench/run.js";
import { runChaos } from "../bench/chaos.js";
import { runExhaustion } from "../bench/exhaustion.js";
import { formatRun, progressBar } from "../metrics/format.js";
import { runSummaryJson } from "../metrics/schema.js";
import type { BackendName } from "../sandbox/types.js";
import { parseAgents } from "../bench/scale.js";
import { LuminaGuardError } from "../errors.js";
import { parseIntOption } from "./output.js";
import { registerBenchFaultsCommand } from "./bench-faults.js";

const EXTRA_SCENARIOS = ["chaos", "exhaustion", "cluster"] as const;
type ExtraScenario = (typeof EXTRA_SCENARIOS)[number];

interface BenchCliOptions {
  backend: BackendName;
  runs: number;
  concurrency: number;
  duration: number;
  json?: boolean;
  kills: number;
  seed?: number;
  daemon?: boolean;
  upstreamFaults?: number;
}

/** The resilience scenarios (chaos, exhaustion): their own runners, stored and printed like the others. */
async function runExtra(scenario: ExtraScenario, o: BenchCliOptions): Promise<void> {
  const bar = progressBar();
  const progress = (label: string, done: number, total: number): void => bar.update(label, done, total);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const { run, path, leaks } =
    scenario === "cluster"
      ? await (await import("../bench/cluster.js")).runClusterBench({ runs: o.runs, concurrency: o.concurrency, durationS: o.duration, progress })
      : scenario === "chaos"
      ? await runChaos({
          backend: o.backend,
          agents: o.concurrency,
          kills: o.kills,
          durationS: o.duration,
          seed,
          progress,
          ...(o.daemon ? { daemon: true } : {}),
          ...(o.upstreamFaults !== undefined ? { upstreamFaults: o.upstreamFaults } : {}),
        })
      : await runExhaustion({ backend: o.backend, requests: o.concurrency, progress });
  bar.done();
  if (o.json) process.stdout.write(`${JSON.stringify(runSummaryJson(run), null, 2)}\n`);
  else process.stdout.write(`${formatRun(run)}\nstored: ${path}\n`);
  if (leaks.length > 0) process.stderr.write(`luminaguard: the benchmark left things behind:\n  ${leaks.join("\n  ")}\n`);
  if (leaks.length > 0 || run.criteria.some((c) => c.pass === false)) process.exitCode = 1;
}

function agentsOption(v: string): number[] {
  try {
    return parseAgents(v);
  } catch (err) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `--agents: ${(err as Error).message}`);
  }
}

export function registerBenchCommand(program: Command): void {
  const bench = program
    .command("bench")
    .enablePositionalOptions()
    .description("run a benchmark scenario, judge it against its targets and store the result under .beads/metrics/")
    .addArgument(new Argument("<scenario>", "which scenario").choices([...SCENARIOS, ...EXTRA_SCENARIOS]))
    .addOption(new Option("--backend <name>", "sandbox backend").choices(["microvm", "namespace"]).default("namespace"))
    .option("--runs <n>", "samples per latency metric", parseIntOption("--runs", 1, 100_000), 100)
    .option("--concurrency <c>", "concurrent agents in throughput runs", parseIntOption("--concurrency", 1, 1024), 8)
    .option("--duration <s>", "seconds of sustained throughput", parseIntOption("--duration", 1, 3600), 30)
    .option("--repeat <r>", "run the scenario R times and judge over all runs (default: enough for the Phase 3 wording: tools 20, memory 10, others 1)", parseIntOption("--repeat", 1, 1000))
    .option("--agents <list>", "scale: agent counts to sweep, comma-separated (default 1,5,10,25,50,100,150)", agentsOption)
    .addOption(new Option("--via <how>", "scale: sandboxes in this process (sdk) or from a running `luminaguard serve` (daemon)").choices(["sdk", "daemon"]).default("sdk"))
    .option("--spawn-deadline <ms>", "scale: how long one agent may wait for its sandbox", parseIntOption("--spawn-deadline", 100, 3_600_000))
    .option("--rounds <n>", "alternating throughput rounds (ours, reference) in the mcp scenario; the ratio is their median", parseIntOption("--rounds", 1, 100), 5)
    .option("--json", "print one JSON object instead of tables")
    .option("--kills <n>", "chaos: kills (SIGKILL of a sandbox or of its agent) to inject over the duration; partitions and channel cuts come on top", parseIntOption("--kills", 1, 100_000), 200)
    .option("--daemon", "chaos: sandboxes from a `luminaguard serve` started for the run, which the monkey also SIGKILLs and restarts")
    .option("--upstream-faults <n>", "chaos: SIGKILLs and 1-3 s SIGSTOPs of real upstream MCP servers called through the pooled MCP client during the run (default max(4, kills/10); 0: none)", parseIntOption("--upstream-faults", 0, 100_000))
    .option("--seed <n>", "chaos: seed of the random choices (recorded in the result)", parseIntOption("--seed", 0, 2 ** 31 - 1))
    .action(async (scenario: ScenarioName | ExtraScenario, o: BenchCliOptions & { repeat?: number; agents?: number[]; spawnDeadline?: number; via: "sdk" | "daemon"; rounds: number }) => {
      if (scenario === "chaos" || scenario === "exhaustion" || scenario === "cluster") return await runExtra(scenario, o);
      const bar = progressBar();
      const { run, path, leaks } = await runBench(scenario, {
        backend: o.backend,
        runs: o.runs,
        concurrency: o.concurrency,
        durationS: o.duration,
        ...(o.repeat !== undefined ? { repeat: o.repeat } : {}),
        ...(o.agents !== undefined ? { agents: o.agents } : {}),
        ...(o.spawnDeadline !== undefined ? { spawnDeadlineMs: o.spawnDeadline } : {}),
        via: o.via,
        rounds: o.rounds,
        progress: (label, done, total) => bar.update(label, done, total),
      });
      bar.done();
      if (o.json) process.stdout.write(`${JSON.stringify(runSummaryJson(run), null, 2)}\n`);
      else process.stdout.write(`${formatRun(run)}\nstored: ${path}\n`);
      if (leaks.length > 0) {
        process.stderr.write(`luminaguard: the benchmark left things behind:\n  ${leaks.join("\n  ")}\n`);
        process.exitCode = 1;
      }
    });
  registerBenchFaultsCommand(bench);
}
