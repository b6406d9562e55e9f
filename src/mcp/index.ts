// The MCP edge: LuminaGuard as an MCP server (stdio, Streamable HTTP) and the pooled client for upstream MCP servers.
export { serveStdio } from "./server/serve-stdio.js";
export type { StdioServeOptions, McpStdioServer } from "./server/serve-stdio.js";
export { serveHttp, TOKEN_ENV, MCP_PATH } from "./server/serve-http.js";
export type { HttpServeOptions, McpHttpServer } from "./server/serve-http.js";
export { createSessionServer, DEFAULT_IDLE_MS, DEFAULT_MAX_IN_FLIGHT } from "./server/server.js";
export type { BeforeToolCall, ToolCallContext, McpServeOptions } from "./server/server.js";
export { SandboxSession } from "./server/session.js";
export { MCP_TOOLS, MCP_READ_MAX_BYTES, MCP_OUTPUT_MAX_BYTES } from "./server/tools.js";
export { toolResultSchemas } from "../tools/registry.js";
export { McpClientPool, splitToolName, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from "./client/pool.js";
export type { McpClientPoolOptions, UpstreamTool, ClientCallOptions, UpstreamStatus, UpstreamState } from "./client/pool.js";
export { McpClientMetrics } from "./client/metrics.js";
export type { CallOutcome, ToolCallStats } from "./client/metrics.js";
export {
  McpClientError,
  McpServerUnavailableError,
  McpServerCrashedError,
  McpTimeoutError,
  McpProtocolError,
  McpRemoteError,
} from "./client/errors.js";
export type { McpFailureReason } from "./client/errors.js";
