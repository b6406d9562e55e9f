#!/usr/bin/env node
// The `luminaguard` command: doctor, image build, exec, tool, demo.
import { Command, Option } from "commander";
import { LuminaGuardError } from "../errors.js";
import { buildImage, KERNEL_KINDS, type KernelKind } from "../guest/image/build.js";
import { BACKEND_CHOICES, type BackendChoice } from "../runtime/backends.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import type { FileToolsMode } from "../sandbox/types.js";
import { fileToolsOption } from "./options.js";
import { doctor, formatDoctor } from "../runtime/doctor.js";
import { Sandbox } from "../runtime/sandbox.js";
import { isToolName, TOOL_NAMES } from "../tools/schemas.js";
import { packageVersion } from "../util/pkg.js";
import { registerRunCommand } from "../agent/cli.js";
import { configuredExternalTools } from "../agent/external.js";
import { registerAuditCommand } from "../approval/cli.js";
import { registerMcpCommand } from "../mcp/cli.js";
import { registerMetricsCommand } from "../metrics/cli.js";
import { registerBenchCommand } from "./bench.js";
import { registerServeCommand } from "./serve.js";
import { runDemo } from "./demo.js";
import { parseIntOption, reportError } from "./output.js";

const program = new Command();
program.name("luminaguard").description("Run AI agents' tool calls in single-use micro-VMs and namespace sandboxes").version(packageVersion());
program.showHelpAfterError();

const backendOption = (): Option =>
  new Option("--backend <name>", "sandbox backend (auto = strongest isolation that works here)").choices([...BACKEND_CHOICES]).default("auto");

interface SandboxFlags {
  backend: BackendChoice;
  workspace?: string;
  memory?: number;
  disk?: number;
  fileTools?: FileToolsMode;
  /** false with --no-daemon: never use a running daemon. */
  daemon?: boolean;
}

function sandboxOptions(flags: SandboxFlags, signal: AbortSignal): Parameters<typeof Sandbox.create>[0] {
  return {
    backend: flags.backend,
    ...(flags.workspace !== undefined ? { workspace: flags.workspace } : {}),
    ...(flags.memory !== undefined ? { memoryMiB: flags.memory } : {}),
    ...(flags.disk !== undefined ? { diskMiB: flags.disk } : {}),
    ...(flags.fileTools !== undefined ? { fileTools: flags.fileTools } : {}),
    ...(flags.daemon === false ? { daemon: false } : {}),
    signal,
  };
}

/** Ctrl-C or SIGTERM: abort the work in progress, tear the sandbox down, then exit. */
function interruptible(): { signal: AbortSignal; cleanup: (fn: () => Promise<void>) => void } {
  const controller = new AbortController();
  let teardown: (() => Promise<void>) | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    controller.abort();
    void (teardown?.() ?? Promise.resolve()).finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return { signal: controller.signal, cleanup: (fn) => (teardown = fn) };
}

program
  .command("doctor")
  .description("show which backends work here, the accelerator, versions, and why not")
  .option("--json", "print one JSON object")
  .action(async (o: { json?: boolean }) => {
    const report = await doctor();
    process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctor(report)}\n`);
    process.exitCode = report.auto ? 0 : 1;
  });

const image = program.command("image").description("the guest image (kernel, initramfs, guest agent)");
image
  .command("build")
  .description("build the guest image from Debian packages (cached by content hash)")
  .option("--force", "rebuild even if the cache is current")
  .addOption(
    new Option("--kernel <kind>", "minimal: built from linux-source-6.1 (fast boot); debian: Debian's packaged kernel (fallback, slower boot)")
      .choices([...KERNEL_KINDS])
      .default("minimal"),
  )
  .action(async (o: { force?: boolean; kernel: KernelKind }) => {
    const started = Date.now();
    const m = await buildImage({ kernel: o.kernel, ...(o.force ? { force: true } : {}), log: (l) => process.stderr.write(`${l}\n`) });
    process.stderr.write(`guest image ${m.hash} (${m.kernelKind} kernel) ${m.built ? "built" : "already current"} in ${((Date.now() - started) / 1000).toFixed(1)} s; it is now the current image\n`);
    process.stdout.write(`${JSON.stringify({ hash: m.hash, kernelKind: m.kernelKind, kernel: m.kernel, initrd: m.initrd, agent: m.agent, built: m.built })}\n`);
  });

program
  .command("exec")
  .description("run one command in a fresh sandbox, stream its output, exit with its exit code")
  .addOption(backendOption())
  .option("--workspace <dir>", "host directory seen as /workspace (default: a temporary one)")
  .option("--timeout <seconds>", "kill the command's process tree after this long", parseIntOption("--timeout", 1, 86_400), 60)
  .option("--memory <MiB>", "memory limit of the sandbox", parseIntOption("--memory", 32, 65_536))
  .option("--disk <MiB>", "disk limit of the sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
  .addOption(fileToolsOption())
  .option("--no-daemon", "run in-process even when a daemon (luminaguard serve) is running")
  .argument("<cmd...>", "command and arguments (put -- before them)")
  .action(async (cmd: string[], flags: SandboxFlags & { timeout: number }) => {
    const { signal, cleanup } = interruptible();
    const sandbox = await Sandbox.create(sandboxOptions(flags, signal));
    cleanup(() => sandbox.kill());
    if (sandbox.info["via"] === "daemon") process.stderr.write(`luminaguard: via the daemon at ${String(sandbox.info["daemon"])} (sandbox ${sandbox.id}, ${sandbox.backend})\n`);
    try {
      const r = await sandbox.commands.run(cmd, {
        timeoutMs: flags.timeout * 1000,
        signal,
        onStdout: (c) => process.stdout.write(c),
        onStderr: (c) => process.stderr.write(c),
      });
      if (r.stdoutTruncated || r.stderrTruncated) process.stderr.write("luminaguard: output truncated at the output cap\n");
      process.exitCode = r.exitCode ?? 128 + signalNumber(r.signal);
    } finally {
      await sandbox.kill();
    }
  });

program
  .command("tool")
  .description(`run one tool call in a fresh sandbox and print its JSON result (${TOOL_NAMES.join(", ")})`)
  .argument("<name>", "tool name")
  .requiredOption("--args <json>", "tool arguments as a JSON object")
  .addOption(backendOption())
  .option("--workspace <dir>", "host directory seen as /workspace (default: a temporary one)")
  .option("--memory <MiB>", "memory limit of the sandbox", parseIntOption("--memory", 32, 65_536))
  .option("--disk <MiB>", "disk limit of the sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
  .addOption(fileToolsOption())
  .option("--no-daemon", "run in-process even when a daemon (luminaguard serve) is running")
  .action(async (name: string, flags: SandboxFlags & { args: string }) => {
    if (!isToolName(name)) throw new LuminaGuardError("INVALID_ARGUMENT", `unknown tool ${JSON.stringify(name)}; tools: ${TOOL_NAMES.join(", ")}`);
    let args: unknown;
    try {
      args = JSON.parse(flags.args);
    } catch (err) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `--args is not valid JSON: ${(err as Error).message}`);
    }
    const { signal, cleanup } = interruptible();
    const sandbox = await Sandbox.create(sandboxOptions(flags, signal));
    cleanup(() => sandbox.kill());
    try {
      const result = await sandbox.callTool(name, args, { signal });
      const via = sandbox.info["via"] === "daemon" ? { via: "daemon", sandbox: sandbox.id } : {};
      process.stdout.write(`${JSON.stringify({ ...result, ...via }, null, 2)}\n`);
    } finally {
      await sandbox.kill();
    }
  });

program
  .command("demo")
  .description("build what is missing, then show every tool and the isolation on each backend that works here")
  .addOption(backendOption())
  .option("--disk <MiB>", "disk limit of the sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
  .action(async (o: { backend: BackendChoice; disk?: number }) => {
    await runDemo(o.backend, o.disk);
  });

registerBenchCommand(program);
registerMetricsCommand(program);
registerMcpCommand(program);
registerRunCommand(program, { externalTools: configuredExternalTools });
registerAuditCommand(program);
registerServeCommand(program);

function signalNumber(name: string | null): number {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };
  return name ? (table[name] ?? 0) : 0;
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.exitCode = reportError(err);
});
