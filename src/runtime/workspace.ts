// Workspaces LuminaGuard creates itself (in the private runtime directory, since a sandbox can chmod
// its own workspace open), and user-given ones, which pass the one workspace check.
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runSubdir } from "../paths.js";
import { checkWorkspace } from "../sandbox/workspace.js";

export interface Workspace {
  path: string;
  /** Created by us, removed with the sandbox. */
  owned: boolean;
}

export function createOwnedWorkspace(): Workspace {
  // runSubdir: a 0700 directory of ours, or RUNTIME_DIR_UNSAFE; mkdtemp: a fresh 0700 name in it.
  return { path: realpathSync(mkdtempSync(join(runSubdir("workspaces"), "ws-"))), owned: true };
}

/** A user-given workspace: checked (see checkWorkspace) and used through its real path. */
export function userWorkspace(dir: string): Workspace {
  return { path: checkWorkspace(dir), owned: false };
}

export function removeIfOwned(ws: Workspace): void {
  if (ws.owned) rmSync(ws.path, { recursive: true, force: true });
}
