// Named failures of an upstream MCP server, as the client pool reports them (each a LuminaGuardError with a stable code).
import { LuminaGuardError, type ErrorCode, type ErrorOptions } from "../../errors.js";

/** What went wrong with the upstream server, finer than the error code; also in `details.reason`. */
export type McpFailureReason = "unavailable" | "crashed" | "timeout" | "protocol" | "remote" | "unknown_server" | "unknown_tool" | "cancelled";

/** Base of every error the MCP client raises about an upstream server. */
export class McpClientError extends LuminaGuardError {
  constructor(
    readonly server: string,
    readonly reason: McpFailureReason,
    code: ErrorCode,
    message: string,
    options: ErrorOptions = {},
  ) {
    super(code, message, { ...options, details: { server, reason, ...(options.details ?? {}) } });
    this.name = "McpClientError";
  }
}

/** The server could not be started or reached (spawn failure, connection refused, init failed). */
export class McpServerUnavailableError extends McpClientError {
  constructor(server: string, message: string, options: ErrorOptions = {}) {
    super(server, "unavailable", "UPSTREAM_UNREACHABLE", message, options);
    this.name = "McpServerUnavailableError";
  }
}

/** The server's process exited or its connection closed while a call was in flight. */
export class McpServerCrashedError extends McpClientError {
  constructor(server: string, message: string, options: ErrorOptions = {}) {
    super(server, "crashed", "UPSTREAM_CRASHED", message, options);
    this.name = "McpServerCrashedError";
  }
}

/** The server did not answer within the call's deadline. */
export class McpTimeoutError extends McpClientError {
  constructor(server: string, message: string, options: ErrorOptions = {}) {
    super(server, "timeout", "TOOL_TIMEOUT", message, options);
    this.name = "McpTimeoutError";
  }
}

/** The server sent something that is not valid MCP (bad JSON, bad JSON-RPC, a result of the wrong shape). */
export class McpProtocolError extends McpClientError {
  constructor(server: string, message: string, options: ErrorOptions = {}) {
    super(server, "protocol", "UPSTREAM_PROTOCOL", message, options);
    this.name = "McpProtocolError";
  }
}

/** The server answered the call with a JSON-RPC error (bad arguments, unknown tool on its side, its own failure). */
export class McpRemoteError extends McpClientError {
  constructor(
    server: string,
    readonly rpcCode: number,
    message: string,
    options: ErrorOptions = {},
  ) {
    super(server, "remote", rpcCode === -32602 ? "INVALID_ARGUMENT" : "IO_ERROR", message, { ...options, details: { rpcCode, ...(options.details ?? {}) } });
    this.name = "McpRemoteError";
  }
}
