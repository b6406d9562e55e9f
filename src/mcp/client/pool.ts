// The MCP client pool: one long-lived connection per configured server, reconnected with backoff, every call deadlined and timed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CallToolResultSchema,
  ErrorCode,
  McpError,
  ToolListChangedNotificationSchema,
  type CallToolResult,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import { expandEnv, isHttpServer, loadConfig, type LuminaGuardConfig, type McpServerConfig } from "../../config/config.js";
import { LuminaGuardError } from "../../errors.js";
import { fault, faultsOn } from "../../faults/index.js";
import { log } from "../../log.js";
import { raceAbort } from "../../util/abort.js";
import { packageVersion } from "../../util/pkg.js";
import {
  McpClientError,
  McpProtocolError,
  McpRemoteError,
  McpServerCrashedError,
  McpServerUnavailableError,
  McpTimeoutError,
} from "./errors.js";
import { McpClientMetrics, type CallOutcome } from "./metrics.js";
import { ProcessGroupStdioTransport } from "./stdio-transport.js";

const DEFAULT_CALL_TIMEOUT_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
const HEALTH_CHECK_TIMEOUT_MS = 2_000;
const MAX_TOOL_PAGES = 100;

interface McpClientPoolOptions {
  servers: Record<string, McpServerConfig>;
  /** Deadline of a call unless the call or the server's config sets one. */
  callTimeoutMs?: number;
  /** Deadline for starting a server and its initialize + tools/list. */
  connectTimeoutMs?: number;
  /** Reconnect backoff after failed connects: initialMs · 2^(failures-1), at most maxMs, with jitter. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Latency samples kept per server and tool. */
  maxSamples?: number;
}

/** A tool of an upstream server, exposed as `server.tool`. */
interface UpstreamTool {
  name: string;
  server: string;
  tool: string;
  title?: string;
  description?: string;
  inputSchema: Tool["inputSchema"];
  outputSchema?: Tool["outputSchema"];
  annotations?: Tool["annotations"];
}

interface ClientCallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

type UpstreamState = "idle" | "connecting" | "ready" | "backoff" | "closed";

interface UpstreamStatus {
  server: string;
  transport: "stdio" | "http";
  state: UpstreamState;
  pid?: number;
  connects: number;
  consecutiveFailures: number;
  lastError?: string;
}

/** Splits `server.tool` at the first dot (server names cannot contain one). */
function splitToolName(qualified: string): { server: string; tool: string } {
  const i = qualified.indexOf(".");
  if (i <= 0 || i === qualified.length - 1) throw new LuminaGuardError("INVALID_ARGUMENT", `tool name ${JSON.stringify(qualified)} is not of the form server.tool`);
  return { server: qualified.slice(0, i), tool: qualified.slice(i + 1) };
}

export class McpClientPool {
  readonly metrics: McpClientMetrics;
  private readonly upstreams = new Map<string, Upstream>();

  constructor(options: McpClientPoolOptions) {
    this.metrics = new McpClientMetrics(options.maxSamples);
    const settings: Settings = {
      callTimeoutMs: options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      backoffInitialMs: options.backoffInitialMs ?? 250,
      backoffMaxMs: options.backoffMaxMs ?? 30_000,
    };
    for (const [name, config] of Object.entries(options.servers)) this.upstreams.set(name, new Upstream(name, config, settings));
  }

  /** A pool over the `mcpServers` of a config (default: the user's config file). */
  static fromConfig(config: LuminaGuardConfig = loadConfig(), options: Omit<McpClientPoolOptions, "servers"> = {}): McpClientPool {
    return new McpClientPool({ ...options, servers: config.mcpServers ?? {} });
  }

  get serverNames(): string[] {
    return [...this.upstreams.keys()];
  }

  status(): UpstreamStatus[] {
    return [...this.upstreams.values()].map((u) => u.status());
  }

  /** The tools of one server (connecting it if needed), named `server.tool`. */
  async listTools(server: string, o: ClientCallOptions = {}): Promise<UpstreamTool[]> {
    const up = this.upstream(server);
    const live = await up.ready(o.signal, Date.now() + (o.timeoutMs ?? up.settings.connectTimeoutMs));
    return [...live.tools.values()].map((t) => exposeTool(server, t));
  }

  /** The tools of every server; a server that cannot be reached is reported in `errors`, not thrown. */
  async listAllTools(o: ClientCallOptions = {}): Promise<{ tools: UpstreamTool[]; errors: Record<string, McpClientError> }> {
    const tools: UpstreamTool[] = [];
    const errors: Record<string, McpClientError> = {};
    await Promise.all(
      this.serverNames.map(async (name) => {
        try {
          tools.push(...(await this.listTools(name, o)));
        } catch (err) {
          errors[name] = err instanceof McpClientError ? err : new McpServerUnavailableError(name, (err as Error).message, { cause: err });
        }
      }),
    );
    tools.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { tools, errors };
  }

  /** Calls `server.tool`. A result with `isError` is returned, not thrown; failures of the server are named errors. */
  callTool(qualified: string, args: Record<string, unknown> = {}, o: ClientCallOptions = {}): Promise<CallToolResult> {
    const { server, tool } = splitToolName(qualified);
    return this.call(server, tool, args, o);
  }

  async call(server: string, tool: string, args: Record<string, unknown> = {}, o: ClientCallOptions = {}): Promise<CallToolResult> {
    const up = this.upstream(server);
    if (typeof args !== "object" || args === null || Array.isArray(args)) throw new LuminaGuardError("INVALID_ARGUMENT", "tool arguments must be a JSON object");
    const timeoutMs = o.timeoutMs ?? up.config.timeoutMs ?? up.settings.callTimeoutMs;
    const deadlineAt = Date.now() + timeoutMs;
    const t0 = performance.now();
    let outcome: CallOutcome = "ok";
    try {
      for (let attempt = 0; ; attempt++) {
        const live = await up.ready(o.signal, deadlineAt);
        if (!live.tools.has(tool)) {
          // The list may have changed since it was fetched.
          await up.refreshTools(live).catch(() => undefined);
          if (!live.tools.has(tool)) throw new McpClientError(server, "unknown_tool", "NOT_FOUND", `server ${server} has no tool ${JSON.stringify(tool)}; it has: ${[...live.tools.keys()].join(", ")}`);
        }
        try {
          if (faultsOn && fault("upstream-mcp", tool)) throw new McpError(ErrorCode.InternalError, `${tool} failed upstream (injected fault)`);
          const result = await live.client.callTool({ name: tool, arguments: args }, CallToolResultSchema, {
            timeout: Math.max(1, deadlineAt - Date.now()),
            ...(o.signal ? { signal: o.signal } : {}),
          });
          if (result.isError) outcome = "tool_error";
          return result as CallToolResult;
        } catch (err) {
          const { error, retry } = up.classify(err, live, o.signal, timeoutMs);
          // Retried once, only when the call cannot have run (an HTTP session that had expired).
          if (retry && attempt === 0 && Date.now() < deadlineAt) continue;
          throw error;
        }
      }
    } catch (err) {
      outcome = err instanceof McpClientError ? err.reason : "unavailable";
      log.info({ server, tool, code: err instanceof LuminaGuardError ? err.code : "INTERNAL", err: (err as Error).message }, "mcp call failed");
      throw err;
    } finally {
      this.metrics.record(server, tool, performance.now() - t0, outcome);
    }
  }

  /** Pings a server (connecting it if needed): true when it answers within the deadline. */
  async ping(server: string, o: ClientCallOptions = {}): Promise<void> {
    const up = this.upstream(server);
    const deadlineAt = Date.now() + (o.timeoutMs ?? up.settings.callTimeoutMs);
    const live = await up.ready(o.signal, deadlineAt);
    try {
      await live.client.ping({ timeout: Math.max(1, deadlineAt - Date.now()), ...(o.signal ? { signal: o.signal } : {}) });
    } catch (err) {
      throw up.classify(err, live, o.signal, deadlineAt - Date.now()).error;
    }
  }

  /** Closes every connection and stops every server process. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.upstreams.values()].map((u) => u.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private upstream(server: string): Upstream {
    const up = this.upstreams.get(server);
    if (!up) {
      const known = this.serverNames;
      throw new McpClientError(server, "unknown_server", "NOT_FOUND", `no MCP server ${JSON.stringify(server)} is configured${known.length ? `; configured: ${known.join(", ")}` : ""}`);
    }
    return up;
  }
}

interface Settings {
  callTimeoutMs: number;
  connectTimeoutMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
}

type AnyTransport = ProcessGroupStdioTransport | StreamableHTTPClientTransport;

interface Live {
  client: Client;
  transport: AnyTransport;
  tools: Map<string, Tool>;
  dead: boolean;
  /** Why the connection ended, for calls that were in flight. */
  deathReason: McpClientError | undefined;
  /** A ping after a timed-out call: until it settles nobody knows if the server still answers. */
  health: Promise<void> | undefined;
}

/** One configured server: at most one live connection, replaced when it dies. */
class Upstream {
  private live: Live | undefined;
  private connecting: Promise<Live> | undefined;
  private failures = 0;
  private nextAttemptAt = 0;
  private lastError: McpClientError | undefined;
  private connects = 0;
  private closed = false;
  private readonly kind: "stdio" | "http";

  constructor(
    readonly name: string,
    readonly config: McpServerConfig,
    readonly settings: Settings,
  ) {
    this.kind = isHttpServer(config) ? "http" : "stdio";
  }

  status(): UpstreamStatus {
    const state: UpstreamState = this.closed
      ? "closed"
      : this.live && !this.live.dead
        ? "ready"
        : this.connecting
          ? "connecting"
          : this.failures > 0 && Date.now() < this.nextAttemptAt
            ? "backoff"
            : "idle";
    const pid = this.live?.transport instanceof ProcessGroupStdioTransport ? this.live.transport.pid : undefined;
    return {
      server: this.name,
      transport: this.kind,
      state,
      ...(pid !== undefined ? { pid } : {}),
      connects: this.connects,
      consecutiveFailures: this.failures,
      ...(this.lastError ? { lastError: this.lastError.message } : {}),
    };
  }

  /** A live connection: the current one, or a new one (after any backoff), within the caller's deadline. */
  async ready(signal: AbortSignal | undefined, deadlineAt: number): Promise<Live> {
    for (;;) {
      const live = this.live;
      if (live && !live.dead) {
        if (!live.health) return live;
        await within(live.health, signal, deadlineAt, this.name);
        if (!live.dead) return live;
        continue;
      }
      if (this.closed) throw new McpServerUnavailableError(this.name, "the MCP client pool is closed");
      this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
      return await within(this.connecting, signal, deadlineAt, this.name);
    }
  }

  async refreshTools(live: Live): Promise<void> {
    const tools = new Map<string, Tool>();
    let cursor: string | undefined;
    for (let page = 0; page < MAX_TOOL_PAGES; page++) {
      const r = await live.client.listTools(cursor === undefined ? {} : { cursor }, { timeout: this.settings.connectTimeoutMs });
      for (const t of r.tools) tools.set(t.name, t as Tool);
      cursor = r.nextCursor;
      if (cursor === undefined) break;
    }
    live.tools = tools;
  }

  /** Turns whatever a call threw into a named error; kills the connection when it cannot be trusted any more. */
  classify(err: unknown, live: Live, signal: AbortSignal | undefined, timeoutMs: number): { error: McpClientError; retry: boolean } {
    const fail = (error: McpClientError, retry = false): { error: McpClientError; retry: boolean } => ({ error, retry });
    if (err instanceof McpClientError) return fail(err);
    if (signal?.aborted) return fail(new McpClientError(this.name, "cancelled", "CANCELLED", `call to ${this.name} was cancelled`, { cause: err }));
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof McpError) {
      const data = err.data as { timeout?: unknown } | undefined;
      if (err.code === ErrorCode.RequestTimeout && data?.timeout !== undefined) {
        this.checkHealth(live);
        return fail(new McpTimeoutError(this.name, `${this.name} did not answer within ${timeoutMs} ms`, { cause: err }));
      }
      if (err.code === ErrorCode.ConnectionClosed && live.dead) return fail(live.deathReason ?? this.crashed(live, err));
      if (/structured content|output schema/i.test(message)) return fail(new McpProtocolError(this.name, `${this.name} answered a result that breaks its own output schema: ${message}`, { cause: err }));
      return fail(new McpRemoteError(this.name, err.code, `${this.name}: ${message}`, { cause: err }));
    }
    if (err instanceof StreamableHTTPError) {
      if (err.code === 404) {
        this.kill(live, new McpServerCrashedError(this.name, `${this.name} forgot the session (HTTP 404)`));
        return fail(new McpServerCrashedError(this.name, `${this.name} ended the session: ${message}`, { cause: err }), true);
      }
      if (err.code === 401 || err.code === 403) return fail(new McpServerUnavailableError(this.name, `${this.name} refused the credentials (HTTP ${err.code}); check its headers`, { cause: err }));
      this.kill(live, new McpServerUnavailableError(this.name, message));
      return fail(new McpServerUnavailableError(this.name, `${this.name}: ${message}`, { cause: err }));
    }
    if (live.dead) return fail(live.deathReason ?? this.crashed(live, err));
    // The result did not parse as a CallToolResult (ZodError), or the HTTP body was not JSON (SyntaxError).
    if (err instanceof SyntaxError || isSchemaError(err)) {
      const e = new McpProtocolError(this.name, `${this.name} answered something that is not a valid MCP result: ${message.slice(0, 500)}`, { cause: err });
      this.kill(live, e);
      return fail(e);
    }
    // fetch failed (connection refused or reset): the HTTP server is down or restarting.
    const e = new McpServerCrashedError(this.name, `${this.name}: ${message}${causeMessage(err)}`, { cause: err });
    this.kill(live, e);
    return fail(e);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.connecting?.catch(() => undefined);
    const live = this.live;
    this.live = undefined;
    if (live) await this.shutdown(live, new McpServerUnavailableError(this.name, "the MCP client pool is closed"));
  }

  private async connect(): Promise<Live> {
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (this.closed) throw new McpServerUnavailableError(this.name, "the MCP client pool is closed");
    let transport: AnyTransport | undefined;
    let live: Live | undefined;
    try {
      transport = this.makeTransport();
      const client = new Client({ name: "luminaguard", version: packageVersion() }, { capabilities: {} });
      const l: Live = { client, transport, tools: new Map(), dead: false, deathReason: undefined, health: undefined };
      live = l;
      client.onclose = () => this.onClosed(l);
      client.onerror = (err) => log.debug({ server: this.name, err: err.message }, "mcp client transport error");
      await client.connect(transport, { timeout: this.settings.connectTimeoutMs });
      await this.refreshTools(l);
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        void this.refreshTools(l).catch((err: unknown) => log.debug({ server: this.name, err: (err as Error).message }, "mcp tools refresh failed"));
      });
    } catch (err) {
      if (live) {
        live.dead = true;
        await this.shutdown(live, undefined);
      }
      this.failures++;
      const delay = Math.min(this.settings.backoffMaxMs, this.settings.backoffInitialMs * 2 ** (this.failures - 1)) * (0.5 + Math.random() / 2);
      this.nextAttemptAt = Date.now() + delay;
      const why = live?.deathReason?.message ?? (err instanceof Error ? err.message : String(err));
      const stderr =
        !live?.deathReason && transport instanceof ProcessGroupStdioTransport && transport.stderr.trim() ? `; its stderr ends: ${transport.stderr.trim().slice(-500)}` : "";
      const e =
        err instanceof LuminaGuardError && !(err instanceof McpClientError) && err.code === "INVALID_ARGUMENT"
          ? new McpClientError(this.name, "unavailable", "INVALID_ARGUMENT", err.message, { cause: err })
          : new McpServerUnavailableError(this.name, `cannot connect to ${this.name}: ${why}${stderr}`, { cause: err, details: { retryInMs: Math.round(delay) } });
      this.lastError = e;
      log.warn({ server: this.name, err: e.message, retryInMs: Math.round(delay) }, "mcp server connect failed");
      throw e;
    }
    this.failures = 0;
    this.connects++;
    this.live = live;
    log.info({ server: this.name, connects: this.connects, tools: live.tools.size }, "mcp server connected");
    return live;
  }

  private makeTransport(): AnyTransport {
    const where = `mcpServers.${this.name}`;
    const c = this.config;
    if (isHttpServer(c)) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(c.headers ?? {})) headers[k] = expandEnv(v, `${where}.headers.${k}`);
      return new StreamableHTTPClientTransport(new URL(expandEnv(c.url, `${where}.url`)), {
        requestInit: { headers },
        reconnectionOptions: { initialReconnectionDelay: 250, maxReconnectionDelay: 5_000, reconnectionDelayGrowFactor: 2, maxRetries: 2 },
      });
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(c.env ?? {})) env[k] = expandEnv(v, `${where}.env.${k}`);
    return new ProcessGroupStdioTransport({
      command: expandEnv(c.command, `${where}.command`),
      args: (c.args ?? []).map((a, i) => expandEnv(a, `${where}.args.${i}`)),
      env,
      ...(c.cwd !== undefined ? { cwd: expandEnv(c.cwd, `${where}.cwd`) } : {}),
      label: this.name,
    });
  }

  private onClosed(live: Live): void {
    if (!live.dead) {
      live.dead = true;
      live.deathReason ??= this.crashed(live, undefined);
      log.warn({ server: this.name, reason: live.deathReason.message }, "mcp server connection lost");
    }
    if (this.live === live) this.live = undefined;
  }

  private crashed(live: Live, cause: unknown): McpClientError {
    const t = live.transport;
    if (t instanceof ProcessGroupStdioTransport) {
      if (t.violation) return new McpProtocolError(this.name, `${this.name} broke the protocol: ${t.violation}`);
      const how = t.exit ? (t.exit.signal ? `was killed by ${t.exit.signal}` : `exited with status ${t.exit.code}`) : "closed its connection";
      const stderr = t.stderr.trim() ? `; its stderr ends: ${t.stderr.trim().slice(-500)}` : "";
      return new McpServerCrashedError(this.name, `${this.name} ${how}${stderr}`, cause === undefined ? {} : { cause });
    }
    return new McpServerCrashedError(this.name, `${this.name}: the connection closed`, cause === undefined ? {} : { cause });
  }

  /** Declares the connection dead and tears it down; calls in flight fail with `reason`. */
  private kill(live: Live, reason: McpClientError): void {
    if (this.live === live) this.live = undefined;
    if (live.dead) return;
    live.dead = true;
    live.deathReason = reason;
    log.warn({ server: this.name, reason: reason.message }, "mcp server connection dropped");
    void this.shutdown(live, reason);
  }

  private checkHealth(live: Live): void {
    if (live.dead || live.health) return;
    live.health = live.client.ping({ timeout: HEALTH_CHECK_TIMEOUT_MS }).then(
      () => void (live.health = undefined),
      () => this.kill(live, new McpTimeoutError(this.name, `${this.name} stopped answering (no answer to ping after a call timed out); restarting it`)),
    );
  }

  private async shutdown(live: Live, reason: McpClientError | undefined): Promise<void> {
    live.dead = true;
    if (reason) live.deathReason ??= reason;
    const t = live.transport;
    try {
      if (t instanceof ProcessGroupStdioTransport) await t.kill();
      else {
        // Be polite to a healthy HTTP server (end the session), but never wait long for it.
        if (!reason || reason.reason === "unavailable") await Promise.race([t.terminateSession().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
        await t.close();
      }
    } catch (err) {
      log.debug({ server: this.name, err: (err as Error).message }, "mcp transport close failed");
    }
  }
}

function exposeTool(server: string, t: Tool): UpstreamTool {
  return {
    name: `${server}.${t.name}`,
    server,
    tool: t.name,
    ...(t.title !== undefined ? { title: t.title } : {}),
    ...(t.description !== undefined ? { description: t.description } : {}),
    inputSchema: t.inputSchema,
    ...(t.outputSchema !== undefined ? { outputSchema: t.outputSchema } : {}),
    ...(t.annotations !== undefined ? { annotations: t.annotations } : {}),
  };
}

/** A zod validation failure (the SDK parses results with zod, classic or mini, whose errors differ in name). */
function isSchemaError(err: unknown): boolean {
  return typeof err === "object" && err !== null && Array.isArray((err as { issues?: unknown }).issues) && /ZodError/.test((err as Error).name ?? "");
}

function causeMessage(err: unknown): string {
  const c = (err as { cause?: unknown } | undefined)?.cause;
  return c instanceof Error ? ` (${c.message})` : "";
}

/** Waits for `p` within the caller's signal and deadline (the shared work itself goes on for other callers). */
function within<T>(p: Promise<T>, signal: AbortSignal | undefined, deadlineAt: number, server: string): Promise<T> {
  return raceAbort(p, signal, () => new McpClientError(server, "cancelled", "CANCELLED", `call to ${server} was cancelled`), {
    ms: deadlineAt - Date.now(),
    expired: () => new McpTimeoutError(server, `${server} was not ready within the call's deadline`),
  });
}
