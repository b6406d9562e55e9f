// The cluster's client: asks for offers, claims a sandbox on the node with the most room, and calls it on that
// node's subjects; a node that stops heartbeating makes its sandboxes NODE_LOST within the TTL.
import { randomBytes } from "node:crypto";
import { ErrorCode, RequestStrategy, createInbox, type JetStreamManager, type KV, type NatsConnection } from "nats";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import type { DiskLimitMode } from "../runtime/disk.js";
import type { RunOptions, SandboxApi, Served } from "../runtime/sandbox.js";
import type { BackendChoice, BackendName, FileToolsMode, ServedBy } from "../sandbox/types.js";
import type { CallOptions, CommandResult, ListDirectoryResult, ReadFileResult, SearchResult, WriteFileResult } from "../tools/dispatch.js";
import type { ToolName } from "../tools/registry.js";
import type { SandboxDescription } from "../daemon/schemas.js";
import { connectCluster, resolveConnect, type ClusterConnect } from "./connect.js";
import {
  DEFAULT_CLAIM_TIMEOUT_MS,
  RETRANSMIT_MS,
  NODES_BUCKET,
  OFFER_SUBJECT,
  OFFER_WINDOW_MS,
  SANDBOXES_BUCKET,
  encodeJson,
  heartbeatVerdict,
  locationSchema,
  nodeRecordSchema,
  nodeSubject,
  offerSchema,
  parseJson,
  streamChunkSchema,
  unwrapReply,
  workspaceRefused,
  type Constraints,
  type NodeOp,
  type Location,
  type NodeRecord,
  type Offer,
  type Sighting,
} from "./protocol.js";

/** Past a tool's own deadline, how long the client waits for the node's answer. */
const CALL_MARGIN_MS = 30_000;
const DEFAULT_CALL_TIMEOUT_MS = 120_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

/** `Sandbox.create({ cluster })`: a URL list, or the connection with placement constraints. */
export type ClusterOption =
  | string
  | (ClusterConnect & {
      labels?: Record<string, string>;
      accelerator?: "kvm" | "tcg";
      /** No node answers within this long: CAPACITY. Default 5 s. */
      claimTimeoutMs?: number;
    });

export interface ClaimOptions {
  backend?: BackendChoice;
  memoryMiB?: number;
  diskMiB?: number;
  timeoutMs?: number;
  fileTools?: FileToolsMode;
  client?: string;
  workspace?: string;
  labels?: Record<string, string>;
  accelerator?: "kvm" | "tcg";
  claimTimeoutMs?: number;
  signal?: AbortSignal;
}

type ClusterSandboxDescription = SandboxDescription & { node: string };

function natsCode(err: unknown): string {
  return String((err as { code?: unknown }).code ?? "");
}

/** A node's liveness as one look at its heartbeat entry found it. */
interface Liveness {
  lost: boolean;
  /** When another look could change that (ms). */
  nextMs: number;
}

/** Looks at one node's entry younger than this are shared by every caller (many calls in flight to one node). */
const LOOK_SHARE_MS = 20;

export class ClusterClient {
  private ttlMs: number | undefined;
  /** The revision of each node's heartbeat entry this client last saw, and since when. */
  private readonly sightings = new Map<string, Sighting>();
  /** The last look at each node's entry (running, or finished at `done`). */
  private readonly looks = new Map<string, { p: Promise<Liveness>; done: number | undefined }>();
  private jsm: Promise<JetStreamManager> | undefined;
  /** How many nodes have an entry in lg-nodes (live, or awaiting the purge), counted at most every 2 s off the claim path; 0 = not yet. */
  private readonly entries = { n: 0, at: -Infinity, counting: false };

  private constructor(
    readonly nc: NatsConnection,
    private readonly kv: { nodes: KV; sandboxes: KV },
    readonly where: string,
  ) {}

  static async connect(c: ClusterConnect): Promise<ClusterClient> {
    const nc = await connectCluster({ name: "luminaguard-client", ...c });
    try {
      const js = nc.jetstream();
      const end = Date.now() + 15_000;
      const bind = async (bucket: string): Promise<KV> => {
        for (let i = 0; ; i++) {
          try {
            return await js.views.kv(bucket, { bindOnly: true });
          } catch (err) {
            // No answer (the servers elect a stream leader after losing one): tried again; a missing bucket is final.
            const missing = /not found/i.test((err as Error).message);
            if (missing || Date.now() > end) {
              throw new LuminaGuardError("DAEMON_UNAVAILABLE", `the cluster has no ${bucket} bucket yet (no node ever joined?): ${(err as Error).message}`, { cause: err });
            }
            await new Promise((r) => setTimeout(r, Math.min(500, 50 * (i + 1))));
          }
        }
      };
      const kv = { nodes: await bind(NODES_BUCKET), sandboxes: await bind(SANDBOXES_BUCKET) };
      return new ClusterClient(nc, kv, Array.isArray(c.servers) ? c.servers.join(",") : c.servers);
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
  }

  /** The nodes' TTL (the bucket's max age): how long a silent node may still count as alive. */
  async nodeTtlMs(): Promise<number> {
    if (this.ttlMs === undefined) {
      const s = await this.kv.nodes.status();
      this.ttlMs = s.ttl > 0 ? s.ttl : 10_000;
    }
    return this.ttlMs;
  }

  /**
   * Every node whose heartbeat is younger than the TTL. The keys come from the stream's subject counts (answered
   * by the stream's leader, no consumer needed); while the servers elect a new leader after losing one, retried.
   */
  async nodes(): Promise<NodeRecord[]> {
    const prefix = `$KV.${NODES_BUCKET}.`;
    const deadline = Date.now() + 15_000;
    let keys: string[] | undefined;
    for (let i = 0; keys === undefined; i++) {
      try {
        const jsm = await this.manager();
        const info = await jsm.streams.info(`KV_${NODES_BUCKET}`, { subjects_filter: `${prefix}>` });
        keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
      } catch (err) {
        if (Date.now() > deadline) throw toLuminaGuardError(err, "DAEMON_UNAVAILABLE");
        await new Promise((r) => setTimeout(r, Math.min(500, 50 * (i + 1))));
      }
    }
    const out: NodeRecord[] = [];
    for (const k of keys.sort()) {
      let e: Awaited<ReturnType<KV["get"]>> | undefined;
      for (let i = 0; e === undefined; i++) {
        try {
          e = await this.kv.nodes.get(k);
        } catch (err) {
          if (Date.now() > deadline) throw toLuminaGuardError(err, "DAEMON_UNAVAILABLE");
          await new Promise((r) => setTimeout(r, Math.min(500, 50 * (i + 1))));
        }
      }
      if (!e || e.operation !== "PUT") continue;
      // A node that stopped heartbeating is not listed, even while its entry awaits its purge.
      if (this.judge(k, e, await this.nodeTtlMs()).lost) continue;
      const r = nodeRecordSchema.safeParse(parseJson(e.value));
      if (r.success) out.push(r.data);
    }
    return out;
  }

  /** The verdict on one node's entry (null: gone), remembering the revision seen. */
  private judge(node: string, e: Awaited<ReturnType<KV["get"]>>, bucketTtlMs: number): Liveness {
    if (!e || e.operation !== "PUT") {
      this.sightings.delete(node);
      return { lost: true, nextMs: 0 };
    }
    const v = heartbeatVerdict(e, bucketTtlMs, this.sightings.get(node));
    this.sightings.set(node, v.sighting);
    return { lost: v.lost, nextMs: v.nextMs };
  }

  /**
   * One look at a node's heartbeat entry (shared with the other callers for LOOK_SHARE_MS): lost when the entry is
   * gone or older than the node's TTL by its own timestamp (see heartbeatVerdict). Rejects when the bucket does not answer.
   */
  private liveness(node: string): Promise<Liveness> {
    const last = this.looks.get(node);
    if (last && (last.done === undefined || performance.now() - last.done < LOOK_SHARE_MS)) return last.p;
    const look: { p: Promise<Liveness>; done: number | undefined } = { p: Promise.resolve({ lost: false, nextMs: 0 }), done: undefined };
    look.p = (async () => {
      try {
        const ttl = await this.nodeTtlMs();
        return this.judge(node, await this.kv.nodes.get(node), ttl);
      } finally {
        look.done = performance.now();
      }
    })();
    this.looks.set(node, look);
    return look.p;
  }

  /**
   * Whether a node still heartbeats (its entry is there and younger than its TTL). A bucket that does not answer
   * (servers electing a leader) says nothing: the node counts as alive, and the caller's deadline still holds.
   */
  async nodeAlive(node: string): Promise<boolean> {
    try {
      return !(await this.liveness(node)).lost;
    } catch {
      return true;
    }
  }

  /** A node's heartbeat entry as JetStream holds it (null once purged or deleted), whatever its age: for diagnostics and `bench cluster`. */
  async heartbeatEntry(node: string): Promise<{ revision: number; created: Date } | null> {
    const e = await this.kv.nodes.get(node);
    return e && e.operation === "PUT" ? { revision: e.revision, created: e.created } : null;
  }

  async locate(id: string): Promise<Location | undefined> {
    const e = await this.kv.sandboxes.get(id).catch(() => null);
    if (!e || e.operation !== "PUT") return undefined;
    const r = locationSchema.safeParse(parseJson(e.value));
    return r.success ? r.data : undefined;
  }

  private manager(): Promise<JetStreamManager> {
    this.jsm ??= this.nc.jetstreamManager().catch((err: unknown) => {
      this.jsm = undefined;
      throw err;
    });
    return this.jsm;
  }

  /**
   * The number of node entries, as last counted; a new count starts in the background when the last is older than
   * 2 s. It only ends an offer round early (every node has answered); an entry of a lost node, or a node that is
   * full or does not satisfy the constraints, leaves the round to its window as before.
   */
  private nodeEntries(): number {
    const e = this.entries;
    if (!e.counting && performance.now() - e.at > 2000) {
      e.counting = true;
      void (async () => {
        try {
          const prefix = `$KV.${NODES_BUCKET}.`;
          const info = await (await this.manager()).streams.info(`KV_${NODES_BUCKET}`, { subjects_filter: `${prefix}>` });
          e.n = Object.keys(info.state.subjects ?? {}).length;
        } catch {
          /* the next claim counts again */
        } finally {
          e.at = performance.now();
          e.counting = false;
        }
      })();
    }
    return e.n;
  }

  /**
   * The offers of every node that satisfies the constraints and has room, best (most free) first. The round ends
   * OFFER_WINDOW_MS after the latest offer, or as soon as every node with an entry has offered.
   */
  async offers(constraints: Constraints, maxWaitMs: number): Promise<Offer[]> {
    const offers: Offer[] = [];
    const everyone = this.nodeEntries();
    try {
      const it = await this.nc.requestMany(OFFER_SUBJECT, encodeJson({ constraints }), {
        maxWait: Math.max(1, maxWaitMs),
        strategy: RequestStrategy.JitterTimer,
        jitter: OFFER_WINDOW_MS,
      });
      for await (const m of it) {
        let raw: unknown;
        try {
          raw = parseJson(m.data);
        } catch {
          continue;
        }
        const o = offerSchema.safeParse(raw);
        if (o.success) offers.push(o.data);
        // Nobody left to wait for (the request's timer ends it on the servers' side; later answers are dropped).
        if (everyone > 0 && offers.length >= everyone) break;
      }
    } catch (err) {
      if (natsCode(err) !== ErrorCode.NoResponders && natsCode(err) !== ErrorCode.Timeout) throw toLuminaGuardError(err, "DAEMON_UNAVAILABLE");
    }
    // Most room first; equal room in random order (so that equal nodes share the claims).
    return offers.map((o) => ({ o, r: Math.random() })).sort((a, b) => b.o.free - a.o.free || a.r - b.r).map((x) => x.o);
  }

  /**
   * A sandbox on the node with the most room among those that satisfy the constraints. No offer within
   * the claim deadline (default 5 s) is CAPACITY; a node that filled meanwhile passes to the next offer.
   */
  async claim(o: ClaimOptions = {}, owned = false): Promise<ClusterSandbox> {
    if (o.workspace !== undefined) throw workspaceRefused();
    const deadline = Date.now() + (o.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS);
    const constraints: Constraints = {
      ...(o.backend !== undefined ? { backend: o.backend } : {}),
      ...(o.accelerator !== undefined ? { accelerator: o.accelerator } : {}),
      ...(o.labels !== undefined ? { labels: o.labels } : {}),
    };
    const body = {
      ...(o.backend !== undefined ? { backend: o.backend } : {}),
      ...(o.memoryMiB !== undefined ? { memoryMiB: o.memoryMiB } : {}),
      ...(o.diskMiB !== undefined ? { diskMiB: o.diskMiB } : {}),
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.fileTools !== undefined ? { fileTools: o.fileTools } : {}),
      ...(o.client !== undefined ? { client: o.client } : {}),
    };
    const rid = randomBytes(8).toString("hex");
    let lastRefusal: LuminaGuardError | undefined;
    let seen = 0;
    for (let round = 0; ; round++) {
      if (o.signal?.aborted) throw new LuminaGuardError("CANCELLED", "the claim was cancelled");
      const left = deadline - Date.now();
      if (left <= 0) break;
      const offers = await this.offers(constraints, Math.min(left, 1000));
      seen += offers.length;
      for (const offer of offers) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        try {
          // Creating may take a spawn: it gets the claim's time left, at least 30 s.
          const d = (await this.request(offer.node, "create", { ...body, rid: `${rid}-${offer.node}` }, {
            timeoutMs: Math.max(remaining, 30_000),
            retransmitMs: RETRANSMIT_MS,
            ...(o.signal ? { signal: o.signal } : {}),
          })) as ClusterSandboxDescription;
          return new ClusterSandbox(this, d, owned);
        } catch (err) {
          const e = toLuminaGuardError(err);
          if (e.code !== "CAPACITY" && e.code !== "NODE_LOST" && e.code !== "SHUTTING_DOWN") throw e;
          lastRefusal = e;
        }
      }
      await new Promise((r) => setTimeout(r, Math.min(250, 50 * (round + 1), Math.max(0, deadline - Date.now()))));
    }
    throw new LuminaGuardError(
      "CAPACITY",
      `no cluster node could take the sandbox within ${o.claimTimeoutMs ?? DEFAULT_CLAIM_TIMEOUT_MS} ms (${seen} offer(s)${Object.keys(constraints).length > 0 ? `, constraints ${JSON.stringify(constraints)}` : ""})${lastRefusal ? `: ${lastRefusal.message}` : ""}`,
      { details: { retryAfterMs: 1000, constraints, offers: seen } },
    );
  }

  /** A sandbox claimed earlier (by this or another client), found through the location bucket. */
  async attach(id: string): Promise<ClusterSandbox> {
    const loc = await this.locate(id);
    if (!loc) throw new LuminaGuardError("NOT_FOUND", `no cluster sandbox ${JSON.stringify(id)} (killed, expired, or its node lost)`);
    if (!(await this.nodeAlive(loc.node))) throw nodeLost(loc.node, id);
    return new ClusterSandbox(this, { id, node: loc.node, backend: loc.backend as BackendName } as ClusterSandboxDescription, false);
  }

  /**
   * One request to a node, answered or failed within `timeoutMs`: NODE_LOST as soon as the node's heartbeat entry
   * is gone or older than its TTL (looked at every quarter TTL while waiting, and at the moment the entry would pass
   * the TTL; also when nobody answers on its subject), not when JetStream gets round to purging the entry.
   */
  async request(node: string, op: NodeOp, body: unknown, o: { timeoutMs: number; signal?: AbortSignal; sandbox?: string; retransmitMs?: number }): Promise<unknown> {
    const deadline = Date.now() + o.timeoutMs;
    const ttl = await this.nodeTtlMs();
    const lost = (): LuminaGuardError => nodeLost(node, o.sandbox);
    const pollMs = Math.max(100, Math.min(1000, ttl / 4));
    // One watch for the whole request (its resends included): a look every pollMs, sooner when the entry nears its TTL.
    let stopped = false;
    let watch: NodeJS.Timeout | undefined;
    let gone: ((e: LuminaGuardError) => void) | undefined;
    const ended = new Promise<never>((_, reject) => (gone = reject));
    ended.catch(() => undefined);
    const look = (delayMs: number): void => {
      watch = setTimeout(() => {
        this.liveness(node).then(
          (l) => {
            if (stopped) return;
            if (l.lost) gone?.(lost());
            else look(Math.min(pollMs, Math.max(20, l.nextMs)));
          },
          () => stopped || look(pollMs),
        );
      }, delayMs);
    };
    look(pollMs);
    const onAbort = (): void => gone?.(new LuminaGuardError("CANCELLED", `the ${op} was cancelled`));
    if (o.signal?.aborted) onAbort();
    else o.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (let attempt = 0; ; attempt++) {
        const left = deadline - Date.now();
        if (left <= 0) throw new LuminaGuardError("TOOL_TIMEOUT", `node ${node} did not answer ${op} within ${o.timeoutMs} ms`, { details: { node } });
        try {
          const answer = await Promise.race([this.nc.request(nodeSubject(node, op), encodeJson(body), { timeout: Math.min(left, o.retransmitMs ?? left) }), ended]);
          return unwrapReply(parseJson(answer.data), `node ${node}`);
        } catch (err) {
          const code = natsCode(err);
          if (code === ErrorCode.NoResponders) {
            // Nobody on its subject: the node is gone, or reconnecting to another server (then it still heartbeats).
            if (!(await this.nodeAlive(node))) throw lost();
            await Promise.race([new Promise((r) => setTimeout(r, Math.min(250, 25 * (attempt + 1)))), ended]);
            continue;
          }
          if (code === ErrorCode.Timeout) {
            if (!(await this.nodeAlive(node))) throw lost();
            // Sent again with the same id: the node runs it once and answers every copy.
            if (o.retransmitMs !== undefined && Date.now() < deadline) continue;
            throw new LuminaGuardError("TOOL_TIMEOUT", `node ${node} did not answer ${op} within ${o.timeoutMs} ms`, { details: { node } });
          }
          if (code === ErrorCode.PermissionsViolation) throw new LuminaGuardError("UNAUTHORIZED", `the cluster does not let this client ${op}: ${(err as Error).message}`);
          throw err instanceof LuminaGuardError ? err : toLuminaGuardError(err, "DAEMON_UNAVAILABLE");
        }
      }
    } finally {
      stopped = true;
      if (watch) clearTimeout(watch);
      o.signal?.removeEventListener("abort", onAbort);
    }
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => undefined);
  }
}

function nodeLost(node: string, id: string | undefined): LuminaGuardError {
  return new LuminaGuardError("NODE_LOST", `node ${node}${id !== undefined ? `, which held sandbox ${id},` : ""} stopped heartbeating: the sandbox and its work are gone`, {
    details: { node, ...(id !== undefined ? { sandbox: id } : {}) },
  });
}

/**
 * A sandbox on a cluster node, with the in-process Sandbox's methods and results. `info.via` is "cluster",
 * `info.node` its node; `workspace` is the path on that node; `pids()` is empty.
 */
export class ClusterSandbox implements SandboxApi {
  readonly workspace: string;
  private killed: Promise<void> | undefined;
  /** Its node was lost (a call ended in NODE_LOST): no longer alive, so a holder (an MCP session) takes a fresh one. */
  private lost = false;

  readonly files = {
    read: async (path: string, o: { offset?: number; length?: number; signal?: AbortSignal } = {}): Promise<Served<ReadFileResult>> => {
      const r = await this.call("read_file", { path, ...defined({ offset: o.offset, length: o.length }) }, o);
      const { content, encoding, ...rest } = r as { content: string; encoding: "utf8" | "base64" } & Record<string, unknown>;
      return { ...(rest as unknown as Omit<ReadFileResult, "content">), content: Buffer.from(content, encoding), servedBy: r["servedBy"] as ServedBy };
    },
    readText: async (path: string): Promise<string> => (await this.files.read(path)).content.toString("utf8"),
    write: async (path: string, data: string | Uint8Array, o: { createParents?: boolean; signal?: AbortSignal } = {}): Promise<Served<WriteFileResult>> => {
      const body = typeof data === "string" ? { path, content: data, encoding: "utf8" } : { path, content: Buffer.from(data).toString("base64"), encoding: "base64" };
      return (await this.call("write_file", { ...body, ...defined({ createParents: o.createParents }) }, o)) as unknown as Served<WriteFileResult>;
    },
    list: async (path = ".", o: { depth?: number; limit?: number; signal?: AbortSignal } = {}): Promise<Served<ListDirectoryResult>> =>
      (await this.call("list_directory", { path, ...defined({ depth: o.depth, limit: o.limit }) }, o)) as unknown as Served<ListDirectoryResult>,
  };

  readonly commands = {
    run: async (command: string | string[], o: RunOptions = {}): Promise<Served<CommandResult>> => {
      const args = { command, ...defined({ cwd: o.cwd, env: o.env, stdin: o.stdin, timeoutMs: o.timeoutMs }) };
      return (await this.call("execute_command", args, o)) as unknown as Served<CommandResult>;
    },
  };

  constructor(
    readonly client: ClusterClient,
    readonly description: ClusterSandboxDescription,
    /** Created by Sandbox.create: the sandbox owns its connection and closes it on kill. */
    private readonly ownsClient: boolean,
  ) {
    this.workspace = description.workspace;
  }

  get id(): string {
    return this.description.id;
  }

  get node(): string {
    return this.description.node;
  }

  get backend(): BackendName {
    return this.description.backend;
  }

  get diskLimit(): DiskLimitMode {
    return this.description.info?.["diskLimit"] === "kernel" ? "kernel" : "watched";
  }

  get info(): Readonly<Record<string, string | number | boolean>> {
    return { ...this.description.info, via: "cluster", node: this.node, cluster: this.client.where };
  }

  get alive(): boolean {
    return this.killed === undefined && !this.lost;
  }

  pids(): number[] {
    return [];
  }

  servedBy(tool: ToolName): ServedBy {
    return this.description.servedBy?.[tool] ?? (this.backend === "namespace" || tool !== "execute_command" ? "jail" : "vm");
  }

  search(args: { path?: string; pattern?: string; glob?: string; maxResults?: number }, o: { signal?: AbortSignal } = {}): Promise<Served<SearchResult>> {
    return this.call("search", args, o) as unknown as Promise<Served<SearchResult>>;
  }

  async callTool(name: ToolName, args: unknown, o: CallOptions = {}): Promise<Record<string, unknown>> {
    return await this.call(name, args, o);
  }

  kill(): Promise<void> {
    this.killed ??= (async () => {
      try {
        await this.client.request(this.node, "kill", { id: this.id }, { timeoutMs: 30_000, sandbox: this.id, retransmitMs: RETRANSMIT_MS });
      } catch (err) {
        // Already gone (expired, idle, its node lost): nothing left to kill.
        const code = toLuminaGuardError(err).code;
        if (code !== "NOT_FOUND" && code !== "NODE_LOST" && code !== "TOOL_TIMEOUT") throw err;
      } finally {
        if (this.ownsClient) await this.client.close();
      }
    })();
    return this.killed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  private async call(
    name: ToolName,
    args: unknown,
    o: { signal?: AbortSignal | undefined; onStdout?: ((c: Buffer) => void) | undefined; onStderr?: ((c: Buffer) => void) | undefined },
  ): Promise<Record<string, unknown>> {
    if (this.killed) throw new LuminaGuardError("SANDBOX_CLOSED", `sandbox ${this.id} has been killed`);
    const a = (args ?? {}) as { timeoutMs?: unknown };
    const timeoutMs =
      name === "execute_command" ? (typeof a.timeoutMs === "number" ? a.timeoutMs : DEFAULT_COMMAND_TIMEOUT_MS) + CALL_MARGIN_MS : DEFAULT_CALL_TIMEOUT_MS;
    const streamed = name === "execute_command" && (o.onStdout !== undefined || o.onStderr !== undefined);
    const nc = this.client.nc;
    const inbox = streamed ? createInbox() : undefined;
    const sub =
      inbox !== undefined
        ? nc.subscribe(inbox, {
            callback: (err, m) => {
              if (err) return;
              try {
                const c = streamChunkSchema.parse(parseJson(m.data));
                (c.s === "stdout" ? o.onStdout : o.onStderr)?.(Buffer.from(c.d, "base64"));
              } catch {
                /* a malformed chunk is dropped; the result carries the output too */
              }
            },
          })
        : undefined;
    const callId = randomBytes(8).toString("hex");
    // The client stops waiting: the node is told to stop the call too (best effort; its own deadline is the backstop).
    const cancel = (): void => {
      void this.client.request(this.node, "cancel", { callId }, { timeoutMs: 5_000 }).catch(() => undefined);
    };
    o.signal?.addEventListener("abort", cancel, { once: true });
    try {
      if (sub) await nc.flush();
      const result = await this.client.request(
        this.node,
        "call",
        { id: this.id, tool: name, args: args ?? {}, callId, deadlineMs: timeoutMs, ...(inbox !== undefined ? { stream: inbox } : {}) },
        { timeoutMs, sandbox: this.id, retransmitMs: RETRANSMIT_MS, ...(o.signal ? { signal: o.signal } : {}) },
      );
      if (sub) await nc.flush();
      return result as Record<string, unknown>;
    } catch (err) {
      if (err instanceof LuminaGuardError && err.code === "NODE_LOST") this.lost = true;
      throw err;
    } finally {
      o.signal?.removeEventListener("abort", cancel);
      sub?.unsubscribe();
    }
  }
}

function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** For Sandbox.create({ cluster }): its own connection, closed when the sandbox is killed. */
export async function sandboxFromCluster(cluster: ClusterOption, o: Omit<ClaimOptions, "labels" | "accelerator" | "claimTimeoutMs">): Promise<ClusterSandbox> {
  const spec = typeof cluster === "string" ? { servers: cluster } : cluster;
  const { labels, accelerator, claimTimeoutMs, ...connect } = spec as ClusterConnect & { labels?: Record<string, string>; accelerator?: "kvm" | "tcg"; claimTimeoutMs?: number };
  if (o.workspace !== undefined) throw workspaceRefused();
  const resolved = resolveConnect(connect) as ClusterConnect;
  const client = await ClusterClient.connect(resolved);
  try {
    return await client.claim({ ...o, ...(labels ? { labels } : {}), ...(accelerator ? { accelerator } : {}), ...(claimTimeoutMs !== undefined ? { claimTimeoutMs } : {}) }, true);
  } catch (err) {
    await client.close();
    throw err;
  }
}
