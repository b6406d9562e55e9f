// Shared by the agent and approval tests: a private LUMINAGUARD_HOME, workspace snapshots, the CLI, process trees.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const CLI_ENTRY = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

/** A fresh LUMINAGUARD_HOME for this test file (audit log, runs, policy), removed at exit. */
export function useTempHome(): string {
  const home = mkdtempSync(join(tmpdir(), "lg-test-home-"));
  process.env["LUMINAGUARD_HOME"] = home;
  process.on("exit", () => rmSync(home, { recursive: true, force: true }));
  return home;
}

/** Every entry under `dir`: type, mode, size, mtime and content hash (or link target), for byte-identical checks. */
export function snapshotTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    const p = rel === "" ? dir : join(dir, rel);
    const st = lstatSync(p);
    const key = rel === "" ? "." : rel;
    if (st.isSymbolicLink()) out[key] = `link ${readlinkSync(p)}`;
    else if (st.isDirectory()) {
      out[key] = `dir ${st.mode.toString(8)} ${st.mtimeMs}`;
      for (const name of readdirSync(p).sort()) walk(rel === "" ? name : join(rel, name));
    } else out[key] = `file ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`;
  };
  walk("");
  return out;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, LUMINAGUARD_LOG: "error", ...extra };
}

export function runCli(args: string[], o: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI_ENTRY, ...args], {
    encoding: "utf8",
    timeout: o.timeoutMs ?? 180_000,
    env: cliEnv(o.env),
    input: o.input ?? "",
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

import { pidAlive } from "../../src/util/procfs.js";
export { descendants } from "../../src/util/procfs.js";

export function runCliAsync(args: string[], o: { env?: Record<string, string> } = {}): ReturnType<typeof spawn> {
  return spawn(process.execPath, [CLI_ENTRY, ...args], { env: cliEnv(o.env), stdio: ["pipe", "pipe", "pipe"] });
}


/** Live (non-zombie) processes among `pids`. */
export function alive(pids: readonly number[]): number[] {
  return pids.filter(pidAlive);
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function hasCommand(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0;
}

/** Like runCli, but without blocking this process's event loop (needed when this process serves the LLM endpoint). */
export function runCliAwait(args: string[], o: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_ENTRY, ...args], { env: cliEnv(o.env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 180_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
