// The daemon's Prometheus metrics: one registry per daemon, exposed at GET /metrics in the text format.
import { freemem, loadavg, totalmem } from "node:os";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { PoolStats } from "../runtime/pool.js";
import type { AdmissionStats } from "./admission.js";
import type { BackendName } from "../sandbox/types.js";

/** Seconds; from a namespace spawn (~10 ms) to a cold micro-VM boot under TCG (seconds). */
const SPAWN_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds; a hot pool hands out in microseconds, an empty one waits for a spawn. */
const HANDOUT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds; admitted at once (~0) up to the default deadline (30 s). */
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];
const TOOL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface MetricsSources {
  pools: () => Iterable<[BackendName, PoolStats]>;
  sandboxes: () => Iterable<{ backend: BackendName; memoryMiB: number }>;
  pendingApprovals: () => number;
  admission: () => AdmissionStats;
  /** Micro-VM VMMs started ahead and waiting for a restore (spares), and how many are kept. */
  vmmSpares: () => { ready: number; target: number };
}

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly spawn: Histogram<"backend">;
  readonly handout: Histogram<"backend" | "source">;
  readonly toolLatency: Histogram<"tool" | "backend">;
  readonly calls: Counter<"tool" | "outcome">;
  readonly errors: Counter<"code">;
  readonly approvals: Counter<"decision" | "channel">;
  readonly recovered: Counter<"kind">;
  readonly admissions: Counter<"kind" | "outcome">;
  readonly admissionWait: Histogram<"kind">;
  readonly replaced: Counter<"backend" | "reason" | "where">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "luminaguard_daemon_" });
    // Gauges named *_total, which Prometheus' own lint (promtool check metrics) refuses.
    for (const m of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) this.registry.removeSingleMetric(`luminaguard_daemon_${m}`);
    this.spawn = new Histogram({
      name: "luminaguard_sandbox_spawn_seconds",
      help: "Time to start one sandbox until its agent answered (a micro-VM: restore from the snapshot), as the backend measured it",
      labelNames: ["backend"],
      buckets: SPAWN_BUCKETS,
      registers,
    });
    this.handout = new Histogram({
      name: "luminaguard_sandbox_handout_seconds",
      help: "Time from a create request to a ready sandbox: from the warm pool, or spawned for the request",
      labelNames: ["backend", "source"],
      buckets: HANDOUT_BUCKETS,
      registers,
    });
    this.toolLatency = new Histogram({
      name: "luminaguard_tool_call_seconds",
      help: "Latency of tool calls through the daemon, approval wait excluded",
      labelNames: ["tool", "backend"],
      buckets: TOOL_BUCKETS,
      registers,
    });
    this.calls = new Counter({ name: "luminaguard_tool_calls_total", help: "Tool calls by tool and outcome (ok, or the error code)", labelNames: ["tool", "outcome"], registers });
    this.errors = new Counter({ name: "luminaguard_errors_total", help: "Errors the API answered, by stable error code", labelNames: ["code"], registers });
    this.approvals = new Counter({
      name: "luminaguard_approvals_total",
      help: "Approval gate decisions by decision (allow, deny) and channel (policy, http, ...)",
      labelNames: ["decision", "channel"],
      registers,
    });
    this.recovered = new Counter({ name: "luminaguard_recovered_total", help: "Leftovers of a crashed run removed at start-up, by kind", labelNames: ["kind"], registers });
    new Gauge({
      name: "luminaguard_pool_sandboxes",
      help: "Warm pool sandboxes by backend and state (ready, spawning, target)",
      labelNames: ["backend", "state"],
      registers,
      collect() {
        this.reset();
        for (const [backend, s] of sources.pools()) {
          this.set({ backend, state: "ready" }, s.ready);
          this.set({ backend, state: "spawning" }, s.spawning);
          this.set({ backend, state: "target" }, s.target);
        }
      },
    });
    new Gauge({
      name: "luminaguard_pool_waiting",
      help: "Requests waiting for a sandbox from the warm pool, by backend",
      labelNames: ["backend"],
      registers,
      collect() {
        this.reset();
        for (const [backend, s] of sources.pools()) this.set({ backend }, s.waiting);
      },
    });
    new Gauge({
      name: "luminaguard_vmm_spares",
      help: "Micro-VM VMMs started, warmed and paused ahead of a restore, by state (ready; target: how many are kept)",
      labelNames: ["state"],
      registers,
      collect() {
        const s = sources.vmmSpares();
        this.set({ state: "ready" }, s.ready);
        this.set({ state: "target" }, s.target);
      },
    });
    new Gauge({
      name: "luminaguard_sandboxes_alive",
      help: "Sandboxes handed out and not yet destroyed, by backend",
      labelNames: ["backend"],
      registers,
      collect() {
        this.reset();
        const n = new Map<string, number>([
          ["microvm", 0],
          ["namespace", 0],
        ]);
        for (const s of sources.sandboxes()) n.set(s.backend, (n.get(s.backend) ?? 0) + 1);
        for (const [backend, v] of n) this.set({ backend }, v);
      },
    });
    this.admissions = new Counter({
      name: "luminaguard_admissions_total",
      help: "Requests through admission control by kind (sandbox, call) and outcome (admitted, timeout, queue_full, cancelled, shutdown, too_large)",
      labelNames: ["kind", "outcome"],
      registers,
    });
    this.admissionWait = new Histogram({
      name: "luminaguard_admission_wait_seconds",
      help: "Time a request spent waiting for room in the admission queue (0 when admitted at once), whatever its outcome",
      labelNames: ["kind"],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.replaced = new Counter({
      name: "luminaguard_sandboxes_replaced_total",
      help: "Sandboxes that died on their own (VM killed, agent channel lost), by backend, reason and where (pool: refilled; handed_out: destroyed)",
      labelNames: ["backend", "reason", "where"],
      registers,
    });
    new Gauge({
      name: "luminaguard_admission_queue_depth",
      help: "Requests waiting for room in the admission queue, by kind",
      labelNames: ["kind"],
      registers,
      collect() {
        const q = sources.admission().queued;
        this.set({ kind: "sandbox" }, q.sandbox);
        this.set({ kind: "call" }, q.call);
      },
    });
    new Gauge({
      name: "luminaguard_memory_committed_bytes",
      help: "Memory committed to sandboxes (their limits; a micro-VM's RAM plus QEMU's share), handed out and in the warm pools",
      labelNames: ["holder"],
      registers,
      collect() {
        const a = sources.admission();
        this.set({ holder: "handed_out" }, (a.memoryCommittedMiB - a.memoryPooledMiB) * 1024 * 1024);
        this.set({ holder: "pool" }, a.memoryPooledMiB * 1024 * 1024);
      },
    });
    new Gauge({
      name: "luminaguard_memory_budget_bytes",
      help: "Memory the daemon may commit to sandboxes",
      registers,
      collect() {
        this.set(sources.admission().memoryBudgetMiB * 1024 * 1024);
      },
    });
    new Gauge({
      name: "luminaguard_calls_in_flight",
      help: "Tool calls running now (admitted), against the limit",
      labelNames: ["state"],
      registers,
      collect() {
        const a = sources.admission();
        this.set({ state: "running" }, a.calls);
        this.set({ state: "max" }, a.maxCalls);
      },
    });
    new Gauge({
      name: "luminaguard_host_memory_bytes",
      help: "Host memory by state (total, available)",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "total" }, totalmem());
        this.set({ state: "available" }, freemem());
      },
    });
    new Gauge({
      name: "luminaguard_host_load1",
      help: "Host load average over one minute",
      registers,
      collect() {
        this.set(loadavg()[0] ?? 0);
      },
    });
    new Gauge({
      name: "luminaguard_approvals_pending",
      help: "Red calls waiting for an answer over the API",
      registers,
      collect() {
        this.set(sources.pendingApprovals());
      },
    });
  }

  async text(): Promise<string> {
    return await this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
