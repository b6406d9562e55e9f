// Workspaces LuminaGuard creates itself: in the private runtime directory, since a sandbox can chmod its own workspace open.
import { mkdtempSync, realpathSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { runSubdir } from "../paths.js";

export interface Workspace {
  path: string;
  /** Created by us, removed with the sandbox. */
  owned: boolean;
}

export function createOwnedWorkspace(): Workspace {
  // runSubdir: a 0700 directory of ours, or RUNTIME_DIR_UNSAFE; mkdtemp: a fresh 0700 name in it.
  return { path: realpathSync(mkdtempSync(join(runSubdir("workspaces"), "ws-"))), owned: true };
}

/** A user-given workspace must exist and be a directory; it is used through its real path. */
export function userWorkspace(dir: string): Workspace {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new LuminaGuardError("NOT_FOUND", `workspace ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new LuminaGuardError("NOT_A_DIRECTORY", `workspace ${dir} is not a directory`);
  return { path: realpathSync(dir), owned: false };
}

export function removeIfOwned(ws: Workspace): void {
  if (ws.owned) rmSync(ws.path, { recursive: true, force: true });
}
