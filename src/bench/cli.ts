// `bench cli`: what a user feels when typing a command: whole processes from spawn to exit, the
// LuminaGuard CLI against `node -e 0` and, where installed, Anthropic's `srt` (sandbox-runtime), in
// the same run, alternating so that a noisy neighbour hurts every command alike.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { probeBackend } from "../runtime/backends.js";
import { timeProcess } from "./measure.js";
import type { Recorder, ScenarioOptions } from "./scenarios.js";

/** The CLI of this very build. */
const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));

/** `srt` on PATH (npm i -g @anthropic-ai/sandbox-runtime), if it runs `true` here. */
function srtCommand(): string[] | undefined {
  const r = spawnSync("srt", ["true"], { stdio: "ignore", timeout: 30_000 });
  return r.status === 0 ? ["srt", "true"] : undefined;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export async function cliScenario(rec: Recorder, o: ScenarioOptions): Promise<void> {
  const runs = Math.max(3, Math.min(o.runs, 15));
  const node = process.execPath;
  const commands: Record<string, string[]> = {
    node_e0: [node, "-e", "0"],
    version: [node, CLI, "--version"],
  };
  // Without the service: the in-process path a one-shot command takes.
  const env = { LUMINAGUARD_DAEMON: "0" };
  if ((await probeBackend("namespace")).available) commands["exec_namespace"] = [node, CLI, "exec", "--backend", "namespace", "--", "true"];
  if ((await probeBackend("microvm")).available) commands["exec_microvm"] = [node, CLI, "exec", "--backend", "microvm", "--", "true"];
  const srt = srtCommand();
  if (srt) commands["srt_true"] = srt;
  else rec.notes.push("srt (Anthropic sandbox-runtime) is not installed here: no peer figure");
  // One warm-up of each (page cache, image and snapshot on disk), then alternate.
  for (const argv of Object.values(commands)) await timeProcess(argv, env);
  for (let i = 0; i < runs; i++) {
    for (const [name, argv] of Object.entries(commands)) {
      o.progress(`cli: ${name}`, i, runs);
      rec.add(`cli_ms.${name}`, "ms", await timeProcess(argv, env));
    }
  }
  // Same-run ratios of medians, judged by the criteria.
  const m = (name: string): number => median(rec.samples[`cli_ms.${name}`] ?? []);
  rec.add("cli_ratio.version_over_node", "×", m("version") / m("node_e0"));
  if (srt && commands["exec_namespace"]) rec.add("cli_ratio.exec_namespace_over_srt", "×", m("exec_namespace") / m("srt_true"));
  if (srt && commands["exec_microvm"]) rec.add("cli_ratio.exec_microvm_over_srt", "×", m("exec_microvm") / m("srt_true"));
}
