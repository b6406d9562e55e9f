// Helpers for the namespace backend tests: real bwrap sandboxes running a test's command, and cleanup.
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killGroup } from "../../../src/util/proc.js";
import { ensureAgent } from "../../../src/image/agent.js";
import type { BackendProbe } from "../../../src/sandbox/types.js";
import { SandboxCgroup, probeCgroups } from "../../../src/sandbox/namespace/cgroup.js";
import { launch } from "../../../src/sandbox/namespace/launch.js";

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Skips (or fails, when CI requires this backend) if bwrap or the agent cannot run here. */
export async function namespaceSkip(probe: BackendProbe): Promise<string | false> {
  const required = (process.env["LUMINAGUARD_REQUIRE_BACKENDS"] ?? "").split(",").includes("namespace");
  let reason: string | undefined;
  if (!probe.available) reason = `namespace backend unavailable: ${probe.reason ?? "?"}`;
  else {
    try {
      await ensureAgent();
    } catch (err) {
      reason = `guest agent does not build: ${(err as Error).message.slice(0, 300)}`;
    }
  }
  if (reason === undefined) return false;
  if (required) throw new Error(reason);
  process.stderr.write(`SKIP: ${reason}\n`);
  return reason;
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
}

import { liveStartTime } from "../../../src/util/procfs.js";

export { pidAlive as alive } from "../../../src/util/procfs.js";

/** Processes by pid and start time: a pid alone may name another process once pids wrap (pid_max 32768 here). */
export interface ProcessRef {
  pid: number;
  start: string | undefined;
}

export function processRefs(pids: readonly number[]): ProcessRef[] {
  return pids.map((pid) => ({ pid, start: liveStartTime(pid) }));
}

/** The pids of these very processes that still run (a live process with the same pid and start time). */
export function stillRunning(refs: readonly ProcessRef[]): number[] {
  return refs.filter((r) => r.start !== undefined && liveStartTime(r.pid) === r.start).map((r) => r.pid);
}

export async function waitFor(cond: () => boolean, timeoutMs: number, stepMs = 10): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}

export interface SandboxRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  initPid: number | undefined;
  cgroupDirs: readonly string[];
  timedOut: boolean;
}

/** Everything the tests started, killed in `after` hooks even when a test failed midway. */
const live = new Set<{ bwrap: ChildProcess; cgroup: SandboxCgroup | undefined; initPid?: number }>();

export async function killAllStarted(): Promise<void> {
  for (const entry of [...live]) {
    if (entry.initPid !== undefined) {
      try {
        process.kill(entry.initPid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    killGroup(entry.bwrap);
    await entry.cgroup?.destroy().catch(() => undefined);
    live.delete(entry);
  }
}

/**
 * Runs `command` in a real namespace sandbox exactly as the backend builds it (same bwrap flags,
 * seccomp, cgroup placement), with the test's command in place of the agent.
 */
export async function runSandboxed(
  command: readonly string[],
  options: {
    memoryMiB?: number;
    pidsMax?: number;
    cgroup?: boolean;
    workspace?: string;
    timeoutMs?: number;
    /** Called once the sandbox runs inside its cgroup. */
    onReady?: (initPid: number, cgroup: SandboxCgroup | undefined) => void;
    /** Called after the sandbox exited, just before its cgroup is removed. */
    beforeDestroy?: (cgroup: SandboxCgroup | undefined) => void;
  } = {},
): Promise<SandboxRun> {
  const id = uniqueId("lgt");
  const ws = options.workspace === undefined ? tempDir("lg-ns-ws-") : undefined;
  const workspace = options.workspace ?? (ws as { dir: string }).dir;
  const memoryMiB = options.memoryMiB ?? 256;
  const useCgroup = (options.cgroup ?? true) && probeCgroups().usable;
  const cgroup = useCgroup ? SandboxCgroup.create(id, { memoryMiB, pidsMax: options.pidsMax ?? 256 }) : undefined;
  const launched = launch({ id, workspace, agentPath: "/usr/bin/true", memoryMiB, cgroup, command });
  const entry: { bwrap: ChildProcess; cgroup: SandboxCgroup | undefined; initPid?: number } = { bwrap: launched.bwrap, cgroup };
  live.add(entry);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  launched.bwrap.stdout?.on("data", (d: Buffer) => out.push(d));
  launched.bwrap.stderr?.on("data", (d: Buffer) => err.push(d));
  launched.bwrap.stdin?.end();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (entry.initPid !== undefined) {
      try {
        process.kill(entry.initPid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    killGroup(launched.bwrap);
  }, options.timeoutMs ?? 20_000);
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    launched.bwrap.on("close", (code, signal) => resolve({ code, signal })),
  );
  try {
    entry.initPid = await launched.ready;
    options.onReady?.(entry.initPid, cgroup);
  } catch {
    /* bwrap failed: its exit status and stderr say why */
  }
  const { code, signal } = await closed;
  clearTimeout(timer);
  const cgroupDirs = cgroup?.dirs ?? [];
  options.beforeDestroy?.(cgroup);
  await cgroup?.destroy();
  live.delete(entry);
  ws?.remove();
  return {
    code,
    signal,
    stdout: Buffer.concat(out).toString("utf8"),
    stderr: Buffer.concat(err).toString("utf8"),
    initPid: entry.initPid,
    cgroupDirs,
    timedOut,
  };
}

export function noneExist(paths: readonly string[]): boolean {
  return paths.every((p) => !existsSync(p));
}
