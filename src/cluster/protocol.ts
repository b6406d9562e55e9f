// The cluster's wire: subjects, KV buckets, and the zod schemas of every message a node or a client reads.
import { z } from "zod";
import { LuminaGuardError, isErrorCode, toLuminaGuardError } from "../errors.js";
import { BACKEND_CHOICES, FILE_TOOLS_MODES } from "../sandbox/types.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import { TOOL_NAMES } from "../tools/registry.js";

/** Offers: every node that satisfies a claim's constraints and has room answers (plain subject, not a queue group). */
export const OFFER_SUBJECT = "lg.offer";
/** A node's own subjects: `lg.node.<name>.create|call|cancel|kill|ping`. */
export type NodeOp = "create" | "call" | "cancel" | "kill" | "ping";
export const NODE_OPS: readonly NodeOp[] = ["create", "call", "cancel", "kill", "ping"];
export const nodeSubject = (node: string, op: NodeOp): string => `lg.node.${node}.${op}`;
/** Liveness and capacity of each node (one key per node, TTL = the node TTL). */
export const NODES_BUCKET = "lg-nodes";
/** Where each cluster sandbox lives (key = sandbox id, TTL = 6 × the node TTL, refreshed by its node). */
export const SANDBOXES_BUCKET = "lg-sandboxes";

export const DEFAULT_HEARTBEAT_MS = 2_000;
export const DEFAULT_NODE_TTL_MS = 10_000;
export const DEFAULT_CLAIM_TIMEOUT_MS = 5_000;
/**
 * A request with an id (create's `rid`, call's `callId`) is sent again every this long until answered: a
 * request or answer lost while a NATS server fails is recovered; the node runs it once and answers every copy.
 */
export const RETRANSMIT_MS = 2_000;
/** How long a node keeps a finished request's answer for its copies. */
export const ANSWER_KEEP_MS = 30_000;
/** After the first offer, how long the client waits for better ones (no new offer within it ends the wait). */
export const OFFER_WINDOW_MS = 10;

/** NATS subject tokens and KV keys: node names are [A-Za-z0-9_-], 1-64. */
export const NODE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const nodeName = z.string().regex(NODE_NAME, "node names are 1-64 letters, digits, '_' or '-'");
const sandboxId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/);
const label = z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/);

/** Where a node may publish a reply or a stream: only a client's inbox, never a node, heartbeat or KV subject. */
export const INBOX_SUBJECT = /^_INBOX\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,4}$/;

export const constraintsSchema = z.strictObject({
  backend: z.enum(BACKEND_CHOICES).optional(),
  accelerator: z.enum(["kvm", "tcg"]).optional(),
  /** Every label given must be on the node with the same value. */
  labels: z.record(label, z.string().max(200)).optional(),
});
export type Constraints = z.infer<typeof constraintsSchema>;

export const offerRequestSchema = z.strictObject({ constraints: constraintsSchema });

export const offerSchema = z.strictObject({
  node: nodeName,
  free: z.number().int().min(0),
  max: z.number().int().min(1),
  version: z.string().max(100),
});
export type Offer = z.infer<typeof offerSchema>;

/** The daemon's create body minus the workspace: a cluster sandbox's workspace is always fresh on its node. */
export const createRequestSchema = z.strictObject({
  backend: z.enum(BACKEND_CHOICES).optional(),
  memoryMiB: z.number().int().min(16).max(65_536).optional(),
  diskMiB: z.number().int().min(MIN_DISK_MIB).max(MAX_DISK_MIB).optional(),
  timeoutMs: z.number().int().min(1).max(7 * 24 * 3600 * 1000).optional(),
  fileTools: z.enum(FILE_TOOLS_MODES).optional(),
  client: z.string().max(200).optional(),
  /** The claim's id: a create sent again (its answer lost) gets the first one's answer, not a second sandbox. */
  rid: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
  /** Refused (WORKSPACE_FORBIDDEN) when present: workspaces are node-local. Accepted here only to name the error. */
  workspace: z.unknown().optional(),
});
export type CreateRequest = z.infer<typeof createRequestSchema>;

export const callRequestSchema = z.strictObject({
  id: sandboxId,
  tool: z.enum(TOOL_NAMES),
  args: z.unknown(),
  /** An inbox for execute_command's output as it comes (`{ s: "stdout"|"stderr", d: base64 }`). */
  stream: z.string().regex(INBOX_SUBJECT).optional(),
  /** Names the call for a later `cancel`. */
  callId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
  /** The node aborts the call this long after it starts (the client has stopped waiting by then). */
  deadlineMs: z.number().int().min(1).max(25 * 3600 * 1000).optional(),
});

export const cancelRequestSchema = z.strictObject({ callId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/) });

export const killRequestSchema = z.strictObject({ id: sandboxId });

export const streamChunkSchema = z.strictObject({ s: z.enum(["stdout", "stderr"]), d: z.string() });

/** What a node writes under its name in NODES_BUCKET at each heartbeat. */
export const nodeRecordSchema = z.object({
  name: nodeName,
  version: z.string(),
  backends: z.record(z.string(), z.object({ available: z.boolean(), accelerator: z.string().optional(), reason: z.string().optional() })),
  labels: z.record(z.string(), z.string()),
  max: z.number().int(),
  alive: z.number().int(),
  free: z.number().int(),
  inFlight: z.number().int(),
  /** Sandboxes created through the cluster that it holds. */
  clusterSandboxes: z.number().int(),
  load1: z.number(),
  memoryAvailableBytes: z.number(),
  state: z.string(),
  startedAt: z.string(),
  at: z.string(),
  /**
   * The node's own heartbeat period and TTL. A client judges the node lost once its entry is older than this TTL
   * (the entry's server timestamp), without waiting for JetStream to purge it. Absent from older nodes.
   */
  heartbeatMs: z.number().int().positive().optional(),
  ttlMs: z.number().int().positive().optional(),
});
export type NodeRecord = z.infer<typeof nodeRecordSchema>;
const nodeTimingSchema = nodeRecordSchema.pick({ heartbeatMs: true, ttlMs: true });

export const locationSchema = z.object({ node: nodeName, backend: z.string(), createdAt: z.string() });
export type Location = z.infer<typeof locationSchema>;

/** Every answer of a node: the result, or the error as the daemon's HTTP API would send it. */
export type Reply<T> = { ok: true; result: T } | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

export function okReply<T>(result: T): Reply<T> {
  return { ok: true, result };
}

export function errorReply(err: unknown): Reply<never> {
  return { ok: false, error: toLuminaGuardError(err).toJSON() };
}

const replySchema = z.union([
  z.object({ ok: z.literal(true), result: z.unknown() }),
  z.object({ ok: z.literal(false), error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }) }),
]);

/** A node's answer as the result, or the LuminaGuardError the in-process SDK would throw. */
export function unwrapReply(raw: unknown, where: string): unknown {
  const r = replySchema.safeParse(raw);
  if (!r.success) throw new LuminaGuardError("DAEMON_UNAVAILABLE", `${where} answered with something that is not the cluster protocol`);
  if (r.data.ok) return r.data.result;
  const e = r.data.error;
  if (!isErrorCode(e.code)) throw new LuminaGuardError("INTERNAL", `${where}: ${e.message} (unknown code ${JSON.stringify(e.code)})`);
  throw new LuminaGuardError(e.code, e.message, e.details ? { details: e.details } : {});
}

/** Parses JSON bytes from the wire: anything malformed is INVALID_ARGUMENT, never a crash. */
export function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    throw new LuminaGuardError("INVALID_ARGUMENT", "the message is not JSON");
  }
}

export function encodeJson(v: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(v), "utf8");
}

/** Whether a node with these backends and labels satisfies the constraints. */
export function satisfies(node: { backends: NodeRecord["backends"]; labels: Record<string, string> }, c: Constraints): boolean {
  const want = c.backend === undefined || c.backend === "auto" ? undefined : c.backend;
  const usable = Object.entries(node.backends).filter(([, b]) => b.available);
  if (usable.length === 0) return false;
  if (want !== undefined && !usable.some(([n]) => n === want)) return false;
  if (c.accelerator !== undefined) {
    const vm = node.backends["microvm"];
    if (!vm?.available || vm.accelerator !== c.accelerator) return false;
  }
  for (const [k, v] of Object.entries(c.labels ?? {})) if (node.labels[k] !== v) return false;
  return true;
}

/** A host path from a cluster client: workspaces are node-local. */
export function workspaceRefused(): LuminaGuardError {
  return new LuminaGuardError(
    "WORKSPACE_FORBIDDEN",
    "a cluster sandbox cannot take a host path as its workspace: workspaces are node-local (each gets a fresh one on its node); move files with write_file/read_file",
    { details: { reason: "cluster" } },
  );
}

/** A process's sighting of one node's heartbeat entry: its revision, and since when (performance.now()) it has seen that revision. */
export interface Sighting {
  revision: number;
  since: number;
}

export interface HeartbeatVerdict {
  lost: boolean;
  /** When looking again could change the verdict (ms from now). */
  nextMs: number;
  sighting: Sighting;
  ageMs: number;
  ttlMs: number;
}

/**
 * Whether the node whose `lg-nodes` entry is `e` has stopped heartbeating, decided from the entry itself rather than
 * from its purge (JetStream removes an expired entry on its own schedule, which can be late by up to another max age).
 * Lost when the entry is older than the node's TTL by its server timestamp AND this process has seen the same revision
 * for at least min(2 heartbeats, TTL/2): a live node's revision changes every heartbeat, so a clock skew between this
 * host and the NATS servers cannot make a live node look lost. A sandbox on a node that stopped heartbeating is thus
 * NODE_LOST at most one TTL after its last heartbeat, as long as the looker saw that heartbeat within TTL − min(2 × heartbeat, TTL/2) of it.
 */
export function heartbeatVerdict(
  e: { revision: number; created: Date; value: Uint8Array },
  bucketTtlMs: number,
  seen: Sighting | undefined,
  now = performance.now(),
): HeartbeatVerdict {
  let ttlMs = bucketTtlMs;
  let heartbeatMs: number | undefined;
  try {
    // Only the two timings: a record that fails the rest of the schema still says how long it may stay silent.
    const r = nodeTimingSchema.safeParse(parseJson(e.value));
    if (r.success) {
      if (r.data.ttlMs !== undefined) ttlMs = Math.min(ttlMs, r.data.ttlMs);
      heartbeatMs = r.data.heartbeatMs;
    }
  } catch {
    /* not a record: the bucket's TTL alone */
  }
  const sighting = seen !== undefined && seen.revision === e.revision ? seen : { revision: e.revision, since: now };
  const confirmMs = Math.min(2 * (heartbeatMs ?? ttlMs / 2), ttlMs / 2);
  const ageMs = Date.now() - e.created.getTime();
  const unchangedMs = now - sighting.since;
  const lost = ageMs > ttlMs && unchangedMs >= confirmMs;
  return { lost, nextMs: lost ? 0 : Math.max(ttlMs - ageMs, confirmMs - unchangedMs, 0) + 1, sighting, ageMs, ttlMs };
}
