// `luminaguard bench faults`: the fault matrix. Each cell arms one fault point (src/faults) in a child
// process of its own, runs a short scenario there and judges what came out: caught (the child neither
// crashed nor hung past its deadline), a stable error code, a log line with the sandbox and call ids,
// a message a user can act on, and recovery (the next call works, or the next sandbox does).
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import type { FaultPoint } from "../faults/index.js";
import { createRun, saveRun } from "../metrics/store.js";
import type { BenchRun } from "../metrics/schema.js";
import type { BackendName } from "../sandbox/types.js";
import { killGroup } from "../util/proc.js";

/** One cell's fault, how it is armed, and what must come out of it. */
export interface FaultCell {
  /** The cell's name: the fault, with `@vm-files` when a micro-VM's file tools run in the guest. */
  name: string;
  fault: FaultPoint;
  /** microvm: the file tools run in the VM (through 9p) instead of in the jail beside it. */
  vmFiles?: boolean;
  /** The LUMINAGUARD_FAULTS value the cell's child runs with. */
  spec: string;
  /** Backends it applies to (restore: microvm only). */
  backends: readonly BackendName[];
  /** The code the faulted call must fail with; null when the fault must be absorbed (the call succeeds). */
  code: string | null;
  /** The sandbox is gone after it: the next call must fail at once as closed, and a new sandbox work. */
  fatal: boolean;
  /** What the message must say for a user to act on it. */
  hint: RegExp;
  /** What the log line must carry: the sandbox's and call's ids, or the component's own names. */
  logKeys: readonly string[];
}

const BOTH: readonly BackendName[] = ["namespace", "microvm"];

export const FAULT_CELLS: readonly FaultCell[] = [
  { name: "spawn", fault: "spawn", spec: "spawn", backends: BOTH, code: "SANDBOX_SPAWN_FAILED", fatal: false, hint: /cannot start .* sandbox.*retry/, logKeys: ["sandboxId", "callId"] },
  { name: "restore", fault: "restore", spec: "restore", backends: ["microvm"], code: null, fatal: false, hint: /restor.*failed/, logKeys: ["sandboxId"] },
  { name: "guest-crash", fault: "guest-crash", spec: "guest-crash:op=execute_command;ms=300", backends: BOTH, code: "GUEST_CHANNEL_LOST", fatal: true, hint: /sandbox|guest|VM|jail/, logKeys: ["sandboxId", "callId"] },
  { name: "guest-eio", fault: "guest-eio", spec: "guest-eio:op=write_file;after=1", backends: BOTH, code: "IO_ERROR", fatal: false, hint: /probe\.txt: Input\/output error/, logKeys: ["sandboxId", "callId"] },
  { name: "guest-enospc", fault: "guest-enospc", spec: "guest-enospc:op=write_file;after=1", backends: BOTH, code: "NO_SPACE", fatal: false, hint: /probe\.txt: No space left/, logKeys: ["sandboxId", "callId"] },
  { name: "slow-io", fault: "slow-io", spec: "slow-io:op=read_file;after=1;ms=1500", backends: BOTH, code: null, fatal: false, hint: /./, logKeys: [] },
  { name: "channel-cut", fault: "channel-cut", spec: "channel-cut:op=read_file;after=1", backends: BOTH, code: "GUEST_CHANNEL_LOST", fatal: true, hint: /^sandbox \S+ was lost during read_file .*; create a new sandbox$/, logKeys: ["sandboxId", "callId"] },
  { name: "corrupt-frame", fault: "corrupt-frame", spec: "corrupt-frame:op=read_file;after=1", backends: BOTH, code: "GUEST_PROTOCOL_VIOLATION", fatal: true, hint: /not JSON/, logKeys: ["sandboxId", "callId"] },
  { name: "audit-write", fault: "audit-write", spec: "audit-write", backends: BOTH, code: "IO_ERROR", fatal: false, hint: /cannot write the audit log .*audit\.jsonl/, logKeys: ["tool", "auditId"] },
  { name: "upstream-mcp", fault: "upstream-mcp", spec: "upstream-mcp:op=list_allowed_directories", backends: BOTH, code: "IO_ERROR", fatal: false, hint: /^fs: .*list_allowed_directories failed upstream/, logKeys: ["server", "tool"] },
];

/** On a micro-VM the file tools run in the jail beside it by default: these cells run them in the VM too (channel-cut: the VM's channel, not the jail's). */
for (const f of ["guest-eio", "guest-enospc", "slow-io", "channel-cut", "corrupt-frame"]) {
  const base = FAULT_CELLS.find((c) => c.fault === f);
  if (base) (FAULT_CELLS as FaultCell[]).push({ ...base, name: `${f}@vm-files`, backends: ["microvm"], vmFiles: true });
}

const attemptSchema = z.object({
  ok: z.boolean(),
  ms: z.number(),
  code: z.string().optional(),
  message: z.string().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});
type Attempt = z.infer<typeof attemptSchema>;

const outcomeSchema = z.object({
  faulted: attemptSchema,
  next: attemptSchema,
  fresh: attemptSchema.nullable(),
  info: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  fired: z.record(z.string(), z.number()),
});
type Outcome = z.infer<typeof outcomeSchema>;

async function attempt(fn: () => Promise<unknown>): Promise<Attempt> {
  const t0 = performance.now();
  try {
    await fn();
    return { ok: true, ms: performance.now() - t0 };
  } catch (err) {
    const e = toLuminaGuardError(err);
    return { ok: false, ms: performance.now() - t0, code: e.code, message: e.message, details: JSON.parse(JSON.stringify(e.details)) as Record<string, unknown> };
  }
}

/** A write and a read back on a sandbox: the work the next call must still do. */
async function work(sb: { files: { write: (p: string, d: string) => Promise<unknown>; readText: (p: string) => Promise<string> } }): Promise<void> {
  const text = `fault-bench ${Date.now()}`;
  await sb.files.write("probe.txt", text);
  if ((await sb.files.readText("probe.txt")) !== text) throw new LuminaGuardError("INTERNAL", "read back something else than was written");
}

/**
 * Runs one cell's scenario in this process, with the fault armed from LUMINAGUARD_FAULTS. Called in
 * the child (src/bench/faults-cell.ts); never with faults armed in a process that serves anything.
 */
export async function runCellHere(fault: FaultPoint, backend: BackendName, vmFiles = false): Promise<Outcome> {
  const { Sandbox } = await import("../runtime/sandbox.js");
  const { faultsFired } = await import("../faults/index.js");
  const ws = realpathSync(mkdtempSync(join(tmpdir(), "lg-fault-ws-")));
  const home = realpathSync(mkdtempSync(join(tmpdir(), "lg-fault-home-")));
  const open: Array<{ kill: () => Promise<void> }> = [];
  const create = async (): Promise<Awaited<ReturnType<typeof Sandbox.create>>> => {
    const sb = await Sandbox.create({ backend, workspace: ws, daemon: false, ...(vmFiles ? { fileTools: "guest" as const } : {}) });
    open.push(sb);
    return sb;
  };
  const info: Outcome["info"] = {};
  let faulted: Attempt;
  let next: Attempt;
  let fresh: Attempt | null = null;
  try {
    if (fault === "spawn") {
      faulted = await attempt(create);
      next = await attempt(async () => work(await create()));
    } else if (fault === "restore") {
      let sb: Awaited<ReturnType<typeof create>> | undefined;
      faulted = await attempt(async () => (sb = await create()));
      for (const k of ["start", "restoreFallback"]) if (sb?.info[k] !== undefined) info[k] = sb.info[k] as string;
      next = await attempt(async () => work(sb ?? (await create())));
    } else if (fault === "audit-write") {
      const { ApprovalGate, AuditLog, callbackApprover } = await import("../approval/index.js");
      const sb = await create();
      const gate = new ApprovalGate({ approver: callbackApprover(() => true, "fault-bench"), audit: new AuditLog(join(home, "audit.jsonl")), workspace: ws });
      const gated = async (): Promise<void> => {
        const d = await gate.check({ tool: "write_file", args: { path: "probe.txt", content: "gated" } }, { workspace: ws });
        if (d.decision !== "allow") throw new LuminaGuardError("APPROVAL_DENIED", d.reason);
        await work(sb);
      };
      faulted = await attempt(gated);
      info["actionRanAnyway"] = await sb.files.read("probe.txt").then(() => true, () => false);
      next = await attempt(gated);
    } else if (fault === "upstream-mcp") {
      const { McpClientPool } = await import("../mcp/client/pool.js");
      const server = createRequire(import.meta.url).resolve("@modelcontextprotocol/server-filesystem/dist/index.js");
      const pool = new McpClientPool({ servers: { fs: { command: process.execPath, args: [server, ws] } } });
      open.push({ kill: () => pool.close() });
      faulted = await attempt(() => pool.call("fs", "list_allowed_directories", {}));
      next = await attempt(() => pool.call("fs", "list_allowed_directories", {}));
    } else {
      const sb = await create();
      await work(sb);
      if (fault === "guest-crash") faulted = await attempt(() => sb.commands.run("sleep 5", { timeoutMs: 20_000 }));
      else if (fault === "slow-io" || fault === "corrupt-frame" || fault === "channel-cut") faulted = await attempt(() => sb.files.readText("probe.txt"));
      else faulted = await attempt(() => sb.files.write("probe.txt", "under a fault"));
      next = await attempt(() => work(sb));
      if (!sb.alive || !next.ok) fresh = await attempt(async () => work(await create()));
    }
  } finally {
    for (const s of open) await s.kill().catch(() => undefined);
    rmSync(ws, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
  return { faulted, next, fresh, info, fired: faultsFired() as Record<string, number> };
}

/** One judged cell. */
export interface CellResult {
  name: string;
  fault: FaultPoint;
  backend: BackendName;
  pass: boolean;
  checks: { caught: boolean; code: boolean; log: boolean; message: boolean; recovery: boolean };
  /** Why a check failed, in words. */
  problems: string[];
  code: string | null;
  message: string;
  ms: number;
  recoveryMs: number | null;
}

/** The pino lines a cell's child wrote to stderr (anything else there is kept as text). */
function logLines(stderr: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of stderr.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // Not a log line.
    }
  }
  return out;
}

/** Judges one cell from what its child printed (exported for the tests). */
export function judgeCell(cell: FaultCell, backend: BackendName, run: { exitCode: number | null; timedOut: boolean; stdout: string; stderr: string }): CellResult {
  const problems: string[] = [];
  let outcome: Outcome | undefined;
  const last = run.stdout.trim().split("\n").at(-1) ?? "";
  try {
    outcome = outcomeSchema.parse(JSON.parse(last));
  } catch {
    problems.push(`no outcome from the cell (exit ${String(run.exitCode)}${run.timedOut ? ", killed at its deadline" : ""}): ${run.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  }
  const caught = !run.timedOut && run.exitCode === 0 && outcome !== undefined;
  if (run.timedOut) problems.push("hung: killed at the cell's deadline");
  else if (run.exitCode !== 0) problems.push(`the process crashed (exit ${String(run.exitCode)})`);
  const f = outcome?.faulted;
  const fired = outcome ? (outcome.fired[cell.fault] ?? 0) > 0 : false;
  if (outcome && !fired) problems.push("the fault point was never reached");
  const gotCode = f && !f.ok ? (f.code ?? null) : null;
  const code = fired && gotCode === cell.code;
  if (outcome && !code) problems.push(`expected ${cell.code ?? "success"}, got ${gotCode ?? "success"}`);
  // The line that names the failure: the ids the error carries (a sandbox call) or the component's own names.
  const lines = logLines(run.stderr);
  const ids = { sandboxId: f?.details?.["sandboxId"], callId: f?.details?.["callId"] };
  let log = true;
  if (cell.logKeys.length > 0) {
    const sandboxId = cell.fault === "restore" ? lines.find((l) => /restore failed/.test(String(l["msg"])))?.["sandboxId"] : ids.sandboxId;
    log = lines.some((l) =>
      cell.logKeys.every((k) => {
        if (l[k] === undefined) return false;
        if (k === "sandboxId") return typeof sandboxId === "string" && l[k] === sandboxId;
        if (k === "callId" && ids.callId !== undefined) return l[k] === ids.callId;
        return true;
      }),
    );
    if (!log) problems.push(`no log line with ${cell.logKeys.join(" and ")}${ids.callId !== undefined ? ` (${String(ids.sandboxId)}, ${String(ids.callId)})` : ""}`);
  }
  const text = cell.fault === "restore" ? String(outcome?.info["restoreFallback"] ?? "") : (f?.message ?? "");
  let message = true;
  if (cell.code !== null || cell.fault === "restore") {
    message = text.length >= 15 && !/undefined|\[object /.test(text) && cell.hint.test(text);
    if (!message) problems.push(`message not actionable: ${JSON.stringify(text)}`);
  }
  let recovery = false;
  let recoveryMs: number | null = null;
  if (outcome) {
    if (cell.fault === "restore" && outcome.info["start"] !== "cold") problems.push(`expected a cold-boot fallback, got start=${String(outcome.info["start"])}`);
    if (cell.fault === "slow-io" && (outcome.faulted.ms < 1400 || outcome.faulted.ms > 10_000)) problems.push(`the slow call took ${Math.round(outcome.faulted.ms)} ms, not its 1500 ms delay`);
    if (cell.fault === "audit-write" && outcome.info["actionRanAnyway"] === true) problems.push("the action ran without its audit line");
    if (cell.fatal) {
      const closedFast = !outcome.next.ok && outcome.next.code === "SANDBOX_CLOSED" && outcome.next.ms < 2000;
      if (!closedFast) problems.push(`the next call on the dead sandbox: expected SANDBOX_CLOSED at once, got ${outcome.next.ok ? "success" : `${outcome.next.code ?? "?"} in ${Math.round(outcome.next.ms)} ms`}`);
      recovery = closedFast && outcome.fresh?.ok === true;
      if (outcome.fresh?.ok !== true) problems.push(`a new sandbox did not work: ${outcome.fresh?.code ?? "not tried"} ${outcome.fresh?.message ?? ""}`);
      recoveryMs = outcome.fresh?.ms ?? null;
    } else {
      recovery = outcome.next.ok && (cell.fault !== "restore" || outcome.info["start"] === "cold") && (cell.fault !== "audit-write" || outcome.info["actionRanAnyway"] === false);
      if (!outcome.next.ok) problems.push(`the next call failed: ${outcome.next.code ?? "?"} ${outcome.next.message ?? ""}`);
      recoveryMs = outcome.next.ms;
    }
  }
  const checks = { caught, code, log, message, recovery };
  return {
    name: cell.name,
    fault: cell.fault,
    backend,
    pass: Object.values(checks).every(Boolean),
    checks,
    problems,
    code: gotCode,
    message: text,
    ms: f?.ms ?? 0,
    recoveryMs,
  };
}

/** Runs one cell in a child process with its fault armed; the child is killed (its group) at the deadline. */
export async function runCell(cell: FaultCell, backend: BackendName, deadlineMs = 90_000): Promise<CellResult> {
  const script = fileURLToPath(new URL("./faults-cell.js", import.meta.url));
  const child = spawn(process.execPath, [script, cell.fault, backend, ...(cell.vmFiles ? ["vm-files"] : [])], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LUMINAGUARD_FAULTS: cell.spec, LUMINAGUARD_LOG: "info", LUMINAGUARD_DAEMON: "0" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => {
    if (stderr.length < 4 << 20) stderr += c.toString("utf8");
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, deadlineMs);
  const exitCode = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  clearTimeout(timer);
  return judgeCell(cell, backend, { exitCode, timedOut, stdout, stderr });
}

export interface FaultMatrixOptions {
  backend: BackendName;
  /** Only these faults (default: all that apply to the backend). */
  faults?: readonly FaultPoint[];
  progress?: (label: string, done: number, total: number) => void;
  /** Store the run under .beads/metrics/faults/ (default true). */
  store?: boolean;
}

/** Runs the matrix on one backend, stores it as a `faults` run and returns it with its cells. */
export async function runFaultMatrix(o: FaultMatrixOptions): Promise<{ run: BenchRun; cells: CellResult[]; path: string | undefined }> {
  const started = new Date();
  const cells = FAULT_CELLS.filter((c) => c.backends.includes(o.backend) && (o.faults === undefined || o.faults.includes(c.fault)));
  const results: CellResult[] = [];
  for (const [i, cell] of cells.entries()) {
    o.progress?.(`${cell.name} (${o.backend})`, i, cells.length);
    results.push(await runCell(cell, o.backend));
  }
  o.progress?.("done", cells.length, cells.length);
  const failed = results.filter((r) => !r.pass).length;
  const info: Record<string, string | number | boolean> = { cells: results.length };
  for (const r of results) {
    info[`cell.${r.name}`] = r.pass ? "PASS" : "FAIL";
    info[`cell.${r.name}.errorCode`] = r.code ?? "none";
    for (const [k, v] of Object.entries(r.checks)) info[`cell.${r.name}.${k}`] = v;
  }
  const recovery = results.map((r) => r.recoveryMs).filter((v): v is number => v !== null);
  const run = await createRun({
    scenario: "faults",
    backend: o.backend,
    startedAt: started,
    durationMs: Date.now() - started.getTime(),
    samples: { cells_failed: [failed], cells_passed: [results.length - failed], ...(recovery.length > 0 ? { recovery_ms: recovery } : {}) },
    units: { cells_failed: "", cells_passed: "", recovery_ms: "ms" },
    criteria: [{ name: "every fault cell passes", metric: "cells_failed", stat: "max", op: "<=", target: 0, source: "project" }],
    notes: results.map(
      (r) =>
        `${r.name}: ${r.pass ? "PASS" : "FAIL"} code=${r.code ?? "none"}${r.message ? ` message=${JSON.stringify(r.message.slice(0, 300))}` : ""}${r.problems.length > 0 ? `; ${r.problems.join("; ")}` : ""}`,
    ),
    info,
  });
  const path = o.store === false ? undefined : saveRun(run);
  return { run, cells: results, path };
}

/** The matrix as a table for the terminal (and the report's section). */
export function formatFaultMatrix(cells: readonly CellResult[]): string {
  const rows = [["fault", "backend", "result", "code", "caught", "code ok", "log", "message", "recovery", "recovery ms"]];
  const yn = (b: boolean): string => (b ? "yes" : "NO");
  for (const c of cells) {
    rows.push([c.name, c.backend, c.pass ? "PASS" : "FAIL", c.code ?? "none", yn(c.checks.caught), yn(c.checks.code), yn(c.checks.log), yn(c.checks.message), yn(c.checks.recovery), c.recoveryMs === null ? "-" : String(Math.round(c.recoveryMs))]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  const lines = rows.map((r) => r.map((v, i) => v.padEnd(widths[i] ?? 0)).join("  ").trimEnd());
  for (const c of cells) for (const p of c.problems) lines.push(`  ${c.name} (${c.backend}): ${p}`);
  return lines.join("\n");
}
