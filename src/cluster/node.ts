// A daemon as a cluster node: registered with a heartbeat in a KV bucket, offering room to claims that it
// can serve, creating sandboxes and serving calls for its own sandboxes on its own subjects.
import { hostname, freemem, loadavg } from "node:os";
import type { KV, Msg, NatsConnection, Subscription } from "nats";
import { Counter, Gauge } from "prom-client";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { probeBackend } from "../runtime/backends.js";
import type { Daemon } from "../daemon/service.js";
import { packageVersion } from "../util/pkg.js";
import { connectCluster, type ClusterConnect } from "./connect.js";
import {
  ANSWER_KEEP_MS,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_NODE_TTL_MS,
  INBOX_SUBJECT,
  NODES_BUCKET,
  NODE_NAME,
  OFFER_SUBJECT,
  SANDBOXES_BUCKET,
  callRequestSchema,
  cancelRequestSchema,
  NODE_OPS,
  type NodeOp,
  createRequestSchema,
  nodeRecordSchema,
  encodeJson,
  errorReply,
  heartbeatVerdict,
  killRequestSchema,
  nodeSubject,
  offerRequestSchema,
  okReply,
  parseJson,
  satisfies,
  workspaceRefused,
  type NodeRecord,
  type Offer,
} from "./protocol.js";

export interface ClusterNodeOptions {
  connect: ClusterConnect;
  /** Default: the host name (sanitized). */
  name?: string;
  labels?: Record<string, string>;
  heartbeatMs?: number;
  /** A node whose heartbeat is older than this is gone: its entry expires, its sandboxes are NODE_LOST. */
  ttlMs?: number;
  /** Replicas of the KV buckets when this node creates them; default 3 on a NATS cluster, else 1. */
  replicas?: number;
}

/** Retries `fn` while JetStream is not ready yet (a fresh cluster elects its leader first) or a bucket is being created by a peer. */
async function retrying<T>(what: string, fn: () => Promise<T>, deadlineMs = 30_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw new LuminaGuardError("DAEMON_UNAVAILABLE", `${what}: ${(err as Error).message}`, { cause: err });
      await new Promise((r) => setTimeout(r, Math.min(1000, 100 * (i + 1))));
    }
  }
}

export async function openBuckets(nc: NatsConnection, o: { ttlMs: number; replicas?: number | undefined }): Promise<{ nodes: KV; sandboxes: KV }> {
  const js = nc.jetstream();
  const replicas = o.replicas ?? (nc.info?.cluster !== undefined ? 3 : 1);
  const nodes = await retrying("opening the nodes bucket", () => js.views.kv(NODES_BUCKET, { ttl: o.ttlMs, history: 1, replicas }));
  const sandboxes = await retrying("opening the sandboxes bucket", () => js.views.kv(SANDBOXES_BUCKET, { ttl: 6 * o.ttlMs, history: 1, replicas }));
  return { nodes, sandboxes };
}

export class ClusterNode {
  readonly name: string;
  private readonly labels: Record<string, string>;
  private readonly heartbeatMs: number;
  private readonly ttlMs: number;
  /** Sandboxes created through the cluster, which only this node serves (id → created at). */
  private readonly held = new Map<string, number>();
  /** Location writes not yet acknowledged (id → the write): a delete of the location waits for it. */
  private readonly locating = new Map<string, Promise<void>>();
  private pending = 0;
  /** Calls in progress that a client may cancel (callId → their abort). */
  private readonly calls = new Map<string, AbortController>();
  /** Answers of requests with an id, running or finished less than ANSWER_KEEP_MS ago: a copy gets the same answer. */
  private readonly answers = new Map<string, Promise<Uint8Array>>();
  private readonly subs: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  private beats = 0;
  private backends: NodeRecord["backends"] = {};
  private max = 1;
  private readonly startedAt = new Date().toISOString();
  /** Leaving: no offers, no creates; still heartbeating (state "leaving") so that calls in flight are not NODE_LOST. */
  private closing = false;
  private closed = false;
  /** Live nodes seen at the last look (every 5 heartbeats), for /metrics. */
  private clusterNodes = 0;
  /** The NATS connection's state as its status events tell it (false from a disconnect until the reconnect). */
  private connected = true;
  /** Date.now() of the last heartbeat written. */
  private lastBeatAt = 0;
  private lastView: { at: number; value: Record<string, unknown> } | undefined;
  private readonly requests: Counter<"op" | "outcome">;
  private readonly offers: Counter<"answered">;
  private readonly heartbeatFailures: Counter;

  private constructor(
    private readonly daemon: Daemon,
    private readonly nc: NatsConnection,
    private readonly kv: { nodes: KV; sandboxes: KV },
    o: ClusterNodeOptions,
  ) {
    this.name = o.name ?? defaultNodeName();
    this.labels = o.labels ?? {};
    this.heartbeatMs = o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.ttlMs = o.ttlMs ?? DEFAULT_NODE_TTL_MS;
    // The node's cluster series on the daemon's own /metrics.
    const registers = [daemon.metrics.registry];
    const labelNames = ["node"] as const;
    const own = { node: this.name };
    this.requests = new Counter({ name: "luminaguard_cluster_requests_total", help: "Requests this node answered, by operation and outcome (ok or the error code)", labelNames: ["op", "outcome"], registers });
    this.offers = new Counter({ name: "luminaguard_cluster_offers_total", help: "Claims this node saw, by whether it offered (yes) or stayed silent (full or constraints not met)", labelNames: ["answered"], registers });
    this.heartbeatFailures = new Counter({ name: "luminaguard_cluster_heartbeat_failures_total", help: "Heartbeats this node could not write", registers });
    const gauge = (name: string, help: string, value: () => number): void => {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.set(own, value());
        },
      });
    };
    gauge("luminaguard_cluster_connected", "1 while this node's NATS connection is up", () => (this.nc.isClosed() ? 0 : 1));
    gauge("luminaguard_cluster_free_sandboxes", "Sandboxes this node can still take", () => this.free);
    gauge("luminaguard_cluster_sandboxes", "Sandboxes this node holds for cluster clients", () => this.held.size);
    gauge("luminaguard_cluster_nodes", "Live nodes in the cluster at this node's last look", () => this.clusterNodes);
  }

  /** Connects, registers and starts answering. The daemon must be started. */
  static async start(daemon: Daemon, o: ClusterNodeOptions): Promise<ClusterNode> {
    const name = o.name ?? defaultNodeName();
    if (!NODE_NAME.test(name)) throw new LuminaGuardError("INVALID_ARGUMENT", `cluster node name ${JSON.stringify(name)}: 1-64 letters, digits, '_' or '-'`);
    const ttlMs = o.ttlMs ?? DEFAULT_NODE_TTL_MS;
    const heartbeatMs = o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    if (heartbeatMs * 2 > ttlMs) throw new LuminaGuardError("INVALID_ARGUMENT", `the heartbeat (${heartbeatMs} ms) must be at most half the TTL (${ttlMs} ms)`);
    const nc = await connectCluster({ name: `luminaguard-node-${name}`, ...o.connect });
    try {
      const kv = await openBuckets(nc, { ttlMs, replicas: o.replicas });
      const node = new ClusterNode(daemon, nc, kv, { ...o, name });
      await node.init();
      return node;
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
  }

  private async init(): Promise<void> {
    // A fresh R3 bucket may still be electing its leader when a second node joins: retried, not fatal.
    const existing = await retrying("reading this node's entry", () => this.kv.nodes.get(this.name));
    if (existing && existing.operation === "PUT" && !(await this.stale(existing))) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `a node named ${this.name} is alive in the cluster (its heartbeat is younger than the TTL); choose another --cluster-node name or wait ${this.ttlMs} ms`);
    }
    this.max = (await this.daemon.stats()).sandboxes.max;
    for (const name of ["namespace", "microvm"] as const) {
      const p = await probeBackend(name);
      const accel = p.details["accel"];
      this.backends[name] = { available: p.available, ...(typeof accel === "string" ? { accelerator: accel } : {}), ...(p.reason !== undefined ? { reason: p.reason.slice(0, 300) } : {}) };
    }
    await this.heartbeat();
    this.subs.push(this.nc.subscribe(OFFER_SUBJECT, { callback: (err, msg) => !err && this.onOffer(msg) }));
    for (const op of NODE_OPS) {
      this.subs.push(this.nc.subscribe(nodeSubject(this.name, op), { callback: (err, msg) => !err && void this.serve(op, msg) }));
    }
    await this.nc.flush();
    this.timer = setInterval(() => void this.heartbeat(), this.heartbeatMs);
    this.timer.unref();
    void this.watchStatus();
    this.daemon.readinessChecks.set("cluster", () => this.readiness());
    this.daemon.clusterView = () => this.view();
    log.info({ node: this.name, servers: this.nc.getServer(), ttlMs: this.ttlMs, heartbeatMs: this.heartbeatMs }, "cluster: node joined");
  }

  /**
   * Whether an entry under this node's name is a dead run's (a SIGKILL, a crash) that JetStream has not purged yet:
   * older than its TTL and still the same revision after min(2 heartbeats, TTL/2). Then this run takes the name over.
   */
  private async stale(e: NonNullable<Awaited<ReturnType<KV["get"]>>>): Promise<boolean> {
    // Judged by the TTL the dead run promised in its record (none, from an older version: only the purge frees the name).
    const first = heartbeatVerdict(e, Number.POSITIVE_INFINITY, undefined);
    if (first.ageMs <= first.ttlMs) return false;
    await new Promise((r) => setTimeout(r, first.nextMs));
    const again = await retrying("reading this node's entry", () => this.kv.nodes.get(this.name));
    if (!again || again.operation !== "PUT") return true;
    return heartbeatVerdict(again, Number.POSITIVE_INFINITY, first.sighting).lost;
  }

  /** Room for one more sandbox now: the daemon's limit less what it holds (any client) and what is being created. */
  get free(): number {
    if (this.closing || this.daemon.draining) return 0;
    return Math.max(0, this.max - this.daemon.list().length - this.pending);
  }

  record(): NodeRecord {
    const alive = this.daemon.list();
    return {
      name: this.name,
      version: packageVersion(),
      backends: this.backends,
      labels: this.labels,
      max: this.max,
      alive: alive.length,
      free: this.free,
      inFlight: alive.reduce((n, s) => n + s.inFlight, 0),
      clusterSandboxes: this.held.size,
      load1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
      memoryAvailableBytes: freemem(),
      state: this.closing ? "leaving" : this.daemon.readiness().state,
      startedAt: this.startedAt,
      at: new Date().toISOString(),
      heartbeatMs: this.heartbeatMs,
      ttlMs: this.ttlMs,
    };
  }

  private async heartbeat(): Promise<void> {
    if (this.closed) return;
    this.beats++;
    // Sandboxes the daemon no longer has (idle, expired, killed locally) leave the location bucket.
    const alive = new Set(this.daemon.list().map((s) => s.id));
    for (const id of [...this.held.keys()]) {
      if (alive.has(id)) continue;
      this.held.delete(id);
      this.forgetLocation(id);
    }
    try {
      await this.kv.nodes.put(this.name, encodeJson(this.record()));
      this.lastBeatAt = Date.now();
      if (this.beats % 5 === 1) void this.countNodes();
      // Locations live 6 TTLs: refreshed every 2 TTLs.
      if (this.beats % Math.max(1, Math.round((2 * this.ttlMs) / this.heartbeatMs)) === 0) {
        for (const [id, createdAt] of this.held) await this.putLocation(id, createdAt);
      }
    } catch (err) {
      this.heartbeatFailures.inc();
      log.warn({ node: this.name, err: (err as Error).message }, "cluster: heartbeat not written (reconnecting?)");
    }
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === "disconnect") this.connected = false;
      else if (s.type === "reconnect") this.connected = true;
    }
  }

  /**
   * For /readyz: ready while the NATS connection is up and a heartbeat was written within the TTL (so that the
   * cluster sees this node as alive). A node not ready here still serves its local socket.
   */
  readiness(): { ready: boolean; node: string; connected: boolean; server: string; lastHeartbeatMsAgo: number | null; ttlMs: number; state: "joined" | "leaving" | "left" } {
    const connected = this.connected && !this.nc.isClosed();
    const ago = this.lastBeatAt === 0 ? null : Date.now() - this.lastBeatAt;
    const state = this.closed ? "left" : this.closing ? "leaving" : "joined";
    return { ready: connected && ago !== null && ago < this.ttlMs && state === "joined", node: this.name, connected, server: connected ? this.nc.getServer() : "", lastHeartbeatMsAgo: ago, ttlMs: this.ttlMs, state };
  }

  /** The cluster as this node sees it now (every live node's record), for the dashboard; at most one look per 2 s. */
  async view(): Promise<Record<string, unknown>> {
    const now = Date.now();
    if (this.lastView && now - this.lastView.at < 2000) return this.lastView.value;
    const nodes: NodeRecord[] = [];
    let error: string | undefined;
    try {
      const prefix = `$KV.${NODES_BUCKET}.`;
      const jsm = await this.nc.jetstreamManager({ timeout: 2000 });
      const info = await jsm.streams.info(`KV_${NODES_BUCKET}`, { subjects_filter: `${prefix}>` });
      for (const key of Object.keys(info.state.subjects ?? {}).map((k) => k.slice(prefix.length)).sort()) {
        const e = await this.kv.nodes.get(key);
        if (!e || e.operation !== "PUT") continue;
        const r = nodeRecordSchema.safeParse(parseJson(e.value));
        if (r.success) nodes.push(r.data);
      }
    } catch (err) {
      error = (err as Error).message;
    }
    const value = { ...this.readiness(), nodes, ...(error !== undefined ? { error } : {}) };
    this.lastView = { at: now, value };
    return value;
  }

  private async countNodes(): Promise<void> {
    try {
      const prefix = `$KV.${NODES_BUCKET}.`;
      const jsm = await this.nc.jetstreamManager();
      const info = await jsm.streams.info(`KV_${NODES_BUCKET}`, { subjects_filter: `${prefix}>` });
      this.clusterNodes = Object.keys(info.state.subjects ?? {}).length;
    } catch {
      /* the next look */
    }
  }

  /** Deletes a sandbox's location once its first write (if still in flight) is done, so that the write cannot outlive the delete. */
  private forgetLocation(id: string): void {
    const pending = this.locating.get(id) ?? Promise.resolve();
    void pending.then(() => this.kv.sandboxes.delete(id)).catch(() => undefined);
  }

  private async putLocation(id: string, createdAt: number): Promise<void> {
    const backend = this.daemon.list().find((s) => s.id === id)?.backend ?? "?";
    await this.kv.sandboxes.put(id, encodeJson({ node: this.name, backend, createdAt: new Date(createdAt).toISOString() }));
  }

  /** An offer when the claim's constraints hold here and there is room; silence otherwise. */
  private onOffer(msg: Msg): void {
    if (msg.reply === undefined || !INBOX_SUBJECT.test(msg.reply)) return;
    let constraints;
    try {
      constraints = offerRequestSchema.parse(parseJson(msg.data)).constraints;
    } catch {
      return;
    }
    const free = this.free;
    if (free <= 0 || !satisfies({ backends: this.backends, labels: this.labels }, constraints)) {
      this.offers.inc({ answered: "no" });
      return;
    }
    this.offers.inc({ answered: "yes" });
    const offer: Offer = { node: this.name, free, max: this.max, version: packageVersion() };
    msg.respond(encodeJson(offer));
  }

  private async serve(op: NodeOp, msg: Msg): Promise<void> {
    // A reply goes only to a client's inbox: a forged reply subject must not make the node publish on a node or KV subject.
    if (msg.reply === undefined || !INBOX_SUBJECT.test(msg.reply)) {
      log.warn({ node: this.name, op, reply: msg.reply?.slice(0, 100) }, "cluster: request with a reply subject that is not an inbox ignored");
      return;
    }
    let raw: unknown;
    try {
      raw = parseJson(msg.data);
    } catch (err) {
      raw = err;
    }
    const key = requestKey(op, raw);
    let answer = key !== undefined ? this.answers.get(key) : undefined;
    if (answer === undefined) {
      answer = this.answer(op, raw);
      if (key !== undefined) {
        this.answers.set(key, answer);
        void answer.finally(() => setTimeout(() => this.answers.delete(key), ANSWER_KEEP_MS).unref());
      }
    }
    const bytes = await answer;
    if (!this.nc.isClosed()) msg.respond(bytes);
  }

  private async answer(op: NodeOp, raw: unknown): Promise<Uint8Array> {
    let answer: unknown;
    try {
      if (raw instanceof Error) throw raw;
      answer = okReply(await this.handle(op, raw));
      this.requests.inc({ op, outcome: "ok" });
    } catch (err) {
      const e = toLuminaGuardError(err);
      this.requests.inc({ op, outcome: e.code });
      if (e.code === "INTERNAL") log.error({ node: this.name, op, err: e.message }, "cluster: request failed");
      answer = errorReply(e);
    }
    let bytes = encodeJson(answer);
    const max = this.nc.info?.max_payload ?? 1 << 20;
    if (bytes.length > max) {
      bytes = encodeJson(errorReply(new LuminaGuardError("FILE_TOO_LARGE", `the answer (${bytes.length} bytes) is larger than the cluster's max_payload (${max}); read it in parts (offset/length)`, { details: { bytes: bytes.length, maxPayload: max } })));
    }
    return bytes;
  }

  private async handle(op: NodeOp, raw: unknown): Promise<unknown> {
    if (op === "ping") return { node: this.name };
    if (op === "cancel") {
      const { callId } = parse(cancelRequestSchema, raw, "cancel");
      const ac = this.calls.get(callId);
      ac?.abort(new LuminaGuardError("CANCELLED", "the client cancelled the call"));
      return { cancelled: ac !== undefined };
    }
    if (op === "create") {
      const parsed = createRequestSchema.safeParse(raw);
      if (!parsed.success) throw new LuminaGuardError("INVALID_ARGUMENT", `create: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
      const { workspace, rid: _rid, ...body } = parsed.data;
      if (workspace !== undefined) throw workspaceRefused();
      if (this.closing) throw new LuminaGuardError("SHUTTING_DOWN", `node ${this.name} is leaving the cluster`);
      if (this.free <= 0) {
        throw new LuminaGuardError("CAPACITY", `node ${this.name} has no room (${this.max} sandboxes at most)`, { details: { node: this.name, retryAfterMs: 1000 } });
      }
      this.pending++;
      let d;
      try {
        d = await this.daemon.create({ ...body, client: body.client ?? "cluster" });
      } finally {
        this.pending--;
      }
      const createdAt = Date.now();
      this.held.set(d.id, createdAt);
      // The location (for attach by other clients) is written beside the answer, not before it: an R3 KV write
      // acknowledged by a quorum was the claim's largest cost after the offers. A kill waits for it (forgetLocation).
      const written = this.putLocation(d.id, createdAt).catch((err: unknown) => log.warn({ id: d.id, err: (err as Error).message }, "cluster: location not written"));
      this.locating.set(d.id, written);
      void written.finally(() => this.locating.get(d.id) === written && this.locating.delete(d.id));
      return { ...d, node: this.name };
    }
    if (op === "kill") {
      const { id } = parse(killRequestSchema, raw, "kill");
      this.hold(id);
      this.held.delete(id);
      this.forgetLocation(id);
      await this.daemon.kill(id).catch((err: unknown) => {
        if (toLuminaGuardError(err).code !== "NOT_FOUND") throw err;
      });
      return {};
    }
    const req = parse(callRequestSchema, raw, "call");
    this.hold(req.id);
    const stream = req.stream;
    const send = (s: "stdout" | "stderr") => (chunk: Buffer) => {
      if (stream !== undefined && !this.nc.isClosed()) this.nc.publish(stream, encodeJson({ s, d: chunk.toString("base64") }));
    };
    // Cancelled by the client, or past the client's deadline (nobody waits for the answer then).
    const ac = new AbortController();
    const timer = req.deadlineMs !== undefined ? setTimeout(() => ac.abort(new LuminaGuardError("TOOL_TIMEOUT", `the call ran past its ${req.deadlineMs} ms deadline`)), req.deadlineMs) : undefined;
    timer?.unref();
    if (req.callId !== undefined) this.calls.set(req.callId, ac);
    try {
      return await this.daemon.callTool(req.id, req.tool, req.args, {
        signal: ac.signal,
        ...(stream !== undefined && req.tool === "execute_command" ? { onStdout: send("stdout"), onStderr: send("stderr") } : {}),
      });
    } finally {
      if (timer) clearTimeout(timer);
      if (req.callId !== undefined && this.calls.get(req.callId) === ac) this.calls.delete(req.callId);
    }
  }

  /** Only sandboxes created through the cluster on this node are served here; any other id is NOT_FOUND. */
  private hold(id: string): void {
    if (!this.held.has(id)) throw new LuminaGuardError("NOT_FOUND", `node ${this.name} holds no cluster sandbox ${JSON.stringify(id)}`);
  }

  /**
   * Stops offering and creating (state "leaving", free 0 in its record at once); it keeps heartbeating so that
   * calls in flight get their answers, not NODE_LOST, while the daemon drains after this.
   */
  async leave(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const offer = this.subs.shift();
    offer?.unsubscribe();
    // With the servers out of reach a write would wait for its ack timeout: the entry expires on its own.
    if (this.connected) await this.kv.nodes.put(this.name, encodeJson(this.record())).catch(() => undefined);
    log.info({ node: this.name }, "cluster: node leaving");
  }

  /** After the daemon has drained: deregistered, answers flushed, connection closed. */
  async close(): Promise<void> {
    await this.leave();
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.connected) {
      await this.kv.nodes.delete(this.name).catch(() => undefined);
      for (const id of this.held.keys()) await (this.locating.get(id) ?? Promise.resolve()).then(() => this.kv.sandboxes.delete(id)).catch(() => undefined);
    }
    log.info({ node: this.name }, "cluster: node left");
    this.held.clear();
    // A drain waits for the servers; with none reachable (all down) it would wait for ever: bounded, then closed.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.nc.drain().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, this.connected ? 5000 : 0)))]);
    clearTimeout(timer);
    if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
  }
}

/** The id that makes a request's copies one request: create's `rid`, call's sandbox and `callId`. */
function requestKey(op: NodeOp, raw: unknown): string | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const ok = (v: unknown): v is string => typeof v === "string" && /^[A-Za-z0-9_-]{1,128}$/.test(v);
  if (op === "create" && ok(r["rid"])) return `create:${r["rid"]}`;
  if (op === "call" && ok(r["id"]) && ok(r["callId"])) return `call:${r["id"]}:${r["callId"]}`;
  return undefined;
}

function parse<T>(schema: { safeParse: (v: unknown) => { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }, raw: unknown, what: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new LuminaGuardError("INVALID_ARGUMENT", `${what}: ${r.error.issues.map((i) => `${i.path.map(String).join(".")}: ${i.message}`).join("; ")}`);
  return r.data;
}

export function defaultNodeName(): string {
  return hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 64) || "node";
}
