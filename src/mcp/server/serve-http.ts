// `luminaguard mcp --transport http`: Streamable HTTP on loopback, bearer token, one session (and sandbox) per MCP session id.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../shared/jsonl.js";
import { DEFAULT_IDLE_MS, DEFAULT_MAX_IN_FLIGHT, createSessionServer, poolFor, type McpServeOptions } from "./server.js";
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
  maxBodyBytes?: number;
}

export interface McpHttpServer {
  url: string;
  token: string;
  /** True when the token was generated here (the caller prints it once). */
  tokenGenerated: boolean;
  sessions(): SandboxSession[];
  close(): Promise<void>;
}

interface Entry {
  session: SandboxSession;
  server: Server;
  transport: StreamableHTTPServerTransport;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** The MCP endpoint without its listener, to mount on another server (the daemon's `/mcp`). */
export interface McpHttpHandler {
  /** Serves one request to the endpoint path. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  sessions(): SandboxSession[];
  /** Ends every session (and its sandbox); drains the pool if it made its own. */
  close(): Promise<void>;
}

export interface McpHandlerOptions extends McpServeOptions {
  /** Host the listener is bound to: browsers' Origin must be loopback or this. */
  host: string;
  /** sha256 of the bearer token to require; undefined when the caller authenticates (the daemon's socket). */
  tokenDigest?: Buffer;
  maxSessions?: number;
  maxBodyBytes?: number;
}

export async function createMcpHttpHandler(o: McpHandlerOptions): Promise<McpHttpHandler> {
  const host = o.host;
  const tokenDigest = o.tokenDigest;
  const maxSessions = o.maxSessions ?? 32;
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
  };

  const newSession = (): Entry => {
    const id = randomUUID();
    const session = new SandboxSession({
      id,
      transport: "http",
      pool,
      idleMs: o.idleMs ?? DEFAULT_IDLE_MS,
      maxInFlight: o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      // A session nobody uses any more (client gone without DELETE) is closed with its sandbox.
      onIdle: () => void endSession(id),
    });
    const server = createSessionServer(session, o);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      onsessioninitialized: (sid) => {
        sessions.set(sid, entry);
        log.info({ session: sid }, "mcp http session started");
      },
      onsessionclosed: (sid) => void endSession(sid),
      maxRequestBodySize: maxBodyBytes,
    });
    const entry: Entry = { session, server, transport };
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
      cancelOnDisconnect(req, res, e.session, body);
      await e.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== "POST" || !isInitializeMessage(body)) return void sendJson(res, 400, rpcError(-32000, "bad request: no valid mcp-session-id header"));
    if (sessions.size + initializing >= maxSessions) return void sendJson(res, 503, rpcError(-32000, `too many sessions (limit ${maxSessions}); end one (DELETE) or wait for idle sessions to close`));
    initializing++;
    const e = newSession();
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
  res.setHeader("Access-Control-Expose-Headers", "mcp-session-id, mcp-protocol-version");
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
