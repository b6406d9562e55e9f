// The "mcp" scenario: our MCP client to real npm servers, the official SDK client to our sandboxed server, and the
// unsandboxed server-filesystem through the same SDK client as the baseline, all measured in the same run.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { readAudit } from "../approval/audit.js";
import { LuminaGuardError } from "../errors.js";
import { McpClientPool } from "../mcp/client/pool.js";
import { packageRoot } from "../util/pkg.js";
import { killGroup } from "../util/proc.js";
import { sleep } from "./measure.js";
import type { Recorder, ScenarioOptions } from "./scenarios.js";
import { freePort } from "../util/net.js";
import { recordCreated } from "../runtime/created.js";

const require = createRequire(import.meta.url);
export const FS_SERVER = require.resolve("@modelcontextprotocol/server-filesystem/dist/index.js");
export const EVERYTHING_SERVER = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
const WARMUP = 50;
const DEFAULT_ROUNDS = 5;
/** The approval mode our server runs with: the default of `luminaguard mcp`, named explicitly. */
const APPROVAL_MODE = "elicit";

function packageVersion(name: string): string {
  try {
    // Not require.resolve(`${name}/package.json`): the SDK's exports map that to a stub without a version.
    return (JSON.parse(readFileSync(join(packageRoot(), "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

/**
 * argv and environment of our MCP server over stdio: the real `luminaguard mcp` with the cliff on (the approval
 * gate decides every call; no policy file in its fresh LUMINAGUARD_HOME, so the built-in rules: Green reads pass
 * without a person) and its audit log at `<home>/audit.jsonl`.
 */
function ourServer(backend: string, workspace: string, home: string): { argv: string[]; env: Record<string, string>; via: string } {
  const main = fileURLToPath(new URL("../cli/main.js", import.meta.url));
  const env: Record<string, string> = { ...getDefaultEnvironment(), LUMINAGUARD_HOME: home };
  for (const k of ["LUMINAGUARD_CACHE", "LUMINAGUARD_RUN"]) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return {
    argv: [main, "mcp", "--backend", backend, "--workspace", workspace, "--idle-timeout", "3600", "--approval", APPROVAL_MODE],
    env,
    via: `luminaguard mcp --approval ${APPROVAL_MODE}`,
  };
}

/**
 * Every call our server answered must have its line in the audit log: at least `succeeded` read_file entries,
 * at most `attempted`, each a Green read allowed by the built-in read-only rule. Throws (the bench fails) otherwise.
 */
export function checkAudited(file: string, calls: { attempted: number; succeeded: number }): { entries: number; skipped: number } {
  const { entries, skipped } = readAudit(file);
  const reads = entries.filter((e) => e.tool === "read_file");
  const problems: string[] = [];
  if (reads.length < calls.succeeded) problems.push(`${calls.succeeded} read_file calls succeeded but the audit log has ${reads.length} read_file entries`);
  if (reads.length > calls.attempted) problems.push(`${reads.length} read_file entries for ${calls.attempted} calls made`);
  if (entries.length !== reads.length) problems.push(`${entries.length - reads.length} entries for other tools`);
  const odd = reads.filter((e) => e.decision !== "allow" || e.class !== "green" || e.rule !== "default:read-only").length;
  if (odd > 0) problems.push(`${odd} read_file entries that are not a Green allow by default:read-only`);
  if (skipped > 0) problems.push(`${skipped} unreadable lines`);
  if (problems.length > 0) throw new LuminaGuardError("INTERNAL", `mcp bench: the audit log ${file} does not show every call: ${problems.join("; ")}`);
  return { entries: reads.length, skipped };
}

async function sdkClient(args: string[], label: string, env?: Record<string, string>): Promise<Client> {
  const client = new Client({ name: `lg-bench-${label}`, version: "1" });
  await client.connect(new StdioClientTransport({ command: process.execPath, args, stderr: "ignore", ...(env !== undefined ? { env } : {}) }), { timeout: 60_000 });
  await client.listTools({}, { timeout: 30_000 });
  return client;
}

/** server-everything over Streamable HTTP, in its own process group; resolves once it listens. */
export async function startEverythingHttp(port?: number): Promise<{ url: string; child: ChildProcess }> {
  port ??= await freePort();
  const child = spawn(process.execPath, [EVERYTHING_SERVER, "streamableHttp"], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server-everything did not listen within 30 s: ${stderr.slice(-500)}`)), 30_000);
    child.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString("utf8");
      if (stderr.includes(`listening on port ${port}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server-everything exited with ${code}: ${stderr.slice(-500)}`));
    });
  });
  child.stderr?.resume();
  return { url: `http://127.0.0.1:${port}/mcp`, child };
}

/** `depth` calls kept in flight on one connection for `seconds`: completed calls per minute. */
async function pipelined(call: () => Promise<unknown>, depth: number, seconds: number, onProgress: (elapsedS: number) => void): Promise<{ perMin: number; failures: number }> {
  const start = performance.now();
  const end = start + seconds * 1000;
  let done = 0;
  let failures = 0;
  await Promise.all(
    Array.from({ length: depth }, async () => {
      while (performance.now() < end) {
        try {
          await call();
          done++;
        } catch {
          failures++;
        }
        if (done % 500 === 0) onProgress((performance.now() - start) / 1000);
      }
    }),
  );
  return { perMin: (done / ((performance.now() - start) / 1000)) * 60, failures };
}

function failIfError(r: unknown, what: string): void {
  if ((r as { isError?: boolean }).isError) throw new Error(`${what} failed: ${JSON.stringify(r).slice(0, 300)}`);
}

export async function mcpScenario(rec: Recorder, o: ScenarioOptions): Promise<void> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "lg-bench-mcp-")));
  recordCreated(dir);
  // Our server's LUMINAGUARD_HOME (audit log, no policy file), outside the workspace as the gate demands.
  const home = realpathSync(mkdtempSync(join(tmpdir(), "lg-bench-mcp-home-")));
  const auditFile = join(home, "audit.jsonl");
  recordCreated(home);
  // A small source file: the size agents read most.
  const text = `${"// LuminaGuard MCP benchmark file\n".repeat(30)}`;
  writeFileSync(join(dir, "bench.txt"), text);
  const closers: Array<() => Promise<void>> = [];
  rec.info["mcp_sdk"] = packageVersion("@modelcontextprotocol/sdk");
  rec.info["mcp_server_filesystem"] = packageVersion("@modelcontextprotocol/server-filesystem");
  rec.info["mcp_server_everything"] = packageVersion("@modelcontextprotocol/server-everything");
  rec.info["mcp_pipeline_depth"] = o.concurrency;
  rec.info["mcp_file_bytes"] = Buffer.byteLength(text);
  try {
    // --- The official SDK client to our sandboxed server, and to the unsandboxed server-filesystem. ---
    o.progress("mcp: starting our server and server-filesystem", 0, 2);
    const ours = ourServer(o.backend, dir, home);
    rec.notes.push(
      `server_read_file: official SDK client → ${ours.via} (stdio) → ${o.backend} sandbox read_file, every call decided by the approval gate and audited; ` +
        "ref_fs_stdio_sdk: same client → server-filesystem read_text_file (no sandbox, no approval, no audit), same file",
    );
    rec.info["mcp_approval_mode"] = APPROVAL_MODE;
    rec.info["mcp_approval_policy"] = "built-in (no policy.json): read_file is Green, allowed by default:read-only without a person";
    rec.info["mcp_audit_file"] = `${auditFile} (counted after the run, then removed)`;
    const server = await sdkClient(ours.argv, "ours", ours.env);
    let serverOpen = true;
    const closeServer = async (): Promise<void> => {
      if (!serverOpen) return;
      serverOpen = false;
      await server.close();
    };
    closers.push(closeServer);
    const ref = await sdkClient([FS_SERVER, dir], "ref");
    closers.push(() => ref.close());
    const calls = { attempted: 0, succeeded: 0 };
    const callOurs = async (): Promise<unknown> => {
      calls.attempted++;
      const r = await server.callTool({ name: "read_file", arguments: { path: "bench.txt" } }, undefined, { timeout: 30_000 });
      if (!(r as { isError?: boolean }).isError) calls.succeeded++;
      return r;
    };
    const callRef = async (): Promise<unknown> => ref.callTool({ name: "read_text_file", arguments: { path: join(dir, "bench.txt") } }, undefined, { timeout: 30_000 });
    failIfError(await callOurs(), "our read_file");
    failIfError(await callRef(), "server-filesystem read_text_file");
    for (let i = 0; i < WARMUP; i++) {
      await callOurs();
      await callRef();
    }
    // Interleaved, so both see the same machine noise.
    for (let i = 0; i < o.runs; i++) {
      o.progress("mcp_latency_ms.server_read_file / ref_fs_stdio_sdk", i, o.runs);
      let t = performance.now();
      await callOurs();
      rec.add("mcp_latency_ms.server_read_file", "ms", performance.now() - t);
      t = performance.now();
      await callRef();
      rec.add("mcp_latency_ms.ref_fs_stdio_sdk", "ms", performance.now() - t);
    }
    // Throughput in alternating rounds (ours, reference, ...): one sample per round each.
    const rounds = o.rounds ?? DEFAULT_ROUNDS;
    rec.info["mcp_throughput_rounds"] = rounds;
    const window = Math.max(2, Math.min(10, o.durationS / (2 * rounds)));
    for (let r = 0; r < rounds; r++) {
      const perMin: Record<string, number> = {};
      for (const [metric, call] of [
        ["server_read_file", callOurs],
        ["ref_fs_stdio_sdk", callRef],
      ] as const) {
        const label = `mcp_throughput_ops_per_min.${metric} (depth ${o.concurrency}, round ${r + 1}/${rounds})`;
        const res = await pipelined(call, o.concurrency, window, (s) => o.progress(label, Math.min(window, s), window));
        rec.add(`mcp_throughput_ops_per_min.${metric}`, "ops/min", res.perMin);
        perMin[metric] = res.perMin;
        if (res.failures) rec.notes.push(`${label}: ${res.failures} calls failed`);
      }
      // Same round, back to back: the ratio the ≥ 1.0× target is read against.
      rec.add("mcp_throughput_ratio.server_read_file_over_ref", "ratio", (perMin["server_read_file"] ?? 0) / (perMin["ref_fs_stdio_sdk"] ?? 1));
    }
    // The server ends (its audit log closed), then every call it answered must be in the log.
    await closeServer();
    const audited = checkAudited(auditFile, calls);
    rec.info["mcp_server_calls"] = calls.attempted;
    rec.info["mcp_server_calls_ok"] = calls.succeeded;
    rec.info["mcp_audit_entries"] = audited.entries;

    // --- Our client pool to server-filesystem (stdio) and server-everything (Streamable HTTP). ---
    o.progress("mcp: starting server-everything (http)", 0, 1);
    const everything = await startEverythingHttp();
    closers.push(async () => {
      killGroup(everything.child, "SIGTERM");
      await Promise.race([new Promise((r) => everything.child.once("exit", r)), sleep(2000)]);
      killGroup(everything.child, "SIGKILL");
    });
    const pool = new McpClientPool({
      servers: {
        fs: { command: process.execPath, args: [FS_SERVER, dir] },
        everything: { url: everything.url },
      },
    });
    closers.push(() => pool.close());
    failIfError(await pool.callTool("fs.read_text_file", { path: join(dir, "bench.txt") }), "fs.read_text_file");
    failIfError(await pool.callTool("everything.echo", { message: "hello" }), "everything.echo");
    for (let i = 0; i < WARMUP; i++) {
      await pool.callTool("fs.read_text_file", { path: join(dir, "bench.txt") });
      await pool.callTool("everything.echo", { message: "hello" });
    }
    pool.metrics.reset();
    // One server at a time: an HTTP call's leftovers (SSE stream, GC) must not land in the stdio figures.
    for (let i = 0; i < o.runs; i++) {
      o.progress("mcp_latency_ms.client_fs_stdio", i, o.runs);
      await pool.callTool("fs.read_text_file", { path: join(dir, "bench.txt") });
    }
    for (let i = 0; i < o.runs; i++) {
      o.progress("mcp_latency_ms.client_everything_http", i, o.runs);
      await pool.callTool("everything.echo", { message: "hello" });
    }
    // Read back from the pool's own per-call metrics: the numbers an agent loop would see.
    for (const v of pool.metrics.samples("fs", "read_text_file")) rec.add("mcp_latency_ms.client_fs_stdio", "ms", v);
    for (const v of pool.metrics.samples("everything", "echo")) rec.add("mcp_latency_ms.client_everything_http", "ms", v);
    const snap = pool.metrics.snapshot();
    const failed = Object.entries(snap).flatMap(([s, tools]) => Object.entries(tools).filter(([, t]) => (t.outcomes.ok ?? 0) !== t.calls).map(([tool, t]) => `${s}.${tool}: ${JSON.stringify(t.outcomes)}`));
    if (failed.length) rec.notes.push(`client calls that did not succeed: ${failed.join("; ")}`);
    rec.notes.push("client_fs_stdio: our McpClientPool → server-filesystem read_text_file (stdio); client_everything_http: our McpClientPool → server-everything echo (Streamable HTTP, keep-alive)");
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
}
