// `luminaguard tool NAME --args JSON`: one tool call in a fresh sandbox, its JSON result on stdout.
import type { Command } from "commander";
import { LuminaGuardError } from "../errors.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import { Sandbox } from "../runtime/sandbox.js";
import { isToolName, TOOL_NAMES } from "../tools/registry.js";
import { fileToolsOption } from "./options.js";
import { parseIntOption } from "./output.js";
import { addClusterConnectOptions, clusterForClient, type ClusterConnectFlags } from "./cluster.js";
import { backendOption, interruptible, noDaemonOption, sandboxOptions, type SandboxFlags } from "./sandbox.js";

export function registerToolCommand(program: Command): void {
  const cmd = program
    .command("tool")
    .description(`run one tool call in a fresh sandbox and print its JSON result (${TOOL_NAMES.join(", ")})`)
    .argument("<name>", "tool name")
    .requiredOption("--args <json>", "tool arguments as a JSON object")
    .addOption(backendOption())
    .option("--workspace <dir>", "host directory seen as /workspace (default: a temporary one)")
    .option("--memory <MiB>", "memory limit of the sandbox", parseIntOption("--memory", 32, 65_536))
    .option("--disk <MiB>", "disk limit of the sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
    .addOption(fileToolsOption())
    .addOption(noDaemonOption());
  addClusterConnectOptions(cmd, "claim the sandbox in this cluster")
    .action(async (name: string, flags: SandboxFlags & ClusterConnectFlags & { args: string }) => {
      if (!isToolName(name)) throw new LuminaGuardError("INVALID_ARGUMENT", `unknown tool ${JSON.stringify(name)}; tools: ${TOOL_NAMES.join(", ")}`);
      let args: unknown;
      try {
        args = JSON.parse(flags.args);
      } catch (err) {
        throw new LuminaGuardError("INVALID_ARGUMENT", `--args is not valid JSON: ${(err as Error).message}`);
      }
      const { signal, cleanup } = interruptible();
      const clusterConnect = await clusterForClient(flags);
      const sandbox = await Sandbox.create(sandboxOptions({ ...flags, ...(clusterConnect ? { clusterConnect } : {}) }, signal));
      cleanup(() => sandbox.kill());
      try {
        const result = await sandbox.callTool(name, args, { signal });
        const via =
          sandbox.info["via"] === "daemon"
            ? { via: "daemon", sandbox: sandbox.id }
            : sandbox.info["via"] === "cluster"
              ? { via: "cluster", node: sandbox.info["node"], sandbox: sandbox.id }
              : {};
        process.stdout.write(`${JSON.stringify({ ...result, ...via }, null, 2)}\n`);
      } finally {
        await sandbox.kill();
      }
    });
}
