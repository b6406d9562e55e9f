// The daemon's HTTP API (/v1/...), health, metrics and the MCP endpoint, routed by hono. The only place errors become HTTP.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { StringDecoder } from "node:string_decoder";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { stream } from "hono/streaming";
import type { z } from "zod";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import type { McpClientPool } from "../mcp/client/pool.js";
import type { McpHttpHandler } from "../mcp/server/serve-http.js";
import { parseToolArgs } from "../tools/dispatch.js";
import { isToolName, TOOL_NAMES } from "../tools/registry.js";
import { packageVersion } from "../util/pkg.js";
import { errorResponse } from "./http-errors.js";
import { approvalAnswerBody, auditQuery, createSandboxBody, type CommandStreamLine } from "./schemas.js";
import type { Daemon } from "./service.js";
import { UI_HEADERS, uiFile } from "./ui.js";

export type Transport = "unix" | "tcp";

export interface ApiBindings {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
  transport: Transport;
}

/** How a request was let in: the socket's mode, the bearer token, or the dashboard's cookie (TCP only). */
type AuthKind = "unix" | "open" | "bearer" | "cookie";
type Env = { Bindings: ApiBindings; Variables: { auth: AuthKind } };
type Ctx = Context<Env>;

export interface ApiOptions {
  daemon: Daemon;
  /** sha256 of the bearer token TCP clients must send (the Unix socket is guarded by its mode). */
  tokenDigest?: Buffer;
  mcp?: McpHttpHandler;
  /** The pooled MCP client for the upstream servers of the config file's `mcpServers`. */
  upstream?: McpClientPool;
  /** Largest request body; a write_file of 8 MiB is about 11 MiB as JSON. */
  maxBodyBytes?: number;
}

export function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** Constant-time: both sides hashed to the same length first. */
function bearerOk(header: string | undefined, digest: Buffer): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m !== null && timingSafeEqual(sha256(m[1] as string), digest);
}

/** The dashboard's session cookie: HttpOnly, SameSite=Strict, valid until the daemon restarts. */
export const UI_COOKIE = "luminaguard_ui";

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** A Host header naming a loopback address (any port): a DNS-rebinding page sends its own name instead. */
function loopbackHost(host: string | undefined): boolean {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(host ?? "");
  const name = m?.[1]?.toLowerCase();
  return name !== undefined && (name === "localhost" || name === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name));
}

/** What the cookie may do: read the API and the page, and answer approvals; nothing else. */
function cookieRoute(method: string, path: string): boolean {
  if (method === "GET") return path === "/ui" || path.startsWith("/ui/") || path.startsWith("/v1/");
  return method === "POST" && /^\/v1\/approvals\/[^/]+$/.test(path);
}

/**
 * A request with the cookie must come from the dashboard itself: a loopback Host (DNS rebinding), no
 * cross-site or same-site fetch (another local port is "same-site" and gets SameSite=Strict cookies),
 * and for the approval POST an Origin equal to ours and a JSON body (which a form cannot send).
 */
function cookieRequestOk(c: Ctx): string | undefined {
  const host = c.req.header("host");
  if (!loopbackHost(host)) return `Host ${JSON.stringify(host ?? "")} is not a loopback address`;
  const site = c.req.header("sec-fetch-site");
  if (site !== undefined && site !== "same-origin" && site !== "none") return `a ${site} request cannot use the dashboard's cookie`;
  if (c.req.method !== "GET") {
    const origin = c.req.header("origin");
    if (origin !== `http://${host}`) return `Origin ${JSON.stringify(origin ?? "")} is not this dashboard's (http://${host})`;
    if (!/^application\/json\b/i.test(c.req.header("content-type") ?? "")) return "the approval must be sent as application/json";
  }
  return undefined;
}

async function body<T extends z.ZodType>(c: Ctx, schema: T): Promise<z.infer<T>> {
  let raw: unknown;
  const text = await c.req.text();
  try {
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch (err) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `the request body is not JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "body"}: ${i.message}`);
    throw new LuminaGuardError("INVALID_ARGUMENT", issues.join("; "), { details: { issues } });
  }
  return parsed.data as z.infer<T>;
}

/** A tool's raw arguments (validated by the daemon with the tools' own schemas). */
async function rawJson(c: Ctx): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `the request body is not JSON: ${(err as Error).message}`);
  }
}

function toolName(c: Ctx): (typeof TOOL_NAMES)[number] {
  const name = c.req.param("name") ?? "";
  if (!isToolName(name)) throw new LuminaGuardError("NOT_FOUND", `unknown tool ${JSON.stringify(name)}; tools: ${TOOL_NAMES.join(", ")}`);
  return name;
}

/** Each connection's name for the admission queue when the request names no client. */
const connectionIds = new WeakMap<object, string>();
let nextConnection = 0;

/**
 * Who asks, for the admission queue's fairness: the `X-LuminaGuard-Client` header, else the connection
 * (a client that opens many connections is many clients; one that names itself is one).
 */
function clientOf(c: Ctx): { client?: string; connection: string } {
  const named = c.req.header("x-luminaguard-client");
  const sock = c.env.incoming.socket;
  let connection = connectionIds.get(sock);
  if (connection === undefined) connectionIds.set(sock, (connection = `conn:${++nextConnection}`));
  return { connection, ...(named !== undefined && named !== "" ? { client: named.slice(0, 200) } : {}) };
}

/** `X-LuminaGuard-Deadline-Ms`: how long a call may wait for room before CAPACITY. */
function waitOf(c: Ctx): { waitMs?: number } {
  const h = c.req.header("x-luminaguard-deadline-ms");
  if (h === undefined) return {};
  const n = Number(h);
  if (!/^\d{1,7}$/.test(h) || n > 3_600_000) throw new LuminaGuardError("INVALID_ARGUMENT", "X-LuminaGuard-Deadline-Ms must be an integer from 0 to 3600000");
  return { waitMs: n };
}

export function createApi(o: ApiOptions): Hono<Env> {
  const { daemon } = o;
  const app = new Hono<Env>();

  app.onError((err, c) => {
    const e = toLuminaGuardError(err);
    daemon.metrics.errors.inc({ code: e.code });
    daemon.noteError(e, `${c.req.method} ${c.req.path}`);
    if (e.code === "INTERNAL") log.error({ err: String((err as Error)?.stack ?? err), path: c.req.path }, "daemon: internal error");
    return errorResponse(e);
  });
  app.notFound((c) => {
    daemon.metrics.errors.inc({ code: "NOT_FOUND" });
    const e = new LuminaGuardError("NOT_FOUND", `no route ${c.req.method} ${c.req.path}; the API is under /${"v1"}/`);
    daemon.noteError(e, `${c.req.method} ${c.req.path}`);
    return errorResponse(e);
  });

  // The dashboard's cookie: a random secret of this daemon's lifetime, given for the token (see /ui below).
  const uiSecret = randomBytes(32).toString("base64url");
  const uiSecretDigest = sha256(uiSecret);

  // TCP clients need the token; health stays open so a load balancer or systemd can probe it. The
  // dashboard trades the token once (GET /ui?token=...) for a cookie that reads and answers approvals.
  app.use("*", async (c, next) => {
    if (c.env.transport !== "tcp" || o.tokenDigest === undefined) c.set("auth", c.env.transport === "unix" ? "unix" : "open");
    else if (c.req.path === "/healthz") c.set("auth", "open");
    else if (bearerOk(c.req.header("authorization"), o.tokenDigest)) c.set("auth", "bearer");
    else if (c.req.method === "GET" && c.req.path === "/ui" && c.req.query("token") !== undefined) {
      // The login: the token in the address once, then a cookie and an address without it.
      if (!loopbackHost(c.req.header("host"))) throw new LuminaGuardError("PERMISSION_DENIED", "the dashboard answers only on a loopback Host");
      if (!timingSafeEqual(sha256(c.req.query("token") ?? ""), o.tokenDigest)) throw new LuminaGuardError("UNAUTHORIZED", "wrong token for the dashboard");
      return c.body(null, 303, { ...UI_HEADERS, location: "/ui", "set-cookie": `${UI_COOKIE}=${uiSecret}; Path=/; HttpOnly; SameSite=Strict` });
    } else {
      const cookie = cookieValue(c.req.header("cookie"), UI_COOKIE);
      if (cookie === undefined || !timingSafeEqual(sha256(cookie), uiSecretDigest)) {
        throw new LuminaGuardError("UNAUTHORIZED", c.req.path.startsWith("/ui") ? "open the dashboard once as /ui?token=TOKEN" : "missing or wrong bearer token");
      }
      if (!cookieRoute(c.req.method, c.req.path)) throw new LuminaGuardError("UNAUTHORIZED", "the dashboard's cookie reads the API and answers approvals; anything else needs the bearer token");
      const refused = cookieRequestOk(c);
      if (refused !== undefined) throw new LuminaGuardError("PERMISSION_DENIED", refused);
      c.set("auth", "cookie");
    }
    await next();
  });
  // Draining: nothing new starts; reads (listings, metrics, health) still answer.
  app.use("/v1/*", async (c, next) => {
    if (daemon.draining && c.req.method !== "GET") throw new LuminaGuardError("SHUTTING_DOWN", "the daemon is shutting down and takes no new work");
    await next();
  });
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: o.maxBodyBytes ?? 16 * 1024 * 1024,
      onError: () => {
        throw new LuminaGuardError("FILE_TOO_LARGE", `the request body exceeds ${o.maxBodyBytes ?? 16 * 1024 * 1024} bytes`);
      },
    }),
  );

  // The dashboard: static files only (the data comes from /v1 by the page's own script).
  const sendUi = (c: Ctx, name: string): Response => {
    const f = uiFile(name);
    return c.body(new Uint8Array(f.body), 200, { ...UI_HEADERS, "content-type": f.type });
  };
  app.get("/ui", (c) => (c.req.query("token") !== undefined ? c.redirect("/ui", 303) : sendUi(c, "index.html")));
  app.get("/ui/", (c) => c.redirect("/ui", 303));
  app.get("/ui/:file", (c) => sendUi(c, c.req.param("file")));

  app.get("/healthz", (c) => c.json({ status: "ok", pid: process.pid, version: packageVersion(), uptimeS: Math.round((Date.now() - daemon.startedAt) / 1000) }));
  app.get("/readyz", (c) => {
    const r = daemon.readiness();
    return c.json(r, r.ready ? 200 : 503);
  });
  app.get("/metrics", async (c) => c.body(await daemon.metrics.text(), 200, { "content-type": daemon.metrics.contentType }));

  app.post("/v1/sandboxes", async (c) => {
    const receivedAt = Date.now();
    const who = clientOf(c);
    return c.json(await daemon.create(await body(c, createSandboxBody), c.req.raw.signal, who.client ?? who.connection, receivedAt), 201);
  });
  app.get("/v1/sandboxes", (c) => c.json({ sandboxes: daemon.list() }));
  app.get("/v1/cluster", async (c) => {
    if (!daemon.clusterView) throw new LuminaGuardError("NOT_FOUND", "this daemon is not a cluster node (serve --cluster)");
    return c.json(await daemon.clusterView());
  });
  app.get("/v1/sandboxes/:id", (c) => c.json(daemon.describe(c.req.param("id"))));
  app.delete("/v1/sandboxes/:id", async (c) => {
    await daemon.kill(c.req.param("id"));
    return c.json({ id: c.req.param("id"), killed: true });
  });
  app.post("/v1/sandboxes/:id/tools/:name", async (c) => {
    const name = toolName(c);
    const result = await daemon.callTool(c.req.param("id"), name, await rawJson(c), { signal: c.req.raw.signal, ...clientOf(c), ...waitOf(c) });
    return c.json(result);
  });
  // execute_command with its output as it comes: NDJSON lines, then one `result` or `error` line.
  app.post("/v1/sandboxes/:id/commands", async (c) => {
    const id = c.req.param("id");
    // What can fail before the command runs (no such sandbox, bad arguments) is a plain error response.
    daemon.describe(id);
    const args = parseToolArgs("execute_command", await rawJson(c));
    const who = { ...clientOf(c), ...waitOf(c) };
    return stream(c, async (s) => {
      const controller = new AbortController();
      s.onAbort(() => controller.abort());
      let chain: Promise<unknown> = Promise.resolve();
      const send = (line: CommandStreamLine): void => {
        chain = chain.then(() => s.writeln(JSON.stringify(line))).catch(() => undefined);
      };
      const decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
      const out = (streamName: "stdout" | "stderr") => (chunk: Buffer) => {
        const data = decoders[streamName].write(chunk);
        if (data !== "") send({ stream: streamName, data });
      };
      c.header("content-type", "application/x-ndjson; charset=utf-8");
      try {
        const result = await daemon.callTool(id, "execute_command", args, { signal: controller.signal, ...who, onStdout: out("stdout"), onStderr: out("stderr") });
        for (const k of ["stdout", "stderr"] as const) {
          const rest = decoders[k].end();
          if (rest !== "") send({ stream: k, data: rest });
        }
        send({ result });
      } catch (err) {
        const e = toLuminaGuardError(err);
        daemon.metrics.errors.inc({ code: e.code });
        daemon.noteError(e, `POST ${c.req.path}`);
        send({ error: e.toJSON() });
      }
      await chain;
    });
  });

  app.get("/v1/approvals", (c) => c.json({ pending: daemon.approvals.pending() }));
  app.post("/v1/approvals/:id", async (c) => {
    const a = await body(c, approvalAnswerBody);
    const id = c.req.param("id");
    // The dashboard's cookie names its own actor: the page cannot claim to be someone else.
    const actor = c.get("auth") === "cookie" ? "http:dashboard" : `http:${a.actor ?? (c.env.transport === "unix" ? "unix-socket" : "bearer-token")}`;
    const ok = daemon.approvals.answer(id, { approve: a.decision === "approve", actor, ...(a.reason !== undefined ? { reason: a.reason } : {}) });
    if (!ok) throw new LuminaGuardError("NOT_FOUND", `no pending approval ${JSON.stringify(id)} (answered, expired, or never asked)`);
    return c.json({ id, decision: a.decision, actor });
  });
  app.get("/v1/stats", async (c) => c.json(await daemon.stats()));
  app.get("/v1/audit", (c) => {
    const q = auditQuery.safeParse({ tail: c.req.query("tail") });
    if (!q.success) throw new LuminaGuardError("INVALID_ARGUMENT", "tail must be an integer from 1 to 10000");
    return c.json(daemon.auditTail(q.data.tail ?? 100));
  });

  // The upstream MCP servers of the config file, through the daemon's one pooled client (errors UPSTREAM_*).
  const upstream = (): McpClientPool => {
    if (!o.upstream) throw new LuminaGuardError("NOT_FOUND", "the daemon has no upstream MCP servers (the config file's mcpServers is empty)");
    return o.upstream;
  };
  app.get("/v1/mcp/servers", (c) => c.json({ servers: o.upstream ? o.upstream.status() : [] }));
  app.get("/v1/mcp/servers/:server/tools", async (c) => c.json({ tools: await upstream().listTools(c.req.param("server"), { signal: c.req.raw.signal }) }));
  app.post("/v1/mcp/servers/:server/tools/:tool", async (c) => {
    const pool = upstream();
    const raw = await rawJson(c);
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new LuminaGuardError("INVALID_ARGUMENT", "the tool's arguments must be a JSON object");
    const who = clientOf(c);
    const ticket = await daemon.admission.admit({ kind: "call", client: who.client ?? who.connection, ...waitOf(c), signal: c.req.raw.signal });
    try {
      return c.json(await pool.call(c.req.param("server"), c.req.param("tool"), raw as Record<string, unknown>, { signal: c.req.raw.signal }));
    } finally {
      ticket.release();
    }
  });

  // The MCP Streamable HTTP endpoint: the SDK's Node transport answers on the raw request and response.
  if (o.mcp) {
    const mcp = o.mcp;
    app.all("/mcp", async (c) => {
      if (daemon.draining) throw new LuminaGuardError("SHUTTING_DOWN", "the daemon is shutting down and takes no new work");
      await mcp.handle(c.env.incoming, c.env.outgoing);
      return RESPONSE_ALREADY_SENT;
    });
  }
  return app;
}
