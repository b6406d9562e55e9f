// The daemon's state: warm pools per backend, the sandboxes it handed out, the approval queue and audit log, drain.
import { randomBytes } from "node:crypto";
import { availableParallelism, freemem, loadavg, totalmem } from "node:os";
import { nonInteractiveApprover } from "../approval/approvers.js";
import { AuditLog, readAudit, type AuditEntry } from "../approval/audit.js";
import { ApprovalGate } from "../approval/gate.js";
import { loadPolicy, type Policy } from "../approval/policy.js";
import { ApprovalQueue } from "../approval/queue-approver.js";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { getBackend, probeBackend, resolveBackend } from "../runtime/backends.js";
import { DEFAULT_DISK_MIB } from "../runtime/disk.js";
import { SandboxPool, type PoolStats } from "../runtime/pool.js";
import { DEFAULT_MEMORY_MIB, Sandbox, type RunOptions } from "../runtime/sandbox.js";
import { MicroVmBackend } from "../sandbox/microvm/backend.js";
import type { BackendName, BackendProbe } from "../sandbox/types.js";
import { parseToolArgs } from "../tools/dispatch.js";
import { TOOL_NAMES, type ToolName } from "../tools/registry.js";
import { packageVersion } from "../util/pkg.js";
import { Admission, MICROVM_OVERHEAD_MIB, defaultMemoryBudgetMiB, sandboxCostMiB, type AdmissionStats, type Ticket } from "./admission.js";
import { DaemonMetrics } from "./metrics.js";
import type { CreateSandboxBody, DaemonApprovalMode, SandboxDescription } from "./schemas.js";

export interface PoolSize {
  min?: number | undefined;
  max?: number | undefined;
}

export interface DaemonOptions {
  /** Warm pool sizes per backend; a backend with max 0 gets no pool. Default: namespace 2..8, microvm 1..4. */
  pools?: Partial<Record<BackendName, PoolSize>>;
  /** Sandboxes alive at once at most (handed out, pool excluded); past it, CAPACITY. Default 64. */
  maxSandboxes?: number;
  /** A sandbox without a call for this long is destroyed. Default 10 minutes. */
  idleMs?: number;
  /** The cliff for sandboxes that do not choose: default "off", as the in-process SDK. */
  approval?: DaemonApprovalMode;
  /** No answer within this long is a denial (APPROVAL_TIMEOUT). Default: the policy's, else 300 s. */
  approvalTimeoutMs?: number;
  policyFile?: string;
  audit?: AuditLog;
  /** Seconds a CAPACITY answer tells the client to wait. */
  retryAfterMs?: number;
  /** Memory the daemon may commit to sandboxes (pools included), MiB. Default: MemAvailable at start minus a reserve. */
  memoryBudgetMiB?: number;
  /** Tool calls running at once at most; past it, calls wait in the admission queue. Default 4 per core, at least 8. */
  maxCalls?: number;
  /** Requests waiting for room at once at most; past it, CAPACITY at once. Default 1024. */
  maxQueue?: number;
  /** How long a request waits for room when it names no deadline. Default 30 s. */
  admissionWaitMs?: number;
  /** Micro-VM VMMs kept started and waiting for a restore (src/sandbox/microvm/spares.ts). Default 1. */
  vmmSpares?: number;
}

export const DEFAULT_POOLS: Record<BackendName, { min: number; max: number }> = { namespace: { min: 2, max: 8 }, microvm: { min: 1, max: 4 } };
export const DEFAULT_MAX_SANDBOXES = 64;
export const DEFAULT_IDLE_MS = 10 * 60_000;
export function defaultMaxCalls(): number {
  return Math.max(8, 4 * availableParallelism());
}

interface Entry {
  sandbox: Sandbox;
  memoryMiB: number;
  backend: BackendName;
  approval: DaemonApprovalMode;
  source: "pool" | "spawn";
  createdAt: number;
  lastUsed: number;
  expiresAt?: number;
  inFlight: number;
  client?: string;
  lifetime?: NodeJS.Timeout;
  /** Its room in the budget, given back when it is destroyed. */
  ticket: Ticket;
  /** Destroyed by the daemon (kill, idle, lifetime, drain) rather than dying on its own. */
  killedByUs?: boolean;
}

export interface CallHooks {
  signal?: AbortSignal;
  /** Who asks (the admission queue is fair across clients); default the sandbox's client, else the connection. */
  client?: string;
  connection?: string;
  /** How long the call may wait for room; default the daemon's admission wait. */
  waitMs?: number;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

type State = "starting" | "ready" | "draining" | "stopped";

/** One finished tool call, kept a few minutes for the dashboard's rate and latency charts. */
interface RecentCall {
  at: number;
  /** Run time (approval wait excluded); absent when the call was refused before it ran. */
  ms?: number;
}

export interface RecentError {
  at: string;
  code: string;
  message: string;
  /** The request that failed (`POST /v1/...`). */
  where: string;
}

/** What the dashboard shows (`GET /v1/stats`): read-only, cheap, computed on each request. */
export interface DaemonStats {
  version: string;
  /** Whether this daemon is a cluster node (serve --cluster): the dashboard then asks GET /v1/cluster. */
  clusterNode: boolean;
  state: State;
  uptimeS: number;
  pools: Record<string, PoolStats>;
  /** Micro-VM VMMs waiting for a restore (spares) and how many are kept (0: none). */
  vmmSpares: { ready: number; target: number };
  sandboxes: { alive: number; byBackend: Record<string, number>; max: number; inFlight: number };
  admission: AdmissionStats;
  approvalsPending: number;
  calls: { tool: string; outcome: string; count: number }[];
  errors: { code: string; count: number }[];
  /** The last 60 seconds, one point a second, oldest first: calls finished and their median run time. */
  series: { t: number; calls: number; p50Ms: number | null }[];
  latency: { windowS: number; n: number; p50Ms: number | null; p95Ms: number | null };
  recentErrors: RecentError[];
  host: { memoryTotalBytes: number; memoryAvailableBytes: number; load1: number };
}

const RECENT_CALLS_MS = 5 * 60_000;
const RECENT_CALLS_MAX = 20_000;
const RECENT_ERRORS_MAX = 50;

export class Daemon {
  readonly approvals = new ApprovalQueue();
  readonly audit: AuditLog;
  readonly policy: Policy;
  readonly metrics: DaemonMetrics;
  readonly startedAt = Date.now();
  private readonly pools = new Map<BackendName, SandboxPool>();
  /** The micro-VM backend once start() has asked it to keep spares. */
  private spareBackend: MicroVmBackend | undefined;
  /** The spares' memory, committed in the admission budget while they are kept. */
  private spareTicket: Ticket | undefined;
  private readonly probes = new Map<BackendName, BackendProbe>();
  private readonly sandboxes = new Map<string, Entry>();
  /** Sandboxes the MCP endpoint's sessions hold (admitted through mcpSource; their sessions kill them). */
  private readonly mcpSandboxes = new Set<Sandbox>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private creating = 0;
  private readonly recentCalls: RecentCall[] = [];
  private readonly recentErrors: RecentError[] = [];
  private state: State = "starting";
  private reaper: NodeJS.Timeout | undefined;
  private readonly maxSandboxes: number;
  private readonly idleMs: number;
  private readonly approval: DaemonApprovalMode;
  readonly admission: Admission;
  /** More readiness checks (the cluster node's connection): reported by /readyz under `checks`, each must be ready. */
  readonly readinessChecks = new Map<string, () => { ready: boolean } & Record<string, unknown>>();
  /** Set by a cluster node (`serve --cluster`): the cluster as this node sees it, for GET /v1/cluster and the dashboard. */
  clusterView: (() => Promise<Record<string, unknown>>) | undefined;

  constructor(private readonly options: DaemonOptions = {}) {
    this.maxSandboxes = options.maxSandboxes ?? DEFAULT_MAX_SANDBOXES;
    this.idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.approval = options.approval ?? "off";
    this.audit = options.audit ?? new AuditLog();
    this.policy = loadPolicy(options.policyFile);
    this.metrics = new DaemonMetrics({
      pools: () => [...this.pools].map(([b, p]) => [b, p.stats] as [BackendName, PoolStats]),
      sandboxes: () => [...this.sandboxes.values()].map((e) => ({ backend: e.backend, memoryMiB: e.memoryMiB })),
      pendingApprovals: () => this.approvals.size,
      admission: () => this.admission.stats,
      vmmSpares: () => this.vmmSpares(),
    });
    this.admission = new Admission({
      memoryBudgetMiB: options.memoryBudgetMiB ?? defaultMemoryBudgetMiB(),
      maxSandboxes: this.maxSandboxes,
      maxCalls: options.maxCalls ?? defaultMaxCalls(),
      ...(options.maxQueue !== undefined ? { maxQueue: options.maxQueue } : {}),
      ...(options.admissionWaitMs !== undefined ? { defaultWaitMs: options.admissionWaitMs } : {}),
      ...(options.retryAfterMs !== undefined ? { retryAfterMs: options.retryAfterMs } : {}),
      onOutcome: (kind, outcome, waitS) => {
        this.metrics.admissions.inc({ kind, outcome });
        this.metrics.admissionWait.observe({ kind }, waitS);
      },
      // A request waits for memory a ready pool sandbox holds: that one goes, its room to the request.
      // One still spawning is given up once ready: retried while someone waits and a pool holds room.
      onPressure: () => {
        const tryShed = (): void => {
          const a = this.admission.stats;
          if (a.queued.sandbox === 0 || a.memoryPooledMiB === 0 || this.draining) return;
          for (const p of this.pools.values()) if (p.shed()) return;
          setTimeout(tryShed, 50).unref();
        };
        tryShed();
      },
      // Room given back: a pool the budget held back may grow again.
      onRelease: () => {
        for (const p of this.pools.values()) p.nudge();
      },
    });
  }

  /** Probes both backends and starts a warm pool for each that works here (not waiting for them to fill). */
  async start(): Promise<void> {
    for (const name of ["microvm", "namespace"] as const) {
      const probe = await probeBackend(name);
      this.probes.set(name, probe);
      const asked = this.options.pools?.[name];
      const size = { min: asked?.min ?? DEFAULT_POOLS[name].min, max: asked?.max ?? Math.max(asked?.min ?? 0, DEFAULT_POOLS[name].max) };
      if (!probe.available) {
        log.warn({ backend: name, reason: probe.reason }, "daemon: backend unavailable, no pool");
        continue;
      }
      if (size.max <= 0) continue;
      // Restores (the pool's refills, sandboxes past it) skip QEMU's start with a VMM waiting for them;
      // like the pool, none when the micro-VM pool is off.
      const backend = getBackend(name);
      if (backend instanceof MicroVmBackend) await this.keepSpares(backend);
      const cost = sandboxCostMiB(name, DEFAULT_MEMORY_MIB);
      this.pools.set(
        name,
        new SandboxPool({
          backend,
          minSize: Math.min(size.min, size.max),
          maxSize: size.max,
          // The pool's reserve counts against the memory budget and never grows past it.
          reserve: () => this.admission.tryReserve(cost),
          onFault: (reason) => this.metrics.replaced.inc({ backend: name, reason, where: "pool" }),
        }),
      );
      log.info({ backend: name, min: size.min, max: size.max }, "daemon: warm pool started");
    }
    this.state = "ready";
    this.reaper = setInterval(() => this.reap(), Math.max(50, Math.min(30_000, this.idleMs / 4)));
    this.reaper.unref();
  }

  get draining(): boolean {
    return this.state === "draining" || this.state === "stopped";
  }

  /** The pool the daemon keeps for a backend, if any. */
  pool(backend: BackendName): SandboxPool | undefined {
    return this.pools.get(backend);
  }

  /** The backend the MCP endpoint's sessions use: the first with a pool (microvm first), else the first that works. */
  mcpBackend(): BackendName | undefined {
    for (const b of ["microvm", "namespace"] as const) if (this.pools.has(b)) return b;
    for (const b of ["microvm", "namespace"] as const) if (this.probes.get(b)?.available) return b;
    return undefined;
  }

  /**
   * Where the MCP endpoint's sessions get their sandboxes: through the same admission as `create` (memory
   * budget, sandboxes at most, the queue and its deadline), from the warm pool when it has one ready. The
   * ticket is held as long as the sandbox lives (the session kills it, or it dies) and counted in the budget.
   */
  mcpSource(backend: BackendName): { acquire(signal?: AbortSignal): Promise<Sandbox> } {
    return {
      acquire: async (signal?: AbortSignal): Promise<Sandbox> => {
        this.admit();
        const ticket = await this.admission.admit({ kind: "sandbox", client: "mcp", memoryMiB: sandboxCostMiB(backend, DEFAULT_MEMORY_MIB), ...(signal !== undefined ? { signal } : {}) });
        try {
          const pool = this.pools.get(backend);
          let sandbox: Sandbox;
          if (pool !== undefined && pool.stats.ready > 0) {
            sandbox = await pool.acquire(signal);
            this.shedPools();
          } else {
            this.shedPools();
            sandbox = await Sandbox.create({ backend, daemon: false, ...(signal !== undefined ? { signal } : {}) });
          }
          void Sandbox.exited(sandbox).then(() => ticket.release());
          this.mcpSandboxes.add(sandbox);
          void Sandbox.exited(sandbox).then(() => this.mcpSandboxes.delete(sandbox));
          return sandbox;
        } catch (err) {
          ticket.release();
          throw err;
        }
      },
    };
  }

  /** Ready when running (not draining) and at least one backend works; the reasons otherwise. */
  readiness(): {
    ready: boolean;
    state: State;
    backends: Record<string, { available: boolean; reason?: string; pool?: PoolStats }>;
    checks?: Record<string, { ready: boolean } & Record<string, unknown>>;
  } {
    const backends: Record<string, { available: boolean; reason?: string; pool?: PoolStats }> = {};
    for (const [name, p] of this.probes) {
      const pool = this.pools.get(name);
      backends[name] = { available: p.available, ...(p.reason !== undefined ? { reason: p.reason } : {}), ...(pool ? { pool: pool.stats } : {}) };
    }
    const usable = [...this.probes.values()].some((p) => p.available);
    if (this.readinessChecks.size === 0) return { ready: this.state === "ready" && usable, state: this.state, backends };
    const checks = Object.fromEntries([...this.readinessChecks].map(([name, check]) => [name, check()]));
    return { ready: this.state === "ready" && usable && Object.values(checks).every((c) => c.ready), state: this.state, backends, checks };
  }

  list(): SandboxDescription[] {
    return [...this.sandboxes.values()].filter((e) => e.sandbox.alive).map((e) => describe(e));
  }

  describe(id: string): SandboxDescription {
    return describe(this.entry(id));
  }

  /** New work is refused while draining and past the sandbox limit. */
  private admit(): void {
    if (this.draining) throw new LuminaGuardError("SHUTTING_DOWN", "the daemon is shutting down and takes no new work");
  }

  /**
   * A sandbox, once the budget has room for it (sandboxes alive, memory committed): at once, or after a wait
   * in the admission queue up to the request's deadline; CAPACITY past it.
   */
  async create(body: CreateSandboxBody, signal?: AbortSignal, client?: string, receivedAt = Date.now()): Promise<SandboxDescription> {
    this.admit();
    this.forgetDead();
    // The deadline runs from the request's arrival, not from its turn at the admission.
    const waitMs = Math.max(0, (body.deadlineMs ?? this.admission.defaultWaitMs) - (Date.now() - receivedAt));
    const backend = (await resolveBackend(body.backend ?? "auto")).name;
    const ticket = await this.admission.admit({
      kind: "sandbox",
      client: body.client ?? client ?? "anonymous",
      memoryMiB: sandboxCostMiB(backend, body.memoryMiB ?? DEFAULT_MEMORY_MIB),
      waitMs,
      ...(signal !== undefined ? { signal } : {}),
    });
    this.creating++;
    try {
      return await this.track(this.spawn(backend, body, ticket, signal));
    } catch (err) {
      ticket.release();
      throw err;
    } finally {
      this.creating--;
    }
  }

  /** Past the budget, the pools' ready sandboxes give their room back (a request counts more than a reserve). */
  private shedPools(): void {
    const a = this.admission.stats;
    let over = a.memoryCommittedMiB - a.memoryBudgetMiB;
    for (const p of this.pools.values()) {
      while (over > 0 && p.shed()) over = this.admission.stats.memoryCommittedMiB - a.memoryBudgetMiB;
    }
  }

  private async spawn(backend: BackendName, body: CreateSandboxBody, ticket: Ticket, signal: AbortSignal | undefined): Promise<SandboxDescription> {
    const pool = this.pools.get(backend);
    // The pool's sandboxes have the defaults and a fresh workspace each: anything else is spawned for the request.
    const poolable =
      pool !== undefined &&
      body.workspace === undefined &&
      (body.memoryMiB ?? DEFAULT_MEMORY_MIB) === DEFAULT_MEMORY_MIB &&
      (body.diskMiB ?? DEFAULT_DISK_MIB) === DEFAULT_DISK_MIB &&
      body.fileTools === undefined;
    const t0 = performance.now();
    let sandbox: Sandbox;
    // Only a ready one is taken: waiting for the pool to refill would need room the budget may not have.
    const fromPool = poolable && pool.stats.ready > 0;
    if (fromPool) {
      sandbox = await pool.acquire(signal);
      this.shedPools();
    } else {
      this.shedPools();
      sandbox = await Sandbox.create({
        backend,
        daemon: false,
        ...(body.workspace !== undefined ? { workspace: body.workspace } : {}),
        ...(body.memoryMiB !== undefined ? { memoryMiB: body.memoryMiB } : {}),
        ...(body.diskMiB !== undefined ? { diskMiB: body.diskMiB } : {}),
        ...(body.fileTools !== undefined ? { fileTools: body.fileTools } : {}),
        ...(signal !== undefined ? { signal } : {}),
      });
    }
    const handoutS = (performance.now() - t0) / 1000;
    const source = fromPool ? "pool" : "spawn";
    this.metrics.handout.observe({ backend, source }, handoutS);
    const spawnMs = firstNumber(sandbox.info, ["spawnMs", "restoreMs", "bootMs"]);
    this.metrics.spawn.observe({ backend }, spawnMs !== undefined ? spawnMs / 1000 : handoutS);
    if (this.draining) {
      await sandbox.kill();
      throw new LuminaGuardError("SHUTTING_DOWN", "the daemon is shutting down and takes no new work");
    }
    if (signal?.aborted) {
      // The client went away while its sandbox was made: nobody would ever kill it.
      await sandbox.kill();
      throw new LuminaGuardError("CANCELLED", "the client went away before its sandbox was ready");
    }
    const now = Date.now();
    const entry: Entry = {
      sandbox,
      memoryMiB: body.memoryMiB ?? DEFAULT_MEMORY_MIB,
      backend,
      approval: body.approval ?? this.approval,
      source,
      createdAt: now,
      lastUsed: now,
      inFlight: 0,
      ...(body.client !== undefined ? { client: body.client } : {}),
      ticket,
    };
    // Died on its own (VM killed, process gone): counted, and its room given back at once.
    void Sandbox.exited(sandbox).then(() => {
      if (this.sandboxes.get(sandbox.id) !== entry || entry.killedByUs) return;
      this.metrics.replaced.inc({ backend, reason: "exited", where: "handed_out" });
      log.warn({ id: sandbox.id, backend }, "daemon: a sandbox died on its own");
      this.forget(sandbox.id, entry);
    });
    if (body.timeoutMs !== undefined) {
      entry.expiresAt = now + body.timeoutMs;
      entry.lifetime = setTimeout(() => void this.kill(sandbox.id).catch(() => undefined), body.timeoutMs);
      entry.lifetime.unref();
    }
    this.sandboxes.set(sandbox.id, entry);
    log.info({ id: sandbox.id, backend, source, handoutMs: Math.round(handoutS * 1000 * 100) / 100, client: body.client }, "daemon: sandbox handed out");
    return describe(entry);
  }

  private entry(id: string): Entry {
    const e = this.sandboxes.get(id);
    if (!e || !e.sandbox.alive) throw new LuminaGuardError("NOT_FOUND", `no sandbox ${JSON.stringify(id)} in this daemon (killed, expired or never created)`);
    return e;
  }

  async kill(id: string): Promise<void> {
    const e = this.sandboxes.get(id);
    if (!e) throw new LuminaGuardError("NOT_FOUND", `no sandbox ${JSON.stringify(id)} in this daemon`);
    e.killedByUs = true;
    this.sandboxes.delete(id);
    if (e.lifetime) clearTimeout(e.lifetime);
    try {
      await e.sandbox.kill();
    } finally {
      e.ticket.release();
    }
    log.info({ id }, "daemon: sandbox destroyed");
  }

  /**
   * One tool call: arguments validated with the tools' own schemas, the cliff when the sandbox has one,
   * then exactly Sandbox.callTool's result (passed through the gate's read filter).
   */
  async callTool(id: string, name: ToolName, raw: unknown, hooks: CallHooks = {}): Promise<Record<string, unknown>> {
    this.admit();
    const e = this.entry(id);
    const args = parseToolArgs(name, raw);
    e.inFlight++;
    e.lastUsed = Date.now();
    try {
      return await this.track(this.gatedCall(e, name, args, hooks));
    } finally {
      e.inFlight--;
      e.lastUsed = Date.now();
    }
  }

  private async gatedCall(e: Entry, name: ToolName, args: unknown, hooks: CallHooks): Promise<Record<string, unknown>> {
    let gate: ApprovalGate | undefined;
    const call = { tool: name, args };
    if (e.approval !== "off") {
      gate = new ApprovalGate({
        approver: e.approval === "ask" ? this.approvals.approver({ sandbox: e.sandbox.id, ...(e.client !== undefined ? { client: e.client } : {}) }) : nonInteractiveApprover(),
        policy: this.policy,
        audit: this.audit,
        workspace: e.sandbox.workspace,
        ...(this.options.approvalTimeoutMs !== undefined ? { timeoutMs: this.options.approvalTimeoutMs } : {}),
      });
      // The card shows a write as a diff against the file as the sandbox sees it now.
      const readFile = (path: string): Promise<Buffer | null> => readCurrent(e.sandbox, path, hooks.signal);
      const d = await gate.check(call, { readFile, ...(hooks.signal ? { signal: hooks.signal } : {}) });
      this.metrics.approvals.inc({ decision: d.decision, channel: d.channel });
      if (d.decision === "deny") {
        this.metrics.calls.inc({ tool: name, outcome: d.code ?? "APPROVAL_DENIED" });
        this.noteCall();
        throw new LuminaGuardError(d.code ?? "APPROVAL_DENIED", `${name} not run: ${d.reason} (rule ${d.rule}; audit ${d.auditId})`, {
          details: { rule: d.rule, auditId: d.auditId },
        });
      }
    }
    const ticket = await this.admission.admit({
      kind: "call",
      client: hooks.client ?? e.client ?? hooks.connection ?? "anonymous",
      ...(hooks.waitMs !== undefined ? { waitMs: hooks.waitMs } : {}),
      ...(hooks.signal !== undefined ? { signal: hooks.signal } : {}),
    });
    const t0 = performance.now();
    try {
      const run: RunOptions = {
        ...(hooks.signal !== undefined ? { signal: hooks.signal } : {}),
        ...(hooks.onStdout !== undefined ? { onStdout: hooks.onStdout } : {}),
        ...(hooks.onStderr !== undefined ? { onStderr: hooks.onStderr } : {}),
      };
      const result = await e.sandbox.callTool(name, args, run);
      this.metrics.calls.inc({ tool: name, outcome: "ok" });
      return gate ? gate.filterResult(call, result) : result;
    } catch (err) {
      const code = toLuminaGuardError(err).code;
      this.metrics.calls.inc({ tool: name, outcome: code });
      if (code === "GUEST_CHANNEL_LOST" && !e.killedByUs && this.sandboxes.get(e.sandbox.id) === e) {
        // Its agent is gone: the sandbox is useless; destroy it and give its room back.
        this.metrics.replaced.inc({ backend: e.backend, reason: "channel_lost", where: "handed_out" });
        void this.kill(e.sandbox.id).catch(() => undefined);
      }
      throw err;
    } finally {
      ticket.release();
      const s = (performance.now() - t0) / 1000;
      this.metrics.toolLatency.observe({ tool: name, backend: e.backend }, s);
      this.noteCall(s * 1000);
    }
  }

  private noteCall(ms?: number): void {
    const now = Date.now();
    this.recentCalls.push({ at: now, ...(ms !== undefined ? { ms } : {}) });
    let drop = 0;
    while (drop < this.recentCalls.length && ((this.recentCalls[drop] as RecentCall).at < now - RECENT_CALLS_MS || this.recentCalls.length - drop > RECENT_CALLS_MAX)) drop++;
    if (drop > 0) this.recentCalls.splice(0, drop);
  }

  /** An error the API answered, for the dashboard's list (newest last; the last 50 kept). */
  noteError(e: LuminaGuardError, where: string): void {
    this.recentErrors.push({ at: new Date().toISOString(), code: e.code, message: e.message.slice(0, 500), where: where.slice(0, 300) });
    if (this.recentErrors.length > RECENT_ERRORS_MAX) this.recentErrors.splice(0, this.recentErrors.length - RECENT_ERRORS_MAX);
  }

  async stats(): Promise<DaemonStats> {
    const now = Date.now();
    const pools: Record<string, PoolStats> = {};
    for (const [b, p] of this.pools) pools[b] = p.stats;
    const alive = this.list();
    const byBackend: Record<string, number> = {};
    for (const s of alive) byBackend[s.backend] = (byBackend[s.backend] ?? 0) + 1;
    const calls = (await this.metrics.calls.get()).values.map((v) => ({ tool: String(v.labels.tool), outcome: String(v.labels.outcome), count: v.value }));
    const errors = (await this.metrics.errors.get()).values.map((v) => ({ code: String(v.labels.code), count: v.value }));
    const windowS = 60;
    const end = Math.floor(now / 1000) * 1000 + 1000;
    const buckets: number[][] = Array.from({ length: windowS }, () => []);
    const counts = new Array<number>(windowS).fill(0);
    const ran: number[] = [];
    for (const c of this.recentCalls) {
      const i = windowS - 1 - Math.floor((end - 1 - c.at) / 1000);
      if (i < 0 || i >= windowS) continue;
      counts[i] = (counts[i] ?? 0) + 1;
      if (c.ms !== undefined) {
        buckets[i]?.push(c.ms);
        ran.push(c.ms);
      }
    }
    const series = buckets.map((b, i) => ({ t: end - (windowS - i) * 1000, calls: counts[i] ?? 0, p50Ms: quantile(b, 0.5) }));
    const load1 = loadavg()[0] ?? 0;
    return {
      version: packageVersion(),
      clusterNode: this.clusterView !== undefined,
      state: this.state,
      uptimeS: Math.round((now - this.startedAt) / 1000),
      pools,
      vmmSpares: this.vmmSpares(),
      sandboxes: { alive: alive.length, byBackend, max: this.maxSandboxes, inFlight: this.inFlight.size },
      admission: this.admission.stats,
      approvalsPending: this.approvals.size,
      calls,
      errors,
      series,
      latency: { windowS, n: ran.length, p50Ms: quantile(ran, 0.5), p95Ms: quantile(ran, 0.95) },
      recentErrors: this.recentErrors.slice(-20).reverse(),
      host: { memoryTotalBytes: totalmem(), memoryAvailableBytes: freemem(), load1 },
    };
  }

  /**
   * Keeps the asked number of spare VMMs (restores skip QEMU's start), their memory committed in the
   * budget like a pool's: a spare is a QEMU with a few guest pages of its own (~58 MiB PSS warmed),
   * counted as a micro-VM's overhead each. None when the budget has no room for them.
   */
  private async keepSpares(backend: MicroVmBackend): Promise<void> {
    await backend.keepSpares(this.options.vmmSpares ?? 1);
    this.spareBackend = backend;
    const n = backend.spareTarget;
    if (n === 0) return;
    this.spareTicket = this.admission.tryReserve(n * MICROVM_OVERHEAD_MIB);
    if (!this.spareTicket) {
      log.warn({ spares: n, memoryBudgetMiB: this.admission.memoryBudgetMiB }, "daemon: no room in the memory budget for spare VMMs; restores launch QEMU themselves");
      await backend.keepSpares(0);
    }
  }

  /** The micro-VM backend's spares, if this daemon keeps any. */
  private vmmSpares(): { ready: number; target: number } {
    const b = this.spareBackend;
    return b ? { ready: b.sparePids().length, target: b.spareTarget } : { ready: 0, target: 0 };
  }

  /** The last `tail` entries of the audit log. */
  auditTail(tail = 100): { entries: AuditEntry[]; skipped: number } {
    const { entries, skipped } = readAudit(this.audit.file);
    return { entries: entries.slice(-tail), skipped };
  }

  /** Keeps track of work in progress, for the drain. */
  private track<T>(p: Promise<T>): Promise<T> {
    const tracked = p.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
    return tracked;
  }

  /** Forgets sandboxes that died on their own (their Sandbox killed itself): they no longer count. */
  private forgetDead(): void {
    for (const [id, e] of this.sandboxes) if (!e.sandbox.alive) this.forget(id, e);
  }

  private forget(id: string, e: Entry): void {
    if (this.sandboxes.get(id) === e) this.sandboxes.delete(id);
    if (e.lifetime) clearTimeout(e.lifetime);
    // Its processes are gone; its Sandbox cleans up the rest (workspace) on its own.
    void e.sandbox.kill().catch(() => undefined);
    e.ticket.release();
  }

  /** Destroys sandboxes past their idle time, and forgets those that died on their own. */
  private reap(): void {
    this.forgetDead();
    const now = Date.now();
    for (const [id, e] of this.sandboxes) {
      if (e.inFlight === 0 && now - e.lastUsed > this.idleMs) {
        log.info({ id, idleMs: this.idleMs }, "daemon: idle sandbox destroyed");
        void this.kill(id).catch(() => undefined);
      }
    }
  }

  get busy(): number {
    return this.inFlight.size;
  }

  /**
   * SIGTERM: no new work from now on; pending approvals are denied; calls in flight get `graceMs` to finish;
   * then every sandbox is destroyed and the pools drained. Resolves when nothing is left.
   */
  async drain(graceMs: number): Promise<{ waitedMs: number; unfinished: number; destroyed: number }> {
    if (this.state === "stopped") return { waitedMs: 0, unfinished: 0, destroyed: 0 };
    this.state = "draining";
    const t0 = Date.now();
    this.admission.close();
    this.approvals.denyAll("the daemon is shutting down");
    if (this.inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.inFlight]),
        new Promise<void>((r) => {
          timer = setTimeout(r, graceMs);
        }),
      ]);
      if (timer) clearTimeout(timer);
    }
    const unfinished = this.inFlight.size;
    if (this.reaper) clearInterval(this.reaper);
    const ids = [...this.sandboxes.keys()];
    await Promise.allSettled(ids.map((id) => this.kill(id)));
    // The MCP endpoint's sessions end with the server; any sandbox one still holds goes now.
    await Promise.allSettled([...this.mcpSandboxes].map((s) => s.kill()));
    await Promise.allSettled([...this.pools.values()].map((p) => p.drain()));
    const vms = getBackend("microvm");
    if (vms instanceof MicroVmBackend) await vms.close();
    this.spareTicket?.release();
    this.spareTicket = undefined;
    // Calls cut off by the kills settle now (GUEST_CHANNEL_LOST or SANDBOX_CLOSED); their answers go out before the server closes.
    await Promise.allSettled([...this.inFlight]);
    this.state = "stopped";
    return { waitedMs: Date.now() - t0, unfinished, destroyed: ids.length };
  }
}

function describe(e: Entry): SandboxDescription {
  const s = e.sandbox;
  const servedBy = Object.fromEntries(TOOL_NAMES.map((t) => [t, s.servedBy(t)])) as SandboxDescription["servedBy"];
  return {
    id: s.id,
    backend: e.backend,
    workspace: s.workspace,
    info: { ...s.info, via: "daemon" },
    servedBy,
    approval: e.approval,
    source: e.source,
    createdAt: new Date(e.createdAt).toISOString(),
    lastUsedAt: new Date(e.lastUsed).toISOString(),
    ...(e.expiresAt !== undefined ? { expiresAt: new Date(e.expiresAt).toISOString() } : {}),
    inFlight: e.inFlight,
    ...(e.client !== undefined ? { client: e.client } : {}),
  };
}

async function readCurrent(sandbox: Sandbox, path: string, signal: AbortSignal | undefined): Promise<Buffer | null> {
  try {
    return (await sandbox.files.read(path, signal ? { signal } : {})).content;
  } catch (err) {
    if (err instanceof LuminaGuardError && err.code === "NOT_FOUND") return null;
    throw err;
  }
}

/** The q-quantile (nearest rank) of some milliseconds, rounded to 0.01 ms; null when there are none. */
function quantile(xs: number[], q: number): number | null {
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  const v = sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
  return Math.round(v * 100) / 100;
}

function firstNumber(info: Readonly<Record<string, unknown>>, keys: string[]): number | undefined {
  for (const k of keys) {
    const v = info[k];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return undefined;
}

export function newRequestId(): string {
  return randomBytes(6).toString("hex");
}
