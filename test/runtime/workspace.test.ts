// Workspaces as the SDK, CLI and MCP server take them: user-given ones pass the one workspace check, our own are allowed.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { runDir } from "../../src/paths.js";
import { createOwnedWorkspace, removeIfOwned, userWorkspace } from "../../src/runtime/workspace.js";
import { checkWorkspace } from "../../src/sandbox/workspace.js";

const root = mkdtempSync(join(tmpdir(), "lg-rtws-"));
const savedRun = process.env["LUMINAGUARD_RUN"];
process.env["LUMINAGUARD_RUN"] = join(root, "run");
after(() => {
  if (savedRun === undefined) delete process.env["LUMINAGUARD_RUN"];
  else process.env["LUMINAGUARD_RUN"] = savedRun;
  rmSync(root, { recursive: true, force: true });
});

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof LuminaGuardError) return err.code;
    throw err;
  }
  return "accepted";
}

test("userWorkspace refuses the home, a symlink to /, and the run dir; takes a project through its real path", () => {
  assert.equal(code(() => userWorkspace(userInfo().homedir)), "WORKSPACE_FORBIDDEN");
  const link = join(root, "a,path=");
  symlinkSync("/", link);
  assert.equal(code(() => userWorkspace(link)), "WORKSPACE_FORBIDDEN");
  assert.equal(code(() => userWorkspace(join(root, "missing"))), "NOT_FOUND");
  const proj = join(root, "proj, \"x\"=y:z");
  mkdirSync(proj);
  const ws = userWorkspace(proj);
  assert.deepEqual({ path: ws.path, owned: ws.owned }, { path: realpathSync(proj), owned: false });
  // Its check goes with it, for the backend to take instead of repeating it.
  assert.equal(ws.checked?.real, realpathSync(proj));
});

test("our own workspaces pass the check; the run dir, its workspaces parent and a VM's dir do not", async () => {
  const ws = createOwnedWorkspace();
  try {
    assert.equal(checkWorkspace(ws.path), ws.path);
    const run = runDir();
    assert.equal(dirname(dirname(ws.path)), realpathSync(run));
    assert.equal(code(() => checkWorkspace(run)), "WORKSPACE_FORBIDDEN");
    assert.equal(code(() => checkWorkspace(join(run, "workspaces"))), "WORKSPACE_FORBIDDEN");
    mkdirSync(join(run, "vm-other"), { mode: 0o700 });
    assert.equal(code(() => checkWorkspace(join(run, "vm-other"))), "WORKSPACE_FORBIDDEN");
    assert.equal(code(() => checkWorkspace(root)), "WORKSPACE_FORBIDDEN", "a directory containing the run dir");
  } finally {
    await removeIfOwned(ws);
  }
});
