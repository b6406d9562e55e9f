// `luminaguard image build`: agent + kernel (minimal or Debian's) + initramfs, each cached by content hash, tied together by a manifest.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { cacheDir } from "../paths.js";
import { hashInputs } from "../util/hash.js";
import { run } from "../util/proc.js";
import { fileIdentity, memoized } from "../util/memo.js";
import { agentHash, ensureAgent } from "./agent.js";
import { DEBIAN_KERNEL_META_PACKAGE, debianKernelHash, ensureDebianKernel, resolveDebianKernelPackage, type DebianPackage } from "./debian.js";
import { buildInitramfs } from "./initramfs.js";
import { ensureMinimalKernel, minimalKernelHash } from "./kernel.js";
import { hostTscKhz } from "./tsc-clock.js";

const BUSYBOX_PATH = "/bin/busybox";
const IMAGE_FORMAT = "initramfs-newc v1";

/** `minimal`: our kernel built from linux-source-6.1 (fast). `debian`: Debian's packaged kernel, the fallback. */
export const KERNEL_KINDS = ["minimal", "debian"] as const;
export type KernelKind = (typeof KERNEL_KINDS)[number];

const imageManifestSchema = z.object({
  hash: z.string(),
  kernelKind: z.enum(KERNEL_KINDS),
  kernel: z.string(),
  initrd: z.string(),
  agent: z.string(),
  agentHash: z.string(),
  kernelHash: z.string(),
  cmdline: z.string(),
  createdAt: z.string(),
  /** debian only: the package the kernel came from, its `uname -r`, and the modules the initramfs loads. */
  kernelPackage: z.object({ name: z.string(), version: z.string() }).optional(),
  kernelRelease: z.string().optional(),
  modules: z.array(z.string()).optional(),
});
export type ImageManifest = z.infer<typeof imageManifestSchema>;

/**
 * Kernel command line measured to boot fast under TCG (DESIGN.md); reboot=t lets -no-reboot end QEMU.
 * random.trust_cpu=on: the snapshot template's CRNG is ready at boot, seeded from RDRAND (under TCG,
 * QEMU answers it from the host's getrandom), so a clone's init does not make it ready: that flips
 * kernel static keys (text patching, which under TCG throws translated code away) on every restore.
 * Every clone starts from the template's CRNG state, and init reseeds it from the host's fresh seed
 * at once (guest-agent/sys.c; sandbox/microvm/microvm.test.ts fails without that reseed).
 */
const GUEST_CMDLINE =
  "console=ttyS0 quiet loglevel=1 panic=-1 mitigations=off tsc=reliable no_timer_check pci=off reboot=t random.trust_cpu=on rdinit=/init";

/**
 * Both kernels are told the host's TSC rate. Debian's hangs under TCG after "Marking TSC unstable"
 * without it (DESIGN.md). The minimal one boots without it but cannot calibrate its TSC under TCG
 * either (no PIT/HPET reference), falls back to the jiffies clocksource and so can never stop its
 * tick: an idle VM then took 250 timer interrupts a second, 3.7 % of a host core under TCG, where
 * with a TSC clocksource it takes ~4 and ~0 %. Debian's kernel knows every option (none ends up
 * "Unknown" in its boot log).
 */
function tscCmdline(tscKhz: number): string {
  return `${GUEST_CMDLINE} tsc_early_khz=${tscKhz}`;
}
const debianCmdline = tscCmdline;

/** What a minimal image's command line may be: ours, with or without the TSC rate the build found. */
function isMinimalCmdline(cmdline: string): boolean {
  if (cmdline === GUEST_CMDLINE) return true;
  return cmdline.startsWith(GUEST_CMDLINE) && /^ tsc_early_khz=[1-9][0-9]{5,7}$/.test(cmdline.slice(GUEST_CMDLINE.length));
}

/**
 * Debian's kernel finds virtio-mmio devices only through ACPI (it lacks
 * CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES); the minimal kernel has no ACPI and reads them from its
 * command line. Templates and their clones must agree on it, so it follows from the image alone.
 */
export function imageNeedsAcpi(image: ImageManifest): boolean {
  return image.kernelKind === "debian";
}

/** The command that builds (and selects) the image of `kind`. */
export function imageBuildCommand(kind: KernelKind): string {
  return kind === "debian" ? "luminaguard image build --kernel debian" : "luminaguard image build";
}

const busyboxFacts = z.object({ id: z.string(), applets: z.array(z.string()) });

/** busybox's content hash and applets, remembered per busybox binary (no process on a command's path). */
async function busyboxIdentity(): Promise<{ id: string; applets: string[] }> {
  const facts = await memoized("busybox", busyboxFacts, existsSync(BUSYBOX_PATH) ? BUSYBOX_PATH : undefined, async () => {
    const r = await run([BUSYBOX_PATH, "--list"], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${BUSYBOX_PATH} --list failed: ${r.stderr}`);
    const file = await run(["file", "-b", BUSYBOX_PATH], { timeoutMs: 10_000 }).catch(() => undefined);
    if (file?.code === 0 && !file.stdout.includes("statically linked")) {
      throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${BUSYBOX_PATH} is not statically linked: apt-get install busybox-static`);
    }
    return { id: hashInputs([BUSYBOX_PATH]).slice(0, 16), applets: r.stdout.split("\n").filter(Boolean) };
  });
  if (!facts) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${BUSYBOX_PATH} not found: apt-get install busybox-static`);
  return facts;
}

interface ImageIds {
  hash: string;
  kernelHash: string;
  agentHash: string;
}

/**
 * The sources an image is made of (agent, kernel fragment, busybox) are the installed package's and
 * do not change under a running process: hashed once per process, not at every spawn (~2-5 ms each).
 */
let minimalIds: Promise<ImageIds> | undefined;
function minimalImageHash(): Promise<ImageIds> {
  minimalIds ??= hashMinimalImage();
  minimalIds.catch(() => (minimalIds = undefined));
  return minimalIds;
}

async function hashMinimalImage(): Promise<ImageIds> {
  const kernel = await minimalKernelHash();
  const agent = await agentHash();
  const busybox = await busyboxIdentity();
  // The TSC rate is the build machine's, found when the image is built: the hash says only that the
  // command line carries one (runtime computes this hash and must not probe the host to do it).
  const hash = hashInputs([], [kernel, agent, busybox.id, GUEST_CMDLINE, "tsc_early_khz=<host>", IMAGE_FORMAT]).slice(0, 16);
  return { hash, kernelHash: kernel, agentHash: agent };
}

/** The package is pinned by the image (a newer Debian kernel in apt's lists does not make it stale). */
async function debianImageHash(pkg: DebianPackage, cmdline: string): Promise<ImageIds> {
  const kernel = debianKernelHash(pkg);
  const agent = await agentHash();
  const busybox = await busyboxIdentity();
  const hash = hashInputs([], [kernel, agent, busybox.id, cmdline, IMAGE_FORMAT, "debian"]).slice(0, 16);
  return { hash, kernelHash: kernel, agentHash: agent };
}

function manifestPath(hash: string): string {
  return join(cacheDir(), "images", hash, "manifest.json");
}

function readManifest(path: string): ImageManifest | undefined {
  if (!existsSync(path)) return undefined;
  const parsed = imageManifestSchema.safeParse(JSON.parse(readFileSync(path, "utf8")));
  if (!parsed.success) return undefined;
  const m = parsed.data;
  return [m.kernel, m.initrd, m.agent].every((p) => existsSync(p)) ? m : undefined;
}

/** Which image the runtime uses: the last one `image build` made (minimal when none was chosen). */
const currentPointerSchema = z.object({
  kernelKind: z.enum(KERNEL_KINDS),
  hash: z.string().regex(/^[0-9a-f]{16}$/),
  selectedAt: z.string(),
});
type CurrentPointer = z.infer<typeof currentPointerSchema>;

function currentPointerPath(): string {
  return join(cacheDir(), "images", "current.json");
}

function readCurrentPointer(): CurrentPointer | undefined {
  const path = currentPointerPath();
  if (!existsSync(path)) return undefined;
  try {
    return currentPointerSchema.parse(JSON.parse(readFileSync(path, "utf8")));
  } catch (err) {
    log.warn({ path, err: (err as Error).message }, "ignoring an unreadable current-image pointer; using the minimal kernel");
    return undefined;
  }
}

function writeCurrentPointer(image: ImageManifest): void {
  const pointer: CurrentPointer = { kernelKind: image.kernelKind, hash: image.hash, selectedAt: new Date().toISOString() };
  const path = currentPointerPath();
  mkdirSync(join(cacheDir(), "images"), { recursive: true });
  writeFileSync(`${path}.tmp-${process.pid}`, `${JSON.stringify(pointer, null, 2)}\n`);
  renameSync(`${path}.tmp-${process.pid}`, path);
}

/** The kernel kind the runtime uses. */
export function currentKernelKind(): KernelKind {
  return readCurrentPointer()?.kernelKind ?? "minimal";
}

/** A built debian image whose recorded inputs still give its hash with today's agent, busybox and command line. */
async function verifiedDebianImage(hash: string): Promise<ImageManifest | undefined> {
  const m = readManifest(manifestPath(hash));
  if (!m || m.kernelKind !== "debian" || m.hash !== hash || !m.kernelPackage) return undefined;
  const tsc = / tsc_early_khz=([0-9]+)$/.exec(m.cmdline)?.[1];
  if (!tsc) return undefined;
  const ids = await debianImageHash(m.kernelPackage, debianCmdline(Number(tsc)));
  return ids.hash === hash ? m : undefined;
}

/** The current image if it is built and matches the sources; undefined otherwise. */
export async function currentImage(): Promise<ImageManifest | undefined> {
  const pointer = readCurrentPointer();
  if (pointer?.kernelKind === "debian") return await verifiedDebianImage(pointer.hash);
  const { hash } = await minimalImageHash();
  const m = readManifest(manifestPath(hash));
  return m && m.kernelKind === "minimal" && isMinimalCmdline(m.cmdline) ? m : undefined;
}

/**
 * The image requireImage found last, and what it read to find it: every spawn asks, and reading and
 * validating the pointer and the manifest each time was a tenth of a restore's host time. It is used
 * again only while the pointer and the manifest are the same files, unchanged, and the kernel,
 * initramfs and agent still exist (`image build` replaces both files by rename).
 */
let lastImage: { pointer: string | undefined; manifest: string; image: ImageManifest } | undefined;

/** Like currentImage, but a missing image is an error telling the user what to run. */
export async function requireImage(): Promise<ImageManifest> {
  const pointer = fileIdentity(currentPointerPath());
  const cached = lastImage;
  if (
    cached &&
    cached.pointer === pointer &&
    cached.manifest === fileIdentity(manifestPath(cached.image.hash)) &&
    [cached.image.kernel, cached.image.initrd, cached.image.agent].every((p) => existsSync(p))
  ) {
    return cached.image;
  }
  lastImage = undefined;
  const kind = currentKernelKind();
  const image = await currentImage().catch((err: unknown) => {
    throw new LuminaGuardError("IMAGE_MISSING", `cannot check the guest image: ${(err as Error).message}`, { cause: err });
  });
  if (!image) {
    const which = kind === "debian" ? "the guest image with Debian's kernel" : "the guest image";
    throw new LuminaGuardError("IMAGE_MISSING", `${which} is not built for this version: run \`${imageBuildCommand(kind)}\``);
  }
  // The pointer was stamped before it was read: a change meanwhile is read at the next call. A
  // manifest is written once for its hash (its content hash), last of its image.
  const manifest = fileIdentity(manifestPath(image.hash));
  if (manifest !== undefined) lastImage = { pointer, manifest, image };
  return image;
}

interface BuildImageOptions {
  /** Which kernel; the image built becomes the current one. Default minimal. */
  kernel?: KernelKind;
  force?: boolean;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

type BuiltImage = ImageManifest & { built: boolean };

export async function buildImage(options: BuildImageOptions = {}): Promise<BuiltImage> {
  const kind = options.kernel ?? "minimal";
  const image = kind === "debian" ? await buildDebianImage(options) : await buildMinimalImage(options);
  writeCurrentPointer(image);
  options.log?.(`current image: ${image.hash} (${kind} kernel)`);
  return image;
}

/** Writes the initramfs and the manifest of a new image; the manifest goes last, so a half-built image is never current. */
function writeImage(ids: ImageIds, initrdBytes: Buffer, fields: Omit<ImageManifest, "hash" | "initrd" | "agentHash" | "kernelHash" | "createdAt">): ImageManifest {
  const dir = join(cacheDir(), "images", ids.hash);
  mkdirSync(dir, { recursive: true });
  const initrd = join(dir, "initrd.cpio");
  writeFileSync(`${initrd}.tmp`, initrdBytes);
  renameSync(`${initrd}.tmp`, initrd);
  const manifest: ImageManifest = {
    hash: ids.hash,
    ...fields,
    initrd,
    agentHash: ids.agentHash,
    kernelHash: ids.kernelHash,
    createdAt: new Date().toISOString(),
  };
  const mpath = manifestPath(ids.hash);
  writeFileSync(`${mpath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(`${mpath}.tmp`, mpath);
  return manifest;
}

type ImageFields = Omit<ImageManifest, "hash" | "initrd" | "agentHash" | "kernelHash" | "createdAt" | "agent" | "kernel">;

/** What a kernel step hands the image: the file QEMU boots, the modules it loads, the manifest's kernel fields. */
interface ImageKernel {
  path: string;
  /** The progress line that says what was built or reused. */
  said: string;
  modules?: readonly { name: string; path: string }[];
  fields: ImageFields;
}

type KernelStep = (options: { log: (line: string) => void; force?: boolean; signal?: AbortSignal }) => Promise<ImageKernel>;

/** Every kind of image: the cached one when it is built, else agent → kernel → initramfs → manifest. */
async function buildWith(ids: ImageIds, options: BuildImageOptions, kernelStep: KernelStep): Promise<BuiltImage> {
  const say = options.log ?? (() => undefined);
  const existing = options.force ? undefined : readManifest(manifestPath(ids.hash));
  if (existing) {
    say(`image ${ids.hash} is up to date`);
    return { ...existing, built: false };
  }
  const common = { log: say, ...(options.force ? { force: true } : {}) };
  const agent = await ensureAgent(common);
  say(`agent: ${agent.path}${agent.built ? " (built)" : " (cached)"}`);
  const kernel = await kernelStep({ ...common, ...(options.signal ? { signal: options.signal } : {}) });
  say(kernel.said);
  const busybox = await busyboxIdentity();
  const initrd = buildInitramfs({ agentPath: agent.path, busyboxPath: BUSYBOX_PATH, applets: busybox.applets, ...(kernel.modules ? { modules: kernel.modules } : {}) });
  const { kernelKind, ...rest } = kernel.fields;
  const manifest = writeImage(ids, initrd, { kernelKind, kernel: kernel.path, agent: agent.path, ...rest });
  say(`image ${ids.hash} ready in ${join(cacheDir(), "images", ids.hash)}`);
  return { ...manifest, built: true };
}

async function buildMinimalImage(options: BuildImageOptions): Promise<BuiltImage> {
  return await buildWith(await minimalImageHash(), options, async (o) => {
    const kernel = await ensureMinimalKernel(o);
    const tsc = await hostTscKhz().catch((err: unknown) => {
      o.log(`host TSC rate unknown (${(err as Error).message}): the guest keeps the jiffies clock and a 250 Hz tick, idle VMs cost CPU`);
      return undefined;
    });
    if (tsc) o.log(`host TSC: ${tsc.khz} kHz (from ${tsc.source}), passed as tsc_early_khz`);
    const cmdline = tsc ? tscCmdline(tsc.khz) : GUEST_CMDLINE;
    return { path: kernel.path, said: `kernel: ${kernel.path}${kernel.built ? " (built)" : " (cached)"}`, fields: { kernelKind: "minimal", cmdline } };
  });
}

async function buildDebianImage(options: BuildImageOptions): Promise<BuiltImage> {
  const say = options.log ?? (() => undefined);
  say(`debian kernel: asking apt which package ${DEBIAN_KERNEL_META_PACKAGE} is`);
  const pkg = await resolveDebianKernelPackage(say, options.signal);
  say(`debian kernel: ${DEBIAN_KERNEL_META_PACKAGE} is ${pkg.name} ${pkg.version}`);
  const tsc = await hostTscKhz();
  say(`host TSC: ${tsc.khz} kHz (from ${tsc.source}), passed as tsc_early_khz`);
  const cmdline = debianCmdline(tsc.khz);
  return await buildWith(await debianImageHash(pkg, cmdline), options, async (o) => {
    const kernel = await ensureDebianKernel(pkg, o);
    return {
      path: kernel.path,
      said: `kernel: ${kernel.path} (${kernel.release}, ${kernel.boot} boot${kernel.built ? ", unpacked" : ", cached"})`,
      modules: kernel.modules,
      fields: { kernelKind: "debian", cmdline, kernelPackage: pkg, kernelRelease: kernel.release, modules: kernel.modules.map((m) => m.name) },
    };
  });
}
