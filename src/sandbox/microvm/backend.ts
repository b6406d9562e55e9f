// The micro-VM backend: a QEMU microvm per sandbox, guest agent over virtio-serial, workspace over 9p.
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { GuestChannel, type HelloStats } from "../../protocol/channel.js";
import type { InitArgs } from "../../protocol/messages.js";
import { requireImage, type ImageManifest } from "../../image/build.js";
import { GuestChannelLostError, LuminaGuardError, toLuminaGuardError } from "../../errors.js";
import { fault, faultsOn } from "../../faults/index.js";
import { log } from "../../log.js";
import { onAbort } from "../../util/abort.js";
import type { AwaitingSandbox, BackendProbe, FileToolsMode, SandboxBackend, SandboxHandle, SandboxSpec } from "../types.js";
import { checkWorkspaceOnce } from "../workspace.js";
import { kvmFlavour, probeAccelerator, qemuVersion, type AccelVerdict } from "./accel.js";
import { fileJailSpec, spawnBeside } from "./file-jail.js";
import { idleOptions, pauseWhenIdle } from "./idle.js";
import type { QmpClient } from "./qmp.js";
import { injectWorkspace, spareWarmupOn, VmmSpares, warmSpare } from "./spares.js";
import { SHARE_WORKSPACE_DIR, startInjector } from "../jailer/jailer.js";
import { killGroup } from "../../util/proc.js";
import { escapeForTerminal } from "../../util/terminal.js";
import { createSnapshot, discardSnapshot, loadSnapshot, preloadSnapshot, restoreInto, snapshotKey, type Snapshot } from "./snapshot.js";
import {
  WORKSPACE_TAG,
  connectWhenReady,
  consoleTail,
  destroyVm,
  launchVm,
  vmStderr,
  watchGuestStop,
  type Accelerator,
  type VmLaunchOptions,
  type VmProcess,
} from "./qemu.js";

/** Under TCG a cold boot takes about a second here; leave room for a loaded machine. */
const BOOT_TIMEOUT_MS = { kvm: 10_000, tcg: 30_000 } as const;
const RESTORE_TIMEOUT_MS = 15_000;

interface MicroVmOptions {
  /** Force an accelerator instead of probing (LUMINAGUARD_ACCEL does the same). */
  accel?: Accelerator;
  /** Restore from a snapshot template (default) or always cold boot. LUMINAGUARD_SNAPSHOTS=0 turns them off. */
  snapshots?: boolean;
  /**
   * Where the four file tools run unless a spawn says otherwise: "host" (beside the VM, in a jail
   * from `fileJail`) or "guest" (through 9p). Unset: "host" when `fileJail` works here, else "guest".
   */
  fileTools?: FileToolsMode;
  /** The backend that jails the file tools beside each VM (the namespace backend). */
  fileJail?: SandboxBackend;
  /**
   * VMMs kept started and waiting (in all, for the snapshots restored most recently), so that a restore skips QEMU's start (spares.ts).
   * Default 0; the service keeps 1. LUMINAGUARD_VMM_SPARES overrides both. The workspace is mounted
   * into the waiting VMM's jail when it is restored (lg-jailer --inject: as root, or as the ordinary
   * user whose user namespace the jail is).
   */
  vmmSpares?: number;
}

/** How many spare VMMs to keep in all: the environment's, else the option's. */
function spareTarget(option: number | undefined): number {
  const env = process.env["LUMINAGUARD_VMM_SPARES"];
  const n = env !== undefined && env !== "" ? Number(env) : (option ?? 0);
  return Number.isInteger(n) && n >= 0 ? Math.min(n, 8) : 0;
}

export class MicroVmBackend implements SandboxBackend {
  readonly name = "microvm" as const;
  private verdict: Promise<AccelVerdict> | undefined;
  private readonly snapshots = new Map<string, Promise<Snapshot>>();
  private readonly spares: VmmSpares;

  constructor(private readonly options: MicroVmOptions = {}) {
    this.spares = new VmmSpares(spareTarget(options.vmmSpares));
  }

  /** Keeps `n` VMMs started and waiting in all from the next restore on (LUMINAGUARD_VMM_SPARES wins). */
  async keepSpares(n: number): Promise<void> {
    await this.spares.resize(spareTarget(n));
  }

  /** How many VMMs are kept waiting in all (0: none). */
  get spareTarget(): number {
    return this.spares.size;
  }

  /** QEMU pids of the VMMs waiting for a restore. */
  sparePids(): number[] {
    return this.spares.pids();
  }

  /** Host pids of the file jails waiting with the spare VMMs. */
  spareJailPids(): number[] {
    return this.spares.jailPids();
  }

  /** Destroys the spare VMMs and keeps no more (keepSpares() starts again); restores launch QEMU themselves. */
  async close(): Promise<void> {
    await this.spares.resize(0);
  }

  async accelerator(image: ImageManifest): Promise<AccelVerdict> {
    if (this.options.accel) {
      return { accel: this.options.accel, reason: "chosen by the caller", key: "", probedAt: new Date().toISOString() };
    }
    this.verdict ??= probeAccelerator(image, (accel, timeoutMs) => this.trialBoot(image, accel, timeoutMs));
    return await this.verdict;
  }

  async probe(): Promise<BackendProbe> {
    const version = await qemuVersion();
    const details: Record<string, string | number | boolean> = { sharesHostKernel: false, kvm: kvmFlavour() };
    if (!version) {
      return { backend: "microvm", available: false, reason: "qemu-system-x86_64 not found: apt-get install qemu-system-x86", details };
    }
    details["qemu"] = version;
    let image: ImageManifest;
    try {
      image = await requireImage();
    } catch (err) {
      return { backend: "microvm", available: false, reason: toLuminaGuardError(err).message, details };
    }
    details["image"] = image.hash;
    details["kernel"] = image.kernelKind;
    const verdict = await this.accelerator(image);
    details["accel"] = verdict.accel;
    details["accelReason"] = verdict.reason;
    return { backend: "microvm", available: true, details };
  }

  get snapshotsEnabled(): boolean {
    return this.options.snapshots ?? process.env["LUMINAGUARD_SNAPSHOTS"] !== "0";
  }

  /** The snapshot template for these parameters, created once (per process, and cached on disk). */
  async snapshot(image: ImageManifest, accel: Accelerator, memoryMiB: number, vcpus: number): Promise<Snapshot> {
    const params = { image, accel, memoryMiB, vcpus, qemu: (await qemuVersion()) ?? "unknown" };
    const key = snapshotKey(params);
    let p = this.snapshots.get(key);
    if (!p) {
      p = (async () => loadSnapshot(params) ?? (await createSnapshot(params, BOOT_TIMEOUT_MS[accel])))();
      this.snapshots.set(key, p);
      p.catch(() => this.snapshots.delete(key));
    }
    return await p;
  }

  private jailProbe: Promise<BackendProbe> | undefined;

  /** Where this spawn's file tools run, or why they cannot run where they were asked to. */
  private async fileToolsFor(spec: SandboxSpec): Promise<{ mode: FileToolsMode; reason?: string }> {
    const asked = spec.fileTools ?? this.options.fileTools;
    if (asked === "guest") return { mode: "guest", reason: "chosen by configuration" };
    const jail = this.options.fileJail;
    const probe = jail ? await (this.jailProbe ??= jail.probe()) : undefined;
    if (probe?.available) return { mode: "host" };
    const why = probe ? (probe.reason ?? "unavailable") : "no jail backend configured";
    if (asked === "host") throw new LuminaGuardError("BACKEND_UNAVAILABLE", `file tools beside the VM need the namespace jail: ${why}`);
    return { mode: "guest", reason: `the namespace jail is unavailable: ${why}` };
  }

  async spawn(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    const since = performance.now();
    const files = await this.fileToolsFor(spec);
    const jail = this.options.fileJail;
    // The one workspace check both backends share: real path, never a system, credential or own directory.
    // Checked once for the VM and its file jail (spec.checked), and not again if the runtime just did.
    const checked = checkWorkspaceOnce(spec.workspace, spec.checked);
    spec = { ...spec, workspace: checked.real, checked };
    if (files.mode === "host" && jail) {
      const s = spec;
      let spawned = (): void => undefined;
      const done = new Promise<void>((r) => (spawned = r));
      try {
        return await spawnBeside(
          // The jail starts once QEMU is launched: its own start (bwrap, cgroups) is synchronous work
          // here that would otherwise delay the launch.
          (launched) => this.spawnVm({ ...s, fileTools: "host" }, signal, { since, launched, done }),
          () => jail.spawn(fileJailSpec(s), signal),
          s,
        );
      } finally {
        spawned();
      }
    }
    const vm = await this.spawnVm(spec, signal, { since });
    vm.info["fileTools"] = "guest";
    if (files.reason) vm.info["fileToolsReason"] = files.reason;
    return vm;
  }

  private async spawnVm(spec: SandboxSpec, signal?: AbortSignal, timing?: SpawnTiming): Promise<SandboxHandle> {
    const image = await requireImage();
    const { accel } = await this.accelerator(image);
    // spec.workspace was checked by spawn().
    if (!this.snapshotsEnabled) return await this.coldBoot(spec, image, accel, signal, {}, timing);
    let snapshot: Snapshot;
    try {
      snapshot = await this.snapshot(image, accel, spec.memoryMiB, spec.vcpus);
    } catch (err) {
      return await this.coldBoot(spec, image, accel, signal, { restoreFallback: `no snapshot: ${toLuminaGuardError(err).message}` }, timing);
    }
    try {
      return await this.restore(spec, image, accel, snapshot, signal, timing);
    } catch (err) {
      if (signal?.aborted) throw err;
      const details = toLuminaGuardError(err).details;
      const injected = details["injected"] === true || details["snapshotSound"] === true;
      // A snapshot that does not restore is never used again; the next spawn makes a fresh one.
      // (Not for an injected fault: the snapshot is sound, and other processes restore from it.)
      log.warn(
        { sandboxId: spec.id, err: toLuminaGuardError(err).message, details },
        injected ? "restore failed (not the snapshot's fault: it is kept); cold booting" : "restore failed; discarding the snapshot and cold booting",
      );
      if (!injected) {
        this.snapshots.delete(snapshotKey({ image, accel, memoryMiB: spec.memoryMiB, vcpus: spec.vcpus, qemu: snapshot.meta.qemu }));
        await this.spares.discard(snapshot.meta.key);
        discardSnapshot(snapshot);
      }
      return await this.coldBoot(spec, image, accel, signal, { restoreFallback: toLuminaGuardError(err).message }, timing);
    }
  }

  private async restore(
    spec: SandboxSpec,
    image: ImageManifest,
    accel: Accelerator,
    snapshot: Snapshot,
    signal?: AbortSignal,
    timing?: SpawnTiming,
  ): Promise<SandboxHandle> {
    if (faultsOn && fault("restore")) {
      throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `restoring snapshot ${snapshot.meta.key} failed (injected fault)`, { details: { injected: true } });
    }
    // QEMU reads the snapshot's device state from its stdin (restoreInto): no socket hand-over.
    const launch = { memoryFile: { path: snapshot.ramPath, share: false }, incoming: "stdin" } as const;
    const key = snapshot.meta.key;
    const spare = this.spares.take(key);
    // The spare's file jail goes to spawnBeside once the VM runs; one nobody takes is destroyed.
    let jailAhead = spare?.jail;
    const launched = timing?.launched;
    const handOver = launched
      ? (): void => {
          const ahead = jailAhead;
          jailAhead = undefined;
          launched(ahead);
        }
      : undefined;
    let injected: Promise<number> | undefined;
    let resumed: Promise<number> | undefined;
    try {
      return await startVm(spec, image, accel, signal, {
        ...timing,
        ...(handOver ? { launched: handOver } : {}),
        ...(spare ? { vm: spare.vm, qmp: spare.qmp } : { launch }),
        prepare: async (vm) => {
          if (!spare) return await restoreInto(vm, snapshot, RESTORE_TIMEOUT_MS);
          // A spare has its snapshot loaded, was warmed and paused, and has no workspace yet: the
          // workspace is mounted into its jail before its guest resumes, or while it resumes when the
          // guest mounts its share at its first command (the file tools beside it; the sandbox is
          // handed out once it is in place).
          const t = performance.now();
          const inject = (): Promise<number> => injectWorkspace(vm, spec.workspace).then(() => performance.now() - t);
          if (spec.fileTools !== "host") {
            const early = await inject();
            const t1 = performance.now();
            await spare.qmp.execute("cont");
            return { inject: early, cont: performance.now() - t1 };
          }
          // The guest resumes, the workspace is mounted and the first hello is sent all at once:
          // QEMU's answer to `cont` is awaited before the hand-out (settle), not before the hello.
          // A `cont` that fails kills the VM, which fails the hello at once.
          resumed = spare.qmp.execute("cont").then(() => performance.now() - t);
          resumed.catch((err: unknown) => {
            log.warn({ sandboxId: spec.id, err: toLuminaGuardError(err).message }, "resuming a spare VMM failed");
            if (vm.child.exitCode === null && vm.child.signalCode === null) killGroup(vm.child);
          });
          injected = inject();
          injected.catch(() => undefined);
          return {};
        },
        settle: async () => ({ ...(resumed ? { cont: await resumed } : {}), ...(injected ? { inject: await injected } : {}) }),
        timeoutMs: RESTORE_TIMEOUT_MS,
        info: {
          start: "restore",
          snapshot: key,
          vmm: spare ? "spare" : "launched",
          ...(spare?.warmupMs !== undefined ? { spareWarmupMs: Math.round(spare.warmupMs) } : {}),
        },
        ready: "microvm restored",
      });
    } finally {
      if (jailAhead) void jailAhead.destroy().catch((err: unknown) => log.error({ id: spec.id, err: String(err) }, "destroying an unused file jail failed"));
      const fileJail = spec.fileTools === "host" ? this.options.fileJail : undefined;
      this.spares.refill(key, async () => {
        const id = `spare-${process.pid}-${randomBytes(4).toString("hex")}`;
        // What will give this spare its workspace runs already: its restore forks nothing.
        await startInjector();
        // The file jail starts beside the VMM; a spare whose jail fails to start has none (its
        // restore starts one), the failure logged.
        const jailP = fileJail?.spawnAwaiting?.(fileJailSpec({ ...spec, id, workspace: "" })).catch((err: unknown) => {
          log.warn({ err: toLuminaGuardError(err).message }, "a spare's file jail failed to start");
          return undefined;
        });
        let vm: VmProcess | undefined;
        try {
          vm = await launchVm({ id, accel, image, memoryMiB: spec.memoryMiB, vcpus: spec.vcpus, ...launch, paused: true });
          const qmp = await preloadSnapshot(vm, snapshot, RESTORE_TIMEOUT_MS);
          try {
            const warmupMs = spareWarmupOn() ? await warmSpare(vm, qmp, RESTORE_TIMEOUT_MS) : undefined;
            const jail = await jailP;
            return { vm, qmp, ...(warmupMs !== undefined ? { warmupMs } : {}), ...(jail ? { jail } : {}) };
          } catch (err) {
            qmp.close();
            throw err;
          }
        } catch (err) {
          await Promise.all([vm ? destroyVm(vm) : undefined, jailP?.then((j) => j?.destroy())]);
          throw err;
        }
      }, timing?.done);
    }
  }

  private async coldBoot(
    spec: SandboxSpec,
    image: ImageManifest,
    accel: Accelerator,
    signal: AbortSignal | undefined,
    extraInfo: Record<string, string>,
    timing?: SpawnTiming,
  ): Promise<SandboxHandle> {
    return await startVm(spec, image, accel, signal, { ...timing, timeoutMs: BOOT_TIMEOUT_MS[accel], info: { start: "cold", ...extraInfo }, ready: "microvm cold boot ready" });
  }

  /** Boots a VM with no workspace and returns ms to the first agent answer; used by the KVM probe. */
  private async trialBoot(image: ImageManifest, accel: Accelerator, timeoutMs: number): Promise<number> {
    const started = performance.now();
    const vm = await launchVm({ id: `probe-${process.pid}-${randomBytes(3).toString("hex")}`, accel, image, memoryMiB: 128, vcpus: 1 });
    try {
      const socket = await connectWhenReady(vm.socketPath, vm, timeoutMs);
      const channel = new GuestChannel({ input: socket, output: socket }, () => socket.destroy());
      const exited = vm.exited.then(() => {
        throw new Error(`QEMU exited: ${vmStderr(vm) || consoleTail(vm) || "no message"}`);
      });
      // Under a broken KVM QEMU prints "KVM internal error" and hangs: stop at the first sign of it.
      let watch: NodeJS.Timeout | undefined;
      const crashed = new Promise<never>((_, reject) => {
        watch = setInterval(() => {
          const text = vmStderr(vm);
          if (/KVM internal error|emulation failure|KVM_RUN failed/i.test(text)) reject(new Error(text.split("\n").slice(0, 3).join(" ")));
        }, 25);
      });
      try {
        await Promise.race([channel.handshake(timeoutMs), exited, crashed]);
      } finally {
        clearInterval(watch);
      }
      channel.fail(new LuminaGuardError("SANDBOX_CLOSED", "probe done"));
      return performance.now() - started;
    } finally {
      await destroyVm(vm);
    }
  }
}

/** When a spawn began (performance.now(), for the `check` phase) and whom to tell once QEMU is launched. */
interface SpawnTiming {
  since: number;
  launched?: (ahead?: AwaitingSandbox) => void;
  /** Settles when the whole spawn has (the VM and its file jail): a spare is replaced after it. */
  done?: Promise<void>;
}

/** How a sandbox's VM starts: cold, or restored from a snapshot (QEMU options, a step before connecting). */
interface VmStart {
  launch?: Pick<VmLaunchOptions, "memoryFile" | "incoming">;
  /** A VMM launched already (a spare: spares.ts), used instead of launching one, and its open QMP client. */
  vm?: VmProcess;
  qmp?: QmpClient;
  /** Runs on the launched VM before the guest is connected (the VM is destroyed if it fails); its phases in ms. */
  prepare?: (vm: VmProcess) => Promise<Record<string, number>>;
  /** Awaited once the guest is connected, before the sandbox is handed out (the VM is destroyed if it fails); its phases in ms. */
  settle?: () => Promise<Record<string, number>>;
  timeoutMs: number;
  info: Record<string, string | number | boolean>;
  /** The debug line logged with the time it took. */
  ready: string;
  /** When the spawn began: the time until the launch (image, accelerator, workspace, snapshot checks) is phase `check`. */
  since?: number;
  /** Called once QEMU has been launched, with the file jail started with a spare, if any. */
  launched?: (ahead?: AwaitingSandbox) => void;
}

/** Launches the VM for `spec`, prepares it, connects its guest. */
async function startVm(spec: SandboxSpec, image: ImageManifest, accel: Accelerator, signal: AbortSignal | undefined, how: VmStart): Promise<SandboxHandle> {
  const started = performance.now();
  const vm = how.vm ?? (await launchVm({ id: spec.id, accel, image, memoryMiB: spec.memoryMiB, vcpus: spec.vcpus, workspace: spec.workspace, ...how.launch }));
  // Where a start's time goes, in every handle's info (phaseMs.<phase>) and so in the spawn benchmark.
  const phases: Record<string, number> = { ...(how.since === undefined ? {} : { check: started - how.since }), launch: performance.now() - started };
  // The file jail starts beside the VM: once QEMU is launched, or, for a spare, once its guest runs
  // (spawning the jail is synchronous work here that would delay the `cont`).
  if (!how.vm) how.launched?.();
  try {
    Object.assign(phases, await how.prepare?.(vm));
  } catch (err) {
    how.qmp?.close();
    await destroyVm(vm);
    throw err;
  }
  if (how.vm) how.launched?.();
  // Paused while idle, its guest work through the exec gate (idle.ts).
  const connected = await connectVm(vm, spec, accel, image, how.timeoutMs, signal, how.info);
  try {
    Object.assign(phases, await how.settle?.());
  } catch (err) {
    await connected.destroy();
    throw err;
  }
  const handle = await pauseWhenIdle(connected, vm, idleOptions(), how.qmp);
  for (const [name, ms] of Object.entries(phases)) handle.info[`phaseMs.${name}`] = Math.round(ms * 100) / 100;
  log.debug({ id: spec.id, accel, ms: performance.now() - started }, how.ready);
  return handle;
}

/**
 * A guest that halts or powers off (`halt -f`, `poweroff -f` as root in the VM) leaves QEMU running
 * and the channel open: without this, a call in flight would wait out its whole deadline. The
 * channel fails at once instead, which destroys the VM (its onFatal), and so the sandbox.
 */
function noticeGuestStop(vm: VmProcess, id: string, channel: GuestChannel): void {
  watchGuestStop(vm, (line) => {
    log.warn({ sandboxId: id, console: line }, "the guest stopped (halt or power-off); destroying its VM");
    channel.fail(
      new GuestChannelLostError(`the guest shut itself down ("${line}")`, {
        details: { sandboxId: id, reason: "guest-shutdown" },
      }),
    );
  });
}

/**
 * Connects the channel of a started VM, handshakes, gives the guest its identity and workspace.
 * Exported for the tests (not part of the public index).
 */
export async function connectVm(
  vm: VmProcess,
  spec: SandboxSpec,
  accel: Accelerator,
  image: ImageManifest,
  timeoutMs: number,
  signal?: AbortSignal,
  extraInfo: Record<string, string | number | boolean> = {},
): Promise<SandboxHandle> {
  let socket: Socket | undefined;
  let destroyed: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      socket?.destroy();
      await destroyVm(vm);
    })();
    return destroyed;
  };
  const unhook = onAbort(signal, () => void destroy());
  let handedOut = false;
  try {
    socket = await connectWhenReady(vm.socketPath, vm, timeoutMs);
    // Until the handle is returned a lost channel fails the start, whose catch below destroys the VM
    // once it has read how QEMU ended and what the console said (destroying removes both).
    const channel = new GuestChannel({ input: socket, output: socket }, () => void (handedOut && destroy()));
    // A VM that dies during boot must fail the handshake at once, not at its deadline.
    void vm.exited.then(() => channel.fail(new LuminaGuardError("GUEST_CHANNEL_LOST", "the VM exited")));
    const seed = randomBytes(32).toString("base64");
    const init = (): InitArgs => ({
      seed,
      timeMs: Date.now(),
      id: spec.id,
      // With the file tools beside the VM only commands use the mount: made at the first one, off the restore path.
      mount: { tag: WORKSPACE_TAG, subdir: SHARE_WORKSPACE_DIR, ...(spec.fileTools === "host" ? { lazy: true } : {}) },
      ...(spec.diskMiB !== undefined ? { diskMiB: spec.diskMiB } : {}),
      // Commands run as the uid the workspace's files show in the guest: the VMM's own (the 9p
      // export reports host owners as QEMU sees them, through the idmapped workspace).
      commandUid: vm.identity.uid,
      commandGid: vm.identity.gid,
    });
    const t0 = performance.now();
    // A restored guest answers within milliseconds of its host connecting: ask soon, then back off
    // (every queued hello costs the guest a parse and an answer). The hello carries init (reseed,
    // clock, identity, mount): one round trip to ready instead of two.
    const helloStats: HelloStats = { sent: 0, answered: 0 };
    const hello = await channel.handshake(timeoutMs, Number(process.env["LG_HELLO_MS"] ?? 2), {
      init,
      stats: helloStats,
      maxIntervalMs: Number(process.env["LG_HELLO_MAX_MS"] ?? 16),
    });
    const t1 = performance.now();
    // An agent that did not apply it (its answer says so) gets init on its own.
    if (hello.init !== true) await channel.request("init", init(), { deadlineMs: timeoutMs });
    const helloMs = t1 - t0;
    const initMs = performance.now() - t1;
    log.debug({ id: spec.id, helloMs, initMs }, "guest handshake phases");
    if (signal?.aborted) throw new LuminaGuardError("CANCELLED", "spawn cancelled");
    noticeGuestStop(vm, spec.id, channel);
    const pid = vm.child.pid ?? 0;
    handedOut = true;
    return {
      id: spec.id,
      backend: "microvm",
      channel,
      info: {
        backend: "microvm",
        accel,
        sharesHostKernel: false,
        image: image.hash,
        memoryMiB: spec.memoryMiB,
        // Who QEMU runs as on the host (a per-VM uid when we are root) and how the workspace is exported.
        hostUid: vm.identity.uid,
        workspaceExport: "9p mapped-xattr",
        "phaseMs.hello": Math.round(helloMs * 100) / 100,
        "phaseMs.init": Math.round(initMs * 100) / 100,
        // Hellos sent before one was answered, and which one was (0: the first; a later one: the earlier were lost or slow).
        helloSent: helloStats.sent,
        helloAnswered: helloStats.answered,
        // Whether the guest applied init with its hello (one round trip) or needed a separate init.
        initWithHello: hello.init === true,
        ...extraInfo,
      },
      pids: () => (vm.child.exitCode === null && vm.child.signalCode === null ? [pid] : []),
      oomKills: () => guestOomKills(channel),
      exited: vm.exited.then(() => undefined),
      destroy,
    };
  } catch (err) {
    const reason = toLuminaGuardError(err);
    // A channel reset is often QEMU going away: say how it ended, in its own words, not only "ECONNRESET".
    // (Not when we ended it ourselves: an abort destroys it at once.)
    const ended = destroyed ? undefined : await Promise.race([vm.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 100).unref())]);
    const tail = consoleTail(vm);
    const stderr = vmStderr(vm);
    await destroy();
    // The guest's console is the guest's bytes: made inert, one line.
    const last = escapeForTerminal(tail.split("\n").slice(-3).join(" | ").slice(-500), false);
    const how = ended ? `; QEMU exited (${ended.signal ?? `code ${String(ended.code)}`})${stderr ? `: ${stderr.slice(-500)}` : ""}${last ? `; guest console: ${last}` : ""}` : "";
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `micro-VM ${spec.id} failed to start: ${reason.message}${how}`, {
      cause: err,
      details: { ...(stderr ? { qemuStderr: stderr } : {}), ...(tail ? { console: tail } : {}) },
    });
  } finally {
    unhook();
  }
}

/**
 * The guest kernel's count of OOM kills, read through the channel: its log's `oom-kill:` lines (this
 * guest kernel keeps no vm event counters, so /proc/vmstat has no oom_kill); undefined if unreadable.
 */
async function guestOomKills(channel: GuestChannel): Promise<number | undefined> {
  let out = "";
  const max = 512 * 1024;
  try {
    const r = await channel.request(
      "execute_command",
      { argv: ["dmesg"], timeoutMs: 5_000, maxOutputBytes: max },
      { deadlineMs: 10_000, maxStreamBytes: max, onEvent: (stream, data) => void (stream === "stdout" && (out += data.toString("utf8"))) },
    );
    if (r.exitCode !== 0) return undefined;
  } catch {
    return undefined;
  }
  return out.match(/\boom-kill:/g)?.length ?? 0;
}
