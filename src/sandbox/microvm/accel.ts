// Chooses KVM or TCG by booting a real guest, never by trusting that /dev/kvm exists; the verdict is cached.
import { constants, accessSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { release } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { cacheDir } from "../../paths.js";
import { run } from "../../util/proc.js";
import { findOnPath, memoized } from "../../util/memo.js";
import type { ImageManifest } from "../../image/build.js";
import { QEMU_BINARY, type Accelerator } from "./qemu.js";

const accelVerdictSchema = z.object({
  accel: z.enum(["kvm", "tcg"]),
  reason: z.string(),
  key: z.string(),
  probedAt: z.string(),
  kvmBootMs: z.number().optional(),
});
export type AccelVerdict = z.infer<typeof accelVerdictSchema>;

const KVM_PROBE_TIMEOUT_MS = 8000;

let version: Promise<string | undefined> | undefined;

/**
 * QEMU's version line: asked once per QEMU binary (its identity: device, inode, size, mtime) and
 * remembered on disk (util/memo.ts), so no `qemu --version` runs on a command's path. No binary on
 * PATH is no version, whatever was remembered.
 */
export function qemuVersion(): Promise<string | undefined> {
  version ??= (async () => {
    const bin = findOnPath(QEMU_BINARY);
    if (bin === undefined) return undefined;
    return await memoized("qemu-version", z.string().min(1), bin, async (path) => {
      const r = await run([path, "--version"], { timeoutMs: 10_000 });
      const line = r.code === 0 ? (r.stdout.split("\n")[0] ?? "").trim() : "";
      if (!line) throw new Error("qemu --version failed");
      return line;
    });
  })().catch(() => undefined);
  return version;
}

function kvmUsable(): string | undefined {
  if (!existsSync("/dev/kvm")) return "no /dev/kvm";
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return "/dev/kvm is not readable and writable by this user (add it to the kvm group)";
  }
  return undefined;
}

/** Which hypervisor backs /dev/kvm, for the doctor: kvm-pvm cannot run stock kernels. */
export function kvmFlavour(): string {
  if (existsSync("/sys/module/kvm_pvm")) return "kvm-pvm (nested, shadow paging)";
  if (existsSync("/sys/module/kvm_intel")) return "kvm-intel";
  if (existsSync("/sys/module/kvm_amd")) return "kvm-amd";
  return existsSync("/dev/kvm") ? "unknown" : "none";
}

/**
 * Boots the image under KVM and waits for the guest agent; a guest that crashes, hangs or never
 * speaks means KVM does not work here (on kvm-pvm stock kernels die with "KVM internal error").
 */
async function bootsUnderKvm(tryBoot: BootTrial): Promise<{ ok: true; ms: number } | { ok: false; why: string }> {
  try {
    return { ok: true, ms: await tryBoot("kvm", KVM_PROBE_TIMEOUT_MS) };
  } catch (err) {
    const text = (err as Error).message;
    const line = text.split("\n").find((l) => /KVM|error|failed/i.test(l)) ?? text;
    return { ok: false, why: line.slice(0, 300) };
  }
}

/** Boots a throwaway VM under `accel` and resolves with the ms to a guest agent answer, or throws. */
type BootTrial = (accel: Accelerator, timeoutMs: number) => Promise<number>;

export async function probeAccelerator(
  image: ImageManifest,
  tryBoot: BootTrial,
  options: { refresh?: boolean } = {},
): Promise<AccelVerdict> {
  const forced = process.env["LUMINAGUARD_ACCEL"];
  const key = [(await qemuVersion()) ?? "no-qemu", release(), image.hash, kvmFlavour()].join("|");
  if (forced === "kvm" || forced === "tcg") {
    return { accel: forced, reason: `forced by LUMINAGUARD_ACCEL=${forced}`, key, probedAt: new Date().toISOString() };
  }
  const file = join(cacheDir(), "probe", "accel.json");
  if (!options.refresh && existsSync(file)) {
    const cached = accelVerdictSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
    if (cached.success && cached.data.key === key) return cached.data;
  }
  let verdict: AccelVerdict;
  const unusable = kvmUsable();
  if (unusable) {
    verdict = { accel: "tcg", reason: unusable, key, probedAt: new Date().toISOString() };
  } else {
    const r = await bootsUnderKvm(tryBoot);
    verdict = r.ok
      ? { accel: "kvm", reason: `a guest booted under KVM (${kvmFlavour()})`, key, probedAt: new Date().toISOString(), kvmBootMs: r.ms }
      : { accel: "tcg", reason: `/dev/kvm (${kvmFlavour()}) is present but a guest does not boot under it: ${r.why}`, key, probedAt: new Date().toISOString() };
  }
  mkdirSync(join(cacheDir(), "probe"), { recursive: true });
  writeFileSync(file, `${JSON.stringify(verdict, null, 2)}\n`);
  return verdict;
}
