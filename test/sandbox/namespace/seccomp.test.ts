// The seccomp filter: its BPF evaluated in an interpreter, then in force on the real kernel under bwrap.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  CLONE_NAMESPACE_FLAGS,
  DENIED_SYSCALLS,
  OP_JEQ,
  OP_JGE,
  OP_JSET,
  OP_LD_ABS,
  OP_RET,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  seccompFilterBytes,
  seccompProgram,
  type SockFilter,
} from "../../../src/sandbox/namespace/seccomp.js";
import { bwrapArgs, groupFile, hostsFile, passwdFile } from "../../../src/sandbox/namespace/bwrap.js";
import { probeNamespace } from "../../../src/sandbox/namespace/probe.js";
import { killAllStarted, runSandboxed, tempDir } from "./helpers.js";

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;

/** A classic-BPF interpreter for exactly the instructions the filter uses. */
function evaluate(program: readonly SockFilter[], data: { nr: number; arch: number; args?: number[] }): number {
  const mem = Buffer.alloc(64);
  mem.writeInt32LE(data.nr, 0);
  mem.writeUInt32LE(data.arch, 4);
  (data.args ?? []).forEach((a, i) => mem.writeBigUInt64LE(BigInt.asUintN(64, BigInt(a)), 16 + 8 * i));
  let acc = 0;
  for (let pc = 0; pc < program.length; ) {
    const ins = program[pc] as SockFilter;
    switch (ins.code) {
      case OP_LD_ABS:
        acc = mem.readUInt32LE(ins.k);
        pc++;
        break;
      case OP_JEQ:
        pc += 1 + (acc === ins.k ? ins.jt : ins.jf);
        break;
      case OP_JGE:
        pc += 1 + (acc >= ins.k ? ins.jt : ins.jf);
        break;
      case OP_JSET:
        pc += 1 + ((acc & ins.k) !== 0 ? ins.jt : ins.jf);
        break;
      case OP_RET:
        return ins.k >>> 0;
      default:
        throw new Error(`unexpected opcode ${ins.code} at ${pc}`);
    }
  }
  throw new Error("fell off the end of the program");
}

describe("seccomp filter program", () => {
  const program = seccompProgram();

  test("is a valid, serializable program", () => {
    assert.ok(program.length > 10 && program.length < 4096, `length ${program.length}`);
    const bytes = seccompFilterBytes();
    assert.equal(bytes.length, program.length * 8);
    // First instruction: load the arch word (BPF_LD|BPF_W|BPF_ABS, k=4), little endian.
    assert.deepEqual([...bytes.subarray(0, 8)], [0x20, 0x00, 0, 0, 4, 0, 0, 0]);
    const names = DENIED_SYSCALLS.map((d) => d.name);
    assert.equal(new Set(names).size, names.length, "no duplicate entries");
    assert.equal(new Set(DENIED_SYSCALLS.map((d) => d.nr)).size, names.length, "no duplicate numbers");
    for (const d of DENIED_SYSCALLS) assert.ok(d.why.length > 10, `${d.name} has a reason`);
  });

  test("kills other architectures and x32 syscalls", () => {
    assert.equal(evaluate(program, { nr: 39, arch: AUDIT_ARCH_I386 }), SECCOMP_RET_KILL_PROCESS);
    assert.equal(evaluate(program, { nr: 0x40000000 | 39, arch: AUDIT_ARCH_X86_64 }), SECCOMP_RET_KILL_PROCESS);
  });

  test("allows ordinary syscalls", () => {
    for (const nr of [0, 1, 2, 3, 9, 39, 57, 59, 60, 231, 257, 262, 318, 334, 435 + 100]) {
      assert.equal(evaluate(program, { nr, arch: AUDIT_ARCH_X86_64 }), SECCOMP_RET_ALLOW, `nr ${nr}`);
    }
  });

  test("answers every denied syscall with its errno", () => {
    for (const d of DENIED_SYSCALLS) {
      assert.equal(evaluate(program, { nr: d.nr, arch: AUDIT_ARCH_X86_64 }), (SECCOMP_RET_ERRNO | d.errno) >>> 0, d.name);
    }
  });

  test("clone: threads and fork allowed, namespace flags denied", () => {
    const threadFlags = 0x3d0f00; // glibc pthread_create
    const forkFlags = 0x01200011; // CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD
    assert.equal(evaluate(program, { nr: 56, arch: AUDIT_ARCH_X86_64, args: [threadFlags] }), SECCOMP_RET_ALLOW);
    assert.equal(evaluate(program, { nr: 56, arch: AUDIT_ARCH_X86_64, args: [forkFlags] }), SECCOMP_RET_ALLOW);
    for (let bit = 0; bit < 32; bit++) {
      const flag = (1 << bit) >>> 0;
      if ((CLONE_NAMESPACE_FLAGS & flag) === 0) continue;
      assert.equal(evaluate(program, { nr: 56, arch: AUDIT_ARCH_X86_64, args: [forkFlags | flag] }), (SECCOMP_RET_ERRNO | 1) >>> 0, `flag ${flag.toString(16)}`);
    }
  });

  test("no setuid/setgid modes: chmod family always, open family only when creating", () => {
    const x = AUDIT_ARCH_X86_64;
    const EPERM = (SECCOMP_RET_ERRNO | 1) >>> 0;
    const O_CREAT = 0o100;
    const O_TMPFILE = 0o20200000;
    const cases: Array<[string, number, number[], number]> = [
      ["chmod 4755", 90, [0, 0o4755], EPERM],
      ["chmod 2755", 90, [0, 0o2755], EPERM],
      ["chmod 755", 90, [0, 0o755], SECCOMP_RET_ALLOW],
      ["fchmod 6755", 91, [3, 0o6755], EPERM],
      ["fchmod 644", 91, [3, 0o644], SECCOMP_RET_ALLOW],
      ["fchmodat 4755", 268, [-100, 0, 0o4755], EPERM],
      ["fchmodat2 2700", 452, [-100, 0, 0o2700, 0], EPERM],
      ["fchmodat 1777 (sticky is fine)", 268, [-100, 0, 0o1777], SECCOMP_RET_ALLOW],
      ["creat 4755", 85, [0, 0o4755], EPERM],
      ["mknod reg 4755", 133, [0, 0o104755, 0], EPERM],
      ["mknodat fifo 644", 259, [-100, 0, 0o10644, 0], SECCOMP_RET_ALLOW],
      ["open O_CREAT 4755", 2, [0, O_CREAT | 1, 0o4755], EPERM],
      ["open O_CREAT 644", 2, [0, O_CREAT | 1, 0o644], SECCOMP_RET_ALLOW],
      ["open O_RDONLY, junk mode", 2, [0, 0, 0o4755], SECCOMP_RET_ALLOW],
      ["openat O_CREAT 2755", 257, [-100, 0, O_CREAT | 2, 0o2755], EPERM],
      ["openat O_TMPFILE 4700", 257, [-100, 0, O_TMPFILE | 2, 0o4700], EPERM],
      ["openat O_CREAT 600", 257, [-100, 0, O_CREAT | 2, 0o600], SECCOMP_RET_ALLOW],
      ["openat O_RDONLY", 257, [-100, 0, 0, 0], SECCOMP_RET_ALLOW],
      ["openat2 (mode unreadable)", 437, [-100, 0, 0, 24], (SECCOMP_RET_ERRNO | 38) >>> 0],
    ];
    for (const [what, nr, args, want] of cases) assert.equal(evaluate(program, { nr, arch: x, args }), want, what);
  });

  test("personality: query and PER_LINUX only", () => {
    assert.equal(evaluate(program, { nr: 135, arch: AUDIT_ARCH_X86_64, args: [0xffffffff] }), SECCOMP_RET_ALLOW);
    assert.equal(evaluate(program, { nr: 135, arch: AUDIT_ARCH_X86_64, args: [0] }), SECCOMP_RET_ALLOW);
    assert.equal(evaluate(program, { nr: 135, arch: AUDIT_ARCH_X86_64, args: [0x0040000] }), (SECCOMP_RET_ERRNO | 1) >>> 0); // ADDR_NO_RANDOMIZE
  });
});

/** Calls each syscall with zero arguments via ctypes and prints name → [return, errno]. */
const PY_SYSCALLS = `
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
for name, nr in json.loads(sys.argv[1]):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(0)] * 6)
    out[name] = [r, ctypes.get_errno()]
print(json.dumps(out))
`;

/** A bwrap sandbox with the backend's flags, minus the ones `drop` names: for control experiments. */
function runControl(command: string[], drop: { seccomp?: boolean; capDrop?: boolean; disableUserns?: boolean; uid?: boolean }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const ws = tempDir("lg-ns-ctl-");
  const fds = { info: 3, block: 4, seccomp: 5, passwd: 6, group: 7, hosts: 8 };
  let args = bwrapArgs({ id: "control", workspace: ws.dir, agentPath: "/usr/bin/true", tmpfsBytes: 64 << 20, fds }, command);
  const without = (flag: string, n: number): void => {
    const i = args.indexOf(flag);
    if (i >= 0) args = [...args.slice(0, i), ...args.slice(i + n)];
  };
  if (drop.seccomp) without("--seccomp", 2);
  if (drop.capDrop) without("--cap-drop", 2);
  if (drop.disableUserns) without("--disable-userns", 1);
  // Root of its user namespace (capabilities inside it) instead of the unprivileged sandbox uid.
  if (drop.uid) args = args.map((a, i) => ((args[i - 1] === "--uid" || args[i - 1] === "--gid") ? "0" : a));
  // Without --info-fd/--block-fd: nothing waits on the cgroup here.
  without("--info-fd", 2);
  without("--block-fd", 2);
  return new Promise((resolve) => {
    const child = spawn("bwrap", args, { stdio: ["ignore", "pipe", "pipe", "pipe", "pipe", "pipe", "pipe", "pipe", "pipe"], env: {} });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (d: Buffer) => out.push(d));
    child.stderr?.on("data", (d: Buffer) => err.push(d));
    const feed = (fd: number, data: string | Buffer): void => {
      const s = child.stdio[fd] as NodeJS.WritableStream;
      s.on("error", () => undefined);
      s.end(data);
    };
    feed(5, seccompFilterBytes());
    feed(6, passwdFile());
    feed(7, groupFile());
    feed(8, hostsFile("control"));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      ws.remove();
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

const probe = await probeNamespace();
const skip = probe.bwrap.ok ? false : `bwrap unusable: ${probe.bwrap.reason ?? "?"}`;
const hasPython = existsSync("/usr/bin/python3");

describe("seccomp filter on the real kernel", () => {
  after(killAllStarted);

  test("filter in force, no_new_privs, no capabilities; ordinary commands work", { skip }, async () => {
    const r = await runSandboxed(["/bin/sh", "-c", "echo hello; ls / >/dev/null && grep -E '^(Seccomp|NoNewPrivs|CapEff|Uid):' /proc/self/status"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^hello$/m);
    assert.match(r.stdout, /^Seccomp:\s+2$/m);
    assert.match(r.stdout, /^NoNewPrivs:\s+1$/m);
    assert.match(r.stdout, /^CapEff:\s+0000000000000000$/m);
    assert.match(r.stdout, /^Uid:\s+1000\s/m);
  });

  test("unshare and mount fail with EPERM, and it is the filter that stops them", { skip }, async () => {
    const cmd = ["/bin/sh", "-c", "unshare -U true; echo unshare=$?; mount -t tmpfs none /tmp; echo mount=$?"];
    // Control: as root of its user namespace, without the filter and the nested-userns ban, both work.
    const control = await runControl(cmd, { seccomp: true, capDrop: true, disableUserns: true, uid: true });
    assert.match(control.stdout, /unshare=0/, control.stderr);
    assert.match(control.stdout, /mount=0/, control.stderr);
    // The same, with only the filter added back: both refused with EPERM.
    const filtered = await runControl(cmd, { capDrop: true, disableUserns: true, uid: true });
    assert.match(filtered.stdout, /unshare=1/);
    assert.match(filtered.stdout, /mount=(1|32)/);
    assert.match(filtered.stderr, /unshare failed: Operation not permitted/);
    assert.match(filtered.stderr, /mount: .*(permission denied|Operation not permitted)/i);
    // And in the real sandbox.
    const real = await runSandboxed(cmd);
    assert.match(real.stdout, /unshare=1/);
    assert.doesNotMatch(real.stdout, /mount=0/);
  });

  test("every denied syscall returns its errno in the sandbox", { skip: skip || (hasPython ? false : "no /usr/bin/python3") }, async () => {
    const list = JSON.stringify(DENIED_SYSCALLS.map((d) => [d.name, d.nr]));
    const r = await runSandboxed(["/usr/bin/python3", "-c", PY_SYSCALLS, list]);
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout) as Record<string, [number, number]>;
    for (const d of DENIED_SYSCALLS) assert.deepEqual(got[d.name], [-1, d.errno], `${d.name} (${d.nr})`);
  });

  test("without the filter, unshare(0) and ptrace(TRACEME) succeed: the filter is what denies them", { skip: skip || (hasPython ? false : "no /usr/bin/python3") }, async () => {
    const list = JSON.stringify([
      ["unshare", 272],
      ["ptrace", 101],
    ]);
    const r = await runControl(["/usr/bin/python3", "-c", PY_SYSCALLS, list], { seccomp: true });
    assert.equal(r.code, 0, r.stderr);
    const got = JSON.parse(r.stdout) as Record<string, [number, number]>;
    assert.equal(got["unshare"]?.[0], 0);
    assert.equal(got["ptrace"]?.[0], 0);
  });

  test("no setuid or setgid file can be made in the workspace", { skip: skip || (hasPython ? false : "no /usr/bin/python3") }, async () => {
    const ws = tempDir("lg-ns-suid-");
    try {
      const script = `
import errno, json, os, stat
r = {}
def t(name, fn):
    try:
        fn(); r[name] = "ok"
    except OSError as e:
        r[name] = errno.errorcode[e.errno]
open("/workspace/f", "w").close()
t("chmod_suid", lambda: os.chmod("/workspace/f", 0o4755))
t("chmod_sgid", lambda: os.chmod("/workspace/f", 0o2755))
t("chmod_plain", lambda: os.chmod("/workspace/f", 0o755))
t("open_creat_suid", lambda: os.close(os.open("/workspace/g", os.O_CREAT | os.O_WRONLY, 0o4755)))
t("open_creat_plain", lambda: os.close(os.open("/workspace/h", os.O_CREAT | os.O_WRONLY, 0o644)))
t("mknod_suid", lambda: os.mknod("/workspace/m", stat.S_IFREG | 0o4755))
fd = os.open("/workspace/f", os.O_RDONLY)
t("fchmod_sgid", lambda: os.fchmod(fd, 0o2755))
print(json.dumps(r))
`;
      const r = await runSandboxed(["/bin/sh", "-c", `/usr/bin/python3 -c "$1"; chmod u+s /workspace/f; echo chmod=$?; cp -p /usr/bin/true /workspace/t && chmod 4755 /workspace/t; echo cp=$?`, "sh", script], {
        workspace: ws.dir,
      });
      const got = JSON.parse(r.stdout.split("\n")[0] ?? "{}") as Record<string, string>;
      assert.deepEqual(got, {
        chmod_suid: "EPERM",
        chmod_sgid: "EPERM",
        chmod_plain: "ok",
        open_creat_suid: "EPERM",
        open_creat_plain: "ok",
        mknod_suid: "EPERM",
        fchmod_sgid: "EPERM",
      });
      assert.match(r.stdout, /chmod=1/);
      assert.match(r.stdout, /cp=1/);
      // On the host: nothing in the workspace carries a set-id bit.
      for (const name of readdirSync(ws.dir)) {
        const mode = statSync(join(ws.dir, name)).mode;
        assert.equal(mode & 0o6000, 0, `${name} mode ${mode.toString(8)}`);
      }
    } finally {
      ws.remove();
    }
  });

  test("an x32 syscall kills the process (SIGSYS)", { skip: skip || (hasPython ? false : "no /usr/bin/python3") }, async () => {
    const r = await runSandboxed([
      "/bin/sh",
      "-c",
      `/usr/bin/python3 -c 'import ctypes; ctypes.CDLL(None).syscall(0x40000000 | 39); print("survived")'; echo status=$?`,
    ]);
    assert.doesNotMatch(r.stdout, /survived/);
    assert.match(r.stdout, /status=159/); // 128 + SIGSYS (31)
  });
});
