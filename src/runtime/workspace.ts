// Workspaces LuminaGuard creates itself (in the private runtime directory, since a sandbox can chmod
// its own workspace open), and user-given ones, which pass the one workspace check.
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { readdir, realpath, unlink } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { runSubdir } from "../paths.js";
import { checkWorkspaceOnce, type WorkspaceCheck } from "../sandbox/workspace.js";
import { recordCreated } from "./created.js";
import { LimitedWorkspace, type DiskLimit } from "./disk.js";

export interface Workspace {
  path: string;
  /** Created by us, removed with the sandbox. */
  owned: boolean;
  /** A size-limited filesystem mounted on it (owned workspaces, run as root): unmounted before removal. */
  limited?: LimitedWorkspace;
  /** A user-given workspace's check, for the backend to take instead of repeating it (SandboxSpec.checked). */
  checked?: WorkspaceCheck;
}

export function createOwnedWorkspace(): Workspace {
  // runSubdir: a 0700 directory of ours, or RUNTIME_DIR_UNSAFE; mkdtemp: a fresh 0700 name in it.
  const parent = runSubdir("workspaces");
  let path: string;
  try {
    path = realpathSync(mkdtempSync(join(parent, "ws-")));
  } catch (err) {
    // A full runtime filesystem is a named NO_SPACE (nothing was created), never a bare ENOSPC.
    const code = (err as NodeJS.ErrnoException).code;
    throw new LuminaGuardError(code === "ENOSPC" || code === "EDQUOT" ? "NO_SPACE" : "IO_ERROR", `cannot create a workspace in ${parent}: ${(err as Error).message}`, { cause: err });
  }
  recordCreated(path);
  return { path, owned: true };
}

let warnedFallback = false;

/**
 * An owned workspace whose disk use the kernel bounds when it can (a loop-mounted ext4 of `limit`,
 * see LimitedWorkspace); otherwise a plain one, which the sandbox watches (DiskGuard).
 */
async function createLimitedWorkspace(limit: DiskLimit): Promise<Workspace> {
  const ws = createOwnedWorkspace();
  if (!LimitedWorkspace.supported()) return ws;
  try {
    return { ...ws, limited: await LimitedWorkspace.create(ws.path, limit) };
  } catch (err) {
    const e = toLuminaGuardError(err);
    if (e.code === "NO_SPACE") {
      await removeIfOwned(ws);
      throw e;
    }
    // Loop devices that exist but cannot be used (a container without the capability, none free):
    // the watched limit still holds, and the sandbox's info says which one it got.
    if (!warnedFallback) {
      warnedFallback = true;
      log.warn({ err: e.message }, "cannot mount a size-limited workspace; falling back to a watched disk limit");
    }
    return ws;
  }
}

/** A user-given workspace: checked (see checkWorkspace) and used through its real path. */
export function userWorkspace(dir: string): Workspace {
  const checked = checkWorkspaceOnce(dir);
  return { path: checked.real, owned: false, checked };
}

/** The user's directory when given, else a fresh owned one, size-limited by the kernel when possible. */
export async function workspaceFor(dir: string | undefined, limit: DiskLimit): Promise<Workspace> {
  return dir === undefined ? await createLimitedWorkspace(limit) : userWorkspace(dir);
}

/** Unmounts and deletes a size-limited filesystem, then removes an owned directory. Call after the sandbox is gone. */
export async function removeIfOwned(ws: Workspace): Promise<void> {
  if (ws.limited) {
    await ws.limited.remove();
    // Never delete through a mount that is still there: that would empty the filesystem and fail anyway.
    if (ws.limited.mounted()) {
      log.error({ path: ws.path, image: ws.limited.image }, "size-limited workspace is still mounted; left in place");
      return;
    }
  }
  if (ws.owned) rmSync(ws.path, { recursive: true, force: true });
}

/** The name the agent gives a write_file temp file just before its rename (guest-agent/readwrite.c, tmp_name). */
const WRITE_TEMP = /^\.lg-[0-9a-f]{16}\.tmp$/;

/**
 * After a sandbox died during a write_file to `path`: removes the write's temp file from the target's
 * directory. The agent writes an unnamed file and names it only just before the rename, so a kill in
 * that window (or one on a filesystem without O_TMPFILE) leaves a `.lg-<16 hex>.tmp`. Only names of
 * that exact form, only in that one directory, and only when it resolves inside the workspace (the
 * guest may have swapped a directory for a symlink). Call it once the sandbox's processes are gone.
 * Returns what it removed; failures are logged, never thrown (the call has already failed).
 */
export async function sweepWriteTemps(workspace: string, path: string): Promise<string[]> {
  const rel = isAbsolute(path) ? relative("/workspace", path) : path;
  if (rel.startsWith("..") || isAbsolute(rel)) return [];
  const removed: string[] = [];
  try {
    const root = await realpath(workspace);
    const dir = await realpath(join(root, dirname(rel)));
    if (dir !== root && !dir.startsWith(root + sep)) return [];
    for (const name of await readdir(dir)) {
      if (!WRITE_TEMP.test(name)) continue;
      await unlink(join(dir, name)).then(
        () => removed.push(join(dir, name)),
        () => undefined,
      );
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") log.warn({ workspace, path, err: String(err) }, "cannot sweep a write's temp file");
  }
  if (removed.length) log.info({ workspace, removed }, "removed the temp file of a write the sandbox died during");
  return removed;
}
