// The daemon's MCP endpoint (/mcp) gets its sessions' sandboxes through the same admission as POST /v1/sandboxes:
// counted in the memory budget, a ready pool sandbox given up for a waiting session, CAPACITY past the deadline.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { sandboxCostMiB } from "../../src/daemon/admission.js";
import { DEFAULT_MEMORY_MIB } from "../../src/runtime/sandbox.js";
import { unavailable } from "../fixtures.js";
import { http, startTestDaemon } from "./helpers.js";

const TOKEN = "mcp-admission-token-0123456789";

async function until(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("MCP sessions at /mcp are admitted like any sandbox: within the memory budget, CAPACITY past it, room back when a session ends", async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  const cost = sandboxCostMiB("namespace", DEFAULT_MEMORY_MIB);
  // Room for two sandboxes; the warm pool keeps one ready while there is room.
  const d = await startTestDaemon(
    t,
    ["--listen", "127.0.0.1:0", "--namespace-pool", "1:1", "--microvm-pool", "0", "--memory-budget", String(2 * cost), "--admission-wait", "500"],
    { env: { LUMINAGUARD_DAEMON_TOKEN: TOKEN } },
  );
  const url = /and (http:\/\/127\.0\.0\.1:\d+)/.exec(d.stderr())?.[1];
  assert.ok(url, d.stderr());
  const stats = async (): Promise<{ memoryCommittedMiB: number; memoryPooledMiB: number; sandboxes: number }> =>
    ((await http(d, "GET", "/v1/stats")).json() as { admission: { memoryCommittedMiB: number; memoryPooledMiB: number; sandboxes: number } }).admission;
  await until(async () => (await stats()).memoryPooledMiB === cost, 60_000, "the pool holds one ready sandbox");

  const session = async (name: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport; run: () => Promise<{ isError?: boolean; text: string }> }> => {
    const client = new Client({ name, version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } });
    await client.connect(transport);
    t.after(() => client.close().catch(() => undefined));
    const run = async (): Promise<{ isError?: boolean; text: string }> => {
      const r = (await client.callTool({ name: "execute_command", arguments: { command: "echo ok" } }, undefined, { timeout: 60_000 })) as { isError?: boolean; content: unknown };
      return { ...(r.isError !== undefined ? { isError: r.isError } : {}), text: JSON.stringify(r.content) };
    };
    return { client, transport, run };
  };

  const a = await session("a");
  assert.notEqual((await a.run()).isError, true);
  const b = await session("b");
  // B needs the room the pool's ready sandbox holds: the pool gives it up.
  const rb = await b.run();
  assert.notEqual(rb.isError, true, rb.text);
  const s = await stats();
  assert.equal(s.sandboxes, 2, "both sessions' sandboxes are counted");
  assert.ok(s.memoryCommittedMiB <= 2 * cost, `never past the budget: ${JSON.stringify(s)}`);

  // A third session waits out the admission deadline, then gets a named CAPACITY, not a sandbox.
  const c = await session("c");
  const rc = await c.run();
  assert.equal(rc.isError, true, rc.text);
  assert.match(rc.text, /CAPACITY/);
  assert.equal((await stats()).sandboxes, 2);

  // A session that ends gives its room back: the third one's next call runs.
  await a.transport.terminateSession();
  await until(async () => (await stats()).sandboxes < 2, 10_000, "the ended session's sandbox is destroyed and its room given back");
  const again = await c.run();
  assert.notEqual(again.isError, true, again.text);
});
