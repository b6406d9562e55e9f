// A fair (FIFO) counting semaphore: bounds how many micro-VMs execute guest work at once in this
// process. Under TCG many VMs running at once thrash (translation caches, context switches) instead
// of sharing the cores; past the bound calls queue in arrival order instead.
import { availableParallelism } from "node:os";
import { LuminaGuardError } from "../errors.js";

interface Waiter {
  grant: () => void;
  reject: (err: Error) => void;
  unhook: () => void;
}

/** A slot held by one caller; `release` is idempotent. */
export interface GateSlot {
  release(): void;
}

export class ExecGate {
  private held = 0;
  private readonly queue: Waiter[] = [];

  /** @param slots how many callers may hold a slot at once; Infinity: no bound (every acquire is granted at once). */
  constructor(readonly slots: number) {
    if (!(slots >= 1)) throw new LuminaGuardError("INVALID_ARGUMENT", `an exec gate needs at least one slot, got ${slots}`);
  }

  /** Slots held now. */
  get active(): number {
    return this.held;
  }

  /** Callers waiting now. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Waits for a slot, in arrival order. A caller whose `signal` aborts while queued leaves the queue
   * with CANCELLED and takes no slot; one granted a slot must release it (a finally block).
   */
  acquire(signal?: AbortSignal): Promise<GateSlot> {
    if (signal?.aborted) return Promise.reject(new LuminaGuardError("CANCELLED", "cancelled while waiting for a VM execution slot"));
    // Nobody is ahead: no queue jumping past a waiter, even when a slot is free at this instant.
    if (this.held < this.slots && this.queue.length === 0) {
      this.held++;
      return Promise.resolve(this.slot());
    }
    return new Promise<GateSlot>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => resolve(this.slot()),
        reject,
        unhook: () => undefined,
      };
      if (signal) {
        const onAbort = (): void => {
          const i = this.queue.indexOf(waiter);
          if (i < 0) return;
          this.queue.splice(i, 1);
          reject(new LuminaGuardError("CANCELLED", "cancelled while waiting for a VM execution slot"));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        waiter.unhook = () => signal.removeEventListener("abort", onAbort);
      }
      this.queue.push(waiter);
    });
  }

  /** Runs `fn` holding a slot. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const slot = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      slot.release();
    }
  }

  private slot(): GateSlot {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        // The slot passes straight to the oldest waiter: `held` stays the same.
        const next = this.queue.shift();
        if (next) {
          next.unhook();
          next.grant();
        } else {
          this.held--;
        }
      },
    };
  }
}

/**
 * Slots of the process-wide gate: LUMINAGUARD_VM_EXEC_SLOTS ("0" or "off": no bound), else 4 × cores
 * (measured at 50 TCG agents on 2 cores: 2 slots 2.6k ops/min, 4 slots 5.5k, 8 slots 7.4k, no bound 6.2k).
 */
export function defaultExecSlots(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env["LUMINAGUARD_VM_EXEC_SLOTS"]?.trim();
  if (raw === "0" || raw === "off") return Infinity;
  if (raw) {
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 1) throw new LuminaGuardError("INVALID_ARGUMENT", `LUMINAGUARD_VM_EXEC_SLOTS must be a positive integer, 0 or off, got ${JSON.stringify(raw)}`);
    return n;
  }
  return 4 * availableParallelism();
}

let shared: ExecGate | undefined;

/** The one gate every micro-VM of this process shares. */
export function vmExecGate(): ExecGate {
  shared ??= new ExecGate(defaultExecSlots());
  return shared;
}
