// The micro-VM's host side holds no privilege: a hostile guest leaves no host owner, set-id bit, device
// node or symlink; QEMU runs unprivileged in its own mount namespace; no value reaches QEMU unescaped.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { qemuArgs, qemuOptValue } from "../../../src/sandbox/microvm/qemu.js";
import { ensureJailer, jailerArgs } from "../../../src/sandbox/jailer/jailer.js";
import { allocateIdentity } from "../../../src/sandbox/jailer/identity.js";
import { run } from "../../../src/util/proc.js";
import { procStatus } from "../../../src/util/procfs.js";
import { requireImage } from "../../../src/image/build.js";
import { sandboxFor, tempWorkspace, unavailable, waitFor } from "../../fixtures.js";

/** The jailer and its filter copied into a fresh directory another user can reach (the build cache is root's); removed after the test. */
async function jailerCopy(t: { after: (fn: () => void) => void }, prefix: string): Promise<{ build: Awaited<ReturnType<typeof ensureJailer>>; dir: string; jailer: string; filter: string }> {
  const build = await ensureJailer();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const jailer = join(dir, "lg-jailer");
  const filter = join(dir, "vmm.seccomp");
  copyFileSync(build.path, jailer);
  copyFileSync(build.seccompPath, filter);
  chmodSync(dir, 0o755);
  return { build, dir, jailer, filter };
}

describe("QEMU option values", () => {
  test("commas are doubled so a value cannot start another option", () => {
    assert.equal(qemuOptValue("/srv/a,path=/,readonly=off"), "/srv/a,,path=/,,readonly=off");
    assert.throws(() => qemuOptValue("/srv/a\nb"), { code: "INVALID_ARGUMENT" });
  });

  test("no host path reaches a QEMU option: every path QEMU opens is a fixed name inside its jail", async () => {
    const image = await requireImage().catch(() => undefined);
    if (!image) return;
    const args = qemuArgs(
      { id: "x", accel: "tcg", image, memoryMiB: 128, vcpus: 1, workspace: "/srv/ws,path=/", memoryFile: { path: "/c/ram,share=on", share: false } },
      { run: "/run/vm", kernel: "/vm/kernel", initrd: "/vm/initrd", ram: "/vm/ram", share: "/share" },
    );
    const joined = args.join(" ");
    assert.ok(!joined.includes("/srv/ws"), joined);
    assert.ok(!joined.includes("/c/ram"), joined);
    assert.match(joined, /security_model=mapped-xattr/);
    assert.doesNotMatch(joined, /security_model=(none|passthrough)/);
  });
});

describe("micro-VM jail", async () => {
  const skip = await unavailable("microvm");

  test("a compromised VMM (any code in the jail) sees only its binds and cannot make set-id files or devices", { skip }, async (t) => {
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    writeFileSync(join(ws.dir, "host.txt"), "host");
    const build = await ensureJailer();
    const identity = allocateIdentity();
    t.after(() => identity.release());
    const owner = statSync(ws.dir);
    const argv = [
      ...jailerArgs(build, { identity, binds: [{ kind: "dev", src: "/dev/null", dst: "/dev/null" }], workspace: { src: ws.dir, uid: owner.uid, gid: owner.gid } }),
      "/usr/bin/sh",
      "-c",
      [
        "id -u",
        "ls /",
        "echo x > /share/ws/new; chmod 4755 /share/ws/new && echo SETUID-OK",
        "chmod 2755 /share/ws/new && echo SETGID-OK",
        "mknod /share/ws/dev c 1 3 && echo MKNOD-OK",
        "chmod 755 /share/ws/new && echo PLAIN-CHMOD-OK",
        "echo more >> /share/ws/host.txt && echo HOST-FILE-WRITABLE",
        "ls /root /etc /home 2>&1 | head -3",
      ].join("; "),
    ];
    const r = await run(argv, { timeoutMs: 10_000 });
    const lines = r.stdout.split("\n");
    if (identity.switched) assert.equal(lines[0], String(identity.uid));
    assert.deepEqual(lines.slice(1, 9), ["bin", "dev", "lib", "lib64", "proc", "sbin", "share", "usr"]);
    assert.doesNotMatch(r.stdout, /SETUID-OK|SETGID-OK|MKNOD-OK/);
    assert.match(r.stdout, /PLAIN-CHMOD-OK/);
    assert.match(r.stdout, /HOST-FILE-WRITABLE/, "the workspace owner's files are the VMM's to write");
    assert.match(r.stdout, /No such file or directory/);
    const st = lstatSync(join(ws.dir, "new"));
    assert.equal(st.uid, owner.uid, "created files belong to the workspace's owner on disk");
    assert.equal(st.mode & 0o7000, 0);
  });

  test("run by an ordinary user, the jail is built in a user namespace of that user alone", { skip: skip ?? ((process.getuid?.() ?? 1) !== 0 ? "needs root to become another user" : undefined) }, async (t) => {
    // The jailer as uid 65534 (nobody): it cannot and need not change uid, but still gets a private
    // root with only its binds and the seccomp filter.
    const { build, dir, jailer, filter } = await jailerCopy(t, "lg-jail-user-");
    mkdirSync(join(dir, "ws"));
    chownSync(join(dir, "ws"), 65534, 65534);
    const identity = { uid: 65534, gid: 65534, switched: false, release: () => undefined };
    const argv = [
      "/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--",
      ...jailerArgs({ ...build, path: jailer, seccompPath: filter }, { identity, binds: [], workspace: { src: join(dir, "ws"), uid: 65534, gid: 65534 } }),
      "/usr/bin/sh", "-c", "id -u; ls /; echo x > /share/ws/f; chmod 4755 /share/ws/f || echo SETID-DENIED",
    ];
    const r = await run(argv, { timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "65534");
    assert.deepEqual(lines.slice(1, 8), ["bin", "lib", "lib64", "proc", "sbin", "share", "usr"]);
    assert.match(r.stdout, /SETID-DENIED/);
    assert.equal(statSync(join(dir, "ws", "f")).mode & 0o7000, 0);
  });

  test("run by an ordinary user, the jail sees no other process in /proc, and cannot read into a process of that user outside it", { skip: skip ?? ((process.getuid?.() ?? 1) !== 0 ? "needs root to become another user" : undefined) }, async (t) => {
    // An ordinary user owns no pid namespace to mount a proc for: the jail gets the host's directory of
    // its own process alone, and `self`. Had it the host's whole /proc, the kernel would still refuse
    // ptrace-level access across the user namespace boundary: both are checked.
    const { build, jailer, filter } = await jailerCopy(t, "lg-jail-proc-");
    const asNobody = ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"];
    // Dumpable (its last exec ran with equal real and effective ids), uid 65534, outside any jail.
    const outside = spawn(asNobody[0] as string, [...asNobody.slice(1), "/usr/bin/env", "LG_SECRET=host-secret-123", "/usr/bin/sleep", "30"], { stdio: "ignore" });
    t.after(() => outside.kill("SIGKILL"));
    const pid = outside.pid as number;
    assert.ok(await waitFor(() => readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("/usr/bin/sleep"), 5_000));
    const identity = { uid: 65534, gid: 65534, switched: false, release: () => undefined };
    const r = await run(
      [
        ...asNobody,
        ...jailerArgs({ ...build, path: jailer, seccompPath: filter }, { identity, binds: [] }),
        "/usr/bin/sh", "-c", `test -d /proc/${pid} && echo SEES-PID; ls /proc; readlink /proc/self; echo "me $$"; cat /proc/${pid}/environ || echo ENVIRON-DENIED; readlink /proc/${pid}/exe || echo EXE-DENIED; cat /proc/${pid}/mem || echo MEM-DENIED; cat /proc/1/environ || echo INIT-DENIED`,
      ],
      { timeoutMs: 10_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /SEES-PID/, "another process of the same uid is not in the jail's /proc");
    const me = /^me (\d+)$/m.exec(r.stdout)?.[1];
    assert.ok(me, r.stdout);
    const lines = r.stdout.split("\n");
    assert.deepEqual(lines.slice(0, lines.indexOf(`me ${me}`)), [me, "self", me], "its /proc holds its own directory and `self`, pointing there, alone");
    assert.doesNotMatch(r.stdout, /host-secret-123/);
    for (const w of ["ENVIRON-DENIED", "EXE-DENIED", "MEM-DENIED", "INIT-DENIED"]) assert.match(r.stdout, new RegExp(w), r.stdout + r.stderr);
  });

  test("a guest cannot leave a set-uid, root-owned, device or symlink file on the host", { skip }, async (t) => {
    const { sandbox, workspace } = await sandboxFor(t, "microvm");
    const r = await sandbox.commands.run(
      [
        "echo hi > /workspace/suid; chown 0:0 /workspace/suid; chmod 4755 /workspace/suid",
        "cp /bin/busybox /workspace/sgid; chmod 2755 /workspace/sgid",
        "mknod /workspace/null c 1 3; mknod /workspace/blk b 8 0",
        "ln -s /etc/shadow /workspace/link",
        "mkdir /workspace/dir; chmod 7777 /workspace/dir",
        "ls -ln /workspace",
      ].join("; "),
    );
    // Inside, the guest sees what it asked for (its own view, kept in xattrs); commands are not root
    // in the VM, so device nodes and a chown to root fail there already ...
    assert.match(r.stdout, /-rwsr-xr-x .* suid/, r.stdout + r.stderr);
    assert.match(r.stdout, /^l.* link -> \/etc\/shadow$/m);
    assert.match(r.stderr, /mknod: \/workspace\/null: Operation not permitted/);
    // ... and on the host every entry is a plain file or directory of the workspace's owner. (Guest
    // root, e.g. after a guest kernel exploit, meets the same export: the compromised-VMM test above
    // shows the jail's own refusal of set-id modes and device nodes.)
    const owner = statSync(workspace);
    for (const name of ["suid", "sgid", "link", "dir"]) {
      const st = lstatSync(join(workspace, name));
      assert.ok(st.isFile() || st.isDirectory(), `${name} is a regular file or directory on the host`);
      assert.equal(st.mode & 0o7000, 0, `${name} has no set-id or sticky bit on the host (mode ${st.mode.toString(8)})`);
      assert.equal(st.uid, owner.uid, `${name} belongs to the workspace's owner`);
      assert.equal(st.gid, owner.gid);
    }
    for (const name of ["null", "blk"]) {
      const st = lstatSync(join(workspace, name), { throwIfNoEntry: false });
      assert.ok(st === undefined || st.isFile(), `${name} is no device node on the host`);
    }
    assert.equal(readFileSync(join(workspace, "link"), "utf8"), "/etc/shadow", "a guest symlink is a plain file holding its target");
  });

  test("write_file over a set-uid host file keeps no set-id bit", { skip }, async (t) => {
    const { sandbox, workspace } = await sandboxFor(t, "microvm");
    writeFileSync(join(workspace, "tool"), "old");
    const r = await sandbox.commands.run("chmod 6755 /workspace/tool");
    assert.equal(r.exitCode, 0, r.stderr);
    await sandbox.files.write("tool", "new");
    const st = lstatSync(join(workspace, "tool"));
    assert.equal(st.mode & 0o7000, 0, `mode ${st.mode.toString(8)}`);
    assert.equal(readFileSync(join(workspace, "tool"), "utf8"), "new");
  });

  test("QEMU runs unprivileged, with no_new_privs, seccomp, no groups, in its own mount namespace, with a minimal environment", { skip }, async (t) => {
    const saved = { key: process.env["OPENAI_API_KEY"], token: process.env["LUMINAGUARD_MCP_TOKEN"] };
    process.env["OPENAI_API_KEY"] = "sk-secret-test-key";
    process.env["LUMINAGUARD_MCP_TOKEN"] = "mcp-secret-token";
    t.after(() => {
      for (const [k, v] of [["OPENAI_API_KEY", saved.key], ["LUMINAGUARD_MCP_TOKEN", saved.token]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });
    const { sandbox } = await sandboxFor(t, "microvm");
    const [pid] = sandbox.pids();
    assert.ok(pid !== undefined);
    assert.match(readFileSync(`/proc/${pid}/cmdline`, "utf8"), /qemu-system-x86_64/);
    const s = procStatus(pid) ?? {};
    const [ruid, euid, suid] = (s["Uid"] ?? "").split(/\s+/).map(Number);
    assert.ok(ruid !== 0 && euid !== 0 && suid !== 0, `QEMU uid ${s["Uid"]}`);
    const [rgid] = (s["Gid"] ?? "").split(/\s+/).map(Number);
    assert.notEqual(rgid, 0);
    if ((process.getuid?.() ?? 0) === 0) assert.equal(s["Groups"], "", "no supplementary groups");
    assert.equal(s["NoNewPrivs"], "1");
    assert.equal(s["Seccomp"], "2");
    assert.equal(s["CapEff"], "0000000000000000");
    assert.equal(s["CapPrm"], "0000000000000000");
    assert.notEqual(readlinkSync(`/proc/${pid}/ns/mnt`), readlinkSync("/proc/self/ns/mnt"), "own mount namespace");
    assert.notEqual(readlinkSync(`/proc/${pid}/ns/net`), readlinkSync("/proc/self/ns/net"), "own network namespace");
    // What QEMU can see of the filesystem: its code, its own files, nothing else of the host.
    const root = readdirSync(`/proc/${pid}/root`).sort();
    assert.deepEqual(readdirSync(`/proc/${pid}/root/share`), ["ws"], "the share holds the workspace alone");
    assert.deepEqual(root, ["bin", "dev", "lib", "lib64", "proc", "run", "sbin", "share", "usr", "vm"]);
    assert.deepEqual(readdirSync(`/proc/${pid}/root/dev`).sort(), ["null", "urandom"].concat(sandbox.info["accel"] === "kvm" ? ["kvm"] : []).sort());
    const env = readFileSync(`/proc/${pid}/environ`, "utf8");
    assert.doesNotMatch(env, /sk-secret-test-key|mcp-secret-token/);
    assert.deepEqual(env.split("\0").filter(Boolean).map((e) => e.split("=")[0]).filter((k) => k !== "TZ").sort(), ["LANG", "PATH"]);
  });

  test("a workspace whose path carries QEMU option syntax shares exactly that directory", { skip }, async (t) => {
    const base = tempWorkspace();
    t.after(() => base.remove());
    // The real path itself has commas and '=' (not only a symlink to it): every value is escaped.
    const ws = join(base.dir, "a,path=,security_model=passthrough, b");
    mkdirSync(ws);
    writeFileSync(join(ws, "inside.txt"), "in");
    const link = join(base.dir, "w,path=");
    symlinkSync(ws, link);
    const { sandbox } = await sandboxFor(t, "microvm", { workspace: link });
    const ls = await sandbox.commands.run("ls -a /workspace; cat /workspace/inside.txt; echo out > /workspace/new.txt");
    assert.equal(ls.exitCode, 0, ls.stderr);
    assert.deepEqual(ls.stdout.split("\n").slice(0, 3), [".", "..", "inside.txt"]);
    assert.match(ls.stdout, /in$/m);
    assert.equal(readFileSync(join(ws, "new.txt"), "utf8"), "out\n");
    rmSync(join(ws, "new.txt"));
  });
});
