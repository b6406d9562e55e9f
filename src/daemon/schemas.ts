// The daemon API's request and response shapes: zod at the HTTP edge, the same types in the client.
import { z } from "zod";
import { BACKEND_CHOICES } from "../sandbox/types.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import { FILE_TOOLS_MODES, type BackendName, type ServedBy } from "../sandbox/types.js";
import type { ToolName } from "../tools/registry.js";

export const API_VERSION = "v1";
/** SIGTERM: how long calls in flight may take to finish before the daemon destroys their sandboxes. */
export const DEFAULT_DRAIN_GRACE_MS = 30_000;

/**
 * How the daemon's approval cliff treats a sandbox's Red calls: "ask" queues them for an answer over the
 * API (`GET /v1/approvals`), "policy" lets the policy alone decide (ask = deny), "off" runs every call
 * as the in-process SDK does.
 */
export const DAEMON_APPROVAL_MODES = ["ask", "policy", "off"] as const;
export type DaemonApprovalMode = (typeof DAEMON_APPROVAL_MODES)[number];

export const createSandboxBody = z.strictObject({
  backend: z.enum(BACKEND_CHOICES).optional(),
  memoryMiB: z.number().int().min(16).max(65_536).optional(),
  /** Absolute host path, seen as /workspace; a fresh one (removed with the sandbox) when omitted. */
  workspace: z.string().min(1).max(4096).refine((p) => p.startsWith("/"), "workspace must be an absolute path").optional(),
  diskMiB: z.number().int().min(MIN_DISK_MIB).max(MAX_DISK_MIB).optional(),
  /** Lifetime: the daemon destroys the sandbox this long after creation. */
  timeoutMs: z.number().int().min(1).max(7 * 24 * 3600 * 1000).optional(),
  fileTools: z.enum(FILE_TOOLS_MODES).optional(),
  approval: z.enum(DAEMON_APPROVAL_MODES).optional(),
  /** Who asked (shown in listings and the audit context; the admission queue is fair across clients). */
  client: z.string().max(200).optional(),
  /** How long this request may wait for room in the admission queue before CAPACITY; default the daemon's (30 s). */
  deadlineMs: z.number().int().min(0).max(3_600_000).optional(),
});
export type CreateSandboxBody = z.infer<typeof createSandboxBody>;

export const approvalAnswerBody = z.strictObject({
  decision: z.enum(["approve", "deny"]),
  reason: z.string().max(1000).optional(),
  /** Recorded as `http:<actor>` in the audit log. */
  actor: z.string().min(1).max(200).optional(),
});

export const auditQuery = z.object({ tail: z.coerce.number().int().min(1).max(10_000).optional() });

export interface SandboxDescription {
  id: string;
  backend: BackendName;
  workspace: string;
  /** The sandbox's info (accelerator, isolation, disk limit, ...) with `via: "daemon"`. */
  info: Record<string, string | number | boolean>;
  servedBy: Record<ToolName, ServedBy>;
  approval: DaemonApprovalMode;
  source: "pool" | "spawn";
  createdAt: string;
  lastUsedAt: string;
  expiresAt?: string;
  inFlight: number;
  client?: string;
}

/** One line of a streamed command: output as it comes, then exactly one `result` or `error` line. */
export type CommandStreamLine =
  | { stream: "stdout" | "stderr"; data: string }
  | { result: Record<string, unknown> }
  | { error: { code: string; message: string; details?: Record<string, unknown> } };
