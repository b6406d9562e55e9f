// The luminaguard command as a user runs it: real process, real sandboxes, exit codes and output.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { BACKENDS, tempWorkspace, unavailable } from "../fixtures.js";
import { http, startTestDaemon } from "../daemon/helpers.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

function cli(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 120_000, ...(input !== undefined ? { input } : {}) });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("doctor --json reports both backends, the accelerator and what auto picks", () => {
  const r = cli(["doctor", "--json"]);
  const report = JSON.parse(r.stdout) as { backends: Array<{ backend: string; available: boolean; details: Record<string, unknown> }>; auto: string | null };
  assert.deepEqual(report.backends.map((b) => b.backend), ["microvm", "namespace"]);
  const ns = report.backends.find((b) => b.backend === "namespace");
  assert.equal(ns?.details["sharesHostKernel"], true, "doctor says the namespace backend shares the host kernel");
  const vm = report.backends.find((b) => b.backend === "microvm");
  if (vm?.available) {
    assert.match(String(vm.details["accel"]), /^(kvm|tcg)$/);
    assert.equal(report.auto, "microvm", "auto picks the strongest isolation that works");
  }
  assert.equal(r.code, report.auto ? 0 : 1);
});

test("bad usage gets a clear error and exit code 2", () => {
  const badJson = cli(["tool", "read_file", "--args", "{nope", "--backend", "namespace"]);
  assert.equal(badJson.code, 2);
  assert.match(badJson.stderr, /INVALID_ARGUMENT.*not valid JSON/);
  const unknown = cli(["tool", "rm_rf", "--args", "{}"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown tool "rm_rf"/);
  const badBackend = cli(["exec", "--backend", "docker", "--", "true"]);
  assert.notEqual(badBackend.code, 0);
  assert.match(badBackend.stderr, /docker.*invalid|Allowed choices/i);
  const badTimeout = cli(["exec", "--timeout", "0", "--", "true"]);
  assert.equal(badTimeout.code, 2);
  // A workspace that may not be shared is the caller's mistake too, not LuminaGuard's failure (125).
  const forbidden = cli(["exec", "--backend", "namespace", "--workspace", "/etc/ssh", "--", "true"]);
  assert.equal(forbidden.code, 2, forbidden.stderr);
  assert.match(forbidden.stderr, /WORKSPACE_FORBIDDEN/);
});

for (const backend of BACKENDS) {
  describe(`cli on ${backend}`, async () => {
    const skip = await unavailable(backend);

    test("exec streams output and exits with the command's exit code", { skip }, () => {
      const ws = tempWorkspace();
      try {
        writeFileSync(join(ws.dir, "in.txt"), "workspace file\n");
        const r = cli(["exec", "--backend", backend, "--workspace", ws.dir, "--", "sh", "-c", "cat in.txt; echo oops >&2; echo made > out.txt; exit 7"]);
        assert.equal(r.code, 7);
        assert.equal(r.stdout, "workspace file\n");
        assert.match(r.stderr, /oops/);
        assert.equal(readFileSync(join(ws.dir, "out.txt"), "utf8"), "made\n");
        const timeout = cli(["exec", "--backend", backend, "--timeout", "1", "--", "sleep", "30"]);
        assert.equal(timeout.code, 124);
        assert.match(timeout.stderr, /TOOL_TIMEOUT/);
      } finally {
        ws.remove();
      }
    });

    test("tool prints a JSON result, and a path escape is an error with its code", { skip }, () => {
      const ws = tempWorkspace();
      try {
        writeFileSync(join(ws.dir, "a.txt"), "alpha\n");
        const r = cli(["tool", "read_file", "--backend", backend, "--workspace", ws.dir, "--args", '{"path":"a.txt"}']);
        assert.equal(r.code, 0, r.stderr);
        const result = JSON.parse(r.stdout) as { content: string; encoding: string };
        assert.equal(result.content, "alpha\n");
        assert.equal(result.encoding, "utf8");
        const escape = cli(["tool", "read_file", "--backend", backend, "--workspace", ws.dir, "--args", '{"path":"../../etc/passwd"}']);
        assert.equal(escape.code, 125);
        assert.match(escape.stderr, /PATH_ESCAPE/);
      } finally {
        ws.remove();
      }
    });
  });
}

/** The modules a CLI run loads (ESM and CommonJS), from node's own debug output on stderr. */
function cliLoads(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; loaded: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, LUMINAGUARD_DAEMON: "0", NODE_DEBUG: "esm,module", ...env },
  });
  return { code: r.status, stdout: r.stdout, loaded: r.stderr };
}

test("a bare --version answers from package.json before commander or any command is loaded", () => {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../../../package.json", import.meta.url)), "utf8")) as { version: string };
  for (const flag of ["--version", "-V"]) {
    const r = cliLoads([flag]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${pkg.version}\n`);
    assert.doesNotMatch(r.loaded, /node_modules\/(commander|zod|pino)\//, `${flag} loaded a dependency`);
  }
  // Not a bare flag: commander answers (and so is loaded), as before.
  const help = cliLoads(["exec", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.loaded, /node_modules\/commander\//);
});

describe("exec loads only what it uses", async () => {
  const skip = await unavailable("namespace");

  test("a quiet exec never loads pino; a log line at an enabled level does", { skip }, () => {
    const quiet = cliLoads(["exec", "--backend", "namespace", "--", "true"], { LUMINAGUARD_LOG: "warn" });
    assert.equal(quiet.code, 0, quiet.loaded.slice(-2000));
    assert.doesNotMatch(quiet.loaded, /node_modules\/pino\//);
    // The control: at debug the sandbox logs its start, through pino, to stderr.
    const chatty = cliLoads(["exec", "--backend", "namespace", "--", "true"], { LUMINAGUARD_LOG: "debug" });
    assert.equal(chatty.code, 0);
    assert.match(chatty.loaded, /node_modules\/pino\//);
    assert.match(chatty.loaded, /"msg":"namespace sandbox ready"/);
  });

  test("the bwrap trial's pass is remembered per host, and a damaged memo is probed again", { skip }, () => {
    const probeDir = join(process.env["LUMINAGUARD_CACHE"] ?? join(homedir(), ".cache", "luminaguard"), "probe");
    const doctor = cli(["doctor", "--json"]);
    assert.ok(doctor.stdout.includes('"namespace"'), doctor.stderr);
    const memos = readdirSync(probeDir).filter((f) => /^memo-bwrap-trial-[0-9a-f]{16}\.json$/.test(f));
    assert.ok(memos.length >= 1, "doctor remembered the trial's pass");
    const path = join(probeDir, memos[0] as string);
    const before = JSON.parse(readFileSync(path, "utf8")) as { key: string; value: { ok: boolean } };
    assert.equal(before.value.ok, true);
    // A memo that claims a pass for another bwrap binary is not trusted: the trial runs and rewrites it.
    for (const f of memos) writeFileSync(join(probeDir, f), JSON.stringify({ key: "/nonexistent/bwrap:0:0:0:0", value: { ok: true } }));
    const r = cli(["exec", "--backend", "namespace", "--", "true"]);
    assert.equal(r.code, 0, r.stderr);
    const after = memos.map((f) => JSON.parse(readFileSync(join(probeDir, f), "utf8")) as { key: string; value: { ok: boolean; trialMs?: number } });
    assert.ok(after.some((m) => m.key === before.key && m.value.ok && typeof m.value.trialMs === "number"), "the trial ran again and was remembered");
  });
});

describe("exec through the daemon", async () => {
  const skip = await unavailable("namespace");

  test("exits once the kill is sent, and the daemon still destroys every sandbox it handed out", { skip }, async (t) => {
    const d = await startTestDaemon(t, ["--namespace-pool", "0", "--microvm-pool", "0", "--no-recover"]);
    const env = { ...process.env, LUMINAGUARD_SOCKET: d.socket, LUMINAGUARD_DAEMON: "" };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, [MAIN, "exec", "--backend", "namespace", "--", "sh", "-c", `echo run ${i}; exit ${i}`], { encoding: "utf8", timeout: 120_000, env });
      assert.equal(r.status, i, r.stderr);
      assert.equal(r.stdout, `run ${i}\n`);
      const id = /via the daemon at .* \(sandbox (lg-[0-9a-f]+), namespace\)/.exec(r.stderr)?.[1];
      assert.ok(id, `exec went through the daemon: ${r.stderr}`);
      ids.push(id);
    }
    // Nothing left: the daemon lists no sandbox and logged each one's destruction.
    const deadline = Date.now() + 30_000;
    let listed: unknown[] = [];
    while (Date.now() < deadline) {
      listed = ((await http({ socket: d.socket }, "GET", "/v1/sandboxes")).json() as { sandboxes: unknown[] }).sandboxes;
      if (listed.length === 0 && ids.every((id) => d.stderr().includes(id) && new RegExp(`"id":"${id}"[^\\n]*daemon: sandbox destroyed`).test(d.stderr()))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(listed, []);
    for (const id of ids) assert.match(d.stderr(), new RegExp(`"id":"${id}"[^\\n]*daemon: sandbox destroyed`), `${id} destroyed`);
    assert.equal(await d.stop(), 0);
  });
});

describe("the thin exec client (a service answering)", async () => {
  const skip = await unavailable("namespace");

  test("takes only the command lines the full command would take the same way", async () => {
    const { parseThinExec } = await import("../../src/cli/exec-thin.js");
    const argv = (...w: string[]): string[] => ["node", "main.js", ...w];
    assert.deepEqual(parseThinExec(argv("exec", "--", "true")), { backend: "auto", timeout: 60, cmd: ["true"] });
    assert.deepEqual(parseThinExec(argv("exec", "--backend=namespace", "--timeout", "5", "--memory", "64", "--disk", "8", "--file-tools", "guest", "--workspace", "w", "--", "sh", "-c", "x")), {
      backend: "namespace",
      timeout: 5,
      memory: 64,
      disk: 8,
      fileTools: "guest",
      workspace: "w",
      cmd: ["sh", "-c", "x"],
    });
    // Everything else is the full command's: its help, its errors, its other flags, a repeated option.
    for (const w of [
      ["exec", "true"],
      ["exec", "--"],
      ["exec", "--help", "--", "true"],
      ["exec", "--no-daemon", "--", "true"],
      ["exec", "--cluster", "nats://x:1", "--", "true"],
      ["exec", "--backend", "docker", "--", "true"],
      ["exec", "--timeout", "0", "--", "true"],
      ["exec", "--timeout", "1.5", "--", "true"],
      ["exec", "--memory", "16", "--", "true"],
      ["exec", "--disk", "4", "--", "true"],
      ["exec", "--file-tools", "both", "--", "true"],
      ["exec", "--workspace", "--", "true"],
      ["exec", "--timeout", "5", "--timeout=5", "--", "true"],
      ["tool", "read_file", "--", "x"],
      ["--verbose", "exec", "--", "true"],
    ]) assert.equal(parseThinExec(argv(...w)), undefined, w.join(" "));
  });

  test("the bin's check of LUMINAGUARD_DAEMON reads it as the daemon's client does", async () => {
    const { daemonOffByEnv } = await import("../../src/cli/program.js");
    const { daemonDisabledByEnv } = await import("../../src/daemon/socket-path.js");
    for (const v of [undefined, "", "0", "1", "false", "FALSE", " off ", "no", "yes", "on", "true"]) {
      const env = v === undefined ? {} : { LUMINAGUARD_DAEMON: v };
      assert.equal(daemonOffByEnv(env), daemonDisabledByEnv(env), JSON.stringify(v));
    }
  });

  test("answers as the full command does (output, exit code, errors), without loading commander", { skip, timeout: 240_000 }, async (t) => {
    const d = await startTestDaemon(t, ["--namespace-pool", "1:2", "--microvm-pool", "0", "--no-recover"]);
    const env: NodeJS.ProcessEnv = { ...process.env, LUMINAGUARD_SOCKET: d.socket, LUMINAGUARD_DAEMON: "" };
    delete env["LUMINAGUARD_CLUSTER"];
    const run = (args: string[]): { code: number | null; stdout: string; stderr: string } => {
      const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 120_000, env });
      // The sandbox's id differs from run to run.
      return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/sandbox lg-[0-9a-f]+/g, "sandbox ID") };
    };
    /** Whether the command line loads commander (node's module debug output names the files it loads). */
    const loadsCommander = (args: string[]): boolean => {
      const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 120_000, env: { ...env, NODE_DEBUG: "esm,module" } });
      assert.match(r.stderr, /via the daemon/);
      return /node_modules\/commander\//.test(r.stderr);
    };
    assert.equal(loadsCommander(["exec", "--backend", "namespace", "--", "true"]), false, "the thin path loads no commander");
    assert.equal(loadsCommander(["exec", "--backend", "namespace", "--backend", "namespace", "--", "true"]), true, "the control goes through commander");
    const ws = tempWorkspace();
    try {
      writeFileSync(join(ws.dir, "in.txt"), "workspace file\n");
      const cases: string[][] = [
        ["--workspace", ws.dir, "--", "sh", "-c", "cat in.txt; echo oops >&2; echo made > out.txt; exit 7"],
        ["--timeout", "1", "--", "sleep", "30"],
        ["--", "no-such-command-here"],
        ["--workspace", "/etc/ssh", "--", "true"],
        ["--memory", "64", "--disk", "16", "--file-tools", "host", "--", "sh", "-c", "echo $((6*7)); exit 0"],
        // Output in many chunks of the stream, both streams, multi-byte characters.
        ["--", "sh", "-c", "seq 1 40000; printf 'h\\303\\251llo\\n' >&2; seq 1 2000 >&2"],
      ];
      for (const c of cases) {
        const thin = run(["exec", "--backend", "namespace", ...c]);
        // The same command line with an option repeated (commander takes the last) is the full command's.
        const full = run(["exec", "--backend", "namespace", "--backend", "namespace", ...c]);
        assert.deepEqual(thin, full, c.join(" "));
      }
      // The bundled bin takes the thin client straight away (bundled into dist/cli/main.cjs): the same answers, errors included.
      const BIN = fileURLToPath(new URL("../../cli/main.cjs", import.meta.url));
      for (const c of [cases[0] as string[], ["--workspace", "/etc/ssh", "--", "true"], ["--timeout", "1", "--", "sleep", "30"]]) {
        const r = spawnSync(process.execPath, [BIN, "exec", "--backend", "namespace", ...c], { encoding: "utf8", timeout: 120_000, env });
        const bundled = { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/sandbox lg-[0-9a-f]+/g, "sandbox ID") };
        assert.deepEqual(bundled, run(["exec", "--backend", "namespace", ...c]), `bundled: ${c.join(" ")}`);
      }
      assert.equal(readFileSync(join(ws.dir, "out.txt"), "utf8"), "made\n");
      const first = run(["exec", "--backend", "namespace", "--workspace", ws.dir, "--", "sh", "-c", "cat in.txt; exit 7"]);
      assert.equal(first.code, 7);
      assert.equal(first.stdout, "workspace file\n");
      assert.match(first.stderr, /via the daemon at .* \(sandbox ID, namespace\)/);
      assert.equal(run(["exec", "--backend", "namespace", "--timeout", "1", "--", "sleep", "30"]).code, 124);
      assert.equal(run(["exec", "--backend", "namespace", "--workspace", "/etc/ssh", "--", "true"]).code, 2);
    } finally {
      ws.remove();
    }
    assert.equal(await d.stop(), 0);
  });

  test("no service at the socket: the full command runs in-process, as before", { skip }, () => {
    const dir = tempWorkspace();
    try {
      const env = { ...process.env, LUMINAGUARD_SOCKET: join(dir.dir, "none.sock"), LUMINAGUARD_DAEMON: "" };
      const r = spawnSync(process.execPath, [MAIN, "exec", "--backend", "namespace", "--", "sh", "-c", "echo in-process; exit 4"], { encoding: "utf8", timeout: 120_000, env });
      assert.equal(r.status, 4, r.stderr);
      assert.equal(r.stdout, "in-process\n");
      assert.doesNotMatch(r.stderr, /via the daemon/);
    } finally {
      dir.remove();
    }
  });

  test("Ctrl-C during a command: exit 130, and the service destroys the sandbox", { skip, timeout: 120_000 }, async (t) => {
    const d = await startTestDaemon(t, ["--namespace-pool", "0", "--microvm-pool", "0", "--no-recover"]);
    const env = { ...process.env, LUMINAGUARD_SOCKET: d.socket, LUMINAGUARD_DAEMON: "" };
    const child = spawn(process.execPath, [MAIN, "exec", "--backend", "namespace", "--", "sh", "-c", "echo started; sleep 60"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!out.includes("started") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.match(out, /started/, err);
    const id = /via the daemon at .* \(sandbox (lg-[0-9a-f]+), namespace\)/.exec(err)?.[1];
    assert.ok(id, err);
    child.kill("SIGINT");
    assert.equal(await exited, 130);
    const end = Date.now() + 30_000;
    let listed: unknown[] = [];
    while (Date.now() < end) {
      listed = ((await http({ socket: d.socket }, "GET", "/v1/sandboxes")).json() as { sandboxes: unknown[] }).sandboxes;
      if (listed.length === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(listed, [], "the sandbox was torn down");
    assert.equal(await d.stop(), 0);
  });
});

test("a subcommand's options are its own: `bench faults --backend namespace` is not the scenario runner's --backend", { skip: await unavailable("namespace") }, () => {
  const metrics = tempWorkspace();
  try {
    const r = spawnSync(process.execPath, [MAIN, "bench", "faults", "--backend", "namespace", "--fault", "spawn", "--json"], {
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, LUMINAGUARD_DAEMON: "0", LUMINAGUARD_METRICS_DIR: metrics.dir },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /"spawn"/);
    // The scenario runner's own --backend still refuses what it does not know.
    const bad = spawnSync(process.execPath, [MAIN, "bench", "spawn", "--backend", "both"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /argument 'both' is invalid/);
  } finally {
    metrics.remove();
  }
});
