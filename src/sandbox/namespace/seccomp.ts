// The namespace sandbox's seccomp filter, assembled here as classic BPF so no native dependency is needed.
//
// Policy: a denylist. Everything a shell, compiler or interpreter needs stays allowed; what is denied is
// kernel attack surface a sandboxed tool never needs (mount API, new namespaces, kernel keyrings, eBPF,
// ptrace, module loading, clock and host administration), plus three argument checks: clone() without
// namespace flags, personality() only to query, and no set-user/group-ID file modes. The filter is one
// layer: the mount namespace decides what is visible, the user namespace and `--cap-drop ALL` decide
// what is permitted, and this filter removes what would let code inside reach kernel code, or leave
// things on the host, that it otherwise could not.
//
// Program layout: arch check (kill), x32 check (kill), one compare per listed syscall (the jump goes
// to a shared return or to an argument check), then "allow". Linear, under 100 instructions; the kernel
// JIT-compiles classic BPF on x86_64, so a syscall pays tens of nanoseconds for it.

/** `struct seccomp_data` offsets (include/uapi/linux/seccomp.h). */
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
/** Low 32 bits of args[i] on a little-endian machine. */
const argLo = (i: number): number => 16 + 8 * i;
const OFFSET_ARG0_LO = argLo(0);

const AUDIT_ARCH_X86_64 = 0xc000003e;
/** x32 ABI syscalls carry this bit in `nr` with the x86_64 audit arch; a filter that ignores it can be bypassed. */
const X32_SYSCALL_BIT = 0x40000000;

export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;

const EPERM = 1;
const ENOSYS = 38;

// Classic BPF opcodes (include/uapi/linux/bpf_common.h).
const BPF_LD = 0x00;
const BPF_W = 0x00;
const BPF_ABS = 0x20;
const BPF_JMP = 0x05;
const BPF_JEQ = 0x10;
const BPF_JGE = 0x30;
const BPF_JSET = 0x40;
const BPF_K = 0x00;
const BPF_RET = 0x06;

export const OP_LD_ABS = BPF_LD | BPF_W | BPF_ABS;
export const OP_JEQ = BPF_JMP | BPF_JEQ | BPF_K;
export const OP_JGE = BPF_JMP | BPF_JGE | BPF_K;
export const OP_JSET = BPF_JMP | BPF_JSET | BPF_K;
export const OP_RET = BPF_RET | BPF_K;

interface DeniedSyscall {
  name: string;
  /** x86_64 syscall number (arch/x86/entry/syscalls/syscall_64.tbl). */
  nr: number;
  errno: number;
  why: string;
}

const deny = (name: string, nr: number, why: string, errno = EPERM): DeniedSyscall => ({ name, nr, errno, why });

/**
 * Syscalls answered with an errno instead of running. EPERM unless noted: it is what the kernel itself
 * answers for a missing privilege, so programs take the path they already take for an unprivileged user.
 */
export const DENIED_SYSCALLS: readonly DeniedSyscall[] = [
  // Debugging and reading other processes: in a user namespace the sandbox user may ptrace its own
  // processes, and a ptrace-able process is a way around every other per-process restriction.
  deny("ptrace", 101, "inspect or modify another process; classic way to defeat per-process restrictions"),
  deny("process_vm_readv", 310, "read another process's memory"),
  deny("process_vm_writev", 311, "write another process's memory"),
  deny("kcmp", 312, "compare kernel objects of other processes (ptrace-class information leak)"),
  deny("pidfd_getfd", 438, "steal a file descriptor from another process (ptrace-class)"),
  deny("process_madvise", 440, "act on another process's memory (ptrace-class)"),

  // Mount API, old and new: the mount tree bwrap built is the filesystem boundary; in a user namespace
  // with CAP_SYS_ADMIN (a nested one) these would let code rearrange or uncover it.
  deny("mount", 165, "change the mount tree that defines what the sandbox can see"),
  deny("umount2", 166, "unmount a bind and uncover what lies beneath it"),
  deny("pivot_root", 155, "swap the root filesystem"),
  deny("chroot", 161, "change root; only useful for escape tricks with a held directory fd"),
  deny("open_tree", 428, "new mount API: clone a mount"),
  deny("move_mount", 429, "new mount API: attach a mount"),
  deny("fsopen", 430, "new mount API: create a filesystem context (reaches filesystem parsers)"),
  deny("fsconfig", 431, "new mount API: configure a filesystem context"),
  deny("fsmount", 432, "new mount API: create a mount"),
  deny("fspick", 433, "new mount API: reconfigure a mounted filesystem"),
  deny("mount_setattr", 442, "new mount API: change mount flags such as read-only"),
  deny("open_tree_attr", 467, "new mount API (6.15+): clone a mount with new attributes"),

  // Namespaces: a nested user namespace hands back a full capability set inside it, which opens kernel
  // code (netfilter, filesystem mounts, ...) that unprivileged users cannot reach. clone() is filtered
  // by flags below; clone3() passes flags in memory a BPF filter cannot read, so it gets ENOSYS, which
  // makes glibc and musl fall back to clone().
  deny("unshare", 272, "create new namespaces (a nested user namespace regains all capabilities)"),
  deny("setns", 308, "join another namespace"),
  deny("clone3", 435, "flags are behind a pointer, so namespace flags cannot be checked; ENOSYS makes libc fall back to clone()", ENOSYS),
  deny("openat2", 437, "its mode is behind a pointer, so setuid/setgid creation cannot be checked (see SETID_MODE_RULES); ENOSYS makes callers fall back to openat()", ENOSYS),

  // Kernel attack surface with a long CVE history and no use for a tool in a sandbox.
  deny("bpf", 321, "load eBPF programs (verifier and JIT are frequent exploit targets)"),
  deny("userfaultfd", 323, "stall kernel page faults; the standard tool for winning kernel race exploits"),
  deny("perf_event_open", 298, "performance counters: kernel pointer leaks and a large driver surface"),
  deny("io_uring_setup", 425, "io_uring: large, fast-moving kernel surface; ENOSYS makes runtimes fall back to plain syscalls", ENOSYS),
  deny("io_uring_enter", 426, "io_uring (see io_uring_setup)", ENOSYS),
  deny("io_uring_register", 427, "io_uring (see io_uring_setup)", ENOSYS),

  // Kernel keyrings are keyed by uid, not by namespace: the sandbox user is mapped to the invoking host
  // user, so without this it could read or poison that user's session and user keyrings.
  deny("keyctl", 250, "kernel keyrings are per host uid and shared with the invoking user outside"),
  deny("add_key", 248, "kernel keyrings (see keyctl)"),
  deny("request_key", 249, "kernel keyrings; can also upcall into host helpers"),

  // Host administration: all need privileges the sandbox lacks, denied anyway so that a capability
  // regression is not the only barrier.
  deny("kexec_load", 246, "replace the running kernel"),
  deny("kexec_file_load", 320, "replace the running kernel"),
  deny("init_module", 175, "load a kernel module"),
  deny("finit_module", 313, "load a kernel module"),
  deny("delete_module", 176, "unload a kernel module"),
  deny("create_module", 174, "obsolete module API"),
  deny("get_kernel_syms", 177, "obsolete module API"),
  deny("query_module", 178, "obsolete module API"),
  deny("reboot", 169, "reboot the host (or the pid namespace)"),
  deny("swapon", 167, "change host swap"),
  deny("swapoff", 168, "change host swap"),
  deny("acct", 163, "switch process accounting to a file"),
  deny("quotactl", 179, "filesystem quota administration"),
  deny("quotactl_fd", 443, "filesystem quota administration"),
  deny("nfsservctl", 180, "obsolete kernel NFS server control"),
  deny("_sysctl", 156, "obsolete binary sysctl interface"),
  deny("uselib", 134, "obsolete a.out library loader"),
  deny("vhangup", 153, "hang up the controlling terminal"),
  deny("iopl", 172, "raw I/O port access"),
  deny("ioperm", 173, "raw I/O port access"),

  // The clock is host-wide (no time namespace is set up): only the host may set it.
  deny("settimeofday", 164, "set the host clock"),
  deny("clock_settime", 227, "set the host clock"),
  deny("clock_adjtime", 305, "adjust the host clock"),
  deny("adjtimex", 159, "adjust the host clock (and read NTP state)"),

  // Host information leaks.
  deny("syslog", 103, "read the host kernel log (kernel pointers, other tenants' activity)"),
  deny("lookup_dcookie", 212, "resolve kernel directory-entry cookies to host paths"),
  // A file handle names an inode without a path, which lets code open files outside its mount tree
  // (the "shocker" container escape used open_by_handle_at).
  deny("open_by_handle_at", 304, "open files by handle, bypassing the mount tree (shocker escape)"),
  deny("name_to_handle_at", 303, "produce file handles for open_by_handle_at"),
];

/** Namespace-creating clone flags, all in the low 32 bits that legacy clone() honours. */
export const CLONE_NAMESPACE_FLAGS =
  0x00020000 | // CLONE_NEWNS
  0x02000000 | // CLONE_NEWCGROUP
  0x04000000 | // CLONE_NEWUTS
  0x08000000 | // CLONE_NEWIPC
  0x10000000 | // CLONE_NEWUSER
  0x20000000 | // CLONE_NEWPID
  0x40000000; // CLONE_NEWNET

/**
 * No set-user-ID or set-group-ID files. The sandbox user is the invoking host user (root here), so a
 * setuid file it leaves in the workspace is a setuid-root program on the host, and the sandbox can
 * also chmod the workspace directory open to every local user: a privilege escalation for anyone on
 * the host. Every syscall that sets a file mode is checked for S_ISUID|S_ISGID (the ones that create
 * files only when they create: O_CREAT or O_TMPFILE). openat2() carries its mode in a struct the
 * filter cannot read, so it answers ENOSYS and callers fall back to openat(), which is checked. (The
 * guest agent resolves paths in userspace then; the mount namespace is the boundary here anyway.)
 */
const SETID_BITS = 0o6000;
/** O_CREAT | __O_TMPFILE: the open flags under which the mode argument is used. */
const CREATING_OPEN_FLAGS = 0o100 | 0o20000000;

interface ModeRule {
  name: string;
  nr: number;
  /** Which argument holds the mode. */
  modeArg: number;
  /** Which argument holds open flags, when the mode only counts with O_CREAT/O_TMPFILE. */
  flagsArg?: number;
}

const SETID_MODE_RULES: readonly ModeRule[] = [
  { name: "chmod", nr: 90, modeArg: 1 },
  { name: "fchmod", nr: 91, modeArg: 1 },
  { name: "fchmodat", nr: 268, modeArg: 2 },
  { name: "fchmodat2", nr: 452, modeArg: 2 },
  { name: "creat", nr: 85, modeArg: 1 },
  { name: "mknod", nr: 133, modeArg: 1 },
  { name: "mknodat", nr: 259, modeArg: 2 },
  { name: "open", nr: 2, modeArg: 2, flagsArg: 1 },
  { name: "openat", nr: 257, modeArg: 3, flagsArg: 2 },
];

const NR_CLONE = 56;
/**
 * personality(2) is allowed only to query (0xffffffff) or to set the default PER_LINUX (0): other
 * personas switch on READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO and friends, which weaken
 * exploit mitigations and have been exploit ingredients.
 */
const NR_PERSONALITY = 135;
const PERSONALITY_ALLOWED = [0x00000000, 0xffffffff] as const;

export interface SockFilter {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

type Target = string;
type Instr =
  | { kind: "ld"; offset: number }
  | { kind: "jmp"; op: number; k: number; jt: Target | null; jf: Target | null }
  | { kind: "ret"; k: number };

/** A tiny assembler with forward labels: BPF jumps are relative, forward-only and at most 255. */
class Assembler {
  private readonly code: Instr[] = [];
  private readonly labels = new Map<string, number>();

  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`duplicate label ${name}`);
    this.labels.set(name, this.code.length);
    return this;
  }
  ld(offset: number): this {
    this.code.push({ kind: "ld", offset });
    return this;
  }
  /** Jump to `jt` when the test holds, to `jf` otherwise; null means the next instruction. */
  jmp(op: number, k: number, jt: Target | null, jf: Target | null): this {
    this.code.push({ kind: "jmp", op, k: k >>> 0, jt, jf });
    return this;
  }
  ret(k: number): this {
    this.code.push({ kind: "ret", k: k >>> 0 });
    return this;
  }

  assemble(): SockFilter[] {
    const resolve = (from: number, target: Target | null): number => {
      if (target === null) return 0;
      const at = this.labels.get(target);
      if (at === undefined) throw new Error(`undefined label ${target}`);
      const rel = at - (from + 1);
      if (rel < 0 || rel > 255) throw new Error(`jump to ${target} out of range (${rel})`);
      return rel;
    };
    return this.code.map((ins, i): SockFilter => {
      switch (ins.kind) {
        case "ld":
          return { code: OP_LD_ABS, jt: 0, jf: 0, k: ins.offset };
        case "jmp":
          return { code: ins.op, jt: resolve(i, ins.jt), jf: resolve(i, ins.jf), k: ins.k };
        case "ret":
          return { code: OP_RET, jt: 0, jf: 0, k: ins.k };
      }
    });
  }
}

const errno = (e: number): number => (SECCOMP_RET_ERRNO | (e & 0xffff)) >>> 0;

/** The filter as instructions (exported for the tests' interpreter). */
export function seccompProgram(): SockFilter[] {
  const a = new Assembler();
  // Another arch (i386 via int 0x80, for one) numbers syscalls differently and would slip past every
  // check below: kill the process.
  a.ld(OFFSET_ARCH).jmp(OP_JEQ, AUDIT_ARCH_X86_64, null, "kill");
  a.ld(OFFSET_NR).jmp(OP_JGE, X32_SYSCALL_BIT, "kill", null);
  a.jmp(OP_JEQ, NR_CLONE, "clone", null);
  a.jmp(OP_JEQ, NR_PERSONALITY, "personality", null);
  for (const r of SETID_MODE_RULES) a.jmp(OP_JEQ, r.nr, r.flagsArg === undefined ? `mode${r.modeArg}` : `flags${r.flagsArg}mode${r.modeArg}`, null);
  // EPERM is always emitted: the clone check jumps to it even if no listed syscall used it.
  const errnos = [...new Set([EPERM, ...DENIED_SYSCALLS.map((d) => d.errno)])];
  for (const d of DENIED_SYSCALLS) a.jmp(OP_JEQ, d.nr, `errno${d.errno}`, null);
  a.ret(SECCOMP_RET_ALLOW);

  a.label("clone").ld(OFFSET_ARG0_LO).jmp(OP_JSET, CLONE_NAMESPACE_FLAGS, `errno${EPERM}`, "allow");

  a.label("personality").ld(OFFSET_ARG0_LO);
  for (const p of PERSONALITY_ALLOWED) a.jmp(OP_JEQ, p, "allow", null);
  a.ret(errno(EPERM));

  // Open flags first (only creating opens use the mode), then the mode; one block per argument layout.
  const flagBlocks = [...new Set(SETID_MODE_RULES.filter((r) => r.flagsArg !== undefined).map((r) => `${r.flagsArg}:${r.modeArg}`))];
  for (const block of flagBlocks) {
    const [f, m] = block.split(":").map(Number) as [number, number];
    a.label(`flags${f}mode${m}`).ld(argLo(f)).jmp(OP_JSET, CREATING_OPEN_FLAGS, `mode${m}`, "allow");
  }
  for (const m of [...new Set(SETID_MODE_RULES.map((r) => r.modeArg))].sort()) {
    a.label(`mode${m}`).ld(argLo(m)).jmp(OP_JSET, SETID_BITS, `errno${EPERM}`, "allow");
  }

  for (const e of errnos) a.label(`errno${e}`).ret(errno(e));
  a.label("kill").ret(SECCOMP_RET_KILL_PROCESS);
  a.label("allow").ret(SECCOMP_RET_ALLOW);
  return a.assemble();
}

/** `struct sock_filter[]` as the kernel (and `bwrap --seccomp FD`) reads it: 8 bytes each, little endian. */
function serializeFilter(program: readonly SockFilter[]): Buffer {
  const out = Buffer.alloc(program.length * 8);
  program.forEach((ins, i) => {
    out.writeUInt16LE(ins.code, i * 8);
    out.writeUInt8(ins.jt, i * 8 + 2);
    out.writeUInt8(ins.jf, i * 8 + 3);
    out.writeUInt32LE(ins.k >>> 0, i * 8 + 4);
  });
  return out;
}

let cached: Buffer | undefined;

/** The serialized filter for `bwrap --seccomp`; x86_64 only (the caller checks the host arch). */
export function seccompFilterBytes(): Buffer {
  cached ??= serializeFilter(seccompProgram());
  return cached;
}
