// One MCP session's hold on the runtime: its sandbox from the warm pool, its calls in flight, its idle timer.
import type { LoggingLevel } from "@modelcontextprotocol/sdk/types.js";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import type { SandboxApi } from "../../runtime/sandbox.js";
import { onAbort, raceAbort } from "../../util/abort.js";

export type SessionTransport = "stdio" | "http";

/** Where a session's sandboxes come from: the warm pool (SandboxPool), or the cluster (`luminaguard mcp --cluster`). */
export interface SandboxSource {
  acquire(signal?: AbortSignal): Promise<SandboxApi>;
}

interface SandboxSessionOptions {
  id: string;
  transport: SessionTransport;
  pool: SandboxSource;
  /** Quiet time (no request, nothing in flight) after which `onIdle` runs. */
  idleMs: number;
  /** Idle time for a session that never made a tool call (a client that initialized and left); default idleMs. */
  freshIdleMs?: number;
  /** Calls in flight at once; more get a busy error instead of a queue. */
  maxInFlight: number;
  onIdle: (session: SandboxSession) => void;
}

type RequestId = string | number;

export class SandboxSession {
  readonly id: string;
  readonly transport: SessionTransport;
  private sandbox: SandboxApi | undefined;
  private acquiring: Promise<SandboxApi> | undefined;
  private readonly inFlight = new Map<RequestId, AbortController>();
  private readonly unlink = new WeakMap<AbortController, () => void>();
  private idleTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  /** Aborted on close: stops a pool acquisition nobody will use. */
  private readonly lifetime = new AbortController();
  private sandboxesUsed = 0;
  private callsBegun = 0;
  /** The session's own log channel to its client (MCP `notifications/message`); set by the session's server. */
  onEvent: ((level: LoggingLevel, data: Record<string, unknown>) => void) | undefined;
  /** Date.now() of the last request of this session (the LRU order of eviction). */
  lastActive = Date.now();

  constructor(private readonly options: SandboxSessionOptions) {
    this.id = options.id;
    this.transport = options.transport;
    this.armIdle();
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Host pids of the session's current sandbox (for tests and status). */
  get sandboxInfo(): { id: string; workspace: string; pids: number[] } | undefined {
    const s = this.sandbox;
    return s?.alive ? { id: s.id, workspace: s.workspace, pids: s.pids() } : undefined;
  }

  get stats(): { inFlight: number; sandboxesUsed: number; calls: number } {
    return { inFlight: this.inFlight.size, sandboxesUsed: this.sandboxesUsed, calls: this.callsBegun };
  }

  /** A call is in flight: the session may not be evicted. */
  get busy(): boolean {
    return this.inFlight.size > 0;
  }

  /**
   * Registers a call; its signal aborts when the client cancels (`parent`), disconnects (`abort(id)`) or the
   * session closes. Throws when the session is closed or already at its bound.
   */
  begin(requestId: RequestId, parent?: AbortSignal): AbortController {
    if (this.closing) throw new LuminaGuardError("SANDBOX_CLOSED", `session ${this.id} is closed`);
    if (this.inFlight.size >= this.options.maxInFlight) {
      throw new LuminaGuardError("SESSION_BUSY", `too many calls in flight in this session (limit ${this.options.maxInFlight}); retry when one has finished`, {
        details: { errno: "EAGAIN" },
      });
    }
    const controller = new AbortController();
    // Unhooked in end(): aborting a finished call's controller just to drop the listener costs a DOMException per call.
    if (parent) this.unlink.set(controller, onAbort(parent, () => controller.abort()));
    this.inFlight.get(requestId)?.abort();
    this.inFlight.set(requestId, controller);
    this.callsBegun++;
    this.lastActive = Date.now();
    this.disarmIdle();
    return controller;
  }

  end(requestId: RequestId, controller: AbortController): void {
    if (this.inFlight.get(requestId) === controller) this.inFlight.delete(requestId);
    this.unlink.get(controller)?.();
    this.unlink.delete(controller);
    if (this.inFlight.size === 0) this.armIdle();
  }

  /** The client went away mid-call: stop the call (the guest kills a command's process tree). */
  abort(requestId: RequestId): void {
    this.inFlight.get(requestId)?.abort();
  }

  /** Any request of the session counts as activity. */
  touch(): void {
    this.lastActive = Date.now();
    if (this.inFlight.size === 0) this.armIdle();
  }

  /** The session's sandbox, taken from the warm pool on first use; a sandbox that died is replaced. */
  async sandboxFor(signal: AbortSignal): Promise<SandboxApi> {
    if (this.closing) throw new LuminaGuardError("SANDBOX_CLOSED", `session ${this.id} is closed`);
    if (this.sandbox?.alive) return this.sandbox;
    if (this.sandbox) {
      log.warn({ session: this.id, sandbox: this.sandbox.id }, "mcp session: sandbox died; the next call gets a fresh one");
      this.onEvent?.("warning", { event: "sandbox.died", sandbox: this.sandbox.id });
      this.sandbox = undefined;
    }
    this.acquiring ??= this.options.pool.acquire(this.lifetime.signal).then(
      (s) => {
        this.acquiring = undefined;
        if (this.closing) {
          void s.kill();
          throw new LuminaGuardError("SANDBOX_CLOSED", `session ${this.id} is closed`);
        }
        this.sandbox = s;
        this.sandboxesUsed++;
        log.debug({ session: this.id, sandbox: s.id, workspace: s.workspace }, "mcp session: sandbox acquired");
        return s;
      },
      (err: unknown) => {
        this.acquiring = undefined;
        throw err;
      },
    );
    return await raceAbort(this.acquiring, signal, () => new LuminaGuardError("CANCELLED", "the call was cancelled"));
  }

  /** Kills the sandbox (single use); the session stays open and a later call gets a fresh one. */
  async releaseSandbox(): Promise<void> {
    const s = this.sandbox;
    this.sandbox = undefined;
    if (s) {
      log.debug({ session: this.id, sandbox: s.id }, "mcp session: sandbox released");
      if (!this.closing) this.onEvent?.("info", { event: "sandbox.released", sandbox: s.id, reason: "idle" });
      await s.kill();
    }
  }

  /** Aborts everything in flight and kills the sandbox. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.disarmIdle();
      this.lifetime.abort();
      for (const c of this.inFlight.values()) c.abort();
      this.inFlight.clear();
      await this.acquiring?.catch(() => undefined);
      await this.releaseSandbox();
    })();
    return this.closing;
  }

  private armIdle(): void {
    if (this.closing) return;
    this.disarmIdle();
    const idleMs = this.callsBegun === 0 ? (this.options.freshIdleMs ?? this.options.idleMs) : this.options.idleMs;
    this.idleTimer = setTimeout(() => {
      if (this.inFlight.size === 0 && !this.closing) {
        log.info({ session: this.id, idleMs }, "mcp session idle");
        this.options.onIdle(this);
      }
    }, idleMs);
    this.idleTimer.unref();
  }

  private disarmIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
