// The cluster for real: 3 nats-server processes clustered with JetStream on loopback, 3 nodes as
// `luminaguard serve --cluster` child processes (each its own home and run directory, namespace backend),
// clients as SDK and CLI. Everything is killed when the file ends.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { request } from "node:http";
import { dirname } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect, type NatsConnection } from "nats";
import { ClusterClient, type ClusterSandbox } from "../../src/cluster/client.js";
import { NODES_BUCKET, nodeSubject, type NodeRecord } from "../../src/cluster/protocol.js";
import { DaemonClient } from "../../src/daemon/client.js";
import type { SandboxDescription } from "../../src/daemon/schemas.js";
import { LuminaGuardError } from "../../src/errors.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { connectClusterClient } from "../../src/index.js";
import { rejectsWith, unavailable, waitFor } from "../fixtures.js";
import { MAIN, startTestDaemon, type TestDaemon } from "../daemon/helpers.js";
import { CLIENT_USER, NODE_USER, connectionNames, natsServerMissing, startNatsCluster, type NatsCluster, type NatsServer } from "./nats.js";

const TTL_MS = 3000;
const HEARTBEAT_MS = 500;
const NODES = ["n1", "n2", "n3"] as const;
const MAX_PER_NODE = 2;

const skip = natsServerMissing() ?? (await unavailable("namespace"));

let nats: NatsCluster | undefined;
const nodes = new Map<string, TestDaemon>();
let client: ClusterClient;

function clientConnect(): { servers: string; user: string; password: string } {
  return { servers: (nats as NatsCluster).urls, user: CLIENT_USER.user, password: CLIENT_USER.password };
}

async function startNode(name: string, o: { dirs?: TestDaemon; recover?: boolean; heartbeatMs?: number; ttlMs?: number } = {}): Promise<TestDaemon> {
  const d = await startTestDaemon(
    undefined,
    [
      "--no-mcp",
      ...(o.recover ? ["--recovery-grace", "0"] : ["--no-recover"]),
      "--namespace-pool",
      "1:2",
      "--microvm-pool",
      "0",
      "--max-sandboxes",
      String(MAX_PER_NODE),
      "--cluster",
      (nats as NatsCluster).urls,
      "--cluster-user",
      NODE_USER.user,
      "--cluster-node",
      name,
      "--cluster-label",
      `name=${name}`,
      ...(name === "n1" ? ["--cluster-label", "zone=a"] : []),
      "--cluster-heartbeat",
      String(o.heartbeatMs ?? HEARTBEAT_MS),
      "--cluster-ttl",
      String(o.ttlMs ?? TTL_MS),
    ],
    {
      env: { LUMINAGUARD_CLUSTER_PASSWORD: NODE_USER.password, LUMINAGUARD_LOG: "warn" },
      ...(o.dirs ? { dirs: { root: dirname(o.dirs.run), socket: o.dirs.socket, run: o.dirs.run, home: o.dirs.home, remove: o.dirs.remove } } : {}),
    },
  );
  nodes.set(name, d);
  // Answering on its socket comes first; the node joins the cluster after that (or exits if it cannot).
  for (const end = Date.now() + 60_000; !d.stderr().includes(`cluster node ${name} joined`); await new Promise((r) => setTimeout(r, 50))) {
    if (await Promise.race([d.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 0))])) throw new Error(`node ${name} exited before it joined:\n${d.stderr()}`);
    if (Date.now() > end) throw new Error(`node ${name} did not join within 60 s:\n${d.stderr()}`);
  }
  return d;
}

async function liveNodes(): Promise<NodeRecord[]> {
  return await client.nodes();
}

/** Runs the CLI as a cluster client; stdout, stderr and exit code. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, LUMINAGUARD_DAEMON: "0", LUMINAGUARD_CLUSTER_PASSWORD: CLIENT_USER.password, LUMINAGUARD_LOG: "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** GET /metrics on a node's own socket. */
function metricsOf(name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: (nodes.get(name) as TestDaemon).socket, path: "/metrics" }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.once("end", () => resolve(body));
    });
    req.once("error", reject);
    req.end();
  });
}

async function rawClient(): Promise<NatsConnection> {
  return await connect({ servers: (nats as NatsCluster).urls.split(","), user: CLIENT_USER.user, pass: CLIENT_USER.password });
}

async function killAllSandboxes(sbs: ClusterSandbox[]): Promise<void> {
  await Promise.allSettled(sbs.map((s) => s.kill()));
}

describe("cluster on NATS (3 servers, 3 nodes)", { skip, timeout: 300_000 }, () => {
  before(async () => {
    nats = await startNatsCluster();
    // One after the other: the first creates the buckets; on 2 shared cores this is also gentler.
    for (const n of NODES) await startNode(n);
    client = await connectClusterClient(clientConnect());
    const t0 = Date.now();
    let seen: NodeRecord[] = [];
    // 30 s: on 2 loaded cores a node's first heartbeats can lag (15 s failed twice here, at load ~10).
    while (Date.now() - t0 < 30_000) {
      seen = await liveNodes();
      if (seen.length === 3) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(seen.length, 3, `3 nodes registered, saw ${seen.map((n) => n.name).join(",")}\n${[...nodes.entries()].map(([n, d]) => `${n}: ${d.stderr().slice(-1500)}`).join("\n")}`);
  });

  after(async () => {
    try {
      await client?.close();
      for (const d of nodes.values()) {
        // SIGTERM: the node drains, destroys its sandboxes and unmounts their workspaces.
        await d.stop().catch(() => undefined);
        try {
          d.remove();
        } catch (err) {
          process.stderr.write(`cluster test: ${d.run} not removed: ${(err as Error).message}\n`);
        }
      }
    } finally {
      await nats?.stop();
    }
  });

  test("cluster status --json: each node with its capacity, load, version and backends; the table too", async () => {
    const r = await cli(["cluster", "status", "--json", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { nodes: NodeRecord[]; ttlMs: number };
    assert.deepEqual(s.nodes.map((n) => n.name), ["n1", "n2", "n3"]);
    assert.equal(s.ttlMs, TTL_MS);
    for (const n of s.nodes) {
      assert.equal(n.max, MAX_PER_NODE);
      assert.equal(n.free, MAX_PER_NODE);
      assert.equal(n.version, "0.1.0");
      assert.equal(n.backends["namespace"]?.available, true);
      assert.equal(n.labels["name"], n.name);
      assert.equal(typeof n.load1, "number");
    }
    const table = await cli(["cluster", "status", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^3 node\(s\), 6 sandbox\(es\) free of 6/);
    assert.match(table.stdout, /n1 +ready +0\.1\.0 +namespace\S* +0\/2 .*name=n1,zone=a/);
  });

  test("claims spread over the nodes (most room first); the tool contract and its errors cross the wire", async () => {
    const sbs: ClusterSandbox[] = [];
    try {
      for (let i = 0; i < 3; i++) sbs.push(await client.claim({ backend: "namespace" }));
      assert.deepEqual(sbs.map((s) => s.node).sort(), ["n1", "n2", "n3"], "one sandbox per node: each claim went to a node with the most room");
      for (const s of sbs) {
        assert.equal(s.info["via"], "cluster");
        const w = await s.files.write("hello.txt", `from ${s.node}`);
        assert.equal(w.servedBy, "jail");
        assert.equal(await s.files.readText("hello.txt"), `from ${s.node}`);
        const r = await s.commands.run(["sh", "-c", "cat hello.txt; echo oops >&2; exit 3"]);
        assert.equal(r.exitCode, 3);
        assert.equal(r.stdout, `from ${s.node}`);
        assert.equal(r.stderr, "oops\n");
        const listed = await s.files.list(".");
        assert.ok(JSON.stringify(listed).includes("hello.txt"));
        const found = await s.search({ pattern: "from" });
        assert.ok(JSON.stringify(found).includes("hello.txt"));
      }
      const s0 = sbs[0] as ClusterSandbox;
      const nf = await rejectsWith(s0.files.read("missing.txt"), "NOT_FOUND");
      assert.ok(nf instanceof LuminaGuardError);
      await rejectsWith(s0.files.read("../../etc/passwd"), "PATH_ESCAPE");
      await rejectsWith(s0.callTool("read_file", { nope: 1 }), "INVALID_ARGUMENT");
      // Output streams as it comes, and the result still carries it.
      const chunks: string[] = [];
      const r = await s0.commands.run(["sh", "-c", "echo one; sleep 0.3; echo two"], { onStdout: (c) => chunks.push(c.toString("utf8")) });
      assert.equal(r.stdout, "one\ntwo\n");
      assert.equal(chunks.join(""), "one\ntwo\n");
      // A command's own deadline is kept: TOOL_TIMEOUT or a killed result, never a hang.
      const t0 = Date.now();
      const slow = await s0.commands.run(["sleep", "30"], { timeoutMs: 500 }).catch((e: unknown) => e);
      assert.ok(Date.now() - t0 < 15_000, "the command's timeout is kept across the cluster");
      assert.ok(slow instanceof LuminaGuardError ? slow.code === "TOOL_TIMEOUT" : (slow as { timedOut?: boolean }).timedOut === true, `timeout: ${JSON.stringify(slow)}`);
      // A call the client cancels stops on the node too, not only in the client.
      const ac = new AbortController();
      const running = s0.commands.run(["sleep", "30"], { signal: ac.signal }).then(
        () => undefined,
        (e: unknown) => e,
      );
      await new Promise((r) => setTimeout(r, 300));
      const tc = Date.now();
      ac.abort();
      const cancelled = await running;
      assert.ok(cancelled instanceof LuminaGuardError && cancelled.code === "CANCELLED", `CANCELLED, got ${String(cancelled)}`);
      assert.ok(Date.now() - tc < 2000);
      const local = new DaemonClient({ socketPath: (nodes.get(s0.node) as TestDaemon).socket });
      try {
        let inFlight = -1;
        for (const end = Date.now() + 5000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
          inFlight = (await local.json<SandboxDescription>("GET", `/v1/sandboxes/${s0.id}`)).inFlight;
          if (inFlight === 0) break;
        }
        assert.equal(inFlight, 0, "the node stopped the cancelled call");
      } finally {
        local.close();
      }
      // The location bucket finds a sandbox from another client.
      const other = await ClusterClient.connect(clientConnect());
      try {
        const again = await other.attach(s0.id);
        assert.equal(again.node, s0.node);
        assert.equal(await again.files.readText("hello.txt"), `from ${s0.node}`);
      } finally {
        await other.close();
      }
      await s0.kill();
      await rejectsWith(s0.files.read("hello.txt"), "SANDBOX_CLOSED");
      await rejectsWith(client.attach(s0.id), "NOT_FOUND");
    } finally {
      await killAllSandboxes(sbs);
    }
  });

  test("exec and tool --cluster: the CLI claims in the cluster; Sandbox.create({ cluster })", async () => {
    const r = await cli(["exec", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user, "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, "out\n");
    assert.match(r.stderr, /via the cluster, node n[123]/);
    const t = await cli(["tool", "write_file", "--args", JSON.stringify({ path: "a.txt", content: "x" }), "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user]);
    assert.equal(t.code, 0, t.stderr);
    assert.equal((JSON.parse(t.stdout) as { via: string }).via, "cluster");
    const sb = await Sandbox.create({ cluster: clientConnect(), backend: "namespace" });
    try {
      assert.equal(sb.info["via"], "cluster");
      assert.equal((await sb.commands.run(["echo", "sdk"])).stdout, "sdk\n");
    } finally {
      await sb.kill();
    }
    assert.equal(sb.alive, false);
  });

  test("placement: labels choose the node; no node that satisfies the claim within its deadline is CAPACITY", async () => {
    const sbs: ClusterSandbox[] = [];
    try {
      for (let i = 0; i < 2; i++) sbs.push(await client.claim({ labels: { zone: "a" } }));
      assert.deepEqual(sbs.map((s) => s.node), ["n1", "n1"]);
      // n1 is full now: it makes no offer, and a claim only it could take finds no node.
      const offers = await client.offers({}, 1000);
      assert.deepEqual(offers.map((o) => o.node).sort(), ["n2", "n3"], "a node at capacity offers nothing");
      const t0 = Date.now();
      const e = await rejectsWith(client.claim({ labels: { zone: "a" }, claimTimeoutMs: 800 }), "CAPACITY");
      assert.ok(Date.now() - t0 < 5_000, `CAPACITY within the claim deadline, took ${Date.now() - t0} ms`);
      assert.equal(typeof e.details["retryAfterMs"], "number");
      await rejectsWith(client.claim({ labels: { zone: "nowhere" }, claimTimeoutMs: 500 }), "CAPACITY");
      const records = await liveNodes();
      if (records.every((n) => n.backends["microvm"]?.available !== true)) {
        // No node here can run VMs: a microvm claim lands nowhere.
        await rejectsWith(client.claim({ backend: "microvm", claimTimeoutMs: 500 }), "CAPACITY");
      }
      if (records.every((n) => n.backends["microvm"]?.accelerator !== "kvm")) {
        // No node here has a working KVM (TCG at best): a claim that needs KVM lands nowhere.
        await rejectsWith(client.claim({ accelerator: "kvm", claimTimeoutMs: 500 }), "CAPACITY");
      }
      // A node at capacity gets none of the next claims; the others take them, then the cluster is full.
      for (let i = 0; i < 4; i++) sbs.push(await client.claim({}));
      const counts: Record<string, number> = {};
      for (const s of sbs) counts[s.node] = (counts[s.node] ?? 0) + 1;
      assert.deepEqual(counts, { n1: 2, n2: 2, n3: 2 });
      await rejectsWith(client.claim({ claimTimeoutMs: 600 }), "CAPACITY");
    } finally {
      await killAllSandboxes(sbs);
    }
  });

  test("workspaces are node-local: a host path from a cluster client is WORKSPACE_FORBIDDEN, at the client and at the node", async () => {
    await rejectsWith(Sandbox.create({ cluster: clientConnect(), workspace: "/tmp" }), "WORKSPACE_FORBIDDEN");
    await rejectsWith(client.claim({ workspace: "/tmp" }), "WORKSPACE_FORBIDDEN");
    // A client that skips the SDK's check: the node refuses it itself.
    await rejectsWith(client.request("n2", "create", { workspace: "/etc" }, { timeoutMs: 10_000 }), "WORKSPACE_FORBIDDEN");
    const local = new DaemonClient({ socketPath: (nodes.get("n2") as TestDaemon).socket });
    try {
      assert.deepEqual((await local.listSandboxes()).sandboxes, [], "nothing was created on n2");
    } finally {
      local.close();
    }
  });

  test("security: wrong credentials refused; a client cannot write a heartbeat, listen on a node's subjects, or steer a node's reply; a node serves only its own sandboxes", async () => {
    await rejectsWith(ClusterClient.connect({ ...clientConnect(), password: "wrong" }), "UNAUTHORIZED");
    await rejectsWith(ClusterClient.connect({ servers: clientConnect().servers }), "UNAUTHORIZED");
    // An nkey user (the seed file, as `nats --nkey`): signs in and sees the cluster; an unknown seed is refused.
    const byNkey = await ClusterClient.connect({ servers: clientConnect().servers, nkey: (nats as NatsCluster).nkeySeedFile });
    try {
      assert.equal((await byNkey.nodes()).length, 3);
    } finally {
      await byNkey.close();
    }
    await rejectsWith(ClusterClient.connect({ servers: clientConnect().servers, nkey: (nats as NatsCluster).strangerSeedFile }), "UNAUTHORIZED");
    const r = await cli(["cluster", "status", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user], { LUMINAGUARD_CLUSTER_PASSWORD: "wrong" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /UNAUTHORIZED/);

    const nc = await rawClient();
    try {
      const kv = await nc.jetstream().views.kv(NODES_BUCKET, { bindOnly: true });
      // Impersonating a node: a heartbeat under a new name, and over a real node's entry.
      for (const key of ["fake", "n1"]) {
        const put = await kv.put(key, new TextEncoder().encode(JSON.stringify({ name: key, free: 999 }))).then(
          () => "accepted",
          (err: unknown) => String((err as { code?: string }).code ?? (err as Error).message),
        );
        assert.notEqual(put, "accepted", `the ${key} heartbeat was refused`);
      }
      assert.equal(await kv.get("fake"), null);
      const n1 = (await liveNodes()).find((n) => n.name === "n1");
      // Its record is still the node's own heartbeat (what other tests left running on n1 may
      // change its `free`, not its `max`, and never to the impersonator's 999).
      assert.ok(n1, "n1 is still listed");
      assert.equal(n1.max, MAX_PER_NODE, "n1's record is its own");
      assert.ok(n1.free <= MAX_PER_NODE && n1.free !== 999, `n1's free (${n1.free}) is its own`);

      // Listening on a node's call subject (to answer in its place) is refused by the servers.
      const errors: string[] = [];
      const sub = nc.subscribe(nodeSubject("n1", "call"), { callback: (err) => err && errors.push(err.message) });
      await nc.flush().catch(() => undefined);
      assert.ok(await waitFor(() => errors.length > 0 || sub.isClosed(), 5000), "subscription refused");

      // A forged reply subject: the node must not publish its answer on a KV subject (a heartbeat in its name).
      nc.publish(nodeSubject("n2", "ping"), new TextEncoder().encode("{}"), { reply: `$KV.${NODES_BUCKET}.forged` });
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await kv.get("forged"), null, "no entry written through a node's reply");
    } finally {
      await nc.close();
    }

    // A node refuses calls for a sandbox it does not hold.
    const sb = await client.claim({ labels: { name: "n1" } });
    try {
      await rejectsWith(client.request("n2", "call", { id: sb.id, tool: "read_file", args: { path: "x" } }, { timeoutMs: 10_000 }), "NOT_FOUND");
      await rejectsWith(client.request("n2", "kill", { id: sb.id }, { timeoutMs: 10_000 }), "NOT_FOUND");
      assert.equal((await sb.commands.run(["echo", "still"])).stdout, "still\n", "the sandbox lives on n1");
      // The refusals are on n2's /metrics, with its cluster view.
      const text = await metricsOf("n2");
      assert.match(text, /^luminaguard_cluster_requests_total\{op="call",outcome="NOT_FOUND"\} [1-9]/m);
      assert.match(text, /^luminaguard_cluster_requests_total\{op="create",outcome="WORKSPACE_FORBIDDEN"\} [1-9]/m);
      assert.match(text, /^luminaguard_cluster_connected\{node="n2"\} 1$/m);
      assert.match(text, /^luminaguard_cluster_nodes\{node="n2"\} 3$/m);
      assert.match(text, /^luminaguard_cluster_free_sandboxes\{node="n2"\} 2$/m);
      assert.match(text, /^luminaguard_cluster_offers_total\{answered="yes"\} [1-9]/m);
      const n1 = await metricsOf("n1");
      assert.match(n1, /^luminaguard_cluster_sandboxes\{node="n1"\} 1$/m);
      if (spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0) {
        const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
        assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
      }
    } finally {
      await sb.kill();
    }
  });

  test("SIGKILL of one NATS server changes nothing visible", async () => {
    const before = await client.claim({});
    // The server its node is connected to: the hard case (the call is routed to interest that just died).
    let victim: NatsServer | undefined;
    for (const s of (nats as NatsCluster).servers) if ((await connectionNames(s)).includes(`luminaguard-node-${before.node}`)) victim = s;
    assert.ok(victim, `the server of node ${before.node}`);
    await victim.kill("SIGKILL");
    const sbs: ClusterSandbox[] = [before];
    try {
      const t0 = Date.now();
      assert.equal((await before.commands.run(["echo", "after"])).stdout, "after\n");
      assert.ok(Date.now() - t0 < 10_000, `the call right after took ${Date.now() - t0} ms`);
      for (let i = 0; i < 3; i++) sbs.push(await client.claim({}));
      for (const s of sbs) assert.equal((await s.commands.run(["echo", s.node])).stdout, `${s.node}\n`);
      // Past the TTL every node still heartbeats (through the servers left).
      await new Promise((r) => setTimeout(r, TTL_MS + 500));
      assert.deepEqual((await liveNodes()).map((n) => n.name), ["n1", "n2", "n3"]);
      const r = await cli(["cluster", "status", "--json", "--cluster", (nats as NatsCluster).urls, "--cluster-user", CLIENT_USER.user]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { nodes: unknown[] }).nodes.length, 3);
    } finally {
      await killAllSandboxes(sbs);
    }
  });

  test("SIGKILL of a node mid-call: NODE_LOST within the TTL; new claims go elsewhere", async () => {
    const sb = await client.claim({ labels: { name: "n3" } });
    const n3 = nodes.get("n3") as TestDaemon;
    const call = sb.commands.run(["sleep", "30"]).then(
      () => undefined,
      (e: unknown) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await n3.stop("SIGKILL");
    const err = await call;
    const took = Date.now() - t0;
    assert.ok(err instanceof LuminaGuardError, `a LuminaGuardError, got ${String(err)}`);
    assert.equal(err.code, "NODE_LOST", err.message);
    assert.equal(err.details["node"], "n3");
    assert.ok(took < TTL_MS + 3000, `NODE_LOST within the TTL (${TTL_MS} ms) and a poll: took ${took} ms`);
    await rejectsWith(sb.files.read("x"), "NODE_LOST");
    await sb.kill(); // a lost sandbox's kill is a no-op, not an error
    assert.ok(!(await liveNodes()).some((n) => n.name === "n3"));
    const sbs: ClusterSandbox[] = [];
    try {
      for (let i = 0; i < 4; i++) sbs.push(await client.claim({}));
      assert.ok(sbs.every((s) => s.node !== "n3"), `claims went to ${sbs.map((s) => s.node).join(",")}`);
      await rejectsWith(client.claim({ labels: { name: "n3" }, claimTimeoutMs: 500 }), "CAPACITY");
    } finally {
      await killAllSandboxes(sbs);
    }
    // Restarted on the same directories, it recovers what the killed run left (mounted workspaces) and rejoins.
    await startNode("n3", { dirs: n3, recover: true });
    const back = await client.claim({ labels: { name: "n3" }, claimTimeoutMs: 10_000 });
    assert.equal(back.node, "n3");
    await back.kill();
  });

  test("SIGTERM drains a node: it stops taking claims at once, its call in flight still gets its answer, then it leaves", async () => {
    const sb = await client.claim({ labels: { name: "n2" } });
    const n2 = nodes.get("n2") as TestDaemon;
    const call = sb.commands.run(["sh", "-c", "sleep 1.5; echo done"]);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    n2.child.kill("SIGTERM");
    let leaving = false;
    while (!leaving && Date.now() - t0 < 2000) {
      const rec = (await liveNodes()).find((n) => n.name === "n2");
      leaving = rec?.state === "leaving" && rec.free === 0;
      if (!leaving) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(leaving, "n2 says it is leaving, with no room, at once");
    const claimed = await client.claim({});
    assert.notEqual(claimed.node, "n2");
    await claimed.kill();
    const r = await call;
    assert.equal(r.stdout, "done\n", "the call in flight finished during the drain (not NODE_LOST)");
    assert.equal(await n2.exited, 0);
    assert.ok(!(await liveNodes()).some((n) => n.name === "n2"), "gone from the list when it exits, before its TTL");
    assert.ok(Date.now() - t0 < 1500 + TTL_MS);
    await sb.kill(); // destroyed by the drain already: a no-op
  });
  test("a node's own TTL, not JetStream's purge, decides NODE_LOST; a restart after a SIGKILL takes its name over before the purge", async () => {
    // n4 promises a 600 ms TTL; the bucket (made by n1) purges entries only after TTL_MS (3 s). A client that waited
    // for the purge (the first version) saw NODE_LOST ≥ TTL_MS − 150 ms after the SIGKILL; the heartbeat's own
    // timestamp gives it within n4's TTL. The bound below sits between the two, far from both.
    const n4Ttl = 600;
    const n4 = await startNode("n4", { heartbeatMs: 150, ttlMs: n4Ttl });
    try {
      for (const end = Date.now() + 30_000; !(await liveNodes()).some((n) => n.name === "n4"); await new Promise((r) => setTimeout(r, 100))) {
        assert.ok(Date.now() < end, "n4 joined within 30 s");
      }
      const sb = await client.claim({ labels: { name: "n4" } });
      const call = sb.commands.run(["sleep", "30"]).then(
        () => undefined,
        (e: unknown) => e,
      );
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await n4.stop("SIGKILL");
      const err = await call;
      const took = Date.now() - t0;
      assert.ok(err instanceof LuminaGuardError && err.code === "NODE_LOST", `NODE_LOST, got ${String(err)}`);
      assert.ok(took < TTL_MS - 500, `NODE_LOST within n4's TTL (${n4Ttl} ms) + a margin, not at the bucket's purge (${TTL_MS} ms): took ${took} ms`);
      assert.ok(!(await liveNodes()).some((n) => n.name === "n4"), "not listed once lost, though its entry awaits the purge");
      await sb.kill();
      // Restarted at once on its directories: its old entry is stale (older than its TTL, unchanged), so the name is
      // free now (the first version refused it until the purge). It recovers what the killed run left.
      const t1 = Date.now();
      await startNode("n4", { dirs: n4, recover: true, heartbeatMs: 150, ttlMs: n4Ttl });
      const back = await client.claim({ labels: { name: "n4" }, claimTimeoutMs: 10_000 });
      assert.equal(back.node, "n4");
      assert.ok(Date.now() - t1 < 10_000);
      await back.kill();
    } finally {
      await nodes.get("n4")?.stop();
    }
  });
});
