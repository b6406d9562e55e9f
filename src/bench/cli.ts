// `bench cli`: what a user feels when typing a command: whole processes from spawn to exit, the
// LuminaGuard CLI against `node -e 0` and, where installed, Anthropic's `srt` (sandbox-runtime), in
// the same run, alternating so that a noisy neighbour hurts every command alike.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { probeBackend } from "../runtime/backends.js";
import { packageRoot } from "../util/pkg.js";
import { timeProcess } from "./measure.js";
import type { Recorder, ScenarioOptions } from "./scenarios.js";

/** The `luminaguard` command of this very build, as installed: package.json's `bin` (the bundle in dist/cli/). */
export function cliEntry(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { bin: Record<string, string> };
  return join(packageRoot(), pkg.bin["luminaguard"] as string);
}

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

/** One timed command: its argv, its environment, and what to wait for before each run (outside the timing). */
interface Timed {
  argv: string[];
  env: Record<string, string>;
  before?: () => Promise<void>;
}

export async function cliScenario(rec: Recorder, o: ScenarioOptions): Promise<void> {
  const runs = Math.max(3, Math.min(o.runs, 15));
  const node = process.execPath;
  const CLI = cliEntry();
  // Without the service: the in-process path a one-shot command takes.
  const env = { LUMINAGUARD_DAEMON: "0" };
  const commands: Record<string, Timed> = {
    node_e0: { argv: [node, "-e", "0"], env },
    version: { argv: [node, CLI, "--version"], env },
  };
  const namespace = (await probeBackend("namespace")).available;
  if (namespace) commands["exec_namespace"] = { argv: [node, CLI, "exec", "--backend", "namespace", "--", "true"], env };
  if ((await probeBackend("microvm")).available) commands["exec_microvm"] = { argv: [node, CLI, "exec", "--backend", "microvm", "--", "true"], env };
  const srt = srtCommand();
  if (srt) commands["srt_true"] = { argv: srt, env };
  else rec.notes.push("srt (Anthropic sandbox-runtime) is not installed here: no peer figure");
  // With the service running: a private `luminaguard serve` (own socket, runtime and home directories)
  // with a warm namespace pool, which `exec` finds through $LUMINAGUARD_SOCKET; its pool is refilled
  // (waited for outside the timing) before each run, as a service between a user's commands would be.
  const daemon = namespace ? await (await import("../daemon/bench.js")).startBenchDaemon("namespace", "2:4") : undefined;
  try {
    if (daemon) {
      const denv = { LUMINAGUARD_DAEMON: "", LUMINAGUARD_SOCKET: daemon.socket, LUMINAGUARD_RUN: daemon.run, LUMINAGUARD_HOME: daemon.env["LUMINAGUARD_HOME"] ?? "" };
      const argv = [node, CLI, "exec", "--backend", "namespace", "--", "true"];
      // The figure is the daemon's only if the command really went through it (it says so on stderr).
      await daemon.poolReady(1);
      const probe = spawnSync(argv[0] as string, argv.slice(1), { env: { ...process.env, ...denv }, encoding: "utf8", timeout: 60_000 });
      if (probe.status === 0 && probe.stderr.includes("via the daemon")) commands["exec_namespace_daemon"] = { argv, env: denv, before: () => daemon.poolReady(1) };
      else rec.notes.push(`exec through the running daemon did not use it (exit ${String(probe.status)}): no daemon figure`);
    }
    // One warm-up of each (page cache, image and snapshot on disk), then alternate.
    for (const t of Object.values(commands)) {
      await t.before?.();
      await timeProcess(t.argv, t.env);
    }
    for (let i = 0; i < runs; i++) {
      for (const [name, t] of Object.entries(commands)) {
        o.progress(`cli: ${name}`, i, runs);
        await t.before?.();
        rec.add(`cli_ms.${name}`, "ms", await timeProcess(t.argv, t.env));
      }
    }
  } finally {
    await daemon?.stop();
  }
  // Same-run ratios of medians, judged by the criteria.
  const m = (name: string): number => median(rec.samples[`cli_ms.${name}`] ?? []);
  rec.add("cli_ratio.version_over_node", "×", m("version") / m("node_e0"));
  if (srt && commands["exec_namespace"]) rec.add("cli_ratio.exec_namespace_over_srt", "×", m("exec_namespace") / m("srt_true"));
  if (srt && commands["exec_namespace_daemon"]) rec.add("cli_ratio.exec_namespace_daemon_over_srt", "×", m("exec_namespace_daemon") / m("srt_true"));
  if (srt && commands["exec_microvm"]) rec.add("cli_ratio.exec_microvm_over_srt", "×", m("exec_microvm") / m("srt_true"));
}
