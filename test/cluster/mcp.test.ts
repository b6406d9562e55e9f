// `luminaguard mcp --cluster`: an MCP host over stdio → our MCP front door → a sandbox claimed on a cluster node
// (2 nats-server-backed nodes from src/cluster/testbed.ts). The file the host writes lands in the node's sandbox
// workspace, the session's sandbox is the only one on the nodes and goes when the session ends; --workspace is refused.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ClusterClient } from "../../src/cluster/client.js";
import { startClusterNode, type ClusterNode } from "../../src/cluster/testbed.js";
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

describe("mcp --cluster (2 nodes)", { skip, timeout: 240_000 }, () => {
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
      for (const n of nodes) {
        await n.stop("SIGTERM");
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

  test("--workspace with --cluster is WORKSPACE_FORBIDDEN (workspaces are node-local)", async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [SERVE_ENTRY, "mcp", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user, "--workspace", "/tmp"], {
        env: { ...process.env, LUMINAGUARD_CLUSTER_PASSWORD: CLIENT_USER.password, LUMINAGUARD_DAEMON: "0", LUMINAGUARD_LOG: "warn" },
        stdio: ["pipe", "ignore", "pipe"],
      });
      let err = "";
      child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.once("error", reject);
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr: err });
      });
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /WORKSPACE_FORBIDDEN/);
  });
});
