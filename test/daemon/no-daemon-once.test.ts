// The bin's thin exec client and the full command ask the daemon's socket once between them, not twice.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { sandboxFromDaemon } from "../../src/daemon/client.js";
import { SOCKET_ENV } from "../../src/daemon/socket-path.js";
import { knownNoDaemon, markNoDaemon } from "../../src/errors.js";

test("after a no-daemon finding at a socket, the full client does not connect to it again; a daemon that must answer is still asked", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lg-nodaemon-"));
  const socket = join(dir, "d.sock");
  let connections = 0;
  // Something listening that is no daemon: it hangs up at once (ECONNRESET or an empty answer).
  const server = createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(socket, r));
  // The test runner turns the daemon off for everything else (LUMINAGUARD_DAEMON=0); this test asks one.
  const saved = { socket: process.env[SOCKET_ENV], daemon: process.env["LUMINAGUARD_DAEMON"] };
  process.env[SOCKET_ENV] = socket;
  delete process.env["LUMINAGUARD_DAEMON"];
  t.after(() => {
    if (saved.socket === undefined) delete process.env[SOCKET_ENV];
    else process.env[SOCKET_ENV] = saved.socket;
    if (saved.daemon !== undefined) process.env["LUMINAGUARD_DAEMON"] = saved.daemon;
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  assert.equal(knownNoDaemon(socket), false);
  // Not marked: the full client asks (and finds no daemon there).
  await sandboxFromDaemon({ backend: "namespace" }).catch(() => undefined);
  assert.equal(connections, 1);
  markNoDaemon(socket);
  assert.equal(await sandboxFromDaemon({ backend: "namespace" }), undefined);
  assert.equal(connections, 1, "not asked a second time");
  // Another socket is not covered by the finding.
  assert.equal(knownNoDaemon(join(dir, "other.sock")), false);
  // `daemon: true` wants the daemon's answer or its absence as an error: it asks.
  await assert.rejects(sandboxFromDaemon({ backend: "namespace", daemon: true }));
  assert.equal(connections, 2);
});
