// Where the daemon's Unix socket is, found the same way by the daemon and by every client.
import { lstatSync } from "node:fs";
import { join, resolve } from "node:path";
import { homeDir } from "../paths.js";

export const SOCKET_ENV = "LUMINAGUARD_SOCKET";
/** `0` (or `false`, `off`, `no`): never use a daemon, run in-process. */
export const DAEMON_ENV = "LUMINAGUARD_DAEMON";
export const SOCKET_NAME = "luminaguard.sock";
/** The bearer token of the daemon's TCP listener (`serve --listen`), for the daemon and its clients. */
export const DAEMON_TOKEN_ENV = "LUMINAGUARD_DAEMON_TOKEN";
/** The daemon's loopback TCP listener (`http://127.0.0.1:PORT`), used by clients instead of the socket when set. */
export const DAEMON_URL_ENV = "LUMINAGUARD_DAEMON_URL";

function euid(): number {
  return process.geteuid?.() ?? -1;
}

/** XDG_RUNTIME_DIR when it is what the spec promises: ours, a directory, mode 0700. */
function xdgRuntimeDir(): string | undefined {
  const xdg = process.env["XDG_RUNTIME_DIR"];
  if (xdg === undefined || !xdg.startsWith("/")) return undefined;
  try {
    const st = lstatSync(xdg);
    return st.isDirectory() && st.uid === euid() && (st.mode & 0o077) === 0 ? xdg : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `$LUMINAGUARD_SOCKET`; else `$XDG_RUNTIME_DIR/luminaguard.sock`; else in the fixed private runtime
 * directory (`$LUMINAGUARD_RUN`, `/run/luminaguard` for root); else `$LUMINAGUARD_HOME/luminaguard.sock`
 * (a per-process temporary runtime directory cannot be found by another process).
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const override = env[SOCKET_ENV];
  if (override !== undefined && override !== "") return resolve(override);
  const xdg = xdgRuntimeDir();
  if (xdg !== undefined) return join(xdg, SOCKET_NAME);
  const run = env["LUMINAGUARD_RUN"];
  if (run !== undefined && run !== "") return join(resolve(run), SOCKET_NAME);
  if (euid() === 0) return join("/run/luminaguard", SOCKET_NAME);
  return join(homeDir(), SOCKET_NAME);
}

/** Whether the environment turns the daemon off (`LUMINAGUARD_DAEMON=0`). */
export function daemonDisabledByEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env[DAEMON_ENV] ?? "").trim().toLowerCase();
  return v === "0" || v === "false" || v === "off" || v === "no";
}
