// Idle micro-VMs are paused. An idle guest is tickless (its clocksource is the TSC, src/image/build.ts)
// and costs ~0 % of a core (10 idle VMs: 0 ticks of QEMU CPU in 5 s), and what a command starts in the
// background ends with it (the guest agent kills the command's cgroup, guest-agent/cgroup.c). Pausing is
// the backstop for what neither covers (guest kernel work, an agent bug): a VM only needs its vCPU while
// the host waits for a guest answer (the file tools run beside it, in the file jail), so once nothing is
// asked of it for the grace period it is stopped (QMP `stop`) and continued (`cont`, ~0.3 ms) before the
// next request. A stopped guest's clock stands still: after a resume the host sends its time with a `hello`.
//
// The grace adapts to the agent: a pause that the next request ends soon after costs a `stop`, a `cont`
// and (past the clock slack) a `hello` for nothing. So after each resume the grace becomes 1.5x the gap
// the agent left (from its last answer to this request), between the configured grace and
// LUMINAGUARD_VM_PAUSE_GRACE_MAX_MS (2 s); a gap longer than that maximum (an agent that stopped, where
// pausing was right) sets it back to the configured grace. An agent calling every 0.7 s (100 busy agents
// on 2 cores) keeps its VM running; one that stops has it paused within 2 s.
//
// Requests that make the guest work also take a slot of the process-wide exec gate
// (src/runtime/exec-gate.ts), so past saturation they queue instead of thrashing; a VM is not paused
// while its request waits there.
import type { GuestChannel, RequestOptions } from "../../protocol/channel.js";
import { PROTOCOL_VERSION, type GuestOp, type GuestResult } from "../../protocol/messages.js";
import { LuminaGuardError, toLuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { vmExecGate, type ExecGate, type GateSlot } from "../../runtime/exec-gate.js";
import type { SandboxHandle } from "../types.js";
import { connectWhenReady, type VmProcess } from "./qemu.js";
import { QmpClient } from "./qmp.js";
import { lowerAllThreads } from "../priority.js";

/** How long a VM stays running after its last answer before it is paused (back-to-back commands keep it running). */
const DEFAULT_GRACE_MS = 25;
/** The most the grace grows to for an agent whose requests come at longer intervals. */
const DEFAULT_MAX_GRACE_MS = 2_000;
/** The grace after a resume, as a multiple of the gap the agent left. */
const GRACE_PER_GAP = 1.5;
/** A request holds its exec-gate slot at most this long; then it runs on without one. */
const DEFAULT_MAX_HOLD_MS = 1_000;
/** Paused time the guest may fall behind before the next resume resynchronises its clock. */
const CLOCK_SLACK_MS = 250;

export interface IdleOptions {
  /** Pause idle VMs at all (LUMINAGUARD_VM_PAUSE=0 turns it off). */
  pause: boolean;
  /** The grace a VM starts with and returns to after a long idle spell. */
  graceMs: number;
  /** The most it adapts up to (LUMINAGUARD_VM_PAUSE_GRACE_MAX_MS; = graceMs: no adapting). */
  maxGraceMs: number;
  /** The gate guest work queues at; undefined: none. */
  gate: ExecGate | undefined;
  /**
   * Run one command before the VM is handed out (LUMINAGUARD_VM_WARMUP=1): under TCG a fresh VM's
   * first command costs ~10x a later one (its QEMU translates the guest's exec paths afresh, and the
   * workspace is mounted), so this moves that cost from the first call to the spawn.
   */
  warmup: boolean;
  /** How long one request holds its gate slot at most (LUMINAGUARD_VM_EXEC_HOLD_MS). */
  maxHoldMs: number;
}

export function idleOptions(env: NodeJS.ProcessEnv = process.env): IdleOptions {
  const rawGrace = Number(env["LUMINAGUARD_VM_PAUSE_GRACE_MS"] ?? DEFAULT_GRACE_MS);
  const grace = Number.isFinite(rawGrace) && rawGrace >= 0 ? rawGrace : DEFAULT_GRACE_MS;
  const rawMax = Number(env["LUMINAGUARD_VM_PAUSE_GRACE_MAX_MS"] ?? DEFAULT_MAX_GRACE_MS);
  const hold = Number(env["LUMINAGUARD_VM_EXEC_HOLD_MS"] ?? DEFAULT_MAX_HOLD_MS);
  const gate = vmExecGate();
  return {
    pause: env["LUMINAGUARD_VM_PAUSE"] !== "0",
    graceMs: grace,
    maxGraceMs: Math.max(grace, Number.isFinite(rawMax) && rawMax >= 0 ? rawMax : DEFAULT_MAX_GRACE_MS),
    gate: gate.slots === Infinity ? undefined : gate,
    warmup: env["LUMINAGUARD_VM_WARMUP"] === "1",
    maxHoldMs: Number.isFinite(hold) && hold > 0 ? hold : DEFAULT_MAX_HOLD_MS,
  };
}

type Request = GuestChannel["request"];

/** Ops that do not take an exec-gate slot: tiny, and `cancel` must never queue behind the work it stops. */
const UNGATED: ReadonlySet<GuestOp> = new Set<GuestOp>(["cancel", "hello"]);

/** The pause state of one VM; every QMP step runs in order on one chain. */
export class VmIdler {
  private inFlight = 0;
  private paused = false;
  private pausedAt = 0;
  /** Paused time since the guest's clock was last set. */
  private behindMs = 0;
  /** The current grace (adapted to the agent's gaps) and when the last request was answered. */
  private grace: number;
  private lastAnswerAt = 0;
  private lastAskedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  /** Counters, for the handle's info and the tests. */
  readonly stats = { pauses: 0, resumes: 0, clockSyncs: 0 };

  constructor(
    private readonly qmp: QmpClient,
    private readonly request: Request,
    private readonly options: IdleOptions,
    private readonly id: string,
  ) {
    this.grace = options.graceMs;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** How long the VM now stays running after an answer before it is paused. */
  get graceMs(): number {
    return this.grace;
  }

  /**
   * A request for the guest has arrived: the VM is not paused from now until `leave`, also while the
   * request waits for an exec-gate slot. Synchronous. Past saturation every request waits at the gate;
   * pausing the VM meanwhile cost a `stop`, a `cont` and a clock-syncing `hello` round trip per
   * command, for nothing: a tickless idle guest costs no CPU.
   */
  hold(): void {
    this.inFlight++;
    this.lastAskedAt = Date.now();
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** A held request is about to go to the guest: resumes the VM if it was paused before the hold. */
  async enter(): Promise<void> {
    await this.step(async () => {
      if (!this.paused) return;
      await this.qmp.execute("cont");
      this.paused = false;
      this.stats.resumes++;
      const now = Date.now();
      this.behindMs += now - this.pausedAt;
      // The agent asked again `gap` after its last answer (a wait at the exec gate is not its gap): a
      // longer grace would have spared this pause, unless it had stopped for longer than the grace may grow.
      const gap = this.lastAskedAt - this.lastAnswerAt;
      const max = this.options.maxGraceMs;
      this.grace = gap > max ? this.options.graceMs : Math.min(max, Math.max(this.options.graceMs, gap * GRACE_PER_GAP));
      if (this.behindMs > CLOCK_SLACK_MS) {
        // The guest's clock stood still while paused; an image without this support ignores timeMs.
        await this.request("hello", { v: PROTOCOL_VERSION, timeMs: Date.now() }, { deadlineMs: 10_000 });
        this.behindMs = 0;
        this.stats.clockSyncs++;
      }
    });
  }

  leave(): void {
    this.inFlight--;
    if (this.inFlight === 0) {
      this.lastAnswerAt = Date.now();
      this.schedulePause();
    }
  }

  /** Pauses once nothing has been in flight for the grace period. */
  schedulePause(): void {
    if (!this.options.pause || this.closed || this.inFlight > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.step(async () => {
        if (this.paused || this.inFlight > 0 || this.closed) return;
        await this.qmp.execute("stop");
        this.paused = true;
        this.pausedAt = Date.now();
        this.stats.pauses++;
      }).catch((err: unknown) => log.debug({ id: this.id, err: toLuminaGuardError(err).message }, "could not pause an idle VM"));
    }, this.grace);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.qmp.close();
  }

  private step(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(() => {
      if (this.closed) throw new LuminaGuardError("SANDBOX_CLOSED", "the VM is gone");
      return fn();
    });
    this.chain = next.catch(() => undefined);
    return next;
  }
}

/**
 * Makes `handle`'s VM pause while idle and its guest work take an exec-gate slot: wraps the channel's
 * `request` (every request to this guest, `cancel` included, goes through it). Returns the handle
 * with a destroy that also closes the QMP connection; on failure to connect QMP the handle is
 * returned as it was (a VM that is never paused still works).
 */
export async function pauseWhenIdle(handle: SandboxHandle, vm: VmProcess, options: IdleOptions = idleOptions(), open?: QmpClient): Promise<SandboxHandle> {
  // Every QEMU thread started by now (vCPU, RCU, I/O) runs below the host process, also when the
  // spawn lost the race with QEMU's first threads.
  if (vm.child.pid !== undefined) lowerAllThreads(vm.child.pid);
  if (!options.pause && !options.gate && !options.warmup) {
    open?.close();
    return handle;
  }
  let qmp: QmpClient | undefined = open;
  try {
    // QMP takes one client at a time: the restore's own connection is handed over (`open`) or closed by now.
    if (!qmp) {
      qmp = new QmpClient(await connectWhenReady(vm.qmpPath, vm, 5_000));
      await qmp.execute("query-status");
    }
  } catch (err) {
    qmp?.close();
    log.warn({ id: handle.id, err: toLuminaGuardError(err).message }, "no QMP connection to the VM: it is not paused while idle");
    return handle;
  }
  const channel = handle.channel;
  const original: Request = channel.request.bind(channel);
  const idler = new VmIdler(qmp, original, options, handle.id);
  const gate = options.gate;
  const wrapped = async <Op extends GuestOp>(op: Op, args: Record<string, unknown>, o: RequestOptions = {}): Promise<GuestResult<Op>> => {
    if (channel.closed) return await original(op, args, o);
    idler.hold();
    let held = true;
    const release = (): void => {
      if (held) idler.leave();
      held = false;
    };
    let slot: GateSlot | undefined;
    let lend: NodeJS.Timeout | undefined;
    try {
      slot = gate && !UNGATED.has(op) ? await gate.acquire(o.signal) : undefined;
      // A long command (a build, a `sleep`) gives its slot back after a while and runs on ungated: the
      // gate bounds how many short commands thrash at once, it must not park every agent behind four
      // long ones.
      const lent = slot;
      lend = lent ? setTimeout(() => lent.release(), options.maxHoldMs) : undefined;
      lend?.unref();
      try {
        await idler.enter();
      } catch (err) {
        release();
        // A VM that died (or whose QMP did) while paused: the channel's own error names it.
        if (channel.closed) return await original(op, args, o);
        const lost = new LuminaGuardError("GUEST_CHANNEL_LOST", `could not resume the VM: ${toLuminaGuardError(err).message}`, { cause: err });
        channel.fail(lost);
        throw lost;
      }
      return await original(op, args, o);
    } finally {
      release();
      clearTimeout(lend);
      slot?.release();
    }
  };
  channel.request = wrapped as Request;
  idlers.set(channel, idler);
  if (options.warmup) {
    try {
      await channel.request("execute_command", { argv: ["/bin/sh", "-c", "true"], timeoutMs: 10_000, maxOutputBytes: 1024 }, { deadlineMs: 20_000 });
    } catch (err) {
      idler.close();
      await handle.destroy();
      throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `micro-VM ${handle.id}: its warm-up command failed: ${toLuminaGuardError(err).message}`, { cause: err });
    }
  }
  void handle.exited.then(() => idler.close());
  idler.schedulePause();
  return {
    ...handle,
    info: { ...handle.info, pauseWhenIdle: options.pause, execSlots: gate ? gate.slots : 0 },
    destroy: async () => {
      idler.close();
      await handle.destroy();
    },
  };
}

const idlers = new WeakMap<GuestChannel, VmIdler>();

/** The idler of a micro-VM handle (by its VM channel), if it has one: for tests and benchmarks. */
export function idlerOf(handle: SandboxHandle): VmIdler | undefined {
  return idlers.get(handle.channel);
}
