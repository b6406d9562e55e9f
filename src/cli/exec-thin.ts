// The thin `luminaguard exec`: when a service (`luminaguard serve`) answers on its socket, a plain command
// line (`exec [--backend B] [--workspace DIR] [--timeout S] [--memory M] [--disk D] [--file-tools F] -- CMD...`)
// is sent to it without loading commander or the command's other modules: what a user waits for is then
// node's start, one module and the service's answer. Everything else takes the full command (src/cli/exec.ts):
// any other word or flag (--help, --no-daemon, --cluster...), a value the full command would refuse (it
// reports the error), $LUMINAGUARD_CLUSTER, the daemon turned off, and no service answering (as
// sandboxFromDaemon judges it). Once the service has answered, this path is the full command's: the same
// requests and readings of the answers as sandboxFromDaemon and RemoteSandbox (over node:net, without
// node:http: src/daemon/unix-http.ts), the same run and output (runExecCommand), the same errors (thrown
// to runCli).
import { resolve as resolvePath } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { CommandStreamLine, CreateSandboxBody, SandboxDescription } from "../daemon/schemas.js";
import { DAEMON_URL_ENV, daemonDisabledByEnv, defaultSocketPath } from "../daemon/socket-path.js";
import { unixRequest, unixSendOnly } from "../daemon/unix-http.js";
import { LuminaGuardError, errorFromBody, markNoDaemon, noDaemon } from "../errors.js";
import type { RunOptions, Served } from "../runtime/sandbox.js";
import type { CommandResult } from "../tools/dispatch.js";
import { BACKEND_CHOICES, FILE_TOOLS_MODES, MAX_DISK_MIB, MIN_DISK_MIB, type BackendChoice, type FileToolsMode } from "../sandbox/types.js";
import { EXEC_TIMEOUT_S, interruptible, runExecCommand, type ExecTarget } from "./exec-run.js";

export interface ThinExec {
  backend: BackendChoice;
  workspace?: string;
  timeout: number;
  memory?: number;
  disk?: number;
  fileTools?: FileToolsMode;
  cmd: string[];
}

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
  const out: ThinExec = { backend: "auto", timeout: EXEC_TIMEOUT_S.default, cmd };
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
      const n = name === "--timeout" ? int(value, EXEC_TIMEOUT_S.min, EXEC_TIMEOUT_S.max) : name === "--memory" ? int(value, 32, 65_536) : int(value, MIN_DISK_MIB, MAX_DISK_MIB);
      if (n === undefined) return undefined;
      if (name === "--timeout") out.timeout = n;
      else if (name === "--memory") out.memory = n;
      else out.disk = n;
    }
  }
  return out;
}

let attempted = false;

/**
 * For the bundled bin (src/cli/bin.ts), which loads this module first for `exec`: thinExec with a failure
 * reported as runCli reports it. False: the full command (main-exec.ts) runs, and does not try again.
 */
export async function thinExecMain(argv: readonly string[]): Promise<boolean> {
  try {
    return await thinExec(argv);
  } catch (err) {
    const { reportError } = await import("./output.js");
    process.exitCode = reportError(err);
    return true;
  }
}

/** Where the daemon is, for messages, as DaemonClient.where says it. */
function connectionError(where: string, err: Error, signal: AbortSignal): LuminaGuardError {
  if (signal.aborted) return new LuminaGuardError("CANCELLED", "the call was cancelled");
  return new LuminaGuardError("DAEMON_UNAVAILABLE", `no LuminaGuard daemon answers at ${where}: ${err.message}`, {
    cause: err,
    details: { errno: (err as NodeJS.ErrnoException).code ?? "" },
  });
}

/** A JSON request as DaemonClient.json makes it: the parsed answer, or the daemon's error as a LuminaGuardError. */
async function json<T>(socket: string, method: string, path: string, body: unknown, signal: AbortSignal): Promise<T> {
  const chunks: Buffer[] = [];
  const r = await unixRequest(socket, { method, path, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), onData: (c) => chunks.push(c), signal });
  const text = Buffer.concat(chunks);
  let parsed: unknown = undefined;
  if (text.length > 0) {
    try {
      parsed = JSON.parse(text.toString("utf8"));
    } catch {
      throw new LuminaGuardError("DAEMON_UNAVAILABLE", `${socket} answered HTTP ${r.status} with something that is not JSON`);
    }
  }
  if (r.status >= 400) throw errorFromBody(r.status, parsed);
  return parsed as T;
}

/** The streamed command as DaemonClient.stream reads it: NDJSON output lines, then the result (or the error). */
async function streamCommand(socket: string, id: string, args: unknown, o: RunOptions, signal: AbortSignal): Promise<Record<string, unknown>> {
  let errorBody: Buffer[] | undefined;
  let status = 0;
  const decoder = new StringDecoder("utf8");
  let pending = "";
  let outcome: { result: Record<string, unknown> } | { error: LuminaGuardError } | undefined;
  const onLine = (line: string): void => {
    if (line.trim() === "") return;
    const msg = JSON.parse(line) as CommandStreamLine;
    if ("stream" in msg) (msg.stream === "stdout" ? o.onStdout : o.onStderr)?.(Buffer.from(msg.data, "utf8"));
    else if ("result" in msg) outcome = { result: msg.result };
    else if ("error" in msg) outcome = { error: errorFromBody(500, msg.error) };
  };
  try {
    await unixRequest(socket, {
      method: "POST",
      path: `/v1/sandboxes/${encodeURIComponent(id)}/commands`,
      body: JSON.stringify(args),
      signal,
      onHead: (h) => {
        status = h.status;
        if (h.status >= 400) errorBody = [];
      },
      onData: (c) => {
        if (errorBody) return void errorBody.push(c);
        // What follows the result (or the error) is not read, as DaemonClient.stream settles there.
        if (outcome) return;
        pending += decoder.write(c);
        let nl: number;
        while (outcome === undefined && (nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          try {
            onLine(line);
          } catch (err) {
            throw new LuminaGuardError("DAEMON_UNAVAILABLE", `the daemon's command stream is malformed: ${(err as Error).message}`);
          }
        }
      },
    });
  } catch (err) {
    if (err instanceof LuminaGuardError) throw err;
    if (outcome === undefined) throw connectionError(socket, err as Error, signal);
  }
  if (errorBody) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(errorBody).toString("utf8"));
    } catch {
      parsed = undefined;
    }
    throw errorFromBody(status, parsed);
  }
  if (outcome === undefined) throw new LuminaGuardError("GUEST_CHANNEL_LOST", "the daemon's command stream ended without a result");
  if ("error" in outcome) throw outcome.error;
  return outcome.result;
}

/**
 * Runs the command through the service when this command line and environment allow the thin path and a
 * service answers on the socket: true when it did (process.exitCode is set; a failure is thrown, as from
 * the full command), false when the full command must run instead (nothing has been done or printed).
 * What it sends and how it reads the answers are sandboxFromDaemon's and RemoteSandbox's, over node:net.
 */
export async function thinExec(argv: readonly string[]): Promise<boolean> {
  // Once per process: the bundled bin tries it first (thinExecMain), then the full command must not again.
  if (attempted) return false;
  attempted = true;
  const parsed = parseThinExec(argv);
  // The TCP listener ($LUMINAGUARD_DAEMON_URL, with its token) is the full client's.
  if (parsed === undefined || process.env["LUMINAGUARD_CLUSTER"] || process.env[DAEMON_URL_ENV] || daemonDisabledByEnv()) return false;
  const socket = defaultSocketPath();
  const { signal, cleanup, dispose } = interruptible();
  const body: CreateSandboxBody = {
    backend: parsed.backend,
    ...(parsed.workspace !== undefined ? { workspace: resolvePath(parsed.workspace) } : {}),
    ...(parsed.memory !== undefined ? { memoryMiB: parsed.memory } : {}),
    ...(parsed.disk !== undefined ? { diskMiB: parsed.disk } : {}),
    ...(parsed.fileTools !== undefined ? { fileTools: parsed.fileTools } : {}),
    client: `pid ${process.pid}`,
  };
  let d: SandboxDescription;
  try {
    d = await json<SandboxDescription>(socket, "POST", "/v1/sandboxes", body, signal);
  } catch (err) {
    if (err instanceof LuminaGuardError) throw err;
    if (!signal.aborted && noDaemon(err)) {
      // No service: the full command runs in-process, with its own signal handlers.
      markNoDaemon(socket);
      dispose();
      return false;
    }
    throw connectionError(socket, err as Error, signal);
  }
  const path = `/v1/sandboxes/${encodeURIComponent(d.id)}`;
  // Ctrl-C: the kill is waited for (RemoteSandbox.kill); a sandbox already gone is nothing to kill.
  cleanup(() => json(socket, "DELETE", path, undefined, new AbortController().signal).then(() => undefined, () => undefined));
  const sandbox: ExecTarget = {
    id: d.id,
    backend: d.backend,
    info: { ...d.info, via: "daemon", daemon: socket },
    commands: {
      run: async (command: string | string[], o: RunOptions = {}) =>
        (await streamCommand(socket, d.id, { command, ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) }, o, signal)) as unknown as Served<CommandResult>,
    },
  };
  await runExecCommand(sandbox, parsed.cmd, parsed.timeout, signal, () => unixSendOnly(socket, "DELETE", path));
  return true;
}
