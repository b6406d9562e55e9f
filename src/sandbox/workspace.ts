// The one check of a host directory before any backend shares it with a sandbox as /workspace.
//
// A workspace is handed over writable: whatever it is, lies in, or contains, the sandbox can read and
// replace. So it may not be a system directory, LuminaGuard's own cache/state/runtime directories or
// config file, a home directory as a whole, or anything holding credentials, whether the path names
// them directly, reaches them through a symlink, or contains them (a workspace of ~ exposes ~/.ssh,
// even one that does not exist yet: the sandbox could create ~/.ssh/authorized_keys).
//
// Names: the path goes into bwrap's argv and into a QEMU option (whose commas the micro-VM escapes),
// so commas, quotes, spaces, '=' and ':' are ordinary characters. Control characters and names that
// are not valid UTF-8 are refused: a newline would split a line-oriented record (mountinfo, logs), and
// a non-UTF-8 name decoded into a JS string names a different file than the one that was checked.
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { homedir, tmpdir, userInfo } from "node:os";
import { basename, dirname, join } from "node:path";
import { configPath } from "../config/config.js";
import { LuminaGuardError } from "../errors.js";
import { activeRunDir, cacheDir, homeDir, knownRunDirs, RUN_DIR_TEMP_PREFIX } from "../paths.js";

/** System directories: neither they, anything in them, nor anything containing them. */
const SYSTEM_TREES = [
  "/proc",
  "/sys",
  "/dev",
  "/boot",
  "/etc", // includes /etc/cron*, /etc/sudoers.d, /etc/systemd
  "/usr",
  "/bin",
  "/sbin",
  "/run",
  "/var/run",
  "/var/lock",
  "/var/log",
  "/var/spool", // cron and at spools: a planted job runs as its owner
  "/var/mail",
  "/var/backups", // Debian keeps copies of shadow and gshadow here
  "/var/lib/dpkg", // maintainer scripts run as root on the next package operation
  "/var/lib/apt",
  "/var/cache/apt",
  "/var/lib/systemd",
  "/var/lib/sudo",
  "/var/lib/docker",
  "/var/lib/containerd",
  "/snap",
] as const;

/** /lib, /lib32, /lib64, /libx32, /libexec, ...: matched by pattern, as distributions differ. */
const LIB_TREE = /^\/lib[^/]*(\/|$)/;

/** Shared directories that are fine to have a workspace in, but not to be one. */
const SHARED_DIRS = ["/tmp", "/var/tmp", "/var/lib", "/var/cache", "/var/local", "/var/opt", "/home"] as const;

/**
 * Where credentials and auto-run configuration live relative to a home. Files among them (.npmrc,
 * .netrc, ...) matter only for "contains", which the home itself already is refused for; they are
 * listed so the list says what is protected.
 */
const HOME_SECRETS = [
  ".ssh",
  ".gnupg",
  ".aws",
  ".azure",
  ".config/gcloud",
  ".kube",
  ".docker",
  ".npmrc",
  ".netrc",
  ".git-credentials",
  ".pypirc",
  ".password-store",
  ".vault-token",
  ".terraform.d",
  ".cargo/credentials",
  ".cargo/credentials.toml",
  ".config/gh",
  ".config/containers", // registry auth.json
  ".config/git", // credential store, hooks path
  ".local/share/keyrings",
  ".pki",
  ".config/systemd", // user units run at login
  ".config/autostart",
  ".config/environment.d",
  ".local/bin", // on PATH: a planted binary runs as the user
  "bin",
  ".luminaguard", // another user's (or the default) LuminaGuard state
  ".cache/luminaguard",
] as const;

function forbidden(given: string, real: string, why: string): LuminaGuardError {
  const shown = given === real ? JSON.stringify(real) : `${JSON.stringify(given)} (really ${JSON.stringify(real)})`;
  return new LuminaGuardError("WORKSPACE_FORBIDDEN", `workspace ${shown} ${why}; use a dedicated directory for the task`, {
    details: { workspace: given, realPath: real },
  });
}

/** True when `path` is `dir` or lies inside it. */
function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);
}

/**
 * `path` with symlinks resolved as far as it exists (so a credential directory that is a symlink,
 * or lies under one, is compared where it really is), and the rest appended as written.
 */
function resolvedAsFarAsExists(path: string): string {
  const rest: string[] = [];
  let p = path;
  // existsSync, not a failing realpath per level: this runs for every home on every spawn.
  while (!existsSync(p) && dirname(p) !== p) {
    rest.push(basename(p));
    p = dirname(p);
  }
  try {
    return join(realpathSync.native(p), ...rest.reverse());
  } catch {
    return path;
  }
}

/** Both the path as written and where it resolves to: a workspace is compared with each. */
function bothForms(path: string): string[] {
  const real = resolvedAsFarAsExists(path);
  return real === path ? [path] : [path, real];
}

// Matching control characters is the point here.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
/** In a u-mode regex a well-formed surrogate pair is one code point, so this matches lone ones only. */
const LONE_SURROGATE = /\p{Cs}/u;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function checkName(name: string, what: string): void {
  if (CONTROL.test(name)) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `${what} ${JSON.stringify(name)} contains a control character; rename the directory (letters, digits, spaces and punctuation are fine)`);
  }
  if (LONE_SURROGATE.test(name)) throw new LuminaGuardError("INVALID_ARGUMENT", `${what} ${JSON.stringify(name)} is not valid Unicode, so it cannot name a file as written`);
}

/** Home directories: $HOME, ours from the password database, and every home /etc/passwd lists. */
function homes(): string[] {
  const out = new Set<string>([homedir()]);
  try {
    out.add(userInfo().homedir);
  } catch {
    /* no password entry for our uid (some containers) */
  }
  for (const home of passwdHomes()) out.add(home);
  return [...out].filter((h) => h.startsWith("/"));
}

let passwdCache: { key: string; homes: string[] } | undefined;

/**
 * Every home /etc/passwd lists. The check runs on every spawn (twice for a user's workspace: at the
 * edge and in the backend), so the file is parsed again only when its size or mtime changed.
 */
function passwdHomes(): string[] {
  let key: string;
  try {
    const st = statSync("/etc/passwd");
    key = `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return []; // no /etc/passwd: $HOME still counts
  }
  if (passwdCache?.key === key) return passwdCache.homes;
  const homes: string[] = [];
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const home = line.split(":")[5];
      if (home !== undefined && home.startsWith("/")) homes.push(home);
    }
  } catch {
    return [];
  }
  passwdCache = { key, homes };
  return homes;
}

/** First path components of HOME_SECRETS (".config" for ".config/gcloud"), each looked up once per home. */
const SECRET_ROOTS = [...new Set(HOME_SECRETS.map((s) => s.split("/")[0] ?? s))];

/** Whether `dir` is in (or is) a system directory, where every workspace is refused anyway. */
function inSystemTree(dir: string): boolean {
  return dir === "/" || LIB_TREE.test(dir) || SYSTEM_TREES.some((t) => within(dir, t));
}

/**
 * The credential paths of one home that could matter for `workspace`: as written under each form of
 * the home, and also resolved where they exist (~/.ssh may be a symlink to elsewhere). This runs for
 * every home on every spawn, so only what a home really has is resolved, and homes in system
 * directories (/bin, /var/spool/lpd, ...), whose neighbourhood is refused as a whole, are skipped.
 */
function homeSecrets(workspace: string, forms: readonly string[]): string[] {
  // As written, a secret lies under its home: it can only be in, or contain, a workspace that is in,
  // or contains, that home.
  const near = forms.filter((form) => within(workspace, form) || within(form, workspace));
  const out = near.flatMap((form) => HOME_SECRETS.map((secret) => join(form, secret)));
  const real = forms[forms.length - 1];
  if (real === undefined || inSystemTree(real) || !existsSync(real)) return out;
  const present = new Set(SECRET_ROOTS.filter((name) => existsSync(join(real, name))));
  for (const secret of HOME_SECRETS) {
    if (present.has(secret.split("/")[0] ?? secret)) out.push(resolvedAsFarAsExists(join(real, secret)));
  }
  return out;
}

/** Where our own workspaces are made (runDir()/workspaces/ws-XXXXXX), if this process has a run dir. */
function ownWorkspacesDir(): string[] {
  const run = activeRunDir();
  return run === undefined ? [] : bothForms(join(run, "workspaces"));
}

/**
 * Proof that a workspace passed checkWorkspace in this process a moment ago, so that the parts of one
 * spawn (the runtime's edge, the micro-VM, its file jail) check it once, not once each: the check reads
 * ~200 paths and was a sixth of a restore's time. Only this module can make one (the object must be
 * in `proofs`; a spec parsed from JSON or built by hand carries none that counts), it names the real
 * path it vouches for, and it expires after PROOF_TTL_MS, so a spec kept and spawned later (a queued
 * or retried spawn) is checked again.
 */
export interface WorkspaceCheck {
  readonly real: string;
}

const PROOF_TTL_MS = 1_000;
const proofs = new WeakMap<WorkspaceCheck, number>();

function provenChecked(path: string, proof: WorkspaceCheck): boolean {
  const at = proofs.get(proof);
  return at !== undefined && proof.real === path && performance.now() - at <= PROOF_TTL_MS;
}

/** checkWorkspace, with a proof of it to pass on (SandboxSpec.checked) to whatever checks the same workspace next. */
export function checkWorkspaceOnce(path: string, proof?: WorkspaceCheck): WorkspaceCheck {
  const real = checkWorkspace(path, proof);
  // A proof still valid is passed on as it is (its age is not renewed); an expired one is replaced.
  if (proof !== undefined && provenChecked(real, proof)) return proof;
  const made: WorkspaceCheck = Object.freeze({ real });
  proofs.set(made, performance.now());
  return made;
}

/**
 * Checks that `path` may be shared with a sandbox as its writable /workspace and returns its real
 * path (symlinks resolved), which is what must be shared. Throws LuminaGuardError: INVALID_ARGUMENT
 * (empty, control characters, not valid UTF-8), NOT_FOUND, NOT_A_DIRECTORY, PERMISSION_DENIED, or
 * WORKSPACE_FORBIDDEN (a system, home, credential or LuminaGuard directory, in it, or containing one).
 */
export function checkWorkspace(path: string, proof?: WorkspaceCheck): string {
  if (proof !== undefined && provenChecked(path, proof)) return path;
  if (typeof path !== "string" || path === "") throw new LuminaGuardError("INVALID_ARGUMENT", "workspace must be a non-empty path");
  checkName(path, "workspace");

  let realBytes: Buffer;
  try {
    realBytes = realpathSync.native(path, { encoding: "buffer" });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const shown = JSON.stringify(path);
    if (code === "ENOENT" || code === "ENOTDIR") throw new LuminaGuardError("NOT_FOUND", `workspace ${shown} does not exist`, { cause: err });
    if (code === "EACCES" || code === "EPERM") throw new LuminaGuardError("PERMISSION_DENIED", `workspace ${shown} cannot be reached: ${(err as Error).message}`, { cause: err });
    throw new LuminaGuardError("INVALID_ARGUMENT", `workspace ${shown} cannot be resolved: ${(err as Error).message}`, { cause: err });
  }
  let real: string;
  try {
    real = strictUtf8.decode(realBytes);
  } catch {
    throw new LuminaGuardError(
      "INVALID_ARGUMENT",
      `workspace ${JSON.stringify(path)} resolves to a path that is not valid UTF-8 (${JSON.stringify(realBytes.toString("latin1"))}); rename the directory`,
    );
  }
  checkName(real, "workspace real path");

  let isDir: boolean;
  try {
    isDir = statSync(real).isDirectory();
  } catch (err) {
    throw new LuminaGuardError("NOT_FOUND", `workspace ${JSON.stringify(path)} does not exist: ${(err as Error).message}`, { cause: err });
  }
  if (!isDir) throw new LuminaGuardError("NOT_A_DIRECTORY", `workspace ${JSON.stringify(path)} is not a directory`);

  // Our own workspaces: made with mkdtemp in a runtime directory verified to be ours alone (0700),
  // which may itself lie under /run. Everything else about the runtime directory stays forbidden.
  if (ownWorkspacesDir().some((dir) => real.startsWith(`${dir}/`))) return real;

  if (real === "/" || dirname(real) === "/") throw forbidden(path, real, "is / or a top-level directory");
  // Both forms: /var/lib/docker, for one, is often a symlink to a bigger disk.
  for (const dir of SYSTEM_TREES.flatMap(bothForms)) {
    if (within(real, dir)) throw forbidden(path, real, `lies in the system directory ${dir}`);
    if (within(dir, real)) throw forbidden(path, real, `contains the system directory ${dir}`);
  }
  if (LIB_TREE.test(real)) throw forbidden(path, real, "lies in a system library directory");
  for (const dir of new Set([...SHARED_DIRS, tmpdir()].flatMap(bothForms))) {
    if (real === dir) throw forbidden(path, real, `is the shared directory ${dir} itself`);
  }

  const own: Array<[string, string]> = [
    [cacheDir(), "LuminaGuard's cache directory"],
    [homeDir(), "LuminaGuard's state directory (audit log, policy, config)"],
    // A file: only "contains" can apply. It holds MCP servers' headers and env, tokens included.
    [configPath(), "LuminaGuard's config file"],
    ...knownRunDirs().map((d): [string, string] => [d, "a LuminaGuard runtime directory (sockets of running sandboxes)"]),
  ];
  for (const [dir, name] of own) {
    for (const form of bothForms(dir)) {
      if (within(real, form)) throw forbidden(path, real, `lies in ${name} ${form}`);
      if (within(form, real)) throw forbidden(path, real, `contains ${name} ${form}`);
    }
  }
  // Other processes' per-process runtime directories: $TMPDIR/luminaguard-<uid>-XXXXXX.
  for (const tmp of bothForms(tmpdir())) {
    const first = real.startsWith(`${tmp}/`) ? real.slice(tmp.length + 1).split("/")[0] : undefined;
    if (first !== undefined && first.startsWith(RUN_DIR_TEMP_PREFIX)) throw forbidden(path, real, `lies in a LuminaGuard runtime directory in ${tmp}`);
  }

  if (dirname(real) === "/home") throw forbidden(path, real, "is a home directory: a whole home is not a task workspace");
  for (const home of homes()) {
    const forms = bothForms(home);
    if (forms.includes(real)) throw forbidden(path, real, `is the home directory ${home}: a whole home is not a task workspace`);
    for (const p of homeSecrets(real, forms)) {
      if (within(real, p)) throw forbidden(path, real, `lies in ${p}, where credentials or auto-run configuration live`);
      if (within(p, real)) throw forbidden(path, real, `contains ${p}, where credentials or auto-run configuration live`);
    }
  }
  return real;
}
