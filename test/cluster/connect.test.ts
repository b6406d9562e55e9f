// The cluster's settings and wire rules without a server: where the connection comes from, what a node
// accepts as a reply subject, which nodes satisfy a claim, how errors come back.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { clusterConfig, natsOptions, resolveConnect, serverList } from "../../src/cluster/connect.js";
import { INBOX_SUBJECT, callRequestSchema, createRequestSchema, satisfies, unwrapReply, type NodeRecord } from "../../src/cluster/protocol.js";
import { LuminaGuardError } from "../../src/errors.js";

const ENV = ["LUMINAGUARD_CONFIG", "LUMINAGUARD_CLUSTER", "LUMINAGUARD_CLUSTER_USER", "LUMINAGUARD_CLUSTER_PASSWORD", "LUMINAGUARD_CLUSTER_CREDS"];

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof LuminaGuardError && err.code === code);
}

describe("cluster connection settings", () => {
  let dir: string;
  const saved: Record<string, string | undefined> = {};
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "lg-cluster-cfg-"));
    for (const k of ENV) {
      saved[k] = process.env[k];
      delete process.env[k];
    }
    process.env["LUMINAGUARD_CONFIG"] = join(dir, "config.json");
  });
  afterEach(() => {
    for (const k of ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test("servers: nats:// or tls:// HOST:PORT, comma-separated; anything else is INVALID_ARGUMENT", () => {
    assert.deepEqual(serverList("nats://a:4222, nats://b:4222"), ["nats://a:4222", "nats://b:4222"]);
    assert.deepEqual(serverList(["tls://a:4222"]), ["tls://a:4222"]);
    throwsCode(() => serverList("http://a:4222"), "INVALID_ARGUMENT");
    throwsCode(() => serverList("nats://a:4222/path"), "INVALID_ARGUMENT");
    throwsCode(() => serverList(" , "), "INVALID_ARGUMENT");
  });

  test("flags over the environment over the config file; nothing named: no cluster", () => {
    assert.equal(resolveConnect({}), undefined);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ cluster: { servers: "nats://file:1", user: "fileuser", password: "filepw", tls: { ca: "/ca.pem" } } }));
    assert.deepEqual(resolveConnect({}), { servers: "nats://file:1", user: "fileuser", password: "filepw", tls: { ca: "/ca.pem" } });
    process.env["LUMINAGUARD_CLUSTER"] = "nats://env:2";
    process.env["LUMINAGUARD_CLUSTER_PASSWORD"] = "envpw";
    assert.deepEqual(resolveConnect({}), { servers: "nats://env:2", user: "fileuser", password: "envpw", tls: { ca: "/ca.pem" } });
    assert.deepEqual(resolveConnect({ servers: "nats://flag:3", user: "flaguser" }), { servers: "nats://flag:3", user: "flaguser", password: "envpw", tls: { ca: "/ca.pem" } });
  });

  test("a malformed cluster section of the config file is INVALID_ARGUMENT, naming the field", () => {
    writeFileSync(join(dir, "config.json"), JSON.stringify({ cluster: { servers: "nats://a:1", heartbeatMs: "fast" } }));
    assert.throws(() => clusterConfig(), (err: unknown) => err instanceof LuminaGuardError && err.code === "INVALID_ARGUMENT" && err.message.includes("heartbeatMs"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ cluster: { servers: "nats://a:1", passwrd: "typo" } }));
    throwsCode(() => clusterConfig(), "INVALID_ARGUMENT");
  });

  test("NATS options: user/password, TLS files; an unreadable creds or nkey file is INVALID_ARGUMENT", () => {
    const o = natsOptions({ servers: "nats://a:1,nats://b:2", user: "u", password: "p", tls: { ca: "/ca", cert: "/c", key: "/k" } });
    assert.deepEqual(o.servers, ["nats://a:1", "nats://b:2"]);
    assert.equal(o.user, "u");
    assert.equal(o.pass, "p");
    assert.deepEqual(o.tls, { caFile: "/ca", certFile: "/c", keyFile: "/k" });
    assert.equal(o.maxReconnectAttempts, -1);
    throwsCode(() => natsOptions({ servers: "nats://a:1", creds: join(dir, "missing.creds") }), "INVALID_ARGUMENT");
    throwsCode(() => natsOptions({ servers: "nats://a:1", nkey: join(dir, "missing.nk") }), "INVALID_ARGUMENT");
  });
});

describe("cluster wire rules", () => {
  test("a node replies and streams only to an inbox, never to a node, KV or JetStream subject", () => {
    for (const ok of ["_INBOX.abc", "_INBOX.AbC123.x9"]) assert.ok(INBOX_SUBJECT.test(ok), ok);
    for (const bad of ["$KV.lg-nodes.n1", "lg.node.n1.call", "_INBOX.>", "_INBOX.*", "_INBOX", "_INBOX.a b", "$JS.API.STREAM.DELETE.KV_lg-nodes", "_INBOX.a.$KV"]) {
      assert.ok(!INBOX_SUBJECT.test(bad), bad);
    }
    assert.equal(callRequestSchema.safeParse({ id: "lg-1", tool: "read_file", args: {}, stream: "$KV.lg-nodes.x" }).success, false);
    assert.equal(callRequestSchema.safeParse({ id: "lg-1", tool: "rm_rf", args: {} }).success, false);
    assert.equal(callRequestSchema.safeParse({ id: "../x", tool: "read_file", args: {} }).success, false);
    assert.equal(createRequestSchema.safeParse({ memoryMiB: 1 << 30 }).success, false);
    assert.equal(createRequestSchema.safeParse({ extra: 1 }).success, false);
  });

  test("constraints: backend, accelerator and labels must all hold; a node with no working backend satisfies nothing", () => {
    const node = (backends: NodeRecord["backends"], labels: Record<string, string> = {}) => ({ backends, labels });
    const nsOnly = node({ namespace: { available: true }, microvm: { available: false } }, { zone: "a" });
    const tcg = node({ namespace: { available: true }, microvm: { available: true, accelerator: "tcg" } });
    const kvm = node({ microvm: { available: true, accelerator: "kvm" } });
    assert.ok(satisfies(nsOnly, {}));
    assert.ok(satisfies(nsOnly, { backend: "auto" }));
    assert.ok(!satisfies(nsOnly, { backend: "microvm" }));
    assert.ok(satisfies(tcg, { backend: "microvm" }));
    assert.ok(!satisfies(tcg, { accelerator: "kvm" }));
    assert.ok(satisfies(kvm, { backend: "microvm", accelerator: "kvm" }));
    assert.ok(!satisfies(kvm, { backend: "namespace" }));
    assert.ok(satisfies(nsOnly, { labels: { zone: "a" } }));
    assert.ok(!satisfies(nsOnly, { labels: { zone: "b" } }));
    assert.ok(!satisfies(nsOnly, { labels: { zone: "a", gpu: "yes" } }));
    assert.ok(!satisfies(node({ namespace: { available: false } }), {}));
  });

  test("errors come back as the same LuminaGuardError; an unknown code or a malformed answer is not trusted", () => {
    assert.deepEqual(unwrapReply({ ok: true, result: { a: 1 } }, "node n1"), { a: 1 });
    assert.throws(
      () => unwrapReply({ ok: false, error: { code: "PATH_ESCAPE", message: "no", details: { path: "../x" } } }, "node n1"),
      (err: unknown) => err instanceof LuminaGuardError && err.code === "PATH_ESCAPE" && err.details["path"] === "../x",
    );
    throwsCode(() => unwrapReply({ ok: false, error: { code: "ROOT_PLEASE", message: "x" } }, "node n1"), "INTERNAL");
    throwsCode(() => unwrapReply({ result: 1 }, "node n1"), "DAEMON_UNAVAILABLE");
    throwsCode(() => unwrapReply("hello", "node n1"), "DAEMON_UNAVAILABLE");
  });
});
