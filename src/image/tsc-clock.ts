// The host's TSC frequency, which a Debian kernel under TCG must be told (tsc_early_khz) or it hangs calibrating.
import { readFileSync } from "node:fs";
import { LuminaGuardError } from "../errors.js";
import { run } from "../util/proc.js";

interface TscReading {
  khz: number;
  /** Where the number came from, for the build log. */
  source: string;
}

const PLAUSIBLE_KHZ = { min: 100_000, max: 10_000_000 };

function plausible(khz: number): boolean {
  return Number.isFinite(khz) && khz >= PLAUSIBLE_KHZ.min && khz <= PLAUSIBLE_KHZ.max;
}

/**
 * The host kernel's own TSC calibration as printed at boot, if the log is readable and still holds
 * it. Under TCG the guest reads the host's TSC, so this is exactly the rate it will see.
 */
export function tscFromKernelLog(log: string): TscReading | undefined {
  const refined = [...log.matchAll(/tsc: Refined TSC clocksource calibration: ([0-9.]+) MHz/g)].at(-1);
  const detected = [...log.matchAll(/tsc: Detected ([0-9.]+) MHz TSC/g)].at(-1);
  for (const [m, source] of [[refined, "kernel log (refined TSC calibration)"], [detected, "kernel log (detected TSC)"]] as const) {
    const khz = Math.round(Number(m?.[1]) * 1000);
    if (m && plausible(khz)) return { khz, source };
  }
  return undefined;
}

/** `cpu MHz` of the first CPU: the TSC rate on VMs and constant-TSC CPUs without frequency scaling. */
export function tscFromCpuinfo(cpuinfo: string): TscReading | undefined {
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo);
  const khz = Math.round(Number(m?.[1]) * 1000);
  return m && plausible(khz) ? { khz, source: "/proc/cpuinfo cpu MHz" } : undefined;
}

/**
 * Kernel log first (`dmesg`, readable without privileges where kernel.dmesg_restrict=0, and
 * by root), then /proc/cpuinfo, which on a host with CPU frequency scaling shows the current clock
 * rather than the TSC's.
 */
export async function hostTscKhz(): Promise<TscReading> {
  const dmesg = await run(["dmesg"], { timeoutMs: 5000 }).catch(() => undefined);
  const fromLog = dmesg?.code === 0 ? tscFromKernelLog(dmesg.stdout) : undefined;
  if (fromLog) return fromLog;
  const fromCpuinfo = tscFromCpuinfo(readFileSync("/proc/cpuinfo", "utf8"));
  if (fromCpuinfo) return fromCpuinfo;
  throw new LuminaGuardError("IMAGE_BUILD_FAILED", "cannot tell the host's TSC frequency (no tsc line in dmesg, no cpu MHz in /proc/cpuinfo)");
}
