// How the agent starts a command (guest-agent/spawn.c, under vfork since the agent shares its memory
// with the child until the exec): the command starts with no signal blocked, ignored or handled, and
// a file without a #! line still runs through /bin/sh with its arguments (bounded, on the stack).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BACKENDS, rejectsWith, sandboxFor, unavailable } from "../fixtures.js";

const ZERO = /^0+$/;

for (const backend of BACKENDS) {
  describe(`${backend}: a command's start`, async () => {
    const skip = await unavailable(backend);

    test("no signal blocked, ignored or caught in the command, whatever the agent's own handlers", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      const r = await sandbox.commands.run(["cat", "/proc/self/status"]);
      const field = (name: string): string => new RegExp(`^${name}:\\s*([0-9a-f]+)$`, "m").exec(r.stdout)?.[1] ?? `no ${name}`;
      for (const name of ["SigBlk", "SigIgn", "SigCgt"]) assert.match(field(name), ZERO, `${name} of the command`);
      // The agent's SIGCHLD still works after the child left its mask behind: the next command is reaped.
      assert.equal((await sandbox.commands.run(["echo", "again"])).stdout, "again\n");
    });

    test("a file without #! runs through /bin/sh with its arguments; too many of them is INVALID_ARGUMENT", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      await sandbox.files.write("run", 'echo "$1-$2"\n');
      assert.equal((await sandbox.commands.run(["chmod", "755", "run"])).exitCode, 0);
      const r = await sandbox.commands.run(["./run", "a", "b c"]);
      assert.equal(r.stdout, "a-b c\n");
      assert.equal(r.exitCode, 0);
      await rejectsWith(sandbox.commands.run(["./run", ...Array.from({ length: 5000 }, () => "x")]), "INVALID_ARGUMENT");
      assert.equal((await sandbox.commands.run(["./run", "still", "fine"])).stdout, "still-fine\n");
    });

    // The guest agent keeps a finished command's empty cgroup for a later one (guest-agent/cgroup.c);
    // per-command cgroups are the VM's (the namespace sandbox's cgroup is the host's, per sandbox).
    if (backend !== "microvm") return;
    test("each command's cgroup holds its own processes only, not a previous command's", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      const first = await sandbox.commands.run(["sh", "-c", "sleep 30 & echo $!"]);
      const left = first.stdout.trim();
      assert.match(left, /^[0-9]+$/);
      for (let i = 0; i < 3; i++) {
        const r = await sandbox.commands.run(["sh", "-c", "cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/cgroup.procs; true"]);
        const pids = r.stdout.trim().split("\n");
        assert.equal(pids.length, 2, `sh and cat only: ${r.stdout}${r.stderr}`);
        assert.ok(!pids.includes(left), "the first command's background process is gone, not in a later command's cgroup");
      }
    });
  });
}
