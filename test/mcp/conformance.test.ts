// The official MCP conformance suite (@modelcontextprotocol/conformance, server mode, on Node 22 from npm) against
// `serveHttp`, and the daemon's /mcp over loopback TCP, each with a real bearer token. The suite cannot send headers, so a test-only loopback proxy adds the token.
// Every scenario passes with no failure and no warning, except those test/mcp/conformance-expected.json lists as
// not applicable, each with its reason and the message it must fail with.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { z } from "zod";
import { serveHttp } from "../../src/mcp/server/serve-http.js";
import { run } from "../../src/util/proc.js";
import { startTestDaemon } from "../daemon/helpers.js";
import { unavailable } from "../fixtures.js";
import { PINNED, REPO_ROOT, onNode22 } from "./test-tools.js";

const Expected = z.object({
  suite: z.string(),
  notApplicable: z.array(z.object({ scenario: z.string(), check: z.string().optional(), reason: z.string().min(10), evidence: z.string() })),
});
const Check = z.object({ id: z.string(), status: z.string(), errorMessage: z.string().optional(), details: z.record(z.string(), z.unknown()).optional() });

/** A loopback proxy that adds `Authorization: Bearer <token>` and passes everything else through unchanged. */
async function tokenProxy(target: URL, token: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const up = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, authorization: `Bearer ${token}` } }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", () => res.destroy());
    res.on("close", () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`, server };
}

const MUST_PASS = ["server-initialize", "logging-set-level", "ping", "tools-list", "server-sse-polling", "server-sse-multiple-streams", "dns-rebinding-protection"];

/** Runs the whole suite against `url` (through a proxy adding `token`); returns the problems found (none = pass). */
async function conformance(t: TestContext, tools: { node: string; entry: string }, url: string, token: string, label: string): Promise<string[]> {
  const expected = Expected.parse(JSON.parse(readFileSync(join(REPO_ROOT, "test/mcp/conformance-expected.json"), "utf8")));
  assert.ok(expected.suite.includes(`@${PINNED.conformance.version}`), "the expected-failures file names the pinned suite version");
  const proxy = await tokenProxy(new URL(url), token);
  t.after(() => new Promise<void>((r) => proxy.server.close(() => r())));
  // Without the token the server refuses the suite: the proxy is what authenticates it.
  assert.equal((await fetch(url, { method: "POST", body: "{}" })).status, 401);
  const out = mkdtempSync(join(tmpdir(), "lg-conformance-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = await run([tools.node, tools.entry, "server", "--suite", "all", "--url", proxy.url, "-o", out], { cwd: out, timeoutMs: 540_000 });
  assert.equal(r.timedOut, false, "the suite finished");

  const results = new Map<string, z.infer<typeof Check>[]>();
  for (const dir of readdirSync(out)) {
    const m = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(dir);
    assert.ok(m, `unexpected result directory ${dir}`);
    results.set(m[1] as string, z.array(Check).parse(JSON.parse(readFileSync(join(out, dir, "checks.json"), "utf8"))));
  }
  const summary = r.stdout.slice(r.stdout.indexOf("=== SUMMARY ==="));
  assert.ok(results.size >= 30, `the suite ran its scenarios (${results.size}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
  process.stderr.write(`conformance ${PINNED.conformance.version} on Node 22 against ${label}:\n${summary}\n`);

  const problems: string[] = [];
  const used = new Set<string>();
  for (const [scenario, checks] of results) {
    const whole = expected.notApplicable.find((e) => e.scenario === scenario && e.check === undefined);
    const bad = checks.filter((c) => c.status === "FAILURE" || c.status === "WARNING");
    if (whole) {
      const why = bad.find((c) => (c.errorMessage ?? "").includes(whole.evidence));
      if (why) used.add(scenario);
      else problems.push(`${scenario}: listed as not applicable (${whole.evidence}) but ${bad.length === 0 ? "it passes now: remove it from the list" : `fails otherwise: ${bad.map((c) => `${c.status} ${c.id}: ${c.errorMessage ?? ""}`).join("; ")}`}`);
      continue;
    }
    if (!checks.some((c) => c.status === "SUCCESS")) problems.push(`${scenario}: no check succeeded`);
    for (const c of bad) {
      const skipCheck = expected.notApplicable.find((e) => e.scenario === scenario && e.check === c.id);
      const message = `${c.errorMessage ?? ""} ${JSON.stringify(c.details?.["message"] ?? "")}`;
      if (skipCheck && message.includes(skipCheck.evidence)) used.add(`${scenario}/${c.id}`);
      else problems.push(`${scenario}: ${c.status} ${c.id}: ${c.errorMessage ?? JSON.stringify(c.details)}`);
    }
  }
  for (const e of expected.notApplicable) {
    const key = e.check === undefined ? e.scenario : `${e.scenario}/${e.check}`;
    if (!used.has(key)) problems.push(`${key}: listed as not applicable but ${results.has(e.scenario) ? "did not fail for that reason" : "was not run"}`);
  }
  // The scenarios LuminaGuard must pass, by name: a suite upgrade that drops one is noticed here.
  for (const must of MUST_PASS) if (!results.has(must)) problems.push(`${must}: not run`);
  if (problems.length > 0) problems.push(summary);
  return problems;
}

describe("official MCP conformance suite against the Streamable HTTP server", async () => {
  const tools = await onNode22("conformance");
  const backend = await unavailable("namespace");
  const skip = "skip" in tools ? tools.skip : backend;

  test(`conformance ${PINNED.conformance.version} server --suite all vs luminaguard mcp --transport http: every applicable scenario passes with no warning`, { skip, timeout: 600_000 }, async (t) => {
    if ("skip" in tools) return;
    const token = "conformance-" + Math.random().toString(36).slice(2);
    const server = await serveHttp({ backend: "namespace", port: 0, token });
    t.after(() => server.close());
    assert.deepEqual(await conformance(t, tools, server.url, token, "luminaguard mcp --transport http"), []);
  });

  test(`conformance ${PINNED.conformance.version} vs the daemon's /mcp over loopback TCP`, { skip, timeout: 600_000 }, async (t) => {
    if ("skip" in tools) return;
    const token = "conformance-daemon-" + Math.random().toString(36).slice(2);
    const d = await startTestDaemon(t, ["--listen", "127.0.0.1:0", "--namespace-pool", "1:2", "--microvm-pool", "0"], { env: { LUMINAGUARD_DAEMON_TOKEN: token } });
    const base = /and (http:\/\/127\.0\.0\.1:\d+)/.exec(d.stderr())?.[1];
    assert.ok(base, d.stderr());
    assert.deepEqual(await conformance(t, tools, `${base}/mcp`, token, "luminaguard serve --listen (/mcp)"), []);
  });
});
