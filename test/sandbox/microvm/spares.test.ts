// VMMs started ahead of their sandbox: the workspace is mounted into a waiting VMM's jail (lg-jailer --inject) and nowhere else.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { getBackend } from "../../../src/runtime/backends.js";
import { requireImage } from "../../../src/image/build.js";
import { cacheDir } from "../../../src/paths.js";
import { MicroVmBackend } from "../../../src/sandbox/microvm/backend.js";
import { ensureJailer } from "../../../src/sandbox/jailer/jailer.js";
import { allocateIdentity } from "../../../src/sandbox/jailer/identity.js";
import { run } from "../../../src/util/proc.js";
import { cmdline, listPids, liveStartTime, liveUids, pidAlive } from "../../../src/util/procfs.js";
import type { SandboxHandle } from "../../../src/sandbox/types.js";
import { killAll, tempWorkspace, unavailable, waitFor } from "../../fixtures.js";

const root = (process.getuid?.() ?? 1) === 0;
const BACKENDS_JS = fileURLToPath(new URL("../../../src/runtime/backends.js", import.meta.url));

async function sh(h: SandboxHandle, script: string): Promise<{ exitCode: number | null; stdout: string }> {
  let stdout = "";
  const r = await h.channel.request(
    "execute_command",
    { argv: ["sh", "-c", script], timeoutMs: 10_000, maxOutputBytes: 65_536 },
    { onEvent: (stream, data) => void (stream === "stdout" && (stdout += data.toString("utf8"))) },
  );
  return { exitCode: r.exitCode, stdout };
}

describe("lg-jailer --inject", () => {
  const skip = root ? undefined : "needs root (it enters another process's mount namespace)";

  test("refuses a process that does not run as the identity, and one in our own mount namespace", { skip }, async (t) => {
    const build = await ensureJailer();
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const identity = allocateIdentity();
    t.after(() => identity.release());
    // A root process (a pid reused by something else) and a process of that uid outside any jail.
    const rootSleeper = spawn("sleep", ["30"], { stdio: "ignore" });
    const userSleeper = spawn("setpriv", ["--reuid", String(identity.uid), "--regid", String(identity.gid), "--clear-groups", "sleep", "30"], { stdio: "ignore" });
    t.after(() => {
      rootSleeper.kill("SIGKILL");
      userSleeper.kill("SIGKILL");
    });
    await waitFor(() => (readFileSync(`/proc/${userSleeper.pid}/status`, "utf8").match(/\nUid:\s+(\d+)/)?.[1] ?? "") === String(identity.uid), 5_000);
    const inject = (pid: number | undefined) =>
      run([build.path, "--inject", String(pid), "--start", liveStartTime(pid ?? 0) ?? "", "--uid", String(identity.uid), "--gid", String(identity.gid), "--idmap", ws.dir, "/share/ws", "0", "0"], { timeoutMs: 10_000 });
    const a = await inject(rootSleeper.pid);
    assert.equal(a.code, 126);
    assert.match(a.stderr, /does not run as/);
    const b = await inject(userSleeper.pid);
    assert.equal(b.code, 126);
    assert.match(b.stderr, /not in a jail of its own/);
    // And nothing was mounted here.
    assert.doesNotMatch(readFileSync("/proc/self/mountinfo", "utf8"), /\/share\/ws/);
  });
});

describe("spare VMMs", async () => {
  const skip = await unavailable("microvm");

  test("a restore from a spare sees the workspace both ways, idmapped and nosuid/nodev/noexec in the VMM's jail alone", { skip }, async (t) => {
    const backend = new MicroVmBackend({ vmmSpares: 1, fileJail: getBackend("namespace") });
    t.after(() => backend.close());
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    // The first restore launches QEMU itself and starts a spare; the second uses it.
    await (await backend.spawn({ id: "spare-first", workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 })).destroy();
    assert.ok(await waitFor(() => backend.sparePids().length === 1, 30_000), "a spare is started after a restore");
    const [spare] = backend.sparePids();
    // A spare waits warmed and paused: its QEMU uses no CPU while it waits.
    const cpu = (): number => {
      const f = readFileSync(`/proc/${spare}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      return Number(f[11]) + Number(f[12]);
    };
    const before = cpu();
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(cpu() - before <= 2, `a waiting spare is paused (${cpu() - before} ticks in 0.5 s)`);
    writeFileSync(join(ws.dir, "host.txt"), "from the host\n");
    const h = await backend.spawn({ id: "spare-second", workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 });
    t.after(() => h.destroy());
    assert.equal(h.info["vmm"], "spare");
    assert.equal(h.pids()[0], spare, "the sandbox runs in the spare's QEMU");
    assert.equal(h.info["fileTools"], "host");
    assert.equal(h.info["fileJailStart"], "ahead", "its file jail was started with the spare");
    assert.equal(typeof h.info["phaseMs.inject"], "number");
    assert.equal(typeof h.info["spareWarmupMs"], "number", "the spare ran its warm-up before it waited");
    // The warm-up ran with no identity, seed or clock: the sandbox's init is applied after it.
    const who = await sh(h, "hostname; date +%s; id -u");
    const [hostname, secs, uid] = who.stdout.trim().split("\n");
    assert.equal(hostname, "spare-second");
    assert.ok(Math.abs(Number(secs) - Date.now() / 1000) < 5, `the guest clock is the host's (${secs ?? ""})`);
    assert.equal(uid, String(h.info["hostUid"]), "commands run as the sandbox's own uid");
    const r = await sh(h, "cat host.txt && echo from-the-vm > vm.txt && ls -A / | grep -c 'lg-share\\|lg-warm'; ls -A /workspace");
    assert.equal(r.exitCode, 0, r.stdout);
    assert.equal(r.stdout, "from the host\n0\nhost.txt\nvm.txt\n", "the workspace alone, and no trace of the share's root or the warm-up's mount");
    assert.equal(readFileSync(join(ws.dir, "vm.txt"), "utf8"), "from-the-vm\n");
    // The file jail that waited with the spare serves this workspace, and the VM sees what it writes.
    const files = h.fileChannel;
    assert.ok(files, "file tools beside the VM");
    const read = await files.request("read_file", { path: "vm.txt", maxBytes: 1024 });
    assert.equal(Buffer.from(read.content, "base64").toString("utf8"), "from-the-vm\n");
    await files.request("write_file", { path: "jail.txt", content: Buffer.from("from-the-jail\n").toString("base64") });
    assert.equal((await sh(h, "cat jail.txt")).stdout, "from-the-jail\n");
    assert.equal(statSync(join(ws.dir, "jail.txt")).uid, statSync(ws.dir).uid, "files the jail makes are the workspace owner's");
    assert.equal(statSync(join(ws.dir, "vm.txt")).uid, statSync(ws.dir).uid, "files the VM makes are the workspace owner's");
    // In QEMU's mount namespace: the workspace idmapped below the read-only share root, with no set-id, devices or exec.
    const mounts = readFileSync(`/proc/${spare}/mountinfo`, "utf8").split("\n");
    const line = mounts.find((l) => l.split(" ")[4] === "/share/ws") ?? "";
    assert.match(line, /\bnosuid\b/, line);
    assert.match(line, /\bnodev\b/, line);
    assert.match(line, /\bnoexec\b/, line);
    assert.match(line, /\bidmapped\b/, line);
    assert.match(mounts.find((l) => l.split(" ")[4] === "/share") ?? "", /\bro\b/);
    assert.doesNotMatch(readFileSync("/proc/self/mountinfo", "utf8"), new RegExp(` ${ws.dir} `), "not mounted in the host's namespace");
  });

  test("a spare that dies while it waits is not handed out; close() leaves no spare running", { skip }, async (t) => {
    const backend = new MicroVmBackend({ vmmSpares: 1, fileJail: getBackend("namespace") });
    t.after(() => backend.close());
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    await (await backend.spawn({ id: "spare-die-1", workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 })).destroy();
    assert.ok(await waitFor(() => backend.sparePids().length === 1, 30_000));
    const [dead] = backend.sparePids();
    process.kill(dead as number, "SIGKILL");
    assert.ok(await waitFor(() => !backend.sparePids().includes(dead as number), 10_000), "the dead spare is dropped");
    assert.ok(await waitFor(() => backend.sparePids().length === 1, 30_000), "and replaced before the next restore asks");
    const [replacement] = backend.sparePids();
    assert.notEqual(replacement, dead);
    const h = await backend.spawn({ id: "spare-die-2", workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 });
    assert.equal(h.pids()[0], replacement, "the replacement serves the next restore");
    assert.equal((await sh(h, "echo ok")).stdout, "ok\n");
    await h.destroy();
    assert.ok(await waitFor(() => backend.sparePids().length === 1, 30_000), "a new spare replaces the one used");
    // A spare whose file jail dies while it waits is dropped too, its QEMU with it.
    const [withJail] = backend.sparePids();
    const jailPids = backend.spareJailPids();
    assert.ok(jailPids.length > 0, "the spare has a file jail waiting with it");
    // The jail is several processes: killing one may take the others down before their own kill.
    killAll(jailPids);
    assert.ok(await waitFor(() => !backend.sparePids().includes(withJail as number), 10_000), "the spare whose jail died is dropped");
    assert.ok(await waitFor(() => !pidAlive(withJail as number), 10_000), "and its QEMU is gone");
    assert.ok(await waitFor(() => backend.sparePids().length === 1 && backend.spareJailPids().length > 0, 30_000), "and it is replaced, with a file jail");
    const h2 = await backend.spawn({ id: "spare-die-3", workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 });
    assert.equal((await sh(h2, "echo ok")).stdout, "ok\n");
    await h2.destroy();
    assert.ok(await waitFor(() => backend.sparePids().length === 1, 30_000), "a new spare replaces the one used");
    const [last] = backend.sparePids();
    const lastJail = backend.spareJailPids();
    await backend.close();
    assert.deepEqual(backend.sparePids(), []);
    assert.throws(() => process.kill(last as number, 0), { code: "ESRCH" }, "the spare's QEMU is gone");
    assert.ok(lastJail.every((p) => !pidAlive(p)), "and its file jail");
  });

  test("spares are counted in all: a restore of another VM size takes the place of the older size's spare", { skip }, async (t) => {
    const backend = new MicroVmBackend({ vmmSpares: 1, fileJail: getBackend("namespace") });
    t.after(() => backend.close());
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    const spec = (id: string, memoryMiB: number) => ({ id, workspace: ws.dir, memoryMiB, pidsMax: 64, vcpus: 1 });
    await (await backend.spawn(spec("size-a1", 256))).destroy();
    assert.ok(await waitFor(() => backend.sparePids().length === 1, 30_000));
    const [big] = backend.sparePids();
    // Another size: its restore launches QEMU itself, and its spare replaces the 256 MiB one.
    const small = await backend.spawn(spec("size-b1", 192));
    assert.equal(small.info["vmm"], "launched");
    await small.destroy();
    assert.ok(await waitFor(() => backend.sparePids().length === 1 && backend.sparePids()[0] !== big, 30_000), "one spare in all, of the size asked for last");
    assert.ok(await waitFor(() => !pidAlive(big as number), 10_000), "the older size's spare is gone");
    const [smallSpare] = backend.sparePids();
    const again = await backend.spawn(spec("size-b2", 192));
    assert.equal(again.pids()[0], smallSpare, "the new size's spare serves it");
    await again.destroy();
  });
});

describe("spare VMMs of an ordinary user", async () => {
  // Needs root only to become that user (uid 65534): the runtime itself then runs with no privilege.
  const skip = (await unavailable("microvm")) ?? (root ? undefined : "needs root to become another user");

  test("run as uid 65534, a restore takes a spare; its VM and its file jail get the workspace (entering that user's own namespaces), both ways", { skip }, async (t) => {
    // That user's cache holds a copy of the current image (root's cache is root's alone).
    const base = mkdtempSync(join(tmpdir(), "lg-spares-user-"));
    t.after(() => rmSync(base, { recursive: true, force: true }));
    chmodSync(base, 0o755);
    const cache = join(base, "cache");
    const image = await requireImage();
    mkdirSync(join(cache, "images", image.hash), { recursive: true });
    const copy = (src: string, name: string): string => {
      const dst = join(cache, "files", name);
      mkdirSync(dirname(dst), { recursive: true });
      copyFileSync(src, dst);
      return dst;
    };
    const manifest = { ...image, kernel: copy(image.kernel, "vmlinux"), agent: copy(image.agent, "lg-agent"), initrd: copy(image.initrd, "initrd.cpio") };
    writeFileSync(join(cache, "images", image.hash, "manifest.json"), JSON.stringify(manifest));
    writeFileSync(join(cache, "images", "current.json"), readFileSync(join(cacheDir(), "images", "current.json")));
    for (const d of ["run", "home"]) mkdirSync(join(base, d), { mode: 0o700 });
    const ws = join(base, "home", "ws");
    mkdirSync(ws);
    writeFileSync(join(ws, "hello"), "from the host\n");
    await run(["chown", "-R", "65534:65534", cache, join(base, "run"), join(base, "home")], { timeoutMs: 10_000 });
    chmodSync(cache, 0o700);
    const script = `
      const { getBackend } = await import(${JSON.stringify(BACKENDS_JS)});
      const b = getBackend("microvm");
      await b.keepSpares(1);
      const spec = (id) => ({ id, workspace: ${JSON.stringify(ws)}, memoryMiB: 256, pidsMax: 256, vcpus: 1 });
      const out = [];
      // The first makes the snapshot (and starts the spare); the next two are restored from spares.
      for (let i = 0; i < 3; i++) {
        const end = Date.now() + 60000;
        while (i > 0 && b.sparePids().length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
        const h = await b.spawn(spec("u" + i));
        let stdout = "";
        const r = await h.channel.request("execute_command", { argv: ["sh", "-c", "cat /workspace/hello; echo vm-" + i + " > /workspace/from-vm-" + i], timeoutMs: 30000, maxOutputBytes: 4096 },
          { onEvent: (s, d) => void (s === "stdout" && (stdout += d.toString("utf8"))) });
        const files = h.fileChannel ?? h.channel;
        const f = await files.request("read_file", { path: "from-vm-" + i, maxBytes: 100 });
        const w = await files.request("write_file", { path: "from-tools-" + i, content: Buffer.from("tools-" + i).toString("base64"), encoding: "base64" }).then(() => "ok", (e) => String(e));
        out.push({ vmm: h.info.vmm, start: h.info.start, fileJailUid: h.info.fileJailUid, fileJailStart: h.info.fileJailStart, viaJail: h.fileChannel !== undefined, exit: r.exitCode, stdout, read: Buffer.from(f.content, "base64").toString("utf8"), write: w });
        await h.destroy();
      }
      await b.close();
      process.stdout.write(JSON.stringify(out) + "\\n");
    `;
    const r = await run(
      ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--", "/usr/bin/env", `HOME=${join(base, "home")}`, `LUMINAGUARD_CACHE=${cache}`, `LUMINAGUARD_RUN=${join(base, "run")}`, "LUMINAGUARD_DAEMON=0", process.execPath, "--input-type=module", "-e", script],
      { timeoutMs: 180_000 },
    );
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    const runs = JSON.parse(r.stdout.trim().split("\n").pop() ?? "[]") as Record<string, unknown>[];
    assert.equal(runs.length, 3, r.stdout);
    runs.forEach((x, i) => {
      assert.equal(x["exit"], 0, JSON.stringify(x));
      assert.equal(x["stdout"], "from the host\n", "the VM reads the workspace");
      assert.equal(x["read"], `vm-${i}\n`, "the file tools read what the VM wrote");
      assert.equal(x["write"], "ok");
      assert.equal(readFileSync(join(ws, `from-tools-${i}`), "utf8"), `tools-${i}`);
      assert.equal(statSync(join(ws, `from-vm-${i}`)).uid, 65534, "what the VM wrote is that user's on disk");
    });
    assert.deepEqual(runs.slice(1).map((x) => x["vmm"]), ["spare", "spare"], `restores after the first take a spare: ${JSON.stringify(runs)}`);
    assert.deepEqual(runs.map((x) => x["viaJail"]), [true, true, true], "the file tools ran in the file jail beside the VM");
    assert.deepEqual(runs.slice(1).map((x) => x["fileJailStart"]), ["ahead", "ahead"], "and the file jail started with the spare, given the workspace later");
    // Nothing of that user's is left running.
    assert.ok(await waitFor(() => processesOf(65534).length === 0, 10_000), `left running as 65534: ${processesOf(65534).join(", ")}`);
  });
});

/** Commands of the live processes running as `uid`. */
function processesOf(uid: number): string[] {
  return listPids().flatMap((pid) => {
    const ids = liveUids(pid);
    return ids?.includes(uid) ? [`${pid} ${cmdline(pid) ?? "?"}`] : [];
  });
}

