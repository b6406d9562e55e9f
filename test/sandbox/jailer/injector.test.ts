// lg-jailer --serve: the one root helper that mounts workspaces into jails started ahead of their
// sandbox. It runs requests at once and answers each in order, refuses what --inject refuses, and ends
// with its input.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, lchownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { ensureJailer, jailerArgs, type JailBind } from "../../../src/sandbox/jailer/jailer.js";
import { Injector } from "../../../src/sandbox/jailer/injector.js";
import { allocateIdentity } from "../../../src/sandbox/jailer/identity.js";
import { liveStartTime, pidAlive } from "../../../src/util/procfs.js";
import { tempWorkspace, waitFor } from "../../fixtures.js";

const root = (process.getuid?.() ?? 1) === 0;

describe("lg-jailer --serve", () => {
  const skip = root ? undefined : "needs root (--serve is root's)";
  if (skip !== undefined) process.stderr.write(`SKIP: ${skip}\n`);

  test("refuses, request after request, a process that does not run as the identity; nothing is mounted here", { skip }, async (t) => {
    const build = await ensureJailer();
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const identity = allocateIdentity();
    t.after(() => identity.release());
    const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
    t.after(() => sleeper.kill("SIGKILL"));
    const injector = new Injector(build.path);
    t.after(() => injector.close());
    const req = { pid: sleeper.pid as number, start: liveStartTime(sleeper.pid as number) ?? "", uid: identity.uid, gid: identity.gid, src: ws.dir, dst: "/workspace", diskUid: 0, diskGid: 0 };
    // Pipelined: both are answered, in order, by the same server.
    const [a, b] = await Promise.allSettled([injector.inject(req), injector.inject({ ...req, dst: "/share/ws" })]);
    for (const r of [a, b]) {
      assert.equal(r.status, "rejected");
      assert.match(String((r as PromiseRejectedResult).reason), /does not run as/);
    }
    // A pid that is gone.
    await assert.rejects(injector.inject({ ...req, pid: 2 ** 22 + 1 }), /open \/proc\/\d+/);
    // Requests run at once, each answered in its own order: every answer is its own request's.
    const mixed = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => injector.inject(i % 3 === 0 ? { ...req, pid: 2 ** 22 + 1 + i } : { ...req, dst: `/d${i}` })),
    );
    mixed.forEach((r, i) => {
      assert.equal(r.status, "rejected");
      const reason = String((r as PromiseRejectedResult).reason);
      if (i % 3 === 0) assert.match(reason, new RegExp(`open /proc/${2 ** 22 + 1 + i}`), `answer ${i}`);
      else assert.match(reason, /does not run as/, `answer ${i}`);
    });
    // A NUL byte never reaches the server.
    await assert.rejects(injector.inject({ ...req, src: "/tmp/a\0b" }), { code: "INVALID_ARGUMENT" });
    assert.doesNotMatch(readFileSync("/proc/self/mountinfo", "utf8"), new RegExp(` ${ws.dir} `));
  });

  test("ends at the end of its input, and at a request it cannot parse", { skip }, async () => {
    const build = await ensureJailer();
    const quiet = spawn(build.path, ["--serve"], { stdio: ["pipe", "pipe", "pipe"] });
    quiet.stdin.end();
    const code = await new Promise<number | null>((r) => quiet.once("exit", (c) => r(c)));
    assert.equal(code, 0);
    const bad = spawn(build.path, ["--serve"], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    bad.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    bad.stdin.write(["mount", "1", "1", "2", "3", "/a", "/b", "0", "0"].map((f) => `${f}\0`).join(""));
    const code2 = await new Promise<number | null>((r) => bad.once("close", (c) => r(c)));
    assert.equal(code2, 126);
    assert.match(stderr, /unknown request/);
    // An identity of root is refused before anything is forked.
    const rootId = spawn(build.path, ["--serve"], { stdio: ["pipe", "pipe", "pipe"] });
    rootId.stdin.write(["inject", "1", "1", "0", "0", "/a", "/b", "0", "0"].map((f) => `${f}\0`).join(""));
    assert.equal(await new Promise<number | null>((r) => rootId.once("exit", (c) => r(c))), 126);
  });

  test("a client whose server died starts another at its next request", { skip }, async (t) => {
    const build = await ensureJailer();
    const injector = new Injector(build.path);
    t.after(() => injector.close());
    injector.start();
    const servers = (): number[] =>
      (readFileSync("/proc/self/task/" + process.pid + "/children", "utf8").trim().split(/\s+/).filter(Boolean).map(Number) ?? []).filter((p) =>
        readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--serve"),
      );
    assert.ok(await waitFor(() => servers().length === 1, 5_000));
    const [first] = servers();
    const identity = allocateIdentity();
    t.after(() => identity.release());
    // Sent at once after the kill, before the client has heard of it: sent again to a new server
    // and answered there (in CI this once failed as "exited (SIGKILL)" instead).
    process.kill(first as number, "SIGKILL");
    await assert.rejects(injector.inject({ pid: process.pid, start: liveStartTime(process.pid) ?? "", uid: identity.uid, gid: identity.gid, src: "/tmp", dst: "/workspace", diskUid: 0, diskGid: 0 }), /does not run as/);
    assert.ok(await waitFor(() => !pidAlive(first as number), 5_000));
    const now = servers();
    assert.equal(now.length, 1);
    assert.notEqual(now[0], first, "a new server answered");
    injector.close();
    assert.ok(await waitFor(() => servers().length === 0, 5_000), "close() ends it");
  });

  test("refuses a process that is not the one the host started: its start time differs (a reused pid)", { skip }, async (t) => {
    const build = await ensureJailer();
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const identity = allocateIdentity();
    t.after(() => identity.release());
    // A real jail, running as the identity: only its start time is wrong in the request.
    const jail = spawn(jailerArgs(build, { identity, binds: [] })[0] as string, [...jailerArgs(build, { identity, binds: [] }).slice(1), "/usr/bin/sleep", "30"], { stdio: "ignore" });
    t.after(() => jail.kill("SIGKILL"));
    const pid = jail.pid as number;
    assert.ok(await waitFor(() => readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("/usr/bin/sleep"), 5_000), "the jail runs");
    const injector = new Injector(build.path);
    t.after(() => injector.close());
    const req = { pid, start: liveStartTime(pid) ?? "", uid: identity.uid, gid: identity.gid, src: ws.dir, dst: "/usr", diskUid: 0, diskGid: 0 };
    await assert.rejects(injector.inject({ ...req, start: String(Number(req.start) + 1) }), /not the one the host started/);
    await assert.rejects(injector.inject({ ...req, start: "" }), /not the one the host started/);
    // Nothing was mounted in the jail: /usr is its own bind of the host's /usr, once.
    const onUsr = readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").filter((l) => l.split(" ")[4] === "/usr");
    assert.equal(onUsr.length, 1, onUsr.join("\n"));
    assert.equal(onUsr[0]?.split(" ")[3], "/usr");
  });

  /**
   * As uid 65534 (nobody), as an ordinary user runs them: a copy of the jailer (root's cache is root's),
   * a jail of nobody's running `script` with `binds`, and `lg-jailer --serve` as nobody. `files` are
   * made (mode as given; a string is a file, undefined a directory, "->X" a symlink to X) and given to nobody.
   */
  async function asNobody(t: TestContext, files: Record<string, string | undefined>, binds: JailBind[], script: string) {
    const build = await ensureJailer();
    const dir = mkdtempSync(join(tmpdir(), "lg-inject-user-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const jailer = join(dir, "lg-jailer");
    copyFileSync(build.path, jailer);
    copyFileSync(build.seccompPath, join(dir, "vmm.seccomp"));
    for (const [name, content] of Object.entries(files)) {
      const path = join(dir, name);
      if (content === undefined) mkdirSync(path);
      else if (content.startsWith("->")) symlinkSync(content.slice(2), path);
      else writeFileSync(path, content);
      lchownSync(path, 65534, 65534);
    }
    chmodSync(dir, 0o755);
    const prefix = ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"];
    const nobody = { uid: 65534, gid: 65534, switched: false, release: () => undefined };
    const jailArgv = [
      ...prefix,
      ...jailerArgs({ ...build, path: jailer, seccompPath: join(dir, "vmm.seccomp") }, { identity: nobody, binds: binds.map((b) => ({ ...b, src: join(dir, b.src) })) }),
      "/usr/bin/sh", "-c", `echo up; ${script}`,
    ];
    const jail = spawn(jailArgv[0] as string, jailArgv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    t.after(() => jail.kill("SIGKILL"));
    const io = { out: "", err: "", replies: "" };
    jail.stdout.on("data", (c: Buffer) => (io.out += c.toString("utf8")));
    jail.stderr.on("data", (c: Buffer) => (io.err += c.toString("utf8")));
    assert.ok(await waitFor(() => io.out.includes("up"), 5_000), `the jail runs: ${io.err}`);
    const pid = jail.pid as number;
    const server = spawn(prefix[0] as string, [...prefix.slice(1), jailer, "--serve"], { stdio: ["pipe", "pipe", "pipe"] });
    t.after(() => server.kill("SIGKILL"));
    server.stdout.on("data", (c: Buffer) => (io.replies += c.toString("utf8")));
    const send = (fields: string[]): void => void server.stdin.write(fields.map((f) => `${f}\0`).join(""));
    const answered = async (n: number): Promise<string[]> => {
      assert.ok(await waitFor(() => io.replies.split("\0").filter((w) => w === "ok" || w === "error").length >= n, 10_000), `answers: ${JSON.stringify(io.replies)}`);
      return io.replies.split("\0");
    };
    return { dir, jail, pid, start: liveStartTime(pid) ?? "", io, server, send, answered };
  }

  test("run as an ordinary user: a jail of that user receives the workspace; another user's process or a wrong start time is refused", { skip }, async (t) => {
    // The jailer and its server as uid 65534 (nobody), as an ordinary user runs them: the jail is a
    // user namespace of nobody's, which the server enters to mount the workspace (no root anywhere).
    const { dir, jail, pid, start, io, server, send, answered } = await asNobody(
      t,
      { ws: undefined, "ws/hello": "from the host\n", empty: undefined },
      [{ kind: "ro", src: "empty", dst: "/share/ws" }],
      "while [ ! -e /share/ws/hello ]; do sleep 0.02; done; cat /share/ws/hello; touch /share/ws/made-inside",
    );
    // Not nobody's: pid 1 (root's). A wrong start time. Then the jail itself.
    send(["inject", "1", liveStartTime(1) ?? "0", "65534", "65534", join(dir, "ws"), "/share/ws", "65534", "65534"]);
    send(["inject", String(pid), String(Number(start) + 1), "65534", "65534", join(dir, "ws"), "/share/ws", "65534", "65534"]);
    send(["inject", String(pid), start, "65534", "65534", join(dir, "ws"), "/share/ws", "65534", "65534"]);
    const exited = new Promise((r) => jail.once("exit", r));
    const words = await answered(3);
    assert.equal(words[0], "error");
    assert.match(words[1] ?? "", /does not run as us|not in a jail of its own/);
    assert.equal(words[2], "error");
    assert.match(words[3] ?? "", /not the one the host started/);
    assert.equal(words[4], "ok", JSON.stringify(io.replies));
    await exited;
    assert.match(io.out, /from the host/, "the jail read the workspace mounted into it");
    assert.ok(existsSync(join(dir, "ws", "made-inside")), "and wrote into it");
    assert.equal(statSync(join(dir, "ws", "made-inside")).uid, 65534);
    server.stdin.end();
  });

  test("run as an ordinary user: a symlink as the source or as the target in the jail is not followed", { skip }, async (t) => {
    // A source that is a symlink to the workspace, and a target in the jail that is a symlink to /usr
    // (where a followed mount would cover the jail's code): both refused, nothing mounted in the jail.
    const { dir, pid, start, server, send, answered } = await asNobody(
      t,
      { ws: undefined, "ws/hello": "x", "ws-link": "->ws", links: undefined, "links/to-usr": "->/usr", empty: undefined },
      [
        { kind: "ro", src: "empty", dst: "/share/ws" },
        { kind: "ro", src: "links", dst: "/share/links" },
      ],
      "sleep 30",
    );
    const before = readFileSync(`/proc/${pid}/mountinfo`, "utf8");
    send(["inject", String(pid), start, "65534", "65534", join(dir, "ws-link"), "/share/ws", "65534", "65534"]);
    send(["inject", String(pid), start, "65534", "65534", join(dir, "ws"), "/share/links/to-usr", "65534", "65534"]);
    const words = await answered(2);
    assert.equal(words[0], "error", JSON.stringify(words));
    assert.equal(words[2], "error", JSON.stringify(words));
    for (const w of [words[1], words[3]]) assert.match(w ?? "", /^lg-jailer: (open|mount) /, "each says which step refused it");
    assert.equal(readFileSync(`/proc/${pid}/mountinfo`, "utf8"), before, "nothing was mounted in the jail");
    server.stdin.end();
  });
});
