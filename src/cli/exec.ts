// `luminaguard exec -- CMD...`: one command in a fresh sandbox, its output streamed, its exit code ours.
import type { Command } from "commander";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import { RemoteSandbox, sandboxFromDaemon } from "../daemon/client.js";
import { fileToolsOption } from "./options.js";
import { parseIntOption } from "./output.js";
import { addClusterConnectOptions, clusterForClient, type ClusterConnectFlags } from "./cluster.js";
import { backendOption, interruptible, noDaemonOption, sandboxOptions, type SandboxFlags } from "./sandbox.js";

export function registerExecCommand(program: Command): void {
  const cmd = program
    .command("exec")
    .description("run one command in a fresh sandbox, stream its output, exit with its exit code")
    .addOption(backendOption())
    .option("--workspace <dir>", "host directory seen as /workspace (default: a temporary one)")
    .option("--timeout <seconds>", "kill the command's process tree after this long", parseIntOption("--timeout", 1, 86_400), 60)
    .option("--memory <MiB>", "memory limit of the sandbox", parseIntOption("--memory", 32, 65_536))
    .option("--disk <MiB>", "disk limit of the sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
    .addOption(fileToolsOption())
    .addOption(noDaemonOption());
  addClusterConnectOptions(cmd, "claim the sandbox in this cluster")
    .argument("<cmd...>", "command and arguments (put -- before them)")
    .action(async (cmd: string[], flags: SandboxFlags & ClusterConnectFlags & { timeout: number }) => {
      const { signal, cleanup } = interruptible();
      // A running daemon first: its answer needs none of the in-process runtime, which is loaded only without one.
      const clusterConnect = await clusterForClient(flags);
      const options = sandboxOptions({ ...flags, ...(clusterConnect ? { clusterConnect } : {}) }, signal);
      const sandbox = clusterConnect
        ? await (await import("../runtime/sandbox.js")).Sandbox.create(options)
        : (await sandboxFromDaemon(options)) ?? (await (await import("../runtime/sandbox.js")).Sandbox.create({ ...options, daemon: false }));
      cleanup(() => sandbox.kill());
      if (sandbox.info["via"] === "cluster") process.stderr.write(`luminaguard: via the cluster, node ${String(sandbox.info["node"])} (sandbox ${sandbox.id}, ${sandbox.backend})\n`);
      if (sandbox.info["via"] === "daemon") process.stderr.write(`luminaguard: via the daemon at ${String(sandbox.info["daemon"])} (sandbox ${sandbox.id}, ${sandbox.backend})\n`);
      try {
        const r = await sandbox.commands.run(cmd, {
          timeoutMs: flags.timeout * 1000,
          signal,
          onStdout: (c) => process.stdout.write(c),
          onStderr: (c) => process.stderr.write(c),
        });
        if (r.killedAtOutputCap) process.stderr.write("luminaguard: output truncated at the output cap; the command was killed there\n");
        else if (r.stdoutTruncated || r.stderrTruncated) process.stderr.write("luminaguard: output truncated at the output cap\n");
        process.exitCode = r.exitCode ?? 128 + signalNumber(r.signal);
      } finally {
        // In-process, the teardown completes before we exit. Through the daemon it is the daemon's:
        // the request is sent and the daemon finishes it without us waiting (RemoteSandbox.release).
        if (sandbox instanceof RemoteSandbox) await sandbox.release();
        else await sandbox.kill();
      }
    });
}

function signalNumber(name: string | null): number {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };
  return name ? (table[name] ?? 0) : 0;
}
