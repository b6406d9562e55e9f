// The daemon's client: HTTP over its Unix socket (or loopback TCP with a token), and a Sandbox that lives in the daemon.
import { request, Agent, type IncomingMessage, type RequestOptions } from "node:http";
import { resolve as resolvePath } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { LuminaGuardError, errorFromBody, knownNoDaemon, noDaemon } from "../errors.js";
import { log } from "../log.js";
import type { DiskLimitMode } from "../runtime/disk.js";
import type { RunOptions, SandboxApi, SandboxOptions, Served } from "../runtime/sandbox.js";
import type { BackendName, ServedBy } from "../sandbox/types.js";
import type { CallOptions, CommandResult, ListDirectoryResult, ReadFileResult, SearchResult, WriteFileResult } from "../tools/dispatch.js";
import type { ToolName } from "../tools/registry.js";
import type { CommandStreamLine, CreateSandboxBody, SandboxDescription } from "./schemas.js";
import { DAEMON_TOKEN_ENV, DAEMON_URL_ENV, daemonDisabledByEnv, defaultSocketPath } from "./socket-path.js";

export { errorFromBody } from "../errors.js";

export { DAEMON_URL_ENV } from "./socket-path.js";

export interface DaemonClientOptions {
  /** Unix socket (default: defaultSocketPath()). */
  socketPath?: string;
  /** Or loopback TCP, `http://127.0.0.1:PORT`, with a bearer token. */
  url?: string;
  token?: string;
}

interface RawResponse {
  status: number;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

export class DaemonClient {
  readonly socketPath: string | undefined;
  readonly url: URL | undefined;
  private readonly token: string | undefined;
  private readonly agent: Agent;

  constructor(o: DaemonClientOptions = {}) {
    const url = o.url ?? process.env[DAEMON_URL_ENV];
    if (url !== undefined && url !== "" && o.socketPath === undefined) {
      this.url = new URL(url);
      this.token = o.token ?? process.env[DAEMON_TOKEN_ENV];
    } else {
      this.socketPath = o.socketPath ?? defaultSocketPath();
      this.token = o.token;
    }
    // Keep-alive: one connection for a sandbox's many calls; idle sockets never hold the process open.
    this.agent = new Agent({ keepAlive: true, maxSockets: 16 });
  }

  /** Where it connects, for messages. */
  get where(): string {
    return this.socketPath ?? this.url?.origin ?? "?";
  }

  private options(method: string, path: string, body: string | undefined, signal: AbortSignal | undefined): RequestOptions {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    if (this.token) headers["authorization"] = `Bearer ${this.token}`;
    const base = this.socketPath !== undefined ? { socketPath: this.socketPath } : { host: this.url?.hostname, port: this.url?.port };
    return { ...base, method, path, headers, agent: this.agent, ...(signal ? { signal } : {}) };
  }

  /** One request; the answer's body whole. Connection failures are DAEMON_UNAVAILABLE. */
  private raw(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<RawResponse> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(this.options(method, path, text, signal), (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.once("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.once("error", (err) => reject(this.connectionError(err)));
      });
      req.once("error", (err) => reject(this.connectionError(err, signal)));
      req.end(text);
    });
  }

  /**
   * A request whose answer nobody waits for: resolves once it is written to the daemon's socket, and
   * from then on the connection no longer holds the process open. For a request whose handler runs
   * to its end whatever becomes of the connection (DELETE of a sandbox).
   */
  sendOnly(method: string, path: string): Promise<void> {
    return new Promise((resolve) => {
      const req = request(this.options(method, path, undefined, undefined), (res) => res.resume());
      // Written or failed, the caller goes on: a daemon that is gone took its sandboxes with it.
      req.once("error", () => resolve());
      req.once("finish", () => {
        req.socket?.unref();
        resolve();
      });
      req.end();
    });
  }

  private connectionError(err: Error, signal?: AbortSignal): LuminaGuardError {
    if (signal?.aborted) return new LuminaGuardError("CANCELLED", "the call was cancelled");
    return new LuminaGuardError("DAEMON_UNAVAILABLE", `no LuminaGuard daemon answers at ${this.where}: ${err.message}`, {
      cause: err,
      details: { errno: (err as NodeJS.ErrnoException).code ?? "" },
    });
  }

  /** A JSON request: the parsed answer, or the daemon's error as a LuminaGuardError. */
  async json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const r = await this.raw(method, path, body, signal);
    let parsed: unknown = undefined;
    if (r.body.length > 0) {
      try {
        parsed = JSON.parse(r.body.toString("utf8"));
      } catch {
        throw new LuminaGuardError("DAEMON_UNAVAILABLE", `${this.where} answered HTTP ${r.status} with something that is not JSON`);
      }
    }
    if (r.status >= 400) throw errorFromBody(r.status, parsed);
    return parsed as T;
  }

  /**
   * A streamed command: NDJSON lines of output, then the result (or the error). Output reaches the
   * callbacks as it comes.
   */
  stream(path: string, body: unknown, hooks: { onStdout?: (c: Buffer) => void; onStderr?: (c: Buffer) => void; signal?: AbortSignal }): Promise<Record<string, unknown>> {
    const text = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(this.options("POST", path, text, hooks.signal), (res) => {
        if ((res.statusCode ?? 0) >= 400) {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.once("end", () => {
            let parsed: unknown;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            } catch {
              parsed = undefined;
            }
            reject(errorFromBody(res.statusCode ?? 0, parsed));
          });
          return;
        }
        const decoder = new StringDecoder("utf8");
        let pending = "";
        let settled = false;
        const onLine = (line: string): void => {
          if (line.trim() === "") return;
          const msg = JSON.parse(line) as CommandStreamLine;
          if ("stream" in msg) (msg.stream === "stdout" ? hooks.onStdout : hooks.onStderr)?.(Buffer.from(msg.data, "utf8"));
          else if ("result" in msg) {
            settled = true;
            resolve(msg.result);
          } else if ("error" in msg) {
            settled = true;
            reject(errorFromBody(500, msg.error));
          }
        };
        res.on("data", (c: Buffer) => {
          pending += decoder.write(c);
          let nl: number;
          while ((nl = pending.indexOf("\n")) >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            try {
              onLine(line);
            } catch (err) {
              settled = true;
              reject(new LuminaGuardError("DAEMON_UNAVAILABLE", `the daemon's command stream is malformed: ${(err as Error).message}`));
              res.destroy();
              return;
            }
          }
        });
        res.once("end", () => {
          if (!settled) reject(new LuminaGuardError("GUEST_CHANNEL_LOST", "the daemon's command stream ended without a result"));
        });
        res.once("error", (err) => reject(this.connectionError(err, hooks.signal)));
      });
      req.once("error", (err) => reject(this.connectionError(err, hooks.signal)));
      req.end(text);
    });
  }

  health(signal?: AbortSignal): Promise<{ status: string; pid: number; version: string }> {
    return this.json("GET", "/healthz", undefined, signal);
  }

  async createSandbox(body: CreateSandboxBody, signal?: AbortSignal): Promise<RemoteSandbox> {
    const d = await this.json<SandboxDescription>("POST", "/v1/sandboxes", body, signal);
    return new RemoteSandbox(this, d);
  }

  listSandboxes(): Promise<{ sandboxes: SandboxDescription[] }> {
    return this.json("GET", "/v1/sandboxes");
  }

  close(): void {
    this.agent.destroy();
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

/**
 * A sandbox that lives in the daemon, with the in-process Sandbox's methods and results (the daemon
 * answers with exactly Sandbox.callTool's JSON). `info.via` is "daemon"; `pids()` is empty (the
 * processes are the daemon's).
 */
export class RemoteSandbox implements SandboxApi {
  readonly workspace: string;
  private killed: Promise<void> | undefined;

  readonly files = {
    read: async (path: string, o: { offset?: number; length?: number; signal?: AbortSignal } = {}): Promise<Served<ReadFileResult>> => {
      const r = await this.call("read_file", { path, ...defined({ offset: o.offset, length: o.length }) }, o.signal);
      const { content, encoding, ...rest } = r as { content: string; encoding: "utf8" | "base64" } & Record<string, unknown>;
      return { ...(rest as unknown as Omit<ReadFileResult, "content">), content: Buffer.from(content, encoding), servedBy: r["servedBy"] as ServedBy };
    },
    readText: async (path: string): Promise<string> => (await this.files.read(path)).content.toString("utf8"),
    write: async (path: string, data: string | Uint8Array, o: { createParents?: boolean; signal?: AbortSignal } = {}): Promise<Served<WriteFileResult>> => {
      const body =
        typeof data === "string" ? { path, content: data, encoding: "utf8" } : { path, content: Buffer.from(data).toString("base64"), encoding: "base64" };
      return (await this.call("write_file", { ...body, ...defined({ createParents: o.createParents }) }, o.signal)) as unknown as Served<WriteFileResult>;
    },
    list: async (path = ".", o: { depth?: number; limit?: number; signal?: AbortSignal } = {}): Promise<Served<ListDirectoryResult>> =>
      (await this.call("list_directory", { path, ...defined({ depth: o.depth, limit: o.limit }) }, o.signal)) as unknown as Served<ListDirectoryResult>,
  };

  readonly commands = {
    run: async (command: string | string[], o: RunOptions = {}): Promise<Served<CommandResult>> => {
      const args = { command, ...defined({ cwd: o.cwd, env: o.env, stdin: o.stdin, timeoutMs: o.timeoutMs }) };
      const r = o.onStdout || o.onStderr ? await this.runStreamed(args, o) : await this.call("execute_command", args, o.signal);
      return r as unknown as Served<CommandResult>;
    },
  };

  constructor(
    readonly client: DaemonClient,
    readonly description: SandboxDescription,
  ) {
    this.workspace = description.workspace;
  }

  get id(): string {
    return this.description.id;
  }

  get backend(): BackendName {
    return this.description.backend;
  }

  get diskLimit(): DiskLimitMode {
    return this.description.info["diskLimit"] === "kernel" ? "kernel" : "watched";
  }

  get info(): Readonly<Record<string, string | number | boolean>> {
    return { ...this.description.info, via: "daemon", daemon: this.client.where };
  }

  get alive(): boolean {
    return this.killed === undefined;
  }

  pids(): number[] {
    return [];
  }

  servedBy(tool: ToolName): ServedBy {
    return this.description.servedBy[tool];
  }

  search(args: { path?: string; pattern?: string; glob?: string; maxResults?: number }, o: { signal?: AbortSignal } = {}): Promise<Served<SearchResult>> {
    return this.call("search", args, o.signal) as unknown as Promise<Served<SearchResult>>;
  }

  async callTool(name: ToolName, args: unknown, o: CallOptions = {}): Promise<Record<string, unknown>> {
    if (name === "execute_command" && (o.onStdout || o.onStderr)) return await this.runStreamed(args, o);
    return await this.call(name, args, o.signal);
  }

  kill(): Promise<void> {
    this.killed ??= this.client.json("DELETE", `/v1/sandboxes/${enc(this.id)}`).then(
      () => undefined,
      (err: unknown) => {
        // Already gone (expired, idle, the daemon restarted): nothing left to kill.
        const code = (err as LuminaGuardError).code;
        if (code !== "NOT_FOUND" && code !== "DAEMON_UNAVAILABLE") throw err;
      },
    );
    return this.killed;
  }

  /**
   * For a process about to exit (`luminaguard exec`): asks the daemon to kill the sandbox and resolves
   * once the request is on the daemon's socket, without waiting for the teardown. The daemon owns the
   * sandbox and finishes the teardown (kill, unmount, delete) by itself: its DELETE handler does not
   * depend on this connection staying open. kill() is the variant that waits for it.
   */
  release(): Promise<void> {
    if (this.killed) return this.killed.catch(() => undefined);
    const sent = this.client.sendOnly("DELETE", `/v1/sandboxes/${enc(this.id)}`);
    this.killed = sent;
    return sent;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  private call(name: ToolName, args: unknown, signal: AbortSignal | undefined): Promise<Record<string, unknown>> {
    if (this.killed) return Promise.reject(new LuminaGuardError("SANDBOX_CLOSED", `sandbox ${this.id} has been killed`));
    return this.client.json<Record<string, unknown>>("POST", `/v1/sandboxes/${enc(this.id)}/tools/${name}`, args ?? {}, signal);
  }

  private runStreamed(args: unknown, o: { onStdout?: ((c: Buffer) => void) | undefined; onStderr?: ((c: Buffer) => void) | undefined; signal?: AbortSignal | undefined }): Promise<Record<string, unknown>> {
    if (this.killed) return Promise.reject(new LuminaGuardError("SANDBOX_CLOSED", `sandbox ${this.id} has been killed`));
    return this.client.stream(`/v1/sandboxes/${enc(this.id)}/commands`, args, {
      ...(o.onStdout ? { onStdout: o.onStdout } : {}),
      ...(o.onStderr ? { onStderr: o.onStderr } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
  }
}

function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

let shared: DaemonClient | undefined;

/**
 * For Sandbox.create: a sandbox from the running daemon, or undefined when none answers on the socket
 * (then the caller runs in-process). `daemon: true` makes a missing daemon an error (DAEMON_UNAVAILABLE);
 * `daemon: false` or LUMINAGUARD_DAEMON=0 never asks.
 */
export async function sandboxFromDaemon(options: SandboxOptions): Promise<RemoteSandbox | undefined> {
  if (options.daemon === false || (options.daemon === undefined && daemonDisabledByEnv())) return undefined;
  if (options.pidsMax !== undefined || options.vcpus !== undefined || options.diskInodes !== undefined) {
    if (options.daemon === true) throw new LuminaGuardError("INVALID_ARGUMENT", "pidsMax, vcpus and diskInodes cannot be set through the daemon; use { daemon: false }");
    return undefined;
  }
  const socketPath = defaultSocketPath();
  // The bin's thin exec client asked this very socket a moment ago and found no daemon.
  if (options.daemon !== true && !process.env[DAEMON_URL_ENV] && knownNoDaemon(socketPath)) return undefined;
  if (shared?.socketPath !== socketPath || process.env[DAEMON_URL_ENV]) shared = new DaemonClient(process.env[DAEMON_URL_ENV] ? {} : { socketPath });
  const client = shared;
  const body: CreateSandboxBody = {
    ...(options.backend !== undefined ? { backend: options.backend } : {}),
    ...(options.workspace !== undefined ? { workspace: resolvePath(options.workspace) } : {}),
    ...(options.memoryMiB !== undefined ? { memoryMiB: options.memoryMiB } : {}),
    ...(options.diskMiB !== undefined ? { diskMiB: options.diskMiB } : {}),
    ...(options.fileTools !== undefined ? { fileTools: options.fileTools } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    client: `pid ${process.pid}`,
  };
  try {
    return await client.createSandbox(body, options.signal);
  } catch (err) {
    if (err instanceof LuminaGuardError && err.code === "DAEMON_UNAVAILABLE" && options.daemon !== true && noDaemon(err.cause)) {
      log.debug({ socket: client.where, err: err.message }, "no daemon; running in-process");
      return undefined;
    }
    throw err;
  }
}
