// Shared pieces of the MCP tests: where the real npm servers and our launcher are, SDK clients, process checks.
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { ancestors, cmdline, listPids, pidAlive as alive } from "../../src/util/procfs.js";

export { alive };

const require = createRequire(import.meta.url);
export const FS_SERVER = require.resolve("@modelcontextprotocol/server-filesystem/dist/index.js");
export const EVERYTHING_SERVER = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
/** The real CLI, whose `mcp` command the tests drive. */
export const SERVE_ENTRY = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));

/** The official SDK client to our server over stdio, spawned through the real command line. */
export async function sdkStdioClient(args: string[], env: Record<string, string> = {}): Promise<{ client: Client; transport: StdioClientTransport; stderr: () => string }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [SERVE_ENTRY, "mcp", "--approval", "off", ...args],
    env: { ...(process.env as Record<string, string>), LUMINAGUARD_LOG: "warn", ...env },
    stderr: "pipe",
  });
  let err = "";
  transport.stderr?.on("data", (c: Buffer) => (err += c.toString("utf8")));
  const client = new Client({ name: "lg-test", version: "1" });
  await client.connect(transport, { timeout: 60_000 });
  return { client, transport, stderr: () => err };
}

export async function sdkHttpClient(url: string, token: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: "lg-test-http", version: "1" });
  await client.connect(transport, { timeout: 30_000 });
  return { client, transport };
}

export function text(r: CallToolResult | Record<string, unknown>): string {
  const content = (r as CallToolResult).content;
  const first = content[0];
  return first && first.type === "text" ? first.text : "";
}

/** Pids of any process whose command line contains `needle` (sandboxed processes are visible from the host). */
export function pidsWithCmdline(needle: string): number[] {
  return listPids().filter((p) => p !== process.pid && (cmdline(p) ?? "").includes(needle) && alive(p));
}

/** A sleep duration no other process uses, to find that one command from the host. */
export function uniqueSleep(): string {
  return `${300 + Math.floor(Math.random() * 1e6) / 1e6}`.padEnd(10, "1");
}

const SANDBOX_PROCESS = /bwrap|lg-agent|qemu-system/;

/** Pids of our sandboxes' processes (bwrap, lg-agent, qemu) whose command line mentions `needle`. */
export function sandboxPids(needle: string): number[] {
  return listPids().filter((p) => {
    const cmd = cmdline(p) ?? "";
    return SANDBOX_PROCESS.test(cmd) && cmd.includes(needle);
  });
}


/**
 * The sandbox processes (bwrap, agent, QEMU) above `pid` in its process tree: how a test finds the
 * sandbox that runs a given command when the launcher's command line names no host path of it.
 */
export function sandboxAncestors(pid: number): number[] {
  return ancestors(pid).filter((p) => SANDBOX_PROCESS.test(cmdline(p) ?? ""));
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 25): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return await cond();
}

/** Spawns a command (argv, own process group) and resolves once `ready` appears on its stderr. */
export async function spawnUntil(argv: string[], ready: RegExp, env: Record<string, string> = {}, timeoutMs = 30_000): Promise<{ child: ChildProcess; stderr: () => string; match: RegExpMatchArray }> {
  const [cmd, ...args] = argv;
  const child = spawn(cmd as string, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"], detached: true });
  let err = "";
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${argv.join(" ")}: no ${ready} on stderr within ${timeoutMs} ms: ${err}`)), timeoutMs);
    child.stderr?.on("data", (c: Buffer) => {
      err += c.toString("utf8");
      const m = err.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${argv.join(" ")} exited with ${code}: ${err}`));
    });
  });
  return { child, stderr: () => err, match };
}

/** Kills a process group spawned by spawnUntil and waits for the leader to exit. */
export async function killTree(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  try {
    process.kill(-(child.pid as number), signal);
  } catch {
    child.kill(signal);
  }
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
}

/** server-everything over Streamable HTTP on a free port; its own process group. */
export async function startEverythingHttp(): Promise<{ url: string; child: ChildProcess }> {
  const port = await new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const { child } = await spawnUntil([process.execPath, EVERYTHING_SERVER, "streamableHttp"], new RegExp(`listening on port ${port}`), { PORT: String(port) });
  child.stdout?.resume();
  child.stderr?.resume();
  return { url: `http://127.0.0.1:${port}/mcp`, child };
}
