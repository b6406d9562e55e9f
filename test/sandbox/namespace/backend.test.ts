// The namespace backend end to end: real bubblewrap, real guest agent, real limits; nothing mocked.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { LuminaGuardError } from "../../../src/errors.js";
import { NamespaceBackend } from "../../../src/sandbox/namespace/backend.js";
import { probeCgroups } from "../../../src/sandbox/namespace/cgroup.js";
import type { SandboxHandle, SandboxSpec } from "../../../src/sandbox/types.js";
import { cmdline } from "../../../src/util/procfs.js";
import { namespaceSkip, noneExist, processRefs, stillRunning, tempDir, uniqueId, waitFor } from "./helpers.js";
import { execOn as exec, type ExecResult } from "../../fixtures.js";

const backend = new NamespaceBackend();
const probe = await backend.probe();

const skip = await namespaceSkip(probe);
const limited = probeCgroups().usable;

const handles = new Set<SandboxHandle>();
const workspaces: Array<() => void> = [];

async function spawnSandbox(overrides: Partial<SandboxSpec> = {}): Promise<{ sb: SandboxHandle; workspace: string; spec: SandboxSpec }> {
  const ws = tempDir("lg-ns-ws-");
  workspaces.push(ws.remove);
  const spec: SandboxSpec = { id: uniqueId("lgns"), workspace: ws.dir, memoryMiB: 256, pidsMax: 256, vcpus: 1, ...overrides };
  const sb = await backend.spawn(spec);
  handles.add(sb);
  return { sb, workspace: ws.dir, spec };
}

const sh = (sb: SandboxHandle, script: string, timeoutMs?: number): Promise<ExecResult> => exec(sb, ["/bin/sh", "-c", script], timeoutMs);

/** The sandbox cgroup directories for `id`, whether or not they exist. */
function cgroupDirs(id: string): string[] {
  return probeCgroups().parents.map((p) => join(p, id));
}

describe("namespace backend", { skip }, () => {
  after(async () => {
    // Kill everything even when a test failed midway.
    await Promise.allSettled([...handles].map((h) => h.destroy()));
    for (const remove of workspaces) remove();
  });

  test("probe says it shares the host kernel and what isolates it", () => {
    assert.equal(probe.backend, "namespace");
    assert.equal(probe.available, true);
    assert.equal(probe.details["sharesHostKernel"], true);
    assert.match(String(probe.details["isolation"]), /^bubblewrap\+seccomp(\+cgroup-v[12])?$/);
    assert.equal(probe.details["network"], "none");
    if (!limited) assert.equal(probe.details["limits"], "none");
  });

  test("spawn → hello and init; info says the host kernel is shared; destroy removes everything", async () => {
    const { sb, spec } = await spawnSandbox();
    assert.equal(sb.backend, "namespace");
    assert.equal(sb.info["backend"], "namespace");
    assert.equal(sb.info["sharesHostKernel"], true);
    assert.equal(sb.info["isolation"], limited ? `bubblewrap+seccomp+cgroup-${probeCgroups().version}` : "bubblewrap+seccomp");
    assert.equal(sb.info["limits"], limited ? "memory+pids" : "none");
    assert.equal(typeof sb.info["spawnMs"], "number");
    const hello = await sb.channel.request("hello", { v: 1 });
    assert.equal(hello.v, 1);
    assert.match(hello.agent, /^lg-agent\//);
    // bwrap and the agent (pid 1 of the sandbox, with no bwrap reaper: see launch.ts), both on the host.
    const pids = sb.pids();
    assert.ok(pids.length >= 2, `pids ${pids.join(",")}`);
    const refs = processRefs(pids);
    const cmdlines = pids.map((p) => (cmdline(p) ?? "").split(" ")[0]);
    assert.ok(cmdlines.includes("/.lg/lg-agent"), cmdlines.join(" | "));
    assert.ok(cmdlines.some((c) => c === "bwrap" || c?.endsWith("/bwrap")), cmdlines.join(" | "));
    if (limited) for (const d of cgroupDirs(spec.id)) assert.ok(existsSync(d), d);
    // The agent's file tools work under this seccomp filter (openat2 answers ENOSYS here).
    const content = Buffer.from("hello workspace\n").toString("base64");
    await sb.channel.request("write_file", { path: "dir/a.txt", content, createParents: true });
    const read = await sb.channel.request("read_file", { path: "dir/a.txt", maxBytes: 1024 });
    assert.equal(Buffer.from(read.content, "base64").toString(), "hello workspace\n");
    const list = await sb.channel.request("list_directory", { path: ".", depth: 2 });
    assert.deepEqual(list.entries.map((e) => e.path), ["dir", "dir/a.txt"]);
    await assert.rejects(sb.channel.request("read_file", { path: "../etc/passwd", maxBytes: 1024 }), (e: LuminaGuardError) => e.code === "PATH_ESCAPE");

    await sb.destroy();
    await sb.exited;
    assert.deepEqual(stillRunning(refs), [], "every process gone");
    assert.ok(noneExist(cgroupDirs(spec.id)), "cgroup removed");
    assert.deepEqual(sb.pids(), []);
    await sb.destroy(); // idempotent
    await assert.rejects(sb.channel.request("hello", { v: 1 }), (e: LuminaGuardError) => e.code === "SANDBOX_CLOSED");
  });

  test("isolation: host secrets unreadable, only the workspace writable, /tmp private, env and fds clean", async () => {
    const secretDir = mkdtempSync(join(homedir(), ".lg-ns-secret-"));
    const secret = join(secretDir, "secret.txt");
    writeFileSync(secret, "TOP-SECRET-HOST-FILE\n", { mode: 0o644 });
    process.env["LG_TEST_HOST_ONLY"] = "must-not-leak";
    try {
      const { sb, workspace, spec } = await spawnSandbox();
      // Host files outside the workspace do not exist in the sandbox; /etc/shadow is not there either.
      for (const path of [secret, "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.bash_history", "/etc/machine-id", "/usr/local/etc/npmrc"]) {
        const r = await exec(sb, ["cat", path]);
        assert.notEqual(r.exitCode, 0, `${path} must not be readable`);
        assert.doesNotMatch(r.stdout, /TOP-SECRET/);
      }
      assert.notEqual((await exec(sb, ["ls", "/root"])).exitCode, 0);
      assert.notEqual((await exec(sb, ["ls", "/home"])).exitCode, 0);
      // Host-wide kernel knobs are read-only (the sandbox uid is host root for sysctl's uid check):
      // writing back the current value would succeed if /proc/sys were writable, and changes nothing.
      const sysctl = await sh(sb, "v=$(cat /proc/sys/vm/overcommit_ratio) && echo $v > /proc/sys/vm/overcommit_ratio");
      assert.notEqual(sysctl.exitCode, 0);
      assert.match(sysctl.stderr, /Read-only file system/);
      assert.notEqual((await sh(sb, "test -w /proc/sys/kernel/core_pattern")).exitCode, 0);
      // Writes outside /workspace fail; /tmp works but is private.
      for (const path of ["/usr/x", "/etc/x", "/x", "/.lg/x", "/dev/x", "/proc/x"]) {
        const r = await exec(sb, ["touch", path]);
        assert.notEqual(r.exitCode, 0, `touch ${path} must fail`);
      }
      const marker = `lg-ns-private-${spec.id}`;
      assert.equal((await exec(sb, ["touch", `/tmp/${marker}`])).exitCode, 0);
      assert.ok(!existsSync(join("/tmp", marker)), "sandbox /tmp is not the host's");
      // The workspace is the bridge: a file written inside is on the host, owned by the invoking user.
      assert.equal((await sh(sb, "echo from-sandbox > /workspace/out.txt")).exitCode, 0);
      assert.equal(readFileSync(join(workspace, "out.txt"), "utf8"), "from-sandbox\n");
      assert.equal(statSync(join(workspace, "out.txt")).uid, process.getuid?.());
      // Identity and environment.
      const id = await sh(sb, "id -u; hostname; env | sort");
      const lines = id.stdout.trim().split("\n");
      assert.equal(lines[0], "1000");
      assert.equal(lines[1], spec.id);
      assert.doesNotMatch(id.stdout, /LG_TEST_HOST_ONLY|must-not-leak/);
      // Only stdio (and ls's own directory handle) are open; inherited host descriptors are /dev/null.
      const fds = await sh(sb, "ls -l /proc/self/fd/ | tail -n +2");
      for (const line of fds.stdout.trim().split("\n")) {
        const m = / (\d+) -> (.*)$/.exec(line);
        assert.ok(m, line);
        const [, fd, target] = m;
        if (Number(fd) <= 2) continue;
        assert.ok(target === "/dev/null" || /^\/proc\/\d+\/fd$/.test(target ?? ""), `unexpected fd ${fd} -> ${target}`);
      }
      // The only writable host path mounted is the workspace.
      const mounts = await exec(sb, ["cat", "/proc/self/mountinfo"]);
      for (const line of mounts.stdout.trim().split("\n")) {
        const f = line.split(" ");
        const [mountPoint, opts, fsType] = [f[4] ?? "", f[5] ?? "", f[f.indexOf("-") + 1] ?? ""];
        if (!opts.split(",").includes("rw")) continue;
        const ok = mountPoint === "/workspace" || ["tmpfs", "proc", "devpts", "devtmpfs"].includes(fsType);
        assert.ok(ok, `writable host mount: ${line}`);
      }
      await sb.destroy();
      // A fresh sandbox does not see the previous one's /tmp.
      const { sb: sb2 } = await spawnSandbox();
      assert.notEqual((await exec(sb2, ["ls", `/tmp/${marker}`])).exitCode, 0);
      await sb2.destroy();
    } finally {
      delete process.env["LG_TEST_HOST_ONLY"];
      rmSync(secretDir, { recursive: true, force: true });
    }
  });

  describe("no network", () => {
    let server: Server;
    let port = 0;
    let connections = 0;
    const sockets: Socket[] = [];
    before(async () => {
      server = createServer((s) => {
        connections++;
        sockets.push(s);
        s.end("hello from the host\n");
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const addr = server.address();
      port = typeof addr === "object" && addr ? addr.port : 0;
    });
    after(() => {
      for (const s of sockets) s.destroy();
      server.close();
    });

    test("a host TCP server on 127.0.0.1 is unreachable; only a loopback exists", async () => {
      // Sanity: the server is reachable from the host itself.
      const greeting = await new Promise<string>((resolve, reject) => {
        const c = connect(port, "127.0.0.1");
        let got = "";
        c.on("data", (d: Buffer) => (got += d.toString()));
        c.on("end", () => resolve(got));
        c.on("error", reject);
      });
      assert.match(greeting, /hello from the host/);
      const before = connections;
      const { sb } = await spawnSandbox();
      const r = await exec(sb, ["bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${port} && head -1 <&3`]);
      assert.notEqual(r.exitCode, 0);
      assert.match(r.stderr, /Connection refused|Network is unreachable|No such file/);
      assert.doesNotMatch(r.stdout, /hello from the host/);
      const ifaces = await exec(sb, ["cat", "/proc/net/dev"]);
      const names = ifaces.stdout.split("\n").slice(2).map((l) => l.split(":")[0]?.trim()).filter((n) => n);
      assert.deepEqual(names, ["lo"]);
      await sb.destroy();
      assert.equal(connections, before, "no connection reached the host server from the sandbox");
    });
  });

  test("seccomp: unshare and mount fail with EPERM, normal commands work", async () => {
    const { sb } = await spawnSandbox();
    const u = await exec(sb, ["unshare", "-U", "true"]);
    assert.notEqual(u.exitCode, 0);
    assert.match(u.stderr, /Operation not permitted/);
    const m = await exec(sb, ["mount", "-t", "tmpfs", "none", "/tmp"]);
    assert.notEqual(m.exitCode, 0);
    assert.match(m.stderr, /permission denied|Operation not permitted|must be superuser/i);
    assert.match((await exec(sb, ["grep", "Seccomp:", "/proc/self/status"])).stdout, /Seccomp:\s+2/);
    assert.equal((await sh(sb, "echo ok | tr a-z A-Z")).stdout, "OK\n");
    await sb.destroy();
  });

  test("run as root, lg-jailer joins the sandbox cgroup before bwrap starts: every host process of the sandbox, bwrap's own included, is in it", {
    skip: !limited ? "no cgroups here" : (process.getuid?.() ?? 1) !== 0 ? "the jailer runs only as root" : false,
  }, async () => {
    // Born inside instead of moved in: the host moving a pid waits for an RCU grace period (11-16 ms
    // here), the jailer moving itself does not. bwrap's own process shows which happened: the host
    // only ever moved the sandbox process, never bwrap.
    const { sb, spec } = await spawnSandbox();
    const pids = sb.pids();
    assert.ok(pids.length >= 2, `bwrap and the agent: ${pids.join(",")}`);
    for (const pid of pids) {
      const view = readFileSync(`/proc/${pid}/cgroup`, "utf8");
      for (const controller of probeCgroups().version === "v1" ? ["memory", "pids"] : [""]) {
        assert.match(view, new RegExp(`^\\d+:${controller}:.*/luminaguard/${spec.id}$`, "m"), `${pid} (${cmdline(pid)}) in ${controller || "its"} cgroup: ${view}`);
      }
    }
    await sb.destroy();
  });

  test("a fork bomb stops at pids.max; the sandbox still answers and the host is fine", { skip: limited ? false : "no cgroups here" }, async () => {
    const pidsMax = 64;
    const { sb, spec } = await spawnSandbox({ pidsMax });
    const pidsDir = cgroupDirs(spec.id)[probeCgroups().version === "v1" ? 1 : 0] as string;
    let peak = 0;
    const poll = setInterval(() => {
      try {
        peak = Math.max(peak, Number(readFileSync(join(pidsDir, "pids.current"), "utf8")));
      } catch {
        /* gone */
      }
    }, 20);
    try {
      // The command's deadline ends it: the agent kills its process group.
      await sh(sb, "f() { f | f & }; f; exec sleep 60", 2_000).then(
        (r) => assert.fail(`fork bomb returned ${JSON.stringify(r)}`),
        (err: LuminaGuardError) => assert.equal(err.code, "TOOL_TIMEOUT"),
      );
    } finally {
      clearInterval(poll);
    }
    // pids.events counts forks refused at the limit (the peak itself may fall between two polls).
    const refused = Number(/^max (\d+)/m.exec(readFileSync(join(pidsDir, "pids.events"), "utf8"))?.[1] ?? 0);
    // Run as root, bwrap's monitor is in the cgroup too, with one pid more for it (launch.ts).
    const allowed = pidsMax + ((process.getuid?.() ?? 1) === 0 ? 1 : 0);
    assert.equal(Number(readFileSync(join(pidsDir, "pids.max"), "utf8")), allowed);
    process.stderr.write(`fork bomb (agent): pids.current peaked at ${peak} of ${allowed}, ${refused} forks refused\n`);
    assert.ok(peak <= allowed, `peak ${peak} <= ${allowed}`);
    assert.ok(refused > 0, "the bomb hit the limit");
    // The bomb's survivors are gone and the sandbox works.
    assert.ok(await waitFor(() => Number(readFileSync(join(pidsDir, "pids.current"), "utf8")) <= 4, 5_000), "bomb processes reaped");
    assert.equal((await sh(sb, "echo still-here")).stdout, "still-here\n");
    assert.equal(spawnSync("/bin/true").status, 0, "the host still forks");
    await sb.destroy();
  });

  test("a memory bomb is OOM-killed inside the sandbox; the agent survives", { skip: limited ? false : "no cgroups here" }, async () => {
    const { sb, spec } = await spawnSandbox({ memoryMiB: 64 });
    const r = await sh(sb, "head -c 300000000 /dev/zero | tail > /dev/null; echo tail=$?", 30_000);
    assert.match(r.stdout, /tail=137/, `tail must be SIGKILLed by the OOM killer: ${JSON.stringify(r)}`);
    // It was this cgroup's OOM killer (v1 memory.oom_control / v2 memory.events count oom_kill).
    const memDir = cgroupDirs(spec.id)[0] as string;
    const events = readFileSync(join(memDir, probeCgroups().version === "v1" ? "memory.oom_control" : "memory.events"), "utf8");
    assert.ok(Number(/oom_kill (\d+)/.exec(events)?.[1] ?? 0) >= 1, events);
    assert.equal((await sh(sb, "echo alive")).stdout, "alive\n");
    await sb.destroy();
  });

  test("agent death mid-call: the call rejects with GUEST_CHANNEL_LOST and the sandbox is destroyed", async () => {
    const { sb, spec } = await spawnSandbox();
    const pids = sb.pids();
    const refs = processRefs(pids);
    const agentPid = pids.find((p) => (cmdline(p) ?? "").startsWith("/.lg/lg-agent"));
    assert.ok(agentPid !== undefined);
    const call = sh(sb, "sleep 30", 60_000);
    await new Promise((r) => setTimeout(r, 100));
    process.kill(agentPid, "SIGKILL");
    await assert.rejects(call, (e: LuminaGuardError) => e.code === "GUEST_CHANNEL_LOST");
    await sb.exited;
    await sb.destroy(); // the same teardown the channel started
    assert.deepEqual(stillRunning(refs), [], "every process gone");
    assert.ok(noneExist(cgroupDirs(spec.id)));
  });

  test("pids(): bwrap first, even when a process of the sandbox has a lower pid (the pid counter wrapped)", {
    skip: process.getuid?.() === 0 ? false : "needs root: sets the host's ns_last_pid",
  }, async (t) => {
    const { sb } = await spawnSandbox();
    const [main] = sb.pids();
    assert.ok(main !== undefined);
    assert.equal(readFileSync(`/proc/${main}/comm`, "utf8").trim(), "bwrap");
    // The kernel gives a new process the first free pid after ns_last_pid: set below bwrap's, the
    // command's processes get lower pids than bwrap, as after a wrap-around (pid_max is 32768 on
    // many hosts, and CI goes round it).
    const from = Math.max(301, main - 2000);
    let free = 0;
    for (let p = from; p < main; p++) if (!existsSync(`/proc/${p}`)) free++;
    if (free < 10) {
      t.skip(`no free pid below bwrap's (${main}) to start a command on`);
      return;
    }
    const commands: Array<Promise<ExecResult>> = [];
    let below: number | undefined;
    for (let attempt = 0; attempt < 10 && below === undefined; attempt++) {
      writeFileSync("/proc/sys/kernel/ns_last_pid", String(from - 1));
      const before = sb.pids().length;
      const command = sh(sb, "sleep 2");
      command.catch(() => undefined); // awaited below; a failed assertion first must not leave it unhandled
      commands.push(command);
      await waitFor(() => sb.pids().length > before, 5_000);
      below = sb.pids().find((p) => p < main);
    }
    assert.ok(below !== undefined, "a process of the sandbox got a pid below bwrap's");
    assert.equal(sb.pids()[0], main, `bwrap first: ${sb.pids().join(" ")}`);
    for (const r of await Promise.all(commands)) assert.equal(r.exitCode, 0);
  });

  test("without cgroups: spawn works, info says limits none, destroy still removes every process", async () => {
    const unlimited = new NamespaceBackend({ cgroups: "off" });
    const p = await unlimited.probe();
    assert.equal(p.available, true);
    assert.equal(p.details["limits"], "none");
    assert.equal(p.details["isolation"], "bubblewrap+seccomp");
    assert.match(String(p.details["limitsReason"]), /turned off/);
    const ws = tempDir("lg-ns-ws-");
    workspaces.push(ws.remove);
    const id = uniqueId("lgns-nocg");
    const sb = await unlimited.spawn({ id, workspace: ws.dir, memoryMiB: 64, pidsMax: 64, vcpus: 1 });
    handles.add(sb);
    assert.equal(sb.info["limits"], "none");
    assert.equal(sb.info["sharesHostKernel"], true);
    assert.ok(noneExist(cgroupDirs(id)), "no cgroup was created");
    const call = sh(sb, "sleep 30 & sleep 30 & wait", 60_000).catch((e: LuminaGuardError) => e.code);
    await new Promise((r) => setTimeout(r, 200));
    // Found by walking /proc from bwrap: bwrap, the agent, sh and its two sleeps.
    const pids = sb.pids();
    assert.ok(pids.length >= 5, `pids ${pids.join(",")}`);
    const refs = processRefs(pids);
    await sb.destroy();
    assert.equal(await call, "SANDBOX_CLOSED");
    assert.deepEqual(stillRunning(refs), [], "every process gone");
  });

  test("bad specs are refused before anything starts", async () => {
    const ws = tempDir("lg-ns-ws-");
    workspaces.push(ws.remove);
    const base: SandboxSpec = { id: "ok-id", workspace: ws.dir, memoryMiB: 64, pidsMax: 64, vcpus: 1 };
    const cases: Array<[Partial<SandboxSpec>, string]> = [
      [{ workspace: "/" }, "WORKSPACE_FORBIDDEN"],
      [{ workspace: "/etc" }, "WORKSPACE_FORBIDDEN"],
      // A proof of the workspace check that this process did not make counts for nothing.
      [{ workspace: "/etc", checked: { real: "/etc" } }, "WORKSPACE_FORBIDDEN"],
      [{ workspace: "/usr/lib" }, "WORKSPACE_FORBIDDEN"],
      [{ workspace: homedir() }, "WORKSPACE_FORBIDDEN"],
      [{ workspace: join(ws.dir, "missing") }, "NOT_FOUND"],
      [{ id: "../x" }, "INVALID_ARGUMENT"],
      [{ id: "a b" }, "INVALID_ARGUMENT"],
      [{ memoryMiB: 1 }, "INVALID_ARGUMENT"],
      [{ pidsMax: 1 }, "INVALID_ARGUMENT"],
    ];
    for (const [bad, code] of cases) {
      await assert.rejects(backend.spawn({ ...base, ...bad }), (e: LuminaGuardError) => e.code === code, `${JSON.stringify(bad)}: ${code}`);
    }
  });

  test("an aborted spawn leaves nothing behind", async () => {
    const ws = tempDir("lg-ns-ws-");
    workspaces.push(ws.remove);
    const id = uniqueId("lgns-abort");
    const ac = new AbortController();
    const p = backend.spawn({ id, workspace: ws.dir, memoryMiB: 64, pidsMax: 64, vcpus: 1 }, ac.signal);
    setTimeout(() => ac.abort(), 1);
    await p.then(
      (sb) => {
        handles.add(sb); // finished before the abort landed: that is fine too
        return sb.destroy();
      },
      (e: LuminaGuardError) => assert.equal(e.code, "CANCELLED"),
    );
    assert.ok(await waitFor(() => noneExist(cgroupDirs(id)), 5_000));
  });

  test("spawn time: median of 20 spawns to hello", async () => {
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      const { sb } = await spawnSandbox();
      times.push(performance.now() - started);
      await sb.destroy();
    }
    times.sort((a, b) => a - b);
    const median = ((times[9] as number) + (times[10] as number)) / 2;
    const p95 = times[18] as number;
    process.stderr.write(`namespace spawn→hello+init: median ${median.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, min ${(times[0] as number).toFixed(1)} ms\n`);
    assert.ok(median < 1_000, `median ${median} ms`);
  });
});
