// Content hashes that key cached build outputs: any change to an input gives a new key.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** sha256 over the relative names and contents of every file under `dirs` plus `extra` strings. */
export function hashInputs(files: readonly string[], extra: readonly string[] = [], base = "/"): string {
  const h = createHash("sha256");
  for (const file of [...files].sort()) {
    h.update(relative(base, file)).update("\0").update(readFileSync(file)).update("\0");
  }
  for (const s of extra) h.update(s).update("\0");
  return h.digest("hex");
}

export function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}
