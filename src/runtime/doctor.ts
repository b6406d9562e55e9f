// What works on this machine and why not: backends, accelerator, versions. Shown by `luminaguard doctor`.
import { existsSync } from "node:fs";
import { release } from "node:os";
import { currentImage, currentKernelKind, imageBuildCommand } from "../image/build.js";
import { packageVersion } from "../util/pkg.js";
import { cacheDir } from "../paths.js";
import type { BackendProbe } from "../sandbox/types.js";
import { probeBackend } from "./backends.js";
import { probeNamespaceFresh } from "../sandbox/namespace/probe.js";

export interface DoctorReport {
  luminaguard: string;
  node: string;
  hostKernel: string;
  cgroup: "v1" | "v2" | "none";
  cacheDir: string;
  image: { built: boolean; hash?: string; reason?: string };
  backends: BackendProbe[];
  /** What `--backend auto` picks here. */
  auto: string | null;
}

export function cgroupVersion(): "v1" | "v2" | "none" {
  if (existsSync("/sys/fs/cgroup/cgroup.controllers")) return "v2";
  if (existsSync("/sys/fs/cgroup/memory") || existsSync("/sys/fs/cgroup/pids")) return "v1";
  return "none";
}

export async function doctor(): Promise<DoctorReport> {
  let image: DoctorReport["image"];
  try {
    const m = await currentImage();
    image = m ? { built: true, hash: m.hash } : { built: false, reason: `not built for this version: run \`${imageBuildCommand(currentKernelKind())}\`` };
  } catch (err) {
    image = { built: false, reason: (err as Error).message };
  }
  // The doctor runs the trial sandbox again rather than trusting a remembered pass.
  probeNamespaceFresh();
  const backends = await Promise.all([probeBackend("microvm"), probeBackend("namespace")]);
  return {
    luminaguard: packageVersion(),
    node: process.version,
    hostKernel: release(),
    cgroup: cgroupVersion(),
    cacheDir: cacheDir(),
    image,
    backends,
    auto: backends.find((b) => b.available)?.backend ?? null,
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lines = [
    `luminaguard ${r.luminaguard}  node ${r.node}  host kernel ${r.hostKernel}  cgroup ${r.cgroup}`,
    `cache: ${r.cacheDir}`,
    `guest image: ${r.image.built ? `built (${r.image.hash})` : r.image.reason}`,
    "",
  ];
  for (const b of r.backends) {
    lines.push(`${b.available ? "✔" : "✘"} ${b.backend}${b.available ? "" : `: ${b.reason ?? "unavailable"}`}`);
    for (const [k, v] of Object.entries(b.details)) lines.push(`    ${k}: ${v}`);
    if (b.backend === "namespace") lines.push("    note: shares the host kernel (weaker isolation than a micro-VM)");
  }
  lines.push("", `--backend auto picks: ${r.auto ?? "nothing (no backend works)"}`);
  return lines.join("\n");
}
