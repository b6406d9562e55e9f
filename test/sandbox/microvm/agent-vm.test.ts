// The guest agent as the micro-VM's init: commands run unprivileged, cannot reach the agent, and leave
// nothing behind; what the agent writes is theirs. One VM for the whole file (TCG boots are slow).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { LuminaGuardError } from "../../../src/errors.js";
import { getBackend } from "../../../src/runtime/backends.js";
import type { SandboxHandle } from "../../../src/sandbox/types.js";
import { descendants, procStatus } from "../../../src/util/procfs.js";
import { tempWorkspace, unavailable } from "../../fixtures.js";

/** The host uid/gid of the QEMU process among `pids` and their descendants: the guest owner of the workspace's host files. */
function vmmIdentity(pids: number[]): { uid: number; gid: number } {
  for (const pid of [...pids, ...pids.flatMap((p) => descendants(p))]) {
    const status = procStatus(pid);
    if (status?.["Name"]?.startsWith("qemu-system")) {
      const first = (field: string): number => Number(status[field]?.split(/\s+/)[0]);
      return { uid: first("Uid"), gid: first("Gid") };
    }
  }
  throw new Error(`no QEMU process among ${pids.join(",")} and their descendants`);
}

describe("guest agent as the micro-VM's init", async () => {
  const skip = await unavailable("microvm");
  let sb: SandboxHandle;
  let ws: { dir: string; remove: () => void };
  let owner: { uid: number; gid: number };

  const run = async (script: string, timeoutMs = 20_000): Promise<{ exitCode: number | null; stdout: string; stderr: string }> => {
    let stdout = "";
    let stderr = "";
    const r = await sb.channel.request(
      "execute_command",
      { argv: ["/bin/sh", "-c", script], timeoutMs, maxOutputBytes: 1 << 20 },
      {
        deadlineMs: timeoutMs + 20_000,
        maxStreamBytes: 1 << 20,
        onEvent: (stream, data) => {
          if (stream === "stdout") stdout += data.toString("utf8");
          else stderr += data.toString("utf8");
        },
      },
    );
    return { exitCode: r.exitCode, stdout, stderr };
  };
  const init = (more: Record<string, unknown>): Promise<Record<string, never>> =>
    sb.channel.request("init", { seed: randomBytes(32).toString("base64"), timeMs: Date.now(), id: sb.id, ...more });

  before(async () => {
    if (skip) return;
    ws = tempWorkspace();
    sb = await getBackend("microvm").spawn({ id: `lg-agentvm-${process.pid}`, workspace: ws.dir, memoryMiB: 256, pidsMax: 128, vcpus: 1 });
    owner = vmmIdentity(sb.pids());
    // The host passes the VMM's uid/gid, which own the workspace's host files in the guest; said
    // again here so the test does not depend on the backend doing it (a repeated init is allowed).
    await init({ commandUid: owner.uid, commandGid: owner.gid });
  });
  after(async () => {
    await sb?.destroy();
    ws?.remove();
  });

  test("commands run as commandUid/commandGid, no groups, no new privileges, HOME=/workspace", { skip }, async () => {
    assert.notEqual(owner.uid, 0, "the VMM does not run as root");
    const r = await run("id -u; id -g; id -G; grep NoNewPrivs /proc/self/status; echo $HOME; pwd");
    assert.equal(r.stdout, `${owner.uid}\n${owner.gid}\n${owner.gid}\nNoNewPrivs:\t1\n/workspace\n/workspace\n`, r.stderr);
  });

  test("commands cannot reach the agent, its port, or any other cgroup", { skip }, async () => {
    const r = await run(
      [
        "ls /proc/1/fd >/dev/null 2>&1 && echo 'listed /proc/1/fd'",
        "for fd in 0 1 2 3 4 5 6 7; do (exec 3>/proc/1/fd/$fd) 2>/dev/null && echo \"opened /proc/1/fd/$fd\"; done",
        "(exec 3</proc/1/mem) 2>/dev/null && echo 'opened /proc/1/mem'",
        "kill -0 1 2>/dev/null && echo 'signalled the agent'",
        "for p in /dev/vport* /dev/hvc* /dev/console; do [ -e $p ] && (exec 3>$p) 2>/dev/null && echo \"opened $p\"; done",
        "for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs; do (echo $$ > $f) 2>/dev/null && echo \"joined $f\"; done",
        "echo checked",
      ].join("\n"),
    );
    assert.equal(r.stdout, "checked\n", r.stdout);
    const mount = await run("grep ' /workspace ' /proc/mounts");
    assert.match(mount.stdout, /\bnosuid\b/);
    assert.match(mount.stdout, /\bnodev\b/);
  });

  test("what write_file creates is the command user's, and commands can change it", { skip }, async () => {
    await sb.channel.request("write_file", { path: "d/e/f.txt", content: Buffer.from("agent\n").toString("base64"), createParents: true });
    const r = await run("stat -c '%u:%g' d d/e d/e/f.txt && echo command >> d/e/f.txt && mkdir d/e/sub && echo ok");
    const id = `${owner.uid}:${owner.gid}`;
    assert.equal(r.stdout, `${id}\n${id}\n${id}\nok\n`, r.stderr);
    assert.equal(readFileSync(join(ws.dir, "d/e/f.txt"), "utf8"), "agent\ncommand\n");
  });

  test("write_file never writes set-id or sticky bits", { skip }, async () => {
    writeFileSync(join(ws.dir, "suid"), "old");
    chmodSync(join(ws.dir, "suid"), 0o4755);
    await sb.channel.request("write_file", { path: "suid", content: Buffer.from("new").toString("base64") });
    assert.equal((await run("stat -c %a suid")).stdout, "755\n");
  });

  test("nothing a command started outlives its call: setsid, double fork, a move to another cgroup", { skip }, async () => {
    const r = await run(
      [
        "setsid sh -c 'exec sleep 1000' >/dev/null 2>&1 &",
        "(sh -c 'sleep 1001 >/dev/null 2>&1 &' &)",
        // Out of its session, its process group and (if it could) its cgroup: only the cgroup, which
        // it cannot leave, still holds it.
        "(setsid sh -c 'echo $$ > /sys/fs/cgroup/cgroup.procs; exec sleep 1002' >/dev/null 2>&1 &)",
        "sleep 0.5",
      ].join("\n"),
    );
    assert.equal(r.exitCode, 0, r.stderr);
    const ps = await run("ps -o pid,user,args");
    assert.doesNotMatch(ps.stdout, /sleep 100[012]/, ps.stdout);
  });

  test("diskMiB bounds any one file: write_file says NO_SPACE, commands cannot write past it", { skip }, async () => {
    await init({ diskMiB: 1 });
    await assert.rejects(
      sb.channel.request("write_file", { path: "big", content: Buffer.alloc(1024 * 1024 + 1).toString("base64") }),
      (e: LuminaGuardError) => e.code === "NO_SPACE",
    );
    const r = await run("head -c 3000000 /dev/zero > big2; echo status=$?; stat -c %s big2");
    assert.doesNotMatch(r.stdout, /status=0/, r.stdout);
    assert.ok(Number(r.stdout.trim().split("\n").pop()) <= 1024 * 1024, r.stdout);
  });

  test("warmup (a spare's, before any sandbox) is refused once the VM has a workspace, and outside the VM", { skip }, async () => {
    await assert.rejects(sb.channel.request("warmup", { tag: "ws" }), (e: LuminaGuardError) => e.code === "INVALID_ARGUMENT" && /no workspace yet/.test(e.message));
    assert.equal((await run("ls -A / | grep -c lg-warm")).stdout, "0\n", "no staging directory is left");
    const ns = await getBackend("namespace").spawn({ id: `lg-agentvm-ns-${process.pid}`, workspace: ws.dir, memoryMiB: 128, pidsMax: 16, vcpus: 1 });
    try {
      await assert.rejects(ns.channel.request("warmup", { tag: "ws" }), (e: LuminaGuardError) => e.code === "INVALID_ARGUMENT" && /VM's init/.test(e.message));
    } finally {
      await ns.destroy();
    }
  });
});
