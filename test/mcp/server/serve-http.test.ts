// The official SDK client against our Streamable HTTP server: auth, sessions with their own sandboxes, bad input, disconnects, storms.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { LuminaGuardError } from "../../../src/errors.js";
import { serveHttp, type McpHttpServer } from "../../../src/mcp/server/serve-http.js";
import type { ToolCallContext } from "../../../src/mcp/server/server.js";
import { tempWorkspace, unavailable } from "../../fixtures.js";
import { SERVE_ENTRY, alive, killTree, pidsWithCmdline, sdkHttpClient, spawnUntil, text, uniqueSleep, until } from "../helpers.js";

const INIT = { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } } };

async function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

describe("mcp server over Streamable HTTP (namespace)", async () => {
  const skip = await unavailable("namespace");

  test("the CLI binds loopback, prints a generated token once, and refuses requests without it", { skip }, async (t) => {
    const { child, stderr, match } = await spawnUntil(
      [process.execPath, SERVE_ENTRY, "mcp", "--approval", "off", "--transport", "http", "--port", "0", "--backend", "namespace"],
      /bearer token[^:]*: (\S+)\n/,
      { LUMINAGUARD_MCP_TOKEN: "" },
    );
    t.after(() => killTree(child, "SIGTERM"));
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(stderr())?.[1];
    assert.ok(url, stderr());
    const token = match[1] as string;
    assert.ok(token.length >= 32);
    assert.equal(stderr().split(token).length - 1, 1, "the token is printed exactly once");
    let out = "";
    child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    assert.equal((await post(url, INIT)).status, 401);
    assert.equal((await post(url, INIT, { authorization: "Bearer wrong" })).status, 401);
    assert.equal((await post(url, INIT, { authorization: `Bearer ${token}x` })).status, 401);
    assert.equal((await post(url, INIT, { authorization: `Bearer ${token}`, origin: "https://evil.example" })).status, 403);
    const { client } = await sdkHttpClient(url, token);
    const r = await client.callTool({ name: "execute_command", arguments: { command: "echo hi" } });
    assert.equal((r.structuredContent as { stdout: string }).stdout, "hi\n");
    await client.close();
    // SIGTERM: sessions closed, sandboxes killed, process exits.
    await killTree(child, "SIGTERM");
    assert.equal(child.exitCode ?? child.signalCode, 0);
    assert.equal(out, "", "nothing on stdout");
  });

  test("each session gets its own sandbox and workspace; DELETE reclaims it; others keep working", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: "t0ken-for-tests" });
    t.after(() => server.close());
    const a = await sdkHttpClient(server.url, server.token);
    const b = await sdkHttpClient(server.url, server.token);
    await a.client.callTool({ name: "write_file", arguments: { path: "who.txt", content: "a" } });
    await b.client.callTool({ name: "write_file", arguments: { path: "who.txt", content: "b" } });
    const ra = await a.client.callTool({ name: "read_file", arguments: { path: "who.txt" } });
    const rb = await b.client.callTool({ name: "read_file", arguments: { path: "who.txt" } });
    assert.equal(text(ra as never), "a");
    assert.equal(text(rb as never), "b");
    const sessions = server.sessions();
    assert.equal(sessions.length, 2);
    const [sa, sb] = sessions.map((s) => s.sandboxInfo);
    assert.ok(sa && sb && sa.workspace !== sb.workspace && sa.id !== sb.id);
    assert.equal(readFileSync(join(sa.workspace, "who.txt"), "utf8") + readFileSync(join(sb.workspace, "who.txt"), "utf8"), "ab");
    const sessionA = sessions.find((s) => s.id === a.transport.sessionId);
    const pidsA = sessionA?.sandboxInfo?.pids ?? [];
    assert.ok(pidsA.length > 0);
    await a.transport.terminateSession();
    await a.client.close();
    assert.ok(await until(() => pidsA.every((p) => !alive(p)), 10_000), "the ended session's sandbox is gone");
    assert.equal(server.sessions().length, 1);
    const again = await b.client.callTool({ name: "read_file", arguments: { path: "who.txt" } });
    assert.equal(text(again as never), "b");
    await b.client.close();
  });

  test("bad requests: unknown session, bad JSON, oversized body, no session header; the server keeps serving", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: "tok", maxBodyBytes: 64 * 1024 });
    t.after(() => server.close());
    const auth = { authorization: "Bearer tok" };
    assert.equal((await post(server.url, { jsonrpc: "2.0", id: 1, method: "ping" }, { ...auth, "mcp-session-id": "nope" })).status, 404);
    assert.equal((await post(server.url, "{not json", auth)).status, 400);
    assert.equal((await post(server.url, { jsonrpc: "2.0", id: 1, method: "ping" }, auth)).status, 400);
    const big = await post(server.url, { ...INIT, pad: "x".repeat(100 * 1024) }, auth);
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { error: { code: number } }).error.code, -32600);
    assert.equal((await fetch(server.url.replace("/mcp", "/other"), { headers: auth })).status, 404);
    const { client } = await sdkHttpClient(server.url, server.token);
    const unknown = await client.callTool({ name: "nope", arguments: {} }).catch((e: unknown) => e);
    assert.ok(unknown instanceof Error && /unknown tool/.test(unknown.message));
    const escape = await client.callTool({ name: "list_directory", arguments: { path: "/" } });
    assert.match(text(escape as never), /^PATH_ESCAPE: /);
    const ok = await client.callTool({ name: "execute_command", arguments: { command: ["true"] } });
    assert.equal((ok.structuredContent as { exitCode: number }).exitCode, 0);
    await client.close();
  });

  test("a client that disconnects mid-call: the command is killed; an idle session is reclaimed; others unaffected", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: "tok", idleMs: 1500 });
    t.after(() => server.close());
    const auth = { authorization: "Bearer tok" };
    const init = await post(server.url, INIT, auth);
    const sid = init.headers.get("mcp-session-id") as string;
    await init.text();
    const h = { ...auth, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
    await (await post(server.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h)).text();
    const other = await sdkHttpClient(server.url, server.token);
    const secs = uniqueSleep();
    const ac = new AbortController();
    const call = post(server.url, { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "execute_command", arguments: { command: ["sleep", secs] } } }, h, ac.signal);
    const session = server.sessions().find((s) => s.id === sid);
    assert.ok(session);
    assert.ok(await until(() => session.stats.inFlight === 1 && session.sandboxInfo !== undefined, 10_000));
    const pids = session.sandboxInfo?.pids ?? [];
    assert.ok(await until(() => pidsWithCmdline(`sleep ${secs}`).length === 1, 5000), "the command runs");
    ac.abort(); // the connection drops: no cancel notification, no DELETE
    await call.catch(() => undefined);
    assert.ok(await until(() => session.stats.inFlight === 0, 5000), "the call was cancelled");
    assert.ok(await until(() => pidsWithCmdline(`sleep ${secs}`).length === 0, 5000), "its process was killed");
    // Meanwhile the other session is served.
    const r = await other.client.callTool({ name: "execute_command", arguments: { command: "echo fine" } });
    assert.equal((r.structuredContent as { stdout: string }).stdout, "fine\n");
    // Nobody comes back: after the idle timeout the session and its sandbox are gone.
    assert.ok(await until(() => !server.sessions().some((s) => s.id === sid), 10_000), "vanished session closed");
    assert.ok(await until(() => pids.every((p) => !alive(p)), 5000), "its sandbox is killed");
    const gone = await post(server.url, { jsonrpc: "2.0", id: 3, method: "ping" }, h);
    assert.equal(gone.status, 404);
    await other.client.close();
  });

  test("per-session in-flight bound: excess gets errors, the server keeps serving", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: "tok", maxSessions: 2, maxInFlight: 4 });
    t.after(() => server.close());
    const a = await sdkHttpClient(server.url, server.token);
    const b = await sdkHttpClient(server.url, server.token);
    const calls = Array.from({ length: 40 }, () => a.client.callTool({ name: "execute_command", arguments: { command: ["sleep", "0.3"] } }));
    const rs = await Promise.all(calls);
    const busy = rs.filter((r) => r.isError && /^SESSION_BUSY: too many calls in flight/.test(text(r as never))).length;
    assert.ok(busy >= 30, `busy ${busy}`);
    assert.equal(rs.filter((r) => !r.isError).length + busy, 40);
    const ok = await b.client.callTool({ name: "read_file", arguments: { path: "x" } });
    assert.match(text(ok as never), /^NOT_FOUND: /, "the other session is served normally");
    await a.client.close();
    await b.client.close();
  });

  test("beforeToolCall can deny a call (POLICY_DENIED) and ask the user through elicitation", { skip }, async (t) => {
    const seen: ToolCallContext[] = [];
    const ws = tempWorkspace();
    const server: McpHttpServer = await serveHttp({
      backend: "namespace",
      port: 0,
      token: "tok",
      workspace: ws.dir,
      beforeToolCall: async (ctx) => {
        seen.push(ctx);
        if (ctx.tool === "execute_command") throw new LuminaGuardError("POLICY_DENIED", "commands need approval");
        if (ctx.tool === "write_file") {
          assert.equal(ctx.canElicit, true);
          const answer = await ctx.elicit(`Allow write_file ${JSON.stringify(ctx.args)}?`, { type: "object", properties: { allow: { type: "boolean" } }, required: ["allow"] }, { timeoutMs: 10_000 });
          if (answer.action !== "accept" || answer.content?.["allow"] !== true) throw new LuminaGuardError("POLICY_DENIED", "the user said no");
        }
      },
    });
    t.after(async () => {
      await server.close();
      ws.remove();
    });
    writeFileSync(join(ws.dir, "f.txt"), "shared workspace");
    const transport = new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: { Authorization: `Bearer ${server.token}` } } });
    const client = new Client({ name: "elicit-test", version: "1" }, { capabilities: { elicitation: {} } });
    const asked: string[] = [];
    client.setRequestHandler(ElicitRequestSchema, (req) => {
      asked.push(req.params.message);
      const allow = req.params.message.includes("yes.txt");
      return { action: "accept", content: { allow } };
    });
    await client.connect(transport);
    const denied = await client.callTool({ name: "execute_command", arguments: { command: "touch pwned" } });
    assert.equal(denied.isError, true);
    assert.match(text(denied as never), /^POLICY_DENIED: commands need approval/);
    const ok = await client.callTool({ name: "read_file", arguments: { path: "f.txt" } });
    assert.equal(text(ok as never), "shared workspace");
    const no = await client.callTool({ name: "write_file", arguments: { path: "no.txt", content: "x" } });
    assert.match(text(no as never), /^POLICY_DENIED: the user said no/);
    const yes = await client.callTool({ name: "write_file", arguments: { path: "yes.txt", content: "y" } });
    assert.equal(yes.isError, undefined);
    assert.equal(readFileSync(join(ws.dir, "yes.txt"), "utf8"), "y");
    assert.ok(!existsSync(join(ws.dir, "no.txt")) && !existsSync(join(ws.dir, "pwned")));
    assert.equal(asked.length, 2);
    assert.equal(seen.length, 4);
    assert.equal(seen[0]?.session.transport, "http");
    assert.deepEqual(seen[1]?.args, { path: "f.txt" });
    await client.close();
  });
});
