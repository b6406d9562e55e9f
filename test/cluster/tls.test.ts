// TLS to the NATS servers as configured (--cluster-tls-ca): a real nats-server with a certificate from a CA made
// for this test; with the CA the connection is made, without it the server is not trusted.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectCluster } from "../../src/cluster/connect.js";
import { freePort } from "../../src/util/net.js";
import { rejectsWith } from "../fixtures.js";
import { natsServerMissing } from "./nats.js";

function opensslMissing(): string | undefined {
  if (spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0) return undefined;
  process.stderr.write("SKIP: openssl not installed\n");
  return "openssl not installed";
}

const skip = natsServerMissing() ?? opensslMissing();

function openssl(dir: string, args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, `openssl ${args.join(" ")}: ${r.stderr}`);
}

describe("cluster connection over TLS", { skip, timeout: 60_000 }, () => {
  let dir = "";
  let port = 0;
  let server: ReturnType<typeof spawn> | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "lg-nats-tls-"));
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(dir, ["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=lg-test-ca"]);
    openssl(dir, ["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    openssl(dir, ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf"]);
    port = await freePort();
    const conf = join(dir, "nats.conf");
    writeFileSync(
      conf,
      [
        `listen: "127.0.0.1:${port}"`,
        `tls: { cert_file: "${join(dir, "server.pem")}", key_file: "${join(dir, "server.key")}" }`,
        `authorization: { users: [ { user: "u", password: "p" } ] }`,
      ].join("\n"),
      { mode: 0o600 },
    );
    server = spawn("nats-server", ["-c", conf], { stdio: "ignore", detached: true });
    // Until it accepts a connection (the first try may come before it listens).
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const nc = await connectCluster({ servers: `tls://127.0.0.1:${port}`, user: "u", password: "p", tls: { ca: join(dir, "ca.pem") } });
        await nc.close();
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  after(() => {
    if (server?.pid !== undefined) {
      try {
        process.kill(-server.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test("with --cluster-tls-ca the server is trusted and the connection is TLS; without it, refused", async () => {
    const nc = await connectCluster({ servers: `tls://127.0.0.1:${port}`, user: "u", password: "p", tls: { ca: join(dir, "ca.pem") } });
    try {
      assert.equal(nc.info?.tls_required, true);
    } finally {
      await nc.close();
    }
    const e = await rejectsWith(connectCluster({ servers: `tls://127.0.0.1:${port}`, user: "u", password: "p" }), "DAEMON_UNAVAILABLE");
    assert.match(e.message, /certificate/);
    await rejectsWith(connectCluster({ servers: `tls://127.0.0.1:${port}`, user: "u", password: "wrong", tls: { ca: join(dir, "ca.pem") } }), "UNAUTHORIZED");
  });
});
