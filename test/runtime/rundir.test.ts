// The private runtime directory (VM sockets, consoles, our own workspaces): ours alone, or a named error.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, afterEach, beforeEach, describe, test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { runDir } from "../../src/paths.js";
import { createOwnedWorkspace, removeIfOwned } from "../../src/runtime/workspace.js";

const PATHS_MODULE = fileURLToPath(new URL("../../src/paths.js", import.meta.url));
const NOBODY = 65534;
const isRoot = process.geteuid?.() === 0;
const root = mkdtempSync(join(tmpdir(), "lg-rundir-"));
after(() => rmSync(root, { recursive: true, force: true }));

function unsafe(fn: () => unknown, why: RegExp): LuminaGuardError {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof LuminaGuardError)) throw err;
    assert.equal(err.code, "RUNTIME_DIR_UNSAFE", err.message);
    assert.match(err.message, why);
    return err;
  }
  assert.fail("expected RUNTIME_DIR_UNSAFE, but the directory was used");
}

let n = 0;
const fresh = (): string => join(root, `case-${n++}`);

describe("LUMINAGUARD_RUN", () => {
  const saved = process.env["LUMINAGUARD_RUN"];
  beforeEach(() => delete process.env["LUMINAGUARD_RUN"]);
  afterEach(() => {
    if (saved === undefined) delete process.env["LUMINAGUARD_RUN"];
    else process.env["LUMINAGUARD_RUN"] = saved;
  });

  test("missing: created, a directory of ours with mode 0700", () => {
    const dir = join(fresh(), "run");
    process.env["LUMINAGUARD_RUN"] = dir;
    assert.equal(runDir(), dir);
    const st = lstatSync(dir);
    assert.ok(st.isDirectory());
    assert.equal(st.uid, process.geteuid?.());
    assert.equal(st.mode & 0o777, 0o700);
  });

  test("owned by someone else: a named error, and it is left as it is", { skip: !isRoot && "needs root to chown" }, () => {
    const dir = fresh();
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, NOBODY, NOBODY);
    process.env["LUMINAGUARD_RUN"] = dir;
    unsafe(() => runDir(), /owned by uid 65534/);
    assert.equal(lstatSync(dir).uid, NOBODY, "never chowned into shape");
    unsafe(() => createOwnedWorkspace(), /owned by uid 65534/);
    assert.deepEqual(readdirSync(dir), [], "nothing created in it");
  });

  test("a symlink in its place, even to a good directory of ours: a named error, never followed", () => {
    const target = fresh();
    mkdirSync(target, { mode: 0o700 });
    const link = fresh();
    symlinkSync(target, link);
    process.env["LUMINAGUARD_RUN"] = link;
    unsafe(() => runDir(), /symbolic link/);
    unsafe(() => createOwnedWorkspace(), /symbolic link/);
    assert.deepEqual(readdirSync(target), []);
  });

  test("mode 0777 (or group/other bits at all): a named error that says how to fix it; the mode is not changed", () => {
    const dir = fresh();
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    process.env["LUMINAGUARD_RUN"] = dir;
    const e = unsafe(() => runDir(), /mode 0?777/);
    assert.match(e.message, /chmod 700/);
    assert.equal(lstatSync(dir).mode & 0o777, 0o777);
    chmodSync(dir, 0o750);
    unsafe(() => runDir(), /mode 0?750/);
  });

  test("a file in its place", () => {
    const file = fresh();
    spawnSync("touch", [file]);
    process.env["LUMINAGUARD_RUN"] = file;
    unsafe(() => runDir(), /not a directory/);
  });

  test("inside a directory anyone can write to (no sticky bit): someone else could swap it", () => {
    const open = fresh();
    mkdirSync(open);
    chmodSync(open, 0o777);
    process.env["LUMINAGUARD_RUN"] = join(open, "run");
    unsafe(() => runDir(), /writable by others/);
  });

  test("subdirectories: a workspaces dir that is not ours, a symlink, or open is refused, not chmod'ed", async () => {
    const dir = fresh();
    mkdirSync(dir, { mode: 0o700 });
    process.env["LUMINAGUARD_RUN"] = dir;
    const ws = join(dir, "workspaces");

    mkdirSync(ws, { mode: 0o777 });
    chmodSync(ws, 0o777);
    unsafe(() => createOwnedWorkspace(), /workspaces.*mode 0?777/s);
    assert.equal(lstatSync(ws).mode & 0o777, 0o777);
    rmSync(ws, { recursive: true });

    if (isRoot) {
      mkdirSync(ws, { mode: 0o700 });
      chownSync(ws, NOBODY, NOBODY);
      unsafe(() => createOwnedWorkspace(), /owned by uid 65534/);
      assert.equal(lstatSync(ws).uid, NOBODY);
      assert.deepEqual(readdirSync(ws), []);
      rmSync(ws, { recursive: true });
    }

    const elsewhere = fresh();
    mkdirSync(elsewhere, { mode: 0o700 });
    symlinkSync(elsewhere, ws);
    unsafe(() => createOwnedWorkspace(), /symbolic link/);
    assert.deepEqual(readdirSync(elsewhere), []);
    rmSync(ws);

    // And when all is well: a fresh 0700 directory of ours, inside a verified 0700 workspaces dir.
    const good = createOwnedWorkspace();
    assert.equal(lstatSync(ws).mode & 0o777, 0o700);
    assert.equal(lstatSync(good.path).mode & 0o777, 0o700);
    await removeIfOwned(good);
  });
});

/** runDir() in a fresh process with exactly `env`, optionally as another uid; returns its path and what it saw. */
function childRunDir(env: NodeJS.ProcessEnv, uid?: number): { dir: string; mode: number; uid: number } {
  const script = `import(${JSON.stringify(PATHS_MODULE)}).then(async (m) => { const fs = await import("node:fs"); const d = m.runDir(); const st = fs.lstatSync(d); process.stdout.write(JSON.stringify({ dir: d, mode: st.mode & 0o7777, uid: st.uid })); })`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env },
    encoding: "utf8",
    ...(uid === undefined ? {} : { uid, gid: uid }),
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { dir: string; mode: number; uid: number };
}

describe("the default place", () => {
  test("without XDG_RUNTIME_DIR, as an ordinary user: a fresh 0700 temporary directory, removed at exit", { skip: !isRoot && "needs root to run as another uid" }, () => {
    // Its own sticky temp dir, like /tmp: the test's other directories are 0700, closed to nobody.
    const tmp = mkdtempSync(join(tmpdir(), "lg-rundir-tmp-"));
    try {
      chmodSync(tmp, 0o1777);
      const a = childRunDir({ TMPDIR: tmp }, NOBODY);
      const b = childRunDir({ TMPDIR: tmp }, NOBODY);
      assert.notEqual(a.dir, b.dir, "not a predictable shared path");
      assert.match(a.dir, new RegExp(`^${tmp}/luminaguard-${NOBODY}-[A-Za-z0-9]{6}$`));
      assert.equal(a.mode, 0o700);
      assert.equal(a.uid, NOBODY);
      assert.ok(!existsSync(a.dir) && !existsSync(b.dir), "removed when the process exits");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("as root without XDG_RUNTIME_DIR: /run/luminaguard (its parent is root's alone)", { skip: !isRoot && "root only" }, () => {
    const r = childRunDir({});
    assert.equal(r.dir, "/run/luminaguard");
    assert.equal(r.mode, 0o700);
    assert.equal(r.uid, 0);
  });

  test("XDG_RUNTIME_DIR of ours with mode 0700: $XDG_RUNTIME_DIR/luminaguard; somebody else's (sudo kept it): not used", { skip: !isRoot && "needs root to chown" }, () => {
    const xdg = fresh();
    mkdirSync(xdg, { mode: 0o700 });
    assert.equal(childRunDir({ XDG_RUNTIME_DIR: xdg }).dir, join(xdg, "luminaguard"));
    const theirs = fresh();
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, NOBODY, NOBODY);
    const r = childRunDir({ XDG_RUNTIME_DIR: theirs });
    assert.ok(!r.dir.startsWith(theirs), r.dir);
    assert.deepEqual(readdirSync(theirs), []);
  });
});
