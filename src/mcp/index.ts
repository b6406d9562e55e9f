// The MCP edge: LuminaGuard as an MCP server (stdio, Streamable HTTP) and the pooled client for upstream MCP servers.
export { serveStdio } from "./serve-stdio.js";
export type { StdioServeOptions, McpStdioServer } from "./serve-stdio.js";
export { serveHttp, TOKEN_ENV, MCP_PATH } from "./serve-http.js";
export type { HttpServeOptions, McpHttpServer } from "./serve-http.js";
export { createSessionServer, DEFAULT_IDLE_MS, DEFAULT_MAX_IN_FLIGHT } from "./server.js";
export type { BeforeToolCall, ToolCallContext, McpServeOptions } from "./server.js";
export { SandboxSession } from "./session.js";
export { MCP_TOOLS, MCP_READ_MAX_BYTES, MCP_OUTPUT_MAX_BYTES } from "./tools.js";
export { toolResultSchemas } from "../tools/registry.js";
export { McpClientPool, splitToolName, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from "./client.js";
export type { McpClientPoolOptions, UpstreamTool, ClientCallOptions, UpstreamStatus, UpstreamState } from "./client.js";
export { McpClientMetrics } from "./metrics.js";
export type { CallOutcome, ToolCallStats } from "./metrics.js";
export {
  McpClientError,
  McpServerUnavailableError,
  McpServerCrashedError,
  McpTimeoutError,
  McpProtocolError,
  McpRemoteError,
} from "./errors.js";
export type { McpFailureReason } from "./errors.js";
