// Run as root, the namespace sandbox's host side (bwrap and everything in the sandbox) is an unprivileged
// uid of its own: the sandbox is not host root for any check the kernel makes on the uid.
import assert from "node:assert/strict";
import { lstatSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { procStatus } from "../../../src/util/procfs.js";
import { sandboxFor, unavailable } from "../../fixtures.js";

const root = (process.getuid?.() ?? 1) === 0;

function uids(pid: number): number[] {
  return (procStatus(pid)?.["Uid"] ?? "").split(/\s+/).map(Number);
}

describe("namespace sandbox host identity", async () => {
  const skip = (await unavailable("namespace")) ?? (root ? undefined : "LuminaGuard is not running as root: there is no privilege to drop");
  if (skip !== undefined && !root) process.stderr.write(`SKIP: ${skip}\n`);

  test("bwrap and every sandbox process run as a non-root host uid; workspace files stay the owner's", { skip }, async (t) => {
    const { sandbox, workspace } = await sandboxFor(t, "namespace");
    writeFileSync(join(workspace, "host.txt"), "host\n");
    const pids = sandbox.pids();
    assert.ok(pids.length >= 2);
    for (const pid of pids) {
      const ids = uids(pid);
      assert.ok(ids.every((u) => u !== 0), `pid ${pid} runs as ${ids.join(" ")}`);
      assert.equal(ids[0], sandbox.info["hostUid"]);
    }
    const r = await sandbox.commands.run("echo more >> host.txt && echo new > new.txt && mkdir d && printf '#!/bin/sh\\necho ran\\n' > s.sh && chmod +x s.sh && ./s.sh");
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, "ran\n", "scripts in the workspace still run");
    const owner = statSync(workspace);
    for (const name of ["host.txt", "new.txt", "d", "s.sh"]) {
      const st = lstatSync(join(workspace, name));
      assert.equal(st.uid, owner.uid, `${name} belongs to the workspace's owner`);
      assert.equal(st.gid, owner.gid);
    }
    assert.equal(readFileSync(join(workspace, "host.txt"), "utf8"), "host\nmore\n");
  });

  test("uid-gated host doors stay shut: sysctl writes, the host's keyrings, root-only files", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "namespace");
    // /proc/sys is read-only in the sandbox anyway; the kernel's own check is on the host uid, which is
    // no longer 0: a writable /proc/sys/kernel/core_pattern would be refused by the kernel as well.
    const r = await sandbox.commands.run("cat /proc/1/status | grep -E '^(Uid|CapEff)'; echo '|x' > /proc/sys/kernel/core_pattern; echo rc=$?");
    assert.match(r.stdout, /CapEff:\s*0000000000000000/);
    assert.match(r.stdout, /rc=[1-9]/);
    assert.notEqual(readFileSync("/proc/sys/kernel/core_pattern", "utf8").trim(), "|x");
  });
});
