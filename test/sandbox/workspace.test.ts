// The one workspace check both backends use: what may be shared with a sandbox as /workspace, and what never.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { cacheDir, homeDir } from "../../src/paths.js";
import { checkWorkspace, checkWorkspaceOnce, type WorkspaceCheck } from "../../src/sandbox/workspace.js";

function refused(path: string, code: string, message = path): LuminaGuardError {
  try {
    const got = checkWorkspace(path);
    assert.fail(`${JSON.stringify(message)}: expected ${code}, but it was accepted as ${JSON.stringify(got)}`);
  } catch (err) {
    if (!(err instanceof LuminaGuardError)) throw err;
    assert.equal(err.code, code, `${JSON.stringify(message)}: expected ${code}, got ${err.code}: ${err.message}`);
    return err;
  }
}

const forbidden = (path: string, message?: string): LuminaGuardError => refused(path, "WORKSPACE_FORBIDDEN", message);

/** Sets environment variables for one describe block and puts the old values back afterwards. */
function withEnv(vars: Record<string, string>): void {
  const saved: Record<string, string | undefined> = {};
  before(() => {
    for (const [k, v] of Object.entries(vars)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
  });
  after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

const root = mkdtempSync(join(tmpdir(), "lg-wscheck-"));
after(() => rmSync(root, { recursive: true, force: true }));

describe("system directories", () => {
  test("through a symlink whose name looks like a QEMU option (a,path=) pointing to /", () => {
    const link = join(root, "a,path=");
    symlinkSync("/", link);
    forbidden(link);
    forbidden(`${link}/`);
  });

  test("a symlink into /etc, and /etc itself", () => {
    const link = join(root, "etc-link");
    symlinkSync("/etc", link);
    forbidden(link);
    const deeper = join(root, "etc-deeper");
    symlinkSync("/etc/ssh", deeper);
    if (existsSync("/etc/ssh")) forbidden(deeper);
    forbidden("/etc");
  });

  test("/, top-level and shared directories, and what lies under the system ones", () => {
    for (const p of ["/", "/tmp", "/var/tmp", "/home", "/root", "/var", "/usr", "/usr/lib", "/proc", "/proc/self", "/sys", "/dev", "/dev/shm", "/boot", "/run", "/bin", "/lib"]) {
      if (existsSync(p)) forbidden(p);
    }
    for (const p of ["/var/spool/cron", "/var/log", "/var/lib/dpkg", "/var/lib", "/var/cache", tmpdir()]) {
      if (existsSync(p)) forbidden(p);
    }
  });
});

describe("homes and credentials", () => {
  // A home of our own making: the check must take $HOME into account, not only /etc/passwd.
  const home = join(root, "home", "alice");
  mkdirSync(join(home, ".ssh"), { recursive: true });
  mkdirSync(join(home, ".config", "gcloud"), { recursive: true });
  mkdirSync(join(home, "proj", "src"), { recursive: true });
  withEnv({ HOME: home });

  test("~ itself: a whole home is not a task workspace", () => {
    forbidden(home);
    const link = join(root, "home-link");
    symlinkSync(home, link);
    forbidden(link, "a symlink to ~");
  });

  test("~/.ssh, anything under it, and credential dirs that do not exist yet cannot be reached either", () => {
    forbidden(join(home, ".ssh"));
    mkdirSync(join(home, ".ssh", "keys"), { recursive: true });
    forbidden(join(home, ".ssh", "keys"));
    forbidden(join(home, ".config", "gcloud"));
    // ~/.config contains ~/.config/gcloud (and ~/.config/gh, ~/.config/systemd even before they exist).
    forbidden(join(home, ".config"));
  });

  test("a directory containing a home (and so its .ssh)", () => {
    forbidden(dirname(home), "the directory holding the home");
    forbidden(root, "an ancestor of the home");
  });

  test("a project under the home is fine, and so is a project that merely has its own .ssh directory", () => {
    assert.equal(checkWorkspace(join(home, "proj")), realpathSync(join(home, "proj")));
    assert.equal(checkWorkspace(join(home, "proj", "src")), realpathSync(join(home, "proj", "src")));
    const other = join(root, "elsewhere");
    mkdirSync(join(other, ".ssh"), { recursive: true });
    assert.equal(checkWorkspace(other), realpathSync(other));
  });

  test("our own home from /etc/passwd and every other existing home listed there", () => {
    const mine = userInfo().homedir;
    if (existsSync(mine)) forbidden(mine);
    if (existsSync(join(mine, ".ssh"))) forbidden(join(mine, ".ssh"));
    const homes = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .map((l) => l.split(":")[5])
      .filter((h): h is string => h !== undefined && h.split("/").length > 2 && existsSync(h) && statSync(h).isDirectory());
    for (const h of homes) forbidden(h, `home ${h} from /etc/passwd`);
  });
});

describe("LuminaGuard's own directories", () => {
  const cache = join(root, "lg", "cache");
  const state = join(root, "lg", "state");
  mkdirSync(join(cache, "kernel"), { recursive: true });
  mkdirSync(state, { recursive: true });
  withEnv({ LUMINAGUARD_CACHE: cache, LUMINAGUARD_HOME: state });

  test("the cache dir, anything in it, and anything containing it", () => {
    assert.equal(cacheDir(), cache);
    forbidden(cache);
    forbidden(join(cache, "kernel"));
    forbidden(join(root, "lg"));
  });

  test("the state dir (audit log, policy, config)", () => {
    assert.equal(homeDir(), state);
    forbidden(state);
  });

  test("a directory holding the config file named by LUMINAGUARD_CONFIG (MCP server tokens live there)", () => {
    const cfgDir = join(root, "lg", "cfg");
    mkdirSync(cfgDir, { recursive: true });
    writeFileSync(join(cfgDir, "config.json"), "{}");
    const saved = process.env["LUMINAGUARD_CONFIG"];
    process.env["LUMINAGUARD_CONFIG"] = join(cfgDir, "config.json");
    try {
      forbidden(cfgDir);
    } finally {
      if (saved === undefined) delete process.env["LUMINAGUARD_CONFIG"];
      else process.env["LUMINAGUARD_CONFIG"] = saved;
    }
    assert.equal(checkWorkspace(cfgDir), realpathSync(cfgDir), "an ordinary directory again once the config is elsewhere");
  });

  test("the default cache and state dirs under the real home", () => {
    delete process.env["LUMINAGUARD_CACHE"];
    delete process.env["LUMINAGUARD_HOME"];
    process.env["HOME"] = userInfo().homedir;
    try {
      for (const dir of [cacheDir(), homeDir()]) if (existsSync(dir)) forbidden(dir);
    } finally {
      process.env["LUMINAGUARD_CACHE"] = cache;
      process.env["LUMINAGUARD_HOME"] = state;
    }
  });
});

describe("names", () => {
  test("commas, quotes, spaces, '=', ':' and a leading '-' work, and the real path comes back unchanged", () => {
    for (const name of ["with,comma", 'with"quote', "with'quote", "with space", "a=b", "a:b", "-leading", "a,path=/,readonly=on", "ünïcödé"]) {
      const dir = join(root, "names", name);
      mkdirSync(dir, { recursive: true });
      assert.equal(checkWorkspace(dir), realpathSync(dir), name);
      assert.equal(statSync(checkWorkspace(dir)).ino, statSync(dir).ino, `${name}: the same directory`);
    }
  });

  test("control characters (newline, tab, escape, DEL) are refused by name, whether given or reached through a symlink", () => {
    for (const name of ["with\nnewline", "with\ttab", "esc\u001b[31m", "del\u007f"]) {
      const dir = join(root, "ctl", name);
      mkdirSync(dir, { recursive: true });
      const e = refused(dir, "INVALID_ARGUMENT", name);
      assert.match(e.message, /control character/);
      const link = join(root, "ctl", `link-${name.length}-${name.charCodeAt(4)}`);
      symlinkSync(dir, link);
      refused(link, "INVALID_ARGUMENT", `symlink to ${JSON.stringify(name)}`);
    }
  });

  test("a non-UTF-8 name (only reachable through a symlink from a string) is refused, not decoded into another path", () => {
    const parent = join(root, "bytes");
    mkdirSync(parent, { recursive: true });
    const raw = Buffer.concat([Buffer.from(`${parent}/bad-`), Buffer.from([0xff, 0xfe]), Buffer.from("-name")]);
    mkdirSync(raw);
    const link = join(parent, "link-to-bad");
    symlinkSync(raw, link);
    const e = refused(link, "INVALID_ARGUMENT");
    assert.match(e.message, /UTF-8/);
    // A lone surrogate cannot name any file: Node would write U+FFFD instead.
    refused(`${parent}/x\ud800y`, "INVALID_ARGUMENT");
  });
});

describe("what is not a workspace at all", () => {
  test("missing, a file, empty", () => {
    refused(join(root, "missing"), "NOT_FOUND");
    writeFileSync(join(root, "file.txt"), "x");
    refused(join(root, "file.txt"), "NOT_A_DIRECTORY");
    refused("", "INVALID_ARGUMENT");
  });

  test("a plain temporary directory is fine", () => {
    const dir = mkdtempSync(join(tmpdir(), "lg-wscheck-ok-"));
    try {
      assert.equal(checkWorkspace(dir), realpathSync(dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a proof of the check (one check per spawn)", () => {
  // The proof saves the VM's file jail (and the backend after the runtime's edge) the same check a
  // moment later; it must not become a way around the check.
  const home = join(root, "proof-home");
  const keys = join(root, "proof-keys");
  mkdirSync(home, { recursive: true });
  mkdirSync(keys, { recursive: true });
  withEnv({ HOME: home });

  test("it vouches for the real path it was made for, and for nothing else", () => {
    const link = join(root, "proof-link");
    symlinkSync(keys, link);
    const proof = checkWorkspaceOnce(link);
    assert.equal(proof.real, realpathSync(keys));
    assert.equal(checkWorkspace(proof.real, proof), proof.real);
    // Passed on, it is the same proof (its age is not renewed).
    assert.equal(checkWorkspaceOnce(proof.real, proof), proof);
    // Not the link (the backend shares the real path only), not another path.
    assert.equal(checkWorkspace(link, proof), proof.real, "the link is checked again and resolved");
    assert.throws(() => checkWorkspace("/etc", proof), (e: unknown) => e instanceof LuminaGuardError && e.code === "WORKSPACE_FORBIDDEN");
    assert.throws(() => checkWorkspace(home, proof), (e: unknown) => e instanceof LuminaGuardError && e.code === "WORKSPACE_FORBIDDEN");
  });

  test("a proof made by hand or parsed from JSON counts for nothing", () => {
    const forged: WorkspaceCheck = { real: "/etc" };
    assert.throws(() => checkWorkspace("/etc", forged), (e: unknown) => e instanceof LuminaGuardError && e.code === "WORKSPACE_FORBIDDEN");
    const real = checkWorkspaceOnce(keys);
    const copied = JSON.parse(JSON.stringify(real)) as WorkspaceCheck;
    mkdirSync(join(home, ".ssh"), { recursive: true });
    try {
      // keys is now fine, ~/.ssh is not: a copy of a real proof names ~/.ssh and is refused as any path.
      assert.throws(() => checkWorkspace(join(home, ".ssh"), { ...copied, real: join(home, ".ssh") }), (e: unknown) => e instanceof LuminaGuardError && e.code === "WORKSPACE_FORBIDDEN");
    } finally {
      rmSync(join(home, ".ssh"), { recursive: true, force: true });
    }
  });

  test("it expires: a workspace that became forbidden since is refused once the proof is a second old", async () => {
    const proof = checkWorkspaceOnce(keys);
    // ~/.ssh now leads to the workspace: from here on, sharing it would share the user's keys.
    symlinkSync(keys, join(home, ".ssh"));
    try {
      await new Promise((r) => setTimeout(r, 1_100));
      assert.throws(() => checkWorkspace(proof.real, proof), (e: unknown) => e instanceof LuminaGuardError && e.code === "WORKSPACE_FORBIDDEN");
    } finally {
      rmSync(join(home, ".ssh"), { force: true });
    }
  });
});
