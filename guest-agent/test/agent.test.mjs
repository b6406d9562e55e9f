// Guest agent (guest-agent/) over its stdio channel: builds lg-agent, then checks docs/protocol.md op by op.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { performance } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import { clearInterval, setInterval } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const MAX_FRAME = 16 * 1024 * 1024;
const scratch = realpathSync(mkdtempSync(join(tmpdir(), "lg-agent-test-")));
// LG_AGENT_BIN runs the suite against a prebuilt binary (e.g. a -fsanitize=address build).
const agentPath = process.env.LG_AGENT_BIN ?? join(scratch, "lg-agent");

before(() => {
  if (process.env.LG_AGENT_BIN) return;
  execFileSync("bash", [join(repo, "guest-agent/build.sh"), agentPath], { stdio: ["ignore", "inherit", "inherit"] });
});

after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

const b64 = (s) => Buffer.from(s).toString("base64");
const unb64 = (s) => Buffer.from(s, "base64");

function frame(body) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length);
  return Buffer.concat([h, b]);
}

function processGone(pid) {
  // A zombie still answers kill(0); /proc/PID/stat tells the difference.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/** One agent process speaking the framed protocol on its stdin/stdout; checks every frame it sends. */
class Agent {
  /** `wrap` runs the agent under a launcher (e.g. ["prlimit", "--fsize=N"]): argv is wrap + agent + args. */
  constructor(root, extra = [], wrap = []) {
    // LG_AGENT_ARGS adds flags to every agent, e.g. "--no-openat2" to run the suite on the fallback resolver.
    const env = (process.env.LG_AGENT_ARGS ?? "").split(" ").filter(Boolean);
    const argv = [...wrap, agentPath, "--channel", "stdio", "--root", root, ...env, ...extra];
    this.proc = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    this.buf = Buffer.alloc(0);
    this.pending = new Map();
    this.answered = new Set();
    this.mine = new Set();
    this.foreign = [];
    this.log = [];
    this.violations = [];
    this.stderr = "";
    // High ids keep the harness's requests apart from the small ids the fuzz test sends.
    this.nextId = 1_000_000;
    this.proc.stdout.on("data", (c) => this.onData(c));
    this.proc.stderr.on("data", (d) => (this.stderr += d));
    this.proc.stdin.on("error", () => undefined);
    this.exited = new Promise((res) => this.proc.on("exit", (code, signal) => res({ code, signal })));
    // A dead agent answers nothing: fail what is pending instead of leaving the test hanging.
    void this.exited.then(({ code, signal }) => {
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.resolve({ id, ok: false, error: { code: "AGENT_EXITED", message: `agent exited (${signal ?? code}): ${this.stderr}` }, events: p.events });
      }
    });
  }

  onData(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len > MAX_FRAME) {
        this.violations.push(`oversized frame ${len}`);
        this.buf = Buffer.alloc(0);
        return;
      }
      if (this.buf.length < 4 + len) return;
      const body = this.buf.subarray(4, 4 + len);
      this.buf = this.buf.subarray(4 + len);
      let m;
      try {
        m = JSON.parse(body.toString("utf8"));
      } catch {
        this.violations.push(`not JSON: ${body.toString("utf8").slice(0, 80)}`);
        continue;
      }
      this.onMessage(m);
    }
  }

  onMessage(m) {
    m.at = performance.now();
    this.log.push(m);
    if (!Number.isInteger(m.id) || m.id < 0 || m.id > 0xffffffff) return void this.violations.push(`bad id ${JSON.stringify(m)}`);
    if (!this.mine.has(m.id)) return void this.foreign.push(m);
    if (this.answered.has(m.id)) return void this.violations.push(`message after the final answer: ${JSON.stringify(m)}`);
    const p = this.pending.get(m.id);
    if ("event" in m) {
      if (!["stdout", "stderr"].includes(m.event) || !/^[A-Za-z0-9+/]*={0,2}$/.test(m.data)) this.violations.push(`bad event ${JSON.stringify(m)}`);
      p?.events.push(m);
      return;
    }
    if (m.ok === true ? typeof m.result !== "object" : m.ok !== false || typeof m.error?.code !== "string" || typeof m.error?.message !== "string") {
      this.violations.push(`bad answer ${JSON.stringify(m)}`);
    }
    this.answered.add(m.id);
    if (p) {
      this.pending.delete(m.id);
      p.resolve({ ...m, events: p.events });
    }
  }

  /** Sends a request and resolves with its final answer (plus the stream events before it). */
  request(op, args, id = this.nextId++) {
    const done = this.expect(id);
    this.proc.stdin.write(frame({ id, op, args }));
    return done;
  }

  expect(id) {
    this.mine.add(id);
    return new Promise((resolve) => this.pending.set(id, { resolve, events: [] }));
  }

  raw(bytes) {
    this.proc.stdin.write(bytes);
  }

  async ok(op, args) {
    const m = await this.request(op, args);
    assert.equal(m.ok, true, `${op} failed: ${JSON.stringify(m.error)}`);
    return m.result;
  }

  async err(op, args) {
    const m = await this.request(op, args);
    assert.equal(m.ok, false, `${op} unexpectedly succeeded: ${JSON.stringify(m.result)}`);
    return m.error;
  }

  async run(argv, extra = {}) {
    const m = await this.request("execute_command", { argv, timeoutMs: 10_000, maxOutputBytes: 1 << 20, ...extra });
    const stream = (name) => Buffer.concat(m.events.filter((e) => e.event === name).map((e) => unb64(e.data)));
    return { ...m, stdout: stream("stdout").toString(), stderr: stream("stderr").toString(), stdoutBytes: stream("stdout").length };
  }

  async close({ allowForeign = false } = {}) {
    this.proc.stdin.end();
    const r = await this.exited;
    assert.deepEqual(this.violations, []);
    if (!allowForeign) assert.deepEqual(this.foreign, [], "answers to ids never sent");
    return r;
  }
}

let wsCount = 0;
function workspace() {
  const dir = join(scratch, `ws-${++wsCount}`);
  mkdirSync(dir);
  return dir;
}

/** A fresh workspace and agent per test, closed (and checked for protocol violations) afterwards. */
async function withAgent(fn, extra = [], closeOptions = {}, wrap = []) {
  const ws = workspace();
  const agent = new Agent(ws, extra, wrap);
  try {
    await fn(agent, ws);
  } finally {
    const r = await agent.close(closeOptions);
    assert.equal(r.signal, null, `agent died of ${r.signal}: ${agent.stderr}`);
  }
}

describe("lg-agent", () => {
  test("hello answers every time with version, name and pid", () =>
    withAgent(async (a) => {
      const r1 = await a.ok("hello", { v: 1 });
      const r2 = await a.ok("hello", { v: 1 });
      assert.deepEqual(r1, { v: 1, agent: "lg-agent/0.1.0", pid: a.proc.pid });
      assert.deepEqual(r2, r1);
      // With the host's time (sent after a paused VM resumes): answered the same, whatever the value;
      // outside the VM's init the host's clock is never touched.
      const before = Date.now();
      for (const timeMs of [0, 1, -5, 1e20, "x", null, Date.now()]) assert.deepEqual(await a.ok("hello", { v: 1, timeMs }), r1);
      assert.ok(Math.abs(Date.now() - before) < 5000);
    }));

  test("hello carrying init applies it once per host connection and says so; a bad one is refused", () =>
    withAgent(async (a, ws) => {
      const seed = Buffer.alloc(32, 3).toString("base64");
      assert.equal((await a.err("hello", { v: 1, init: "x" })).code, "INVALID_ARGUMENT");
      assert.equal((await a.err("hello", { v: 1, init: { seed, timeMs: Date.now(), id: "sb", diskMiB: 0 } })).code, "INVALID_ARGUMENT");
      // A refused init changed nothing: no per-file limit yet.
      assert.equal((await a.ok("write_file", { path: "a", content: Buffer.alloc(1024 * 1024 + 1).toString("base64") })).bytesWritten, 1024 * 1024 + 1);
      const r = await a.ok("hello", { v: 1, init: { seed, timeMs: Date.now(), id: "sb", diskMiB: 1 } });
      assert.deepEqual(r, { v: 1, agent: "lg-agent/0.1.0", pid: a.proc.pid, init: true });
      const big = Buffer.alloc(1024 * 1024 + 1).toString("base64");
      assert.deepEqual((await a.err("write_file", { path: "b", content: big })).code, "NO_SPACE", "the hello's init set the limit");
      // The host resends hello until one is answered: a later copy is answered but not applied again.
      assert.equal((await a.ok("hello", { v: 1, init: { seed, timeMs: Date.now(), id: "sb", diskMiB: 4 } })).init, true);
      assert.deepEqual((await a.err("write_file", { path: "b", content: big })).code, "NO_SPACE", "the second hello's init was not applied");
      assert.equal(existsSync(join(ws, "b")), false);
    }));

  test("init without a mount mixes the seed and answers {}", () =>
    withAgent(async (a) => {
      assert.deepEqual(await a.ok("init", { seed: Buffer.alloc(32, 7).toString("base64"), timeMs: Date.now(), id: "sb-1" }), {});
      const e = await a.err("init", { seed: b64("x"), timeMs: 1, id: "sb", mount: { tag: "ws" } });
      assert.equal(e.code, "INVALID_ARGUMENT"); // mounting is the VM init's job only
    }));

  describe("commands as another user (the VM's default; here as a root agent told commandUid)", { skip: process.getuid?.() === 0 ? false : "needs a root agent" }, () => {
    const seed = Buffer.alloc(32, 3).toString("base64");
    const init = (a, more) => a.request("init", { seed, timeMs: Date.now(), id: "sb", ...more });

    test("commandUid/commandGid are validated: integers 1 to 2^31-1", () =>
      withAgent(async (a) => {
        for (const bad of [0, -1, 2 ** 31, 1.5, "1000", true]) {
          assert.equal((await init(a, { commandUid: bad, commandGid: 1000 })).error?.code, "INVALID_ARGUMENT", `commandUid ${bad}`);
          assert.equal((await init(a, { commandUid: 1000, commandGid: bad })).error?.code, "INVALID_ARGUMENT", `commandGid ${bad}`);
        }
        // A refused init changed nothing: commands still run as the agent.
        assert.equal((await a.run(["id", "-u"])).stdout, "0\n");
      }));

    test("commands run as that uid/gid, no supplementary groups, no new privileges; the agent stays out of reach", () =>
      withAgent(async (a) => {
        assert.equal((await init(a, { commandUid: 12345, commandGid: 12346 })).ok, true);
        const r = await a.run(["/bin/sh", "-c", "id -u; id -g; id -G; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status"]);
        assert.equal(r.stdout, "12345\n12346\n12346\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n", r.stderr);
        const probe = await a.run(["/bin/sh", "-c", `ls /proc/${a.proc.pid}/fd >/dev/null 2>&1 && echo listed; (exec 3>/proc/${a.proc.pid}/fd/1) 2>/dev/null && echo opened; kill -0 ${a.proc.pid} 2>/dev/null && echo signalled; echo done`]);
        assert.equal(probe.stdout, "done\n");
      }));

    test("files and directories the agent creates belong to the command user, who can change them", () =>
      withAgent(async (a, ws) => {
        assert.equal((await init(a, { commandUid: 12345, commandGid: 12346 })).ok, true);
        await a.ok("write_file", { path: "d/e/f.txt", content: b64("agent\n"), createParents: true });
        for (const p of ["d", "d/e", "d/e/f.txt"]) {
          const st = statSync(join(ws, p));
          assert.deepEqual([st.uid, st.gid], [12345, 12346], p);
        }
        writeFileSync(join(ws, "d/e/f.txt"), "host\n"); // the host writing in place keeps the owner
        await a.ok("write_file", { path: "d/e/f.txt", content: b64("agent again\n") }); // replaced: a new file, again theirs
        assert.equal(statSync(join(ws, "d/e/f.txt")).uid, 12345);
        const r = await a.run(["/bin/sh", "-c", "echo command >> f.txt && touch new && mkdir sub && echo ok"], { cwd: "d/e" });
        assert.equal(r.stdout, "ok\n", r.stderr);
        assert.equal(readFileSync(join(ws, "d/e/f.txt"), "utf8"), "agent again\ncommand\n");
      }));
  });

  describe("read_file", () => {
    test("text, binary byte-exact, offset and length", () =>
      withAgent(async (a, ws) => {
        writeFileSync(join(ws, "a.txt"), "hello world\n");
        const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        writeFileSync(join(ws, "bin"), all);
        let r = await a.ok("read_file", { path: "a.txt", maxBytes: 100 });
        assert.deepEqual({ ...r, content: unb64(r.content).toString() }, { content: "hello world\n", size: 12, offset: 0, bytesRead: 12, eof: true });
        r = await a.ok("read_file", { path: "bin", maxBytes: 1000 });
        assert.ok(unb64(r.content).equals(all));
        r = await a.ok("read_file", { path: "bin", offset: 10, length: 5, maxBytes: 5 });
        assert.ok(unb64(r.content).equals(all.subarray(10, 15)));
        assert.equal(r.eof, false);
        r = await a.ok("read_file", { path: "bin", offset: 250, maxBytes: 100 });
        assert.equal(r.bytesRead, 6);
        assert.equal(r.eof, true);
        r = await a.ok("read_file", { path: "bin", offset: 1000, maxBytes: 100 });
        assert.deepEqual([r.bytesRead, r.eof, r.content], [0, true, ""]);
        r = await a.ok("read_file", { path: join(ws, "a.txt"), maxBytes: 100 });
        assert.equal(r.bytesRead, 12, "an absolute path inside the root is fine");
      }));

    test("error codes", () =>
      withAgent(async (a, ws) => {
        writeFileSync(join(ws, "big"), Buffer.alloc(1000));
        mkdirSync(join(ws, "dir"));
        assert.equal((await a.err("read_file", { path: "big", maxBytes: 999 })).code, "FILE_TOO_LARGE");
        assert.equal((await a.ok("read_file", { path: "big", offset: 1, maxBytes: 999 })).bytesRead, 999);
        const nf = await a.err("read_file", { path: "nope", maxBytes: 10 });
        assert.deepEqual([nf.code, nf.errno], ["NOT_FOUND", "ENOENT"]);
        assert.equal((await a.err("read_file", { path: "dir", maxBytes: 10 })).code, "IS_A_DIRECTORY");
        assert.equal((await a.err("read_file", { path: "big/x", maxBytes: 10 })).code, "NOT_A_DIRECTORY");
        assert.equal((await a.err("read_file", { path: "", maxBytes: 10 })).code, "INVALID_ARGUMENT");
        assert.equal((await a.err("read_file", { path: "a\u0000b", maxBytes: 10 })).code, "INVALID_ARGUMENT");
        assert.equal((await a.err("read_file", { path: "big" })).code, "INVALID_ARGUMENT");
        assert.equal((await a.err("read_file", { path: "big", maxBytes: -1 })).code, "INVALID_ARGUMENT");
        assert.equal((await a.err("read_file", { path: 5, maxBytes: 1 })).code, "INVALID_ARGUMENT");
      }));

    for (const mode of ["openat2", "userspace resolver"]) {
      test(`path escapes are refused (${mode})`, () =>
        withAgent(
          async (a, ws) => {
            const outside = join(scratch, `outside-${wsCount}`);
            mkdirSync(outside);
            writeFileSync(join(outside, "secret"), "s");
            mkdirSync(join(ws, "sub"));
            writeFileSync(join(ws, "sub", "f"), "inside");
            symlinkSync("/etc", join(ws, "etc"));
            symlinkSync(outside, join(ws, "out"));
            symlinkSync("../../" + outside.split("/").slice(-1)[0] + "/secret", join(ws, "sub", "rel-escape"));
            symlinkSync("f", join(ws, "sub", "rel-ok"));
            symlinkSync("../sub/f", join(ws, "sub", "updown"));
            symlinkSync("loop2", join(ws, "loop1"));
            symlinkSync("loop1", join(ws, "loop2"));
            for (const path of ["../x", "sub/../../x", "/etc/passwd", "etc/passwd", "etc", "out/secret", "sub/rel-escape", `${ws}/../x`, `${ws}x/a`]) {
              const e = await a.err("read_file", { path, maxBytes: 100 });
              assert.equal(e.code, "PATH_ESCAPE", `${path}: ${JSON.stringify(e)}`);
            }
            for (const path of ["sub/rel-ok", "sub/updown", "sub/./f", "sub/../sub/f", `${ws}/sub/f`, "/" + ws.slice(1) + "//sub/f"]) {
              const r = await a.ok("read_file", { path, maxBytes: 100 });
              assert.equal(unb64(r.content).toString(), "inside", path);
            }
            assert.equal((await a.err("read_file", { path: "loop1", maxBytes: 10 })).code, "IO_ERROR");
          },
          mode === "openat2" ? [] : ["--no-openat2"],
        ));
    }
  });

  describe("write_file", () => {
    test("writes atomically, replaces, leaves no temp files, createParents", () =>
      withAgent(async (a, ws) => {
        const r = await a.ok("write_file", { path: "./x/../f.txt", content: b64("one") });
        assert.deepEqual(r, { path: "f.txt", bytesWritten: 3 });
        chmodSync(join(ws, "f.txt"), 0o600);
        await a.ok("write_file", { path: "f.txt", content: b64("two!") });
        assert.equal(readFileSync(join(ws, "f.txt"), "utf8"), "two!");
        assert.equal((await a.ok("list_directory", {})).entries.length, 1);
        assert.equal(readdirSync(ws).join(","), "f.txt", "no temp files left");
        const bin = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
        await a.ok("write_file", { path: "bin", content: bin.toString("base64") });
        assert.ok(readFileSync(join(ws, "bin")).equals(bin));
        await a.ok("write_file", { path: "empty", content: "" });
        assert.equal(readFileSync(join(ws, "empty")).length, 0);

        assert.equal((await a.err("write_file", { path: "a/b/c.txt", content: b64("x") })).code, "NOT_FOUND");
        assert.deepEqual(await a.ok("write_file", { path: "a/b/c.txt", content: b64("x"), createParents: true }), { path: "a/b/c.txt", bytesWritten: 1 });
        assert.equal(readFileSync(join(ws, "a/b/c.txt"), "utf8"), "x");
        assert.equal((await a.err("write_file", { path: "a", content: b64("x") })).code, "IS_A_DIRECTORY");
        assert.equal((await a.err("write_file", { path: ".", content: b64("x") })).code, "IS_A_DIRECTORY");
        assert.equal((await a.err("write_file", { path: "f.txt/x", content: b64("x") })).code, "NOT_A_DIRECTORY");
        assert.equal((await a.err("write_file", { path: "bad", content: "%%%" })).code, "INVALID_ARGUMENT");
        assert.equal((await a.err("write_file", { path: "bad" })).code, "INVALID_ARGUMENT");
        assert.equal(readdirSync(ws).filter((n) => n.startsWith(".lg-")).length, 0);
      }));

    test("replacing a file keeps its permission bits but never set-user-ID, set-group-ID or sticky", () =>
      withAgent(async (a, ws) => {
        for (const [mode, kept] of [
          [0o4755, 0o755],
          [0o2750, 0o750],
          [0o6777, 0o777],
          [0o1644, 0o644],
          [0o600, 0o600],
        ]) {
          const name = `m${mode.toString(8)}`;
          writeFileSync(join(ws, name), "old");
          chmodSync(join(ws, name), mode);
          await a.ok("write_file", { path: name, content: b64("new") });
          assert.equal(statSync(join(ws, name)).mode & 0o7777, kept, `${mode.toString(8)} -> ${(statSync(join(ws, name)).mode & 0o7777).toString(8)}`);
          assert.equal(readFileSync(join(ws, name), "utf8"), "new");
        }
      }));

    test("init diskMiB: content over the per-file limit is NO_SPACE and leaves nothing; commands cannot exceed it either", () =>
      withAgent(async (a, ws) => {
        const seed = Buffer.alloc(32, 1).toString("base64");
        for (const diskMiB of [0, -1, 1.5, "1", 2 ** 31]) {
          assert.equal((await a.err("init", { seed, timeMs: Date.now(), id: "sb", diskMiB })).code, "INVALID_ARGUMENT", String(diskMiB));
        }
        assert.deepEqual(await a.ok("init", { seed, timeMs: Date.now(), id: "sb", diskMiB: 1 }), {});
        writeFileSync(join(ws, "keep"), "original");
        const e = await a.err("write_file", { path: "keep", content: Buffer.alloc(1024 * 1024 + 1).toString("base64") });
        assert.deepEqual([e.code, e.errno], ["NO_SPACE", "EFBIG"]);
        assert.equal(readFileSync(join(ws, "keep"), "utf8"), "original", "the old file is untouched");
        assert.deepEqual(readdirSync(ws), ["keep"], "no temp file left");
        assert.equal((await a.ok("write_file", { path: "exact", content: Buffer.alloc(1024 * 1024).toString("base64") })).bytesWritten, 1024 * 1024);
        const r = await a.run(["/bin/sh", "-c", "head -c 3000000 /dev/zero > big; echo status=$?"]);
        assert.doesNotMatch(r.stdout, /status=0/, `a command wrote past RLIMIT_FSIZE: ${JSON.stringify(r)}`);
        assert.ok(statSync(join(ws, "big")).size <= 1024 * 1024, `big is ${statSync(join(ws, "big")).size} bytes`);
      }));

    test("a write the filesystem refuses (EFBIG) answers NO_SPACE, leaves no temp file, and the agent lives", () =>
      withAgent(
        async (a, ws) => {
          writeFileSync(join(ws, "keep"), "original");
          const e = await a.err("write_file", { path: "keep", content: Buffer.alloc(200_000).toString("base64") });
          assert.deepEqual([e.code, e.errno], ["NO_SPACE", "EFBIG"]);
          assert.equal(readFileSync(join(ws, "keep"), "utf8"), "original");
          assert.deepEqual(readdirSync(ws), ["keep"], "no temp file left");
          assert.equal((await a.ok("write_file", { path: "small", content: b64("fits") })).bytesWritten, 4);
        },
        [],
        {},
        // The agent inherits a 64 KiB RLIMIT_FSIZE: a larger write fails with EFBIG (SIGXFSZ, unless ignored).
        ["prlimit", "--fsize=65536:65536"],
      ));

    test("a full filesystem (ENOSPC) answers NO_SPACE and leaves no partial file", { skip: process.getuid?.() === 0 ? false : "needs root for a private tmpfs" }, () => {
      const ws = workspace();
      // A 256 KiB tmpfs on the workspace, private to the agent's own mount namespace.
      const wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c", `mount -t tmpfs -o size=256k lg-test "${ws}" && exec "$@"`, "sh"];
      const a = new Agent(ws, [], wrap);
      return (async () => {
        try {
          const e = await a.err("write_file", { path: "big", content: Buffer.alloc(1024 * 1024).toString("base64") });
          assert.deepEqual([e.code, e.errno], ["NO_SPACE", "ENOSPC"]);
          assert.deepEqual((await a.ok("list_directory", {})).entries, [], "no temp file left");
        } finally {
          const r = await a.close();
          assert.equal(r.signal, null, a.stderr);
        }
      })();
    });

    test("escape attempts change nothing outside the root", () =>
      withAgent(async (a, ws) => {
        const outside = join(scratch, `outside-w-${wsCount}`);
        mkdirSync(outside);
        writeFileSync(join(outside, "victim"), "original");
        symlinkSync(outside, join(ws, "out"));
        symlinkSync(join(outside, "victim"), join(ws, "victim-link"));
        for (const [path, createParents] of [
          ["../escaped", false],
          ["out/victim", false],
          ["out/new/deep", true],
          ["out/new2", false],
          [join(outside, "victim"), false],
          ["sub/../../escaped", true],
        ]) {
          const e = await a.err("write_file", { path, content: b64("pwned"), createParents });
          assert.equal(e.code, "PATH_ESCAPE", `${path}: ${JSON.stringify(e)}`);
        }
        // Writing to a symlink's name replaces the link inside the root; its target is untouched.
        await a.ok("write_file", { path: "victim-link", content: b64("mine") });
        assert.equal(readFileSync(join(outside, "victim"), "utf8"), "original");
        assert.equal(readFileSync(join(ws, "victim-link"), "utf8"), "mine");
        assert.deepEqual(readdirSync(outside), ["victim"]);
        assert.equal(existsSync(join(scratch, "escaped")), false);
        assert.equal(existsSync(join(ws, "sub")), false);
      }));

    test("a 10 MB file round-trips through large frames", () =>
      withAgent(async (a, ws) => {
        const big = Buffer.alloc(10 * 1024 * 1024);
        for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i * 2654435761 >>> 0, i);
        await a.ok("write_file", { path: "big.bin", content: big.toString("base64") });
        assert.ok(readFileSync(join(ws, "big.bin")).equals(big));
        const r = await a.ok("read_file", { path: "big.bin", maxBytes: 12 * 1024 * 1024 });
        assert.ok(unb64(r.content).equals(big));
        // More than fits in one 16 MiB frame once base64-encoded.
        writeFileSync(join(ws, "huge.bin"), Buffer.alloc(13 * 1024 * 1024));
        assert.equal((await a.err("read_file", { path: "huge.bin", maxBytes: 100 * 1024 * 1024 })).code, "FILE_TOO_LARGE");
      }));

    test("\\u escapes and surrogate pairs in JSON strings decode to UTF-8 names", () =>
      withAgent(async (a, ws) => {
        const done = a.expect(900);
        a.raw(frame('{"id":900,"op":"write_file","args":{"path":"\\ud83d\\ude00-\\u00e9\\t\\"q\\".txt","content":""}}'));
        assert.equal((await done).ok, true);
        assert.ok(existsSync(join(ws, '😀-é\t"q".txt')));
        const r = await a.ok("list_directory", {});
        assert.equal(r.entries[0].path, '😀-é\t"q".txt');
      }));
  });

  test("list_directory: depth, sorting, types, limit", () =>
    withAgent(async (a, ws) => {
      mkdirSync(join(ws, "d/e"), { recursive: true });
      writeFileSync(join(ws, "b.txt"), "12345");
      writeFileSync(join(ws, "d/x"), "");
      writeFileSync(join(ws, "d/e/y"), "");
      symlinkSync("d", join(ws, "link"));
      let r = await a.ok("list_directory", {});
      assert.deepEqual(
        r.entries.map((e) => [e.path, e.type]),
        [["b.txt", "file"], ["d", "dir"], ["link", "symlink"]],
      );
      assert.equal(r.entries[0].size, 5);
      assert.ok(Math.abs(r.entries[0].mtimeMs - Date.now()) < 60_000);
      assert.equal(r.truncated, false);
      r = await a.ok("list_directory", { path: ".", depth: 3 });
      assert.deepEqual(r.entries.map((e) => e.path), ["b.txt", "d", "d/e", "d/e/y", "d/x", "link"]);
      r = await a.ok("list_directory", { path: "d", depth: 2 });
      assert.deepEqual(r.entries.map((e) => e.path), ["d/e", "d/e/y", "d/x"]);
      r = await a.ok("list_directory", { depth: 3, limit: 2 });
      assert.deepEqual([r.entries.length, r.truncated], [2, true]);
      r = await a.ok("list_directory", { path: "link" });
      assert.deepEqual(r.entries.map((e) => e.path), ["link/e", "link/x"], "the listed path itself may be a symlink inside the root");
      assert.equal((await a.err("list_directory", { path: "b.txt" })).code, "NOT_A_DIRECTORY");
      assert.equal((await a.err("list_directory", { path: "nope" })).code, "NOT_FOUND");
      assert.equal((await a.err("list_directory", { path: ".." })).code, "PATH_ESCAPE");
    }));

  test("search: regex, glob, both, truncation, binary files skipped", () =>
    withAgent(async (a, ws) => {
      mkdirSync(join(ws, "src"));
      writeFileSync(join(ws, "src/a.c"), "int main() {\n  return 0;\n}\n");
      writeFileSync(join(ws, "src/b.h"), "#define MAIN 1\nint x;\n");
      writeFileSync(join(ws, "notes.md"), "nothing here\nmain idea\n" + "z".repeat(600) + "main\n");
      writeFileSync(join(ws, "blob.bin"), Buffer.concat([Buffer.from("main\0main\n")]));
      let r = await a.ok("search", { pattern: "ma[i]n" });
      assert.deepEqual(
        r.matches.map((m) => [m.path, m.line]),
        [["notes.md", 2], ["notes.md", 3], ["src/a.c", 1]],
      );
      assert.equal(r.matches[0].text, "main idea");
      assert.equal(Buffer.byteLength(r.matches[1].text), 512, "long lines are cut at 512 bytes");
      assert.equal(r.truncated, false);
      assert.equal(r.filesScanned, 3, "the binary file is skipped");
      r = await a.ok("search", { glob: "*.[ch]" });
      assert.deepEqual(r.matches, [{ path: "src/a.c" }, { path: "src/b.h" }]);
      r = await a.ok("search", { glob: "*.h", pattern: "^int" });
      assert.deepEqual(r.matches, [{ path: "src/b.h", line: 2, text: "int x;" }]);
      r = await a.ok("search", { pattern: "main|MAIN", maxResults: 2 });
      assert.deepEqual([r.matches.length, r.truncated], [2, true]);
      r = await a.ok("search", { path: "src", pattern: "return" });
      assert.deepEqual(r.matches, [{ path: "src/a.c", line: 2, text: "  return 0;" }]);
      r = await a.ok("search", { path: "src/a.c", pattern: "}" });
      assert.deepEqual(r.matches, [{ path: "src/a.c", line: 3, text: "}" }]);
      assert.equal((await a.err("search", { pattern: "(" })).code, "INVALID_ARGUMENT");
      assert.equal((await a.err("search", {})).code, "INVALID_ARGUMENT");
      assert.equal((await a.err("search", { path: "../", glob: "*" })).code, "PATH_ESCAPE");
    }));

  describe("execute_command", () => {
    test("argv, shell, cwd, env, stdin, exit code, signal", () =>
      withAgent(async (a, ws) => {
        mkdirSync(join(ws, "sub"));
        let r = await a.run(["echo", "hi", "there"]);
        assert.equal(r.stdout, "hi there\n");
        assert.deepEqual({ ...r.result, durationMs: 0 }, { exitCode: 0, signal: null, stdoutTruncated: false, stderrTruncated: false, killedAtOutputCap: false, durationMs: 0 });
        r = await a.run(["/bin/sh", "-c", "pwd; echo err >&2; exit 3"], { cwd: "sub" });
        assert.deepEqual([r.stdout, r.stderr, r.result.exitCode], [`${ws}/sub\n`, "err\n", 3]);
        r = await a.run(["/bin/sh", "-c", 'echo "$FOO|$HOME|$LANG|$PATH"'], { env: { FOO: "bar baz" } });
        assert.equal(r.stdout, `bar baz|${ws}|C.UTF-8|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n`);
        r = await a.run(["env"], { env: { PATH: "/bin", X: "1" } });
        assert.deepEqual(r.stdout.trim().split("\n").sort(), [`HOME=${ws}`, "LANG=C.UTF-8", "PATH=/bin", "X=1"]);
        r = await a.run(["cat"], { stdin: b64("from stdin") });
        assert.equal(r.stdout, "from stdin");
        r = await a.run(["/bin/sh", "-c", "kill -KILL $$"]);
        assert.deepEqual([r.result.exitCode, r.result.signal], [null, "SIGKILL"]);
        r = await a.run(["/bin/sh", "-c", "exit 127"]);
        assert.deepEqual([r.ok, r.result.exitCode], [true, 127]);
        r = await a.run(["/bin/busybox", "sh", "-c", "echo busybox ok"]);
        assert.equal(r.stdout, "busybox ok\n");
        assert.equal((await a.run(["true"], { cwd: "../" })).error.code, "PATH_ESCAPE");
        assert.equal((await a.run(["true"], { cwd: "nope" })).error.code, "NOT_FOUND");
        assert.equal((await a.run([])).error.code, "INVALID_ARGUMENT");
        assert.equal((await a.err("execute_command", { argv: ["true"] })).code, "INVALID_ARGUMENT");
      }));

    test("large stdin and stdout flow at once without deadlock", () =>
      withAgent(async (a) => {
        const input = Buffer.alloc(3_000_000, "abcdefgh");
        const r = await a.run(["cat"], { stdin: input.toString("base64"), maxOutputBytes: 4_000_000 });
        assert.equal(r.stdoutBytes, input.length);
        assert.equal(r.stdout, input.toString());
        const early = await a.run(["head", "-c", "1"], { stdin: input.toString("base64") });
        assert.deepEqual([early.stdout, early.result.exitCode], ["a", 0], "a command closing stdin early is fine");
      }));

    test("a background process holding stdout does not hold the answer", () =>
      withAgent(async (a) => {
        const t0 = performance.now();
        const r = await a.run(["/bin/sh", "-c", "sleep 5 & echo done"]);
        assert.deepEqual([r.stdout, r.result.exitCode], ["done\n", 0]);
        assert.ok(performance.now() - t0 < 2000);
      }));

    test("stdout/stderr truncation at maxOutputBytes with 5 MB of output", () =>
      withAgent(async (a) => {
        const r = await a.run(["/bin/sh", "-c", "head -c 5000000 /dev/zero; head -c 10 /dev/zero >&2"], { maxOutputBytes: 1_000_000 });
        assert.equal(r.stdoutBytes, 1_000_000);
        assert.equal(r.result.stdoutTruncated, true);
        assert.equal(r.result.stderrTruncated, false);
        assert.ok(r.events.every((e) => unb64(e.data).length <= 65536), "chunks are at most 64 KiB");
        const exact = await a.run(["/bin/sh", "-c", "head -c 100 /dev/zero"], { maxOutputBytes: 100 });
        assert.deepEqual([exact.stdoutBytes, exact.result.stdoutTruncated], [100, false]);
        const none = await a.run(["/bin/sh", "-c", "echo x >&2"], { maxOutputBytes: 0 });
        assert.deepEqual([none.stderr, none.result.stderrTruncated], ["", true]);
      }));

    test("timeout kills the whole tree and answers TOOL_TIMEOUT", () =>
      withAgent(async (a) => {
        const t0 = performance.now();
        const r = await a.run(["/bin/sh", "-c", "sleep 100 & echo $!; wait"], { timeoutMs: 300 });
        assert.equal(r.error?.code, "TOOL_TIMEOUT");
        assert.ok(performance.now() - t0 < 3000);
        const grandchild = Number(r.stdout.trim());
        assert.ok(grandchild > 0);
        assert.ok(processGone(grandchild), "the backgrounded sleep is gone");
      }));

    test("nothing a command started outlives its call: setsid, double fork, setsid inside a double fork", () =>
      withAgent(async (a) => {
        // Each escapee prints its pid, then lets go of the output pipe so the answer does not wait.
        const r = await a.run([
          "/bin/sh",
          "-c",
          [
            "setsid sh -c 'echo $$; exec sleep 1000 >/dev/null 2>&1' &",
            "(sh -c 'sleep 1001 >/dev/null 2>&1 & echo $!' &)",
            "(setsid sh -c '(sleep 1002 >/dev/null 2>&1 & echo $!) ; exec sleep 1003 >/dev/null 2>&1' &)",
            "sleep 0.3",
          ].join("\n"),
        ]);
        assert.equal(r.result?.exitCode, 0, JSON.stringify(r));
        const pids = r.stdout.trim().split("\n").map(Number);
        assert.equal(pids.length, 3, r.stdout);
        for (const pid of pids) assert.ok(processGone(pid), `pid ${pid} outlived its command`);
      }));

    test("a command's end kills what escaped it but not another command still running, nor its background jobs", () =>
      withAgent(async (a) => {
        const other = a.run(["/bin/sh", "-c", "sleep 1.5 & sh -c 'sleep 1; echo child-alive'; wait; echo other-done"]);
        await sleep(200);
        const r = await a.run(["/bin/sh", "-c", "setsid sh -c 'echo $$; exec sleep 1000 >/dev/null 2>&1' & sleep 0.2"]);
        const escaped = Number(r.stdout.trim());
        assert.ok(escaped > 0, r.stdout);
        assert.ok(processGone(escaped), "the escaped sleep is gone");
        const o = await other;
        assert.deepEqual([o.stdout, o.result?.exitCode], ["child-alive\nother-done\n", 0]);
      }));

    test("programs that cannot run: COMMAND_NOT_FOUND, PERMISSION_DENIED", () =>
      withAgent(async (a, ws) => {
        let e = (await a.run(["no-such-command-xyz"])).error;
        assert.deepEqual([e.code, e.errno], ["COMMAND_NOT_FOUND", "ENOENT"]);
        e = (await a.run(["/nonexistent/bin"])).error;
        assert.equal(e.code, "COMMAND_NOT_FOUND");
        writeFileSync(join(ws, "script.txt"), "echo hi\n", { mode: 0o644 });
        e = (await a.run(["./script.txt"])).error;
        assert.deepEqual([e.code, e.errno], ["PERMISSION_DENIED", "EACCES"]);
        writeFileSync(join(ws, "noshebang"), "echo from-sh\n", { mode: 0o755 });
        const r = await a.run(["./noshebang"]);
        assert.equal(r.stdout, "from-sh\n", "ENOEXEC falls back to /bin/sh like execvp");
      }));

    test("output streams before the final answer", () =>
      withAgent(async (a) => {
        const r = await a.run(["/bin/sh", "-c", "echo a; sleep 1; echo b"]);
        assert.equal(r.stdout, "a\nb\n");
        const first = r.events[0];
        assert.equal(unb64(first.data).toString(), "a\n");
        assert.ok(r.at - first.at > 700, `first chunk ${r.at - first.at} ms before the answer`);
      }));

    test("a running command does not block other requests", () =>
      withAgent(async (a, ws) => {
        writeFileSync(join(ws, "f"), "x");
        const slow = a.run(["sleep", "1"]);
        const read = a.request("read_file", { path: "f", maxBytes: 10 });
        const [s, f] = await Promise.all([slow, read]);
        assert.equal(s.ok, true);
        assert.equal(f.ok, true);
        assert.ok(a.log.indexOf(a.log.find((m) => m.id === f.id)) < a.log.indexOf(a.log.find((m) => m.id === s.id)));
        assert.ok(s.at - f.at > 500);
      }));

    test("cancel ends the target with CANCELLED", () =>
      withAgent(async (a) => {
        const target = a.request("execute_command", { argv: ["/bin/sh", "-c", "echo $$; sleep 100"], timeoutMs: 60_000, maxOutputBytes: 100 });
        await sleep(100);
        const id = a.nextId - 1;
        assert.deepEqual(await a.ok("cancel", { target: id }), { found: true });
        const t = await target;
        assert.equal(t.error.code, "CANCELLED");
        assert.ok(processGone(Number(unb64(t.events[0].data).toString())));
        assert.deepEqual(await a.ok("cancel", { target: id }), { found: false });
        assert.deepEqual(await a.ok("cancel", { target: 123456 }), { found: false });
      }));
  });

  describe("protocol robustness", () => {
    test("malformed JSON with a readable id, unknown op, bad args", () =>
      withAgent(async (a) => {
        let p = a.expect(77);
        a.raw(frame('{"id": 77, "op": "hello", "args": {'));
        assert.equal((await p).error.code, "INVALID_ARGUMENT");
        p = a.expect(78);
        a.raw(frame('{"id":78,"op":"hello","args":{}} trailing'));
        assert.equal((await p).error.code, "INVALID_ARGUMENT");
        assert.equal((await a.err("frobnicate", {})).code, "UNSUPPORTED_OP");
        p = a.expect(79);
        a.raw(frame({ id: 79, args: {} }));
        assert.equal((await p).error.code, "INVALID_ARGUMENT");
        p = a.expect(80);
        a.raw(frame({ id: 80, op: "hello", args: [1] }));
        assert.equal((await p).error.code, "INVALID_ARGUMENT");
        p = a.expect(81);
        a.raw(frame(`{"id":81,"op":"hello","args":${"[".repeat(100000)}`));
        assert.equal((await p).error.code, "INVALID_ARGUMENT", "deep nesting is refused, not recursed into");
        p = a.expect(82);
        a.raw(frame(`{"id":82,"op":"hello","args":{"x":[${"0,".repeat(200000)}0]}}`));
        assert.equal((await p).error.code, "INVALID_ARGUMENT", "the node cap bounds memory");
        // No readable id: dropped, and the agent carries on.
        a.raw(frame("not json"));
        a.raw(frame(""));
        a.raw(frame('{"id":-1,"op":"hello"}'));
        a.raw(frame('{"id":4294967296,"op":"hello"}'));
        assert.equal((await a.ok("hello", {})).v, 1);
      }));

    test("random frames never crash the agent", () =>
      withAgent(async (a, ws) => {
        writeFileSync(join(ws, "f"), "data\n");
        let seed = 12345;
        const rnd = (n) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
        const seeds = [
          { id: 1, op: "read_file", args: { path: "f", maxBytes: 100, offset: 1 } },
          { id: 1, op: "write_file", args: { path: "w", content: b64("abc"), createParents: true } },
          { id: 1, op: "list_directory", args: { path: ".", depth: 2, limit: 5 } },
          { id: 1, op: "search", args: { pattern: "d.t", glob: "*", maxResults: 3 } },
          { id: 1, op: "cancel", args: { target: 3 } },
          { id: 1, op: "hello", args: { v: 1 } },
        ].map((s) => Buffer.from(JSON.stringify(s)));
        const alphabet = Buffer.from('{}[]":,\\u0123456789abcdef-+.eEtrufalsn \t\n\x00\xff');
        let sent = 0;
        for (let i = 0; i < 3000; i++) {
          let body;
          if (i % 5 === 0) {
            body = Buffer.alloc(rnd(64));
            for (let j = 0; j < body.length; j++) body[j] = rnd(3) ? alphabet[rnd(alphabet.length)] : rnd(256);
          } else {
            body = Buffer.from(seeds[rnd(seeds.length)]);
            for (let k = 0, n = 1 + rnd(4); k < n; k++) {
              const at = rnd(body.length);
              const op = rnd(3);
              if (op === 0) body[at] = alphabet[rnd(alphabet.length)];
              else if (op === 1) body = Buffer.concat([body.subarray(0, at), body.subarray(at + 1 + rnd(4))]);
              else body = Buffer.concat([body.subarray(0, at), Buffer.from([alphabet[rnd(alphabet.length)]]), body.subarray(at)]);
            }
          }
          // Keep mutated op names away from shutdown/execute_command: this fuzzes parsing, not the shell.
          const text = body.toString("latin1");
          if (/shutdown|execute|"init"/.test(text)) continue;
          a.raw(frame(body));
          sent++;
          if (sent % 500 === 0) assert.equal((await a.ok("hello", {})).v, 1);
        }
        assert.equal((await a.ok("hello", {})).v, 1);
        const left = readdirSync(ws).filter((n) => n.startsWith(".lg-"));
        assert.deepEqual(left, []);
        assert.ok(a.foreign.length > 100, "mutated requests with readable ids are answered");
      }, [], { allowForeign: true }));

    test("an oversized length header makes the agent drop the stream and exit", async () => {
      const a = new Agent(workspace());
      assert.equal((await a.ok("hello", {})).v, 1);
      const h = Buffer.alloc(4);
      h.writeUInt32BE(MAX_FRAME + 1);
      a.raw(h);
      const r = await a.exited;
      assert.equal(r.signal, null);
      assert.equal(r.code, 2);
      assert.match(a.stderr, /exceeds 16 MiB/);
    });

    test("EOF on stdin: the agent exits and leaves no children", async () => {
      const a = new Agent(workspace());
      const pids = new Promise((res) => {
        const run = a.request("execute_command", {
          argv: ["/bin/sh", "-c", "echo $$; (setsid sleep 100 & echo $!); sleep 100 & echo $!; wait"],
          timeoutMs: 60_000,
          maxOutputBytes: 1000,
        });
        void run;
        const poll = setInterval(() => {
          const out = a.log.filter((m) => m.event === "stdout").map((m) => unb64(m.data).toString()).join("");
          const nums = out.trim().split("\n").filter(Boolean).map(Number);
          if (nums.length >= 3) {
            clearInterval(poll);
            res(nums);
          }
        }, 10);
      });
      const list = await pids;
      const t0 = performance.now();
      const r = await a.close();
      assert.deepEqual(r, { code: 0, signal: null });
      assert.ok(performance.now() - t0 < 3000);
      for (const pid of list) assert.ok(processGone(pid), `pid ${pid} survived the agent`);
    });

    test("shutdown answers, then the agent exits", async () => {
      const a = new Agent(workspace());
      assert.deepEqual(await a.ok("shutdown", {}), {});
      const r = await a.exited;
      assert.deepEqual(r, { code: 0, signal: null });
    });
  });
});

process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
