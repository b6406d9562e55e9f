// Debian's packaged kernel (behind linux-image-amd64) plus the modules our guest needs, fetched with apt and never installed.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { cacheDir } from "../paths.js";
import { hashInputs } from "../util/hash.js";
import { run, type RunResult } from "../util/proc.js";
import { indexModules, resolveModules } from "./kmod.js";
import { extractPvhKernel } from "./vmlinux.js";

export const DEBIAN_KERNEL_META_PACKAGE = "linux-image-amd64";

/**
 * What the guest needs that Debian builds as modules: the virtio-mmio transport (microvm has no
 * PCI), the console port the agent talks over, and 9p over virtio for /workspace. Their own
 * dependencies (virtio, virtio_ring, 9pnet, netfs, fscache) are resolved from the modules.
 */
const DEBIAN_GUEST_MODULES: readonly { module: string; config: string }[] = [
  { module: "virtio_mmio", config: "CONFIG_VIRTIO_MMIO" },
  { module: "virtio_console", config: "CONFIG_VIRTIO_CONSOLE" },
  { module: "9pnet_virtio", config: "CONFIG_NET_9P_VIRTIO" },
  { module: "9p", config: "CONFIG_9P_FS" },
];

const DEBIAN_KERNEL_FORMAT = "debian-kernel v1";
const APT_TIMEOUT_MS = 10 * 60 * 1000;

export interface DebianPackage {
  name: string;
  version: string;
}

const kernelMetaSchema = z.object({
  hash: z.string(),
  package: z.string(),
  version: z.string(),
  release: z.string(),
  boot: z.enum(["pvh", "bzimage"]),
  kernel: z.string(),
  modules: z.array(z.string()),
});

interface DebianKernel {
  /** The file QEMU boots: the unpacked PVH vmlinux, or the package's bzImage when it cannot be unpacked. */
  path: string;
  hash: string;
  built: boolean;
  package: DebianPackage;
  /** `uname -r` of the kernel, e.g. 6.1.0-56-amd64. */
  release: string;
  boot: "pvh" | "bzimage";
  /** Module files in load order (dependencies first). */
  modules: { name: string; path: string }[];
}

type Say = (line: string) => void;

/** Cache key of the unpacked kernel: the exact package and the modules taken from it. */
export function debianKernelHash(pkg: DebianPackage): string {
  const modules = DEBIAN_GUEST_MODULES.map((m) => `${m.module}:${m.config}`).join(",");
  return hashInputs([], [pkg.name, pkg.version, modules, DEBIAN_KERNEL_FORMAT]).slice(0, 16);
}

/** apt's ways of saying its package lists do not know a package (or a version that left the mirror). */
function listsOutOfDate(r: RunResult): boolean {
  return /Unable to locate package|No packages found|was not found|404\s+Not Found|Failed to fetch/i.test(`${r.stdout}\n${r.stderr}`);
}

async function apt(argv: string[], options: { cwd?: string; signal?: AbortSignal } = {}): Promise<RunResult> {
  return await run(argv, { timeoutMs: APT_TIMEOUT_MS, ...options }).catch((err: unknown) => {
    throw new LuminaGuardError("IMAGE_BUILD_FAILED", `cannot run ${argv[0] ?? "apt"}: the debian kernel needs apt (a Debian or Ubuntu host)`, { cause: err });
  });
}

/** Runs an apt command; if apt says it does not know the package, refreshes the lists once (saying so) and retries. */
async function aptWithUpdate(argv: string[], say: Say, options: { cwd?: string; signal?: AbortSignal } = {}): Promise<RunResult> {
  const first = await apt(argv, options);
  if (first.code === 0 || !listsOutOfDate(first)) return first;
  say(`apt does not know what ${argv.join(" ")} asks for (${lastLine(first)}): running apt-get update`);
  const update = await apt(["apt-get", "update"], options.signal ? { signal: options.signal } : {});
  if (update.code !== 0) {
    throw new LuminaGuardError("IMAGE_BUILD_FAILED", `apt-get update failed (it needs root and a reachable mirror): ${lastLine(update)}`);
  }
  return await apt(argv, options);
}

function lastLine(r: RunResult): string {
  return (r.stderr.trim() || r.stdout.trim()).split("\n").at(-1) ?? `exit ${r.code ?? r.signal}`;
}

function aptField(stanza: string, field: string): string | undefined {
  return new RegExp(`^${field}: (.*)$`, "m").exec(stanza)?.[1]?.trim();
}

/** The versioned package linux-image-amd64 currently points at, e.g. linux-image-6.1.0-56-amd64 6.1.192-2. */
export async function resolveDebianKernelPackage(say: Say, signal?: AbortSignal): Promise<DebianPackage> {
  const opts = signal ? { signal } : {};
  const show = async (name: string): Promise<string> => {
    const r = await aptWithUpdate(["apt-cache", "show", "--no-all-versions", name], say, opts);
    if (r.code !== 0) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `apt-cache show ${name} failed: ${lastLine(r)}`);
    return r.stdout;
  };
  const meta = await show(DEBIAN_KERNEL_META_PACKAGE);
  const target = (aptField(meta, "Depends") ?? "")
    .split(",")
    .flatMap((alt) => alt.split("|"))
    .map((d) => /^\s*(linux-image-[0-9][^\s(]*)\s*(?:\(\s*=\s*([^)\s]+)\s*\))?/.exec(d))
    .find((m) => m !== null);
  if (!target?.[1]) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${DEBIAN_KERNEL_META_PACKAGE} does not depend on a versioned linux-image package`);
  const name = target[1];
  const version = target[2] ?? aptField(await show(name), "Version");
  if (!version) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `apt-cache show ${name} has no Version`);
  return { name, version };
}

function readKernelMeta(dir: string, hash: string): DebianKernel | undefined {
  const file = join(dir, "kernel.json");
  if (!existsSync(file)) return undefined;
  const parsed = kernelMetaSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
  if (!parsed.success || parsed.data.hash !== hash) return undefined;
  const m = parsed.data;
  const modules = m.modules.map((name) => ({ name, path: join(dir, "modules", `${name}.ko`) }));
  const path = join(dir, m.kernel);
  if (![path, ...modules.map((x) => x.path)].every((p) => existsSync(p))) return undefined;
  return { path, hash, built: false, package: { name: m.package, version: m.version }, release: m.release, boot: m.boot, modules };
}

/** `CONFIG_X=y` (built in), `=m` (a module) or missing, from the package's boot/config-*. */
function configValue(config: string, symbol: string): "y" | "m" | undefined {
  const v = new RegExp(`^${symbol}=(y|m)$`, "m").exec(config)?.[1];
  return v === "y" || v === "m" ? v : undefined;
}

function onlyFile(dir: string, prefix: string, what: string): string {
  const found = existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(prefix)) : [];
  if (found.length !== 1 || found[0] === undefined) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `expected one ${what} in the package, found ${found.length}`);
  return join(dir, found[0]);
}

/** Returns the cached kernel and modules of `pkg`, downloading and unpacking the package when missing. */
export async function ensureDebianKernel(pkg: DebianPackage, options: { force?: boolean; log?: Say; signal?: AbortSignal } = {}): Promise<DebianKernel> {
  const say = options.log ?? (() => undefined);
  const hash = debianKernelHash(pkg);
  const base = join(cacheDir(), "kernel");
  const dir = join(base, `debian-${hash}`);
  const cached = options.force ? undefined : readKernelMeta(dir, hash);
  if (cached) return cached;

  mkdirSync(base, { recursive: true });
  const work = mkdtempSync(join(base, `.debian-${hash}-`));
  const opts = options.signal ? { signal: options.signal } : {};
  try {
    say(`debian kernel: downloading ${pkg.name} ${pkg.version} with apt-get download (not installed system-wide)`);
    const dl = await aptWithUpdate(["apt-get", "download", `${pkg.name}=${pkg.version}`], say, { cwd: work, ...opts });
    if (dl.code !== 0) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `apt-get download ${pkg.name}=${pkg.version} failed: ${lastLine(dl)}`);
    const deb = onlyFile(work, `${pkg.name}_`, `${pkg.name} .deb`);
    say(`debian kernel: unpacking ${deb.split("/").at(-1) ?? deb}`);
    const root = join(work, "root");
    const x = await run(["dpkg-deb", "-x", deb, root], { timeoutMs: APT_TIMEOUT_MS, ...opts });
    if (x.code !== 0) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `dpkg-deb -x failed: ${lastLine(x)}`);
    rmSync(deb, { force: true });

    const vmlinuz = onlyFile(join(root, "boot"), "vmlinuz-", "boot/vmlinuz-*");
    const release = vmlinuz.split("/").at(-1)?.slice("vmlinuz-".length) ?? "";
    const config = readFileSync(onlyFile(join(root, "boot"), "config-", "boot/config-*"), "utf8");
    const needed: string[] = [];
    for (const { module, config: symbol } of DEBIAN_GUEST_MODULES) {
      const v = configValue(config, symbol);
      if (!v) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${pkg.name} is built without ${symbol} (${module}); the guest cannot run on it`);
      if (v === "m") needed.push(module);
    }
    const modRoot = [join(root, "lib", "modules", release), join(root, "usr", "lib", "modules", release)].find((d) => existsSync(d));
    if (!modRoot) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${pkg.name} has no lib/modules/${release}`);
    const modules = await resolveModules(indexModules(join(modRoot, "kernel")), needed);
    say(`debian kernel: modules in load order: ${modules.map((m) => m.name).join(" ") || "(none needed)"}`);

    const out = join(work, "out");
    mkdirSync(join(out, "modules"), { recursive: true });
    for (const m of modules) writeFileSync(join(out, "modules", `${m.name}.ko`), m.data);
    say("debian kernel: unpacking vmlinux from the bzImage (PVH boot skips in-guest decompression)");
    let boot: "pvh" | "bzimage" = "pvh";
    let kernel = "vmlinux";
    if (!(await extractPvhKernel(vmlinuz, join(out, kernel)))) {
      say("debian kernel: the bzImage cannot be unpacked for PVH boot; booting it as is (slower)");
      boot = "bzimage";
      kernel = "vmlinuz";
      copyFileSync(vmlinuz, join(out, kernel));
    }
    const meta: z.infer<typeof kernelMetaSchema> = { hash, package: pkg.name, version: pkg.version, release, boot, kernel, modules: modules.map((m) => m.name) };
    writeFileSync(join(out, "kernel.json"), `${JSON.stringify(meta, null, 2)}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(out, dir);
    const ready = readKernelMeta(dir, hash);
    if (!ready) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `the unpacked kernel in ${dir} is incomplete`);
    say(`debian kernel: ${release} ready in ${dir}`);
    return { ...ready, built: true };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
