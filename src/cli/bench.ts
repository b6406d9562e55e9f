// `luminaguard bench <scenario>`: the benchmark, judged against its targets; results go to .beads/metrics/ and the screen.
import { Argument, Option, type Command } from "commander";
import { runBench, SCENARIOS, type ScenarioName } from "../bench/run.js";
import { formatRun, progressBar } from "../metrics/format.js";
import { runSummaryJson } from "../metrics/schema.js";
import type { BackendName } from "../sandbox/types.js";
import { parseIntOption } from "./output.js";

export function registerBenchCommand(program: Command): void {
  program
    .command("bench")
    .description("run a benchmark scenario, judge it against its targets and store the result under .beads/metrics/")
    .addArgument(new Argument("<scenario>", "which scenario").choices([...SCENARIOS]))
    .addOption(new Option("--backend <name>", "sandbox backend").choices(["microvm", "namespace"]).default("namespace"))
    .option("--runs <n>", "samples per latency metric", parseIntOption("--runs", 1, 100_000), 100)
    .option("--concurrency <c>", "concurrent agents in throughput runs", parseIntOption("--concurrency", 1, 1024), 8)
    .option("--duration <s>", "seconds of sustained throughput", parseIntOption("--duration", 1, 3600), 30)
    .option("--rounds <n>", "alternating throughput rounds (ours, reference) in the mcp scenario; the ratio is their median", parseIntOption("--rounds", 1, 100), 5)
    .option("--json", "print one JSON object instead of tables")
    .action(async (scenario: ScenarioName, o: { backend: BackendName; runs: number; concurrency: number; duration: number; rounds: number; json?: boolean }) => {
      const bar = progressBar();
      const { run, path, leaks } = await runBench(scenario, {
        backend: o.backend,
        runs: o.runs,
        concurrency: o.concurrency,
        durationS: o.duration,
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
}
