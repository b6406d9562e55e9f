// V8's code cache for the command's own code, kept in the user's cache directory, in a directory of our own
// (created 0700, owned by this user, no symlink, writable by no one else): anything else and the cache stays
// off, since whoever may write there could hand us code.
// - exec and tool (the commands users run most, one process per call) come as one CommonJS bundle
//   (dist/cli/hot/exec.cjs, scripts/bundle.mjs) that runCachedScript compiles with V8's code cache on any
//   node: the first run stores the code it compiled, later runs read it back instead of parsing and
//   compiling again (~45 ms of an exec's ~250 on our 2-core machines).
// - every other command's ES modules use node's own cache where node has one (module.enableCompileCache,
//   node ≥ 22.1; node 20 has none and enableCompileCache does nothing).
// An entry is found by a hash of the very source it was compiled from and of node's version, platform
// and flags: V8 itself checks only the source's length, so another build of the same length would
// otherwise run the code of the old one.
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import * as nodeModule from "node:module";
import { basename, dirname, join } from "node:path";
import { Script } from "node:vm";
import { cacheDir } from "../paths.js";

type EnableCompileCache = (dir: string) => { status: number; message?: string; directory?: string };

/** The directory the code cache is kept in, for this user. */
export function compileCacheDir(): string {
  return join(cacheDir(), `v8-code-${process.geteuid?.() ?? "user"}`);
}

/** NODE_DISABLE_COMPILE_CACHE set at all (even empty) is node's own off switch, and ours. */
function cacheDisabled(): boolean {
  return process.env["NODE_DISABLE_COMPILE_CACHE"] !== undefined;
}

/** The cache directory, created if need be, when it is safely ours; undefined when it is not. */
function ownedCacheDir(): string | undefined {
  const dir = compileCacheDir();
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    const euid = process.geteuid?.();
    if (!st.isDirectory() || (euid !== undefined && st.uid !== euid) || (st.mode & 0o022) !== 0) return undefined;
    return dir;
  } catch {
    return undefined; // a read-only or foreign cache costs only the compile
  }
}

/** Turns node's code cache for ES modules on when node has one and the directory is safely ours; says whether it did. */
export function enableCompileCache(): boolean {
  const enable = (nodeModule as unknown as { enableCompileCache?: EnableCompileCache }).enableCompileCache;
  if (typeof enable !== "function" || cacheDisabled()) return false;
  const dir = ownedCacheDir();
  if (dir === undefined) return false;
  try {
    // 0 failed, 1 enabled, 2 already enabled (NODE_COMPILE_CACHE), 3 disabled.
    const r = enable(dir);
    return r.status === 1 || r.status === 2;
  } catch {
    return false;
  }
}

/** How a cached run went, for the tests: whether compiled code was read back, and where it is kept. */
export interface CachedScriptRun {
  /** The cache entry for this source, node and flags; undefined with the cache off. */
  entry: string | undefined;
  /** Compiled code was found and V8 took it. */
  hit: boolean;
}

/**
 * Runs a CommonJS file as node would (module, exports, require, __filename, __dirname), compiled with V8's code
 * cache: read back when an entry for this very source exists, else stored at exit (with the functions the run
 * compiled, so the next run skips their compile too). Entries of other builds of the same file are removed then.
 */
export function runCachedScript(file: string): CachedScriptRun {
  const source = readFileSync(file, "utf8");
  const dir = cacheDisabled() ? undefined : ownedCacheDir();
  // Entries of one installed file run by one node with the same flags share a stem: a new build replaces the
  // old one's entry, another install's (or a run with --cpu-prof) keeps its own.
  const runner = `${file}\0${process.version}\0${process.platform}\0${process.arch}\0${process.execArgv.join("\0")}`;
  const stem = `${basename(file)}-${createHash("sha256").update(runner).digest("hex").slice(0, 12)}-`;
  const key = createHash("sha256").update(source).digest("hex").slice(0, 32);
  const entry = dir === undefined ? undefined : join(dir, `${stem}${key}.v8`);
  let cachedData: Buffer | undefined;
  if (entry !== undefined) {
    try {
      cachedData = readFileSync(entry);
    } catch {
      cachedData = undefined; // not stored yet
    }
  }
  // One line with the source's first: line numbers (and source maps) stay those of the file.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    ...(cachedData === undefined ? {} : { cachedData }),
  });
  const hit = cachedData !== undefined && script.cachedDataRejected !== true;
  if (entry !== undefined && dir !== undefined && !hit) process.once("exit", () => storeCode(script, dir, stem, entry));
  const run = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: unknown, filename: string, dirname: string) => void;
  const mod = { exports: {} };
  run.call(mod.exports, mod.exports, nodeModule.createRequire(file), mod, file, dirname(file));
  return { entry, hit };
}

/** Stores a script's compiled code under entry (written whole, then renamed in) and drops other builds' entries. */
function storeCode(script: Script, dir: string, stem: string, entry: string): void {
  const tmp = `${entry}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, script.createCachedData(), { mode: 0o600, flag: "wx" });
    renameSync(tmp, entry);
    for (const name of readdirSync(dir)) if (name.startsWith(stem) && join(dir, name) !== entry) rmSync(join(dir, name), { force: true });
  } catch {
    rmSync(tmp, { force: true }); // a full or read-only disk: the next run compiles again
  }
}
