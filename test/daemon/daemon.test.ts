// The daemon as clients use it: a real `luminaguard serve` child process, its HTTP API, and the SDK and CLI through it.
import assert from "node:assert/strict";
import { spawnSync, execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sandbox, type SandboxApi } from "../../src/runtime/sandbox.js";
import { rejectsWith, tempWorkspace, unavailable } from "../fixtures.js";
import { daemonDirs, http, MAIN, startTestDaemon, type TestDaemon } from "./helpers.js";

function hasPromtool(): boolean {
  return spawnSync("promtool", ["--version"], { stdio: "ignore" }).status === 0;
}

test("without a daemon, Sandbox.create runs in-process; { daemon: true } is DAEMON_UNAVAILABLE", async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  const dirs = daemonDirs();
  const saved = { socket: process.env["LUMINAGUARD_SOCKET"], daemon: process.env["LUMINAGUARD_DAEMON"] };
  // The test runner turns the daemon off for the other suites; this test is about looking for one.
  delete process.env["LUMINAGUARD_DAEMON"];
  t.after(() => {
    for (const [k, v] of [["LUMINAGUARD_SOCKET", saved.socket], ["LUMINAGUARD_DAEMON", saved.daemon]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    dirs.remove();
  });
  // Nothing at the path, then a dead daemon's socket (a file nobody listens on).
  process.env["LUMINAGUARD_SOCKET"] = dirs.socket;
  const a = await Sandbox.create({ backend: "namespace" });
  t.after(() => a.kill());
  assert.equal(a.info["via"], undefined, "no daemon: in-process");
  assert.ok(a instanceof Sandbox);
  // A process that listens and is SIGKILLed leaves its socket file with nobody behind it.
  const stalePath = join(dirs.root, "stale.sock");
  spawnSync(process.execPath, ["-e", "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", stalePath]);
  assert.ok(lstatSync(stalePath).isSocket());
  process.env["LUMINAGUARD_SOCKET"] = stalePath;
  const b = await Sandbox.create({ backend: "namespace" });
  t.after(() => b.kill());
  assert.equal(b.info["via"], undefined, "a dead daemon's socket: in-process");
  await rejectsWith(Sandbox.create({ backend: "namespace", daemon: true }), "DAEMON_UNAVAILABLE");
});

describe("daemon", async () => {
  const skip = await unavailable("namespace");
  let d: TestDaemon;
  const ws = tempWorkspace();
  const savedSocket = process.env["LUMINAGUARD_SOCKET"];

  before(async () => {
    if (skip) return;
    d = await startTestDaemon(undefined, ["--namespace-pool", "1:2", "--microvm-pool", "0", "--max-sandboxes", "6", "--admission-wait", "300", "--approval-timeout", "3", "--drain-grace", "10"]);
    // Sandbox.create finds the daemon where LUMINAGUARD_SOCKET says.
    process.env["LUMINAGUARD_SOCKET"] = d.socket;
  });
  after(async () => {
    if (savedSocket === undefined) delete process.env["LUMINAGUARD_SOCKET"];
    else process.env["LUMINAGUARD_SOCKET"] = savedSocket;
    if (d) {
      assert.equal(await d.stop(), 0, "SIGTERM: the daemon exits 0");
      const left = existsSync(join(d.run, "workspaces")) ? readdirSync(join(d.run, "workspaces")) : [];
      d.remove();
      assert.deepEqual(left, [], "the drain left no workspace behind");
    }
    ws.remove();
  });

  const sandbox = async (t: { after: (fn: () => Promise<void>) => void }, o: { ownWorkspace?: boolean } = {}): Promise<SandboxApi> => {
    const s = await Sandbox.create({ backend: "namespace", daemon: true, ...(o.ownWorkspace ? {} : { workspace: ws.dir }) });
    t.after(() => s.kill());
    return s;
  };

  test("the socket is ours alone and a second daemon on it is refused", { skip }, () => {
    const st = lstatSync(d.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600, "the socket is created 0600");
    const second = spawnSync(process.execPath, [MAIN, "serve", "--socket", d.socket, "--no-recover"], { env: d.env, encoding: "utf8", timeout: 60_000 });
    assert.notEqual(second.status, 0);
    assert.match(second.stderr, /DAEMON_RUNNING/);
  });

  test("a symlink or someone else's file is never used as the socket", { skip }, () => {
    const dirs = daemonDirs();
    try {
      symlinkSync(join(dirs.root, "elsewhere"), dirs.socket);
      const r = spawnSync(process.execPath, [MAIN, "serve", "--socket", dirs.socket, "--no-recover"], { env: { ...d.env, LUMINAGUARD_RUN: dirs.run }, encoding: "utf8", timeout: 60_000 });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /RUNTIME_DIR_UNSAFE.*symbolic link/);
    } finally {
      dirs.remove();
    }
  });

  test("the SDK gets a sandbox in the daemon: files, search, commands with the in-process results", { skip }, async (t) => {
    const s = await sandbox(t);
    assert.equal(s.info["via"], "daemon");
    assert.equal(s.backend, "namespace");
    const w = await s.files.write("dir/a.txt", "héllo\n", { createParents: true });
    assert.equal(w.bytesWritten, Buffer.byteLength("héllo\n"));
    assert.equal(w.servedBy, "jail");
    assert.equal(readFileSync(join(ws.dir, "dir/a.txt"), "utf8"), "héllo\n", "an acknowledged write is on the host");
    writeFileSync(join(ws.dir, "host.txt"), "from the host");
    assert.equal(await s.files.readText("host.txt"), "from the host");
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await s.files.write("bin.dat", bytes);
    assert.deepEqual(readFileSync(join(ws.dir, "bin.dat")), bytes);
    const r = await s.files.read("bin.dat", { offset: 250 });
    assert.deepEqual(r.content, bytes.subarray(250));
    assert.equal(r.eof, true);
    const { entries } = await s.files.list(".", { depth: 2 });
    assert.ok(entries.some((e) => e.path === "dir/a.txt"));
    const found = await s.search({ pattern: "host", glob: "*.txt" });
    assert.ok(found.matches.some((m) => m.path === "host.txt"));
    const out: string[] = [];
    const err: string[] = [];
    const c = await s.commands.run("echo one; echo two >&2; cat; exit 3", { stdin: "in\n", onStdout: (b) => out.push(b.toString()), onStderr: (b) => err.push(b.toString()) });
    assert.equal(c.exitCode, 3);
    assert.equal(c.stdout, "one\nin\n");
    assert.equal(c.stderr, "two\n");
    assert.equal(out.join(""), "one\nin\n", "stdout streamed to the callback");
    assert.equal(err.join(""), "two\n");
    const env = await s.commands.run(["sh", "-c", "echo $FOO; pwd"], { env: { FOO: "bar" }, cwd: "dir" });
    assert.equal(env.stdout, "bar\n/workspace/dir\n");
  });

  test("errors come back with the in-process codes", { skip }, async (t) => {
    const s = await sandbox(t);
    await rejectsWith(s.files.read("missing.txt"), "NOT_FOUND");
    await rejectsWith(s.files.read("../../etc/passwd"), "PATH_ESCAPE");
    mkdirSync(join(ws.dir, "sub"), { recursive: true });
    await rejectsWith(s.files.read("sub"), "IS_A_DIRECTORY");
    writeFileSync(join(ws.dir, "big.bin"), Buffer.alloc(9 * 1024 * 1024, 1));
    await rejectsWith(s.files.read("big.bin"), "FILE_TOO_LARGE");
    await rejectsWith(s.callTool("read_file", { path: 5 }), "INVALID_ARGUMENT");
    await rejectsWith(s.callTool("search", {}), "INVALID_ARGUMENT");
    const e = await rejectsWith(s.commands.run("echo partial; sleep 5", { timeoutMs: 300, onStdout: () => undefined }), "TOOL_TIMEOUT");
    assert.match(String(e.details["stdout"]), /partial/, "a timed-out command's output is in the error's details");
    await rejectsWith(s.commands.run("sleep 5", { timeoutMs: 300 }), "TOOL_TIMEOUT");
  });

  test("callTool answers exactly what the in-process sandbox answers", { skip }, async (t) => {
    const remote = await sandbox(t);
    const local = await Sandbox.create({ backend: "namespace", workspace: ws.dir, daemon: false });
    t.after(() => local.kill());
    writeFileSync(join(ws.dir, "same.txt"), "same\n");
    for (const [name, args] of [
      ["read_file", { path: "same.txt" }],
      ["list_directory", { path: "dir" }],
      ["search", { pattern: "same", glob: "same.txt" }],
    ] as const) {
      assert.deepEqual(await remote.callTool(name, args), await local.callTool(name, args), name);
    }
    const a = await remote.callTool("execute_command", { command: "echo x" });
    const b = await local.callTool("execute_command", { command: "echo x" });
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    assert.equal(a["stdout"], b["stdout"]);
  });

  test("kill destroys the sandbox in the daemon; a killed sandbox is SANDBOX_CLOSED", { skip }, async (t) => {
    const s = await sandbox(t, { ownWorkspace: true });
    const list = (await http(d, "GET", "/v1/sandboxes")).json() as { sandboxes: { id: string; workspace: string }[] };
    const mine = list.sandboxes.find((x) => x.id === s.id);
    assert.ok(mine, "the daemon lists it");
    assert.ok(existsSync(mine.workspace), "its own workspace exists while it lives");
    await s.kill();
    await rejectsWith(s.files.read("x"), "SANDBOX_CLOSED");
    const after = (await http(d, "GET", "/v1/sandboxes")).json() as { sandboxes: { id: string }[] };
    assert.ok(!after.sandboxes.some((x) => x.id === s.id));
    assert.equal(existsSync(mine.workspace), false, "its own workspace is removed with it");
    const gone = await http(d, "DELETE", `/v1/sandboxes/${s.id}`);
    assert.equal(gone.status, 404);
    assert.deepEqual(Object.keys(gone.json() as object).sort(), ["code", "message"]);
  });

  test("the HTTP API: every error is { code, message } with the status for its code", { skip }, async () => {
    const cases: [string, string, unknown, number, string][] = [
      ["GET", "/v1/nope", undefined, 404, "NOT_FOUND"],
      ["POST", "/v1/sandboxes", "{not json", 400, "INVALID_ARGUMENT"],
      ["POST", "/v1/sandboxes", { backend: "docker" }, 400, "INVALID_ARGUMENT"],
      ["POST", "/v1/sandboxes", { workspace: "relative/dir" }, 400, "INVALID_ARGUMENT"],
      ["POST", "/v1/sandboxes", { workspace: "/etc", backend: "namespace" }, 403, "WORKSPACE_FORBIDDEN"],
      ["POST", "/v1/sandboxes/lg-nope/tools/read_file", { path: "x" }, 404, "NOT_FOUND"],
      ["POST", "/v1/approvals/ap-nope", { decision: "approve" }, 404, "NOT_FOUND"],
      ["POST", "/v1/approvals/ap-nope", { decision: "maybe" }, 400, "INVALID_ARGUMENT"],
      ["GET", "/v1/audit?tail=0", undefined, 400, "INVALID_ARGUMENT"],
    ];
    for (const [method, path, body, status, code] of cases) {
      const r = await http(d, method, path, body);
      assert.equal(r.status, status, `${method} ${path}: ${r.text}`);
      const j = r.json() as { code: string; message: string };
      assert.equal(j.code, code, `${method} ${path}`);
      assert.equal(typeof j.message, "string");
    }
    const health = (await http(d, "GET", "/healthz")).json() as { status: string; pid: number };
    assert.equal(health.status, "ok");
    assert.equal(health.pid, d.pid);
    const ready = await http(d, "GET", "/readyz");
    assert.equal(ready.status, 200);
    assert.equal((ready.json() as { backends: Record<string, { available: boolean }> }).backends["namespace"]?.available, true);
  });

  test("past --max-sandboxes a create is CAPACITY with a retry hint", { skip }, async (t) => {
    const made: string[] = [];
    t.after(async () => {
      for (const id of made) await http(d, "DELETE", `/v1/sandboxes/${id}`);
    });
    let capacity: { status: number; headers: Record<string, unknown>; body: { code: string; details?: { retryAfterMs?: number } } } | undefined;
    for (let i = 0; i < 8 && !capacity; i++) {
      const r = await http(d, "POST", "/v1/sandboxes", { backend: "namespace" });
      if (r.status === 201) made.push((r.json() as { id: string }).id);
      else capacity = { status: r.status, headers: r.headers, body: r.json() as { code: string } };
    }
    assert.ok(capacity, "the daemon refused one");
    assert.equal(made.length, 6, "exactly --max-sandboxes were handed out");
    assert.equal(capacity.status, 429);
    assert.equal(capacity.body.code, "CAPACITY");
    assert.ok(Number(capacity.headers["retry-after"]) >= 1);
    assert.ok((capacity.body.details?.retryAfterMs ?? 0) > 0);
  });

  test("20 clients at once against a limit of 6: each gets a sandbox or CAPACITY, none hangs", { skip }, async () => {
    const t0 = Date.now();
    const answers = await Promise.all(Array.from({ length: 20 }, () => http(d, "POST", "/v1/sandboxes", { backend: "namespace" })));
    const made = answers.filter((a) => a.status === 201).map((a) => (a.json() as { id: string }).id);
    try {
      assert.equal(made.length, 6, "exactly the limit was handed out");
      for (const a of answers.filter((x) => x.status !== 201)) {
        assert.equal(a.status, 429);
        assert.equal((a.json() as { code: string }).code, "CAPACITY");
      }
      assert.ok(Date.now() - t0 < 30_000, "every client had its answer promptly");
    } finally {
      await Promise.all(made.map((id) => http(d, "DELETE", `/v1/sandboxes/${id}`)));
    }
    assert.deepEqual((((await http(d, "GET", "/v1/sandboxes")).json()) as { sandboxes: unknown[] }).sandboxes, []);
  });

  test("approvals: a Red call waits in /v1/approvals; approve runs it, deny and no answer do not; the audit log says who", { skip }, async () => {
    const c = await http(d, "POST", "/v1/sandboxes", { backend: "namespace", workspace: ws.dir, approval: "ask", client: "approval-test" });
    assert.equal(c.status, 201);
    const id = (c.json() as { id: string }).id;
    try {
      // Green: read-only calls pass without asking.
      writeFileSync(join(ws.dir, "g.txt"), "green");
      assert.equal((await http(d, "POST", `/v1/sandboxes/${id}/tools/read_file`, { path: "g.txt" })).status, 200);
      type Pending = { id: string; tool: string; card: { tool: string }; context: Record<string, string> };
      const pendingFor = async (): Promise<Pending> => {
        let p: Pending | undefined;
        const end = Date.now() + 10_000;
        while (!p && Date.now() < end) {
          const list = (await http(d, "GET", "/v1/approvals")).json() as { pending: Pending[] };
          p = list.pending.find((x) => x.context["sandbox"] === id);
          if (!p) await new Promise((r) => setTimeout(r, 25));
        }
        assert.ok(p, "the call is pending");
        return p;
      };
      const approved = http(d, "POST", `/v1/sandboxes/${id}/tools/write_file`, { path: "approved.txt", content: "yes" });
      const p1 = await pendingFor();
      assert.equal(p1.tool, "write_file");
      assert.equal(p1.card.tool, "write_file");
      assert.equal(p1.context["client"], "approval-test");
      assert.equal(existsSync(join(ws.dir, "approved.txt")), false, "nothing runs before the answer");
      const a = await http(d, "POST", `/v1/approvals/${p1.id}`, { decision: "approve", actor: "alice" });
      assert.equal(a.status, 200);
      assert.equal((await approved).status, 200);
      assert.equal(readFileSync(join(ws.dir, "approved.txt"), "utf8"), "yes");

      const denied = http(d, "POST", `/v1/sandboxes/${id}/tools/execute_command`, { command: "touch denied.txt" });
      const p2 = await pendingFor();
      await http(d, "POST", `/v1/approvals/${p2.id}`, { decision: "deny", reason: "not today" });
      const dr = await denied;
      assert.equal(dr.status, 403);
      assert.equal((dr.json() as { code: string }).code, "APPROVAL_DENIED");
      assert.equal(existsSync(join(ws.dir, "denied.txt")), false);

      const t0 = Date.now();
      const ignored = await http(d, "POST", `/v1/sandboxes/${id}/tools/write_file`, { path: "late.txt", content: "no" });
      assert.equal(ignored.status, 403);
      assert.equal((ignored.json() as { code: string }).code, "APPROVAL_TIMEOUT", "no answer in time is a denial");
      assert.ok(Date.now() - t0 >= 2_500);
      assert.equal(existsSync(join(ws.dir, "late.txt")), false);
      assert.equal(((await http(d, "GET", "/v1/approvals")).json() as { pending: unknown[] }).pending.length, 0);

      const audit = (await http(d, "GET", "/v1/audit?tail=3")).json() as { entries: { tool: string; decision: string; actor: string; channel: string }[] };
      assert.deepEqual(
        audit.entries.map((e) => [e.tool, e.decision, e.channel]),
        [
          ["write_file", "allow", "http"],
          ["execute_command", "deny", "http"],
          ["write_file", "deny", "http"],
        ],
      );
      assert.equal(audit.entries[0]?.actor, "http:alice");
    } finally {
      await http(d, "DELETE", `/v1/sandboxes/${id}`);
    }
  });

  test("exec and tool go through the daemon and say so; --no-daemon stays in-process", { skip }, () => {
    const env = { ...process.env, LUMINAGUARD_SOCKET: d.socket, LUMINAGUARD_RUN: d.run, LUMINAGUARD_HOME: d.home, LUMINAGUARD_DAEMON: "" };
    const viaDaemon = spawnSync(process.execPath, [MAIN, "exec", "--backend", "namespace", "--", "sh", "-c", "echo hi; exit 4"], { env, encoding: "utf8", timeout: 60_000 });
    assert.equal(viaDaemon.status, 4);
    assert.equal(viaDaemon.stdout, "hi\n");
    assert.match(viaDaemon.stderr, /via the daemon at .*d\.sock \(sandbox lg-[0-9a-f]+, namespace\)/);
    const local = spawnSync(process.execPath, [MAIN, "exec", "--no-daemon", "--backend", "namespace", "--", "echo", "hi"], { env, encoding: "utf8", timeout: 60_000 });
    assert.equal(local.status, 0);
    assert.doesNotMatch(local.stderr, /via the daemon/);
    const off = spawnSync(process.execPath, [MAIN, "exec", "--backend", "namespace", "--", "true"], { env: { ...env, LUMINAGUARD_DAEMON: "0" }, encoding: "utf8", timeout: 60_000 });
    assert.equal(off.status, 0);
    assert.doesNotMatch(off.stderr, /via the daemon/);
    const tool = execFileSync(process.execPath, [MAIN, "tool", "list_directory", "--args", "{}", "--backend", "namespace"], { env, encoding: "utf8", timeout: 60_000 });
    const j = JSON.parse(tool) as { via?: string; entries: unknown[] };
    assert.equal(j.via, "daemon");
    assert.deepEqual(j.entries, []);
  });

  test("GET /metrics is Prometheus text that promtool accepts, with the daemon's figures", { skip }, async (t) => {
    const text = (await http(d, "GET", "/metrics")).text;
    for (const name of [
      "luminaguard_sandbox_spawn_seconds_bucket",
      "luminaguard_sandbox_handout_seconds_bucket",
      "luminaguard_tool_call_seconds_bucket",
      "luminaguard_pool_sandboxes",
      "luminaguard_sandboxes_alive",
      "luminaguard_approvals_total",
    ]) {
      assert.match(text, new RegExp(`^${name}`, "m"), name);
    }
    assert.match(text, /^luminaguard_tool_calls_total\{tool="write_file",outcome="ok"\} [1-9]/m);
    assert.match(text, /^luminaguard_errors_total\{code="CAPACITY"\} [1-9]/m);
    assert.match(text, /^luminaguard_approvals_total\{decision="deny",channel="http"\} [1-9]/m);
    if (!hasPromtool()) {
      t.skip("promtool is not installed (apt-get install prometheus)");
      return;
    }
    const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
  });

  test("GET /v1/stats has the dashboard's figures; /ui and its files come with a strict CSP", { skip }, async () => {
    const r = await http(d, "GET", "/v1/stats");
    assert.equal(r.status, 200);
    type Stats = {
      state: string;
      pools: Record<string, { ready: number; target: number }>;
      sandboxes: { alive: number; max: number };
      calls: { tool: string; outcome: string; count: number }[];
      errors: { code: string; count: number }[];
      series: { t: number; calls: number; p50Ms: number | null }[];
      latency: { n: number; p50Ms: number | null };
      recentErrors: { code: string; where: string }[];
    };
    const s = r.json() as Stats;
    assert.equal(s.state, "ready");
    assert.ok((s.pools["namespace"]?.target ?? 0) >= 1, JSON.stringify(s.pools));
    assert.equal(s.sandboxes.max, 6);
    assert.ok(s.calls.some((c) => c.tool === "write_file" && c.outcome === "ok" && c.count > 0), JSON.stringify(s.calls));
    assert.ok(s.errors.some((e) => e.code === "CAPACITY"));
    assert.equal(s.series.length, 60);
    assert.ok(s.series.every((p, i) => i === 0 || p.t - (s.series[i - 1] as { t: number }).t === 1000));
    assert.ok(s.recentErrors.length > 0 && s.recentErrors.every((e) => typeof e.code === "string" && e.where.startsWith("/") === false));
    for (const [path, type] of [
      ["/ui", /^text\/html/],
      ["/ui/app.js", /^text\/javascript/],
      ["/ui/app.css", /^text\/css/],
    ] as const) {
      const u = await http(d, "GET", path);
      assert.equal(u.status, 200, path);
      assert.match(String(u.headers["content-type"]), type);
      assert.match(String(u.headers["content-security-policy"]), /^default-src 'none'; script-src 'self';/);
      assert.equal(u.headers["x-content-type-options"], "nosniff");
    }
    assert.doesNotMatch((await http(d, "GET", "/ui")).text, /<script>|\sstyle=|\son[a-z]+=/i, "no inline script, style or handler");
    assert.equal((await http(d, "GET", "/ui/..%2Fapi.js")).status, 404);
    assert.equal((await http(d, "GET", "/ui/__proto__")).status, 404);
  });

  test("a sandbox's lifetime (timeoutMs) ends in the daemon", { skip }, async () => {
    const c = await http(d, "POST", "/v1/sandboxes", { backend: "namespace", timeoutMs: 300 });
    assert.equal(c.status, 201);
    const { id, workspace, expiresAt } = c.json() as { id: string; workspace: string; expiresAt?: string };
    assert.ok(expiresAt);
    await new Promise((r) => setTimeout(r, 800));
    const r = await http(d, "POST", `/v1/sandboxes/${id}/tools/list_directory`, {});
    assert.equal(r.status, 404);
    assert.equal(existsSync(workspace), false, "destroyed with its workspace");
  });

  test("a micro-VM through the daemon", async (t) => {
    const why = await unavailable("microvm");
    if (why || skip) return void t.skip(why ?? skip);
    const s = await Sandbox.create({ backend: "microvm", daemon: true });
    t.after(() => s.kill());
    assert.equal(s.backend, "microvm");
    assert.equal(s.info["via"], "daemon");
    assert.equal(s.info["sharesHostKernel"], false);
    await s.files.write("vm.txt", "in the vm\n");
    const r = await s.commands.run("cat /workspace/vm.txt; uname -r");
    assert.equal(r.exitCode, 0);
    assert.match(r.stdout, /^in the vm\n\S+/);
    assert.equal(r.servedBy, "vm");
  });
});
