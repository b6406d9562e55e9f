// The namespace backend: the guest agent under bubblewrap (all namespaces, seccomp, cgroup limits) on the host kernel.
// How a sandbox is started and placed in its cgroup is in launch.ts; what it can see is in bwrap.ts.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ChildProcess } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { GuestChannel } from "../../protocol/channel.js";
import type { InitArgs } from "../../protocol/messages.js";
import { ensureAgent, type AgentBuild } from "../../image/agent.js";
import { GuestChannelLostError, LuminaGuardError, toLuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { raceAbort } from "../../util/abort.js";
import { killGroup } from "../../util/proc.js";
import { descendants, liveStartTime } from "../../util/procfs.js";
import type { AwaitingSandbox, BackendProbe, SandboxBackend, SandboxHandle, SandboxSpec } from "../types.js";
import { checkWorkspace } from "../workspace.js";
import { AGENT_COMMAND, SANDBOX_UID, WORKSPACE_IN_SANDBOX } from "./bwrap.js";
import { SandboxCgroup } from "./cgroup.js";
import { ensureJailer, injectWorkspaceInto, startInjector } from "../jailer/jailer.js";
import { runDir } from "../../paths.js";
import { allocateIdentity, type VmmIdentity } from "../jailer/identity.js";
import { launch, spawnCancelled, type Launch } from "./launch.js";
import { probeNamespace, type NamespaceProbe } from "./probe.js";

const HANDSHAKE_TIMEOUT_MS = 5_000;
const INIT_DEADLINE_MS = 5_000;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MIN_MEMORY_MIB = 16;
/** The agent (pid 1 of the sandbox) is in the cgroup too, and a command may need a shell and a child. */
const MIN_PIDS = 4;

interface NamespaceBackendOptions {
  /**
   * "auto" (default): limits when cgroups are usable, else run without and say so in `info.limits`.
   * "require": refuse to spawn without limits. "off": never create cgroups.
   */
  cgroups?: "auto" | "require" | "off";
}

function validate(spec: SandboxSpec): string {
  validateLimits(spec);
  // The one workspace check both backends share: system, credential and LuminaGuard directories,
  // homes, and names that are not what they seem are refused by name.
  return checkWorkspace(spec.workspace, spec.checked);
}

/** The id, memory and pids of a spec (everything but its workspace). */
function validateLimits(spec: SandboxSpec): void {
  if (!ID_PATTERN.test(spec.id)) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `sandbox id ${JSON.stringify(spec.id)} must match ${ID_PATTERN.source} (it becomes a hostname and a cgroup name)`);
  }
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < MIN_MEMORY_MIB) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `memoryMiB must be an integer >= ${MIN_MEMORY_MIB}`);
  }
  if (!Number.isInteger(spec.pidsMax) || spec.pidsMax < MIN_PIDS) throw new LuminaGuardError("INVALID_ARGUMENT", `pidsMax must be an integer >= ${MIN_PIDS}`);
}

/**
 * Whether other local users are kept out of the workspace by a directory above it. The sandbox owns
 * the workspace directory itself and may chmod it open, but it cannot see, let alone change, its
 * ancestors: one without search permission for others keeps the workspace private whatever happens
 * inside (mkdtemp under /tmp is not private; under ~/.cache of root it is).
 */
function workspacePrivate(realWorkspace: string): boolean {
  for (let dir = dirname(realWorkspace); ; dir = dirname(dir)) {
    try {
      if ((statSync(dir).mode & 0o001) === 0) return true;
    } catch {
      return false;
    }
    if (dir === "/") return false;
  }
}

let warnedShared = false;

/** One live namespace sandbox. */
class NamespaceSandbox implements SandboxHandle {
  readonly backend = "namespace" as const;
  readonly channel: GuestChannel;
  readonly info: Record<string, string | number | boolean>;
  readonly exited: Promise<void>;
  /** Host pid of bwrap's sandbox process (pid 1 of the sandbox's pid namespace), once known. */
  initPid: number | undefined;
  private initStart: string | undefined;
  private destroying: Promise<void> | undefined;
  private bwrapExited = false;

  constructor(
    readonly id: string,
    private readonly bwrap: ChildProcess,
    private readonly cgroup: SandboxCgroup | undefined,
    info: Record<string, string | number | boolean>,
    /** The host identity bwrap runs as (root only); freed for reuse once nothing of ours runs under it. */
    private readonly identity?: VmmIdentity,
    /** The tail of what bwrap and the agent wrote to stderr, for error messages. */
    readonly stderrTail: () => string = () => "",
  ) {
    this.info = info;
    this.exited = new Promise<void>((resolve) => {
      const done = (): void => {
        this.bwrapExited = true;
        resolve();
      };
      // 'error' without 'exit' happens when bwrap could not be started at all.
      bwrap.once("exit", done);
      bwrap.once("error", done);
    });
    void this.exited.then(() => {
      // bwrap gone (crash, OOM kill of the monitor, agent exit): whatever is left must go too.
      if (!this.destroying) {
        const how = bwrap.signalCode ?? `code ${bwrap.exitCode ?? "?"}`;
        log.warn({ id, exit: how }, "namespace sandbox exited on its own; destroying");
        // The agent is gone: calls in flight fail as a lost channel, not as a deliberate close.
        void this.teardownOnce(new GuestChannelLostError(`sandbox ${id} exited (${how})`)).catch((err: unknown) =>
          log.error({ id, err: String(err) }, "namespace sandbox cleanup failed"),
        );
      }
    });
    this.channel = new GuestChannel({ input: bwrap.stdout as Readable, output: bwrap.stdin as Writable }, (err) => {
      // A guest that died or broke the protocol is never trusted again: kill the whole sandbox.
      if (this.destroying) return;
      log.warn({ id, code: err.code, err: err.message }, "guest channel lost; destroying namespace sandbox");
      void this.teardownOnce(err).catch((e: unknown) => log.error({ id, err: String(e) }, "namespace sandbox cleanup failed"));
    });
  }

  async oomKills(): Promise<number | undefined> {
    return await Promise.resolve(this.cgroup?.memoryEvents().oomKills);
  }

  setInit(pid: number): void {
    this.initPid = pid;
    this.initStart = liveStartTime(pid);
  }

  /** The sandbox process as the host started it (pid and start time), once known. */
  get initProcess(): { pid: number; start: string } | undefined {
    return this.initPid !== undefined && this.initStart !== undefined ? { pid: this.initPid, start: this.initStart } : undefined;
  }

  private initAlive(): boolean {
    if (this.initPid === undefined) return false;
    const now = liveStartTime(this.initPid);
    return now !== undefined && now === this.initStart;
  }

  /** bwrap first (SandboxHandle.pids), then the rest by pid: after the pid counter wraps, a process of the sandbox can have a lower pid than its bwrap. */
  pids(): number[] {
    const main = !this.bwrapExited ? this.bwrap.pid : undefined;
    const rest = new Set<number>();
    if (this.cgroup) for (const p of this.cgroup.procs()) rest.add(p);
    else if (main !== undefined) for (const p of descendants(main)) rest.add(p);
    if (main !== undefined) rest.delete(main);
    const sorted = [...rest].sort((a, b) => a - b);
    return main === undefined ? sorted : [main, ...sorted];
  }

  destroy(): Promise<void> {
    return this.teardownOnce(new LuminaGuardError("SANDBOX_CLOSED", `sandbox ${this.id} was destroyed`));
  }

  /** `reason` is what calls still in flight are rejected with; only the first caller's counts. */
  private teardownOnce(reason: LuminaGuardError): Promise<void> {
    // teardown() starts a microtask later so that `destroying` is set before it runs: it fails the
    // channel, whose onFatal callback must then find the teardown already under way.
    this.destroying ??= Promise.resolve().then(() => this.teardown(reason));
    return this.destroying;
  }

  private async teardown(reason: LuminaGuardError): Promise<void> {
    const started = performance.now();
    this.channel.fail(reason);
    // Killing pid 1 of the sandbox's pid namespace makes the kernel SIGKILL every process in it, and
    // no new one can be forked into a dying namespace. Killing it first (not bwrap) lets bwrap reap it,
    // so no zombie is handed to the host's init.
    if (this.initPid !== undefined && this.initAlive()) {
      try {
        process.kill(this.initPid, "SIGKILL");
      } catch {
        /* already gone */
      }
    } else if (this.initPid === undefined) {
      // Not released yet (spawn failed or was aborted): the sandbox process still waits on
      // --block-fd inside bwrap's process group, and would wait forever.
      killGroup(this.bwrap);
    }
    let cgroupError: unknown;
    try {
      await this.cgroup?.destroy();
    } catch (err) {
      cgroupError = err;
    }
    // bwrap exits by itself once its child is gone; if it does not promptly, kill its process group.
    // (Never after it exited: its pid, and so its group id, may then belong to someone else.)
    const exitedSoon = await Promise.race([this.exited.then(() => true), sleep(1_000, undefined, { ref: false }).then(() => false)]);
    if (!exitedSoon && this.bwrap.exitCode === null && this.bwrap.signalCode === null) {
      killGroup(this.bwrap);
      await Promise.race([this.exited, sleep(5_000, undefined, { ref: false })]);
    }
    for (let i = 0; i < 500 && this.initAlive(); i++) await sleep(10);
    const leftovers: string[] = [];
    if (!this.bwrapExited) leftovers.push(`bwrap ${this.bwrap.pid ?? "?"}`);
    if (this.initAlive()) leftovers.push(`sandbox init ${this.initPid ?? "?"}`);
    for (const s of [this.bwrap.stdin, this.bwrap.stdout, this.bwrap.stderr, ...this.bwrap.stdio.slice(3)]) {
      (s as { destroy?: () => void } | null)?.destroy?.();
    }
    if (leftovers.length === 0) this.identity?.release();
    if (cgroupError !== undefined) throw toLuminaGuardError(cgroupError);
    if (leftovers.length > 0) throw new LuminaGuardError("INTERNAL", `sandbox ${this.id}: still running after destroy: ${leftovers.join(", ")}`);
    log.debug({ id: this.id, destroyMs: Math.round(performance.now() - started) }, "namespace sandbox destroyed");
  }
}

export class NamespaceBackend implements SandboxBackend {
  readonly name = "namespace" as const;
  private agentBuild: Promise<AgentBuild> | undefined;
  private readonly cgroupMode: "auto" | "require" | "off";

  constructor(options: NamespaceBackendOptions = {}) {
    this.cgroupMode = options.cgroups ?? "auto";
  }

  async probe(): Promise<BackendProbe> {
    const p = await probeNamespace();
    return {
      backend: "namespace",
      available: p.bwrap.ok && (this.cgroupMode !== "require" || p.cgroups.usable),
      ...(p.bwrap.ok
        ? this.cgroupMode === "require" && !p.cgroups.usable
          ? { reason: `resource limits required but ${p.cgroups.reason ?? "cgroups unusable"}` }
          : {}
        : { reason: p.bwrap.reason ?? "bubblewrap unusable" }),
      details: this.details(p),
    };
  }

  private limitsActive(p: NamespaceProbe): boolean {
    return this.cgroupMode !== "off" && p.cgroups.usable;
  }

  private details(p: NamespaceProbe): Record<string, string | number | boolean> {
    const d: Record<string, string | number | boolean> = {
      sharesHostKernel: true,
      kernel: p.kernel,
      isolation: this.isolation(p),
      bwrap: p.bwrap.ok ? (p.bwrap.version ?? "?") : "unusable",
      seccomp: p.bwrap.ok,
      network: "none",
      cgroupVersion: p.cgroups.version,
      limits: this.limitsActive(p) ? "memory+pids" : "none",
    };
    if (p.bwrap.trialMs !== undefined) d["bwrapTrialMs"] = p.bwrap.trialMs;
    if (!p.cgroups.usable && p.cgroups.reason !== undefined) d["limitsReason"] = p.cgroups.reason;
    if (this.cgroupMode === "off") d["limitsReason"] = "cgroups turned off by configuration";
    if (p.cgroups.usable) d["swapLimited"] = p.cgroups.swapLimited;
    return d;
  }

  private isolation(p: NamespaceProbe): string {
    return this.limitsActive(p) ? `bubblewrap+seccomp+cgroup-${p.cgroups.version}` : "bubblewrap+seccomp";
  }

  private agent(): Promise<AgentBuild> {
    this.agentBuild ??= ensureAgent().catch((err: unknown) => {
      this.agentBuild = undefined; // let a later spawn retry after the sources are fixed
      throw err;
    });
    return this.agentBuild;
  }

  async spawn(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle> {
    const entered = performance.now();
    const workspace = validate(spec);
    const { sandbox, started, launchedMs, helloMs, phases } = await this.start(spec, workspace, signal);
    try {
      const initFrom = performance.now();
      await raceAbort(initialize(sandbox, spec), signal, spawnCancelled);
      const spawnMs = round(performance.now() - started);
      sandbox.info["spawnMs"] = spawnMs;
      // Where a spawn's time goes, in the handle's info (phaseMs.<phase>) and so in the spawn benchmark.
      const all: Record<string, number> = { check: started - entered, ...phases, init: performance.now() - initFrom };
      for (const [name, ms] of Object.entries(all)) sandbox.info[`phaseMs.${name}`] = round(ms);
      log.info({ id: spec.id, spawnMs, launchedMs: round(launchedMs), helloMs: round(helloMs), limits: sandbox.info["limits"] }, "namespace sandbox ready");
      return sandbox;
    } catch (err) {
      throw await failedSpawn(sandbox, spec.id, err);
    }
  }

  /**
   * A files-only sandbox started ahead of its workspace: bwrap and the agent run and
   * answered their hello, with an empty placeholder at the workspace; receive() mounts the real
   * workspace over it (lg-jailer --inject, as for a spare VMM) and sends the init, which makes the
   * agent resolve beneath the workspace as it now is. A micro-VM's spare file jail (spares.ts): its
   * start leaves the restore path. No request but hello reaches it before receive(), and it serves
   * one sandbox.
   */
  async spawnAwaiting(spec: SandboxSpec, signal?: AbortSignal): Promise<AwaitingSandbox> {
    if (!spec.filesOnly) throw new LuminaGuardError("INVALID_ARGUMENT", "only a files-only sandbox is started ahead of its workspace");
    validateLimits(spec);
    await startInjector();
    const placeholder = mkdtempSync(join(runDir(), "awaiting-"));
    let s: Started;
    try {
      s = await this.start(spec, placeholder, signal);
    } catch (err) {
      rmSync(placeholder, { recursive: true, force: true });
      throw err;
    }
    const { sandbox, identity } = s;
    // Removed once the jail is gone: while it runs, the placeholder is where its workspace is
    // mounted, and removing a mount point detaches what is mounted on it in every namespace.
    void sandbox.exited.then(() => rmSync(placeholder, { recursive: true, force: true }));
    let received = false;
    return {
      handle: sandbox,
      receive: async (real: SandboxSpec): Promise<SandboxHandle> => {
        if (received) throw new LuminaGuardError("INTERNAL", "a sandbox started ahead of its workspace receives one workspace only");
        received = true;
        const started = performance.now();
        try {
          if (real.memoryMiB !== spec.memoryMiB || real.pidsMax !== spec.pidsMax || real.filesOnly !== true) {
            throw new LuminaGuardError("INTERNAL", "a sandbox started ahead of its workspace was given a spec with other limits");
          }
          const workspace = validate(real);
          const init = sandbox.initProcess;
          if (init === undefined) throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", "the waiting sandbox has no process to give the workspace to");
          await injectWorkspaceInto(init, identity, workspace, WORKSPACE_IN_SANDBOX);
          await initialize(sandbox, real);
          sandbox.info["workspacePrivate"] = workspacePrivate(workspace);
          sandbox.info["startedAhead"] = true;
          sandbox.info["receiveMs"] = round(performance.now() - started);
          return sandbox;
        } catch (err) {
          // Its workspace refused or not given: it serves no other, and the reason keeps its code.
          await sandbox.destroy().catch((e: unknown) => log.error({ id: real.id, err: String(e) }, "destroying a sandbox that did not take its workspace failed"));
          throw toLuminaGuardError(err, "SANDBOX_SPAWN_FAILED");
        }
      },
      destroy: () => sandbox.destroy(),
    };
  }

  /** Launches bwrap and the agent, places them in their cgroup and waits for the agent's hello. */
  private async start(spec: SandboxSpec, workspace: string, signal?: AbortSignal): Promise<Started> {
    const p = await probeNamespace();
    if (!p.bwrap.ok) throw new LuminaGuardError("BACKEND_UNAVAILABLE", `namespace backend unavailable: ${p.bwrap.reason ?? "?"}`);
    if (this.cgroupMode === "require" && !p.cgroups.usable) {
      throw new LuminaGuardError("BACKEND_UNAVAILABLE", `namespace backend needs cgroups for limits: ${p.cgroups.reason ?? "?"}`);
    }
    const agent = await this.agent();
    // Run as root, bwrap (and so the sandbox's host uid) is an unprivileged identity of its own, so
    // the sandbox is not host root for any check the kernel makes on the uid; jailer.c says how.
    const jailBuild = (process.getuid?.() ?? 1) === 0 ? await ensureJailer() : undefined;
    if (signal?.aborted) throw spawnCancelled();

    const started = performance.now();
    const identity = jailBuild ? allocateIdentity() : undefined;
    let cgroup: SandboxCgroup | undefined;
    try {
      // With the jailer, bwrap's monitor is in the cgroup too (launch.ts): one more pid, so that the
      // sandbox's own processes get exactly spec.pidsMax.
      cgroup = this.limitsActive(p) ? SandboxCgroup.create(spec.id, { memoryMiB: spec.memoryMiB, pidsMax: spec.pidsMax + (jailBuild ? 1 : 0) }) : undefined;
    } catch (err) {
      identity?.release();
      throw err;
    }
    const cgroupAt = performance.now();
    let launched: Launch;
    try {
      launched = launch({
        id: spec.id,
        workspace,
        agentPath: agent.path,
        ...(spec.filesOnly ? { command: [...AGENT_COMMAND, "--no-init", "--files-only"] } : {}),
        memoryMiB: spec.memoryMiB,
        cgroup,
        ...(jailBuild && identity ? { jail: { build: jailBuild, identity } } : {}),
        ...(signal === undefined ? {} : { signal }),
        onStderr: (chunk) => log.debug({ id: spec.id, stderr: chunk.toString("utf8").slice(0, 2000) }, "namespace sandbox stderr"),
      });
    } catch (err) {
      await cgroup?.destroy();
      identity?.release();
      throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `cannot start bwrap: ${(err as Error).message}`, { cause: err });
    }
    // launch() returns once Node has forked (synchronously) the jailer or bwrap.
    const forkedAt = performance.now();
    const { bwrap, stderrTail } = launched;
    const sandbox = new NamespaceSandbox(
      spec.id,
      bwrap,
      cgroup,
      {
        backend: "namespace",
        sharesHostKernel: true,
        isolation: this.isolation(p),
        network: "none",
        kernel: p.kernel,
        bwrap: p.bwrap.version ?? "?",
        cgroupVersion: cgroup ? p.cgroups.version : "none",
        limits: cgroup ? "memory+pids" : "none",
        memoryMiB: spec.memoryMiB,
        pidsMax: spec.pidsMax,
        sandboxUid: SANDBOX_UID,
        hostUid: identity?.uid ?? process.getuid?.() ?? -1,
        agentHash: agent.hash,
        cpuLimit: "none",
        workspacePrivate: workspacePrivate(workspace),
        ...(spec.filesOnly ? { filesOnly: true } : {}),
      },
      identity,
      stderrTail,
    );
    if (!sandbox.info["workspacePrivate"] && !warnedShared) {
      warnedShared = true;
      log.info(
        { workspace },
        "namespace sandbox workspace is reachable by other local users through its parent directories; keep workspaces under a directory with mode 0700",
      );
    }
    try {
      sandbox.setInit(await launched.ready);
      const launchedMs = performance.now() - started;
      const hello = await raceAbort(sandbox.channel.handshake(HANDSHAKE_TIMEOUT_MS), signal, spawnCancelled);
      const helloMs = performance.now() - started;
      sandbox.info["agent"] = hello.agent;
      sandbox.info["helloMs"] = round(helloMs);
      // identity and cgroup; Node's fork; the jailer and bwrap until the sandbox process is in its
      // cgroup and released; the agent's first hello.
      const phases = { cgroup: cgroupAt - started, fork: forkedAt - cgroupAt, ready: started + launchedMs - forkedAt, hello: helloMs - launchedMs };
      return { sandbox, started, launchedMs, helloMs, phases, ...(identity ? { identity } : {}) };
    } catch (err) {
      throw await failedSpawn(sandbox, spec.id, err);
    }
  }
}

interface Started {
  sandbox: NamespaceSandbox;
  started: number;
  launchedMs: number;
  helloMs: number;
  /** Phases of the start, in ms (spawn() reports them with its own). */
  phases: Record<string, number>;
  identity?: VmmIdentity;
}

/** The agent's init: a fresh seed, the clock, the sandbox id and its disk limit. */
async function initialize(sandbox: NamespaceSandbox, spec: SandboxSpec): Promise<void> {
  await sandbox.channel.request(
    "init",
    { seed: randomBytes(32).toString("base64"), timeMs: Date.now(), id: spec.id, ...(spec.diskMiB !== undefined ? { diskMiB: spec.diskMiB } : {}) } satisfies InitArgs,
    { deadlineMs: INIT_DEADLINE_MS },
  );
}

/** Destroys a sandbox whose start failed, and says why in the error it returns. */
async function failedSpawn(sandbox: NamespaceSandbox, id: string, err: unknown): Promise<LuminaGuardError> {
  await sandbox.destroy().catch((e: unknown) => log.error({ id, err: String(e) }, "cleanup after failed spawn failed"));
  const e = toLuminaGuardError(err, "SANDBOX_SPAWN_FAILED");
  if (e.code === "CANCELLED" || e.code === "SANDBOX_SPAWN_FAILED") return e;
  const tail = sandbox.stderrTail().trim();
  return new LuminaGuardError("SANDBOX_SPAWN_FAILED", `namespace sandbox ${id} failed to start: ${e.message}${tail ? ` (stderr: ${tail.slice(-2000)})` : ""}`, {
    cause: e,
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}


