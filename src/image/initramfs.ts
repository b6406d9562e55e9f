// Writes the guest's initramfs as an uncompressed newc cpio archive: our agent as /init, static busybox, kernel modules.
import { readFileSync } from "node:fs";
import { LuminaGuardError } from "../errors.js";

interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  /** Target of a symlink. */
  link?: string;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(entry: CpioEntry, ino: number, size: number): Buffer {
  const name = Buffer.from(`${entry.name}\0`, "utf8");
  const hex = (n: number): string => n.toString(16).padStart(8, "0");
  const fields = [
    "070701",
    hex(ino),
    hex(entry.mode),
    hex(0), // uid
    hex(0), // gid
    hex(entry.mode & S_IFDIR ? 2 : 1),
    hex(0), // mtime: fixed, so the same inputs give the same bytes
    hex(size),
    hex(0),
    hex(0),
    hex(0),
    hex(0),
    hex(name.length),
    hex(0),
  ].join("");
  const head = Buffer.concat([Buffer.from(fields, "ascii"), name]);
  return Buffer.concat([head, Buffer.alloc(pad4(head.length))]);
}

function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const entry of entries) {
    const body = entry.link !== undefined ? Buffer.from(entry.link, "utf8") : (entry.data ?? Buffer.alloc(0));
    parts.push(header(entry, ino++, body.length), body, Buffer.alloc(pad4(body.length)));
  }
  parts.push(header({ name: "TRAILER!!!", mode: 0 }, 0, 0));
  const all = Buffer.concat(parts);
  return Buffer.concat([all, Buffer.alloc((512 - (all.length % 512)) % 512)]);
}

interface InitramfsInputs {
  agentPath: string;
  busyboxPath: string;
  /** Applet names busybox provides; each becomes /bin/NAME → busybox. */
  applets: readonly string[];
  /** Kernel modules the agent loads at boot, in load order (a kernel that has them built in needs none). */
  modules?: readonly { name: string; path: string }[];
}

/** Where the agent (sys.c) looks for modules to load, and the file listing them in load order. */
const GUEST_MODULE_DIR = "lib/modules/lg";

/** The guest userland: busybox for commands, the agent as PID 1, the modules its kernel needs, and nothing else. */
export function buildInitramfs(inputs: InitramfsInputs): Buffer {
  const dir = (name: string, mode = 0o755): CpioEntry => ({ name, mode: S_IFDIR | mode });
  const file = (name: string, path: string): CpioEntry => ({ name, mode: S_IFREG | 0o755, data: readFileSync(path) });
  const text = (name: string, content: string): CpioEntry => ({ name, mode: S_IFREG | 0o644, data: Buffer.from(content) });
  const entries: CpioEntry[] = [
    ...["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "etc", "root", "workspace", "run"].map((d) => dir(d)),
    dir("tmp", 0o1777),
    file("init", inputs.agentPath),
    file("bin/busybox", inputs.busyboxPath),
    text("etc/passwd", "root:x:0:0:root:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
    text("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    text("etc/hosts", "127.0.0.1 localhost\n"),
  ];
  const modules = inputs.modules ?? [];
  if (modules.length > 0) {
    entries.push(dir("lib"), dir("lib/modules"), dir(GUEST_MODULE_DIR));
    for (const m of modules) {
      if (!/^[A-Za-z0-9_-]+$/.test(m.name)) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `bad module name ${JSON.stringify(m.name)}`);
      entries.push({ name: `${GUEST_MODULE_DIR}/${m.name}.ko`, mode: S_IFREG | 0o644, data: readFileSync(m.path) });
    }
    entries.push(text(`${GUEST_MODULE_DIR}/order`, modules.map((m) => `${m.name}.ko\n`).join("")));
  }
  for (const applet of [...new Set(inputs.applets)].sort()) {
    if (!/^[a-z0-9_.[-]+$/.test(applet) || applet === "busybox") continue;
    entries.push({ name: `bin/${applet}`, mode: S_IFLNK | 0o777, link: "busybox" });
  }
  return cpioArchive(entries);
}
