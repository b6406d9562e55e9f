// Warm pools: ready, never-used sandboxes handed out in O(1), refilled in the background, destroyed after one use.
import { randomBytes } from "node:crypto";
import { cpus } from "node:os";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { onAbort } from "../util/abort.js";
import type { SandboxBackend, SandboxHandle } from "../sandbox/types.js";
import { diskLimit, type DiskLimit } from "./disk.js";
import { DEFAULT_MEMORY_MIB, DEFAULT_PIDS_MAX, Sandbox, type SandboxOptions } from "./sandbox.js";
import { removeIfOwned, workspaceFor, type Workspace } from "./workspace.js";

/** Each sandbox's limits and file tools, as for Sandbox.create. */
type PerSandbox = Pick<SandboxOptions, "memoryMiB" | "pidsMax" | "vcpus" | "diskMiB" | "diskInodes" | "fileTools">;

interface PoolOptions extends PerSandbox {
  backend: SandboxBackend;
  /** Ready sandboxes kept when idle. */
  minSize?: number;
  /** Ready sandboxes kept at most, reached under demand. */
  maxSize?: number;
  /** Spawns in flight at once; default: one per core, leaving one core for the work itself. */
  refillConcurrency?: number;
  /** After this long without a hand-out, the target shrinks back to minSize. */
  idleMs?: number;
  /** Every sandbox of the pool sees this host directory; default: each gets its own fresh one. */
  workspace?: string;
  /**
   * Run one throwaway command in each sandbox before it counts as ready. Under TCG a restored VM
   * translates every code path on first use (~50 ms for the first fork+exec); paying that in the
   * background keeps it off the first real call. Default: on for microvm, off for namespace.
   */
  prewarm?: boolean;
  /**
   * Budget hook (the daemon's admission control): asked before each spawn; no answer means no room, and
   * the pool does not grow until nudge(). What it returns is released when the sandbox leaves the pool.
   */
  reserve?: () => PoolReservation | undefined;
  /** A ready sandbox died on its own (it is dropped and replaced). */
  onFault?: (reason: "exited") => void;
}

/** Room a budget gave the pool for one sandbox. */
export interface PoolReservation {
  release(): void;
}

export interface PoolStats {
  ready: number;
  spawning: number;
  waiting: number;
  target: number;
  handedOut: number;
  spawned: number;
  spawnFailures: number;
}

interface Ready {
  handle: SandboxHandle;
  workspace: Workspace;
  reservation?: PoolReservation | undefined;
}

interface Waiter {
  resolve: (r: Ready) => void;
  reject: (e: LuminaGuardError) => void;
}

/** Consecutive spawn failures after which waiters get the error instead of waiting forever. */
const MAX_CONSECUTIVE_FAILURES = 3;

export class SandboxPool {
  private readonly ready: Ready[] = [];
  private readonly waiters: Waiter[] = [];
  private spawning = 0;
  private target: number;
  private readonly minSize: number;
  private readonly maxSize: number;
  private readonly concurrency: number;
  private readonly idleMs: number;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private consecutiveFailures = 0;
  private lastError: LuminaGuardError | undefined;
  private readonly counters = { handedOut: 0, spawned: 0, spawnFailures: 0 };
  private readonly inFlight = new Set<Promise<void>>();
  private readonly disk: DiskLimit;

  constructor(private readonly options: PoolOptions) {
    // A bad limit is the caller's mistake: say so now, not as spawn failures later.
    this.disk = diskLimit(options.diskMiB, options.diskInodes);
    this.minSize = options.minSize ?? 2;
    this.maxSize = Math.max(this.minSize, options.maxSize ?? Math.max(8, this.minSize));
    this.concurrency = options.refillConcurrency ?? Math.max(1, cpus().length - 1);
    this.idleMs = options.idleMs ?? 30_000;
    this.target = this.minSize;
    this.refill();
  }

  get stats(): PoolStats {
    return { ready: this.ready.length, spawning: this.spawning, waiting: this.waiters.length, target: this.target, ...this.counters };
  }

  /** Resolves once `n` sandboxes are ready (for benchmarks and start-up). */
  async warm(n = this.minSize, timeoutMs = 120_000): Promise<void> {
    this.target = Math.min(this.maxSize, Math.max(this.target, n));
    this.refill();
    const end = Date.now() + timeoutMs;
    while (this.ready.length < n) {
      if (this.consecutiveFailures >= MAX_CONSECUTIVE_FAILURES && this.lastError) throw this.lastError;
      if (Date.now() > end) throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `pool did not reach ${n} ready sandboxes within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** A ready, never-used sandbox: O(1) from the pool, or the next one to become ready. */
  async acquire(signal?: AbortSignal): Promise<Sandbox> {
    if (this.closed) throw new LuminaGuardError("SANDBOX_CLOSED", "the pool is shut down");
    this.noteDemand();
    const r = this.ready.shift() ?? (await this.waitForReady(signal));
    this.counters.handedOut++;
    // Budget hook: the taker accounts for the sandbox from now on.
    r.reservation?.release();
    // Refill after the caller has its sandbox: starting a spawn has a synchronous part (fork, mkdir)
    // that must not sit on the hand-out path.
    setImmediate(() => this.refill());
    return Sandbox.fromHandle(r.handle, r.workspace, { disk: this.disk });
  }

  /** Stops refilling, destroys every ready sandbox, waits for spawns in flight and destroys them too. */
  async drain(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const w of this.waiters.splice(0)) w.reject(new LuminaGuardError("SANDBOX_CLOSED", "the pool is shut down"));
    await Promise.allSettled([...this.inFlight]);
    await Promise.allSettled(this.ready.splice(0).map((r) => this.dispose(r)));
  }

  // --- Budget hook (daemon admission control) ---
  /** Retries a refill the budget held back. */
  nudge(): void {
    this.refill();
  }

  /** Destroys one ready sandbox to give its room back to the budget; false when none is ready. */
  shed(): boolean {
    const r = this.ready.pop();
    if (!r) return false;
    void this.dispose(r);
    return true;
  }
  // --- end budget hook ---

  private waitForReady(signal?: AbortSignal): Promise<Ready> {
    if (this.consecutiveFailures >= MAX_CONSECUTIVE_FAILURES && this.lastError) return Promise.reject(this.lastError);
    return new Promise<Ready>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (r) => {
          unhook();
          resolve(r);
        },
        reject: (e) => {
          unhook();
          reject(e);
        },
      };
      this.waiters.push(waiter);
      const unhook = onAbort(signal, () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new LuminaGuardError("CANCELLED", "waiting for a sandbox was cancelled"));
      });
      this.refill();
    });
  }

  /** Demand grows the target (up to maxSize); a quiet spell shrinks it back. */
  private noteDemand(): void {
    if (this.ready.length === 0) this.target = Math.min(this.maxSize, this.target + 1);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.shrink(), this.idleMs);
    this.idleTimer.unref();
  }

  private shrink(): void {
    this.target = this.minSize;
    while (this.ready.length > this.target) {
      const extra = this.ready.pop();
      if (extra) void this.dispose(extra);
    }
  }

  private refill(): void {
    if (this.closed) return;
    while (this.spawning < this.concurrency && this.ready.length + this.spawning < this.target + this.waiters.length) {
      if (this.consecutiveFailures >= MAX_CONSECUTIVE_FAILURES) {
        // Stop hammering a broken backend; waiters get the named error now, a later acquire retries.
        const err = this.lastError ?? new LuminaGuardError("SANDBOX_SPAWN_FAILED", "the pool cannot spawn sandboxes");
        for (const w of this.waiters.splice(0)) w.reject(err);
        this.consecutiveFailures = MAX_CONSECUTIVE_FAILURES - 1;
        return;
      }
      let reservation: PoolReservation | undefined;
      if (this.options.reserve) {
        reservation = this.options.reserve();
        if (!reservation) break;
      }
      this.spawning++;
      const p = this.spawnOne(reservation).finally(() => {
        this.spawning--;
        this.inFlight.delete(p);
        this.refill();
      });
      this.inFlight.add(p);
    }
  }

  private async spawnOne(reservation?: PoolReservation): Promise<void> {
    let ws: Workspace | undefined;
    let handle: SandboxHandle;
    try {
      ws = await workspaceFor(this.options.workspace, this.disk);
      handle = await this.options.backend.spawn({
        id: `lg-${randomBytes(6).toString("hex")}`,
        workspace: ws.path,
        ...(ws.checked !== undefined ? { checked: ws.checked } : {}),
        memoryMiB: this.options.memoryMiB ?? DEFAULT_MEMORY_MIB,
        pidsMax: this.options.pidsMax ?? DEFAULT_PIDS_MAX,
        vcpus: this.options.vcpus ?? 1,
        diskMiB: this.disk.mib,
        ...(this.options.fileTools !== undefined ? { fileTools: this.options.fileTools } : {}),
      });
    } catch (err) {
      reservation?.release();
      if (ws) await removeIfOwned(ws);
      this.counters.spawnFailures++;
      this.consecutiveFailures++;
      this.lastError = toLuminaGuardError(err, "SANDBOX_SPAWN_FAILED");
      log.warn({ err: this.lastError.message }, "pool spawn failed");
      return;
    }
    if (this.options.prewarm ?? this.options.backend.name === "microvm") {
      try {
        await handle.channel.request("execute_command", { argv: ["true"], timeoutMs: 10_000, maxOutputBytes: 1024 }, { deadlineMs: 20_000 });
      } catch (err) {
        await this.dispose({ handle, workspace: ws, reservation });
        this.counters.spawnFailures++;
        this.consecutiveFailures++;
        this.lastError = toLuminaGuardError(err, "SANDBOX_SPAWN_FAILED");
        return;
      }
    }
    this.consecutiveFailures = 0;
    this.counters.spawned++;
    const r: Ready = { handle, workspace: ws, reservation };
    if (this.closed) return void (await this.dispose(r));
    // A pooled sandbox that dies while waiting is dropped, never handed out.
    void handle.exited.then(() => {
      const i = this.ready.indexOf(r);
      if (i >= 0) {
        this.ready.splice(i, 1);
        this.options.onFault?.("exited");
        void this.dispose(r);
        this.refill();
      }
    });
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(r);
    else this.ready.push(r);
  }

  /** Destroys a sandbox nobody took, then its workspace (a size-limited one is unmounted, its image deleted). */
  private async dispose(r: Ready): Promise<void> {
    try {
      await r.handle.destroy();
    } catch (err) {
      log.warn({ id: r.handle.id, err: String(err) }, "pool: destroying a sandbox failed");
    }
    await removeIfOwned(r.workspace);
    r.reservation?.release();
  }
}
