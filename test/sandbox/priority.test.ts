// Sandboxed code runs below the host process that serves every sandbox's calls (src/sandbox/priority.ts).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { getPriority } from "node:os";
import { after, describe, test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { DEFAULT_SANDBOX_NICE, sandboxNice } from "../../src/sandbox/priority.js";
import { tempWorkspace, unavailable } from "../fixtures.js";

/** The nice value the sandboxed command itself sees (field 19 of /proc/self/stat, after the command name). */
const niceOf = async (sb: Sandbox): Promise<number> => {
  const r = await sb.commands.run(["/bin/sh", "-c", "cat /proc/self/stat"]);
  assert.equal(r.exitCode, 0, r.stderr);
  const rest = r.stdout.slice(r.stdout.lastIndexOf(")") + 2).split(" ");
  return Number(rest[16]);
};

/** The nice value of every thread of `pid` (field 19 of /proc/PID/task/TID/stat). */
const threadNices = (pid: number): number[] =>
  readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  });

describe("sandbox CPU priority", () => {
  // The tests below set LUMINAGUARD_SANDBOX_NICE; whatever it was comes back afterwards.
  const saved = process.env["LUMINAGUARD_SANDBOX_NICE"];
  after(() => {
    if (saved === undefined) delete process.env["LUMINAGUARD_SANDBOX_NICE"];
    else process.env["LUMINAGUARD_SANDBOX_NICE"] = saved;
  });

  test("LUMINAGUARD_SANDBOX_NICE: 0..19, default 0, anything else refused", () => {
    assert.equal(sandboxNice({}), DEFAULT_SANDBOX_NICE);
    assert.equal(DEFAULT_SANDBOX_NICE, 0);
    assert.equal(sandboxNice({ LUMINAGUARD_SANDBOX_NICE: "0" }), 0);
    assert.equal(sandboxNice({ LUMINAGUARD_SANDBOX_NICE: " 19 " }), 19);
    for (const bad of ["20", "-1", "5.5", "x"]) {
      assert.throws(() => sandboxNice({ LUMINAGUARD_SANDBOX_NICE: bad }), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT", bad);
    }
  });

  describe("namespace", async () => {
    const skip = await unavailable("namespace");

    test("LUMINAGUARD_SANDBOX_NICE=10: a sandbox's commands run 10 levels below the host, and cannot raise themselves back", { skip }, async () => {
      process.env["LUMINAGUARD_SANDBOX_NICE"] = "10";
      const ws = tempWorkspace();
      const sb = await Sandbox.create({ backend: "namespace", workspace: ws.dir, daemon: false });
      try {
        const host = getPriority(0);
        assert.equal(await niceOf(sb), Math.min(19, host + 10));
        for (const pid of sb.pids()) assert.deepEqual(threadNices(pid), [Math.min(19, host + 10)], `pid ${pid}`);
        // The host side still runs at the host's priority; only what runs sandboxed is lowered.
        const r = await sb.commands.run(["/bin/sh", "-c", "renice -n 0 -p $$ || echo refused"]);
        assert.equal(await niceOf(sb), Math.min(19, host + 10), `${r.stdout}${r.stderr}`);
      } finally {
        await sb.kill();
        ws.remove();
      }
    });

    test("by default (and with LUMINAGUARD_SANDBOX_NICE=0) a sandbox keeps the host's priority", { skip }, async () => {
      delete process.env["LUMINAGUARD_SANDBOX_NICE"];
      const ws = tempWorkspace();
      const sb = await Sandbox.create({ backend: "namespace", workspace: ws.dir, daemon: false });
      try {
        assert.equal(await niceOf(sb), getPriority(0));
      } finally {
        await sb.kill();
        ws.remove();
      }
    });
  });

  describe("microvm", async () => {
    const skip = await unavailable("microvm");

    test("LUMINAGUARD_SANDBOX_NICE=10: every thread of a VM's QEMU (and of its file jail) runs 10 levels below the host", { skip }, async () => {
      process.env["LUMINAGUARD_SANDBOX_NICE"] = "10";
      const ws = tempWorkspace();
      const sb = await Sandbox.create({ backend: "microvm", workspace: ws.dir, daemon: false });
      try {
        const r = await sb.commands.run(["true"]);
        assert.equal(r.exitCode, 0);
        const want = Math.min(19, getPriority(0) + 10);
        const pids = sb.pids();
        assert.ok(pids.length > 0);
        for (const pid of pids) {
          const nices = threadNices(pid);
          assert.ok(nices.length > 0, `pid ${pid}`);
          assert.deepEqual(nices, nices.map(() => want), `threads of pid ${pid} (${readFileSync(`/proc/${pid}/comm`, "utf8").trim()})`);
        }
      } finally {
        await sb.kill();
        ws.remove();
      }
    });
  });
});
