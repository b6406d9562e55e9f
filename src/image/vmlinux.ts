// Unpacks the ELF vmlinux from a bzImage so QEMU can boot it PVH: no in-guest decompression, which under TCG costs ~2 s.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { run } from "../util/proc.js";

/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point QEMU looks for in an ELF kernel. */
const PVH_NOTE_TYPE = 18;

/** The compressed payload of a bzImage (boot protocol ≥ 2.08), without the 4-byte size kbuild appends. */
function bzImagePayload(bz: Buffer): Buffer | undefined {
  if (bz.length < 0x250 || bz.toString("latin1", 0x202, 0x206) !== "HdrS" || bz.readUInt16LE(0x206) < 0x208) return undefined;
  const setupSects = bz[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + bz.readUInt32LE(0x248);
  const length = bz.readUInt32LE(0x24c);
  if (length <= 4 || start + length > bz.length) return undefined;
  return bz.subarray(start, start + length - 4);
}

/** True for a 64-bit ELF that carries a PVH entry note. */
function hasPvhEntry(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 0x28 > elf.length || elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let at = Number(elf.readBigUInt64LE(ph + 0x08));
    const end = Math.min(elf.length, at + Number(elf.readBigUInt64LE(ph + 0x20)));
    while (at + 12 <= end) {
      const namesz = elf.readUInt32LE(at);
      const descsz = elf.readUInt32LE(at + 4);
      const type = elf.readUInt32LE(at + 8);
      const name = elf.toString("latin1", at + 12, at + 12 + Math.max(0, namesz - 1));
      if (name === "Xen" && type === PVH_NOTE_TYPE) return true;
      at += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

/**
 * Writes the vmlinux inside `bzImagePath` to `out` and returns true, or returns false (writing
 * nothing) when the payload's compression is not one we unpack or the result cannot boot PVH;
 * the caller then boots the bzImage itself.
 */
export async function extractPvhKernel(bzImagePath: string, out: string): Promise<boolean> {
  const payload = bzImagePayload(readFileSync(bzImagePath));
  if (!payload) return false;
  const magic = payload.subarray(0, 6).toString("hex");
  let elf: Buffer | undefined;
  if (magic.startsWith("1f8b")) {
    elf = gunzipSync(payload);
  } else {
    const tool = magic === "fd377a585a00" ? "xz" : magic.startsWith("28b52ffd") ? "zstd" : undefined;
    if (!tool) return false;
    const tmp = mkdtempSync(join(dirname(out), ".vmlinux-"));
    try {
      const packed = join(tmp, tool === "xz" ? "vmlinux.xz" : "vmlinux.zst");
      writeFileSync(packed, payload);
      const r = await run([tool, "-d", "-q", packed], { timeoutMs: 120_000 }).catch(() => undefined);
      if (r?.code === 0 && existsSync(join(tmp, "vmlinux"))) elf = readFileSync(join(tmp, "vmlinux"));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (!elf || !hasPvhEntry(elf)) return false;
  writeFileSync(`${out}.tmp`, elf);
  renameSync(`${out}.tmp`, out);
  return true;
}
