// Test fixtures: real sandboxes on real backends, temp workspaces, and a clear skip when a backend cannot run here.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { probeBackend } from "../src/runtime/backends.js";
import { Sandbox, type SandboxApi, type SandboxOptions } from "../src/runtime/sandbox.js";
import { LuminaGuardError } from "../src/errors.js";
import type { BackendName, SandboxHandle } from "../src/sandbox/types.js";

export const BACKENDS: readonly BackendName[] = ["microvm", "namespace"];

/**
 * Why `backend` cannot run here, or undefined when it can. CI sets LUMINAGUARD_REQUIRE_BACKENDS so
 * that an unavailable backend fails the run instead of skipping silently.
 */
export async function unavailable(backend: BackendName): Promise<string | undefined> {
  const probe = await probeBackend(backend);
  if (probe.available) return undefined;
  const required = (process.env["LUMINAGUARD_REQUIRE_BACKENDS"] ?? "").split(",").includes(backend);
  if (required) throw new Error(`${backend} is required here but unavailable: ${probe.reason ?? "?"}`);
  const reason = `${backend} backend unavailable: ${probe.reason ?? "?"}`;
  process.stderr.write(`SKIP: ${reason}\n`);
  return reason;
}

export function tempWorkspace(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "lg-test-ws-"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A real sandbox for one test, killed (and its workspace removed) when the test ends, pass or fail. */
export async function sandboxFor(t: TestContext, backend: BackendName, options: Omit<SandboxOptions, "backend"> = {}): Promise<{ sandbox: SandboxApi; workspace: string }> {
  const ws = options.workspace ? undefined : tempWorkspace();
  const workspace = options.workspace ?? (ws as { dir: string }).dir;
  const sandbox = await Sandbox.create({ ...options, backend, workspace });
  t.after(async () => {
    await sandbox.kill();
    ws?.remove();
  });
  return { sandbox, workspace };
}

export async function waitFor(cond: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}


/** SIGKILLs each pid that is still there: killing one part of a sandbox may take the others down first. */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
}

/** Awaits `p` and expects it to reject with a LuminaGuardError of `code`; returns that error. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<LuminaGuardError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof LuminaGuardError, `expected a LuminaGuardError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return err;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

export interface ExecResult {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs argv through a sandbox's guest channel directly (below the SDK), collecting its output. */
export async function execOn(sb: SandboxHandle, argv: string[], timeoutMs = 10_000): Promise<ExecResult> {
  let stdout = "";
  let stderr = "";
  const r = await sb.channel.request(
    "execute_command",
    { argv, timeoutMs, maxOutputBytes: 1 << 20 },
    {
      deadlineMs: timeoutMs + 10_000,
      maxStreamBytes: 1 << 20,
      onEvent: (stream, data) => {
        if (stream === "stdout") stdout += data.toString("utf8");
        else stderr += data.toString("utf8");
      },
    },
  );
  return { exitCode: r.exitCode, signal: r.signal, stdout, stderr };
}

/** A new temporary directory named by environment variable `name` for the test; removed after it, the variable restored. */
export function privateEnvDir(t: TestContext, name: string, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const saved = process.env[name];
  process.env[name] = dir;
  t.after(() => {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Benchmark results of a test go to a directory of its own, removed after it; the environment is restored. */
export function privateMetricsDir(t: TestContext): string {
  return privateEnvDir(t, "LUMINAGUARD_METRICS_DIR", "lg-test-metrics-");
}
