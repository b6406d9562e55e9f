// The upstream part of `bench chaos`: callers keep calling two real upstream MCP servers through the
// pooled MCP client (the daemon's McpClientPool): server-filesystem over stdio (the pool starts and
// restarts it) and server-everything over Streamable HTTP (started here and, when killed, started again
// on the same port, as its supervisor would). A seeded monkey SIGKILLs one of them or stops it
// (SIGSTOP for 1-3 s, then SIGCONT: a hung server). Checked and recorded: every failed call is a named
// upstream error (UPSTREAM_* or TOOL_TIMEOUT) within its deadline, the pool recovers (time from the
// fault to the first good call started after it), the stdio server is restarted under a new pid, and
// no server process is left once the pool is closed.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import type { CriterionDef } from "../metrics/schema.js";
import { percentile, seededRandom } from "../metrics/stats.js";
import { McpClientPool } from "../mcp/client/pool.js";
import { recordCreated } from "../runtime/created.js";
import { freePort } from "../util/net.js";
import { killGroup } from "../util/proc.js";
import { cmdline, descendants, pidAlive } from "../util/procfs.js";
import { EVERYTHING_SERVER, FS_SERVER, startEverythingHttp } from "./mcp.js";
import type { Recorder } from "./scenarios.js";

export const UPSTREAM_FAULT_KINDS = ["kill_stdio", "kill_http", "hang_stdio", "hang_http"] as const;
export type UpstreamFaultKind = (typeof UPSTREAM_FAULT_KINDS)[number];

export interface UpstreamChaosOptions {
  durationS: number;
  /** Faults to inject, spread at random over the duration. */
  faults: number;
  seed: number;
  /** Each call's deadline (the pool's timeout for it). */
  callTimeoutMs?: number;
  /** Callers per server. */
  callers?: number;
  progress?: (label: string, done: number, total: number) => void;
}

/** What a failed call may take past its deadline before it counts as late. */
const DEADLINE_GRACE_MS = 1_000;
/** How long after the run the monkey's last faults may take to be recovered from. */
const TAIL_MS = 20_000;

type ServerName = "fs" | "everything";

interface UpFault {
  kind: UpstreamFaultKind;
  server: ServerName;
  atMs: number;
  /** The pid hit (stdio: to check that the pool's server after it is another one). */
  pid: number;
  recoveredMs?: number;
}

/** A failure of an upstream call is named when its code says which side failed. */
export function isNamedUpstreamFailure(err: unknown): boolean {
  return err instanceof LuminaGuardError && (err.code.startsWith("UPSTREAM_") || err.code === "TOOL_TIMEOUT");
}

function signalPid(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

export async function upstreamChaos(rec: Recorder, o: UpstreamChaosOptions): Promise<void> {
  const progress = o.progress ?? (() => undefined);
  const callTimeoutMs = o.callTimeoutMs ?? 2_000;
  const callers = o.callers ?? 2;
  const rand = seededRandom(o.seed * 7919 + 1);
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "lg-bench-chaos-mcp-")));
  recordCreated(dir);
  writeFileSync(join(dir, "f.txt"), "upstream chaos\n");
  const port = await freePort();
  const httpChildren: ChildProcess[] = [];
  const seenPids = new Set<number>();
  let http: ChildProcess | undefined;
  const startHttp = async (): Promise<void> => {
    const s = await startEverythingHttp(port);
    http = s.child;
    httpChildren.push(s.child);
    if (s.child.pid !== undefined) seenPids.add(s.child.pid);
  };
  const codes = new Map<string, number>();
  const unnamedExamples: string[] = [];
  let ok = 0;
  let unnamed = 0;
  let late = 0;
  const faults: UpFault[] = [];
  const hangs: Array<Promise<void>> = [];
  let pool: McpClientPool | undefined;
  try {
    progress("chaos: starting the upstream MCP servers", 0, 1);
    await startHttp();
    pool = new McpClientPool({
      servers: {
        fs: { command: process.execPath, args: [FS_SERVER, dir] },
        everything: { url: `http://127.0.0.1:${port}/mcp` },
      },
      callTimeoutMs,
      // A restarted server is tried again soon: recovery is what is measured.
      backoffInitialMs: 100,
      backoffMaxMs: 1_000,
    });
    const p = pool;
    const fsPid = (): number | undefined => p.status().find((s) => s.server === "fs")?.pid;
    const calls: Record<ServerName, () => Promise<unknown>> = {
      fs: () => p.callTool("fs.read_text_file", { path: join(dir, "f.txt") }),
      everything: () => p.callTool("everything.echo", { message: "chaos" }),
    };
    await calls.fs();
    await calls.everything();
    const connectsAtStart = Object.fromEntries(p.status().map((s) => [s.server, s.connects]));

    const runStart = performance.now();
    const stopAt = runStart + o.durationS * 1000;
    let stopping = false;
    const pending = (s: ServerName): UpFault[] => faults.filter((f) => f.server === s && f.recoveredMs === undefined);

    const caller = async (s: ServerName): Promise<void> => {
      while (!stopping) {
        const t = performance.now();
        try {
          const r = (await calls[s]()) as { isError?: boolean };
          if (r.isError) throw new Error(`${s} answered isError: ${JSON.stringify(r).slice(0, 200)}`);
          ok++;
          const pid = s === "fs" ? fsPid() : undefined;
          if (pid !== undefined) seenPids.add(pid);
          const now = performance.now();
          for (const f of pending(s)) {
            if (f.atMs >= t - runStart) continue;
            f.recoveredMs = now - runStart - f.atMs;
            rec.add("upstream_recovery_ms", "ms", f.recoveredMs);
            rec.add(`upstream_recovery_ms.${f.kind}`, "ms", f.recoveredMs);
            if (f.kind === "kill_stdio") rec.add("upstream_stdio_restarted", "", pid !== undefined && pid !== f.pid ? 1 : 0);
          }
        } catch (err) {
          const elapsed = performance.now() - t;
          const code = err instanceof LuminaGuardError ? err.code : "UNNAMED";
          codes.set(code, (codes.get(code) ?? 0) + 1);
          if (!isNamedUpstreamFailure(err)) {
            unnamed++;
            if (unnamedExamples.length < 5) unnamedExamples.push(`${s}: ${String(err).slice(0, 200)}`);
          }
          if (elapsed > callTimeoutMs + DEADLINE_GRACE_MS) late++;
          // A caller that failed does not spin: a short pause, as an agent's retry would.
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };

    const inject = async (kind: UpstreamFaultKind): Promise<boolean> => {
      const server: ServerName = kind.endsWith("stdio") ? "fs" : "everything";
      if (pending(server).length > 0) return false;
      const pid = server === "fs" ? fsPid() : http?.pid;
      if (pid === undefined || !pidAlive(pid)) return false;
      const atMs = performance.now() - runStart;
      if (kind.startsWith("kill")) {
        if (!signalPid(pid, "SIGKILL")) return false;
        if (server === "everything") {
          const dead = http;
          // Its supervisor starts it again on the same port once the old one is gone.
          await new Promise<void>((r) => (dead && dead.exitCode === null && dead.signalCode === null ? dead.once("exit", () => r()) : r()));
          if (dead) killGroup(dead, "SIGKILL");
          await startHttp();
        }
      } else {
        // The whole group stopped: the server hangs, then goes on.
        if (!signalPid(-pid, "SIGSTOP") && !signalPid(pid, "SIGSTOP")) return false;
        const ms = 1000 + Math.floor(rand() * 2000);
        hangs.push(
          new Promise<void>((r) =>
            setTimeout(() => {
              if (!signalPid(-pid, "SIGCONT")) signalPid(pid, "SIGCONT");
              r();
            }, ms),
          ),
        );
      }
      faults.push({ kind, server, atMs, pid });
      return true;
    };

    const monkey = async (): Promise<void> => {
      const mean = (o.durationS * 1000) / Math.max(1, o.faults);
      let next = runStart + mean * (0.25 + rand() / 2);
      // The kind is drawn once per fault and kept until it can be injected (its server may still be
      // recovering from the last one): the seed alone decides which faults a run gets, not timing.
      let kind: UpstreamFaultKind | undefined;
      while (faults.length < o.faults && performance.now() < stopAt + TAIL_MS) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        kind ??= UPSTREAM_FAULT_KINDS[Math.floor(rand() * UPSTREAM_FAULT_KINDS.length)] as UpstreamFaultKind;
        if (!(await inject(kind))) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        kind = undefined;
        progress("chaos: upstream faults", faults.length, o.faults);
        next = Math.max(performance.now(), next) + mean * (0.5 + rand());
      }
    };

    const loops = (["fs", "everything"] as const).flatMap((s) => Array.from({ length: callers }, () => caller(s)));
    await monkey();
    while ((performance.now() < stopAt || faults.some((f) => f.recoveredMs === undefined)) && performance.now() < stopAt + TAIL_MS) await new Promise((r) => setTimeout(r, 20));
    stopping = true;
    await Promise.all(loops);
    await Promise.all(hangs);
    const runMs = performance.now() - runStart;

    // The next call works on both.
    let finalOk = 1;
    for (const s of ["fs", "everything"] as const) {
      try {
        await calls[s]();
      } catch (err) {
        finalOk = 0;
        rec.notes.push(`upstream ${s}: a call after the run failed: ${String(err).slice(0, 200)}`);
      }
    }
    rec.add("upstream_next_call_ok", "", finalOk);
    for (const st of p.status()) rec.add(`upstream_reconnects.${st.server}`, "", st.connects - (connectsAtStart[st.server] ?? 0));
    rec.add("upstream_faults_injected", "", faults.length);
    for (const k of UPSTREAM_FAULT_KINDS) rec.add(`upstream_faults.${k}`, "", faults.filter((f) => f.kind === k).length);
    rec.add("upstream_calls_ok", "", ok);
    rec.add("upstream_calls_failed", "", [...codes.values()].reduce((x, y) => x + y, 0));
    for (const [code, n] of codes) rec.add(`upstream_failures.${code}`, "", n);
    rec.add("upstream_unnamed_failures", "", unnamed);
    rec.add("upstream_calls_past_deadline", "", late);
    rec.add("upstream_unrecovered_faults", "", faults.filter((f) => f.recoveredMs === undefined).length);
    for (const f of faults) (rec.series[`upstream_fault.${f.kind}`] ??= []).push({ tMs: f.atMs, value: f.recoveredMs ?? -1 });
    const rs = [...(rec.samples["upstream_recovery_ms"] ?? [])].sort((x, y) => x - y);
    rec.info["upstream_recovery_p50_ms"] = rs.length ? Math.round(percentile(rs, 0.5)) : -1;
    rec.info["upstream_recovery_p95_ms"] = rs.length ? Math.round(percentile(rs, 0.95)) : -1;
    rec.info["upstream_run_ms"] = Math.round(runMs);
    rec.info["upstream_call_timeout_ms"] = callTimeoutMs;
    rec.info["upstream_servers"] = "fs: server-filesystem over stdio (restarted by the pool); everything: server-everything over Streamable HTTP (restarted on its port by the harness)";
    if (unnamedExamples.length) rec.notes.push(`upstream unnamed failures: ${unnamedExamples.join(" | ")}`);
  } finally {
    for (const c of httpChildren) {
      killGroup(c, "SIGCONT");
      killGroup(c, "SIGKILL");
    }
    await pool?.close();
    await Promise.all(hangs);
    // No server process of the run may be left: every pid seen, and anything under us running their code.
    let left: string[] = [];
    for (let i = 0; i < 40; i++) {
      left = [...seenPids].filter((pid) => pidAlive(pid)).map((pid) => `${pid} ${(cmdline(pid) ?? "").slice(0, 100)}`);
      for (const d of descendants(process.pid)) {
        const c = cmdline(d) ?? "";
        if ((c.includes(FS_SERVER) || c.includes(EVERYTHING_SERVER)) && !seenPids.has(d) && pidAlive(d)) left.push(`${d} ${c.slice(0, 100)}`);
      }
      if (left.length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    rec.add("upstream_leaked_processes", "", left.length);
    if (left.length) rec.notes.push(`LEAK: upstream server processes left: ${left.join("; ")}`);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The upstream criteria of the chaos run. */
export function upstreamChaosCriteria(): CriterionDef[] {
  const c = (name: string, metric: string, op: CriterionDef["op"], target: number): CriterionDef => ({ name, metric, stat: "max", op, target, source: "project" });
  return [
    c("upstream MCP: every failed call a named upstream error", "upstream_unnamed_failures", "<=", 0),
    c("upstream MCP: every failed call within its deadline", "upstream_calls_past_deadline", "<=", 0),
    c("upstream MCP: every fault recovered from", "upstream_unrecovered_faults", "<=", 0),
    c("upstream MCP: the next call works", "upstream_next_call_ok", ">=", 1),
    { name: "upstream MCP: a killed stdio server restarted by the pool", metric: "upstream_stdio_restarted", stat: "min", op: ">=", target: 1, source: "project" },
    c("upstream MCP: no server process leaked", "upstream_leaked_processes", "<=", 0),
  ];
}
