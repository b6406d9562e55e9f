// Found by `bench chaos --daemon` (its leak check): a `luminaguard serve` SIGTERMed as soon as its socket
// answers, while its warm pool is still spawning, was killed by Node's default SIGTERM action before its
// handler was installed, leaving the pool's workspaces (size-limited ones loop-mounted) and run
// directory behind. A SIGTERM from then on must drain: nothing of it left.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { DaemonClient } from "../../src/daemon/client.js";
import { unavailable } from "../fixtures.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

test("serve: a SIGTERM right after the socket answers drains the warming pool, nothing left", { skip: await unavailable("namespace") }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "lg-test-early-term-"));
  const run = join(root, "run");
  mkdirSync(run, { mode: 0o700 });
  mkdirSync(join(root, "home"), { mode: 0o700 });
  const env: NodeJS.ProcessEnv = { ...process.env, LUMINAGUARD_RUN: run, LUMINAGUARD_HOME: join(root, "home"), LUMINAGUARD_DAEMON: "" };
  delete env["LUMINAGUARD_SOCKET"];
  const child = spawn(process.execPath, [MAIN, "serve", "--socket", join(root, "d.sock"), "--no-mcp", "--no-recover", "--namespace-pool", "2:4", "--microvm-pool", "0"], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    rmSync(root, { recursive: true, force: true });
  });
  const client = new DaemonClient({ socketPath: join(root, "d.sock") });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await client.health();
      break;
    } catch {
      assert.ok(Date.now() < deadline && child.exitCode === null, `the daemon did not answer: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  child.kill("SIGTERM");
  const code = await exited;
  assert.match(stderr, /SIGTERM: draining/, "the SIGTERM was handled (drained), not Node's default kill");
  assert.equal(code, 0, stderr);
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n").filter((l) => l.includes(root));
  assert.deepEqual(mounts, [], "no workspace filesystem left mounted");
  const left = readdirSync(run).filter((n) => !(n === "workspaces" || n === "vmm-ids") || readdirSync(join(run, n)).length > 0);
  assert.deepEqual(left, [], "nothing left in the run directory");
});
