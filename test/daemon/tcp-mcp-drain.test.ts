// The daemon on loopback TCP (bearer token), its MCP endpoint at /mcp, and SIGTERM's drain with a call in flight.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { DaemonClient } from "../../src/daemon/client.js";
import { LuminaGuardError } from "../../src/errors.js";
import { probeCgroups } from "../../src/sandbox/namespace/cgroup.js";
import { unavailable } from "../fixtures.js";
import { http, startTestDaemon } from "./helpers.js";

const TOKEN = "test-token-0123456789";

test("loopback TCP needs the bearer token; MCP is served at /mcp; SIGTERM lets a call in flight finish, refuses new work, leaves nothing", async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  const d = await startTestDaemon(t, ["--listen", "127.0.0.1:0", "--namespace-pool", "1:2", "--microvm-pool", "0", "--drain-grace", "20"], {
    env: { LUMINAGUARD_DAEMON_TOKEN: TOKEN },
  });
  const m = /and (http:\/\/127\.0\.0\.1:\d+)/.exec(d.stderr());
  assert.ok(m?.[1], d.stderr());
  const url = m[1];
  assert.doesNotMatch(d.stderr(), new RegExp(TOKEN), "a token from the environment is never printed");

  // TCP: the token or 401 with the named code; health stays open.
  assert.equal((await http({ url }, "GET", "/healthz")).status, 200);
  for (const auth of [undefined, "Bearer wrong", `Basic ${TOKEN}`]) {
    const r = await http({ url }, "GET", "/v1/sandboxes", undefined, auth ? { authorization: auth } : {});
    assert.equal(r.status, 401, String(auth));
    assert.equal((r.json() as { code: string }).code, "UNAUTHORIZED");
  }
  assert.equal((await http({ url }, "GET", "/v1/sandboxes", undefined, { authorization: `Bearer ${TOKEN}` })).status, 200);
  const overTcp = new DaemonClient({ url, token: TOKEN });
  t.after(() => overTcp.close());
  const s = await overTcp.createSandbox({ backend: "namespace" });
  assert.equal((await s.commands.run("echo tcp")).stdout, "tcp\n");
  await s.kill();

  // MCP Streamable HTTP on the same server.
  const mcp = new Client({ name: "daemon-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } });
  await mcp.connect(transport);
  const tools = await mcp.listTools();
  assert.deepEqual(tools.tools.map((x) => x.name).sort(), ["execute_command", "list_directory", "read_file", "search", "write_file"]);
  const w = await mcp.callTool({ name: "write_file", arguments: { path: "m.txt", content: "via mcp" } });
  assert.notEqual(w.isError, true, JSON.stringify(w));
  const r = await mcp.callTool({ name: "read_file", arguments: { path: "m.txt" } });
  assert.match(JSON.stringify(r.content), /via mcp/);
  await transport.terminateSession();
  await mcp.close();

  // Drain: a command in flight when SIGTERM arrives finishes; a new sandbox is refused meanwhile.
  const client = new DaemonClient({ socketPath: d.socket });
  t.after(() => client.close());
  const box = await client.createSandbox({ backend: "namespace" });
  let sawStart: () => void = () => undefined;
  const started = new Promise<void>((r) => (sawStart = r));
  const inFlight = box.commands.run("echo start; sleep 2; echo done", {
    onStdout: (c) => {
      if (c.toString().includes("start")) sawStart();
    },
  });
  await started;
  d.child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 200));
  const refused = await http(d, "POST", "/v1/sandboxes", { backend: "namespace" });
  assert.equal(refused.status, 503);
  assert.equal((refused.json() as { code: string }).code, "SHUTTING_DOWN");
  const toolRefused = await client.json("POST", `/v1/sandboxes/${box.id}/tools/list_directory`, {}).catch((e: unknown) => e);
  assert.ok(toolRefused instanceof LuminaGuardError && toolRefused.code === "SHUTTING_DOWN", String(toolRefused));
  const result = await inFlight;
  assert.equal(result.exitCode, 0);
  assert.equal(result.stdout, "start\ndone\n", "the call in flight finished within the grace period");
  assert.equal(await d.exited, 0, "the drained daemon exits 0");
  assert.equal(existsSync(d.socket), false, "its socket is removed");
  assert.equal(existsSync(box.workspace), false, "its sandboxes' workspaces are removed");
  if (probeCgroups().usable) for (const p of probeCgroups().parents) assert.equal(existsSync(`${p}/${box.id}`), false, "and their cgroups");
  assert.match(d.stderr(), /daemon stopped; every sandbox destroyed/);
});
