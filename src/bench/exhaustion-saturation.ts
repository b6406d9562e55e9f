// `bench exhaustion` (e), saturation. Sandboxes have no network, so what saturates is what they talk to:
//  1. upstream MCP servers made slow, through the pooled MCP client (the daemon's): a real MCP server
//     (slow-mcp-server.ts, the SDK's McpServer) that answers late (`sleep`), one whose bandwidth is
//     throttled (SLOW_MCP_BYTES_PER_S) asked for big results, and one that floods notifications and
//     answers oversized results. Every failed call must be a named error within its deadline, and a
//     well-behaved server on the same pool (the victim) must answer as fast as before.
//  2. the daemon's own API flooded past capacity: many concurrent calls over its socket from one client,
//     past --max-calls and --max-queue: the excess refused at once with CAPACITY (back-pressure), the
//     queued ones answered or refused within their admission deadline, and another client's calls
//     answered meanwhile (its latency before vs during the flood).
// The client's RSS and the daemon's are sampled throughout: memory must stay bounded.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startBenchDaemon } from "../daemon/bench.js";
import { LuminaGuardError } from "../errors.js";
import type { CriterionDef } from "../metrics/schema.js";
import { percentile } from "../metrics/stats.js";
import { McpClientPool } from "../mcp/client/pool.js";
import { recordCreated } from "../runtime/created.js";
import type { BackendName } from "../sandbox/types.js";
import { cmdline, descendants } from "../util/procfs.js";
import type { Recorder } from "./scenarios.js";

export const SLOW_MCP_SERVER = fileURLToPath(new URL("./slow-mcp-server.js", import.meta.url));

export interface SaturationOptions {
  backend: BackendName;
  /** Seconds each flood lasts. */
  floodS?: number;
  /** Calls in flight at once against the slow servers, and requests in flight at once against the daemon. */
  upstreamFlood?: number;
  daemonFlood?: number;
  progress?: (label: string, done: number, total: number) => void;
}

/** What a failed call may take past its deadline before it counts as late. */
const GRACE_MS = 1_000;
const CALL_DEADLINE_MS = 1_000;
/** The daemon's limits for the flood: calls running at once, requests queued, and the flood's admission wait. */
const DAEMON_MAX_CALLS = 4;
const DAEMON_MAX_QUEUE = 32;
const DAEMON_WAIT_MS = 1_500;
const DAEMON_SLEEP_MS = 200;

function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Samples a process's RSS every 100 ms until stopped; returns the peak. */
function sampler(pid: () => number | undefined): { stop: () => number; peak: () => number } {
  let peak = 0;
  const tick = (): void => {
    const p = pid();
    if (p !== undefined) peak = Math.max(peak, rssMiB(p) || 0);
  };
  tick();
  const t = setInterval(tick, 100);
  return {
    stop: () => {
      clearInterval(t);
      tick();
      return peak;
    },
    peak: () => peak,
  };
}

/** CPU seconds (user + system) a process has used so far. */
function cpuS(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").slice(readFileSync(`/proc/${pid}/stat`, "utf8").lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

const p95 = (xs: number[]): number => (xs.length ? percentile([...xs].sort((a, b) => a - b), 0.95) : NaN);
const p50 = (xs: number[]): number => (xs.length ? percentile([...xs].sort((a, b) => a - b), 0.5) : NaN);

/** Calls `fn` back to back until `until`; latencies of the good calls, and failures. */
async function victim(fn: () => Promise<unknown>, until: () => boolean): Promise<{ ms: number[]; failed: string[] }> {
  const ms: number[] = [];
  const failed: string[] = [];
  while (!until()) {
    const t = performance.now();
    try {
      await fn();
      ms.push(performance.now() - t);
    } catch (err) {
      failed.push(String(err).slice(0, 200));
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return { ms, failed };
}

export async function upstreamSaturation(rec: Recorder, o: SaturationOptions): Promise<void> {
  const floodS = o.floodS ?? 4;
  const depth = o.upstreamFlood ?? 32;
  const node = process.execPath;
  const pool = new McpClientPool({
    servers: {
      fast: { command: node, args: [SLOW_MCP_SERVER] },
      slow: { command: node, args: [SLOW_MCP_SERVER] },
      thin: { command: node, args: [SLOW_MCP_SERVER], env: { SLOW_MCP_BYTES_PER_S: String(64 * 1024) } },
      noisy: { command: node, args: [SLOW_MCP_SERVER] },
    },
    callTimeoutMs: CALL_DEADLINE_MS,
    backoffInitialMs: 100,
    backoffMaxMs: 1_000,
  });
  const codes = new Map<string, number>();
  let unnamed = 0;
  let late = 0;
  let ok = 0;
  const unnamedExamples: string[] = [];
  const rss = sampler(() => process.pid);
  const rssBefore = rssMiB(process.pid);
  try {
    o.progress?.("exhaustion: saturation (upstream MCP)", 0, 2);
    for (const s of ["fast", "slow", "thin", "noisy"]) await pool.callTool(`${s}.echo`, { text: "warm" }, { timeoutMs: 30_000 });
    const echo = (): Promise<unknown> => pool.callTool("fast.echo", { text: "hi" });
    // Before: the victim alone.
    const beforeEnd = performance.now() + Math.min(2, floodS) * 1000;
    const before = await victim(echo, () => performance.now() > beforeEnd);
    // During: the flood on the other three servers, the victim beside it.
    const end = performance.now() + floodS * 1000;
    const done = (): boolean => performance.now() > end;
    const flooders: Array<[string, Record<string, unknown>, number]> = [
      ["slow.sleep", { ms: 5_000 }, CALL_DEADLINE_MS],
      ["thin.big", { bytes: 1024 * 1024 }, CALL_DEADLINE_MS],
      ["noisy.flood", { count: 2_000, bytes: 2_048 }, 2 * CALL_DEADLINE_MS],
      ["noisy.big", { bytes: 32 * 1024 * 1024 }, 2 * CALL_DEADLINE_MS],
    ];
    const flood = async (i: number): Promise<void> => {
      const [name, args, timeoutMs] = flooders[i % flooders.length] as [string, Record<string, unknown>, number];
      while (!done()) {
        const t = performance.now();
        try {
          await pool.callTool(name, args, { timeoutMs });
          ok++;
        } catch (err) {
          const code = err instanceof LuminaGuardError && err.code !== "INTERNAL" ? err.code : "UNNAMED";
          codes.set(code, (codes.get(code) ?? 0) + 1);
          if (code === "UNNAMED") {
            unnamed++;
            if (unnamedExamples.length < 3) unnamedExamples.push(`${name}: ${String(err).slice(0, 200)}`);
          }
          if (performance.now() - t > timeoutMs + GRACE_MS) late++;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    };
    const [during] = await Promise.all([victim(echo, done), ...Array.from({ length: depth }, (_, i) => flood(i))]);
    o.progress?.("exhaustion: saturation (upstream MCP)", 1, 2);
    // An oversized result on its own, with time to arrive: past the 16 MiB message cap it is a named
    // protocol error (the server is dropped and restarted), never buffered whole; the next call works.
    const big = await pool.callTool("noisy.big", { bytes: 20 * 1024 * 1024 }, { timeoutMs: 30_000 }).then(
      () => "OK",
      (err: unknown) => (err instanceof LuminaGuardError ? err.code : "UNNAMED"),
    );
    rec.add("saturation_upstream_oversized_named", "", big === "UPSTREAM_PROTOCOL" ? 1 : 0);
    if (big !== "UPSTREAM_PROTOCOL") rec.notes.push(`saturation: a 20 MiB result gave ${big}, not UPSTREAM_PROTOCOL`);
    const after = await pool.callTool("noisy.echo", { text: "again" }, { timeoutMs: 30_000 }).then(
      () => 1,
      () => 0,
    );
    rec.add("saturation_upstream_recovered", "", after);
    for (const v of before.ms) rec.add("saturation_upstream_victim_ms.before", "ms", v);
    for (const v of during.ms) rec.add("saturation_upstream_victim_ms.during", "ms", v);
    rec.add("saturation_upstream_victim_p95_ratio", "ratio", p95(during.ms) / p95(before.ms));
    rec.add("saturation_upstream_victim_failures", "", during.failed.length + before.failed.length);
    if (during.failed.length) rec.notes.push(`saturation: the victim server's calls failed during the flood: ${during.failed.slice(0, 3).join(" | ")}`);
    rec.add("saturation_upstream_flood_ok", "", ok);
    rec.add("saturation_upstream_flood_failed", "", [...codes.values()].reduce((a, b) => a + b, 0));
    for (const [c, n] of codes) rec.add(`saturation_upstream_failures.${c}`, "", n);
    rec.add("saturation_upstream_unnamed", "", unnamed);
    rec.add("saturation_upstream_past_deadline", "", late);
    rec.add("saturation_client_rss_growth_mib", "MiB", rss.stop() - rssBefore);
    rec.info["saturation_upstream"] = `${depth} calls in flight for ${floodS} s: slow.sleep 5 s (deadline ${CALL_DEADLINE_MS} ms), thin.big 1 MiB at 64 KiB/s, noisy.flood 2000×2 KiB notifications, noisy.big 32 MiB (over the 16 MiB message cap); victim fast.echo on the same pool`;
    if (unnamedExamples.length) rec.notes.push(`saturation unnamed failures: ${unnamedExamples.join(" | ")}`);
  } finally {
    rss.stop();
    await pool.close();
  }
}

interface Answer {
  status: number;
  code: string;
  ms: number;
}

/** One POST over the daemon's socket, on its own connection. */
function post(socket: string, path: string, body: unknown, headers: Record<string, string>): Promise<Answer> {
  const t = performance.now();
  const data = JSON.stringify(body);
  return new Promise((resolve) => {
    const req = request(
      { socketPath: socket, path, method: "POST", agent: false, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.once("end", () => {
          let code = res.statusCode === 200 ? "OK" : "UNNAMED";
          if (res.statusCode !== 200) {
            try {
              const j = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { code?: unknown; error?: { code?: unknown } };
              const c = j.code ?? j.error?.code;
              if (typeof c === "string") code = c;
            } catch {
              /* not JSON: unnamed */
            }
          }
          resolve({ status: res.statusCode ?? 0, code, ms: performance.now() - t });
        });
      },
    );
    req.once("error", (err) => resolve({ status: 0, code: `SOCKET_${(err as NodeJS.ErrnoException).code ?? "ERROR"}`, ms: performance.now() - t }));
    req.end(data);
  });
}

export async function daemonSaturation(rec: Recorder, o: SaturationOptions): Promise<void> {
  const floodS = o.floodS ?? 4;
  const depth = o.daemonFlood ?? 100;
  const dir = mkdtempSync(join(tmpdir(), "lg-bench-sat-"));
  recordCreated(dir);
  const config = join(dir, "config.json");
  writeFileSync(config, JSON.stringify({ mcpServers: { slow: { command: process.execPath, args: [SLOW_MCP_SERVER] }, fast: { command: process.execPath, args: [SLOW_MCP_SERVER] } } }));
  const saved = process.env["LUMINAGUARD_CONFIG"];
  process.env["LUMINAGUARD_CONFIG"] = config;
  let daemon;
  try {
    daemon = await startBenchDaemon(o.backend, "0", ["--max-calls", String(DAEMON_MAX_CALLS), "--max-queue", String(DAEMON_MAX_QUEUE)]);
  } finally {
    if (saved === undefined) delete process.env["LUMINAGUARD_CONFIG"];
    else process.env["LUMINAGUARD_CONFIG"] = saved;
  }
  const socket = daemon.socket;
  const daemonPid = descendants(process.pid).find((p) => (cmdline(p) ?? "").includes(socket) && (cmdline(p) ?? "").includes(" serve"));
  const drss = sampler(() => daemonPid);
  const crss = sampler(() => process.pid);
  const clientBefore = rssMiB(process.pid);
  try {
    o.progress?.("exhaustion: saturation (daemon API)", 0, 2);
    const echo = async (): Promise<void> => {
      const a = await post(socket, "/v1/mcp/servers/fast/tools/echo", { text: "hi" }, { "x-luminaguard-client": "victim" });
      if (a.status !== 200) throw new Error(`victim call: HTTP ${a.status} ${a.code}`);
    };
    const warm = await post(socket, "/v1/mcp/servers/slow/tools/echo", { text: "warm" }, { "x-luminaguard-client": "flood" });
    if (warm.status !== 200) throw new Error(`the daemon's upstream did not answer: HTTP ${warm.status} ${warm.code}`);
    await echo();
    const daemonBefore = rssMiB(daemonPid ?? -1);
    const beforeEnd = performance.now() + Math.min(2, floodS) * 1000;
    const before = await victim(echo, () => performance.now() > beforeEnd);
    const end = performance.now() + floodS * 1000;
    const done = (): boolean => performance.now() > end;
    const answers: Answer[] = [];
    const cpu0 = { daemon: cpuS(daemonPid ?? -1), client: cpuS(process.pid), at: performance.now() };
    const flood = async (): Promise<void> => {
      while (!done()) {
        const a = await post(socket, "/v1/mcp/servers/slow/tools/sleep", { ms: DAEMON_SLEEP_MS }, { "x-luminaguard-client": "flood", "x-luminaguard-deadline-ms": String(DAEMON_WAIT_MS) });
        answers.push(a);
        // A refusal says when to retry; a client that honours it backs off a little.
        if (a.status !== 200) await new Promise((r) => setTimeout(r, 10));
      }
    };
    const [during] = await Promise.all([victim(echo, done), ...Array.from({ length: depth }, () => flood())]);
    o.progress?.("exhaustion: saturation (daemon API)", 1, 2);
    const wall = (performance.now() - cpu0.at) / 1000;
    rec.add("saturation_daemon_cpu_cores", "cores", (cpuS(daemonPid ?? -1) - cpu0.daemon) / wall);
    rec.add("saturation_client_cpu_cores", "cores", (cpuS(process.pid) - cpu0.client) / wall);
    const by = new Map<string, number>();
    for (const a of answers) by.set(a.code, (by.get(a.code) ?? 0) + 1);
    const refused = answers.filter((a) => a.code === "CAPACITY");
    const other = answers.filter((a) => a.code !== "OK" && a.code !== "CAPACITY");
    // An admitted call waits at most DAEMON_WAIT_MS, then runs DAEMON_SLEEP_MS.
    const lateN = answers.filter((a) => a.ms > DAEMON_WAIT_MS + DAEMON_SLEEP_MS + GRACE_MS).length;
    for (const v of before.ms) rec.add("saturation_daemon_victim_ms.before", "ms", v);
    for (const v of during.ms) rec.add("saturation_daemon_victim_ms.during", "ms", v);
    rec.add("saturation_daemon_victim_p95_ratio", "ratio", p95(during.ms) / p95(before.ms));
    rec.add("saturation_daemon_victim_p95_ms", "ms", during.ms.length ? p95(during.ms) : Infinity);
    rec.add("saturation_daemon_victim_failures", "", before.failed.length + during.failed.length);
    if (during.failed.length) rec.notes.push(`saturation: the other client's calls failed during the flood: ${during.failed.slice(0, 3).join(" | ")}`);
    rec.add("saturation_daemon_flood_requests", "", answers.length);
    rec.add("saturation_daemon_flood_ok", "", by.get("OK") ?? 0);
    rec.add("saturation_daemon_flood_capacity", "", refused.length);
    rec.add("saturation_daemon_flood_other_failures", "", other.length);
    for (const [c, n] of by) rec.add(`saturation_daemon_flood_outcome.${c}`, "", n);
    rec.add("saturation_daemon_flood_past_deadline", "", lateN);
    // Refused at once (queue full) vs after waiting out the admission deadline.
    const atOnce = refused.filter((a) => a.ms < DAEMON_WAIT_MS / 2);
    rec.add("saturation_daemon_capacity_at_once", "", atOnce.length);
    if (atOnce.length) rec.add("saturation_daemon_capacity_at_once_p50_ms", "ms", p50(atOnce.map((a) => a.ms)));
    rec.add("saturation_daemon_rss_growth_mib", "MiB", drss.stop() - daemonBefore);
    rec.add("saturation_daemon_rss_peak_mib", "MiB", drss.peak());
    rec.add("saturation_client_rss_growth_mib", "MiB", crss.stop() - clientBefore);
    rec.info["saturation_daemon"] = `${depth} requests in flight for ${floodS} s from one client (slow.sleep ${DAEMON_SLEEP_MS} ms, admission wait ${DAEMON_WAIT_MS} ms) against --max-calls ${DAEMON_MAX_CALLS} --max-queue ${DAEMON_MAX_QUEUE}; another client's fast.echo meanwhile`;
    if (other.length) rec.notes.push(`saturation: flood answers other than OK/CAPACITY: ${JSON.stringify(Object.fromEntries([...by].filter(([c]) => c !== "OK" && c !== "CAPACITY")))}`);
  } finally {
    drss.stop();
    crss.stop();
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function saturationPart(rec: Recorder, o: SaturationOptions): Promise<void> {
  await upstreamSaturation(rec, o);
  await daemonSaturation(rec, o);
}

/** The saturation criteria (metrics `saturation_*`). */
export function saturationCriteria(): CriterionDef[] {
  const c = (name: string, metric: string, stat: CriterionDef["stat"], op: CriterionDef["op"], target: number): CriterionDef => ({ name, metric, stat, op, target, source: "project" });
  return [
    c("saturation, upstream: every failed call a named error", "saturation_upstream_unnamed", "max", "<=", 0),
    c("saturation, upstream: every failed call within its deadline", "saturation_upstream_past_deadline", "max", "<=", 0),
    c("saturation, upstream: a well-behaved server on the same pool never fails", "saturation_upstream_victim_failures", "max", "<=", 0),
    c("saturation, upstream: a result past the message cap is UPSTREAM_PROTOCOL", "saturation_upstream_oversized_named", "min", ">=", 1),
    c("saturation, upstream: the flooding server answers again after it", "saturation_upstream_recovered", "min", ">=", 1),
    c("saturation, upstream: its p95 during the flood ≤ 3× before", "saturation_upstream_victim_p95_ratio", "max", "<=", 3),
    c("saturation, daemon: past capacity, CAPACITY (back-pressure)", "saturation_daemon_flood_capacity", "max", ">=", 1),
    c("saturation, daemon: no answer other than OK or CAPACITY", "saturation_daemon_flood_other_failures", "max", "<=", 0),
    c("saturation, daemon: every answer within its deadline", "saturation_daemon_flood_past_deadline", "max", "<=", 0),
    c("saturation, daemon: another client never fails", "saturation_daemon_victim_failures", "max", "<=", 0),
    // Call slots are shared (--max-calls): round-robin bounds another client's wait at about one slow call, not at zero.
    c(`saturation, daemon: another client's p95 within its admission deadline (${DAEMON_WAIT_MS} ms)`, "saturation_daemon_victim_p95_ms", "max", "<=", DAEMON_WAIT_MS),
    c("saturation, daemon: memory bounded (RSS growth ≤ 256 MiB)", "saturation_daemon_rss_growth_mib", "max", "<=", 256),
    c("saturation: the client's memory bounded (RSS growth ≤ 256 MiB)", "saturation_client_rss_growth_mib", "max", "<=", 256),
  ];
}
