// Sessions that cannot be exhausted (LRU eviction of idle sessions, 503 only when all are busy, per-client shares,
// quick end of sessions that never called), MCP logging, and SSE resumability, over real HTTP on the namespace backend.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LoggingMessageNotificationSchema, type LoggingMessageNotification } from "@modelcontextprotocol/sdk/types.js";
import { approvalHook } from "../../../src/mcp/server/approval.js";
import { serveHttp } from "../../../src/mcp/server/serve-http.js";
import type { BeforeToolCall } from "../../../src/mcp/server/server.js";
import { BoundedEventStore } from "../../../src/mcp/server/event-store.js";
import { unavailable } from "../../fixtures.js";
import { alive, sdkHttpClient, sdkStdioClient, text, until } from "../helpers.js";

const TOKEN = "sessions-test-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };

function initBody(name: string, protocolVersion = "2025-11-25"): object {
  return { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion, capabilities: {}, clientInfo: { name, version: "1" } } };
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...AUTH, ...headers },
    body: JSON.stringify(body),
  });
}

/** Opens a session with a raw initialize and walks away (no initialized notification, no DELETE); returns its id. */
async function abandon(url: string, name: string): Promise<string> {
  const r = await post(url, initBody(name));
  assert.equal(r.status, 200, await r.clone().text());
  await r.text();
  return r.headers.get("mcp-session-id") as string;
}

describe("mcp http sessions cannot be exhausted (namespace)", async () => {
  const skip = await unavailable("namespace");

  test("at the cap a new session evicts the least recently used idle one and kills its sandbox; the evicted client gets 404", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: TOKEN, maxSessions: 2, maxSessionsPerClient: 2 });
    t.after(() => server.close());
    const a = await sdkHttpClient(server.url, TOKEN);
    const b = await sdkHttpClient(server.url, TOKEN);
    await a.client.callTool({ name: "execute_command", arguments: { command: "true" } });
    await b.client.callTool({ name: "execute_command", arguments: { command: "true" } });
    const sa = server.sessions().find((s) => s.id === a.transport.sessionId);
    const pids = sa?.sandboxInfo?.pids ?? [];
    assert.ok(pids.length > 0, "a's sandbox runs");
    await b.client.ping(); // b is now the more recently used
    const c = await sdkHttpClient(server.url, TOKEN);
    assert.deepEqual(new Set(server.sessions().map((s) => s.id)), new Set([b.transport.sessionId, c.transport.sessionId]), "a (LRU) was evicted");
    assert.ok(await until(() => pids.every((p) => !alive(p)), 5000), "the evicted session's sandbox is killed");
    const gone = await post(server.url, { jsonrpc: "2.0", id: 9, method: "ping" }, { "mcp-session-id": a.transport.sessionId as string, "mcp-protocol-version": "2025-11-25" });
    assert.equal(gone.status, 404);
    const r = await b.client.callTool({ name: "execute_command", arguments: { command: "echo still" } });
    assert.equal((r.structuredContent as { stdout: string }).stdout, "still\n");
    assert.equal(server.evicted, 1);
    await b.client.close();
    await c.client.close();
  });

  test("only when every session has a call in flight: 503 with Retry-After; room again once one is idle", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: TOKEN, maxSessions: 2 });
    t.after(() => server.close());
    const a = await sdkHttpClient(server.url, TOKEN);
    const b = await sdkHttpClient(server.url, TOKEN);
    const calls = [a, b].map((s) => s.client.callTool({ name: "execute_command", arguments: { command: ["sleep", "2"] } }));
    assert.ok(await until(() => server.sessions().every((s) => s.busy), 10_000), "both sessions busy");
    const refused = await post(server.url, initBody("third"));
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "2");
    assert.match(((await refused.json()) as { error: { message: string } }).error.message, /every session has a call in flight/);
    const done = await Promise.all(calls);
    assert.ok(done.every((r) => !r.isError), "the busy sessions were not touched");
    const c = await sdkHttpClient(server.url, TOKEN);
    assert.equal(server.sessions().length, 2);
    await Promise.all([a, b, c].map((s) => s.client.close().catch(() => undefined)));
  });

  test("a client at its share evicts its own sessions, not another client's", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: TOKEN, maxSessions: 4, maxSessionsPerClient: 2 });
    t.after(() => server.close());
    const good = await sdkHttpClient(server.url, TOKEN); // clientInfo.name lg-test-http
    await good.client.callTool({ name: "execute_command", arguments: { command: "true" } });
    for (let i = 0; i < 20; i++) await abandon(server.url, "hog");
    assert.ok(server.sessions().some((s) => s.id === good.transport.sessionId), "the other client's session survives");
    assert.equal(server.sessions().length, 3, "the hog holds its share (2) and no more");
    const r = await good.client.callTool({ name: "execute_command", arguments: { command: "echo ok" } });
    assert.equal((r.structuredContent as { stdout: string }).stdout, "ok\n");
    await good.client.close();
  });

  test("a session that never called a tool ends after the short fresh-idle time; one that called stays", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: TOKEN, freshIdleMs: 400, idleMs: 60_000 });
    t.after(() => server.close());
    const used = await sdkHttpClient(server.url, TOKEN);
    await used.client.callTool({ name: "read_file", arguments: { path: "nothing" } });
    const fresh = await abandon(server.url, "walked-away");
    assert.ok(await until(() => !server.sessions().some((s) => s.id === fresh), 5000), "the never-used session ended");
    await new Promise((r) => setTimeout(r, 600));
    assert.ok(server.sessions().some((s) => s.id === used.transport.sessionId), "the used session is still there");
    await used.client.close();
  });

  test("1,000 sessions opened and abandoned: a new client still gets a session at once", { skip }, async (t) => {
    // Idle timeouts far beyond the test: only eviction can make room.
    const server = await serveHttp({ backend: "namespace", port: 0, token: TOKEN, maxSessions: 32, idleMs: 600_000, freshIdleMs: 600_000 });
    t.after(() => server.close());
    const started = performance.now();
    for (let i = 0; i < 1000; i += 20) await Promise.all(Array.from({ length: 20 }, () => abandon(server.url, "careless")));
    const opened = performance.now() - started;
    assert.ok(server.sessions().length <= 32);
    const t0 = performance.now();
    const fresh = await sdkHttpClient(server.url, TOKEN);
    const r = await fresh.client.callTool({ name: "execute_command", arguments: { command: "echo served" } });
    const ms = performance.now() - t0;
    assert.equal((r.structuredContent as { stdout: string }).stdout, "served\n");
    process.stderr.write(`1000 abandoned sessions opened in ${opened.toFixed(0)} ms (${server.evicted} evicted); a new client's initialize + first call: ${ms.toFixed(0)} ms\n`);
    assert.ok(server.evicted >= 1000 - 32, `evicted ${server.evicted}`);
    assert.ok(server.sessions().every((s) => s.sandboxInfo === undefined || s.id === fresh.transport.sessionId), "abandoned sessions never made a sandbox");
    await fresh.client.close();
  });
});

describe("mcp logging and SSE resumability over http (namespace)", async () => {
  const skip = await unavailable("namespace");

  test("logging/setLevel filters the server's log notifications (sandbox lifecycle, approvals)", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: TOKEN, beforeToolCall: approvalHook("policy") as BeforeToolCall });
    t.after(() => server.close());
    const seen = async (level: "info" | "error"): Promise<LoggingMessageNotification["params"][]> => {
      const { client } = await sdkHttpClient(server.url, TOKEN);
      const got: LoggingMessageNotification["params"][] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void got.push(n.params));
      await client.setLoggingLevel(level);
      await client.callTool({ name: "read_file", arguments: { path: "x" } });
      const denied = await client.callTool({ name: "execute_command", arguments: { command: "rm -rf /workspace" } });
      assert.equal(denied.isError, true, text(denied as never));
      await client.close();
      return got;
    };
    const info = await seen("info");
    assert.ok(info.some((m) => m.level === "info" && (m.data as { event?: string }).event === "sandbox.started"), JSON.stringify(info));
    assert.ok(info.some((m) => m.level === "warning" && (m.data as { event?: string; tool?: string }).event === "approval.deny"), JSON.stringify(info));
    assert.ok(info.every((m) => m.logger === "luminaguard"));
    assert.deepEqual(await seen("error"), [], "nothing below error once the level is error");
  });

  test("over stdio too: the sandbox's start is logged to the host, and setLevel silences it", { skip }, async (t) => {
    for (const [level, expectStart] of [["info", true], ["warning", false]] as const) {
      const { client } = await sdkStdioClient(["--backend", "namespace"]);
      t.after(() => client.close());
      const got: LoggingMessageNotification["params"][] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void got.push(n.params));
      assert.ok(client.getServerCapabilities()?.logging, "the logging capability is declared");
      await client.setLoggingLevel(level);
      const r = await client.callTool({ name: "execute_command", arguments: { command: "echo x" } });
      assert.equal((r.structuredContent as { stdout: string }).stdout, "x\n");
      assert.equal(got.some((m) => (m.data as { event?: string }).event === "sandbox.started"), expectStart, `${level}: ${JSON.stringify(got)}`);
      await client.close();
    }
  });

  test("response streams open with a priming event (id, retry); Last-Event-ID replays what followed; foreign ids are refused", { skip }, async (t) => {
    const server = await serveHttp({ backend: "namespace", port: 0, token: TOKEN });
    t.after(() => server.close());
    const sid = await abandon(server.url, "resumer");
    // An older header on a 2025-11-25 session: the negotiated version decides (priming needs >= 2025-11-25).
    const h = { "mcp-session-id": sid, "mcp-protocol-version": "2025-03-26" };
    await (await post(server.url, { jsonrpc: "2.0", method: "notifications/initialized" }, h)).text();
    const r = await post(server.url, { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "execute_command", arguments: { command: "echo resumed" } } }, h);
    assert.match(r.headers.get("content-type") ?? "", /text\/event-stream/);
    const body = await r.text();
    const events = body.split("\n\n").filter((e) => e.trim() !== "");
    const priming = /^id: (\S+)\nretry: (\d+)\ndata: $/.exec(events[0] ?? "");
    assert.ok(priming, `first event is the priming event: ${JSON.stringify(events[0])}`);
    assert.equal(priming[2], "1000");
    const replay = new AbortController();
    t.after(() => replay.abort());
    const g = await fetch(server.url, { headers: { ...AUTH, ...h, accept: "text/event-stream", "last-event-id": priming[1] as string }, signal: replay.signal });
    assert.equal(g.status, 200);
    const reader = g.body?.getReader();
    let got = "";
    while (!got.includes("resumed")) {
      const c = await reader?.read();
      if (!c || c.done) break;
      got += Buffer.from(c.value).toString("utf8");
    }
    assert.match(got, /"id":2/);
    assert.match(got, /resumed\\n/);
    replay.abort();
    // Another session's event id (or a made-up one) replays nothing of ours: 400.
    const other = await abandon(server.url, "other");
    for (const bad of [priming[1] as string, "../../etc", "x".repeat(5000)]) {
      const refused = await fetch(server.url, { headers: { ...AUTH, "mcp-session-id": other, "mcp-protocol-version": "2025-11-25", accept: "text/event-stream", "last-event-id": bad } });
      assert.equal(refused.status, 400, bad.slice(0, 20));
      await refused.text();
    }
  });

  test("the event store is bounded: oldest events go, an oversized one is not kept", () => {
    const store = new BoundedEventStore(3, 1000);
    const S1 = "3f1c2a9e-0000-4000-8000-000000000001";
    const msg = (n: number): never => ({ jsonrpc: "2.0", method: "x", params: { n } }) as never;
    const ids: string[] = [];
    return (async () => {
      for (let i = 0; i < 5; i++) ids.push(await store.storeEvent(S1, msg(i)));
      assert.equal(store.size.events, 3);
      assert.equal(await store.getStreamIdForEventId(ids[0] as string), undefined, "evicted");
      assert.equal(await store.getStreamIdForEventId(ids[4] as string), S1);
      const big = await store.storeEvent(S1, { jsonrpc: "2.0", method: "x", params: { pad: "y".repeat(2000) } } as never);
      assert.equal(await store.getStreamIdForEventId(big), undefined);
      assert.ok(store.size.bytes <= 1000);
      const replayed: string[] = [];
      await store.replayEventsAfter(ids[2] as string, { send: async (id) => void replayed.push(id) });
      assert.deepEqual(replayed, [ids[3], ids[4]]);
    })();
  });
});
