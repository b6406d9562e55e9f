// `luminaguard exec -- CMD...`: one command in a fresh sandbox, its output streamed, its exit code ours.
import type { Command } from "commander";
import { RemoteSandbox, sandboxFromDaemon } from "../daemon/client.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../sandbox/types.js";
import { EXEC_TIMEOUT_S, runExecCommand } from "./exec-run.js";
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
    .option("--timeout <seconds>", "kill the command's process tree after this long", parseIntOption("--timeout", EXEC_TIMEOUT_S.min, EXEC_TIMEOUT_S.max), EXEC_TIMEOUT_S.default)
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
      await runExecCommand(sandbox, cmd, flags.timeout, signal, () => (sandbox instanceof RemoteSandbox ? sandbox.release() : sandbox.kill()));
    });
}
