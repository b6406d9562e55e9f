// How the daemon's clients read its failures: the full one (src/daemon/client.ts, node:http) and the thin
// exec's (src/cli/exec-thin.ts, node:net), from one place so that both say the same.
import { LuminaGuardError, isErrorCode } from "../errors.js";

/** Whether a connection error means "no daemon there" (as opposed to a daemon that failed). */
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

