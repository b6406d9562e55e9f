// `bench exhaustion`, the resource-exhaustion simulator, in five parts, each recorded as counts:
//  (a) memory: sandboxes whose command allocates past their own memoryMiB: a named SANDBOX_OOM, the
//      sandbox replaced from the pool, the replacement works, the host never OOM-kills;
//  (b) disk: a workspace that hits its quota (diskMiB): NO_SPACE for write_file and for a command, no
//      partial or temp file, and writes work again once space is freed;
//  (c) the host's run directory on a small filesystem made for the test (a loop-mounted ext4 of a few
//      MiB, root only) filled up: creating a sandbox fails with a named error, nothing partial is left,
//      and it works again once space returns;
//  (d) capacity: more sandboxes asked for than a memory budget allows. The in-process runtime has no
//      admission control, so it admits them all (recorded as such); through the daemon's admission
//      control (`acquire` hook) the ones past the budget are to get CAPACITY;
//  (e) saturation (exhaustion-saturation.ts): upstream MCP servers made slow, throttled or flooding, and
//      the daemon's API flooded past capacity: named errors in time, back-pressure, others unaffected, memory bounded.
// Sizes are capped so that the whole run stays far below a 24 GiB host's memory.
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxCostMiB } from "../daemon/admission.js";
import { startBenchDaemon } from "../daemon/bench.js";
import { DaemonClient, type RemoteSandbox } from "../daemon/client.js";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { requireImage } from "../image/build.js";
import { log } from "../log.js";
import type { BenchRun, CriterionDef } from "../metrics/schema.js";
import { createRun, saveRun } from "../metrics/store.js";
import { getBackend, probeBackend } from "../runtime/backends.js";
import { recordCreated } from "../runtime/created.js";
import { SandboxPool } from "../runtime/pool.js";
import { Sandbox, type SandboxApi } from "../runtime/sandbox.js";
import type { MicroVmBackend } from "../sandbox/microvm/backend.js";
import type { BackendName } from "../sandbox/types.js";
import { run } from "../util/proc.js";
import { saturationCriteria, saturationPart } from "./exhaustion-saturation.js";
import { leakSnapshot, pathsBelow, settleLeaks, tempFilesBelow } from "./leaks.js";
import { Recorder } from "./scenarios.js";

/** Never ask for more than this many sandboxes, nor more memory per sandbox, whatever the options. */
const MAX_REQUESTS = 32;
const MAX_SANDBOX_MIB = 256;

export const EXHAUSTION_PARTS = ["memory", "disk", "rundir", "capacity", "admission", "saturation"] as const;
export type ExhaustionPart = (typeof EXHAUSTION_PARTS)[number];

export interface ExhaustionOptions {
  backend: BackendName;
  /** Which parts to run (default: all). */
  parts?: readonly ExhaustionPart[];
  /** (a) sandboxes made to run out of their own memory. */
  oomRounds?: number;
  /** (d) sandboxes asked for, and each one's memory, against `budgetMiB`. */
  requests?: number;
  sandboxMiB?: number;
  budgetMiB?: number;
  /**
   * (d) how a sandbox is asked for: in-process by default. The daemon's admission control plugs in
   * here, e.g. `(memoryMiB) => Sandbox.create({ daemon: true, backend, memoryMiB })`.
   */
  acquire?: (memoryMiB: number) => Promise<SandboxApi>;
  /** (e) saturation: seconds each flood lasts (upstream MCP servers made slow; the daemon's API flooded). */
  saturationFloodS?: number;
  progress?: (label: string, done: number, total: number) => void;
}

export interface ExhaustionResult {
  run: BenchRun;
  path: string;
  leaks: string[];
}

function vmstat(key: string): number {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, "m").exec(readFileSync("/proc/vmstat", "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function memAvailableMiB(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Messages of the unnamed failures seen, for the notes. */
const unnamedSeen: string[] = [];

/** The code of what `p` rejected with ("OK" when it resolved, "UNNAMED" for anything but ours). */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (err) {
    if (err instanceof LuminaGuardError && err.code !== "INTERNAL") return err.code;
    if (unnamedSeen.length < 5) unnamedSeen.push(String(err).slice(0, 200));
    return "UNNAMED";
  }
}

/** A command that grows its memory in small steps until something stops it (no single huge allocation to refuse). */
const EAT_MEMORY = ["tail", "/dev/zero"];

async function memoryPart(rec: Recorder, o: ExhaustionOptions, mib: number): Promise<void> {
  const rounds = Math.max(1, Math.min(o.oomRounds ?? 3, 10));
  const pool = new SandboxPool({ backend: getBackend(o.backend), minSize: 1, maxSize: 2, memoryMiB: mib });
  try {
    for (let i = 0; i < rounds; i++) {
      o.progress?.("exhaustion: memory", i, rounds);
      const sb = await pool.acquire();
      const t = performance.now();
      const code = await outcome(sb.commands.run(EAT_MEMORY, { timeoutMs: 60_000 }));
      rec.add("oom_ms", "ms", performance.now() - t);
      rec.add(`oom_outcome.${code}`, "", 1);
      rec.add("oom_named", "", code === "SANDBOX_OOM" ? 1 : 0);
      if (code !== "SANDBOX_OOM") rec.notes.push(`memory round ${i}: ${code} instead of SANDBOX_OOM`);
      // Replaced: thrown away, the next from the pool must work.
      await sb.kill();
      const next = await pool.acquire();
      const r = await next.commands.run(["echo", "ok"]).catch((e: unknown) => ({ stdout: String(e) }));
      rec.add("oom_replacement_works", "", r.stdout === "ok\n" ? 1 : 0);
      await next.kill();
    }
  } finally {
    await pool.drain();
  }
}

async function diskQuotaPart(rec: Recorder, o: ExhaustionOptions): Promise<void> {
  o.progress?.("exhaustion: workspace quota", 0, 1);
  // An owned workspace of 8 MiB (kernel-limited as root, watched otherwise).
  const sb = await Sandbox.create({ backend: o.backend, daemon: false, diskMiB: 8 });
  try {
    rec.info["disk_limit"] = sb.diskLimit;
    const chunk = "x".repeat(3 * 1024 * 1024);
    const writes: string[] = [];
    for (let i = 0; i < 4; i++) writes.push(await outcome(sb.files.write(`fill${i}.bin`, chunk)));
    const refused = writes.indexOf("NO_SPACE");
    rec.add("quota_write_no_space", "", refused >= 0 ? 1 : 0);
    rec.notes.push(`quota: write_file of 3 MiB × 4 on 8 MiB: ${writes.join(", ")}`);
    // The refused write left nothing: no temp file, no short target.
    const partial = tempFilesBelow(sb.workspace).length + (refused >= 0 && existsSync(join(sb.workspace, `fill${refused}.bin`)) ? 1 : 0);
    const cmd = await outcome(sb.commands.run(["dd", "if=/dev/zero", "of=big.bin", "bs=1M", "count=16"], { timeoutMs: 60_000 }));
    rec.add("quota_command_no_space", "", cmd === "NO_SPACE" ? 1 : 0);
    if (cmd !== "NO_SPACE") rec.notes.push(`quota: a command writing past the limit got ${cmd}`);
    rec.add("quota_partial_files", "", partial + tempFilesBelow(sb.workspace).length);
    // Space returns: the agent frees it, writes work again.
    await sb.commands.run(["rm", "-f", "big.bin", "fill0.bin", "fill1.bin", "fill2.bin", "fill3.bin"]);
    const again = await outcome(sb.files.write("after.bin", chunk));
    rec.add("quota_recovered", "", again === "OK" ? 1 : 0);
    if (again !== "OK") rec.notes.push(`quota: after freeing space, write_file got ${again}`);
  } finally {
    await sb.kill();
  }
}

/** Fills the filesystem holding `dir` until ENOSPC; returns the filler file. */
function fill(dir: string): string {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  const block = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(fd);
  }
  // Directories take blocks too: fill the last ones with small files until even those fail.
  for (let i = 0; i < 10_000; i++) {
    try {
      const f = openSync(join(dir, `filler-${i}`), "w");
      try {
        writeSync(f, Buffer.alloc(4096, 1));
      } finally {
        closeSync(f);
      }
    } catch {
      break;
    }
  }
  // ext4 keeps blocks for metadata: directories still get made after the data is full. Use those up too.
  for (let i = 0; i < 100_000; i++) {
    try {
      mkdirSync(join(dir, `filler-d${i}`));
    } catch {
      break;
    }
  }
  return path;
}

async function mustRun(argv: string[]): Promise<void> {
  const r = await run(argv, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new LuminaGuardError("IO_ERROR", `${argv.join(" ")} failed: ${r.stderr.trim()}`);
}

async function hostRunDirPart(rec: Recorder, o: ExhaustionOptions): Promise<void> {
  if (process.geteuid?.() !== 0) {
    rec.notes.push("host run dir: skipped (making a small filesystem needs root)");
    return;
  }
  o.progress?.("exhaustion: host run dir full", 0, 1);
  const base = mkdtempSync(join(tmpdir(), "lg-bench-smallfs-"));
  recordCreated(base);
  const image = join(base, "fs.ext4");
  const mnt = join(base, "mnt");
  mkdirSync(mnt);
  const saved = process.env["LUMINAGUARD_RUN"];
  let mounted = false;
  try {
    // 4 MiB of ext4: room for a run directory, not for much else.
    const fd = openSync(image, "w");
    closeSync(fd);
    await mustRun(["truncate", "-s", "4M", image]);
    await mustRun(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", image]);
    await mustRun(["mount", "-o", "loop", image, mnt]);
    mounted = true;
    const rd = join(mnt, "run");
    process.env["LUMINAGUARD_RUN"] = rd;
    // A sandbox works there first (the directory is set up), then the filesystem fills up.
    const first = await outcome(Sandbox.create({ backend: o.backend, daemon: false, diskMiB: 8 }).then((s) => s.kill()));
    rec.notes.push(`host run dir: a sandbox before the filesystem is full: ${first}`);
    const filler = fill(mnt);
    const before = new Set(pathsBelow(rd));
    const t = performance.now();
    const full = await outcome(Sandbox.create({ backend: o.backend, daemon: false, diskMiB: 8 }).then((s) => s.kill()));
    rec.add("rundir_full_ms", "ms", performance.now() - t);
    rec.add(`rundir_full_outcome.${full}`, "", 1);
    rec.notes.push(`host run dir: creating a sandbox on the full filesystem: ${full}`);
    rec.add("rundir_full_named", "", full !== "OK" && full !== "UNNAMED" ? 1 : 0);
    const left = pathsBelow(rd).filter((p) => !before.has(p));
    rec.add("rundir_partial_entries", "", left.length);
    if (left.length) rec.notes.push(`host run dir: left after the failed create: ${left.slice(0, 5).join("; ")}`);
    // Space returns.
    rmSync(filler, { force: true });
    for (const n of readdirSync(mnt)) if (n.startsWith("filler-")) rmSync(join(mnt, n), { recursive: true, force: true });
    const after = await outcome(
      Sandbox.create({ backend: o.backend, daemon: false, diskMiB: 8 }).then(async (s) => {
        try {
          await s.files.write("ok.txt", "ok\n");
        } finally {
          await s.kill();
        }
      }),
    );
    rec.add("rundir_recovered", "", after === "OK" ? 1 : 0);
    if (after !== "OK") rec.notes.push(`host run dir: after space returned: ${after}`);
  } finally {
    if (saved === undefined) delete process.env["LUMINAGUARD_RUN"];
    else process.env["LUMINAGUARD_RUN"] = saved;
    if (mounted) await run(["umount", mnt], { timeoutMs: 30_000 }).catch((e: unknown) => log.warn({ err: String(e) }, "exhaustion: umount failed"));
    rmSync(base, { recursive: true, force: true });
  }
}

async function capacityPart(rec: Recorder, o: ExhaustionOptions): Promise<void> {
  const requests = Math.max(1, Math.min(o.requests ?? 12, MAX_REQUESTS));
  const mib = Math.max(64, Math.min(o.sandboxMiB ?? 128, MAX_SANDBOX_MIB));
  const budget = o.budgetMiB ?? Math.floor((requests * mib * 2) / 3);
  const fits = Math.floor(budget / mib);
  rec.info["capacity_requests"] = requests;
  rec.info["capacity_sandbox_mib"] = mib;
  rec.info["capacity_budget_mib"] = budget;
  rec.info["capacity_via"] = o.acquire ? "hook" : "in-process (no admission control)";
  const acquire = o.acquire ?? ((m: number) => Sandbox.create({ backend: o.backend, daemon: false, memoryMiB: m }));
  const held: SandboxApi[] = [];
  const codes = new Map<string, number>();
  try {
    for (let i = 0; i < requests; i++) {
      o.progress?.("exhaustion: capacity", i, requests);
      try {
        const sb = await acquire(mib);
        held.push(sb);
        const r = await sb.commands.run(["echo", "ok"]);
        if (r.stdout !== "ok\n") codes.set("ADMITTED_BROKEN", (codes.get("ADMITTED_BROKEN") ?? 0) + 1);
      } catch (err) {
        const e = toLuminaGuardError(err, "INTERNAL");
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      }
      rec.add("capacity_mem_available_mib", "MiB", memAvailableMiB());
    }
    rec.add("capacity_admitted", "", held.length);
    rec.add("capacity_refused", "", codes.get("CAPACITY") ?? 0);
    rec.add("capacity_admitted_past_budget", "", Math.max(0, held.length - fits));
    const other = [...codes.entries()].filter(([c]) => c !== "CAPACITY");
    rec.add("capacity_other_failures", "", other.reduce((n, [, k]) => n + k, 0));
    for (const [c, n] of codes) rec.add(`capacity_outcome.${c}`, "", n);
    if (!o.acquire) rec.notes.push(`capacity: in-process, ${held.length} of ${requests} sandboxes of ${mib} MiB admitted against a budget of ${budget} MiB (${fits}): admission control (CAPACITY) is the daemon's`);
  } finally {
    await Promise.allSettled(held.map((s) => s.kill()));
  }
}

/**
 * (d) through the service: the same requests to a real `luminaguard serve` whose memory budget fits only
 * some of them. Those past the budget must get CAPACITY (after a short admission wait), never a sandbox.
 */
async function admissionPart(rec: Recorder, o: ExhaustionOptions): Promise<void> {
  const requests = Math.max(1, Math.min(o.requests ?? 12, MAX_REQUESTS));
  const mib = Math.max(64, Math.min(o.sandboxMiB ?? 128, MAX_SANDBOX_MIB));
  const cost = sandboxCostMiB(o.backend, mib);
  const fits = Math.max(1, Math.floor((requests * 2) / 3));
  const budget = fits * cost;
  rec.info["admission_budget_mib"] = budget;
  rec.info["admission_sandbox_cost_mib"] = cost;
  const daemon = await startBenchDaemon(o.backend, "0", ["--memory-budget", String(budget), "--admission-wait", "300"]);
  const client = new DaemonClient({ socketPath: daemon.socket });
  const held: RemoteSandbox[] = [];
  const codes = new Map<string, number>();
  try {
    for (let i = 0; i < requests; i++) {
      o.progress?.("exhaustion: admission", i, requests);
      try {
        const sb = await client.createSandbox({ backend: o.backend, memoryMiB: mib, client: "bench-exhaustion" });
        held.push(sb);
        const r = await sb.commands.run(["echo", "ok"]);
        if (r.stdout !== "ok\n") codes.set("ADMITTED_BROKEN", (codes.get("ADMITTED_BROKEN") ?? 0) + 1);
      } catch (err) {
        const e = toLuminaGuardError(err, "INTERNAL");
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      }
    }
    rec.add("admission_admitted", "", held.length);
    rec.add("admission_refused", "", codes.get("CAPACITY") ?? 0);
    rec.add("admission_past_budget", "", Math.max(0, held.length - fits));
    const other = [...codes.entries()].filter(([c]) => c !== "CAPACITY");
    rec.add("admission_other_failures", "", other.reduce((n, [, k]) => n + k, 0));
    for (const [c, n] of codes) rec.add(`admission_outcome.${c}`, "", n);
    rec.notes.push(`admission: a real daemon with --memory-budget ${budget} MiB (${fits} sandboxes of ${cost} MiB): ${held.length} of ${requests} admitted, ${codes.get("CAPACITY") ?? 0} CAPACITY`);
  } finally {
    await Promise.allSettled(held.map((s) => s.kill()));
    await daemon.stop();
  }
}

export async function runExhaustion(o: ExhaustionOptions): Promise<ExhaustionResult> {
  const probe = await probeBackend(o.backend);
  if (!probe.available) throw new LuminaGuardError("BACKEND_UNAVAILABLE", `${o.backend} backend unavailable: ${probe.reason ?? "?"}`);
  const accel = o.backend === "microvm" ? (await (getBackend("microvm") as MicroVmBackend).accelerator(await requireImage())).accel : null;
  const before = leakSnapshot();
  const startedAt = new Date();
  const t0 = performance.now();
  const rec = new Recorder();
  const oomBefore = vmstat("oom_kill");
  let minAvail = memAvailableMiB();
  const sampler = setInterval(() => (minAvail = Math.min(minAvail, memAvailableMiB())), 200);
  sampler.unref();
  let leaks: string[] = [];
  try {
    const parts: Array<[ExhaustionPart, () => Promise<void>]> = [
      ["memory", () => memoryPart(rec, o, 128)],
      ["disk", () => diskQuotaPart(rec, o)],
      ["rundir", () => hostRunDirPart(rec, o)],
      ["capacity", () => capacityPart(rec, o)],
      ["admission", () => admissionPart(rec, o)],
      ["saturation", () => saturationPart(rec, { backend: o.backend, ...(o.progress ? { progress: o.progress } : {}), ...(o.saturationFloodS !== undefined ? { floodS: o.saturationFloodS } : {}) })],
    ];
    for (const [name, part] of parts) {
      if (o.parts && !o.parts.includes(name)) continue;
      try {
        await part();
      } catch (err) {
        // A part that breaks is a finding, recorded; the others still run.
        rec.add("parts_failed", "", 1);
        rec.notes.push(`${name}: the part itself failed: ${String(err).slice(0, 300)}`);
      }
    }
  } finally {
    clearInterval(sampler);
    leaks = await settleLeaks(before, rec.notes);
  }
  // Host OOM kills: the machine's count, less the ones our namespace sandboxes' cgroups made (a
  // cgroup OOM kill counts there too). Another process's OOM kill meanwhile would count as well.
  const ours = o.backend === "namespace" ? (rec.samples["oom_outcome.SANDBOX_OOM"]?.length ?? 0) : 0;
  rec.add("host_oom_kills", "", Math.max(0, vmstat("oom_kill") - oomBefore - ours));
  rec.add("host_mem_available_min_mib", "MiB", minAvail);
  rec.add("parts_failed", "", 0);
  if (leaks.length) rec.notes.push(`LEAK: ${leaks.join("; ")}`);
  if (unnamedSeen.length) rec.notes.push(`unnamed failures: ${unnamedSeen.splice(0).join(" | ")}`);
  rec.add("leaks", "", leaks.length);
  const run = await createRun({
    scenario: "exhaustion",
    backend: o.backend,
    accel,
    startedAt,
    durationMs: performance.now() - t0,
    samples: rec.samples,
    units: rec.units,
    series: rec.series,
    criteria: exhaustionCriteria().filter((c) => !o.parts || c.metric === "host_oom_kills" || c.metric === "leaks" || c.metric === "parts_failed" || o.parts.some((p) => PART_METRIC[p].test(c.metric))),
    notes: [...new Set(rec.notes)],
    info: { sharesHostKernel: o.backend === "namespace", ...rec.info },
  });
  return { run, path: saveRun(run), leaks };
}

/** Which criteria belong to which part. */
const PART_METRIC: Record<ExhaustionPart, RegExp> = { memory: /^oom_/, disk: /^quota_/, rundir: /^rundir_/, capacity: /^capacity_/, admission: /^admission_/, saturation: /^saturation_/ };

export function exhaustionCriteria(): CriterionDef[] {
  const c = (name: string, metric: string, stat: CriterionDef["stat"], op: CriterionDef["op"], target: number, source: CriterionDef["source"] = "project"): CriterionDef => ({
    name,
    metric,
    stat,
    op,
    target,
    source,
  });
  return [
    c("the host never OOM-kills", "host_oom_kills", "max", "<=", 0, "phase3"),
    c("a sandbox's own OOM is a named SANDBOX_OOM", "oom_named", "min", ">=", 1),
    c("the sandbox after an OOM is replaced and works", "oom_replacement_works", "min", ">=", 1),
    c("write_file past the quota: NO_SPACE", "quota_write_no_space", "min", ">=", 1),
    c("a command past the quota: NO_SPACE", "quota_command_no_space", "min", ">=", 1),
    c("no partial or temp file at the quota", "quota_partial_files", "max", "<=", 0),
    c("writes work again once space is freed", "quota_recovered", "min", ">=", 1),
    c("a full host run dir: a named error", "rundir_full_named", "min", ">=", 1),
    c("a full host run dir: nothing partial left", "rundir_partial_entries", "max", "<=", 0),
    c("a full host run dir: works again once space returns", "rundir_recovered", "min", ">=", 1),
    c("every admitted sandbox works, no unnamed failure", "capacity_other_failures", "max", "<=", 0),
    c("through the daemon: nothing admitted past its memory budget", "admission_past_budget", "max", "<=", 0),
    c("through the daemon: the rest refused with CAPACITY", "admission_refused", "min", ">=", 1),
    c("through the daemon: no failure other than CAPACITY", "admission_other_failures", "max", "<=", 0),
    ...saturationCriteria(),
    c("every part ran", "parts_failed", "max", "<=", 0),
    c("no leak (own run)", "leaks", "max", "<=", 0),
  ];
}
