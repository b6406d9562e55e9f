// What exec and tool share: the sandbox flags, and Ctrl-C that tears the sandbox down before exiting.
import { Option } from "commander";
import { BACKEND_CHOICES, type BackendChoice } from "../sandbox/types.js";
import type { SandboxOptions } from "../runtime/sandbox.js";
import type { FileToolsMode } from "../sandbox/types.js";
import type { ClusterConnect } from "../cluster/connect.js";

export const backendOption = (): Option =>
  new Option("--backend <name>", "sandbox backend (auto = strongest isolation that works here)").choices([...BACKEND_CHOICES]).default("auto");

export interface SandboxFlags {
  backend: BackendChoice;
  workspace?: string;
  memory?: number;
  disk?: number;
  fileTools?: FileToolsMode;
  /** false with --no-daemon: never use a running daemon. */
  daemon?: boolean;
  /** --cluster: the sandbox is claimed in this cluster (see src/cli/cluster.ts for the credential flags). */
  clusterConnect?: ClusterConnect;
}

/** exec and tool: run in-process even when a daemon answers. */
export const noDaemonOption = (): Option => new Option("--no-daemon", "run in-process even when a daemon (luminaguard serve) is running");

export function sandboxOptions(flags: SandboxFlags, signal: AbortSignal): SandboxOptions {
  return {
    backend: flags.backend,
    ...(flags.workspace !== undefined ? { workspace: flags.workspace } : {}),
    ...(flags.memory !== undefined ? { memoryMiB: flags.memory } : {}),
    ...(flags.disk !== undefined ? { diskMiB: flags.disk } : {}),
    ...(flags.fileTools !== undefined ? { fileTools: flags.fileTools } : {}),
    ...(flags.daemon === false ? { daemon: false } : {}),
    ...(flags.clusterConnect !== undefined ? { cluster: flags.clusterConnect } : {}),
    signal,
  };
}

export { interruptible } from "./exec-run.js";
