// Builds the QEMU microvm command line and starts one VM process with its channel, console log and QMP socket.
import type { ChildProcess } from "node:child_process";
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, watch } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { LuminaGuardError } from "../../errors.js";
import { imageNeedsAcpi, type ImageManifest } from "../../image/build.js";
import { runDir, runSubdir } from "../../paths.js";
import { recordCreated } from "../../runtime/created.js";
import { sandboxHostEnv } from "../../util/env.js";
import { killGroup, spawnGroup } from "../../util/proc.js";
import { liveStartTime } from "../../util/procfs.js";
import { lowerPriority } from "../priority.js";
import { JAIL, SHARE_WORKSPACE_DIR, ensureJailer, jailerArgs, type JailBind, type JailPlan } from "../jailer/jailer.js";
import { allocateIdentity, type VmmIdentity } from "../jailer/identity.js";

export const QEMU_BINARY = "qemu-system-x86_64";
const AGENT_PORT_NAME = "lg.agent";
export const WORKSPACE_TAG = "ws";

export type Accelerator = "kvm" | "tcg";

export interface VmLaunchOptions {
  id: string;
  accel: Accelerator;
  /** Kernel, initramfs, command line and the kind of kernel (which decides ACPI). */
  image: ImageManifest;
  memoryMiB: number;
  vcpus: number;
  /**
   * Host directory shared into the guest over 9p with tag WORKSPACE_TAG, as the directory
   * SHARE_WORKSPACE_DIR of the share; omitted for templates and for a VMM started before its sandbox
   * (injectWorkspace() mounts it there later).
   */
  workspace?: string;
  /** Guest RAM backed by this host file (snapshots); `share` true to write it, false to map it copy-on-write. */
  memoryFile?: { path: string; share: boolean };
  /**
   * Start paused waiting for an incoming migration (restore), started by QMP `migrate-incoming`.
   * "stdin": the same, with QEMU's stdin a pipe of ours that the migration stream is written to
   * (`migrate-incoming fd:0`): no socket to wait for and no round trip to hand the stream over.
   */
  incoming?: boolean | "stdin";
  /** `-S`: stay paused once an incoming snapshot is loaded (a spare, resumed with QMP `cont`). */
  paused?: boolean;
  /**
   * Run QEMU outside the jail, as the caller. Only the benchmark's bare-QEMU baseline does this, to
   * show what the jail costs; never a sandbox.
   */
  unjailed?: boolean;
}

export interface VmProcess {
  child: ChildProcess;
  /** Host path of the VM's private run directory (sockets, console log). */
  dir: string;
  socketPath: string;
  qmpPath: string;
  logPath: string;
  /** The same run directory as QEMU names it (inside its jail). */
  qemuRunDir: string;
  /** The VMM's identity, released (with the run directory) when the VM is destroyed. */
  identity: VmmIdentity;
  /** QEMU's start time (procfs field 22), read while it is our unreaped child: names it beyond its pid. */
  startTime: string | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Where the VM's runtime files are, as QEMU names them (inside the jail) and as the host does. */
interface VmPaths {
  /** Directory holding the agent and QMP sockets and the console log, as QEMU sees it. */
  run: string;
  kernel: string;
  initrd: string;
  ram: string;
  /** The 9p share's root (its directory SHARE_WORKSPACE_DIR is the workspace). */
  share: string;
}

function accelArgs(accel: Accelerator): string[] {
  // -cpu host needs -arch-capabilities on nested KVM (DESIGN.md); TCG's "max" model has everything.
  return accel === "kvm" ? ["-accel", "kvm", "-cpu", "host,-arch-capabilities"] : ["-accel", "tcg,thread=single", "-cpu", "max"];
}

/**
 * A value inside a QEMU option string (`key=value,key=value`): QEMU reads a doubled comma as a literal
 * comma, so doubling every comma keeps a value from starting a new option. Control characters have
 * no business in a path QEMU opens and are refused instead.
 */
export function qemuOptValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/u.test(value)) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `a control character in ${JSON.stringify(value)} cannot be passed to QEMU`);
  }
  return value.replaceAll(",", ",,");
}

export function qemuArgs(o: VmLaunchOptions, paths: VmPaths): string[] {
  const v = qemuOptValue;
  // Debian's kernel finds virtio-mmio devices through ACPI; the minimal kernel has no ACPI at all.
  const machine = ["microvm", "isa-serial=on", "rtc=on", `acpi=${imageNeedsAcpi(o.image) ? "on" : "off"}`];
  const args: string[] = [];
  if (o.memoryFile) {
    args.push("-object", `memory-backend-file,id=mem,size=${o.memoryMiB}M,mem-path=${v(paths.ram)},share=${o.memoryFile.share ? "on" : "off"}`);
    machine.push("memory-backend=mem");
  }
  args.push(
    "-M", machine.join(","),
    ...accelArgs(o.accel),
    "-m", `${o.memoryMiB}M`,
    "-smp", String(o.vcpus),
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    // QEMU's own seccomp filter, as strict as QEMU runs: no exec, no privilege change, no obsolete
    // syscalls, no scheduler or resource control. lg-jailer adds ours (no set-id modes, no mounts).
    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    "-chardev", `file,id=console,path=${v(`${paths.run}/console.log`)}`,
    "-serial", "chardev:console",
    "-kernel", paths.kernel, "-initrd", paths.initrd, "-append", o.image.cmdline,
    "-device", "virtio-serial-device",
    "-chardev", `socket,id=agent,path=${v(`${paths.run}/agent.sock`)},server=on,wait=off`,
    "-device", `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    "-chardev", `socket,id=qmp,path=${v(`${paths.run}/qmp.sock`)},server=on,wait=off`,
    "-mon", "chardev=qmp,mode=control",
  );
  // The 9p device is always present so that templates and their clones have the same device layout;
  // a template shares an empty directory and never mounts it (QEMU refuses to migrate a mounted 9p).
  // The share's root is a read-only directory holding only the workspace's mount point: QEMU opens
  // the root when it starts, so a VMM started before its sandbox exists (spares.ts) can still be
  // given its workspace, mounted below that root. mapped-xattr: the guest's owners, modes, device nodes and symlinks live in xattrs of plain files;
  // nothing the guest does becomes a host owner, a set-id bit, a device node or a host symlink.
  args.push(
    "-fsdev", `local,id=ws,path=${v(paths.share)},security_model=mapped-xattr,fmode=0644,dmode=0755`,
    "-device", `virtio-9p-device,fsdev=ws,mount_tag=${WORKSPACE_TAG}`,
  );
  // A template leaves its run state out of the snapshot, so that a clone runs as soon as its state is
  // loaded (QEMU autostarts an incoming VM that has no saved run state): no QMP `cont` to wait for.
  if (o.memoryFile?.share) args.push("-global", "migration.store-global-state=off");
  if (o.incoming) args.push("-incoming", "defer");
  if (o.paused) args.push("-S");
  return args;
}

let setprivWorks: boolean | undefined;

/** setpriv --pdeathsig KILL makes the VM die with us even if we are SIGKILLed; used when present. */
function deathSignalPrefix(): string[] {
  setprivWorks ??= existsSync("/usr/bin/setpriv");
  return setprivWorks ? ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] : [];
}

function kvmGid(accel: Accelerator, identity: VmmIdentity): number | undefined {
  if (accel !== "kvm" || !identity.switched) return undefined;
  try {
    return statSync("/dev/kvm").gid;
  } catch {
    return undefined;
  }
}

/** Starts QEMU in its jail: a private run directory owned by the VMM identity, and only what it needs. */
export async function launchVm(o: VmLaunchOptions): Promise<VmProcess> {
  const identity = o.unjailed ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, switched: false, release: () => undefined } : allocateIdentity();
  // A leftover of the same id (a crashed run) is ours to remove: its owner is a VMM identity now.
  rmSync(join(runDir(), `vm-${o.id}`), { recursive: true, force: true });
  let dir: string;
  try {
    dir = runSubdir(`vm-${o.id}`);
    recordCreated(dir);
    // The share's root (bound read-only in the jail) and the workspace's mount point in it: ours, so
    // that the VMM (which also sees them through its run directory) can change neither.
    mkdirSync(join(dir, "share", SHARE_WORKSPACE_DIR), { recursive: true, mode: 0o755 });
    // QEMU creates its sockets and console log here as the VMM identity; nobody else may enter.
    if (identity.switched) chownSync(dir, identity.uid, identity.gid);
    // A template's RAM file is written by its VMM (the caller takes it back once the snapshot is saved).
    if (identity.switched && o.memoryFile?.share) chownSync(o.memoryFile.path, identity.uid, identity.gid);
  } catch (err) {
    identity.release();
    throw err;
  }
  const host = {
    socketPath: join(dir, "agent.sock"),
    qmpPath: join(dir, "qmp.sock"),
    logPath: join(dir, "console.log"),
  };
  let argv: string[];
  let qemuRunDir = JAIL.run as string;
  if (o.unjailed) {
    qemuRunDir = dir;
    // The benchmark's baseline only: it never mounts the share, and is given no workspace.
    const paths = { run: dir, kernel: o.image.kernel, initrd: o.image.initrd, ram: o.memoryFile?.path ?? "", share: join(dir, "share") };
    argv = [...deathSignalPrefix(), QEMU_BINARY, ...qemuArgs(o, paths)];
  } else {
    let build;
    try {
      build = await ensureJailer();
    } catch (err) {
      identity.release();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const binds: JailBind[] = [
      { kind: "ro", src: o.image.kernel, dst: JAIL.kernel },
      { kind: "ro", src: o.image.initrd, dst: JAIL.initrd },
      { kind: "rw", src: dir, dst: JAIL.run },
      { kind: "ro", src: join(dir, "share"), dst: JAIL.share },
      { kind: "dev", src: "/dev/null", dst: "/dev/null" },
      { kind: "dev", src: "/dev/urandom", dst: "/dev/urandom" },
    ];
    // QEMU 7.2 opens a memory-backend file read-write even to map it copy-on-write, so the RAM file is
    // bound read-write; its owner and mode (root:VMM group, 0660) decide who may open it (docs/security.md).
    if (o.memoryFile) binds.push({ kind: "rw", src: o.memoryFile.path, dst: JAIL.ram });
    if (o.accel === "kvm") binds.push({ kind: "dev", src: "/dev/kvm", dst: "/dev/kvm" });
    let workspace: JailPlan["workspace"];
    if (o.workspace !== undefined) {
      const st = statSync(o.workspace);
      workspace = { src: o.workspace, uid: st.uid, gid: st.gid, dst: JAIL.workspace };
    }
    const gid = kvmGid(o.accel, identity);
    const plan: JailPlan = { identity, binds, ...(workspace ? { workspace } : {}), ...(gid === undefined ? {} : { kvmGid: gid }) };
    const paths = { run: JAIL.run, kernel: JAIL.kernel, initrd: JAIL.initrd, ram: JAIL.ram, share: JAIL.share };
    argv = [...jailerArgs(build, plan), `/usr/bin/${QEMU_BINARY}`, ...qemuArgs(o, paths)];
  }
  // sandboxHostEnv(): PATH, LANG and TZ only; nothing of ours (API keys, tokens) is inherited.
  const child = spawnGroup(argv, { stdio: [o.incoming === "stdin" ? "pipe" : "ignore", "ignore", "pipe"], env: sandboxHostEnv() });
  // Below the host process that serves it, before QEMU starts its threads (they inherit it); idle.ts
  // sweeps the threads once more when it connects (src/sandbox/priority.ts says why).
  if (child.pid !== undefined) lowerPriority(child.pid);
  const startTime = child.pid !== undefined ? liveStartTime(child.pid) : undefined;
  // A VMM that dies before it has read its migration stream closes the pipe: not our crash.
  child.stdin?.on("error", () => undefined);
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    if (stderr.length < 16_384) stderr += c.toString("utf8");
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("error", (err) => {
      stderr += String(err.message);
      resolve({ code: null, signal: null });
    });
    child.on("exit", (code, signal) => resolve({ code, signal }));
  });
  Object.defineProperty(child, "lgStderr", { get: () => stderr });
  return { child, dir, ...host, qemuRunDir, identity, startTime, exited };
}

export function vmStderr(vm: VmProcess): string {
  return ((vm.child as unknown as { lgStderr?: string }).lgStderr ?? "").trim();
}

/** Last lines of the guest console, for error messages. */
export function consoleTail(vm: VmProcess, lines = 20): string {
  try {
    return readFileSync(vm.logPath, "utf8").split("\n").slice(-lines).join("\n").trim();
  } catch {
    return "";
  }
}

/** Connects to a unix socket QEMU is about to create, retrying until it exists or QEMU exits. */
export async function connectWhenReady(path: string, vm: VmProcess, timeoutMs: number): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void vm.exited.then(() => (exited = true));
  for (;;) {
    const socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(path);
      s.once("connect", () => resolve(s));
      s.once("error", () => {
        s.destroy();
        resolve(undefined);
      });
    });
    if (socket) return socket;
    if (exited) throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `QEMU exited before opening ${path}: ${vmStderr(vm) || "no message"}`);
    if (Date.now() > deadline) throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `QEMU did not open ${path} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * The kernel's last words when a guest stops for good while QEMU runs on: a halt, or a power-off
 * (microvm with acpi=off has no power-off device, so `poweroff -f` only halts). Both are printed at
 * KERN_EMERG, which loglevel=1 still lets through to the serial console. A reboot or a panic
 * (panic=-1) ends QEMU itself (-no-reboot) and is seen as its exit.
 */
const GUEST_STOPPED = /reboot: (System halted|Power down)/;
/** At most this much of the console is read per change: the lines above are short. */
const CONSOLE_READ_BYTES = 64 * 1024;

/**
 * Watches the VM's console log (inotify) from its current end and calls `onStop` once with the line
 * when the guest kernel halts or powers off. A guest's root could print the same line on purpose;
 * that only ends its own sandbox. Returns the function that stops watching.
 */
export function watchGuestStop(vm: VmProcess, onStop: (line: string) => void): () => void {
  let offset = 0;
  try {
    offset = statSync(vm.logPath).size;
  } catch {
    // Not created yet: read from the start.
  }
  let carry = "";
  let done = false;
  const check = (): void => {
    if (done) return;
    let fd: number | undefined;
    try {
      fd = openSync(vm.logPath, "r");
      const size = statSync(vm.logPath).size;
      if (size < offset) offset = 0;
      if (size - offset > CONSOLE_READ_BYTES) offset = size - CONSOLE_READ_BYTES;
      const buf = Buffer.alloc(size - offset);
      const n = buf.length > 0 ? readSync(fd, buf, 0, buf.length, offset) : 0;
      offset += n;
      const text = carry + buf.subarray(0, n).toString("latin1");
      carry = text.slice(-64);
      const m = GUEST_STOPPED.exec(text);
      if (m) {
        stop();
        onStop(m[0]);
      }
    } catch {
      // The log went with the VM: nothing more to see.
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };
  let watcher: ReturnType<typeof watch> | undefined;
  const stop = (): void => {
    done = true;
    watcher?.close();
  };
  try {
    watcher = watch(vm.logPath, { persistent: false }, check);
    watcher.on("error", stop);
  } catch {
    // No console log to watch (the VM is already gone): its exit is noticed anyway.
    return stop;
  }
  void vm.exited.then(stop);
  check();
  return stop;
}

export async function destroyVm(vm: VmProcess): Promise<void> {
  killGroup(vm.child);
  await vm.exited;
  rmSync(vm.dir, { recursive: true, force: true });
  vm.identity.release();
}
