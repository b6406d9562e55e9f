// The MCP edge's public surface (re-exported by src/index.ts): LuminaGuard as an MCP server (stdio, Streamable HTTP) and the pooled client.
export { serveStdio } from "./server/serve-stdio.js";
export { serveHttp } from "./server/serve-http.js";
export { McpClientPool } from "./client/pool.js";
