// The client side of MCP over stdio: the server runs in its own process group, is killed whole, and garbage on stdout is fatal.
import type { ChildProcess } from "node:child_process";
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { log } from "../../log.js";
import { killGroup, spawnGroup } from "../../util/proc.js";
import { DEFAULT_MAX_MESSAGE_BYTES, LineSplitter, parseJsonRpcLine, serialize } from "../shared/jsonl.js";

interface StdioProcessParams {
  command: string;
  args?: readonly string[];
  /** Added to the SDK's safe default environment (HOME, PATH, USER, ...), as other MCP hosts do. */
  env?: Record<string, string>;
  cwd?: string;
  maxMessageBytes?: number;
  /** How long close() waits after ending stdin before signalling the group. */
  graceMs?: number;
  /** For logs and error messages. */
  label?: string;
}

const STDERR_TAIL_BYTES = 8192;

/**
 * `setpriv --pdeathsig KILL` makes the server die with us even if we are SIGKILLed (its own group no longer
 * gets our terminal's Ctrl-C); used when present, as for QEMU.
 */
let setprivWorks: boolean | undefined;
function deathSignalPrefix(): string[] {
  setprivWorks ??= existsSync("/usr/bin/setpriv");
  return setprivWorks ? ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] : [];
}

/** Looks `command` up like execvp, so a missing program is ENOENT here and not a wrapper's exit status. */
function resolveProgram(command: string, path: string, cwd: string | undefined): string {
  const candidates = command.includes("/") ? [isAbsolute(command) ? command : resolve(cwd ?? process.cwd(), command)] : path.split(":").filter(Boolean).map((d) => join(d, command));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch {
      /* next */
    }
  }
  throw Object.assign(new Error(`spawn ${command} ENOENT: no executable ${JSON.stringify(command)}${command.includes("/") ? "" : " in PATH"}`), { code: "ENOENT" });
}

/** Every live server process group, killed if this process exits without closing them. */
const liveGroups = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackGroup(child: ChildProcess): void {
  liveGroups.add(child);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const c of liveGroups) killGroup(c);
  });
}

/**
 * Why not the SDK's StdioClientTransport: it spawns the server in our process group and signals only the direct
 * child (an `npx` wrapper's real server survives), and it skips unparseable lines, so a server answering
 * garbage looks like a hang. Here the server leads its own group, close() kills the group, and the first
 * line that is not JSON-RPC closes the transport with `violation` set.
 */
export class ProcessGroupStdioTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JSONRPCMessage) => void) | undefined;
  /** Set when the server broke the protocol; the transport is then closed. */
  violation: string | undefined;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private child: ChildProcess | undefined;
  private stderrTail = "";
  private closeNotified = false;
  private closing: Promise<void> | undefined;
  private readonly splitter: LineSplitter;

  constructor(private readonly params: StdioProcessParams) {
    this.splitter = new LineSplitter(
      params.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      (line) => this.onLine(line),
      (o) => this.fail(`server sent a message of ${o.bytes} bytes, over the limit`),
    );
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The last few KiB the server wrote to stderr (for error messages). */
  get stderr(): string {
    return this.stderrTail;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      const env: NodeJS.ProcessEnv = { ...getDefaultEnvironment(), ...(this.params.env ?? {}) };
      try {
        const program = resolveProgram(this.params.command, env["PATH"] ?? "", this.params.cwd);
        child = spawnGroup([...deathSignalPrefix(), program, ...(this.params.args ?? [])], {
          env,
          stdio: ["pipe", "pipe", "pipe"],
          ...(this.params.cwd !== undefined ? { cwd: this.params.cwd } : {}),
        });
      } catch (err) {
        reject(err as Error);
        return;
      }
      this.child = child;
      trackGroup(child);
      let spawned = false;
      child.on("error", (err) => {
        if (spawned) return void this.onerror?.(err);
        // spawn failure (ENOENT, EACCES): no 'spawn' event, no 'close' either; start() failing says it all.
        liveGroups.delete(child);
        this.closeNotified = true;
        reject(err);
      });
      child.once("spawn", () => {
        spawned = true;
        resolve();
      });
      child.once("exit", (code, signal) => {
        this.exit = { code, signal };
        liveGroups.delete(child);
        // Whatever the server left running in its group goes with it (and releases its stdout).
        killGroup(child);
      });
      // After 'exit' and the last stdout bytes: a final answer written just before exiting is still delivered.
      child.once("close", () => this.notifyClose());
      child.stdout?.on("data", (chunk: Buffer) => this.splitter.push(chunk));
      child.stderr?.on("data", (chunk: Buffer) => {
        this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL_BYTES);
        log.debug({ server: this.params.label, stderr: chunk.toString("utf8").trimEnd() }, "mcp server stderr");
      });
      child.stdin?.on("error", (err) => this.onerror?.(err));
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || !stdin.writable || this.closing || this.closeNotified) return Promise.reject(new Error("not connected: the server process is not running"));
    return new Promise((resolve) => {
      if (stdin.write(serialize(message))) resolve();
      else stdin.once("drain", () => resolve());
    });
  }

  /** Ends stdin, waits `graceMs` for the server to exit, then SIGTERM and finally SIGKILL to its whole group. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const child = this.child;
      if (child && this.exit === undefined) {
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        const wait = (ms: number): Promise<boolean> =>
          Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
        try {
          child.stdin?.end();
        } catch {
          /* already closed */
        }
        if (!(await wait(this.params.graceMs ?? 500))) {
          killGroup(child, "SIGTERM");
          if (!(await wait(1000))) {
            killGroup(child, "SIGKILL");
            await wait(2000);
          }
        }
      }
      if (child) {
        killGroup(child, "SIGKILL");
        liveGroups.delete(child);
      }
      this.splitter.reset();
      this.notifyClose();
    })();
    return this.closing;
  }

  /** Kills the group at once (a hung or misbehaving server gets no grace). */
  kill(): Promise<void> {
    if (this.child && this.exit === undefined) killGroup(this.child, "SIGKILL");
    return this.close();
  }

  private onLine(line: string): void {
    if (this.violation) return;
    const parsed = parseJsonRpcLine(line);
    if (parsed.ok) this.onmessage?.(parsed.message);
    else this.fail(`server sent a line that is not a JSON-RPC message (${parsed.error}): ${JSON.stringify(line.slice(0, 120))}`);
  }

  private fail(reason: string): void {
    if (this.violation) return;
    this.violation = reason;
    this.onerror?.(new Error(reason));
    void this.kill();
  }

  private notifyClose(): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    this.onclose?.();
  }
}
