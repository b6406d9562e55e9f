// The one error hierarchy: every failure carries a stable string code; only the CLI, HTTP and MCP edges translate.

export const ERROR_CODES = [
  "INVALID_ARGUMENT",
  "UNSUPPORTED_OP",
  "NOT_FOUND",
  "PATH_ESCAPE",
  "FILE_TOO_LARGE",
  "IS_A_DIRECTORY",
  "NOT_A_DIRECTORY",
  "PERMISSION_DENIED",
  "NO_SPACE",
  /** A command was killed for running out of the sandbox's memory (memoryMiB); the sandbox itself still works. */
  "SANDBOX_OOM",
  "IO_ERROR",
  "TOOL_TIMEOUT",
  "CANCELLED",
  "COMMAND_NOT_FOUND",
  "SANDBOX_SPAWN_FAILED",
  "SANDBOX_CLOSED",
  "BACKEND_UNAVAILABLE",
  /** A workspace that is, lies in, or contains a system, credential or LuminaGuard directory. */
  "WORKSPACE_FORBIDDEN",
  /** The private runtime directory (sockets, owned workspaces) is not ours alone: wrong owner, mode, a symlink. */
  "RUNTIME_DIR_UNSAFE",
  "IMAGE_MISSING",
  "IMAGE_BUILD_FAILED",
  "GUEST_CHANNEL_LOST",
  "GUEST_PROTOCOL_VIOLATION",
  "POLICY_DENIED",
  "APPROVAL_DENIED",
  "APPROVAL_TIMEOUT",
  "LLM_UNAVAILABLE",
  "LLM_BAD_RESPONSE",
  "BUDGET_EXCEEDED",
  /** An MCP session already has as many calls in flight as it may take; retry when one has finished. */
  "SESSION_BUSY",
  /** An upstream MCP server could not be started or reached (spawn failure, connection refused, refused credentials). */
  "UPSTREAM_UNREACHABLE",
  /** An upstream MCP server's process exited or its connection closed while it was needed. */
  "UPSTREAM_CRASHED",
  /** An upstream MCP server sent something that is not valid MCP (bad JSON, bad JSON-RPC, a malformed result). */
  "UPSTREAM_PROTOCOL",
  /** The daemon is at its limit (sandboxes at most); `details.retryAfterMs` says when to try again. */
  "CAPACITY",
  /** The daemon is draining (SIGTERM): it takes no new work. */
  "SHUTTING_DOWN",
  /** No daemon answers on the socket, or it answered with something that is not the API. */
  "DAEMON_UNAVAILABLE",
  /** Another daemon already listens on the socket. */
  "DAEMON_RUNNING",
  /** A cluster sandbox's node stopped heartbeating (crashed, cut off): the sandbox and its work are gone. */
  "NODE_LOST",
  /** A request to the daemon's API without the right bearer token. */
  "UNAUTHORIZED",
  "INTERNAL",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

/** Base of every error LuminaGuard throws on purpose. */
export class LuminaGuardError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LuminaGuardError";
    this.code = code;
    this.details = options.details ?? {};
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return Object.keys(this.details).length > 0
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message };
  }
}

/** A tool ran past its deadline; the process tree inside the sandbox was killed. */
export class ToolTimeoutError extends LuminaGuardError {
  constructor(message: string, options: ErrorOptions = {}) {
    super("TOOL_TIMEOUT", message, options);
    this.name = "ToolTimeoutError";
  }
}

/** The sandbox went away (VM killed, process died, channel cut) while the host still needed it. */
export class GuestChannelLostError extends LuminaGuardError {
  constructor(message: string, options: ErrorOptions = {}) {
    super("GUEST_CHANNEL_LOST", message, options);
    this.name = "GuestChannelLostError";
  }
}

/** The guest sent something the protocol forbids; the guest is killed, never trusted again. */
export class GuestProtocolError extends LuminaGuardError {
  constructor(message: string, options: ErrorOptions = {}) {
    super("GUEST_PROTOCOL_VIOLATION", message, options);
    this.name = "GuestProtocolError";
  }
}

export function isErrorCode(value: string): value is ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(value);
}

/** Wraps anything thrown into a LuminaGuardError, keeping ours as they are. */
export function toLuminaGuardError(err: unknown, fallback: ErrorCode = "INTERNAL"): LuminaGuardError {
  if (err instanceof LuminaGuardError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new LuminaGuardError(fallback, message, { cause: err });
}

// How the daemon's clients read its failures (the full one, src/daemon/client.ts, and the thin exec's).

/** Whether a connection error means "no daemon there" (as opposed to a daemon that failed). */
const NO_DAEMON_AT = Symbol.for("luminaguard.noDaemonAt");

/**
 * Notes that no daemon answered at `socket` in this process. The bin's thin exec client and the full
 * command are separate bundles with their own copies of this module; the global symbol is shared, so
 * the full command does not ask a second time (loading an HTTP client to do so costs ~10 ms).
 */
export function markNoDaemon(socket: string): void {
  (globalThis as Record<symbol, unknown>)[NO_DAEMON_AT] = socket;
}

/** Whether this process already found no daemon at `socket` (markNoDaemon). */
export function knownNoDaemon(socket: string): boolean {
  return (globalThis as Record<symbol, unknown>)[NO_DAEMON_AT] === socket;
}

export function noDaemon(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ECONNREFUSED" || code === "ENOTSOCK" || code === "ECONNRESET" || code === "EACCES";
}

/** Rebuilds the daemon's `{ code, message, details }` as the LuminaGuardError the in-process SDK would throw. */
export function errorFromBody(status: number, body: unknown): LuminaGuardError {
  const b = body as { code?: unknown; message?: unknown; details?: unknown } | null;
  if (b && typeof b.code === "string" && isErrorCode(b.code) && typeof b.message === "string") {
    const details = typeof b.details === "object" && b.details !== null ? (b.details as Record<string, unknown>) : undefined;
    return new LuminaGuardError(b.code, b.message, details ? { details } : {});
  }
  return new LuminaGuardError("DAEMON_UNAVAILABLE", `the daemon answered HTTP ${status} without an error code`);
}

