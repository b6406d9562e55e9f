// V8's code cache for the command's own modules, where node has one for ES modules (module.enableCompileCache,
// node ≥ 22.1; node 20 has none and this does nothing): each chunk of dist/cli/ is compiled once and its code
// read back by the next command. Node keys every entry by the module's source hash and its own version and
// flags, so another build or another node misses and compiles afresh; it never runs code it did not compile
// from the very source it loads. Kept in the user's cache directory, in a directory of our own (created 0700,
// owned by this user, no symlink, writable by no one else): anything else and the cache stays off, since
// whoever may write there could hand us code.
import { lstatSync, mkdirSync } from "node:fs";
import * as nodeModule from "node:module";
import { join } from "node:path";
import { cacheDir } from "../paths.js";

type EnableCompileCache = (dir: string) => { status: number; message?: string; directory?: string };

/** The directory the code cache is kept in, for this user. */
export function compileCacheDir(): string {
  return join(cacheDir(), `v8-code-${process.geteuid?.() ?? "user"}`);
}

/** Turns the code cache on when node has one and the directory is safely ours; says whether it did. */
export function enableCompileCache(): boolean {
  const enable = (nodeModule as unknown as { enableCompileCache?: EnableCompileCache }).enableCompileCache;
  // NODE_DISABLE_COMPILE_CACHE set at all (even empty) is node's own off switch.
  if (typeof enable !== "function" || process.env["NODE_DISABLE_COMPILE_CACHE"] !== undefined) return false;
  const dir = compileCacheDir();
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    const euid = process.geteuid?.();
    if (!st.isDirectory() || (euid !== undefined && st.uid !== euid) || (st.mode & 0o022) !== 0) return false;
    // 0 failed, 1 enabled, 2 already enabled (NODE_COMPILE_CACHE), 3 disabled.
    const r = enable(dir);
    return r.status === 1 || r.status === 2;
  } catch {
    return false; // a read-only or foreign cache costs only the compile
  }
}
