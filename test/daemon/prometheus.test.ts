// A real Prometheus server scrapes the daemon's /metrics over loopback TCP with the bearer token.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { unavailable } from "../fixtures.js";
import { daemonDirs, http, startTestDaemon } from "./helpers.js";
import { freePort } from "../../src/util/net.js";

const TOKEN = "prometheus-test-token";

async function query(port: number, q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await res.json()) as { status: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  return body.data?.result ?? [];
}

test("Prometheus scrapes the daemon with its token: up is 1 and the daemon's series are stored", async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  if (spawnSync("prometheus", ["--version"], { stdio: "ignore" }).status !== 0) return void t.skip("prometheus is not installed (apt-get install prometheus)");
  const d = await startTestDaemon(t, ["--listen", "127.0.0.1:0", "--namespace-pool", "1:1", "--microvm-pool", "0"], { env: { LUMINAGUARD_DAEMON_TOKEN: TOKEN } });
  const target = /and http:\/\/(127\.0\.0\.1:\d+)/.exec(d.stderr())?.[1];
  assert.ok(target, d.stderr());
  // Some traffic for the counters.
  const c = await http(d, "POST", "/v1/sandboxes", { backend: "namespace" });
  const { id } = c.json() as { id: string };
  await http(d, "POST", `/v1/sandboxes/${id}/tools/execute_command`, { command: "true" });
  await http(d, "DELETE", `/v1/sandboxes/${id}`);

  const dirs = daemonDirs();
  t.after(() => dirs.remove());
  const config = join(dirs.root, "prometheus.yml");
  writeFileSync(
    config,
    [
      "global: { scrape_interval: 1s, evaluation_interval: 1s }",
      "scrape_configs:",
      "  - job_name: luminaguard",
      `    authorization: { credentials: ${TOKEN} }`,
      `    static_configs: [{ targets: ["${target}"] }]`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const prom = spawn("prometheus", [`--config.file=${config}`, `--storage.tsdb.path=${join(dirs.root, "tsdb")}`, `--web.listen-address=127.0.0.1:${port}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  prom.stderr.on("data", (b: Buffer) => {
    if (log.length < 20_000) log += b.toString("utf8");
  });
  const promExit = new Promise((r) => prom.once("exit", r));
  t.after(async () => {
    if (prom.exitCode === null) prom.kill("SIGTERM");
    await promExit;
  });

  let up: string | undefined;
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    try {
      up = (await query(port, 'up{job="luminaguard"}'))[0]?.value[1];
      if (up === "1") break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(up, "1", `the daemon is scraped and up:\n${log.slice(-3000)}`);
  const calls = await query(port, 'luminaguard_tool_calls_total{tool="execute_command",outcome="ok"}');
  assert.equal(calls[0]?.value[1], "1");
  const pool = await query(port, 'luminaguard_pool_sandboxes{backend="namespace",state="target"}');
  assert.equal(pool[0]?.value[1], "1");
  const handout = await query(port, "luminaguard_sandbox_handout_seconds_count");
  assert.ok(handout.length > 0);
});
