// The thin `luminaguard exec`: when a service (`luminaguard serve`) answers on its socket, a plain command
// line (`exec [--backend B] [--workspace DIR] [--timeout S] [--memory M] [--disk D] [--file-tools F] -- CMD...`)
// is sent to it without loading commander or the command's other modules: what a user waits for is then
// node's start, one module and the service's answer. Everything else takes the full command (src/cli/exec.ts):
// any other word or flag (--help, --no-daemon, --cluster...), a value the full command would refuse (it
// reports the error), $LUMINAGUARD_CLUSTER, the daemon turned off, and no service answering (as
// sandboxFromDaemon judges it). Once the service has answered, this path is the full command's: the same
// request (sandboxFromDaemon), the same run and output (runExecCommand), the same errors (thrown to runCli).
import { sandboxFromDaemon } from "../daemon/client.js";
import { daemonDisabledByEnv } from "../daemon/socket-path.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk-limits.js";
import type { SandboxOptions } from "../runtime/sandbox.js";
import { BACKEND_CHOICES, FILE_TOOLS_MODES, type BackendChoice, type FileToolsMode } from "../sandbox/types.js";
import { runExecCommand } from "./exec-run.js";
import { interruptible } from "./interrupt.js";

export interface ThinExec {
  backend: BackendChoice;
  workspace?: string;
  timeout: number;
  memory?: number;
  disk?: number;
  fileTools?: FileToolsMode;
  cmd: string[];
}

/** The full command's default --timeout (src/cli/exec.ts). */
const DEFAULT_TIMEOUT_S = 60;

/** An integer option as parseIntOption accepts it, or undefined (then the full command reports the error). */
function int(value: string, min: number, max: number): number | undefined {
  const n = Number(value);
  return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

/**
 * The command line, when it is one the thin client takes as the full command would: `exec` first, each of
 * the known options at most once with a valid value, then `--` and at least one word. Undefined otherwise.
 */
export function parseThinExec(argv: readonly string[]): ThinExec | undefined {
  const words = argv.slice(2);
  if (words[0] !== "exec") return undefined;
  const seen = new Map<string, string>();
  let i = 1;
  for (; i < words.length; i++) {
    const w = words[i] as string;
    if (w === "--") break;
    const eq = w.indexOf("=");
    const name = eq > 0 ? w.slice(0, eq) : w;
    if (!["--backend", "--workspace", "--timeout", "--memory", "--disk", "--file-tools"].includes(name) || seen.has(name)) return undefined;
    let value: string | undefined;
    if (eq > 0) value = w.slice(eq + 1);
    else value = words[++i];
    // A value that looks like a flag, or none: commander's call to make.
    if (value === undefined || value.startsWith("-")) return undefined;
    seen.set(name, value);
  }
  const cmd = words.slice(i + 1);
  if (words[i] !== "--" || cmd.length === 0) return undefined;
  const out: ThinExec = { backend: "auto", timeout: DEFAULT_TIMEOUT_S, cmd };
  for (const [name, value] of seen) {
    if (name === "--backend") {
      const b = BACKEND_CHOICES.find((c) => c === value);
      if (b === undefined) return undefined;
      out.backend = b;
    } else if (name === "--file-tools") {
      const f = FILE_TOOLS_MODES.find((c) => c === value);
      if (f === undefined) return undefined;
      out.fileTools = f;
    } else if (name === "--workspace") out.workspace = value;
    else {
      const n = name === "--timeout" ? int(value, 1, 86_400) : name === "--memory" ? int(value, 32, 65_536) : int(value, MIN_DISK_MIB, MAX_DISK_MIB);
      if (n === undefined) return undefined;
      if (name === "--timeout") out.timeout = n;
      else if (name === "--memory") out.memory = n;
      else out.disk = n;
    }
  }
  return out;
}

/**
 * Runs the command through the service when this command line and environment allow the thin path and a
 * service answers: true when it did (process.exitCode is set; a failure is thrown, as from the full
 * command), false when the full command must run instead (nothing has been done or printed).
 */
export async function thinExec(argv: readonly string[]): Promise<boolean> {
  const parsed = parseThinExec(argv);
  if (parsed === undefined || process.env["LUMINAGUARD_CLUSTER"] || daemonDisabledByEnv()) return false;
  const { signal, cleanup, dispose } = interruptible();
  const options: SandboxOptions = {
    backend: parsed.backend,
    ...(parsed.workspace !== undefined ? { workspace: parsed.workspace } : {}),
    ...(parsed.memory !== undefined ? { memoryMiB: parsed.memory } : {}),
    ...(parsed.disk !== undefined ? { diskMiB: parsed.disk } : {}),
    ...(parsed.fileTools !== undefined ? { fileTools: parsed.fileTools } : {}),
    signal,
  };
  const sandbox = await sandboxFromDaemon(options);
  if (sandbox === undefined) {
    // No service: the full command runs in-process, with its own signal handlers.
    dispose();
    return false;
  }
  cleanup(() => sandbox.kill());
  await runExecCommand(sandbox, parsed.cmd, parsed.timeout, signal);
  return true;
}
