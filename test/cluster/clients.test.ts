// Clients of the cluster beyond the SDK (2 nodes on a 3-server NATS cluster from src/cluster/testbed.ts):
// `luminaguard mcp --cluster` (an MCP host over stdio → our MCP front door → a sandbox claimed on a node: the file
// the host writes lands in the node's sandbox workspace, the session's sandbox goes when the session ends) and
// `luminaguard run --cluster` (the agent loop's sandbox on a node). A host --workspace is refused for both.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ClusterClient } from "../../src/cluster/client.js";
import { recoverNodeDirs, startClusterNode, type ClusterNode } from "../../src/cluster/testbed.js";
import { DaemonClient } from "../../src/daemon/client.js";
import type { SandboxDescription } from "../../src/daemon/schemas.js";
import { connectClusterClient } from "../../src/index.js";
import { unavailable } from "../fixtures.js";
import { SERVE_ENTRY, sdkStdioClient, text } from "../mcp/helpers.js";
import { CLIENT_USER, natsServerMissing, startNatsCluster, type NatsCluster } from "./nats.js";

const skip = natsServerMissing() ?? (await unavailable("namespace"));

let nats: NatsCluster | undefined;
const nodes: ClusterNode[] = [];
let watcher: ClusterClient | undefined;

/** Every sandbox the nodes hold, asked on each node's own socket. */
async function sandboxesOnNodes(): Promise<Array<SandboxDescription & { node: string }>> {
  const out: Array<SandboxDescription & { node: string }> = [];
  for (const n of nodes) {
    const local = new DaemonClient({ socketPath: n.socket });
    try {
      for (const s of (await local.listSandboxes()).sandboxes) out.push({ ...s, node: n.name });
    } finally {
      local.close();
    }
  }
  return out;
}

/** The CLI as a cluster client (user `client`, no local daemon): exit code and stdout/stderr. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVE_ENTRY, ...args], {
      env: { ...process.env, LUMINAGUARD_CLUSTER_PASSWORD: CLIENT_USER.password, LUMINAGUARD_DAEMON: "0", LUMINAGUARD_LOG: "warn", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: out, stderr: err });
    });
  });
}

/** GET /readyz on a node's own socket: status and body. */
function readyz(n: ClusterNode): Promise<{ status: number; body: { ready: boolean; checks?: { cluster?: { ready: boolean; connected: boolean; node: string } } } }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: n.socket, path: "/readyz" }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.once("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as never }));
    });
    req.once("error", reject);
    req.end();
  });
}

describe("mcp --cluster and run --cluster (2 nodes)", { skip, timeout: 240_000 }, () => {
  before(async () => {
    nats = await startNatsCluster();
    for (const name of ["m1", "m2"]) nodes.push(await startClusterNode({ name, servers: nats.urls, heartbeatMs: 500, ttlMs: 3000 }));
    watcher = await connectClusterClient({ servers: nats.urls, user: CLIENT_USER.user, password: CLIENT_USER.password });
    for (const end = Date.now() + 30_000; (await watcher.nodes()).length < 2; await new Promise((r) => setTimeout(r, 100))) {
      if (Date.now() > end) throw new Error("2 nodes did not register within 30 s");
    }
  });

  after(async () => {
    try {
      await watcher?.close();
      for (const n of nodes) await n.stop("SIGTERM");
      // The node SIGKILLed in a test may have left workspaces of sandboxes that outlived it: recovered, then removed.
      for (const n of nodes) {
        await recoverNodeDirs(n.root);
        n.remove();
      }
    } finally {
      await nats?.stop();
    }
  });

  test("an MCP host's tool calls run in a sandbox on a node; the sandbox goes with the session", async () => {
    const { client, stderr } = await sdkStdioClient(
      ["--backend", "namespace", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user],
      { LUMINAGUARD_CLUSTER_PASSWORD: CLIENT_USER.password, LUMINAGUARD_DAEMON: "0" },
    );
    let closed = false;
    try {
      assert.deepEqual(await sandboxesOnNodes(), [], "no sandbox before the first call");
      const w = await client.callTool({ name: "write_file", arguments: { path: "from-host.txt", content: "over the cluster\n" } });
      assert.equal(w.isError, undefined, `${text(w as never)}\n${stderr()}`);
      const r = await client.callTool({ name: "read_file", arguments: { path: "from-host.txt" } });
      assert.equal(text(r as never), "over the cluster\n");
      const x = await client.callTool({ name: "execute_command", arguments: { command: "cat from-host.txt; echo ran" } });
      assert.equal(x.isError, undefined, text(x as never));
      assert.equal((JSON.parse(text(x as never)) as { stdout: string }).stdout, "over the cluster\nran\n");
      // The session's sandbox is a node's, claimed by the MCP front door, and holds the file in its workspace.
      const held = await sandboxesOnNodes();
      assert.equal(held.length, 1, JSON.stringify(held));
      const sb = held[0] as SandboxDescription & { node: string };
      assert.equal(sb.client, "mcp");
      assert.equal(readFileSync(join(sb.workspace, "from-host.txt"), "utf8"), "over the cluster\n");
      await client.close();
      closed = true;
      const end = Date.now() + 15_000;
      while ((await sandboxesOnNodes()).length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(await sandboxesOnNodes(), [], "the session's end kills its cluster sandbox");
      assert.equal(existsSync(sb.workspace), false, "and its node-local workspace");
    } finally {
      if (!closed) await client.close();
    }
  });

  test("--workspace with --cluster is WORKSPACE_FORBIDDEN (workspaces are node-local): mcp and run", async () => {
    const urls = (nats as NatsCluster).urls;
    const m = await cli(["mcp", "--cluster", urls, "--cluster-user", CLIENT_USER.user, "--workspace", "/tmp"]);
    assert.notEqual(m.code, 0);
    assert.match(m.stderr, /WORKSPACE_FORBIDDEN/);
    const dir = mkdtempSync(join(tmpdir(), "lg-run-cluster-"));
    try {
      const planFile = join(dir, "plan.json");
      writeFileSync(planFile, JSON.stringify({ description: "p", steps: [{ tool: "list_directory", args: {} }] }));
      const r = await cli(["run", "--plan", planFile, "--cluster", urls, "--cluster-user", CLIENT_USER.user, "--workspace", dir, "--non-interactive"], { LUMINAGUARD_HOME: join(dir, "home") });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /WORKSPACE_FORBIDDEN/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("run --cluster: the agent loop's sandbox is claimed on a node; the plan runs there under the approval cliff", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lg-run-cluster-"));
    try {
      const planFile = join(dir, "plan.json");
      writeFileSync(
        planFile,
        JSON.stringify({
          description: "cluster plan",
          steps: [
            { tool: "write_file", args: { path: "out/r.txt", content: "on a node\n", createParents: true } },
            { tool: "execute_command", args: { command: "cat out/r.txt" } },
            { tool: "execute_command", args: { command: "rm -rf out" } },
          ],
        }),
      );
      const policyFile = join(dir, "policy.json");
      writeFileSync(
        policyFile,
        JSON.stringify({
          version: 1,
          rules: [
            { id: "out-writes", tool: "write_file", path: "^out/", action: "allow" },
            { id: "cat", tool: "execute_command", command: "^cat [a-z/.]+$", action: "allow" },
          ],
        }),
      );
      const home = join(dir, "home");
      const r = await cli(
        ["run", "--plan", planFile, "--backend", "namespace", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user, "--policy", policyFile, "--non-interactive", "--json"],
        { LUMINAGUARD_HOME: home },
      );
      // 4: a plan step was denied (the one below), as without the cluster.
      assert.equal(r.code, 4, r.stderr);
      const summary = JSON.parse(r.stdout) as { status: string; toolCalls: number; denied: number; failed: number };
      // The unlisted `rm -rf out` is Red and nobody is there to approve it: denied, as without the cluster.
      assert.deepEqual([summary.status, summary.toolCalls, summary.denied], ["completed", 3, 1], r.stderr);
      // The sandbox's workspace was a node's (under its own run directory), not one made on this host.
      const ws = /workspace (\S+)/.exec(r.stderr)?.[1] ?? "";
      assert.ok(
        nodes.some((n) => ws.startsWith(n.root)),
        `workspace ${ws} under a node's directory (${nodes.map((n) => n.root).join(", ")})`,
      );
      const end = Date.now() + 15_000;
      while ((await sandboxesOnNodes()).length > 0 && Date.now() < end) await new Promise((res) => setTimeout(res, 100));
      assert.deepEqual(await sandboxesOnNodes(), [], "the run's end kills its cluster sandbox");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("mcp --cluster: a session whose node is lost gets NODE_LOST once, then a fresh sandbox on another node", async () => {
    const { client, stderr } = await sdkStdioClient(
      ["--backend", "namespace", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user],
      { LUMINAGUARD_CLUSTER_PASSWORD: CLIENT_USER.password, LUMINAGUARD_DAEMON: "0" },
    );
    try {
      const w = await client.callTool({ name: "write_file", arguments: { path: "a.txt", content: "a\n" } });
      assert.equal(w.isError, undefined, `${text(w as never)}\n${stderr()}`);
      const held = await sandboxesOnNodes();
      assert.equal(held.length, 1);
      const idx = nodes.findIndex((n) => n.name === held[0]?.node);
      const victim = nodes[idx] as ClusterNode;
      await victim.stop("SIGKILL");
      const lost = await client.callTool({ name: "read_file", arguments: { path: "a.txt" } });
      assert.equal(lost.isError, true);
      assert.match(text(lost as never), /NODE_LOST/);
      // The node's entry has expired (that is what NODE_LOST says): it restarts under its name, recovering its leftovers.
      nodes[idx] = await startClusterNode({ name: victim.name, servers: (nats as NatsCluster).urls, heartbeatMs: 500, ttlMs: 3000, root: victim.root });
      const again = await client.callTool({ name: "execute_command", arguments: { command: "echo fresh; ls" } });
      assert.equal(again.isError, undefined, text(again as never));
      assert.equal((JSON.parse(text(again as never)) as { stdout: string }).stdout, "fresh\n", "a fresh sandbox (a new, empty workspace)");
      const now = await sandboxesOnNodes();
      assert.equal(now.length, 1, JSON.stringify(now));
      assert.notEqual(now[0]?.id, held[0]?.id);
    } finally {
      await client.close();
    }
  });

  // Last: it takes the NATS cluster down.
  test("a node's /readyz says whether its cluster connection is up; with NATS gone a node still stops on SIGTERM", async () => {
    const n = nodes[0] as ClusterNode;
    const up = await readyz(n);
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal(up.body.checks?.cluster?.ready, true);
    assert.equal(up.body.checks?.cluster?.connected, true);
    assert.equal(up.body.checks?.cluster?.node, n.name);
    // The dashboard's cluster view: every live node with its room, from this node's own socket.
    const local = new DaemonClient({ socketPath: n.socket });
    try {
      const view = await local.json<{ node: string; connected: boolean; nodes: Array<{ name: string; free: number; max: number }> }>("GET", "/v1/cluster");
      assert.equal(view.node, n.name);
      assert.equal(view.connected, true);
      assert.deepEqual(view.nodes.map((x) => x.name), ["m1", "m2"]);
      assert.ok(view.nodes.every((x) => x.max === 2 && x.free >= 0 && x.free <= 2), JSON.stringify(view.nodes));
    } finally {
      local.close();
    }
    for (const s of (nats as NatsCluster).servers) await s.kill("SIGKILL");
    let down = up;
    for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
      down = await readyz(n);
      if (down.status === 503) break;
    }
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.equal(down.body.ready, false);
    assert.equal(down.body.checks?.cluster?.connected, false);
    // And with no NATS server reachable, SIGTERM still ends the node promptly (a first version waited for ever
    // on the NATS drain, until the 60 s SIGKILL).
    const t0 = Date.now();
    await (nodes[1] as ClusterNode).stop("SIGTERM");
    assert.ok(Date.now() - t0 < 20_000, `the node ended ${Date.now() - t0} ms after SIGTERM`);
  });
});
