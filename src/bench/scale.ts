// `bench scale`: C agents at once, C swept over a list (1, 5, 10, 25, 50, 100, 150 by default), each agent
// with its own sandbox and seeded workspace replaying the standard workload for D seconds. Per C: total and
// per-agent ops/min, tool latency, time to get a sandbox, each agent's first call of each tool (timed
// before the window: the window is the steady state of C agents all holding a warm sandbox), failures
// by error code, host CPU, the PSS of all sandboxes (sampled through the level), event-loop delay and
// fairness (Jain's index). Derived over the sweep: peak, knee, scaling efficiency up to it, the plateau
// past it, and what the criteria judge; the levels those ratios compare are then measured again side by
// side (pairedCheck), since the sweep's levels are minutes apart on machines whose speed drifts.
import { recordCreated } from "../runtime/created.js";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { toLuminaGuardError } from "../errors.js";
import { cpuSampler } from "../metrics/stats.js";
import { childrenByParent, procStat } from "../util/procfs.js";
import { Sandbox, type SandboxApi } from "../runtime/sandbox.js";
import type { BackendName } from "../sandbox/types.js";
import { runOnSandbox, seedWorkspace, standardOps, type Op } from "./workload.js";
import type { Recorder } from "./scenarios.js";

export const DEFAULT_AGENTS: readonly number[] = [1, 5, 10, 25, 50, 100, 150];

/** How long one agent may wait for its sandbox before the spawn is cancelled (and counted as a failure). */
export const DEFAULT_SPAWN_DEADLINE_MS = 120_000;

/** Past saturation throughput must stay at least this share of its peak (a plateau, not a collapse). */
export const PLATEAU_SHARE = 0.9;

/** The one failure code allowed at scale: a named refusal with a retry hint. */
export const ALLOWED_FAILURE = "CAPACITY";

export interface ScaleOptions {
  backend: BackendName;
  /** Agent counts, swept in this order. */
  agents: readonly number[];
  /** Seconds of workload per level. */
  durationS: number;
  spawnDeadlineMs?: number;
  /** "sdk" (default): sandboxes in this process; "daemon": each agent asks a running `luminaguard serve`. */
  via?: "sdk" | "daemon";
  progress: (label: string, done: number, total: number) => void;
}

/** Jain's fairness index of per-agent throughputs: 1 when all equal, 1/n when one agent gets everything. */
export function jainIndex(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let sum = 0;
  let sq = 0;
  for (const x of xs) {
    sum += x;
    sq += x * x;
  }
  return sq === 0 ? 1 : (sum * sum) / (xs.length * sq);
}

/** Parses "1,5,10" into distinct positive agent counts, ascending. */
export function parseAgents(text: string, max = 4096): number[] {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const p = part.trim();
    if (p === "") continue;
    const n = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new Error(`agent counts are integers from 1 to ${max}, got ${JSON.stringify(p)}`);
    out.add(n);
  }
  if (out.size === 0) throw new Error("no agent counts given");
  return [...out].sort((a, b) => a - b);
}

/** Metric names per level: `<name>.c<C>`. */
export const atC = (name: string, c: number): string => `${name}.c${c}`;

/** Clock ticks per second of /proc/PID/stat's CPU fields (USER_HZ: 100 on every Linux node runs on). */
const USER_HZ = 100;

/**
 * CPU seconds so far of the sandboxes' process trees, by kind: the VMMs (QEMU) and the rest (jailers,
 * bwrap, the agents beside or inside them, commands, counted once reaped). A process that exits
 * unreaped between two readings takes its time with it: a reading is a floor.
 */
function sandboxTreeCpuS(roots: readonly number[]): { vmm: number; other: number } {
  const children = childrenByParent();
  const seen = new Set<number>();
  const out = { vmm: 0, other: 0 };
  const stack = [...roots];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const st = procStat(pid);
    if (!st) continue;
    if (st.comm.startsWith("qemu")) out.vmm += st.cpuTicks / USER_HZ;
    else out.other += st.cpuTicks / USER_HZ;
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

async function pssKiB(pid: number): Promise<number> {
  try {
    const m = (await readFile(`/proc/${pid}/smaps_rollup`, "utf8")).match(/^Pss:\s+(\d+) kB/m);
    return Number(m?.[1] ?? 0);
  } catch {
    return 0; // exited
  }
}

async function memAvailableMiB(): Promise<number | undefined> {
  try {
    const m = (await readFile("/proc/meminfo", "utf8")).match(/^MemAvailable:\s+(\d+) kB/m);
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Time the main thread has run on a core, and waited runnable for one (Linux schedstat, ns); undefined elsewhere. */
async function mainThreadSchedstat(): Promise<{ runNs: number; waitNs: number } | undefined> {
  try {
    const [run, wait] = (await readFile(`/proc/self/task/${process.pid}/schedstat`, "utf8")).trim().split(/\s+/).map(Number);
    return run !== undefined && wait !== undefined && Number.isFinite(run) && Number.isFinite(wait) ? { runNs: run, waitNs: wait } : undefined;
  } catch {
    return undefined;
  }
}

interface Agent {
  index: number;
  ws: string;
  sandbox?: SandboxApi;
  ops: number;
}

/** A seeded workspace per agent; "lg-bench-" so that the benchmark's leak check counts one left behind. */
function tempWorkspace(): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "lg-bench-scale-")));
  // The run's own leak check looks for what this run made, not for everyone's.
  recordCreated(dir);
  return dir;
}

/** Failures by code, with the first message of each (what a person reading the notes needs to look further). */
function failureTally(): { fail: (err: unknown) => void; counts: Map<string, number>; describe: () => string } {
  const counts = new Map<string, number>();
  const first = new Map<string, string>();
  return {
    counts,
    fail: (err) => {
      const e = toLuminaGuardError(err);
      counts.set(e.code, (counts.get(e.code) ?? 0) + 1);
      if (!first.has(e.code)) first.set(e.code, e.message.slice(0, 300));
    },
    describe: () => [...counts].map(([code, n]) => `${code}×${n} (first: ${first.get(code) ?? "?"})`).join(", "),
  };
}

/** One level of the sweep: C agents ask for a sandbox at once, then all that got one replay the workload. */
async function level(rec: Recorder, o: ScaleOptions, C: number, ops: readonly Op[]): Promise<void> {
  const deadline = o.spawnDeadlineMs ?? DEFAULT_SPAWN_DEADLINE_MS;
  const tally = failureTally();
  const failures = tally.counts;
  const fail = tally.fail;
  const agents: Agent[] = [];
  for (let i = 0; i < C; i++) {
    o.progress(`scale C=${C}: seeding workspaces`, i, C);
    const ws = tempWorkspace();
    agents.push({ index: i, ws, ops: 0 });
    seedWorkspace(ws);
  }
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const cpu = cpuSampler(500);
  // PSS of every live sandbox, summed, sampled through the level (spawns, workload) rather than read once.
  let sampling = true;
  let wake: (() => void) | undefined;
  const pssSampler = (async () => {
    const t0 = performance.now();
    while (sampling) {
      const round = performance.now();
      const pids = agents.flatMap((a) => (a.sandbox ? a.sandbox.pids() : []));
      if (pids.length > 0) {
        let kib = 0;
        for (const pid of pids) kib += await pssKiB(pid);
        const live = agents.filter((a) => a.sandbox).length;
        rec.add(atC("scale_pss_total_mib", C), "MiB", kib / 1024);
        rec.add(atC("scale_pss_per_agent_mib", C), "MiB", kib / 1024 / Math.max(1, live));
        (rec.series[atC("scale_pss_total_mib", C)] ??= []).push({ tMs: Math.round(performance.now() - t0), value: Math.round(kib / 102.4) / 10 });
      }
      const avail = await memAvailableMiB();
      if (avail !== undefined) rec.add(atC("scale_host_mem_available_mib", C), "MiB", avail);
      // Reading smaps_rollup costs the kernel ~1 ms per QEMU: at 100 VMs a round every second took a
      // tenth of a core from the run it measures. Rounds are spaced to 20x their length (a loaded
      // machine stretches a round), at most 5 s apart; the end of the level wakes the sampler at once.
      const pause = Math.min(5000, Math.max(1000, 20 * (performance.now() - round)));
      await new Promise<void>((r) => {
        const timer = setTimeout(r, pause);
        wake = () => {
          clearTimeout(timer);
          r();
        };
      });
      wake = undefined;
    }
  })();
  try {
    // All C at once: the time to get a sandbox includes any queueing behind the others.
    let got = 0;
    const t0 = performance.now();
    await Promise.all(
      agents.map(async (a) => {
        try {
          a.sandbox = await Sandbox.create({ backend: o.backend, workspace: a.ws, daemon: o.via === "daemon", signal: AbortSignal.timeout(deadline) });
          rec.add(atC("scale_sandbox_wait_ms", C), "ms", performance.now() - t0);
        } catch (err) {
          rec.add(atC("scale_sandbox_wait_failed_ms", C), "ms", performance.now() - t0);
          fail(err);
        }
        o.progress(`scale C=${C}: getting sandboxes`, ++got, C);
      }),
    );
    const held = agents.filter((a): a is Agent & { sandbox: SandboxApi } => a.sandbox !== undefined);
    // Each agent's first call of each tool, before the window and timed on its own: a sandbox's first
    // calls pay one-off costs (a micro-VM's workspace mount and its QEMU translating the guest's exec
    // paths: ~120 ms against ~17 ms for a later command under TCG), C times per level. Inside the
    // window they grew with C (100 first commands are ~12 CPU-seconds, most of a 5 s window on 2
    // cores) and the level measured start-up, not the steady state past saturation it is meant to judge.
    const warm = firstOfEachTool(ops);
    const running: typeof held = [];
    await Promise.all(
      held.map(async (a) => {
        const t = performance.now();
        try {
          for (const op of warm) await runOnSandbox(a.sandbox as Sandbox, op);
        } catch (err) {
          fail(err);
          return;
        }
        rec.add(atC("scale_first_calls_ms", C), "ms", performance.now() - t);
        running.push(a);
      }),
    );
    running.sort((x, y) => x.index - y.index);
    // The measured window: every agent holding a sandbox (all C of them, warmed up) replays the mix, as fast as it is answered.
    cpu.start();
    const sched0 = await mainThreadSchedstat();
    const roots = running.flatMap((a) => (a.sandbox ? a.sandbox.pids() : []));
    const tree0 = sandboxTreeCpuS(roots);
    const host0 = process.cpuUsage();
    const start = performance.now();
    const end = start + o.durationS * 1000;
    const perSecond: number[] = [];
    let total = 0;
    await Promise.all(
      running.map(async (a) => {
        let i = a.index * 97;
        while (performance.now() < end) {
          const op = ops[i++ % ops.length] as Op;
          const t = performance.now();
          try {
            await runOnSandbox(a.sandbox as Sandbox, op);
          } catch (err) {
            fail(err);
            continue;
          }
          const done = performance.now();
          if (done > end) break; // finished after the window: not counted
          rec.add(atC("scale_tool_latency_ms", C), "ms", done - t);
          a.ops++;
          total++;
          const sec = Math.floor((done - start) / 1000);
          perSecond[sec] = (perSecond[sec] ?? 0) + 1;
          if (total % 100 === 0) o.progress(`scale C=${C}: workload`, Math.min(o.durationS, (done - start) / 1000), o.durationS);
        }
      }),
    );
    const elapsedMin = (performance.now() - start) / 60_000;
    // Where each call's CPU went: this process (the host side: SDK, protocol, the event loop), the VMMs,
    // the rest of the sandboxes' trees. What grows with C here is what scales badly.
    const host1 = process.cpuUsage(host0);
    const tree1 = sandboxTreeCpuS(roots);
    if (total > 0) {
      rec.add(atC("scale_cpu_ms_per_op.host", C), "ms", (host1.user + host1.system) / 1000 / total);
      rec.add(atC("scale_cpu_ms_per_op.vmm", C), "ms", ((tree1.vmm - tree0.vmm) * 1000) / total);
      rec.add(atC("scale_cpu_ms_per_op.sandbox", C), "ms", ((tree1.other - tree0.other) * 1000) / total);
    }
    // The one thread that carries every agent's calls: the share of the window it ran, and the share it
    // was runnable but waiting for a core (a dispatcher starved by the work it dispatches shows here).
    const sched1 = await mainThreadSchedstat();
    if (sched0 && sched1) {
      const windowNs = elapsedMin * 60e9;
      rec.add(atC("scale_host_thread_running_pct", C), "%", (100 * (sched1.runNs - sched0.runNs)) / windowNs);
      rec.add(atC("scale_host_thread_waiting_pct", C), "%", (100 * (sched1.waitNs - sched0.waitNs)) / windowNs);
    }
    const cpuSeries = cpu.stop();
    rec.add(atC("scale_throughput_ops_per_min", C), "ops/min", total / elapsedMin);
    rec.series[atC("scale_throughput_ops_per_s", C)] = perSecond.map((v, i) => ({ tMs: i * 1000, value: v ?? 0 }));
    for (const a of running) rec.add(atC("scale_agent_ops_per_min", C), "ops/min", a.ops / elapsedMin);
    if (running.length > 0) rec.add(atC("scale_fairness_jain", C), "", jainIndex(running.map((a) => a.ops)));
    for (const s of cpuSeries) rec.add(atC("scale_cpu_pct", C), "%", s.value);
    rec.series[atC("scale_cpu_pct", C)] = cpuSeries;
  } finally {
    sampling = false;
    wake?.();
    await pssSampler;
    loop.disable();
    rec.add(atC("scale_event_loop_delay_max_ms", C), "ms", loop.max / 1e6);
    rec.add(atC("scale_event_loop_delay_p99_ms", C), "ms", loop.percentile(99) / 1e6);
    o.progress(`scale C=${C}: stopping sandboxes`, 0, 1);
    await Promise.all(agents.map(async (a) => a.sandbox?.kill().catch(fail)));
    for (const a of agents) rmSync(a.ws, { recursive: true, force: true });
  }
  let unnamed = 0;
  let allFailures = 0;
  for (const [code, n] of failures) {
    rec.add(`scale_failures.c${C}.${code}`, "", n);
    allFailures += n;
    if (code !== ALLOWED_FAILURE) unnamed += n;
  }
  rec.add(atC("scale_failures", C), "", allFailures);
  rec.add(atC("scale_failures_not_capacity", C), "", unnamed);
  if (failures.size > 0) rec.notes.push(`scale C=${C}: failures ${tally.describe()}`);
}

/** One operation of each tool in the mix, in the order they first appear. */
function firstOfEachTool(ops: readonly Op[]): Op[] {
  const seen = new Map<string, Op>();
  for (const op of ops) if (!seen.has(op.tool)) seen.set(op.tool, op);
  return [...seen.values()];
}

export async function scaleScenario(rec: Recorder, o: ScaleOptions): Promise<void> {
  const ops = standardOps(5000);
  rec.info["agents"] = o.agents.join(",");
  rec.info["spawnDeadlineMs"] = o.spawnDeadlineMs ?? DEFAULT_SPAWN_DEADLINE_MS;
  rec.info["via"] = o.via ?? "sdk";
  // The daemon's sandboxes are its processes, not ours: their PSS is not visible from here.
  if (o.via === "daemon") rec.notes.push("via daemon: PSS of the sandboxes is not measured (their processes belong to the daemon)");
  for (const C of o.agents) await level(rec, o, C, ops);
  const pairs = pairedLevels(scaleCurve(rec.samples, o.agents));
  if (pairs.length > 1) await pairedCheck(rec, o, pairs, ops);
}

/** Rounds of the paired check: each runs every paired level once, in alternating order (ABC, CBA, ABC). */
export const PAIRED_ROUNDS = 3;

/**
 * The levels the ratios are judged between, measured again side by side: the sweep's peak, its most
 * agents, and (for "no degradation up to 50") its best level up to 50 and the worst after that one.
 */
export function pairedLevels(curve: ScaleCurve | undefined): number[] {
  if (!curve || curve.agents.length < 2) return [];
  const levels = new Set<number>([curve.peakAt, curve.agents[curve.agents.length - 1] as number]);
  const drop = worstDrop(curve.agents.map((c, i) => ({ c, tp: curve.throughput[i] as number })).filter((p) => p.c <= 50));
  if (drop) levels.add(drop.from).add(drop.at);
  return [...levels].sort((a, b) => a - b);
}

/**
 * The sweep measures its levels minutes apart, on machines whose speed drifts by more than the 10 % a
 * plateau may lose. So the levels the criteria compare are measured again side by side: the most agents
 * of them hold a warm sandbox each, and windows of the same length alternate between the first C of them
 * replaying the workload (the others idle: a namespace agent blocked on its pipe, a paused VM) for each
 * paired C, in alternating order. `scale_paired_throughput_ops_per_min.c<C>` holds one sample per round.
 */
async function pairedCheck(rec: Recorder, o: ScaleOptions, levels: readonly number[], ops: readonly Op[]): Promise<void> {
  const most = levels[levels.length - 1] as number;
  const deadline = o.spawnDeadlineMs ?? DEFAULT_SPAWN_DEADLINE_MS;
  const agents: Agent[] = [];
  const tally = failureTally();
  const fail = tally.fail;
  try {
    for (let i = 0; i < most; i++) {
      o.progress(`scale paired ${levels.join("/")}: seeding workspaces`, i, most);
      const ws = tempWorkspace();
      agents.push({ index: i, ws, ops: 0 });
      seedWorkspace(ws);
    }
    await Promise.all(
      agents.map(async (a) => {
        try {
          a.sandbox = await Sandbox.create({ backend: o.backend, workspace: a.ws, daemon: o.via === "daemon", signal: AbortSignal.timeout(deadline) });
          for (const op of firstOfEachTool(ops)) await runOnSandbox(a.sandbox as Sandbox, op);
        } catch (err) {
          fail(err);
        }
      }),
    );
    if (agents.some((a) => !a.sandbox)) {
      rec.notes.push(`scale paired check skipped: ${agents.filter((a) => !a.sandbox).length} of ${most} agents got no working sandbox (${tally.describe()})`);
      return;
    }
    /** Every agent of `working` replays the workload for `seconds`; the ops/min of the window. */
    const window = async (working: readonly Agent[], seconds: number, seed: number): Promise<number> => {
      const end = performance.now() + seconds * 1000;
      const start = performance.now();
      let total = 0;
      await Promise.all(
        working.map(async (a) => {
          let i = a.index * 97 + seed * 13;
          while (performance.now() < end) {
            try {
              await runOnSandbox(a.sandbox as Sandbox, ops[i++ % ops.length] as Op);
            } catch (err) {
              fail(err);
              continue;
            }
            if (performance.now() <= end) total++;
          }
        }),
      );
      return total / ((performance.now() - start) / 60_000);
    };
    for (let round = 0; round < PAIRED_ROUNDS; round++) {
      const order = round % 2 === 0 ? levels : [...levels].reverse();
      for (const C of order) {
        o.progress(`scale paired round ${round + 1}/${PAIRED_ROUNDS}: C=${C}`, round, PAIRED_ROUNDS);
        rec.add(atC("scale_paired_throughput_ops_per_min", C), "ops/min", await window(agents.slice(0, C), o.durationS, round));
      }
    }
  } finally {
    o.progress(`scale paired: stopping sandboxes`, 0, 1);
    await Promise.all(agents.map(async (a) => a.sandbox?.kill().catch(fail)));
    for (const a of agents) rmSync(a.ws, { recursive: true, force: true });
    rec.info["scalePairedLevels"] = levels.join(",");
    if (tally.counts.size > 0) {
      for (const [code, n] of tally.counts) rec.add(`scale_paired_failures.${code}`, "", n);
      // Judged with the sweep's (no failure other than CAPACITY).
      rec.add("scale_paired_failures_not_capacity", "", [...tally.counts].reduce((sum, [code, n]) => sum + (code === ALLOWED_FAILURE ? 0 : n), 0));
      rec.notes.push(`scale paired check: failures ${tally.describe()}`);
    }
  }
}

function median(xs: readonly number[] | undefined): number | undefined {
  if (!xs || xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * Over levels in ascending agents: the level whose throughput is the smallest share of the best level
 * before it (`ratio`, above 1 where every level gained), that level (`at`) and that best one (`from`).
 * Undefined with fewer than two levels.
 */
export function worstDrop(pts: readonly { c: number; tp: number }[]): { ratio: number; at: number; from: number } | undefined {
  let best: { c: number; tp: number } | undefined;
  let worst: { ratio: number; at: number; from: number } | undefined;
  for (const p of pts) {
    if (best && best.tp > 0 && (!worst || p.tp / best.tp < worst.ratio)) worst = { ratio: p.tp / best.tp, at: p.c, from: best.c };
    if (!best || p.tp > best.tp) best = p;
  }
  return worst;
}

export interface ScaleCurve {
  agents: number[];
  /** Median total ops/min per level (over repeats). */
  throughput: number[];
  peak: number;
  peakAt: number;
  /** The knee: the fewest agents reaching PLATEAU_SHARE of the peak (saturation). */
  knee: number;
  /** Throughput at the knee over knee × throughput at the fewest agents (1 = linear). */
  efficiencyToKnee: number;
  /** Throughput at the most agents over the peak. */
  plateau: number;
  /** The worst level up to 50 agents, as a share of the best level before it (1 = no degradation). */
  degradationTo50: number;
}

/** The throughput curve of a sweep, from the recorded samples. */
export function scaleCurve(samples: Readonly<Record<string, readonly number[]>>, agents: readonly number[]): ScaleCurve | undefined {
  const pts = agents.flatMap((c) => {
    const tp = median(samples[atC("scale_throughput_ops_per_min", c)]);
    return tp === undefined ? [] : [{ c, tp }];
  });
  if (pts.length === 0) return undefined;
  let peak = pts[0] as { c: number; tp: number };
  for (const p of pts) if (p.tp > peak.tp) peak = p;
  const knee = pts.find((p) => p.tp >= PLATEAU_SHARE * peak.tp) ?? peak;
  const first = pts[0] as { c: number; tp: number };
  const last = pts[pts.length - 1] as { c: number; tp: number };
  const degradation = Math.min(1, worstDrop(pts.filter((p) => p.c <= 50))?.ratio ?? 1);
  return {
    agents: pts.map((p) => p.c),
    throughput: pts.map((p) => p.tp),
    peak: peak.tp,
    peakAt: peak.c,
    knee: knee.c,
    efficiencyToKnee: first.tp > 0 ? knee.tp / ((knee.c / first.c) * first.tp) : 0,
    plateau: peak.tp > 0 ? last.tp / peak.tp : 0,
    degradationTo50: degradation,
  };
}

/** Figures over the whole sweep, added once after every level (and repeat) ran. */
export function scaleFigures(rec: Recorder, agents: readonly number[], spawnDeadlineMs = DEFAULT_SPAWN_DEADLINE_MS): void {
  const curve = scaleCurve(rec.samples, agents);
  if (!curve) return;
  rec.add("scale_peak_ops_per_min", "ops/min", curve.peak);
  rec.add("scale_peak_agents", "agents", curve.peakAt);
  rec.add("scale_knee_agents", "agents", curve.knee);
  rec.add("scale_efficiency_to_knee", "ratio", curve.efficiencyToKnee);
  // The sweep's own ratios, between levels measured minutes apart.
  rec.add("scale_plateau_sweep_ratio", "ratio", curve.plateau);
  rec.add("scale_degradation_to_50_sweep_ratio", "ratio", curve.degradationTo50);
  // The same ratios between the same levels measured side by side (pairedCheck), when it ran; they are the
  // ones judged (scale_plateau_ratio, scale_degradation_to_50_ratio), else the sweep's are.
  const paired = (c: number): number | undefined => median(rec.samples[atC("scale_paired_throughput_ops_per_min", c)]);
  const levels = pairedLevels(curve).filter((c) => paired(c) !== undefined);
  const peak = paired(curve.peakAt);
  const last = paired(curve.agents[curve.agents.length - 1] as number);
  let plateau = curve.plateau;
  let degradation = curve.degradationTo50;
  if (peak !== undefined && last !== undefined && peak > 0) {
    plateau = last / peak;
    rec.add("scale_plateau_paired_ratio", "ratio", plateau);
    // As the sweep judges it: the worst paired level up to 50 against the best one before it.
    degradation = Math.min(1, worstDrop(levels.filter((l) => l <= 50).map((c) => ({ c, tp: paired(c) as number })))?.ratio ?? 1);
    rec.add("scale_degradation_to_50_paired_ratio", "ratio", degradation);
    rec.info["scaleRatiosFrom"] = `paired levels ${levels.join(",")}`;
  } else {
    rec.info["scaleRatiosFrom"] = "sweep";
  }
  rec.add("scale_plateau_ratio", "ratio", plateau);
  rec.add("scale_degradation_to_50_ratio", "ratio", degradation);
  let unnamed = 0;
  let fairMin = Infinity;
  let waitOver = 0;
  for (const c of agents) {
    for (const v of rec.samples[atC("scale_failures_not_capacity", c)] ?? []) unnamed += v;
    for (const v of rec.samples[atC("scale_fairness_jain", c)] ?? []) fairMin = Math.min(fairMin, v);
    const waits = [...(rec.samples[atC("scale_sandbox_wait_ms", c)] ?? []), ...(rec.samples[atC("scale_sandbox_wait_failed_ms", c)] ?? [])].sort((a, b) => a - b);
    if (waits.length > 0) waitOver = Math.max(waitOver, (waits[Math.min(waits.length - 1, Math.ceil(0.99 * waits.length) - 1)] as number) / spawnDeadlineMs);
  }
  for (const v of rec.samples["scale_paired_failures_not_capacity"] ?? []) unnamed += v;
  rec.add("scale_failures_not_capacity", "", unnamed);
  if (Number.isFinite(fairMin)) rec.add("scale_fairness_jain_min", "", fairMin);
  rec.add("scale_wait_p99_over_deadline", "ratio", waitOver);
  rec.info["scaleKnee"] = curve.knee;
  rec.info["scalePeakAt"] = curve.peakAt;
}
