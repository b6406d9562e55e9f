// `luminaguard image build`: agent + kernel + initramfs, each cached by content hash, tied together by a manifest.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { LuminaGuardError } from "../../errors.js";
import { cacheDir } from "../../paths.js";
import { hashInputs } from "../../util/hash.js";
import { run } from "../../util/proc.js";
import { agentHash, ensureAgent } from "./agent.js";
import { buildInitramfs } from "./initramfs.js";
import { ensureMinimalKernel, minimalKernelHash } from "./kernel.js";

export const BUSYBOX_PATH = "/bin/busybox";
const IMAGE_FORMAT = "initramfs-newc v1";

export const imageManifestSchema = z.object({
  hash: z.string(),
  kernelKind: z.enum(["minimal"]),
  kernel: z.string(),
  initrd: z.string(),
  agent: z.string(),
  agentHash: z.string(),
  kernelHash: z.string(),
  cmdline: z.string(),
  createdAt: z.string(),
});
export type ImageManifest = z.infer<typeof imageManifestSchema>;

/** Kernel command line measured to boot fast under TCG (DESIGN.md); reboot=t lets -no-reboot end QEMU. */
export const GUEST_CMDLINE =
  "console=ttyS0 quiet loglevel=1 panic=-1 mitigations=off tsc=reliable no_timer_check pci=off reboot=t rdinit=/init";

async function busyboxIdentity(): Promise<{ id: string; applets: string[] }> {
  if (!existsSync(BUSYBOX_PATH)) {
    throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${BUSYBOX_PATH} not found: apt-get install busybox-static`);
  }
  const r = await run([BUSYBOX_PATH, "--list"], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${BUSYBOX_PATH} --list failed: ${r.stderr}`);
  const file = await run(["file", "-b", BUSYBOX_PATH], { timeoutMs: 10_000 }).catch(() => undefined);
  if (file?.code === 0 && !file.stdout.includes("statically linked")) {
    throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${BUSYBOX_PATH} is not statically linked: apt-get install busybox-static`);
  }
  return { id: hashInputs([BUSYBOX_PATH]).slice(0, 16), applets: r.stdout.split("\n").filter(Boolean) };
}

async function imageHash(): Promise<{ hash: string; kernelHash: string; agentHash: string }> {
  const kernel = await minimalKernelHash();
  const agent = await agentHash();
  const busybox = await busyboxIdentity();
  const hash = hashInputs([], [kernel, agent, busybox.id, GUEST_CMDLINE, IMAGE_FORMAT]).slice(0, 16);
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

/** The current image if it is built and matches the sources; undefined otherwise. */
export async function currentImage(): Promise<ImageManifest | undefined> {
  const { hash } = await imageHash();
  return readManifest(manifestPath(hash));
}

/** Like currentImage, but a missing image is an error telling the user what to run. */
export async function requireImage(): Promise<ImageManifest> {
  const image = await currentImage().catch((err: unknown) => {
    throw new LuminaGuardError("IMAGE_MISSING", `cannot check the guest image: ${(err as Error).message}`, { cause: err });
  });
  if (!image) throw new LuminaGuardError("IMAGE_MISSING", "the guest image is not built for this version: run `luminaguard image build`");
  return image;
}

export async function buildImage(options: { force?: boolean; log?: (line: string) => void; signal?: AbortSignal } = {}): Promise<ImageManifest & { built: boolean }> {
  const say = options.log ?? (() => undefined);
  const ids = await imageHash();
  const mpath = manifestPath(ids.hash);
  const existing = options.force ? undefined : readManifest(mpath);
  if (existing) {
    say(`image ${ids.hash} is up to date`);
    return { ...existing, built: false };
  }
  const common = { log: say, ...(options.force ? { force: true } : {}) };
  const agent = await ensureAgent(common);
  say(`agent: ${agent.path}${agent.built ? " (built)" : " (cached)"}`);
  const kernel = await ensureMinimalKernel({ ...common, ...(options.signal ? { signal: options.signal } : {}) });
  say(`kernel: ${kernel.path}${kernel.built ? " (built)" : " (cached)"}`);
  const busybox = await busyboxIdentity();
  const dir = join(cacheDir(), "images", ids.hash);
  mkdirSync(dir, { recursive: true });
  const initrd = join(dir, "initrd.cpio");
  writeFileSync(`${initrd}.tmp`, buildInitramfs({ agentPath: agent.path, busyboxPath: BUSYBOX_PATH, applets: busybox.applets }));
  renameSync(`${initrd}.tmp`, initrd);
  const manifest: ImageManifest = {
    hash: ids.hash,
    kernelKind: "minimal",
    kernel: kernel.path,
    initrd,
    agent: agent.path,
    agentHash: agent.hash,
    kernelHash: kernel.hash,
    cmdline: GUEST_CMDLINE,
    createdAt: new Date().toISOString(),
  };
  writeFileSync(`${mpath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(`${mpath}.tmp`, mpath);
  say(`image ${ids.hash} ready in ${dir}`);
  return { ...manifest, built: true };
}
