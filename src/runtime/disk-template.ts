// The empty workspace filesystem as a cached template: the blocks that mkfs.ext4 writes into a sparse
// image of a given size are the same every time for the same mkfs and arguments (bar its random UUID
// and directory-hash seed), a few hundred KiB of a 1 GiB image. Made once by mkfs, kept in the cache
// directory, and copied into each new image in-process (ftruncate, then pwrite of those blocks) instead
// of running mkfs, a process, for every sandbox.
//
// Trust: the template becomes a filesystem the kernel mounts, so it is used only from a directory of
// our own (owned by this user, mode 0700, no symlink) and from a file that is ours, mode 0600, whose
// blocks match the SHA-256 recorded with them and fit the image's size; anything else and mkfs runs as
// before (and writes a fresh template). Keyed by the mkfs binary (device, inode, size, times), its
// arguments (the size, inode count and root owner among them) and the image size: another mkfs or
// other arguments make another template. Every workspace made from one template shares its UUID and
// hash seed; neither is a secret nor reachable from inside a sandbox (no access to the block device).
import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { log } from "../log.js";
import { cacheDir } from "../paths.js";
import { run } from "../util/proc.js";

const MIB = 1024 * 1024;
const BLOCK = 4096;
/** Larger images run mkfs each time: making the template reads the whole sparse image once. */
export const MAX_TEMPLATE_MIB = 4096;
/** A template is a few hundred KiB; anything much larger is not one of ours. */
const MAX_TEMPLATE_BYTES = 64 * MIB;
const MAGIC = "LGFS1";

interface Template {
  size: number;
  extents: Array<{ offset: number; data: Buffer }>;
}

function euid(): number {
  return process.geteuid?.() ?? -1;
}

/** The templates' directory, when it is safely ours (created 0700 if missing); undefined otherwise. */
function templatesDir(): string | undefined {
  const dir = join(cacheDir(), "workspace-templates");
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    return st.isDirectory() && st.uid === euid() && (st.mode & 0o077) === 0 ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** The template's file name for this mkfs binary, its arguments (without the image) and the image size. */
export function templateKey(mkfs: string, args: readonly string[], size: number): string {
  const st = statSync(mkfs);
  const id = { mkfs, dev: st.dev, ino: st.ino, bytes: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, args, size, format: MAGIC };
  return `${createHash("sha256").update(JSON.stringify(id)).digest("hex").slice(0, 32)}.lgfs`;
}

/** Reads and checks a template file; undefined when it is missing, not safely ours, or does not check out. */
export function readTemplate(path: string, size: number): Template | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== euid() || (st.mode & 0o077) !== 0 || st.size > MAX_TEMPLATE_BYTES) return undefined;
    const all = Buffer.alloc(st.size);
    let got = 0;
    while (got < all.length) {
      const n = readSync(fd, all, got, all.length - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got !== all.length) return undefined;
    // MAGIC, a newline, the header (JSON) and a newline, then the extents' bytes back to back.
    const nl1 = all.indexOf(10);
    const nl2 = nl1 < 0 ? -1 : all.indexOf(10, nl1 + 1);
    if (nl1 < 0 || nl2 < 0 || all.subarray(0, nl1).toString("latin1") !== MAGIC) return undefined;
    const header = JSON.parse(all.subarray(nl1 + 1, nl2).toString("utf8")) as { size?: unknown; extents?: unknown; sha256?: unknown };
    const payload = all.subarray(nl2 + 1);
    if (header.size !== size || !Array.isArray(header.extents) || typeof header.sha256 !== "string") return undefined;
    if (createHash("sha256").update(payload).digest("hex") !== header.sha256) return undefined;
    const extents: Template["extents"] = [];
    let at = 0;
    let end = 0;
    for (const e of header.extents as unknown[]) {
      if (!Array.isArray(e) || e.length !== 2) return undefined;
      const [offset, length] = e as unknown[];
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) return undefined;
      const o = offset as number;
      const l = length as number;
      // In order, apart, within the image, and exactly the payload's bytes.
      if (o < end || l <= 0 || o + l > size || at + l > payload.length) return undefined;
      extents.push({ offset: o, data: payload.subarray(at, at + l) });
      at += l;
      end = o + l;
    }
    return at === payload.length ? { size, extents } : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The byte ranges of `path` that hold data, from filefrag (e2fsprogs, beside mkfs.ext4; FIEMAP after a
 * sync): reading a 1 GiB sparse image whole takes seconds here. Undefined when it cannot tell (no
 * filefrag, a filesystem without FIEMAP, output not understood): then the whole image is read.
 */
async function dataRanges(path: string, filefrag: string | undefined): Promise<Array<[number, number]> | undefined> {
  if (filefrag === undefined) return undefined;
  const r = await run([filefrag, "-s", "-e", path], { timeoutMs: 30_000 }).catch(() => undefined);
  if (r === undefined || r.code !== 0) return undefined;
  const unit = /blocks of (\d+) bytes/.exec(r.stdout);
  if (!unit || !/: \d+ extents? found/.test(r.stdout)) return undefined;
  const bs = Number(unit[1]);
  const ranges: Array<[number, number]> = [];
  for (const m of r.stdout.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):/gm)) ranges.push([Number(m[1]) * bs, (Number(m[2]) + 1) * bs]);
  // (filefrag's count may differ from the lines it lists: it counts physically contiguous ones as one.)
  return ranges.length > 0 && bs > 0 ? ranges : undefined;
}

/** The non-zero 4 KiB blocks of the sparse image `path` (of `size` bytes) within `ranges`, coalesced into extents. */
function nonZeroExtents(path: string, size: number, ranges: Array<[number, number]>): Template["extents"] {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const chunk = Buffer.alloc(4 * MIB);
    const zero = Buffer.alloc(BLOCK);
    const out: Template["extents"] = [];
    let start = -1;
    const parts: Buffer[] = [];
    const flush = (): void => {
      if (start >= 0) out.push({ offset: start, data: Buffer.concat(parts.splice(0)) });
      start = -1;
    };
    /** Where reading has got to: ranges may touch or overlap, no byte is read twice. */
    let done = 0;
    for (const [from, to] of [...ranges].sort((x, y) => x[0] - y[0])) {
      // Whole blocks: rounding a range out only reads more zeros.
      const lo = Math.max(done, Math.floor(from / BLOCK) * BLOCK);
      const hi = Math.min(size, Math.ceil(to / BLOCK) * BLOCK);
      if (lo > done) flush();
      for (let base = lo; base < hi; base += chunk.length) {
        const n = readSync(fd, chunk, 0, Math.min(chunk.length, hi - base), base);
        if (n === 0) break;
        for (let off = 0; off < n; off += BLOCK) {
          const block = chunk.subarray(off, Math.min(off + BLOCK, n));
          if (block.equals(zero.subarray(0, block.length))) flush();
          else {
            if (start < 0) start = base + off;
            parts.push(Buffer.from(block));
          }
        }
      }
      done = Math.max(done, hi);
    }
    flush();
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Runs mkfs on a scratch image of `size` bytes in `dir` and writes what it wrote as the template at `path`. */
async function makeTemplate(dir: string, path: string, mkfs: string, filefrag: string | undefined, args: readonly string[], size: number): Promise<void> {
  // What a process that died while making one left behind (its scratch image, its half-written template).
  for (const name of readdirSync(dir)) {
    if (!/^\.[0-9a-f]{16}\.(img|tmp)$/.test(name)) continue;
    const p = join(dir, name);
    if (Date.now() - (lstatSync(p, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > 60_000) rmSync(p, { force: true });
  }
  const scratch = join(dir, `.${randomBytes(8).toString("hex")}.img`);
  const tmp = join(dir, `.${randomBytes(8).toString("hex")}.tmp`);
  try {
    const fd = openSync(scratch, "wx", 0o600);
    try {
      ftruncateSync(fd, size);
    } finally {
      closeSync(fd);
    }
    const r = await run([mkfs, ...args, scratch], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`${mkfs} failed: ${(r.stderr || r.stdout).trim()}`);
    const extents = nonZeroExtents(scratch, size, (await dataRanges(scratch, filefrag)) ?? [[0, size]]);
    const payload = Buffer.concat(extents.map((e) => e.data));
    const header = { size, extents: extents.map((e) => [e.offset, e.data.length]), sha256: createHash("sha256").update(payload).digest("hex") };
    const out = openSync(tmp, "wx", 0o600);
    try {
      writeAll(out, Buffer.concat([Buffer.from(`${MAGIC}\n${JSON.stringify(header)}\n`, "utf8"), payload]), 0);
    } finally {
      closeSync(out);
    }
    renameSync(tmp, path);
  } finally {
    rmSync(scratch, { force: true });
    rmSync(tmp, { force: true });
  }
}

function writeAll(fd: number, data: Buffer, position: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
}

/**
 * Formats the sparse image `image` (already `size` bytes) as `mkfs args image` would: from the cached
 * template when there is a good one (made now by mkfs when missing), else by running mkfs. Returns
 * whether the template was used.
 */
export async function formatFromTemplate(image: string, mkfs: string, filefrag: string | undefined, args: readonly string[], size: number): Promise<boolean> {
  const dir = size <= MAX_TEMPLATE_MIB * MIB ? templatesDir() : undefined;
  let template: Template | undefined;
  if (dir !== undefined) {
    try {
      const path = join(dir, templateKey(mkfs, args, size));
      template = readTemplate(path, size);
      if (template === undefined) {
        await makeTemplate(dir, path, mkfs, filefrag, args, size);
        template = readTemplate(path, size);
      }
    } catch (err) {
      log.debug({ err: String(err) }, "no workspace filesystem template; running mkfs");
      template = undefined;
    }
  }
  if (template === undefined) {
    const r = await run([mkfs, ...args, image], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`${mkfs} failed: ${(r.stderr || r.stdout).trim()}`);
    return false;
  }
  const fd = openSync(image, constants.O_WRONLY | constants.O_NOFOLLOW);
  try {
    ftruncateSync(fd, size);
    for (const e of template.extents) writeAll(fd, e.data, e.offset);
  } finally {
    closeSync(fd);
  }
  return true;
}
