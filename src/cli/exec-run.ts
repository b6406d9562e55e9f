// What `luminaguard exec` does once it has its sandbox (and Ctrl-C handling, which tool shares), shared by the full command (src/cli/exec.ts) and the
// thin client that answers through a running daemon without commander (src/cli/exec-thin.ts): the same lines,
// the same streamed output, the same exit code, the same teardown.
import type { SandboxApi } from "../runtime/sandbox.js";

/** What exec needs of a sandbox: the in-process one, the daemon's (RemoteSandbox), or the thin client's. */
/** `exec --timeout`: its default and its bounds, in seconds (the full command and the thin one). */
export const EXEC_TIMEOUT_S = { default: 60, min: 1, max: 86_400 } as const;

export type ExecTarget = Pick<SandboxApi, "id" | "backend" | "info" | "commands">;

/**
 * Runs `cmd` in `sandbox`, streams its output, sets process.exitCode to its exit code, and tears the
 * sandbox down with `teardown`: in-process it completes before we exit; through the daemon it is the
 * daemon's, the request sent without waiting for the teardown (RemoteSandbox.release).
 */
export async function runExecCommand(sandbox: ExecTarget, cmd: string[], timeoutSeconds: number, signal: AbortSignal, teardown: () => Promise<void>): Promise<void> {
  if (sandbox.info["via"] === "cluster") process.stderr.write(`luminaguard: via the cluster, node ${String(sandbox.info["node"])} (sandbox ${sandbox.id}, ${sandbox.backend})\n`);
  if (sandbox.info["via"] === "daemon") process.stderr.write(`luminaguard: via the daemon at ${String(sandbox.info["daemon"])} (sandbox ${sandbox.id}, ${sandbox.backend})\n`);
  try {
    const r = await sandbox.commands.run(cmd, {
      timeoutMs: timeoutSeconds * 1000,
      signal,
      onStdout: (c) => process.stdout.write(c),
      onStderr: (c) => process.stderr.write(c),
    });
    if (r.killedAtOutputCap) process.stderr.write("luminaguard: output truncated at the output cap; the command was killed there\n");
    else if (r.stdoutTruncated || r.stderrTruncated) process.stderr.write("luminaguard: output truncated at the output cap\n");
    process.exitCode = r.exitCode ?? 128 + signalNumber(r.signal);
  } finally {
    await teardown();
  }
}

function signalNumber(name: string | null): number {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };
  return name ? (table[name] ?? 0) : 0;
}

export interface Interruptible {
  signal: AbortSignal;
  /** What to tear down on a signal before exiting. */
  cleanup: (fn: () => Promise<void>) => void;
  /** Removes the handlers (the thin exec client hands over to the full path, which installs its own). */
  dispose: () => void;
}

/** Ctrl-C or SIGTERM: abort the work in progress, tear the sandbox down, then exit. */
export function interruptible(): Interruptible {
  const controller = new AbortController();
  let teardown: (() => Promise<void>) | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    controller.abort();
    void (teardown?.() ?? Promise.resolve()).finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return {
    signal: controller.signal,
    cleanup: (fn) => (teardown = fn),
    dispose: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}
