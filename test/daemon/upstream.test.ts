// The daemon owns the pooled MCP client for the config file's upstream servers: listed, called over the API, closed on drain.
import assert from "node:assert/strict";
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { descendants } from "../../src/util/procfs.js";
import { unavailable } from "../fixtures.js";
import { FS_SERVER } from "../mcp/helpers.js";
import { daemonDirs, http, startTestDaemon } from "./helpers.js";

test("GET /v1/mcp/servers lists the config's servers; a tool call goes through the daemon's pool with the UPSTREAM_* codes", async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  const dirs = daemonDirs();
  const shared = realpathSync(mkdtempSync(join(tmpdir(), "lg-upstream-")));
  t.after(() => rmSync(shared, { recursive: true, force: true }));
  writeFileSync(join(shared, "hello.txt"), "hello from upstream\n");
  writeFileSync(
    join(dirs.home, "config.json"),
    JSON.stringify({ mcpServers: { fs: { command: process.execPath, args: [FS_SERVER, shared] }, gone: { command: join(shared, "no-such-server") } } }),
  );
  const d = await startTestDaemon(t, ["--namespace-pool", "0", "--microvm-pool", "0", "--no-mcp"], { dirs });

  const listed = (await http(d, "GET", "/v1/mcp/servers")).json() as { servers: { server: string; state: string }[] };
  assert.deepEqual(listed.servers.map((s) => s.server).sort(), ["fs", "gone"]);
  assert.ok(listed.servers.every((s) => s.state === "idle"), "nothing is started before it is used");

  const tools = await http(d, "GET", "/v1/mcp/servers/fs/tools");
  assert.equal(tools.status, 200, tools.text);
  assert.ok((tools.json() as { tools: { name: string }[] }).tools.some((x) => x.name === "fs.read_text_file"));

  const r = await http(d, "POST", "/v1/mcp/servers/fs/tools/read_text_file", { path: join(shared, "hello.txt") });
  assert.equal(r.status, 200, r.text);
  assert.match(JSON.stringify(r.json()), /hello from upstream/);
  // One connection, kept: the server process is the daemon's child and stays for the next call.
  const serverPids = (): number[] => descendants(d.pid).filter((p) => {
    try {
      return (realpathSync(`/proc/${p}/exe`) === realpathSync(process.execPath));
    } catch {
      return false;
    }
  });
  const before = serverPids();
  assert.equal(before.length, 1, "one upstream server process");
  const again = await http(d, "POST", "/v1/mcp/servers/fs/tools/read_text_file", { path: join(shared, "hello.txt") });
  assert.equal(again.status, 200);
  assert.deepEqual(serverPids(), before, "the pooled connection was reused");

  const unknown = await http(d, "POST", "/v1/mcp/servers/nope/tools/x", {});
  assert.equal(unknown.status, 404);
  assert.equal((unknown.json() as { code: string }).code, "NOT_FOUND");
  const gone = await http(d, "POST", "/v1/mcp/servers/gone/tools/x", {});
  assert.equal(gone.status, 502, gone.text);
  assert.equal((gone.json() as { code: string }).code, "UPSTREAM_UNREACHABLE");
  const bad = await http(d, "POST", "/v1/mcp/servers/fs/tools/read_text_file", "[1]");
  assert.equal((bad.json() as { code: string }).code, "INVALID_ARGUMENT");

  assert.equal(await d.stop(), 0);
  assert.ok(before.every((p) => !existsPid(p)), "the upstream server is gone after the drain");
});

function existsPid(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
