// Plugs the MCP client pool into the agent loop: upstream servers' tools offered next to the built-ins.
import { loadConfig } from "../config/config.js";
import { log } from "../log.js";
import { McpClientPool } from "../mcp/client/pool.js";
import type { ExternalTools } from "./types.js";

export function mcpExternalTools(pool: McpClientPool): ExternalTools {
  return {
    async list(options = {}) {
      const { tools, errors } = await pool.listAllTools(options.signal ? { signal: options.signal } : {});
      // A server that is down does not stop the run; its tools are just not offered.
      for (const [server, err] of Object.entries(errors)) log.warn({ server, err: err.message }, "MCP server unavailable; its tools are not offered");
      return tools.map((t) => ({
        server: t.server,
        name: t.tool,
        ...(t.description !== undefined ? { description: t.description } : {}),
        inputSchema: t.inputSchema as Record<string, unknown>,
        ...(t.annotations?.readOnlyHint !== undefined ? { readOnlyHint: t.annotations.readOnlyHint } : {}),
      }));
    },
    call: (server, tool, args, options) => pool.call(server, tool, args, { signal: options.signal }),
    close: () => pool.close(),
  };
}

/** The configured MCP servers as external tools, or undefined when the config names none. */
export async function configuredExternalTools(): Promise<ExternalTools | undefined> {
  const config = loadConfig();
  if (Object.keys(config.mcpServers ?? {}).length === 0) return undefined;
  return mcpExternalTools(McpClientPool.fromConfig(config));
}
