// The daemon's HTTP API (/v1/...), health, metrics and the MCP endpoint, routed by hono. The only place errors become HTTP.
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { StringDecoder } from "node:string_decoder";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { stream } from "hono/streaming";
import type { z } from "zod";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import type { McpHttpHandler } from "../mcp/server/serve-http.js";
import { parseToolArgs } from "../tools/dispatch.js";
import { isToolName, TOOL_NAMES } from "../tools/registry.js";
import { packageVersion } from "../util/pkg.js";
import { errorResponse } from "./http-errors.js";
import { approvalAnswerBody, auditQuery, createSandboxBody, type CommandStreamLine } from "./schemas.js";
import type { Daemon } from "./service.js";

export type Transport = "unix" | "tcp";

export interface ApiBindings {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
  transport: Transport;
}

type Env = { Bindings: ApiBindings };
type Ctx = Context<Env>;

export interface ApiOptions {
  daemon: Daemon;
  /** sha256 of the bearer token TCP clients must send (the Unix socket is guarded by its mode). */
  tokenDigest?: Buffer;
  mcp?: McpHttpHandler;
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

export function createApi(o: ApiOptions): Hono<Env> {
  const { daemon } = o;
  const app = new Hono<Env>();

  app.onError((err, c) => {
    const e = toLuminaGuardError(err);
    daemon.metrics.errors.inc({ code: e.code });
    if (e.code === "INTERNAL") log.error({ err: String((err as Error)?.stack ?? err), path: c.req.path }, "daemon: internal error");
    return errorResponse(e);
  });
  app.notFound((c) => {
    daemon.metrics.errors.inc({ code: "NOT_FOUND" });
    return errorResponse(new LuminaGuardError("NOT_FOUND", `no route ${c.req.method} ${c.req.path}; the API is under /${"v1"}/`));
  });

  // TCP clients need the token; health stays open so a load balancer or systemd can probe it.
  app.use("*", async (c, next) => {
    if (c.env.transport === "tcp" && o.tokenDigest !== undefined && c.req.path !== "/healthz") {
      if (!bearerOk(c.req.header("authorization"), o.tokenDigest)) throw new LuminaGuardError("UNAUTHORIZED", "missing or wrong bearer token");
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

  app.get("/healthz", (c) => c.json({ status: "ok", pid: process.pid, version: packageVersion(), uptimeS: Math.round((Date.now() - daemon.startedAt) / 1000) }));
  app.get("/readyz", (c) => {
    const r = daemon.readiness();
    return c.json(r, r.ready ? 200 : 503);
  });
  app.get("/metrics", async (c) => c.body(await daemon.metrics.text(), 200, { "content-type": daemon.metrics.contentType }));

  app.post("/v1/sandboxes", async (c) => c.json(await daemon.create(await body(c, createSandboxBody), c.req.raw.signal), 201));
  app.get("/v1/sandboxes", (c) => c.json({ sandboxes: daemon.list() }));
  app.get("/v1/sandboxes/:id", (c) => c.json(daemon.describe(c.req.param("id"))));
  app.delete("/v1/sandboxes/:id", async (c) => {
    await daemon.kill(c.req.param("id"));
    return c.json({ id: c.req.param("id"), killed: true });
  });
  app.post("/v1/sandboxes/:id/tools/:name", async (c) => {
    const name = toolName(c);
    const result = await daemon.callTool(c.req.param("id"), name, await rawJson(c), { signal: c.req.raw.signal });
    return c.json(result);
  });
  // execute_command with its output as it comes: NDJSON lines, then one `result` or `error` line.
  app.post("/v1/sandboxes/:id/commands", async (c) => {
    const id = c.req.param("id");
    // What can fail before the command runs (no such sandbox, bad arguments) is a plain error response.
    daemon.describe(id);
    const args = parseToolArgs("execute_command", await rawJson(c));
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
        const result = await daemon.callTool(id, "execute_command", args, { signal: controller.signal, onStdout: out("stdout"), onStderr: out("stderr") });
        for (const k of ["stdout", "stderr"] as const) {
          const rest = decoders[k].end();
          if (rest !== "") send({ stream: k, data: rest });
        }
        send({ result });
      } catch (err) {
        const e = toLuminaGuardError(err);
        daemon.metrics.errors.inc({ code: e.code });
        send({ error: e.toJSON() });
      }
      await chain;
    });
  });

  app.get("/v1/approvals", (c) => c.json({ pending: daemon.approvals.pending() }));
  app.post("/v1/approvals/:id", async (c) => {
    const a = await body(c, approvalAnswerBody);
    const id = c.req.param("id");
    const actor = `http:${a.actor ?? (c.env.transport === "unix" ? "unix-socket" : "bearer-token")}`;
    const ok = daemon.approvals.answer(id, { approve: a.decision === "approve", actor, ...(a.reason !== undefined ? { reason: a.reason } : {}) });
    if (!ok) throw new LuminaGuardError("NOT_FOUND", `no pending approval ${JSON.stringify(id)} (answered, expired, or never asked)`);
    return c.json({ id, decision: a.decision, actor });
  });
  app.get("/v1/audit", (c) => {
    const q = auditQuery.safeParse({ tail: c.req.query("tail") });
    if (!q.success) throw new LuminaGuardError("INVALID_ARGUMENT", "tail must be an integer from 1 to 10000");
    return c.json(daemon.auditTail(q.data.tail ?? 100));
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
