// lg-jailer --cgroup: the jailer joins a sandbox cgroup itself before it starts what it runs, so that
// it is born inside (namespace sandboxes, launch.ts); what is not a cgroup directory is refused.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { ensureJailer } from "../../../src/sandbox/jailer/jailer.js";
import { allocateIdentity } from "../../../src/sandbox/jailer/identity.js";
import { probeCgroups, SandboxCgroup } from "../../../src/sandbox/namespace/cgroup.js";
import { uniqueId } from "../namespace/helpers.js";

const root = (process.getuid?.() ?? 1) === 0;
const cg = probeCgroups();
const skip = !root ? "needs root (--cgroup is root's)" : !cg.usable ? `cgroups unusable: ${cg.reason ?? "?"}` : undefined;
if (skip !== undefined) process.stderr.write(`SKIP: ${skip}\n`);

describe("lg-jailer --cgroup", () => {
  async function jailed(cgroups: string[], script: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const build = await ensureJailer();
    const identity = allocateIdentity();
    try {
      const args = ["--uid", String(identity.uid), "--gid", String(identity.gid), "--stage", "--keep-fds", "3"];
      for (const dir of cgroups) args.push("--cgroup", dir);
      const r = spawnSync(build.path, [...args, "--", "/bin/sh", "-c", script], { encoding: "utf8", timeout: 10_000 });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr };
    } finally {
      identity.release();
    }
  }

  test("joins every cgroup given before it runs its program, which is born inside", { skip }, async (t) => {
    const name = uniqueId("lgt-join");
    const cgroup = SandboxCgroup.create(name, { memoryMiB: 64, pidsMax: 16 });
    t.after(() => cgroup.destroy());
    const r = await jailed([...cgroup.dirs], "cat /proc/self/cgroup");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, "");
    const controllers = cg.version === "v1" ? ["memory", "pids"] : [""];
    for (const c of controllers) assert.match(r.stdout, new RegExp(`^\\d+:${c}:.*/${name}$`, "m"), r.stdout);
  });

  test("a directory that is no cgroup is reported and not joined (the host then moves the sandbox); a relative path is refused", { skip }, async () => {
    const r = await jailed(["/tmp"], "echo ran");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "ran\n");
    assert.match(r.stderr, /\/tmp is not a cgroup directory/);
    // A symlink to a real cgroup is not followed (O_NOFOLLOW): the link's target is not joined.
    const name = uniqueId("lgt-link");
    const cgroup = SandboxCgroup.create(name, { memoryMiB: 64, pidsMax: 16 });
    const link = join(mkdtempSync(join(tmpdir(), "lg-cg-link-")), "cg");
    symlinkSync(cgroup.dirs[0] as string, link);
    try {
      const viaLink = await jailed([link], "cat /proc/self/cgroup");
      assert.equal(viaLink.status, 0, viaLink.stderr);
      assert.match(viaLink.stderr, /is not a cgroup directory/);
      assert.doesNotMatch(viaLink.stdout, new RegExp(`/${name}$`, "m"));
    } finally {
      rmSync(dirname(link), { recursive: true, force: true });
      await cgroup.destroy();
    }
    const rel = await jailed(["sys/fs/cgroup"], "echo ran");
    assert.equal(rel.status, 126);
    assert.equal(rel.stdout, "");
    assert.match(rel.stderr, /not an absolute path/);
  });
});
