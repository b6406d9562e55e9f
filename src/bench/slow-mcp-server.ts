// A small but real MCP server (the official SDK's McpServer over stdio) that misbehaves on request, for
// `bench exhaustion`'s saturation part: `sleep` answers late, `big` answers an oversized result, `flood`
// sends a flood of notifications before it answers, and with SLOW_MCP_BYTES_PER_S set every byte it
// writes goes out at that rate (a bandwidth-limited server). `echo` answers at once.
//   node slow-mcp-server.js            (run by the pool as a stdio server)
import { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

/** A writable that forwards to `out` at most `bytesPerS` bytes a second (in 1/20 s slices). */
function throttled(out: NodeJS.WritableStream, bytesPerS: number): Writable {
  const slice = Math.max(1, Math.floor(bytesPerS / 20));
  return new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, done): void {
      let off = 0;
      const next = (): void => {
        if (off >= chunk.length) return done();
        const part = chunk.subarray(off, off + slice);
        off += part.length;
        out.write(part);
        setTimeout(next, 50);
      };
      next();
    },
  });
}

export async function main(): Promise<void> {
  const server = new McpServer({ name: "lg-slow-mcp", version: "1.0.0" }, { capabilities: { logging: {} } });
  server.registerTool("echo", { description: "answers its text at once", inputSchema: { text: z.string().max(1000) } }, ({ text }) => ({
    content: [{ type: "text", text }],
  }));
  server.registerTool("sleep", { description: "answers after ms milliseconds", inputSchema: { ms: z.number().int().min(0).max(600_000) } }, async ({ ms }) => {
    await new Promise((r) => setTimeout(r, ms));
    return { content: [{ type: "text", text: `slept ${ms}` }] };
  });
  server.registerTool("big", { description: "answers a text of `bytes` bytes", inputSchema: { bytes: z.number().int().min(0).max(256 * 1024 * 1024) } }, ({ bytes }) => ({
    content: [{ type: "text", text: "x".repeat(bytes) }],
  }));
  server.registerTool(
    "flood",
    { description: "sends `count` log notifications of `bytes` bytes each, then answers", inputSchema: { count: z.number().int().min(0).max(1_000_000), bytes: z.number().int().min(0).max(1024 * 1024) } },
    async ({ count, bytes }) => {
      const data = "n".repeat(bytes);
      for (let i = 0; i < count; i++) await server.server.sendLoggingMessage({ level: "info", data });
      return { content: [{ type: "text", text: `sent ${count}` }] };
    },
  );
  const bps = Number(process.env["SLOW_MCP_BYTES_PER_S"] ?? "0");
  const transport = new StdioServerTransport(process.stdin, bps > 0 ? throttled(process.stdout, bps) : process.stdout);
  await server.connect(transport);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err: unknown) => {
    process.stderr.write(`lg-slow-mcp: ${String(err)}\n`);
    process.exit(1);
  });
}
