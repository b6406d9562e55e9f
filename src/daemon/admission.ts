// Admission control: the daemon's budget (memory committed to sandboxes, sandboxes alive, calls in flight) and
// the bounded queue in front of it, FIFO per client and round-robin across clients, with a deadline per request.
import { readFileSync } from "node:fs";
import { freemem, totalmem } from "node:os";
import { LuminaGuardError } from "../errors.js";
import type { BackendName } from "../sandbox/types.js";
import { onAbort } from "../util/abort.js";

/** What QEMU itself takes beside the guest's RAM (device model, TCG translation cache, file jail): a micro-VM commits its RAM plus this. */
export const MICROVM_OVERHEAD_MIB = 64;
/** How long a request waits for room when it names no deadline of its own. */
export const DEFAULT_ADMISSION_WAIT_MS = 30_000;
/** Requests of one kind (sandboxes, calls) waiting at once at most; past it, CAPACITY at once. */
export const DEFAULT_MAX_QUEUE = 1024;
/** Memory the host keeps for itself when the budget is derived: the larger of this and a tenth of its RAM. */
export const MIN_RESERVE_MIB = 1024;

/** Memory a sandbox commits: a namespace sandbox its cgroup limit, a micro-VM its guest RAM and QEMU's own share. */
export function sandboxCostMiB(backend: BackendName, memoryMiB: number): number {
  return backend === "microvm" ? memoryMiB + MICROVM_OVERHEAD_MIB : memoryMiB;
}

/** MemAvailable from /proc/meminfo (what the kernel can give without swapping), else os.freemem(). */
export function availableMemoryMiB(): number {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB$/m.exec(readFileSync("/proc/meminfo", "utf8"));
    if (m) return Math.floor(Number(m[1]) / 1024);
  } catch {
    /* not Linux, or /proc hidden: Node's own figure */
  }
  return Math.floor(freemem() / (1024 * 1024));
}

/** The default memory budget: what is available now minus a reserve for the host (max(1 GiB, 10 % of RAM)); at least 256 MiB. */
export function defaultMemoryBudgetMiB(available = availableMemoryMiB(), total = Math.floor(totalmem() / (1024 * 1024))): number {
  const reserve = Math.max(MIN_RESERVE_MIB, Math.floor(total / 10));
  return Math.max(256, available - reserve);
}

export type AdmissionKind = "sandbox" | "call";
/** How a request left the admission: admitted (at once or after a wait), or refused. */
export type AdmissionOutcome = "admitted" | "timeout" | "queue_full" | "cancelled" | "shutdown" | "too_large";

export interface AdmissionOptions {
  memoryBudgetMiB: number;
  maxSandboxes: number;
  maxCalls: number;
  maxQueue?: number;
  defaultWaitMs?: number;
  /** The retry hint a CAPACITY answer carries when no estimate is better. */
  retryAfterMs?: number;
  /** Each request that leaves the queue: its kind, outcome and wait. */
  onOutcome?: (kind: AdmissionKind, outcome: AdmissionOutcome, waitS: number) => void;
  /** A sandbox request had to wait for room: a warm pool holding some may give one back (a request counts more than a reserve). */
  onPressure?: () => void;
  /** Room was given back (after the queue had its turn): a held-back pool may refill. */
  onRelease?: () => void;
}

export interface AdmitRequest {
  kind: AdmissionKind;
  /** Who asks: the queue is FIFO per client and fair across clients. */
  client: string;
  /** A sandbox's memory cost (sandboxCostMiB); 0 for a call. */
  memoryMiB?: number;
  /** How long the request may wait; default defaultWaitMs. */
  waitMs?: number;
  signal?: AbortSignal;
}

/** What an admitted request holds; `release()` gives it back (idempotent). A sandbox's ticket lives as long as the sandbox. */
export interface Ticket {
  readonly kind: AdmissionKind;
  readonly memoryMiB: number;
  /** Whether it counts against maxSandboxes (a pool's reserve does not). */
  readonly counted: boolean;
  release(): void;
  /** Turns a pool's reserve ticket into a handed-out sandbox's (it starts counting against maxSandboxes). */
  count(): void;
}

interface Waiter {
  req: AdmitRequest;
  enqueuedAt: number;
  grant: (t: Ticket) => void;
  refuse: (e: LuminaGuardError, outcome: AdmissionOutcome) => void;
}

export interface AdmissionStats {
  memoryBudgetMiB: number;
  memoryCommittedMiB: number;
  /** Of the committed memory, what the warm pools hold (ready or spawning). */
  memoryPooledMiB: number;
  sandboxes: number;
  maxSandboxes: number;
  calls: number;
  maxCalls: number;
  queued: { sandbox: number; call: number };
  maxQueue: number;
  clientsWaiting: number;
}

function queueKey(req: AdmitRequest): string {
  return `${req.kind}\0${req.client}`;
}

export class Admission {
  readonly memoryBudgetMiB: number;
  readonly maxSandboxes: number;
  readonly maxCalls: number;
  readonly maxQueue: number;
  readonly defaultWaitMs: number;
  private committedMiB = 0;
  private pooledMiB = 0;
  private sandboxes = 0;
  private calls = 0;
  /** Calls in flight per client: one client may hold at most callShare of them, the rest stay for the others. */
  private readonly callsByClient = new Map<string, number>();
  /** maxCalls less a reserve of a quarter (at least one) that no single client can take. */
  readonly callShare: number;
  /**
   * Per client and kind, its waiters in arrival order; the Map's order is the round-robin order. Sandboxes and
   * calls use different room, so neither kind ever waits behind the other.
   */
  private readonly queues = new Map<string, Waiter[]>();
  private queued = 0;
  private readonly queuedByKind: Record<AdmissionKind, number> = { sandbox: 0, call: 0 };
  private closed = false;

  constructor(private readonly o: AdmissionOptions) {
    this.memoryBudgetMiB = o.memoryBudgetMiB;
    this.maxSandboxes = o.maxSandboxes;
    this.maxCalls = o.maxCalls;
    this.callShare = o.maxCalls > 1 ? o.maxCalls - Math.max(1, Math.floor(o.maxCalls / 4)) : o.maxCalls;
    this.maxQueue = o.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.defaultWaitMs = o.defaultWaitMs ?? DEFAULT_ADMISSION_WAIT_MS;
  }

  get stats(): AdmissionStats {
    const queued = { ...this.queuedByKind };
    return {
      memoryBudgetMiB: this.memoryBudgetMiB,
      memoryCommittedMiB: this.committedMiB,
      memoryPooledMiB: this.pooledMiB,
      sandboxes: this.sandboxes,
      maxSandboxes: this.maxSandboxes,
      calls: this.calls,
      maxCalls: this.maxCalls,
      queued,
      maxQueue: this.maxQueue,
      clientsWaiting: new Set([...this.queues.values()].map((q) => q[0]?.req.client)).size,
    };
  }

  /**
   * Room for the request now, or after a wait in the queue; CAPACITY (with `details.retryAfterMs`) when the
   * queue is full or the wait passes its deadline, CANCELLED when the client goes away, SHUTTING_DOWN on drain.
   */
  admit(req: AdmitRequest): Promise<Ticket> {
    const t0 = performance.now();
    const mem = req.memoryMiB ?? 0;
    const done = (outcome: AdmissionOutcome): void => this.o.onOutcome?.(req.kind, outcome, (performance.now() - t0) / 1000);
    if (this.closed) {
      done("shutdown");
      return Promise.reject(new LuminaGuardError("SHUTTING_DOWN", "the daemon is shutting down and takes no new work"));
    }
    if (req.kind === "sandbox" && mem > this.memoryBudgetMiB) {
      done("too_large");
      return Promise.reject(
        new LuminaGuardError("CAPACITY", `a sandbox of ${mem} MiB does not fit in the daemon's memory budget of ${this.memoryBudgetMiB} MiB at all`, {
          details: { memoryMiB: mem, memoryBudgetMiB: this.memoryBudgetMiB },
        }),
      );
    }
    if (req.signal?.aborted) {
      done("cancelled");
      return Promise.reject(new LuminaGuardError("CANCELLED", "the client went away before it was admitted"));
    }
    // Nobody of its kind waiting and room now: no queue at all.
    if (this.queuedByKind[req.kind] === 0 && this.fits(req)) {
      done("admitted");
      return Promise.resolve(this.take(req));
    }
    if (this.queuedByKind[req.kind] >= this.maxQueue) {
      // Back-pressure falls on whoever fills the queue: a client with more waiters than this one (by two or
      // more) gives up its newest waiter, so a flooding client cannot lock the others out of the queue.
      const hog = this.hogFor(req);
      if (hog) hog.refuse(this.capacity(hog.req, `the admission queue is full (${this.maxQueue} waiting) and this client holds the most of it`), "queue_full");
    }
    if (this.queuedByKind[req.kind] >= this.maxQueue) {
      done("queue_full");
      return Promise.reject(this.capacity(req, `the admission queue is full (${this.maxQueue} ${req.kind === "sandbox" ? "sandbox requests" : "calls"} waiting)`));
    }
    const waitMs = req.waitMs ?? this.defaultWaitMs;
    return new Promise<Ticket>((resolve, reject) => {
      let unhook: () => void = () => undefined;
      let settled = false;
      // Called once, only after the timer below exists (grants and refusals come from pump() or later events).
      const leave = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        unhook();
        this.remove(w);
        return true;
      };
      const w: Waiter = {
        req,
        enqueuedAt: Date.now(),
        grant: (t) => {
          if (!leave()) return t.release();
          done("admitted");
          resolve(t);
        },
        refuse: (e, outcome) => {
          if (!leave()) return;
          done(outcome);
          reject(e);
          // A waiter that leaves may unblock the one behind it in its client's line.
          this.pump();
        },
      };
      const key = queueKey(req);
      let q = this.queues.get(key);
      if (!q) this.queues.set(key, (q = []));
      q.push(w);
      this.queued++;
      this.queuedByKind[req.kind]++;
      const timer = setTimeout(() => w.refuse(this.capacity(req, `no room within ${waitMs} ms (${this.describeLoad()})`), "timeout"), waitMs);
      unhook = onAbort(req.signal, () => w.refuse(new LuminaGuardError("CANCELLED", "the client went away while it waited for room"), "cancelled"));
      this.pump();
      if (!settled && req.kind === "sandbox" && this.pooledMiB > 0) this.o.onPressure?.();
    });
  }

  /**
   * A warm pool asks before it spawns a sandbox for its reserve: granted only when nobody waits and the
   * memory fits (requests come first). The ticket does not count against maxSandboxes until handed out.
   */
  tryReserve(memoryMiB: number): Ticket | undefined {
    if (this.closed || this.queuedByKind.sandbox > 0 || this.committedMiB + memoryMiB > this.memoryBudgetMiB) return undefined;
    return this.take({ kind: "sandbox", client: "pool", memoryMiB }, false);
  }

  /** Refuses every waiter with SHUTTING_DOWN and admits nothing more. */
  close(): void {
    this.closed = true;
    for (const q of [...this.queues.values()]) for (const w of [...q]) w.refuse(new LuminaGuardError("SHUTTING_DOWN", "the daemon is shutting down"), "shutdown");
  }

  private fits(req: AdmitRequest): boolean {
    if (req.kind === "call") return this.calls < this.maxCalls && (this.callsByClient.get(req.client) ?? 0) < this.callShare;
    return this.sandboxes < this.maxSandboxes && this.committedMiB + (req.memoryMiB ?? 0) <= this.memoryBudgetMiB;
  }

  private take(req: AdmitRequest, counted = true): Ticket {
    const mem = req.kind === "sandbox" ? (req.memoryMiB ?? 0) : 0;
    let isCounted = counted;
    if (req.kind === "call") {
      this.calls++;
      this.callsByClient.set(req.client, (this.callsByClient.get(req.client) ?? 0) + 1);
    } else {
      this.committedMiB += mem;
      if (counted) this.sandboxes++;
      else this.pooledMiB += mem;
    }
    let released = false;
    const ticket: Ticket = {
      kind: req.kind,
      memoryMiB: mem,
      get counted() {
        return isCounted;
      },
      release: () => {
        if (released) return;
        released = true;
        if (req.kind === "call") {
          this.calls--;
          const n = (this.callsByClient.get(req.client) ?? 1) - 1;
          if (n > 0) this.callsByClient.set(req.client, n);
          else this.callsByClient.delete(req.client);
        } else {
          this.committedMiB -= mem;
          if (isCounted) this.sandboxes--;
          else this.pooledMiB -= mem;
        }
        this.pump();
        this.o.onRelease?.();
      },
      count: () => {
        if (released || isCounted || req.kind !== "sandbox") return;
        isCounted = true;
        this.pooledMiB -= mem;
        this.sandboxes++;
      },
    };
    return ticket;
  }

  /** Round-robin over the clients with someone waiting; each client's first waiter only (FIFO per client). */
  private pump(): void {
    if (this.closed) return;
    let progress = true;
    while (progress && this.queued > 0) {
      progress = false;
      for (const [key, q] of [...this.queues]) {
        const head = q[0];
        if (!head || !this.fits(head.req)) continue;
        // This key was served: it goes to the back of the round.
        this.queues.delete(key);
        if (q.length > 0) this.queues.set(key, q);
        head.grant(this.take(head.req));
        progress = true;
      }
    }
  }

  /** The newest waiter of the client holding the most of `req`'s kind of queue, if it holds at least two more than `req`'s client. */
  private hogFor(req: AdmitRequest): Waiter | undefined {
    const own = this.queues.get(queueKey(req))?.length ?? 0;
    let hog: Waiter[] | undefined;
    for (const q of this.queues.values()) if (q[0]?.req.kind === req.kind && q.length > (hog?.length ?? own + 1)) hog = q;
    return hog?.[hog.length - 1];
  }

  private remove(w: Waiter): void {
    const key = queueKey(w.req);
    const q = this.queues.get(key);
    if (!q) return;
    const i = q.indexOf(w);
    if (i < 0) return;
    q.splice(i, 1);
    this.queued--;
    this.queuedByKind[w.req.kind]--;
    if (q.length === 0) this.queues.delete(key);
  }

  private describeLoad(): string {
    return `${this.sandboxes}/${this.maxSandboxes} sandboxes, ${this.committedMiB}/${this.memoryBudgetMiB} MiB committed, ${this.calls}/${this.maxCalls} calls in flight, ${this.queued} waiting`;
  }

  private capacity(req: AdmitRequest, why: string): LuminaGuardError {
    const retryAfterMs = this.o.retryAfterMs ?? 1000;
    return new LuminaGuardError("CAPACITY", `${req.kind === "sandbox" ? "no sandbox" : "the call was not run"}: ${why}; retry later`, {
      details: {
        retryAfterMs,
        memoryBudgetMiB: this.memoryBudgetMiB,
        memoryCommittedMiB: this.committedMiB,
        maxSandboxes: this.maxSandboxes,
        sandboxes: this.sandboxes,
        maxCalls: this.maxCalls,
        calls: this.calls,
        queued: this.queued,
      },
    });
  }
}
