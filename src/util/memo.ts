// Facts about host binaries (a compiler's version, busybox's applets, bwrap's version) found once by
// running them and remembered on disk, keyed by the binary's identity (device, inode, size, mtime):
// no such process runs on a command's hot path, and the last fact known outlives the binary (a built
// image keeps working when the toolchain that built it is removed).
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { z } from "zod";
import { cacheDir } from "../paths.js";

/** The first executable `name` along PATH, found with stat alone (no exec, no shell). */
export function findOnPath(name: string, path = process.env["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      const s = statSync(p);
      if (s.isFile() && (s.mode & 0o111) !== 0) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** What changes when a file (a binary, a manifest) is replaced or rewritten; undefined when it is not there. */
export function fileIdentity(path: string): string | undefined {
  try {
    const s = statSync(path);
    return `${path}:${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return undefined;
  }
}

const memoFile = z.object({ key: z.string(), value: z.unknown() });

function memoPath(name: string): string {
  return join(cacheDir(), "probe", `memo-${name}.json`);
}

function readMemo<T>(name: string, schema: z.ZodType<T>): { key: string; value: T } | undefined {
  try {
    const m = memoFile.parse(JSON.parse(readFileSync(memoPath(name), "utf8")));
    const v = schema.safeParse(m.value);
    return v.success ? { key: m.key, value: v.data } : undefined;
  } catch {
    return undefined; // missing or damaged: probe again
  }
}

function writeMemo(name: string, key: string, value: unknown): void {
  try {
    mkdirSync(join(cacheDir(), "probe"), { recursive: true, mode: 0o700 });
    const tmp = `${memoPath(name)}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ key, value }), { mode: 0o600 });
    renameSync(tmp, memoPath(name));
  } catch {
    /* a read-only cache only costs a probe next time */
  }
}

/**
 * `compute(binary)` once per identity of `binary`, remembered under `name`. With `binary` absent, the
 * last value known (if any) is returned: what it told us is still true of what it built.
 */
export async function memoized<T>(
  name: string,
  schema: z.ZodType<T>,
  binary: string | undefined,
  compute: (binary: string) => Promise<T>,
  o: { fresh?: boolean } = {},
): Promise<T | undefined> {
  // `fresh` (doctor): compute again even when remembered, and remember the new value.
  const memo = o.fresh === true && binary !== undefined ? undefined : readMemo(name, schema);
  const key = binary === undefined ? undefined : fileIdentity(binary);
  if (key === undefined) return memo?.value;
  if (memo && memo.key === key) return memo.value;
  const value = await compute(binary as string);
  writeMemo(name, key, value);
  return value;
}
