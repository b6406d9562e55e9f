// Where a write_file really lands: its path resolved the way the guest agent resolves it (directories followed
// beneath the workspace root, the last component not followed), on the host, for the card.
import { lstatSync, readlinkSync, realpathSync } from "node:fs";
import { join } from "node:path";

type WriteTarget =
  /** `path`: workspace-relative file the write replaces; `symlink`: the link text when `path` itself is a symlink (replaced, not written through). */
  | { kind: "inside"; path: string; symlink?: string }
  /** The sandbox refuses the write (PATH_ESCAPE): `via` is the symlink that leads out (with `target`), absent for a path that is outside as written. */
  | { kind: "outside"; via?: string; target?: string }
  | { kind: "unknown"; reason: string };

/** Linux's limit on symlinks followed in one lookup. */
const MAX_LINKS = 40;

/**
 * Resolves `rel` (a normalised workspace path, see workspaceRelative) in `workspace` as `openat2(RESOLVE_BENEATH)`
 * does for the directory part: `..` above the root and absolute symlinks leave the workspace; components that
 * do not exist yet (createParents) are taken as written. The last component is not followed, because the guest
 * renames the new file over it.
 */
export function resolveWriteTarget(workspace: string, rel: string): WriteTarget {
  if (rel === ".") return { kind: "unknown", reason: "the workspace root is not a file" };
  if (rel.startsWith("/") || rel === ".." || rel.startsWith("../")) return { kind: "outside" };
  let root: string;
  try {
    root = realpathSync(workspace);
  } catch (err) {
    return { kind: "unknown", reason: (err as Error).message };
  }
  const parts = rel.split("/");
  const name = parts.pop() as string;
  const resolved: string[] = [];
  const pending = [...parts];
  let links = 0;
  let exists = true;
  let lastLink: { via: string; target: string } | undefined;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === "" || c === ".") continue;
    if (c === "..") {
      // Above the root even for a moment is an escape: RESOLVE_BENEATH refuses it, whatever comes after.
      if (resolved.length === 0) return { kind: "outside", ...(lastLink ?? {}) };
      resolved.pop();
      continue;
    }
    if (!exists) {
      resolved.push(c);
      continue;
    }
    let isLink = false;
    try {
      isLink = lstatSync(join(root, ...resolved, c)).isSymbolicLink();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") return { kind: "unknown", reason: (err as Error).message };
      exists = false;
    }
    if (!isLink) {
      resolved.push(c);
      continue;
    }
    if (++links > MAX_LINKS) return { kind: "unknown", reason: "too many levels of symbolic links" };
    let target: string;
    try {
      target = readlinkSync(join(root, ...resolved, c));
    } catch (err) {
      return { kind: "unknown", reason: (err as Error).message };
    }
    lastLink = { via: [...resolved, c].join("/"), target };
    if (target.startsWith("/")) return { kind: "outside", ...lastLink };
    pending.unshift(...target.split("/"));
  }
  const path = [...resolved, name].join("/");
  if (exists) {
    try {
      if (lstatSync(join(root, path)).isSymbolicLink()) return { kind: "inside", path, symlink: readlinkSync(join(root, path)) };
    } catch {
      /* a new file */
    }
  }
  return { kind: "inside", path };
}
