// Where LuminaGuard keeps its cache (guest images, snapshots, probes) and its state (audit log, config).
import { homedir } from "node:os";
import { join } from "node:path";

/** Guest images, kernel builds, snapshots and probe results. Override with LUMINAGUARD_CACHE. */
export function cacheDir(): string {
  return process.env["LUMINAGUARD_CACHE"] ?? join(homedir(), ".cache", "luminaguard");
}

/** Audit log and config, outside any workspace. Override with LUMINAGUARD_HOME. */
export function homeDir(): string {
  return process.env["LUMINAGUARD_HOME"] ?? join(homedir(), ".luminaguard");
}

/** Per-sandbox runtime files (sockets, logs); removed with each sandbox. */
export function runDir(): string {
  return process.env["LUMINAGUARD_RUN"] ?? join(process.env["XDG_RUNTIME_DIR"] ?? "/tmp", "luminaguard");
}
