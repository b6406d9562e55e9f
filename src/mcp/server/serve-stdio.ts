// `luminaguard mcp` over stdio: exactly one session, ended by EOF on stdin; stdout carries only protocol messages.
import type { Readable, Writable } from "node:stream";
import { log } from "../../log.js";
import { DEFAULT_IDLE_MS, DEFAULT_MAX_IN_FLIGHT, createSessionServer, poolFor, type McpServeOptions } from "./server.js";
import { SandboxSession } from "./session.js";
import { LineStdioServerTransport } from "./stdio-transport.js";

interface StdioServeOptions extends McpServeOptions {
  stdin?: Readable;
  stdout?: Writable;
  maxMessageBytes?: number;
}

interface McpStdioServer {
  session: SandboxSession;
  /** Resolves once the session has ended and everything it held is released. */
  closed: Promise<void>;
  close(): Promise<void>;
}

export async function serveStdio(o: StdioServeOptions = {}): Promise<McpStdioServer> {
  const { pool, owned } = await poolFor(o, { minSize: 1, maxSize: 2 });
  // Idle on stdio releases the sandbox only: the host keeps its session, a later call gets a fresh sandbox.
  const session = new SandboxSession({
    id: "stdio",
    transport: "stdio",
    pool,
    idleMs: o.idleMs ?? DEFAULT_IDLE_MS,
    maxInFlight: o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    onIdle: (s) => void s.releaseSandbox(),
  });
  const server = createSessionServer(session, o);
  const transport = new LineStdioServerTransport(o.stdin, o.stdout, o.maxMessageBytes !== undefined ? { maxMessageBytes: o.maxMessageBytes } : {});
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let shutdown: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (shutdown ??= (async () => {
      await session.close();
      if (owned) await pool.drain();
      await server.close().catch(() => undefined);
      log.info("mcp stdio session ended");
      resolveClosed();
    })());
  server.onclose = () => void close();
  server.onerror = (err) => log.debug({ err: err.message }, "mcp stdio transport error");
  await server.connect(transport);
  return { session, closed, close };
}
