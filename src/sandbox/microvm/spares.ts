// VMMs started ahead of their sandbox: QEMU launched, jailed and its snapshot loaded, warmed and paused,
// with the file jail that will serve beside it; a restore resumes the one and gives both their workspace.
import { randomBytes } from "node:crypto";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { JAIL, injectWorkspaceInto } from "../jailer/jailer.js";
import { GuestChannel } from "../../protocol/channel.js";
import { WORKSPACE_TAG, connectWhenReady, destroyVm, type VmProcess } from "./qemu.js";
import type { QmpClient } from "./qmp.js";
import type { AwaitingSandbox } from "../types.js";

/** A VMM with a snapshot loaded, its guest warmed (warmSpare) and paused, and its QMP client. */
export interface SpareVmm {
  vm: VmProcess;
  qmp: QmpClient;
  /** How long its warm-up ran (warmSpare), if it had one. */
  warmupMs?: number;
  /** Its file jail, started with it and waiting for the same workspace (file tools beside the VM). */
  jail?: AwaitingSandbox;
}

/** Whether spares run their guest once before they wait (LUMINAGUARD_VMM_SPARE_WARMUP=0: no). */
export function spareWarmupOn(env: NodeJS.ProcessEnv = process.env): boolean {
  return env["LUMINAGUARD_VMM_SPARE_WARMUP"] !== "0";
}

async function destroySpare(s: SpareVmm): Promise<void> {
  s.qmp.close();
  await Promise.all([destroyVm(s.vm), s.jail?.destroy().catch((err: unknown) => log.error({ err: String(err) }, "destroying a spare's file jail failed"))]);
}

/**
 * Runs a spare's guest once before it waits: the guest answers a hello carrying an init of the host's
 * own (a fresh seed, the clock, hostname `spare`, the VMM's identity; no workspace), mounts its share
 * aside and unmounts it (`warmup`), and runs `true`; the host hangs up, and the VM is paused again with
 * its agent waiting for a host, as in the snapshot. Under TCG a new QEMU process translates every
 * guest code path afresh; this moves the translation of the hello, 9p mount, exec and reap paths off
 * the restore and the first command (the warm init alone took the restore's hello from 6.8 to 3.7 ms
 * mean here). Nothing of a sandbox is in the VM yet: a spare serves one
 * sandbox and is destroyed with it.
 */
export async function warmSpare(vm: VmProcess, qmp: QmpClient, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  await qmp.execute("cont");
  const socket = await connectWhenReady(vm.socketPath, vm, timeoutMs);
  try {
    const channel = new GuestChannel({ input: socket, output: socket }, () => socket.destroy());
    void vm.exited.then(() => channel.fail(new LuminaGuardError("GUEST_CHANNEL_LOST", "the spare VM exited")));
    // The hello carries an init as a restore's does (a fresh seed, the clock, the VMM's identity for
    // commands; no workspace, no disk limit), so that its parse, the reseed and the clock paths are
    // translated too: the restore's own init replaces all of it.
    await channel.handshake(timeoutMs, 2, {
      maxIntervalMs: 16,
      init: () => ({ seed: randomBytes(32).toString("base64"), timeMs: Date.now(), id: "spare", commandUid: vm.identity.uid, commandGid: vm.identity.gid }),
    });
    const t1 = performance.now();
    // The share's mount (nothing is at /share/ws yet: the guest sees an empty directory), then a command.
    await channel.request("warmup", { tag: WORKSPACE_TAG }, { deadlineMs: timeoutMs });
    const r = await channel.request("execute_command", { argv: ["true"], timeoutMs, maxOutputBytes: 1024 }, { deadlineMs: timeoutMs });
    if (r.exitCode !== 0) throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `a spare's warm-up command exited with ${String(r.exitCode)}`);
    const t2 = performance.now();
    channel.fail(new LuminaGuardError("SANDBOX_CLOSED", "warm-up done"));
    socket.destroy();
    // The agent sees the hang-up and waits for its next host before the VM is paused.
    await new Promise((r) => setTimeout(r, WARM_HANGUP_MS));
    await qmp.execute("stop");
    log.debug({ qemuPid: vm.child.pid, helloMs: t1 - t0, mountAndExecMs: t2 - t1 }, "spare warmed");
    return performance.now() - t0;
  } finally {
    socket.destroy();
  }
}

/** How long a warmed spare runs after its host hangs up, for its agent to notice, before it is paused. */
const WARM_HANGUP_MS = 50;

/**
 * After this many failures in a row (each logged) no spare is started for a while: restores launch
 * QEMU themselves meanwhile, and the first restore after the pause tries again.
 */
const MAX_FAILURES = 3;
const FAILURE_PAUSE_MS = 30_000;

/**
 * Mounts `workspace` where the running VMM's jail expects it (JAIL.workspace; injectWorkspaceInto).
 * The VMM must run as its identity (a reused pid is refused).
 */
export async function injectWorkspace(vm: VmProcess, workspace: string): Promise<void> {
  const pid = vm.child.pid;
  if (pid === undefined || vm.startTime === undefined) throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", "the spare VMM has no pid");
  try {
    await injectWorkspaceInto({ pid, start: vm.startTime }, vm.identity, workspace, JAIL.workspace, "its VMM");
  } catch (err) {
    // Not the snapshot's fault: the spawn falls back to a cold boot, and the snapshot stays.
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", (err as Error).message, { cause: err, details: { snapshotSound: true } });
  }
}

/**
 * Ready VMMs per snapshot key, at most `target` in all (so a budget that counts `target` spares
 * holds however many VM sizes its clients ask for). A restore takes one (or launches QEMU itself
 * when none is ready), then calls refill(), which starts a replacement in the background; when
 * `target` are ready or starting already, a refill for another snapshot takes the place of a spare
 * of the snapshot restored least recently. A spare's `launch` destroys what it started if it fails.
 */
export class VmmSpares {
  private readonly ready = new Map<string, SpareVmm[]>();
  private readonly starting = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private failures = 0;
  private retryAt = 0;
  /** When each snapshot last asked for a spare (a counter): the least recent gives its place up. */
  private readonly lastAsked = new Map<string, number>();
  private asks = 0;

  /** @param pauseMs how long no spare is started after MAX_FAILURES failures in a row. */
  constructor(
    private target: number,
    private readonly pauseMs = FAILURE_PAUSE_MS,
  ) {}

  get size(): number {
    return this.target;
  }

  /** Changes how many to keep ready in all; 0 destroys every spare, the starting ones too. */
  async resize(target: number): Promise<void> {
    this.target = Math.max(0, Math.floor(target));
    this.failures = 0;
    if (this.target === 0) {
      await Promise.all([...this.inflight]);
      await Promise.all([...this.ready.keys()].map((k) => this.discard(k)));
    }
  }

  /** Spares ready, and starting (at most one per snapshot). */
  private count(): number {
    let n = this.starting.size;
    for (const list of this.ready.values()) n += list.length;
    return n;
  }

  /** The QEMU pids of the ready spares (for status and tests). */
  pids(): number[] {
    return [...this.ready.values()].flatMap((list) => list.flatMap(({ vm }) => (vm.child.pid === undefined ? [] : [vm.child.pid])));
  }

  /** The host pids of the ready spares' file jails (bwrap and its agent; for status and tests). */
  jailPids(): number[] {
    return [...this.ready.values()].flatMap((list) => list.flatMap(({ jail }) => jail?.handle.pids() ?? []));
  }

  /** A ready VMM for this snapshot (removed from the spares), or undefined. */
  take(key: string): SpareVmm | undefined {
    const list = this.ready.get(key);
    while (list && list.length > 0) {
      const spare = list.shift();
      if (spare && spare.vm.child.exitCode === null && spare.vm.child.signalCode === null) return spare;
    }
    return undefined;
  }

  /**
   * Starts one replacement for `key` (one at a time per key) while fewer than the target are ready,
   * once `after` has settled (the spawn that took a spare: its file jail may still be starting).
   */
  refill(key: string, launch: () => Promise<SpareVmm>, after?: Promise<unknown>): void {
    this.lastAsked.set(key, ++this.asks);
    const have = this.ready.get(key)?.length ?? 0;
    if (this.target <= have || this.starting.has(key) || this.paused()) return;
    if (this.count() >= this.target) {
      // Full: the snapshot asked for least recently gives up one spare, if it has one ready.
      const victim = [...this.ready.entries()]
        .filter(([k, list]) => k !== key && list.length > 0)
        .sort(([a], [b]) => (this.lastAsked.get(a) ?? 0) - (this.lastAsked.get(b) ?? 0))[0];
      const evicted = victim?.[1].shift();
      if (!evicted) return;
      log.info({ qemuPid: evicted.vm.child.pid }, "a spare of a snapshot restored less recently gives its place to another");
      void destroySpare(evicted);
    }
    this.starting.add(key);
    const job = (async () => {
      // Not before the spawn that asked for it has returned: a launch's first steps (the identity,
      // the run directory, spawning QEMU and bwrap) are synchronous work that would delay it, and
      // the new QEMU and bwrap would take the CPU from it.
      await after?.catch(() => undefined);
      await new Promise((r) => setImmediate(r));
      try {
        const spare = await launch();
        if (this.target <= (this.ready.get(key)?.length ?? 0) || this.count() - this.starting.size >= this.target) {
          await destroySpare(spare);
          return;
        }
        const list = this.ready.get(key) ?? [];
        list.push(spare);
        this.ready.set(key, list);
        // One whose VM or file jail dies while it waits is dropped (and its identities and run
        // directory released) and replaced, as one that was used.
        void Promise.race([spare.vm.exited, ...(spare.jail ? [spare.jail.handle.exited] : [])]).then(async () => {
          const i = list.indexOf(spare);
          if (i >= 0) {
            list.splice(i, 1);
            log.warn({ qemuPid: spare.vm.child.pid }, "a spare VMM or its file jail exited while it waited; replacing it");
            await destroySpare(spare);
            if (this.target > 0) this.refill(key, launch);
          }
        });
        this.failures = 0;
      } catch (err) {
        this.failures++;
        if (this.failures >= MAX_FAILURES) this.retryAt = Date.now() + this.pauseMs;
        log.warn({ err: (err as Error).message, failures: this.failures, ...(this.failures >= MAX_FAILURES ? { pauseMs: this.pauseMs } : {}) }, "a spare VMM failed to start");
      } finally {
        this.starting.delete(key);
      }
      if (!this.paused()) this.refill(key, launch);
    })();
    this.inflight.add(job);
    void job.finally(() => this.inflight.delete(job));
  }

  /** Whether starting spares is paused after failures in a row (until retryAt; then one more try). */
  private paused(): boolean {
    if (this.failures < MAX_FAILURES) return false;
    if (Date.now() < this.retryAt) return true;
    this.failures = MAX_FAILURES - 1;
    return false;
  }

  /** Destroys the ready spares of one snapshot (a snapshot that is discarded). */
  async discard(key: string): Promise<void> {
    // Emptied, not only unlisted: each spare's exit watcher looks for it in this same array, and one
    // still there would be taken for a spare that died while it waited (destroyed twice, and a
    // warning logged for every spare a close() ends).
    const list = (this.ready.get(key) ?? []).splice(0);
    this.ready.delete(key);
    await Promise.all(list.map(destroySpare));
  }
}
