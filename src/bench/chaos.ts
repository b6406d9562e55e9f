// `bench chaos`, the chaos monkey: N agents replay the standard workload on sandboxes from one pool,
// their writes numbered and every acknowledgement (write_file returned ok) recorded, while a seeded
// monkey, at random moments, SIGKILLs a sandbox's main process (QEMU, bwrap), SIGKILLs its agent,
// stops it for 1-3 s (SIGSTOP, then SIGCONT: a partition), or cuts the host end of its channel (the
// channel-cut fault point armed for that sandbox: src/faults, armSandboxFault). An
// agent whose call fails checks the failure (a named code, within the call's deadline), throws the
// sandbox away and takes the next from the pool. Afterwards: every acknowledged write is on the host
// byte for byte, no `.lg-*` temp file is left, the pool is back to full, and nothing of the run leaks.
import { mkdirSync, readFileSync, realpathSync, rmSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { armSandboxFault } from "../faults/index.js";
import { requireImage } from "../image/build.js";
import { log } from "../log.js";
import type { BenchRun, CriterionDef } from "../metrics/schema.js";
import { percentile, seededRandom } from "../metrics/stats.js";
import { createRun, saveRun } from "../metrics/store.js";
import { getBackend, probeBackend } from "../runtime/backends.js";
import { recordCreated } from "../runtime/created.js";
import { SandboxPool } from "../runtime/pool.js";
import { Sandbox, type SandboxApi } from "../runtime/sandbox.js";
import type { MicroVmBackend } from "../sandbox/microvm/backend.js";
import type { BackendName } from "../sandbox/types.js";
import { FILE_OP_DEADLINE_MS } from "../tools/tool.js";
import { procStat } from "../util/procfs.js";
import { ChaosDaemon } from "./chaos-daemon.js";
import { upstreamChaos, upstreamChaosCriteria } from "./chaos-upstream.js";
import { leakSnapshot, settleLeaks, tempFilesBelow } from "./leaks.js";
import { Recorder } from "./scenarios.js";
import { seedWorkspace, standardOps, type Op } from "./workload.js";

export const FAULT_KINDS = ["sigkill", "agent_kill", "partition", "channel_cut", "daemon_kill"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** How often each fault is drawn (relative weights), in-process and through the daemon (whose channels are out of reach). */
const FAULT_WEIGHTS: Readonly<Record<FaultKind, number>> = { sigkill: 45, agent_kill: 20, partition: 15, channel_cut: 20, daemon_kill: 0 };
const DAEMON_FAULT_WEIGHTS: Readonly<Record<FaultKind, number>> = { sigkill: 45, agent_kill: 20, partition: 15, channel_cut: 0, daemon_kill: 10 };
/** Faults that count as kills. */
const KILLS: readonly FaultKind[] = ["sigkill", "agent_kill", "daemon_kill"];

/** The fields of a process that tell the agent apart: its command name and its parent. */
type ProcReader = (pid: number) => { comm: string; ppid: number } | undefined;

/**
 * The agent among a sandbox's processes: named lg-agent, with a parent that is not (the commands it
 * forks are named lg-agent too until they exec, and pids wrap around, so the lowest is not always the
 * agent); bwrap, whose arguments name lg-agent, is not it.
 */
export function guestAgentPid(pids: readonly number[], read: ProcReader = procStat): number | undefined {
  const named = new Set(pids.filter((p) => read(p)?.comm === "lg-agent"));
  return [...named].find((p) => {
    const parent = read(p)?.ppid;
    return parent !== undefined && !named.has(parent);
  });
}

export interface ChaosOptions {
  backend: BackendName;
  /** Sandboxes in use at once (one per agent); the pool keeps as many ready. */
  agents: number;
  /**
   * Kills to inject (SIGKILLs of a sandbox's main process or of its agent), spread at random over the
   * duration; partitions and channel cuts come on top, in FAULT_WEIGHTS' proportions.
   */
  kills: number;
  durationS: number;
  seed: number;
  /** Sandboxes from a `luminaguard serve` started for the run (and SIGKILLed and restarted by the monkey) instead of in-process. */
  daemon?: boolean;
  /**
   * Faults (SIGKILL, or SIGSTOP for 1-3 s) of real upstream MCP servers called through the pooled MCP client
   * during the same run (chaos-upstream.ts); default max(4, kills / 10); 0 leaves them out.
   */
  upstreamFaults?: number;
  progress?: (label: string, done: number, total: number) => void;
}

/** execute_command's own timeout in the workload; its host deadline is this plus the tool's slack. */
const COMMAND_TIMEOUT_MS = 10_000;
const COMMAND_DEADLINE_MS = COMMAND_TIMEOUT_MS + 15_000;
/** What a failed call may take past its deadline before it counts as late (timer and event-loop jitter). */
const DEADLINE_GRACE_MS = 2_000;

interface Ack {
  path: string;
  content: string;
}

interface Fault {
  kind: FaultKind;
  agent: number;
  sandbox: string;
  atMs: number;
  /** Agents still to make a successful call after it (all of them for a daemon kill). */
  waiting: number;
  recoveredMs?: number;
}

interface Agent {
  index: number;
  sandbox: SandboxApi | undefined;
  seq: number;
  /** Faults on this agent's sandbox not yet followed by a successful call that started after them. */
  pending: Fault[];
  /** Its own stream (write sizes), so that the monkey's draws do not depend on the agents' timing. */
  rand: () => number;
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false; // gone already
  }
}

export interface ChaosResult {
  run: BenchRun;
  path: string;
  leaks: string[];
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const probe = await probeBackend(o.backend);
  if (!probe.available) throw new LuminaGuardError("BACKEND_UNAVAILABLE", `${o.backend} backend unavailable: ${probe.reason ?? "?"}`);
  const accel = o.backend === "microvm" ? (await (getBackend("microvm") as MicroVmBackend).accelerator(await requireImage())).accel : null;
  const progress = o.progress ?? (() => undefined);
  const before = leakSnapshot();
  const startedAt = new Date();
  const t0 = performance.now();
  const rec = new Recorder();
  const rand = seededRandom(o.seed);
  const codes = new Map<string, number>();
  const acks: Ack[] = [];
  const faults: Fault[] = [];
  let callsOk = 0;
  let unnamed = 0;
  let late = 0;
  const unnamedExamples: string[] = [];
  const acquireFailures = new Map<string, number>();
  const upstreamFaults = o.upstreamFaults ?? Math.max(4, Math.ceil(o.kills / 10));

  // One workspace for every agent (the standard files), each agent writing below its own folder.
  const ws = realpathSync(mkdtempSync(join(tmpdir(), "lg-bench-chaos-")));
  recordCreated(ws);
  let pool: SandboxPool | undefined;
  let daemon: ChaosDaemon | undefined;
  const savedSocket = process.env["LUMINAGUARD_SOCKET"];
  const weights = o.daemon ? DAEMON_FAULT_WEIGHTS : FAULT_WEIGHTS;
  let leaks: string[] = [];
  let upstream: Promise<void> | undefined;
  try {
    seedWorkspace(ws);
    if (o.daemon) {
      progress("chaos: starting the daemon", 0, 1);
      daemon = await ChaosDaemon.start(o.backend, o.agents);
      process.env["LUMINAGUARD_SOCKET"] = daemon.socket;
    } else {
      pool = new SandboxPool({ backend: getBackend(o.backend), workspace: ws, minSize: o.agents, maxSize: o.agents * 2 });
      progress("chaos: warming the pool", 0, 1);
      await pool.warm(o.agents, 300_000);
    }
    const acquire = async (): Promise<SandboxApi> => {
      if (!daemon) return await (pool as SandboxPool).acquire();
      const sb = await Sandbox.create({ backend: o.backend, workspace: ws, daemon: true });
      daemon.seen.add(sb.id);
      return sb;
    };
    const ops = standardOps(2000, o.seed);
    const agents: Agent[] = Array.from({ length: o.agents }, (_, index) => {
      mkdirSync(join(ws, "chaos", `a${index}`), { recursive: true });
      return { index, sandbox: undefined, seq: 0, pending: [], rand: seededRandom(o.seed + 1 + index) };
    });
    const runStart = performance.now();
    const stopAt = runStart + o.durationS * 1000;
    let stopping = false;

    const failed = (err: unknown, elapsed: number, deadline: number): void => {
      const named = err instanceof LuminaGuardError && err.code !== "INTERNAL";
      const code = err instanceof LuminaGuardError ? err.code : "UNNAMED";
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (!named) {
        unnamed++;
        if (unnamedExamples.length < 5) unnamedExamples.push(String(err).slice(0, 200));
      }
      if (elapsed > deadline + DEADLINE_GRACE_MS) late++;
    };

    const step = async (a: Agent, op: Op, i: number): Promise<void> => {
      if (!a.sandbox) {
        const t = performance.now();
        try {
          a.sandbox = await acquire();
        } catch (err) {
          // No sandbox to be had (the daemon restarting): counted apart from the calls.
          const code = err instanceof LuminaGuardError ? err.code : "UNNAMED";
          acquireFailures.set(code, (acquireFailures.get(code) ?? 0) + 1);
          if (!(err instanceof LuminaGuardError) || err.code === "INTERNAL") failed(err, performance.now() - t, 120_000);
          await new Promise((r) => setTimeout(r, 50));
          return;
        }
      }
      const sb = a.sandbox;
      let write: Ack | undefined;
      const tool = op.tool;
      let args = op.args;
      if (op.tool === "write_file") {
        // A numbered write to a file of its own: content = header with the sequence number + filler.
        const seq = a.seq++;
        const filler = "x".repeat(Math.floor(a.rand() * 4000));
        write = { path: `chaos/a${a.index}/w${seq}.txt`, content: `agent ${a.index} seq ${seq} op ${i}\n${filler}\n` };
        args = { path: write.path, content: write.content };
      } else if (op.tool === "execute_command") {
        args = { ...op.args, timeoutMs: COMMAND_TIMEOUT_MS };
      }
      const deadline = tool === "execute_command" ? COMMAND_DEADLINE_MS : FILE_OP_DEADLINE_MS;
      const t = performance.now();
      try {
        const r = await sb.callTool(tool, args);
        if (tool === "execute_command" && r["exitCode"] !== 0) throw new Error(`workload command failed: ${JSON.stringify(r).slice(0, 200)}`);
        callsOk++;
        if (write) acks.push(write);
        const now = performance.now();
        for (const f of a.pending.splice(0)) {
          if (f.atMs < t - runStart) {
            if (--f.waiting > 0) continue;
            f.recoveredMs = now - runStart - f.atMs;
            rec.add("recovery_ms", "ms", f.recoveredMs);
            rec.add(`recovery_ms.${f.kind}`, "ms", f.recoveredMs);
          } else a.pending.push(f);
        }
      } catch (err) {
        failed(err, performance.now() - t, deadline);
        // Whatever the fault, this sandbox is not trusted again: destroy it, take the next.
        a.sandbox = undefined;
        await sb.kill().catch((e: unknown) => log.warn({ err: String(e) }, "chaos: killing a failed sandbox failed"));
      }
    };

    const agentLoop = async (a: Agent): Promise<void> => {
      let i = a.index * 97;
      while (!stopping) {
        await step(a, ops[i % ops.length] as Op, i);
        i++;
      }
      if (a.sandbox) await a.sandbox.kill();
      a.sandbox = undefined;
    };

    const pickKind = (): FaultKind => {
      let roll = rand() * FAULT_KINDS.reduce((n, k) => n + weights[k], 0);
      for (const k of FAULT_KINDS) if ((roll -= weights[k]) < 0) return k;
      return "sigkill";
    };

    const partitions: Array<Promise<void>> = [];
    const inject = async (a: Agent, sb: SandboxApi, kind: FaultKind): Promise<boolean> => {
      const pids = daemon ? daemon.pidsOf(sb.id) : sb.pids();
      if (pids.length === 0 && kind !== "daemon_kill") return false;
      const atMs = performance.now() - runStart;
      switch (kind) {
        case "sigkill":
          // The sandbox's main process: QEMU, or bwrap (the agent dies with it).
          if (!signal(pids[0] as number, "SIGKILL")) return false;
          break;
        case "agent_kill": {
          // The guest agent itself (namespace: pid 1 of the sandbox; microvm: the file jail's agent
          // beside the VM). From inside, `kill -9 1` is ignored: the agent is its namespace's init.
          const agentPid = guestAgentPid(pids);
          if (agentPid === undefined || !signal(agentPid, "SIGKILL")) return false;
          break;
        }
        case "partition": {
          const ms = 1000 + Math.floor(rand() * 2000);
          for (const p of pids) signal(p, "SIGSTOP");
          partitions.push(
            new Promise<void>((r) =>
              setTimeout(() => {
                for (const p of pids) signal(p, "SIGCONT");
                r();
              }, ms),
            ),
          );
          break;
        }
        case "channel_cut":
          // The channel-cut fault point, armed for this sandbox alone (src/faults): on its next call
          // the host end of a channel is destroyed, the VM's or (beside a VM) the file jail's, half
          // and half; the call's own once its request is written. In-process only: through the
          // daemon the sandbox's calls run in another process.
          if (!(sb instanceof Sandbox)) return false;
          armSandboxFault(sb.id, "channel-cut", sb.backend === "microvm" && sb.servedBy("read_file") === "jail" ? { channel: rand() < 0.5 ? "jail" : "vm" } : {});
          break;
        case "daemon_kill": {
          if (!daemon) return false;
          // Every agent loses its sandbox: each must make a successful call again.
          const f: Fault = { kind, agent: -1, sandbox: "daemon", atMs, waiting: agents.length };
          faults.push(f);
          for (const x of agents) x.pending.push(f);
          await daemon.killAndRestart();
          return true;
        }
      }
      const f: Fault = { kind, agent: a.index, sandbox: sb.id, atMs, waiting: 1 };
      faults.push(f);
      a.pending.push(f);
      return true;
    };

    const monkey = async (): Promise<void> => {
      const killShare = KILLS.reduce((n, k) => n + weights[k], 0) / FAULT_KINDS.reduce((n, k) => n + weights[k], 0);
      const mean = (o.durationS * 1000 * killShare) / Math.max(1, o.kills);
      let next = runStart + mean * (0.5 + rand());
      const kills = (): number => faults.filter((f) => KILLS.includes(f.kind)).length;
      while (kills() < o.kills && performance.now() < stopAt + 60_000) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        // A sandbox not already hit and not yet recovered from, else any live one.
        const alive = agents.filter((a) => a.sandbox?.alive);
        const calm = alive.filter((a) => a.pending.length === 0);
        const live = calm.length > 0 ? calm : alive;
        const a = live[Math.floor(rand() * live.length)];
        // Through the daemon, its second fault at the latest is a daemon kill: every such run has one.
        const kind = daemon && faults.length >= 1 && !faults.some((f) => f.kind === "daemon_kill") ? "daemon_kill" : pickKind();
        if (!a || !a.sandbox || !(await inject(a, a.sandbox, kind))) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        progress("chaos: kills", kills(), o.kills);
        next = Math.max(performance.now(), next) + mean * (0.5 + rand());
      }
    };

    const loops = agents.map((a) => agentLoop(a));
    upstream =
      upstreamFaults > 0
        ? upstreamChaos(rec, { durationS: o.durationS, faults: upstreamFaults, seed: o.seed, progress }).catch((err: unknown) => {
            rec.add("upstream_next_call_ok", "", 0);
            rec.notes.push(`the upstream MCP part failed: ${String(err).slice(0, 300)}`);
          })
        : undefined;
    await monkey();
    const injected = faults.filter((f) => KILLS.includes(f.kind)).length;
    if (injected < o.kills) rec.notes.push(`only ${injected} of ${o.kills} kills injected in the time given`);
    // Let the last faults be recovered from, then stop.
    const tail = Date.now() + 30_000;
    while ((performance.now() < stopAt || agents.some((a) => a.pending.length > 0)) && Date.now() < tail) await new Promise((r) => setTimeout(r, 20));
    stopping = true;
    await Promise.all(loops);
    await Promise.all(partitions);
    await upstream;
    const runMs = performance.now() - runStart;

    // The pool must be back to full on its own.
    progress("chaos: checking the pool", 0, 1);
    const refillStart = performance.now();
    let poolFull = 1;
    try {
      if (pool) await pool.warm(o.agents, 120_000);
      else {
        // Through the daemon: a fresh sandbox answers (its pool is the daemon's).
        const sb = await acquire();
        try {
          if ((await sb.commands.run(["echo", "ok"])).stdout !== "ok\n") poolFull = 0;
        } finally {
          await sb.kill();
        }
      }
    } catch (err) {
      poolFull = 0;
      rec.notes.push(`the pool did not get back to ${o.agents} ready sandboxes: ${String(err)}`);
    }
    rec.add("pool_full", "", poolFull);
    rec.add("pool_refill_ms", "ms", performance.now() - refillStart);

    // Every acknowledged write is on the host, byte for byte.
    let lost = 0;
    const lostExamples: string[] = [];
    for (const w of acks) {
      let now: string | undefined;
      try {
        now = readFileSync(join(ws, w.path), "utf8");
      } catch {
        now = undefined;
      }
      if (now !== w.content) {
        lost++;
        if (lostExamples.length < 5) lostExamples.push(`${w.path}: ${now === undefined ? "missing" : `${now.length} bytes differ`}`);
      }
    }
    if (lostExamples.length) rec.notes.push(`LOST acknowledged writes: ${lostExamples.join("; ")}`);
    const temps = tempFilesBelow(ws);
    if (temps.length) rec.notes.push(`temp files left: ${temps.slice(0, 5).join("; ")}`);
    if (unnamedExamples.length) rec.notes.push(`unnamed failures: ${unnamedExamples.join(" | ")}`);

    for (const [code, n] of acquireFailures) rec.add(`acquire_failures.${code}`, "", n);
    const kinds = Object.fromEntries(FAULT_KINDS.map((k) => [k, faults.filter((f) => f.kind === k).length])) as Record<FaultKind, number>;
    const calls = callsOk + [...codes.values()].reduce((x, y) => x + y, 0);
    rec.add("faults_injected", "", faults.length);
    rec.add("kills_injected", "", KILLS.reduce((n, k) => n + kinds[k], 0));
    for (const k of FAULT_KINDS) rec.add(`faults.${k}`, "", kinds[k]);
    rec.add("acknowledged_writes", "", acks.length);
    rec.add("acknowledged_writes_lost", "", lost);
    rec.add("temp_files_left", "", temps.length);
    rec.add("unnamed_failures", "", unnamed);
    rec.add("calls_past_deadline", "", late);
    rec.add("calls_ok", "", callsOk);
    rec.add("calls_failed", "", calls - callsOk);
    rec.add("unrecovered_faults", "", faults.filter((f) => f.recoveredMs === undefined).length);
    for (const [code, n] of codes) rec.add(`failures.${code}`, "", n);
    rec.add("throughput_ops_per_min", "ops/min", (callsOk / runMs) * 60_000);
    for (const f of faults) (rec.series[`fault.${f.kind}`] ??= []).push({ tMs: f.atMs, value: f.recoveredMs ?? -1 });
    const rs = [...(rec.samples["recovery_ms"] ?? [])].sort((x, y) => x - y);
    rec.info["recovery_p50_ms"] = rs.length ? Math.round(percentile(rs, 0.5)) : -1;
    rec.info["recovery_p95_ms"] = rs.length ? Math.round(percentile(rs, 0.95)) : -1;
    rec.info["run_ms"] = Math.round(runMs);
    if (pool) {
      const ps = pool.stats;
      rec.info["pool_spawned"] = ps.spawned;
      rec.info["pool_spawn_failures"] = ps.spawnFailures;
      rec.info["pool_handed_out"] = ps.handedOut;
    }
  } finally {
    // The upstream part ends on its own (its servers and pool closed); a run that broke off still waits for it.
    await upstream;
    await pool?.drain().catch((e: unknown) => log.warn({ err: String(e) }, "chaos: draining the pool failed"));
    if (savedSocket === undefined) delete process.env["LUMINAGUARD_SOCKET"];
    else process.env["LUMINAGUARD_SOCKET"] = savedSocket;
    const daemonLeft = daemon ? await daemon.finish() : [];
    rmSync(ws, { recursive: true, force: true });
    // Everything the run started must be gone.
    leaks = [...(await settleLeaks(before, rec.notes)), ...daemonLeft];
  }
  if (leaks.length) rec.notes.push(`LEAK: ${leaks.join("; ")}`);
  rec.add("leaks", "", leaks.length);
  const run = await createRun({
    scenario: "chaos",
    backend: o.backend,
    accel,
    startedAt,
    durationMs: performance.now() - t0,
    samples: rec.samples,
    units: rec.units,
    series: rec.series,
    criteria: [...chaosCriteria(), ...(upstreamFaults > 0 ? upstreamChaosCriteria().filter((c) => rec.samples[c.metric] !== undefined || c.metric !== "upstream_stdio_restarted") : [])],
    notes: [...new Set(rec.notes)],
    info: {
      agents: o.agents,
      kills: o.kills,
      durationS: o.durationS,
      seed: o.seed,
      upstreamFaults,
      via: o.daemon ? "daemon (luminaguard serve, SIGKILLed and restarted by the monkey)" : "in-process",
      sharesHostKernel: o.backend === "namespace",
      "fault.sigkill": o.backend === "microvm" ? "SIGKILL of the VM's QEMU" : "SIGKILL of the sandbox's bwrap",
      "fault.agent_kill":
        o.backend === "microvm"
          ? "SIGKILL of the file jail's lg-agent beside the VM (the guest's agent is its PID 1: a kill from inside is ignored)"
          : "SIGKILL of the sandbox's lg-agent (its PID 1: a kill from inside is ignored)",
      "fault.partition": "SIGSTOP of every process of the sandbox for 1-3 s, then SIGCONT",
      "fault.channel_cut":
        o.backend === "microvm"
          ? "the channel-cut fault point armed for the sandbox: on its next call the host end of the VM's or the file jail's channel destroyed (half and half; the call's own once its request is written)"
          : "the channel-cut fault point armed for the sandbox: its next call's request written, then the host end of its channel destroyed",
      ...rec.info,
    },
  });
  return { run, path: saveRun(run), leaks };
}

/** The chaos criteria: "no data loss" as the seed words it, and the harness's own. */
export function chaosCriteria(): CriterionDef[] {
  const c = (name: string, metric: string, op: CriterionDef["op"], target: number, source: CriterionDef["source"]): CriterionDef => ({ name, metric, stat: "max", op, target, source });
  return [
    c("no data loss: 0 acknowledged writes lost", "acknowledged_writes_lost", "<=", 0, "phase3"),
    c("no partial or temp file left", "temp_files_left", "<=", 0, "project"),
    c("every failure a named error", "unnamed_failures", "<=", 0, "project"),
    c("every failure within its deadline", "calls_past_deadline", "<=", 0, "project"),
    c("the pool back to full", "pool_full", ">=", 1, "project"),
    c("every fault recovered from", "unrecovered_faults", "<=", 0, "project"),
    c("no leak (own run)", "leaks", "<=", 0, "project"),
  ];
}
