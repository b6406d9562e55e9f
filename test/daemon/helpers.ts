// A real daemon for a test: `luminaguard serve` as a child process on a private socket, runtime and home directory.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";

export const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

export interface TestDaemon {
  child: ChildProcess;
  pid: number;
  socket: string;
  /** The daemon's private runtime directory (LUMINAGUARD_RUN) and home (audit log). */
  run: string;
  home: string;
  env: NodeJS.ProcessEnv;
  stderr: () => string;
  /** Sends SIGTERM and resolves with the exit code once the process is gone. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
  /** Removes its directories (after stop). */
  remove: () => void;
  exited: Promise<number | null>;
}

/** A private directory for one test's daemon: socket, runtime directory, home. */
export function daemonDirs(): { root: string; socket: string; run: string; home: string; remove: () => void } {
  const root = mkdtempSync(join(tmpdir(), "lg-daemon-test-"));
  const run = join(root, "run");
  const home = join(root, "home");
  mkdirSync(run, { mode: 0o700 });
  mkdirSync(home, { mode: 0o700 });
  return { root, socket: join(root, "d.sock"), run, home, remove: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * Starts `luminaguard serve` and waits until /healthz answers. Stopped (SIGTERM, then SIGKILL if it hangs)
 * when the test ends, its directories removed.
 */
export async function startTestDaemon(
  t: TestContext | undefined,
  args: string[] = [],
  o: { dirs?: ReturnType<typeof daemonDirs>; env?: NodeJS.ProcessEnv; keepDirs?: boolean } = {},
): Promise<TestDaemon> {
  const dirs = o.dirs ?? daemonDirs();
  const env: NodeJS.ProcessEnv = { ...process.env, LUMINAGUARD_RUN: dirs.run, LUMINAGUARD_HOME: dirs.home, LUMINAGUARD_LOG: "info", ...o.env };
  delete env["LUMINAGUARD_SOCKET"];
  const child = spawn(process.execPath, [MAIN, "serve", "--socket", dirs.socket, ...args], { env, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr?.on("data", (c: Buffer) => {
    err += c.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  const stop = async (signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> => {
    if (!gone) child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  t?.after(async () => {
    await stop();
    if (!o.keepDirs) dirs.remove();
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (gone) throw new Error(`the daemon exited before it answered:\n${err}`);
    if (await healthy(dirs.socket)) break;
    if (Date.now() > deadline) {
      await stop("SIGKILL");
      throw new Error(`the daemon did not answer within 60 s:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, pid: child.pid as number, socket: dirs.socket, run: dirs.run, home: dirs.home, env, stderr: () => err, stop, exited, remove: dirs.remove };
}

function healthy(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path: "/healthz", method: "GET" }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once("error", () => resolve(false));
    req.end();
  });
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => unknown;
}

/** One HTTP request to the daemon's socket (or a TCP URL). */
export function http(target: { socket: string } | { url: string }, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  const text = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  const base = "socket" in target ? { socketPath: target.socket } : { host: new URL(target.url).hostname, port: Number(new URL(target.url).port) };
  return new Promise((resolve, reject) => {
    const req = request({ ...base, method, path, headers: { ...(text !== undefined ? { "content-type": "application/json" } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("end", () => {
        const t = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: t, json: () => JSON.parse(t) as unknown });
      });
    });
    req.once("error", reject);
    req.end(text);
  });
}
