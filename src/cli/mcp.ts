// `luminaguard mcp`: serve the five tools over MCP (stdio or Streamable HTTP), and check configured upstream servers by hand.
import { Option, type Command } from "commander";
import { configPath, loadConfig } from "../config/config.js";
import { LuminaGuardError } from "../errors.js";
import { parseIntOption } from "./output.js";
import { BACKEND_CHOICES, type BackendChoice } from "../sandbox/types.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import type { FileToolsMode } from "../sandbox/types.js";
import { fileToolsOption } from "./options.js";
import { escapeForTerminal } from "../util/terminal.js";
import { APPROVAL_MODES, approvalHook, type ApprovalMode } from "../mcp/server/approval.js";
import { McpClientPool } from "../mcp/client/pool.js";
import { serveHttp, TOKEN_ENV } from "../mcp/server/serve-http.js";
import { serveStdio } from "../mcp/server/serve-stdio.js";
import type { McpServeOptions } from "../mcp/server/server.js";
import type { ClusterClient } from "../cluster/client.js";
import { addClusterConnectOptions, clusterForClient, type ClusterConnectFlags } from "./cluster.js";

const DEFAULT_HTTP_PORT = 8765;

interface ServeFlags {
  transport: "stdio" | "http";
  host: string;
  port: number;
  backend: BackendChoice;
  workspace?: string;
  memory?: number;
  disk?: number;
  fileTools?: FileToolsMode;
  idleTimeout: number;
  maxSessions: number;
  maxSessionsPerClient?: number;
  freshIdleTimeout: number;
  approval: ApprovalMode;
  policy?: string;
}

/** Resolves on the first SIGINT/SIGTERM after running `stop`. */
function untilSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const on = (): void => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      void stop().finally(resolve);
    };
    process.once("SIGINT", on);
    process.once("SIGTERM", on);
  });
}

/** After shutdown, exit even if a library left a handle open (the loop would otherwise keep a dead server alive). */
function exitSoon(): void {
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
}

function parseArgsJson(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `--args is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new LuminaGuardError("INVALID_ARGUMENT", "--args must be a JSON object");
  return v as Record<string, unknown>;
}

/** `mcp --cluster`: sessions' sandboxes claimed in the cluster (one NATS connection for all sessions). */
async function clusterSource(flags: ServeFlags & ClusterConnectFlags): Promise<{ client: ClusterClient; source: NonNullable<McpServeOptions["sandboxSource"]> } | undefined> {
  const connect = await clusterForClient(flags);
  if (!connect) return undefined;
  if (flags.workspace !== undefined) {
    throw new LuminaGuardError("WORKSPACE_FORBIDDEN", "--workspace with --cluster: a cluster sandbox gets a fresh workspace on its node; move files through the tools", {
      details: { reason: "cluster" },
    });
  }
  const { connectClusterClient } = await import("../cluster/lazy.js");
  const client = await connectClusterClient(connect);
  const source = {
    acquire: (signal?: AbortSignal) =>
      client.claim({
        ...(flags.backend !== "auto" ? { backend: flags.backend } : {}),
        ...(flags.memory !== undefined ? { memoryMiB: flags.memory } : {}),
        ...(flags.disk !== undefined ? { diskMiB: flags.disk } : {}),
        ...(flags.fileTools !== undefined ? { fileTools: flags.fileTools } : {}),
        ...(signal !== undefined ? { signal } : {}),
        client: "mcp",
      }),
  };
  return { client, source };
}

export function registerMcpCommand(program: Command): void {
  const mcp = program
    .command("mcp")
    .description("serve read_file, write_file, list_directory, search and execute_command over MCP, each session in its own sandbox")
    .addOption(new Option("--transport <kind>", "stdio for a host that starts us, http for Streamable HTTP").choices(["stdio", "http"]).default("stdio"))
    .option("--host <addr>", "address to listen on (http)", "127.0.0.1")
    .option("--port <n>", "port to listen on (http; 0 = any free port)", parseIntOption("--port", 0, 65_535), DEFAULT_HTTP_PORT)
    .addOption(new Option("--backend <name>", "sandbox backend (auto = strongest isolation that works here)").choices([...BACKEND_CHOICES]).default("auto"))
    .option("--workspace <dir>", "host directory every session sees as /workspace (default: a fresh one per session)")
    .option("--memory <MiB>", "memory limit of each sandbox", parseIntOption("--memory", 32, 65_536))
    .option("--disk <MiB>", "disk limit of each sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
    .addOption(fileToolsOption())
    .option("--idle-timeout <seconds>", "release a session's sandbox (and end an http session) after this long unused", parseIntOption("--idle-timeout", 1, 7 * 86_400), 600)
    .addOption(
      new Option("--approval <mode>", "Red calls (writes, commands): elicit = ask the user through the host, else deny unless the policy allows; policy = the policy alone; off = no cliff")
        .choices([...APPROVAL_MODES])
        .default("elicit"),
    )
    .option("--policy <file>", "approval policy (default $LUMINAGUARD_HOME/policy.json when present)")
    .option("--max-sessions <n>", "concurrent http sessions at most; at the cap a new one evicts the least recently used idle session", parseIntOption("--max-sessions", 1, 10_000), 32)
    .option("--max-sessions-per-client <n>", "http sessions one client (address + client name) may hold (default 3/4 of --max-sessions)", parseIntOption("--max-sessions-per-client", 1, 10_000))
    .option("--fresh-idle-timeout <seconds>", "end an http session that never called a tool after this long", parseIntOption("--fresh-idle-timeout", 1, 7 * 86_400), 30)
    .addHelpText(
      "after",
      `\nOver http, clients must send "Authorization: Bearer <token>": the token is $${TOKEN_ENV}, or one generated and printed once on stderr.\n` +
        `Upstream servers for "mcp list" and "mcp call" are read from ${configPath()} ("mcpServers", as other MCP hosts write it).`,
    );
  addClusterConnectOptions(mcp, "each session claims its sandbox in this cluster (workspaces are then node-local)");
  mcp.action(async (flags: ServeFlags & ClusterConnectFlags) => {
      const cluster = await clusterSource(flags);
      const common: McpServeOptions = {
        backend: flags.backend,
        idleMs: flags.idleTimeout * 1000,
        ...(flags.workspace !== undefined ? { workspace: flags.workspace } : {}),
        ...(flags.memory !== undefined ? { memoryMiB: flags.memory } : {}),
        ...(flags.disk !== undefined ? { diskMiB: flags.disk } : {}),
        ...(flags.fileTools !== undefined ? { fileTools: flags.fileTools } : {}),
      };
      if (cluster) common.sandboxSource = cluster.source;
      const hook = approvalHook(flags.approval, {
        ...(flags.policy !== undefined ? { policyFile: flags.policy } : {}),
        ...(flags.workspace !== undefined ? { workspace: flags.workspace } : {}),
      });
      if (hook) common.beforeToolCall = hook;
      if (flags.transport === "stdio") {
        const server = await serveStdio(common);
        void untilSignal(() => server.close());
        await server.closed;
        await cluster?.client.close();
        exitSoon();
        return;
      }
      const server = await serveHttp({
        ...common,
        host: flags.host,
        port: flags.port,
        maxSessions: flags.maxSessions,
        freshIdleMs: flags.freshIdleTimeout * 1000,
        ...(flags.maxSessionsPerClient !== undefined ? { maxSessionsPerClient: flags.maxSessionsPerClient } : {}),
      });
      process.stderr.write(`luminaguard mcp: listening on ${server.url}\n`);
      if (server.tokenGenerated) process.stderr.write(`luminaguard mcp: bearer token (shown once; set ${TOKEN_ENV} to choose it): ${server.token}\n`);
      await untilSignal(() => server.close());
      await cluster?.client.close();
      exitSoon();
    });

  mcp
    .command("list")
    .description("connect to the configured MCP servers (or one) and list their tools as server.tool")
    .argument("[server]", "only this server")
    .option("--json", "print one JSON object")
    .option("--timeout <seconds>", "deadline for connecting and listing", parseIntOption("--timeout", 1, 3600), 30)
    .action(async (server: string | undefined, flags: { json?: boolean; timeout: number }) => {
      const config = loadConfig();
      const pool = McpClientPool.fromConfig(config, { connectTimeoutMs: flags.timeout * 1000 });
      try {
        if (pool.serverNames.length === 0) throw new LuminaGuardError("NOT_FOUND", `no MCP servers are configured in ${configPath()} (add "mcpServers")`);
        const { tools, errors } = server === undefined ? await pool.listAllTools({ timeoutMs: flags.timeout * 1000 }) : { tools: await pool.listTools(server, { timeoutMs: flags.timeout * 1000 }), errors: {} };
        if (flags.json) {
          const errs = Object.fromEntries(Object.entries(errors).map(([k, e]) => [k, e.toJSON()]));
          process.stdout.write(`${JSON.stringify({ tools, errors: errs }, null, 2)}\n`);
        } else {
          // Names, descriptions and errors come from the peer: inert on the terminal.
          const s = (t: string): string => escapeForTerminal(t, false);
          const width = Math.min(48, Math.max(0, ...tools.map((t) => s(t.name).length)));
          for (const t of tools) {
            const first = (t.description ?? t.title ?? "").split("\n")[0] ?? "";
            process.stdout.write(`${s(t.name).padEnd(width)}  ${s(first.length > 100 ? `${first.slice(0, 100)}…` : first)}\n`);
          }
          for (const [name, e] of Object.entries(errors)) process.stderr.write(`luminaguard: ${s(name)}: error [${e.code}]: ${s(e.message)}\n`);
        }
        if (Object.keys(errors).length > 0) process.exitCode = 1;
      } finally {
        await pool.close();
      }
    });

  mcp
    .command("call")
    .description("call one tool of a configured MCP server and print the result as JSON (exit 1 if the result is an error)")
    .argument("<server>", "server name from mcpServers")
    .argument("<tool>", "tool name on that server")
    .option("--args <json>", "tool arguments as a JSON object", "{}")
    .option("--timeout <seconds>", "deadline for the call", parseIntOption("--timeout", 1, 86_400), 60)
    .action(async (server: string, tool: string, flags: { args: string; timeout: number }) => {
      const args = parseArgsJson(flags.args);
      const pool = McpClientPool.fromConfig(loadConfig());
      const controller = new AbortController();
      const onSignal = (): void => controller.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      try {
        const result = await pool.call(server, tool, args, { timeoutMs: flags.timeout * 1000, signal: controller.signal });
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        if (result.isError) process.exitCode = 1;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await pool.close();
      }
    });
}
