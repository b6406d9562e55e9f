// File tools beside the VM: the four file tools run in a namespace jail on the host, commands in the
// VM, and each side sees what the other wrote at once, in every order. The guest mode stays selectable.
import assert from "node:assert/strict";
import { statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseFileTools } from "../../../src/runtime/file-tools.js";
import type { SandboxHandle } from "../../../src/sandbox/types.js";
import { pidAlive } from "../../../src/util/procfs.js";
import { killAll, sandboxFor, unavailable, waitFor } from "../../fixtures.js";

describe("microvm file tools beside the VM", async () => {
  const skip = (await unavailable("microvm")) ?? (await unavailable("namespace"));

  test("by default the file tools run in the jail and commands in the VM, and every result says so", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    assert.equal(sandbox.info["fileTools"], "host");
    assert.match(String(sandbox.info["fileJail"]), /^bubblewrap\+seccomp/);
    const w = await sandbox.files.write("a.txt", "from the jail\n");
    assert.equal(w.servedBy, "jail");
    const r = await sandbox.commands.run(["cat", "/workspace/a.txt"]);
    assert.equal(r.servedBy, "vm");
    assert.equal(r.stdout, "from the jail\n");
    const viaName = await sandbox.callTool("list_directory", { path: "." });
    assert.equal(viaName["servedBy"], "jail");
    const cmd = await sandbox.callTool("execute_command", { command: "echo hi" });
    assert.equal(cmd["servedBy"], "vm");
    // The jail's agent refuses commands whatever the host sends it: no code of the sandbox's runs there.
    const jailChannel = (sandbox as unknown as { handle: SandboxHandle }).handle.fileChannel;
    assert.ok(jailChannel);
    await assert.rejects(jailChannel.request("execute_command", { argv: ["/bin/true"], timeoutMs: 5000, maxOutputBytes: 1024 }), {
      code: "POLICY_DENIED",
      message: /file tools only/,
    });
    // The jail's agent is a host process of this sandbox: counted in its pids, gone after kill.
    assert.ok(sandbox.pids().length >= 2, `VM and jail pids: ${sandbox.pids().join(",")}`);
  });

  test("what one side writes the other sees at once, in every order", { skip }, async (t) => {
    const { sandbox, workspace } = await sandboxFor(t, "microvm");
    for (let i = 0; i < 5; i++) {
      // jail write → VM read, then VM overwrite → jail read, on the same name, with no pause between.
      await sandbox.files.write("x.txt", `jail ${i}\n`);
      assert.equal((await sandbox.commands.run(["cat", "x.txt"], { cwd: "/workspace" })).stdout, `jail ${i}\n`);
      const vm = await sandbox.commands.run(["sh", "-c", `printf 'vm ${i} longer line\\n' > x.txt`], { cwd: "/workspace" });
      assert.equal(vm.exitCode, 0, vm.stderr);
      assert.equal(await sandbox.files.readText("x.txt"), `vm ${i} longer line\n`);
    }
    // A new directory and file from the VM appear in list and search; a deletion from the VM is seen too.
    await sandbox.commands.run(["sh", "-c", "mkdir -p d && echo needle > d/n.txt"], { cwd: "/workspace" });
    const list = await sandbox.files.list("d");
    assert.deepEqual(list.entries.map((e) => e.path), ["d/n.txt"]);
    const found = await sandbox.search({ pattern: "needle" });
    assert.deepEqual(found.matches.map((m) => m.path), ["d/n.txt"]);
    await sandbox.commands.run(["rm", "d/n.txt"], { cwd: "/workspace" });
    assert.deepEqual((await sandbox.files.list("d")).entries, []);
    // A file the jail creates is the workspace owner's on disk, and the VM's command may change it.
    await sandbox.files.write("owned.txt", "1");
    assert.equal(statSync(join(workspace, "owned.txt")).uid, statSync(workspace).uid);
    const append = await sandbox.commands.run(["sh", "-c", "echo 2 >> owned.txt && cat owned.txt"], { cwd: "/workspace" });
    assert.equal(append.stdout, "12\n", append.stderr);
  });

  test("the jail confines paths like the guest does", { skip }, async (t) => {
    const { sandbox, workspace } = await sandboxFor(t, "microvm");
    await assert.rejects(sandbox.files.read("../../etc/passwd"), { code: "PATH_ESCAPE" });
    // A symlink out of the workspace on disk (as a hostile repository ships it) is refused.
    symlinkSync("/etc", join(workspace, "host-link"));
    await assert.rejects(sandbox.files.read("host-link/passwd"), { code: "PATH_ESCAPE" });
    // One made in the VM is stored by 9p (mapped-xattr) as a plain file holding its target: the jail
    // sees a file, never the host's /etc.
    await sandbox.commands.run(["ln", "-s", "/etc", "/workspace/vm-link"]);
    await assert.rejects(sandbox.files.read("vm-link/passwd"), { code: "NOT_A_DIRECTORY" });
    assert.equal(await sandbox.files.readText("vm-link"), "/etc");
  });

  test("fileTools: guest keeps every tool in the VM", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm", { fileTools: "guest" });
    assert.equal(sandbox.info["fileTools"], "guest");
    const w = await sandbox.files.write("g.txt", "guest");
    assert.equal(w.servedBy, "vm");
    assert.equal((await sandbox.files.read("g.txt")).servedBy, "vm");
    assert.equal((await sandbox.commands.run(["cat", "/workspace/g.txt"])).stdout, "guest");
  });

  test("the jail dies with its VM and the VM with its jail", { skip }, async (t) => {
    const { sandbox } = await sandboxFor(t, "microvm");
    const pids = sandbox.pids();
    assert.ok(pids.length >= 2);
    await sandbox.kill();
    for (const pid of pids) assert.ok(!pidAlive(pid), `pid ${pid} still alive after kill`);

    const second = await sandboxFor(t, "microvm");
    const [vmPid, ...jailPids] = second.sandbox.pids() as [number, ...number[]];
    // Killing the jail's processes from outside must take the VM down with it (a loaded machine is slow).
    killAll(jailPids);
    assert.ok(await waitFor(() => !second.sandbox.alive, 15_000), "the sandbox is killed when its file jail dies");
    assert.ok(await waitFor(() => !pidAlive(vmPid), 15_000), `the VM (pid ${vmPid}) is gone too`);
  });

  test("a bad mode is refused with its name", () => {
    assert.equal(parseFileTools("guest", "x"), "guest");
    assert.throws(() => parseFileTools("both", "LUMINAGUARD_FILE_TOOLS"), { code: "INVALID_ARGUMENT", message: /LUMINAGUARD_FILE_TOOLS: "both" is not a file-tools mode/ });
  });
});
