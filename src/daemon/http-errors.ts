// The one place where error codes become HTTP statuses: every API error is `{ code, message, details? }`.
import type { ErrorCode, LuminaGuardError } from "../errors.js";

/** Exhaustive: a new code does not compile until it has a status here. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNSUPPORTED_OP: 400,
  NOT_FOUND: 404,
  PATH_ESCAPE: 403,
  FILE_TOO_LARGE: 413,
  IS_A_DIRECTORY: 409,
  NOT_A_DIRECTORY: 409,
  PERMISSION_DENIED: 403,
  NO_SPACE: 507,
  SANDBOX_OOM: 422,
  IO_ERROR: 500,
  TOOL_TIMEOUT: 504,
  // nginx's "client closed request": nobody reads it, but logs and metrics tell it apart.
  CANCELLED: 499,
  COMMAND_NOT_FOUND: 404,
  SANDBOX_SPAWN_FAILED: 500,
  SANDBOX_CLOSED: 410,
  BACKEND_UNAVAILABLE: 503,
  WORKSPACE_FORBIDDEN: 403,
  RUNTIME_DIR_UNSAFE: 500,
  IMAGE_MISSING: 503,
  IMAGE_BUILD_FAILED: 500,
  GUEST_CHANNEL_LOST: 502,
  GUEST_PROTOCOL_VIOLATION: 502,
  POLICY_DENIED: 403,
  APPROVAL_DENIED: 403,
  APPROVAL_TIMEOUT: 403,
  LLM_UNAVAILABLE: 502,
  LLM_BAD_RESPONSE: 502,
  BUDGET_EXCEEDED: 429,
  SESSION_BUSY: 429,
  UPSTREAM_UNREACHABLE: 502,
  UPSTREAM_CRASHED: 502,
  UPSTREAM_PROTOCOL: 502,
  CAPACITY: 429,
  SHUTTING_DOWN: 503,
  DAEMON_UNAVAILABLE: 503,
  NODE_LOST: 502,
  DAEMON_RUNNING: 409,
  UNAUTHORIZED: 401,
  INTERNAL: 500,
};

export function httpStatus(err: LuminaGuardError): number {
  return HTTP_STATUS[err.code];
}

/** The JSON error response; CAPACITY and SHUTTING_DOWN say when to retry. */
export function errorResponse(err: LuminaGuardError): Response {
  const status = httpStatus(err);
  const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
  const retry = err.details["retryAfterMs"];
  if (typeof retry === "number") headers["retry-after"] = String(Math.max(1, Math.ceil(retry / 1000)));
  if (err.code === "UNAUTHORIZED") headers["www-authenticate"] = 'Bearer realm="luminaguard"';
  return new Response(JSON.stringify(err.toJSON()), { status, headers });
}
