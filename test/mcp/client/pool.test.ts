// Our MCP client pool against the real npm servers (server-filesystem over stdio, server-everything over stdio and
// Streamable HTTP): discovery, pooling, deadlines, cancellation, crash, hang, garbage, and no process left behind.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { describe, test, type TestContext } from "node:test";
import type { ErrorCode } from "../../../src/errors.js";
import { McpClientPool } from "../../../src/mcp/client/pool.js";
import { McpClientError } from "../../../src/mcp/client/errors.js";
import { parseConfig } from "../../../src/config/config.js";
import { EVERYTHING_SERVER, FIXTURES, FS_SERVER, alive, killTree, spawnUntil, startEverythingHttp, text, until } from "../helpers.js";

function tempDir(t: TestContext): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "lg-mcp-client-")));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function pool(t: TestContext, servers: ConstructorParameters<typeof McpClientPool>[0]["servers"], extra: Partial<ConstructorParameters<typeof McpClientPool>[0]> = {}): McpClientPool {
  const p = new McpClientPool({ servers, backoffInitialMs: 50, ...extra });
  t.after(() => p.close());
  return p;
}

/** The error code each failure kind carries, the same at every edge (SDK, CLI, agent). */
const CODE_OF: Record<string, ErrorCode> = {
  unavailable: "UPSTREAM_UNREACHABLE",
  crashed: "UPSTREAM_CRASHED",
  protocol: "UPSTREAM_PROTOCOL",
  timeout: "TOOL_TIMEOUT",
  cancelled: "CANCELLED",
  unknown_server: "NOT_FOUND",
  unknown_tool: "NOT_FOUND",
};

async function rejectsNamed(p: Promise<unknown>, name: string, reason: string): Promise<McpClientError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof McpClientError, `expected an McpClientError, got ${String(err)}`);
    assert.equal(err.name, name, `${err.name}: ${err.message}`);
    assert.equal(err.reason, reason);
    assert.equal(err.code, CODE_OF[reason], `${err.name} carries its own code`);
    assert.equal(err.toJSON().details?.["reason"], reason);
    return err;
  }
  assert.fail(`expected ${name}, but the call succeeded`);
}

const node = process.execPath;

describe("mcp client pool", () => {
  test("server-filesystem over stdio: tools discovered as server.tool, one process reused, every call timed", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "a.txt"), "alpha\n");
    const p = pool(t, { fs: { command: node, args: [FS_SERVER, dir] } });
    const tools = await p.listTools("fs");
    const names = tools.map((x) => x.name);
    assert.ok(names.includes("fs.read_text_file") && names.includes("fs.write_file") && names.includes("fs.list_directory"), names.join(","));
    const read = tools.find((x) => x.name === "fs.read_text_file");
    assert.equal(read?.server, "fs");
    assert.equal(read?.tool, "read_text_file");
    assert.equal(read?.inputSchema.type, "object");
    const pid = p.status()[0]?.pid;
    assert.ok(pid && alive(pid));
    const results = await Promise.all(Array.from({ length: 20 }, () => p.callTool("fs.read_text_file", { path: join(dir, "a.txt") })));
    for (const r of results) assert.equal(text(r), "alpha\n");
    await p.callTool("fs.write_file", { path: join(dir, "b.txt"), content: "beta" });
    assert.equal(readFileSync(join(dir, "b.txt"), "utf8"), "beta");
    const outside = await p.callTool("fs.read_text_file", { path: "/etc/hostname" });
    assert.equal(outside.isError, true, "server-filesystem's own refusal is a tool error result");
    const st = p.status()[0];
    assert.equal(st?.pid, pid, "the same process served every call");
    assert.equal(st?.connects, 1);
    assert.equal(st?.state, "ready");
    const m = p.metrics.snapshot()["fs"]?.["read_text_file"];
    assert.equal(m?.calls, 21);
    assert.equal(m?.outcomes.ok, 20);
    assert.equal(m?.outcomes.tool_error, 1);
    assert.equal(p.metrics.samples("fs", "read_text_file").length, 21);
    assert.ok(p.metrics.samples("fs", "read_text_file").every((ms) => ms > 0 && ms < 10_000));
    await rejectsNamed(p.callTool("fs.no_such_tool", {}), "McpClientError", "unknown_tool");
    await rejectsNamed(p.callTool("nope.read_text_file", {}), "McpClientError", "unknown_server");
    await p.close();
    assert.ok(await until(() => !alive(pid), 5000), "close() stops the server");
  });

  test("server-everything over Streamable HTTP: discovery, calls, structured content, deadline and cancellation", async (t) => {
    const srv = await startEverythingHttp();
    t.after(() => killTree(srv.child));
    const p = pool(t, { everything: { url: srv.url, headers: { "X-Test": "${LG_TEST_HEADER:-on}" } } });
    const { tools, errors } = await p.listAllTools();
    assert.deepEqual(errors, {});
    assert.ok(tools.some((x) => x.name === "everything.echo"));
    const echo = await p.callTool("everything.echo", { message: "hi" });
    assert.equal(text(echo), "Echo: hi");
    const sum = await p.callTool("everything.get-structured-content", { location: "New York" });
    assert.ok(sum.structuredContent && typeof sum.structuredContent === "object");
    // Deadline: the server is fine, only slow; the connection is kept.
    const slow = await rejectsNamed(p.callTool("everything.trigger-long-running-operation", { duration: 5, steps: 5 }, { timeoutMs: 300 }), "McpTimeoutError", "timeout");
    assert.equal(slow.code, "TOOL_TIMEOUT");
    // Cancellation.
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const t0 = Date.now();
    await rejectsNamed(p.callTool("everything.trigger-long-running-operation", { duration: 5, steps: 5 }, { signal: ac.signal }), "McpClientError", "cancelled");
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(text(await p.callTool("everything.echo", { message: "still" })), "Echo: still");
    assert.equal(p.status()[0]?.connects, 1, "the connection survived a timeout and a cancellation");
    const m = p.metrics.snapshot()["everything"];
    assert.equal(m?.["trigger-long-running-operation"]?.outcomes.timeout, 1);
    assert.equal(m?.["trigger-long-running-operation"]?.outcomes.cancelled, 1);
  });

  test("an HTTP server that dies gives a named error; once it is back the next call reconnects", async (t) => {
    const srv = await startEverythingHttp();
    const p = pool(t, { everything: { url: srv.url } });
    assert.equal(text(await p.callTool("everything.echo", { message: "1" })), "Echo: 1");
    await killTree(srv.child);
    const err = await p.callTool("everything.echo", { message: "2" }, { timeoutMs: 5000 }).catch((e: unknown) => e);
    assert.ok(err instanceof McpClientError && ["crashed", "unavailable"].includes(err.reason), String(err));
    const port = new URL(srv.url).port;
    const back = await spawnUntil([node, EVERYTHING_SERVER, "streamableHttp"], new RegExp(`listening on port ${port}`), { PORT: port });
    t.after(() => killTree(back.child));
    back.child.stdout?.resume();
    assert.ok(await until(async () => text(await p.callTool("everything.echo", { message: "3" }).catch(() => ({ content: [] }))) === "Echo: 3", 10_000, 100));
  });

  test("a stdio server killed while idle is restarted by the next call", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "a.txt"), "alpha");
    const p = pool(t, { fs: { command: node, args: [FS_SERVER, dir] } });
    await p.callTool("fs.read_text_file", { path: join(dir, "a.txt") });
    const pid = p.status()[0]?.pid as number;
    process.kill(pid, "SIGKILL");
    assert.ok(await until(() => p.status()[0]?.state !== "ready", 5000), "the pool notices the exit");
    assert.equal(text(await p.callTool("fs.read_text_file", { path: join(dir, "a.txt") })), "alpha");
    const st = p.status()[0];
    assert.notEqual(st?.pid, pid);
    assert.equal(st?.connects, 2);
  });

  test("a stdio server that crashes mid-call: McpServerCrashedError, then the next call reconnects", async (t) => {
    const p = pool(t, { everything: { command: node, args: [EVERYTHING_SERVER, "stdio"] } });
    await p.listTools("everything");
    const pid = p.status()[0]?.pid as number;
    setTimeout(() => process.kill(pid, "SIGKILL"), 300);
    const err = await rejectsNamed(p.callTool("everything.trigger-long-running-operation", { duration: 10, steps: 10 }), "McpServerCrashedError", "crashed");
    assert.match(err.message, /SIGKILL/);
    assert.equal(text(await p.callTool("everything.echo", { message: "back" })), "Echo: back");
    assert.notEqual(p.status()[0]?.pid, pid);
    assert.equal(p.metrics.snapshot()["everything"]?.["trigger-long-running-operation"]?.outcomes.crashed, 1);
  });

  test("a stdio server that dies by itself during a call: UPSTREAM_CRASHED with its exit status and stderr", async (t) => {
    const p = pool(t, { crash: { command: node, args: [join(FIXTURES, "bad-server.js"), "crash"] } });
    const tools = await p.listTools("crash");
    assert.deepEqual(tools.map((x) => x.name), ["crash.echo"]);
    const err = await rejectsNamed(p.callTool("crash.echo", { message: "x" }, { timeoutMs: 10_000 }), "McpServerCrashedError", "crashed");
    assert.match(err.message, /exited with status 70/);
    assert.equal(p.metrics.snapshot()["crash"]?.["echo"]?.outcomes.crashed, 1);
  });

  test("an HTTP server nobody listens for: UPSTREAM_UNREACHABLE at once, not a timeout", async (t) => {
    // A port that was free a moment ago: bound, then closed.
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const a = s.address();
        s.close(() => resolve(typeof a === "object" && a !== null ? a.port : 0));
      });
    });
    const p = pool(t, { gone: { url: `http://127.0.0.1:${port}/mcp` } });
    const t0 = Date.now();
    const err = await rejectsNamed(p.callTool("gone.echo", {}, { timeoutMs: 20_000 }), "McpServerUnavailableError", "unavailable");
    assert.ok(Date.now() - t0 < 10_000, `named after ${Date.now() - t0} ms`);
    assert.match(err.message, /ECONNREFUSED|fetch failed|connect/i);
    const { errors } = await p.listAllTools({ timeoutMs: 5000 });
    assert.equal(errors["gone"]?.code, "UPSTREAM_UNREACHABLE");
  });

  test("a hung server (SIGSTOP): McpTimeoutError, it is killed, the next call gets a fresh one", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "a.txt"), "alpha");
    const p = pool(t, { fs: { command: node, args: [FS_SERVER, dir] } });
    await p.callTool("fs.read_text_file", { path: join(dir, "a.txt") });
    const pid = p.status()[0]?.pid as number;
    process.kill(pid, "SIGSTOP");
    t.after(() => {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    });
    await rejectsNamed(p.callTool("fs.read_text_file", { path: join(dir, "a.txt") }, { timeoutMs: 300 }), "McpTimeoutError", "timeout");
    assert.equal(text(await p.callTool("fs.read_text_file", { path: join(dir, "a.txt") }, { timeoutMs: 20_000 })), "alpha");
    assert.notEqual(p.status()[0]?.pid, pid);
    assert.ok(await until(() => !alive(pid), 5000), "the hung server was killed");
  });

  test("a server answering garbage or malformed results: McpProtocolError at once, and a reconnect", async (t) => {
    const p = pool(t, {
      garbage: { command: node, args: [join(FIXTURES, "bad-server.js"), "garbage"] },
      badresult: { command: node, args: [join(FIXTURES, "bad-server.js"), "bad-result"] },
    });
    const t0 = Date.now();
    const e1 = await rejectsNamed(p.callTool("garbage.echo", { message: "x" }), "McpProtocolError", "protocol");
    assert.match(e1.message, /not a JSON-RPC message/);
    assert.ok(Date.now() - t0 < 5000, "named at once, not after a timeout");
    await rejectsNamed(p.callTool("garbage.echo", { message: "x" }), "McpProtocolError", "protocol");
    assert.equal(p.status().find((s) => s.server === "garbage")?.connects, 2, "the second call ran on a new connection");
    await rejectsNamed(p.callTool("badresult.echo", { message: "x" }), "McpProtocolError", "protocol");
  });

  test("servers that cannot start: McpServerUnavailableError with the reason, and backoff", async (t) => {
    const p = pool(t, {
      missing: { command: "/nonexistent/mcp-server" },
      dies: { command: node, args: ["-e", "process.stderr.write('boom: bad config\\n'); process.exit(3)"] },
      needsenv: { command: node, args: ["${LG_TEST_UNSET_VAR}"] },
    });
    const e1 = await rejectsNamed(p.callTool("missing.x", {}), "McpServerUnavailableError", "unavailable");
    assert.match(e1.message, /ENOENT/);
    const e2 = await rejectsNamed(p.callTool("dies.x", {}), "McpServerUnavailableError", "unavailable");
    assert.match(e2.message, /exited with status 3.*boom: bad config/s);
    const e3 = (await p.callTool("needsenv.x", {}).catch((e: unknown) => e)) as McpClientError;
    assert.equal(e3.code, "INVALID_ARGUMENT");
    assert.match(e3.message, /LG_TEST_UNSET_VAR is not set/);
    const st = p.status().find((s) => s.server === "dies");
    assert.equal(st?.consecutiveFailures, 1);
    await rejectsNamed(p.callTool("dies.x", {}), "McpServerUnavailableError", "unavailable");
    assert.equal(p.status().find((s) => s.server === "dies")?.consecutiveFailures, 2);
    const { tools, errors } = await p.listAllTools({ timeoutMs: 5000 });
    assert.deepEqual(tools, []);
    assert.deepEqual(Object.keys(errors).sort(), ["dies", "missing", "needsenv"]);
  });

  test("close() kills the server's whole process group, grandchildren included", async (t) => {
    const dir = tempDir(t);
    const pidFile = join(dir, "grandchild.pid");
    const p = pool(t, { gc: { command: node, args: [join(FIXTURES, "bad-server.js"), "grandchild", pidFile] } });
    assert.equal(text(await p.callTool("gc.echo", { message: "hello" })), "hello");
    const serverPid = p.status()[0]?.pid as number;
    const grandchild = Number(readFileSync(pidFile, "utf8"));
    assert.ok(alive(grandchild));
    await p.close();
    assert.ok(await until(() => !alive(serverPid) && !alive(grandchild), 5000), "server and grandchild are gone");
    await rejectsNamed(p.callTool("gc.echo", { message: "late" }), "McpServerUnavailableError", "unavailable");
  });

  test("built from the config file shape", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, "c.txt"), "from config");
    const config = parseConfig({ mcpServers: { files: { command: node, args: [FS_SERVER, dir], env: { LG_X: "1" } } }, policy: { anything: true } }, "test-config.json");
    const p = McpClientPool.fromConfig(config, { callTimeoutMs: 10_000 });
    t.after(() => p.close());
    assert.deepEqual(p.serverNames, ["files"]);
    assert.equal(text(await p.call("files", "read_text_file", { path: join(dir, "c.txt") })), "from config");
  });
});
