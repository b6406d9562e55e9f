// Child processes the way the runtime needs them: argv only, own process group, deadline, abort, group kill.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { LuminaGuardError } from "../errors.js";
import { onAbort } from "./abort.js";
import { sandboxHostEnv } from "./env.js";

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called with every chunk of combined output, for progress display. */
  onOutput?: (chunk: Buffer) => void;
  maxOutputBytes?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Kills a child's whole process group; safe to call on an exited child. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/**
 * Spawns argv[0] with its own process group so the whole tree can be killed at once. Without an
 * `env` option the child gets sandboxHostEnv(), not ours: a process that should see the caller's
 * environment (a build tool, an MCP server) must be given it explicitly.
 */
export function spawnGroup(argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const [file, ...args] = argv;
  if (file === undefined) throw new LuminaGuardError("INVALID_ARGUMENT", "empty argv");
  return spawn(file, args, { ...options, env: options.env ?? sandboxHostEnv(), detached: true, shell: false });
}

/** Runs a command to completion with a deadline; output is capped, never unbounded. */
export function run(argv: readonly string[], options: RunOptions): Promise<RunResult> {
  const max = options.maxOutputBytes ?? 4 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawnGroup(argv, {
      cwd: options.cwd,
      // run() is for host tools run to completion (cc, make, apt-get, dpkg, git): they run in the
      // user's environment as in a shell (make needs HOME, apt its proxy settings). Sandboxes are
      // started with spawnGroup and a minimal environment instead.
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let timedOut = false;
    const collect = (into: Buffer[], which: "out" | "err") => (chunk: Buffer) => {
      options.onOutput?.(chunk);
      const used = which === "out" ? outBytes : errBytes;
      if (used < max) into.push(chunk.subarray(0, max - used));
      if (which === "out") outBytes += chunk.length;
      else errBytes += chunk.length;
    };
    child.stdout?.on("data", collect(out, "out"));
    child.stderr?.on("data", collect(err, "err"));
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, options.timeoutMs);
    const unhook = onAbort(options.signal, () => killGroup(child));
    child.on("error", (e) => {
      clearTimeout(timer);
      unhook();
      reject(new LuminaGuardError("COMMAND_NOT_FOUND", `cannot run ${argv[0]}: ${e.message}`, { cause: e }));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      unhook();
      // The leader exited; make sure nothing it started outlives it.
      killGroup(child);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        timedOut,
      });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
