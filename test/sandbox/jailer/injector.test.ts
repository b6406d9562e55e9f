// lg-jailer --serve: the one root helper that mounts workspaces into jails started ahead of their
// sandbox. It runs requests at once and answers each in order, refuses what --inject refuses, and ends
// with its input.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { ensureJailer } from "../../../src/sandbox/jailer/jailer.js";
import { Injector } from "../../../src/sandbox/jailer/injector.js";
import { allocateIdentity } from "../../../src/sandbox/jailer/identity.js";
import { pidAlive } from "../../../src/util/procfs.js";
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
    const req = { pid: sleeper.pid as number, uid: identity.uid, gid: identity.gid, src: ws.dir, dst: "/workspace", diskUid: 0, diskGid: 0 };
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
    bad.stdin.write(["mount", "1", "2", "3", "/a", "/b", "0", "0"].map((f) => `${f}\0`).join(""));
    const code2 = await new Promise<number | null>((r) => bad.once("close", (c) => r(c)));
    assert.equal(code2, 126);
    assert.match(stderr, /unknown request/);
    // An identity of root is refused before anything is forked.
    const rootId = spawn(build.path, ["--serve"], { stdio: ["pipe", "pipe", "pipe"] });
    rootId.stdin.write(["inject", "1", "0", "0", "/a", "/b", "0", "0"].map((f) => `${f}\0`).join(""));
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
    await assert.rejects(injector.inject({ pid: process.pid, uid: identity.uid, gid: identity.gid, src: "/tmp", dst: "/workspace", diskUid: 0, diskGid: 0 }), /does not run as/);
    assert.ok(await waitFor(() => !pidAlive(first as number), 5_000));
    const now = servers();
    assert.equal(now.length, 1);
    assert.notEqual(now[0], first, "a new server answered");
    injector.close();
    assert.ok(await waitFor(() => servers().length === 0, 5_000), "close() ends it");
  });
});
