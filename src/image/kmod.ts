// Kernel modules from an unpacked kernel package: find them, read their dependencies, order them for loading.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { LuminaGuardError } from "../errors.js";
import { run } from "../util/proc.js";

const MODULE_FILE = /\.ko(\.xz|\.zst|\.gz)?$/;

/** Module names use `_` where file names may use `-` (kbuild's KBUILD_MODNAME rule). */
function moduleName(file: string): string {
  return basename(file).replace(MODULE_FILE, "").replace(/-/g, "_");
}

/** Every module file under `root` (…/lib/modules/<release>/kernel), by module name. */
export function indexModules(root: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (MODULE_FILE.test(name)) index.set(moduleName(name), p);
    }
  };
  walk(root);
  return index;
}

/** The `.modinfo` section of a module ELF: NUL-separated key=value strings (what modinfo(8) prints). */
function modinfo(elf: Buffer): Map<string, string[]> {
  const bad = (why: string): never => {
    throw new LuminaGuardError("IMAGE_BUILD_FAILED", `not a kernel module: ${why}`);
  };
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) bad("no ELF magic");
  if (elf[4] !== 2 || elf[5] !== 1) bad("not a 64-bit little-endian ELF");
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  if (shentsize < 64 || shoff + shnum * shentsize > elf.length || shstrndx >= shnum) bad("section table out of bounds");
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    return { name: elf.readUInt32LE(at), offset: Number(elf.readBigUInt64LE(at + 0x18)), size: Number(elf.readBigUInt64LE(at + 0x20)) };
  };
  const strtab = section(shstrndx);
  const info = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameEnd = elf.indexOf(0, strtab.offset + s.name);
    if (elf.toString("latin1", strtab.offset + s.name, nameEnd) !== ".modinfo") continue;
    if (s.offset + s.size > elf.length) bad(".modinfo out of bounds");
    for (const entry of elf.toString("utf8", s.offset, s.offset + s.size).split("\0")) {
      const eq = entry.indexOf("=");
      if (eq <= 0) continue;
      const key = entry.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), entry.slice(eq + 1)]);
    }
    return info;
  }
  return bad("no .modinfo section");
}

/** A module as a plain .ko, decompressing .ko.xz / .ko.zst / .ko.gz (newer Debian kernels ship them compressed). */
async function readModule(path: string): Promise<Buffer> {
  if (path.endsWith(".ko")) return readFileSync(path);
  if (path.endsWith(".gz")) return gunzipSync(readFileSync(path));
  const tool = path.endsWith(".xz") ? "xz" : "zstd";
  const tmp = mkdtempSync(join(tmpdir(), "lg-kmod-"));
  try {
    const copy = join(tmp, basename(path));
    copyFileSync(path, copy);
    const r = await run([tool, "-d", "-q", copy], { timeoutMs: 60_000 }).catch((err: unknown) => {
      throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${basename(path)} is compressed and ${tool} is not installed (apt-get install ${tool === "xz" ? "xz-utils" : "zstd"})`, { cause: err });
    });
    const out = copy.replace(/\.(xz|zst)$/, "");
    if (r.code !== 0 || !existsSync(out)) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${tool} -d ${basename(path)} failed: ${r.stderr.trim()}`);
    return readFileSync(out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

interface LoadableModule {
  name: string;
  data: Buffer;
}

/**
 * `wanted` plus everything they depend on, dependencies first: the order finit_module needs.
 * Dependencies come from each module's own `depends=` (the package ships no modules.dep: depmod
 * writes it at install time from this same field).
 */
export async function resolveModules(index: ReadonlyMap<string, string>, wanted: readonly string[]): Promise<LoadableModule[]> {
  const ordered: LoadableModule[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = async (name: string, chain: readonly string[]): Promise<void> => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") throw new LuminaGuardError("IMAGE_BUILD_FAILED", `module dependency cycle: ${[...chain, name].join(" → ")}`);
    const path = index.get(name);
    if (!path) {
      const via = chain.length > 0 ? ` (needed by ${chain.at(-1) ?? ""})` : "";
      throw new LuminaGuardError("IMAGE_BUILD_FAILED", `kernel module ${name}${via} is not in the package`);
    }
    state.set(name, "visiting");
    const data = await readModule(path);
    const depends = (modinfo(data).get("depends") ?? []).flatMap((d) => d.split(",")).map((d) => d.trim().replace(/-/g, "_")).filter(Boolean);
    for (const dep of depends) await visit(dep, [...chain, name]);
    state.set(name, "done");
    ordered.push({ name, data });
  };
  for (const name of wanted) await visit(name, []);
  return ordered;
}
