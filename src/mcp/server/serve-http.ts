// `luminaguard mcp --transport http`: Streamable HTTP on loopback, bearer token, one session (and sandbox) per MCP session id.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../shared/jsonl.js";
import { DEFAULT_IDLE_MS, DEFAULT_MAX_IN_FLIGHT, createSessionServer, poolFor, type McpServeOptions } from "./server.js";
import { BoundedEventStore } from "./event-store.js";
import { SandboxSession } from "./session.js";

export const TOKEN_ENV = "LUMINAGUARD_MCP_TOKEN";
const MCP_PATH = "/mcp";

interface HttpServeOptions extends McpServeOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Bearer token clients must send; default `$LUMINAGUARD_MCP_TOKEN`, else a fresh random one. */
  token?: string;
  maxSessions?: number;
  maxSessionsPerClient?: number;
  freshIdleMs?: number;
  maxBodyBytes?: number;
}

export interface McpHttpServer {
  url: string;
  token: string;
  /** True when the token was generated here (the caller prints it once). */
  tokenGenerated: boolean;
  sessions(): SandboxSession[];
  /** Sessions ended to make room for new ones, since start. */
  readonly evicted: number;
  close(): Promise<void>;
}

interface Entry {
  session: SandboxSession;
  server: Server;
  transport: StreamableHTTPServerTransport;
  events: BoundedEventStore;
  /** Whose session this is, for fairness: remote address and the initialize's clientInfo.name. */
  client: string;
  /** The protocol version negotiated at initialize. */
  protocolVersion: string;
}

/** Idle time of a session that initialized but never called a tool (a client that left without DELETE). */
export const DEFAULT_FRESH_IDLE_MS = 30_000;
/** What a client told 503 (every session busy) is asked to wait, in seconds. */
const RETRY_AFTER_S = 2;
/** Client reconnection delay announced in SSE priming events (ms). */
const SSE_RETRY_MS = 1000;

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** The MCP endpoint without its listener, to mount on another server (the daemon's `/mcp`). */
export interface McpHttpHandler {
  /** Serves one request to the endpoint path. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  sessions(): SandboxSession[];
  /** Sessions ended to make room for new ones, since start. */
  readonly evicted: number;
  /** Ends every session (and its sandbox); drains the pool if it made its own. */
  close(): Promise<void>;
}

export interface McpHandlerOptions extends McpServeOptions {
  /** Host the listener is bound to: browsers' Origin must be loopback or this. */
  host: string;
  /** sha256 of the bearer token to require; undefined when the caller authenticates (the daemon's socket). */
  tokenDigest?: Buffer;
  /**
   * Sessions at once. At the cap a new session evicts the least recently used idle one (no call in flight), taken
   * from the client holding the most sessions; only when none is idle does the new client get 503 + Retry-After.
   */
  maxSessions?: number;
  /** Sessions one client (address + clientInfo.name) may hold; at its share it evicts its own LRU idle session. Default 3/4 of maxSessions. */
  maxSessionsPerClient?: number;
  /** Idle time of a session that never called a tool (default DEFAULT_FRESH_IDLE_MS). */
  freshIdleMs?: number;
  maxBodyBytes?: number;
}

export async function createMcpHttpHandler(o: McpHandlerOptions): Promise<McpHttpHandler> {
  const host = o.host;
  const tokenDigest = o.tokenDigest;
  const maxSessions = o.maxSessions ?? 32;
  const perClient = Math.max(1, Math.min(maxSessions, o.maxSessionsPerClient ?? Math.ceil((maxSessions * 3) / 4)));
  let evicted = 0;
  const maxBodyBytes = o.maxBodyBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const { pool, owned } = await poolFor(o, { minSize: 2, maxSize: 8 });
  const sessions = new Map<string, Entry>();
  let initializing = 0;
  let closing = false;

  const endSession = async (id: string): Promise<void> => {
    const e = sessions.get(id);
    if (!e) return;
    sessions.delete(id);
    log.info({ session: id }, "mcp http session ended");
    await e.session.close();
    await e.server.close().catch(() => undefined);
    e.events.clear();
  };

  /**
   * Makes room for one more session of `client`: evicts an idle session when the client is at its share or the
   * server at its cap. False when nothing can be evicted (every candidate has a call in flight).
   */
  const admit = (client: string): boolean => {
    const all = [...sessions.values()];
    const mine = all.filter((e) => e.client === client);
    let candidates: Entry[];
    if (mine.length >= perClient) candidates = mine;
    else if (sessions.size + initializing >= maxSessions) candidates = all;
    else return true;
    const held = new Map<string, number>();
    for (const e of all) held.set(e.client, (held.get(e.client) ?? 0) + 1);
    const idle = candidates.filter((e) => !e.session.busy && !e.session.closed);
    // The heaviest holder gives up its least recently used idle session first.
    idle.sort((a, b) => (held.get(b.client) ?? 0) - (held.get(a.client) ?? 0) || a.session.lastActive - b.session.lastActive);
    const victim = idle[0];
    if (!victim) return false;
    evicted++;
    log.info({ session: victim.session.id, client: victim.client, idleMs: Date.now() - victim.session.lastActive }, "mcp http session evicted to make room");
    void endSession(victim.session.id);
    return true;
  };

  const newSession = (client: string, protocolVersion: string): Entry => {
    const id = randomUUID();
    const session = new SandboxSession({
      id,
      transport: "http",
      pool,
      idleMs: o.idleMs ?? DEFAULT_IDLE_MS,
      freshIdleMs: Math.min(o.freshIdleMs ?? DEFAULT_FRESH_IDLE_MS, o.idleMs ?? DEFAULT_IDLE_MS),
      maxInFlight: o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      // A session nobody uses any more (client gone without DELETE) is closed with its sandbox.
      onIdle: () => void endSession(id),
    });
    const server = createSessionServer(session, o);
    // Resumability: each response stream starts with a priming event (id, retry); a client that lost a stream
    // reconnects with Last-Event-ID and gets what it missed, from this session's bounded store.
    const events = new BoundedEventStore();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      eventStore: events,
      retryInterval: SSE_RETRY_MS,
      onsessioninitialized: (sid) => {
        sessions.set(sid, entry);
        log.info({ session: sid }, "mcp http session started");
      },
      onsessionclosed: (sid) => void endSession(sid),
      maxRequestBodySize: maxBodyBytes,
    });
    const entry: Entry = { session, server, transport, events, client, protocolVersion };
    server.onclose = () => void endSession(id);
    server.onerror = (err) => log.debug({ session: id, err: err.message }, "mcp http transport error");
    return entry;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname !== MCP_PATH) return void sendJson(res, 404, rpcError(-32000, `not found; the MCP endpoint is ${MCP_PATH}`));
    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(origin, host)) return void sendJson(res, 403, rpcError(-32000, "origin not allowed"));
    if (origin !== undefined) corsHeaders(res, origin);
    if (req.method === "OPTIONS") return void res.writeHead(204).end();
    if (tokenDigest !== undefined && !authorized(req.headers.authorization, tokenDigest)) {
      res.setHeader("WWW-Authenticate", 'Bearer realm="luminaguard"');
      return void sendJson(res, 401, rpcError(-32001, "missing or wrong bearer token"));
    }
    if (closing) return void sendJson(res, 503, rpcError(-32000, "server is shutting down"));
    let body: unknown;
    if (req.method === "POST") {
      const read = await readJsonBody(req, maxBodyBytes);
      if (!read.ok) {
        res.setHeader("Connection", "close");
        return void sendJson(res, read.status, rpcError(read.status === 413 ? -32600 : -32700, read.message));
      }
      body = read.value;
    }
    const sid = req.headers["mcp-session-id"];
    if (typeof sid === "string") {
      const e = sessions.get(sid);
      if (!e) return void sendJson(res, 404, rpcError(-32001, "session not found (ended or idle); initialize a new one"));
      e.session.touch();
      pinProtocolVersion(req, e.protocolVersion);
      cancelOnDisconnect(req, res, e.session, body);
      await e.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== "POST" || !isInitializeMessage(body)) return void sendJson(res, 400, rpcError(-32000, "bad request: no valid mcp-session-id header"));
    const init = initializeParams(body);
    const client = `${req.socket.remoteAddress ?? "local"}|${init.clientName}`;
    if (!admit(client)) {
      res.setHeader("Retry-After", String(RETRY_AFTER_S));
      return void sendJson(res, 503, rpcError(-32000, `every session has a call in flight (limit ${maxSessions}, ${perClient} per client); retry in ${RETRY_AFTER_S} s`));
    }
    initializing++;
    const e = newSession(client, init.protocolVersion);
    try {
      await e.server.connect(e.transport);
      await e.transport.handleRequest(req, res, body);
    } finally {
      initializing--;
      // An initialize that never registered a session: release what it made.
      if (!sessions.has(e.session.id)) {
        await e.session.close();
        await e.server.close().catch(() => undefined);
      }
    }
  };

  return {
    handle,
    sessions: () => [...sessions.values()].map((e) => e.session),
    get evicted() {
      return evicted;
    },
    close: async () => {
      if (closing) return;
      closing = true;
      await Promise.allSettled([...sessions.keys()].map((id) => endSession(id)));
      if (owned) await pool.drain();
    },
  };
}

export async function serveHttp(o: HttpServeOptions = {}): Promise<McpHttpServer> {
  const envToken = process.env[TOKEN_ENV];
  const token = o.token ?? (envToken ? envToken : randomBytes(32).toString("base64url"));
  const host = o.host ?? "127.0.0.1";
  const mcp = await createMcpHttpHandler({ ...o, host, tokenDigest: sha256(token) });
  const http: HttpServer = createServer((req, res) => {
    mcp.handle(req, res).catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, "mcp http request failed");
      if (!res.headersSent) sendJson(res, 500, rpcError(-32603, "internal error"));
      else res.destroy();
    });
  });
  // Long tool calls stream their answer on an open response; only slow request bodies are cut.
  http.requestTimeout = 60_000;
  http.headersTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    http.once("error", (err) => reject(new LuminaGuardError("IO_ERROR", `cannot listen on ${host}:${o.port ?? 0}: ${err.message}`, { cause: err })));
    http.listen(o.port ?? 0, host, () => resolve());
  });
  const addr = http.address() as AddressInfo;
  const urlHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  if (!LOOPBACK.has(host)) log.warn({ host }, "mcp http server is not bound to loopback: anyone who can reach it and has the token can run tools");

  return {
    url: `http://${urlHost}:${addr.port}${MCP_PATH}`,
    token,
    tokenGenerated: o.token === undefined && !envToken,
    sessions: () => mcp.sessions(),
    get evicted() {
      return mcp.evicted;
    },
    close: async () => {
      const closed = mcp.close();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      await closed;
    },
  };
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** Constant-time: both sides are hashed to the same length before comparing. */
function authorized(header: string | undefined, tokenDigest: Buffer): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m !== null && timingSafeEqual(sha256(m[1] as string), tokenDigest);
}

/** Browsers send Origin: only pages served from this machine may talk to a loopback server (DNS rebinding). */
function originAllowed(origin: string, host: string): boolean {
  try {
    const h = new URL(origin).hostname;
    return LOOPBACK.has(h) || h === host;
  } catch {
    return false;
  }
}

function corsHeaders(res: ServerResponse, origin: string): void {
  res.setHeader("Access-Control-Allow-Origin", origin);
  res.setHeader("Vary", "Origin");
  res.setHeader("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
  res.setHeader("Access-Control-Allow-Headers", "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id");
  res.setHeader("Access-Control-Expose-Headers", "mcp-session-id, mcp-protocol-version, retry-after");
}

/** What the initialize request asked for: the version the SDK will negotiate (as it does), and the client's name. */
function initializeParams(body: unknown): { protocolVersion: string; clientName: string } {
  const init = (Array.isArray(body) ? body : [body]).find((m) => isInitializeRequest(m)) as { params: { protocolVersion: string; clientInfo: { name: string } } } | undefined;
  const requested = init?.params.protocolVersion ?? "";
  return {
    protocolVersion: SUPPORTED_PROTOCOL_VERSIONS.includes(requested) ? requested : LATEST_PROTOCOL_VERSION,
    clientName: (init?.params.clientInfo.name ?? "").slice(0, 64),
  };
}

/**
 * The session's negotiated protocol version governs its streams (e.g. SSE priming events, sent only to clients of
 * 2025-11-25 or later): a request whose header names another supported version is treated as the negotiated one.
 * An unsupported header is left for the SDK to refuse.
 */
function pinProtocolVersion(req: IncomingMessage, negotiated: string): void {
  const header = req.headers["mcp-protocol-version"];
  if (typeof header !== "string" || header === negotiated || !SUPPORTED_PROTOCOL_VERSIONS.includes(header)) return;
  req.headers["mcp-protocol-version"] = negotiated;
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if ((req.rawHeaders[i] as string).toLowerCase() === "mcp-protocol-version") req.rawHeaders[i + 1] = negotiated;
  }
}

function isInitializeMessage(body: unknown): boolean {
  return Array.isArray(body) ? body.some((m) => isInitializeRequest(m)) : isInitializeRequest(body);
}

/** A client that drops the connection before its answer came gets its calls cancelled (commands killed). */
function cancelOnDisconnect(req: IncomingMessage, res: ServerResponse, session: SandboxSession, body: unknown): void {
  if (req.method !== "POST") return;
  const ids = (Array.isArray(body) ? body : [body]).flatMap((m) => {
    const r = m as { id?: unknown; method?: unknown } | null;
    return r && typeof r.method === "string" && (typeof r.id === "string" || typeof r.id === "number") ? [r.id] : [];
  });
  if (ids.length === 0) return;
  res.once("close", () => {
    if (!res.writableFinished) for (const id of ids) session.abort(id);
  });
}

type BodyResult = { ok: true; value: unknown } | { ok: false; status: 400 | 413; message: string };

function readJsonBody(req: IncomingMessage, max: number): Promise<BodyResult> {
  const tooLarge: BodyResult = { ok: false, status: 413, message: `request body exceeds the ${max}-byte limit` };
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    req.resume();
    return Promise.resolve(tooLarge);
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      // Stop buffering, let the rest drain; the answer closes the connection.
      req.off("data", onData);
      req.off("end", onEnd);
      req.resume();
      resolve(tooLarge);
    };
    const onEnd = (): void => {
      try {
        resolve({ ok: true, value: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
      } catch (err) {
        resolve({ ok: false, status: 400, message: `parse error: ${(err as Error).message}` });
      }
    };
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", () => resolve({ ok: false, status: 400, message: "request body could not be read" }));
  });
}

function rpcError(code: number, message: string): object {
  return { jsonrpc: "2.0", id: null, error: { code, message } };
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  if (res.headersSent) return;
  res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
}
