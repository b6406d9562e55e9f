// Where LuminaGuard keeps its cache (guest images, snapshots, probes), its state (audit log, config)
// and its runtime files (VM sockets and consoles, workspaces it creates itself).
import { lstatSync, mkdirSync, mkdtempSync, realpathSync, rmSync, type Stats } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { LuminaGuardError } from "./errors.js";

/** Guest images, kernel builds, snapshots and probe results. Override with LUMINAGUARD_CACHE. */
export function cacheDir(): string {
  return process.env["LUMINAGUARD_CACHE"] ?? join(homedir(), ".cache", "luminaguard");
}

/** Audit log and config, outside any workspace. Override with LUMINAGUARD_HOME. */
export function homeDir(): string {
  return process.env["LUMINAGUARD_HOME"] ?? join(homedir(), ".luminaguard");
}

/** Name prefix of the per-process runtime directories in the temp dir (followed by the uid and a random part). */
export const RUN_DIR_TEMP_PREFIX = "luminaguard-";

// The runtime directory holds the sockets that drive every VM (QMP, the agent channel) and the
// workspaces we create: whoever can write there can plant a symlink or a socket of their own and
// talk to a guest, or to us, in its name. So it must be ours alone, and a shared, predictable name
// in a world-writable directory (the old /tmp/luminaguard) is not: another user creates it first.

const RUN_FIX = "remove it (as its owner), or point LUMINAGUARD_RUN at a directory of yours with mode 0700";

function euid(): number {
  return process.geteuid?.() ?? -1;
}

function unsafe(message: string): LuminaGuardError {
  return new LuminaGuardError("RUNTIME_DIR_UNSAFE", message);
}

/** lstat without following, or undefined when nothing is there. */
function lstatOrNone(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw unsafe(`cannot inspect runtime directory ${path}: ${(err as Error).message}`);
  }
}

/** Why `st` (from lstat of `path`) is not a directory private to us, or undefined if it is. */
function privateDirProblem(path: string, st: Stats): string | undefined {
  if (st.isSymbolicLink()) return `${path} is a symbolic link; LuminaGuard never follows one there`;
  if (!st.isDirectory()) return `${path} is not a directory`;
  if (st.uid !== euid()) return `${path} is owned by uid ${st.uid}, not by us (uid ${euid()}): its owner controls what is in it`;
  const mode = st.mode & 0o7777;
  if ((mode & 0o077) !== 0) return `${path} has mode 0${mode.toString(8)}: others can reach into it (chmod 700 ${path} if it is yours)`;
  return undefined;
}

/** `dir` and every directory above it, up to /. */
function upTo(dir: string): string[] {
  const out = [dir];
  while (dirname(dir) !== dir) out.push((dir = dirname(dir)));
  return out;
}

/**
 * Every directory above `path` (as written, and after resolving symlinks) must be one only we or root
 * can change, or sticky like /tmp: otherwise someone else could rename our directory away and put
 * theirs in its place after we checked it. That is also what makes checking once per process enough.
 */
function checkAncestors(path: string): void {
  const above = upTo(dirname(path));
  try {
    above.push(...upTo(realpathSync(dirname(path))));
  } catch {
    /* the parent does not exist (any more): the caller's lstat of `path` fails on its own */
  }
  for (const dir of new Set(above)) {
    const st = lstatOrNone(dir);
    if (st === undefined) continue;
    if (st.uid !== 0 && st.uid !== euid()) throw unsafe(`runtime directory ${path} lies in ${dir}, owned by uid ${st.uid}, who could replace it; ${RUN_FIX}`);
    // A symlink's own mode means nothing; what it points to is in the resolved chain.
    if (!st.isSymbolicLink() && (st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      throw unsafe(
        `runtime directory ${path} lies in ${dir} (mode 0${(st.mode & 0o7777).toString(8)}), writable by others without the sticky bit, who could replace it; ${RUN_FIX}`,
      );
    }
  }
}

/** Creates `path` (mode 0700) if missing, then makes sure it is a directory of ours that nobody else can enter. */
function ensurePrivateDir(path: string, what: string, createParents: boolean): Stats {
  if (lstatOrNone(path) === undefined) {
    try {
      if (createParents) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      mkdirSync(path, { mode: 0o700 });
    } catch (err) {
      // EEXIST: someone made it between our look and our mkdir; the lstat below judges it.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOSPC" || code === "EDQUOT") throw new LuminaGuardError("NO_SPACE", `cannot create ${what} ${path}: ${(err as Error).message}`, { cause: err });
      if (code !== "EEXIST") throw unsafe(`cannot create ${what} ${path}: ${(err as Error).message}`);
    }
  }
  const st = lstatSync(path);
  const problem = privateDirProblem(path, st);
  if (problem !== undefined) throw unsafe(`${what} ${problem}; ${RUN_FIX}`);
  return st;
}

/** Whether `dir` (XDG_RUNTIME_DIR) is what the XDG spec promises: a directory of ours with mode 0700. */
function isOwnPrivateDir(dir: string): boolean {
  try {
    return privateDirProblem(dir, lstatSync(dir)) === undefined;
  } catch {
    return false;
  }
}

/** Whether /run is root's alone, so that /run/luminaguard cannot be taken by anyone else first. */
function runIsRootOnly(): boolean {
  try {
    const st = lstatSync("/run");
    return st.isDirectory() && st.uid === 0 && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/**
 * The runtime directory when it has a fixed place (LUMINAGUARD_RUN, $XDG_RUNTIME_DIR/luminaguard,
 * /run/luminaguard for root), or undefined when it is a per-process temporary one.
 */
function fixedRunDir(): string | undefined {
  const override = process.env["LUMINAGUARD_RUN"];
  if (override !== undefined && override !== "") return resolve(override);
  const xdg = process.env["XDG_RUNTIME_DIR"];
  // `sudo` may keep the invoking user's XDG_RUNTIME_DIR: not ours, so not used.
  if (xdg !== undefined && xdg.startsWith("/") && isOwnPrivateDir(xdg)) return join(xdg, "luminaguard");
  if (euid() === 0 && runIsRootOnly()) return "/run/luminaguard";
  return undefined;
}

let tempRunDir: string | undefined;
/** Directories whose ancestors were checked, with the identity we saw: checked once per process. */
const verified = new Map<string, { dev: number; ino: number }>();

function createTempRunDir(): string {
  let dir: string;
  try {
    // mkdtemp: a name nobody can guess or take first, created 0700.
    dir = mkdtempSync(join(tmpdir(), `${RUN_DIR_TEMP_PREFIX}${euid()}-`));
  } catch (err) {
    throw unsafe(`cannot create a runtime directory in ${tmpdir()}: ${(err as Error).message}`);
  }
  // Nobody else can find it to clean it up, so we do, as best we can (not after SIGKILL).
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Per-sandbox runtime files (sockets, consoles, our own workspaces): a directory of ours with mode
 * 0700, created on first use. Where: LUMINAGUARD_RUN; else $XDG_RUNTIME_DIR/luminaguard if that is
 * ours and 0700; else /run/luminaguard for root; else a fresh temporary directory per process,
 * removed at exit. Throws RUNTIME_DIR_UNSAFE (never chmods, chowns or follows a symlink) when the
 * place is taken by something that is not ours alone.
 */
export function runDir(): string {
  const fixed = fixedRunDir();
  const dir = fixed ?? (tempRunDir ??= createTempRunDir());
  // After creating it: parents we made with mkdir -p are checked too.
  return verifiedPrivateDir(dir, "runtime directory", fixed !== undefined, () => checkAncestors(dir));
}

/**
 * `dir`, created 0700 if missing and checked private (ensurePrivateDir, then `more`), once per
 * process: afterwards one lstat, and the full check again only if it is no longer the same directory.
 */
function verifiedPrivateDir(dir: string, what: string, mayCreateParents: boolean, more?: () => void): string {
  const known = verified.get(dir);
  if (known !== undefined) {
    const st = lstatOrNone(dir);
    if (st !== undefined && st.dev === known.dev && st.ino === known.ino && privateDirProblem(dir, st) === undefined) return dir;
    verified.delete(dir);
  }
  const st = ensurePrivateDir(dir, what, mayCreateParents);
  more?.();
  verified.set(dir, { dev: st.dev, ino: st.ino });
  return dir;
}

/**
 * `runDir()/name` (one path component, e.g. `workspaces` or `vm-<id>`), created with mode 0700 if
 * missing and checked like the runtime directory itself: an existing one that is not ours alone is
 * RUNTIME_DIR_UNSAFE, never repaired.
 */
export function runSubdir(name: string): string {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `runtime subdirectory name ${JSON.stringify(name)} must be one path component`);
  }
  const path = join(runDir(), name);
  ensurePrivateDir(path, "runtime subdirectory", false);
  return path;
}

/**
 * Where root's LuminaGuard processes lock the host identities (uids) they hand to sandboxes: one fixed
 * directory for the whole machine, whatever each process's LUMINAGUARD_RUN, so that two processes never
 * give the same uid to two sandboxes. Root only, in /run (cleared at boot, like the processes it
 * accounts for); checked like the runtime directory, never repaired.
 */
export function identityLockDir(): string {
  if (euid() !== 0) throw new LuminaGuardError("INTERNAL", "host identities are only handed out when running as root");
  if (!runIsRootOnly()) throw unsafe("/run is not a directory only root can write to: no safe place for the host identity locks");
  return verifiedPrivateDir("/run/luminaguard-vmm-ids", "identity lock directory", false);
}

/**
 * Every runtime directory this user's LuminaGuard may be using, without creating any: the fixed
 * places, the old shared /tmp/luminaguard, and this process's temporary one if it exists. Other
 * processes' temporary ones are recognised by RUN_DIR_TEMP_PREFIX in tmpdir().
 */
export function knownRunDirs(): string[] {
  const dirs = new Set<string>();
  const override = process.env["LUMINAGUARD_RUN"];
  if (override !== undefined && override !== "") dirs.add(resolve(override));
  const xdg = process.env["XDG_RUNTIME_DIR"];
  if (xdg !== undefined && xdg.startsWith("/")) dirs.add(join(xdg, "luminaguard"));
  dirs.add("/run/luminaguard");
  dirs.add(join(tmpdir(), "luminaguard"));
  dirs.add("/tmp/luminaguard");
  if (tempRunDir !== undefined) dirs.add(tempRunDir);
  return [...dirs];
}

/** The runtime directory this process uses if it is already known without creating anything. */
export function activeRunDir(): string | undefined {
  return fixedRunDir() ?? tempRunDir;
}
