// Builds the QEMU microvm command line and starts one VM process with its channel, console log and QMP socket.
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { LuminaGuardError } from "../../errors.js";
import { imageNeedsAcpi, type ImageManifest } from "../../guest/image/build.js";
import { runDir } from "../../paths.js";
import { killGroup, spawnGroup } from "../../util/proc.js";

export const QEMU_BINARY = "qemu-system-x86_64";
export const AGENT_PORT_NAME = "lg.agent";
export const WORKSPACE_TAG = "ws";

export type Accelerator = "kvm" | "tcg";

export interface VmLaunchOptions {
  id: string;
  accel: Accelerator;
  /** Kernel, initramfs, command line and the kind of kernel (which decides ACPI). */
  image: ImageManifest;
  memoryMiB: number;
  vcpus: number;
  /** Host directory shared into the guest over 9p with tag WORKSPACE_TAG; omitted for templates. */
  workspace?: string;
  /** Guest RAM backed by this file (snapshots); `share` true to write it, false to map it copy-on-write. */
  memoryFile?: { path: string; share: boolean };
  /** Start paused waiting for an incoming migration (restore). */
  incoming?: boolean;
}

export interface VmProcess {
  child: ChildProcess;
  dir: string;
  socketPath: string;
  qmpPath: string;
  logPath: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function accelArgs(accel: Accelerator): string[] {
  // -cpu host needs -arch-capabilities on nested KVM (DESIGN.md); TCG's "max" model has everything.
  return accel === "kvm" ? ["-accel", "kvm", "-cpu", "host,-arch-capabilities"] : ["-accel", "tcg,thread=single", "-cpu", "max"];
}

export function qemuArgs(o: VmLaunchOptions, paths: { socketPath: string; qmpPath: string; logPath: string; emptyDir: string }): string[] {
  // Debian's kernel finds virtio-mmio devices through ACPI; the minimal kernel has no ACPI at all.
  const machine = ["microvm", "isa-serial=on", "rtc=on", `acpi=${imageNeedsAcpi(o.image) ? "on" : "off"}`];
  const args: string[] = [];
  if (o.memoryFile) {
    args.push("-object", `memory-backend-file,id=mem,size=${o.memoryMiB}M,mem-path=${o.memoryFile.path},share=${o.memoryFile.share ? "on" : "off"}`);
    machine.push("memory-backend=mem");
  }
  args.push(
    "-M", machine.join(","),
    ...accelArgs(o.accel),
    "-m", `${o.memoryMiB}M`,
    "-smp", String(o.vcpus),
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    // QEMU's own seccomp filter: the VMM may not exec, raise privileges or use obsolete syscalls.
    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    "-serial", `file:${paths.logPath}`,
    "-kernel", o.image.kernel, "-initrd", o.image.initrd, "-append", o.image.cmdline,
    "-device", "virtio-serial-device",
    "-chardev", `socket,id=agent,path=${paths.socketPath},server=on,wait=off`,
    "-device", `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    "-qmp", `unix:${paths.qmpPath},server=on,wait=off`,
  );
  // The 9p device is always present so that templates and their clones have the same device layout;
  // a template shares an empty directory and never mounts it (QEMU refuses to migrate a mounted 9p).
  args.push(
    "-fsdev", `local,id=ws,path=${o.workspace ?? paths.emptyDir},security_model=none`,
    "-device", `virtio-9p-device,fsdev=ws,mount_tag=${WORKSPACE_TAG}`,
  );
  if (o.incoming) args.push("-incoming", "defer");
  return args;
}

let setprivWorks: boolean | undefined;

/** setpriv --pdeathsig KILL makes the VM die with us even if we are SIGKILLed; used when present. */
function deathSignalPrefix(): string[] {
  setprivWorks ??= existsSync("/usr/bin/setpriv");
  return setprivWorks ? ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] : [];
}

export function launchVm(o: VmLaunchOptions): VmProcess {
  const dir = join(runDir(), `vm-${o.id}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "empty"), { recursive: true, mode: 0o700 });
  const paths = {
    socketPath: join(dir, "agent.sock"),
    qmpPath: join(dir, "qmp.sock"),
    logPath: join(dir, "console.log"),
    emptyDir: join(dir, "empty"),
  };
  const child = spawnGroup([...deathSignalPrefix(), QEMU_BINARY, ...qemuArgs(o, paths)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
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
  return { child, dir, socketPath: paths.socketPath, qmpPath: paths.qmpPath, logPath: paths.logPath, exited };
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

export async function destroyVm(vm: VmProcess): Promise<void> {
  killGroup(vm.child);
  await vm.exited;
  rmSync(vm.dir, { recursive: true, force: true });
}
