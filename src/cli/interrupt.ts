// Ctrl-C or SIGTERM during exec and tool: abort the work in progress, tear the sandbox down, then exit.
// Apart from src/cli/sandbox.ts (which defines commander options) so that the thin exec client loads no commander.

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
