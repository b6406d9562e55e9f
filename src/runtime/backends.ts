// One backend instance per kind per process, and the `auto` choice: the strongest isolation that works here.
import { LuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { MicroVmBackend } from "../sandbox/microvm/backend.js";
import { NamespaceBackend } from "../sandbox/namespace/backend.js";
import { fileToolsDefault } from "./file-tools.js";
import type { BackendChoice, BackendName, BackendProbe, SandboxBackend } from "../sandbox/types.js";

export { BACKEND_CHOICES, type BackendChoice } from "../sandbox/types.js";

const instances = new Map<BackendName, SandboxBackend>();
const probes = new Map<BackendName, Promise<BackendProbe>>();

export function getBackend(name: BackendName): SandboxBackend {
  let b = instances.get(name);
  if (!b) {
    // A VM's file tools run beside it in the namespace jail unless configured otherwise (fileTools.ts).
    b = name === "microvm" ? new MicroVmBackend({ fileJail: getBackend("namespace"), ...fileToolsDefault() }) : new NamespaceBackend();
    instances.set(name, b);
  }
  return b;
}

export function probeBackend(name: BackendName): Promise<BackendProbe> {
  let p = probes.get(name);
  if (!p) {
    p = getBackend(name).probe();
    probes.set(name, p);
  }
  return p;
}

/** Strongest first: a VM has its own kernel; the namespace sandbox shares the host's. */
const STRENGTH_ORDER: readonly BackendName[] = ["microvm", "namespace"];

export async function resolveBackend(choice: BackendChoice): Promise<SandboxBackend> {
  return (await resolveBackendChoice(choice)).backend;
}

let fallbackLogged = false;

/**
 * The backend for `choice`, and with `auto`, why it is not the strongest (`fallback`: e.g. "microvm
 * unavailable: ..."), which is logged once per process as a warning and put in each sandbox's info.
 */
export async function resolveBackendChoice(choice: BackendChoice): Promise<{ backend: SandboxBackend; fallback?: string }> {
  if (choice !== "auto") {
    const probe = await probeBackend(choice);
    if (!probe.available) throw new LuminaGuardError("BACKEND_UNAVAILABLE", `${choice} backend unavailable: ${probe.reason ?? "unknown reason"}`);
    return { backend: getBackend(choice) };
  }
  const reasons: string[] = [];
  for (const name of STRENGTH_ORDER) {
    const probe = await probeBackend(name);
    if (probe.available) {
      if (reasons.length === 0) return { backend: getBackend(name) };
      const fallback = `--backend auto fell back to ${name} (weaker isolation): ${reasons.join("; ")}`;
      if (!fallbackLogged) {
        fallbackLogged = true;
        log.warn({ backend: name, fallback }, "auto backend fell back");
      }
      return { backend: getBackend(name), fallback };
    }
    reasons.push(`${name} unavailable: ${probe.reason ?? "unknown reason"}`);
  }
  throw new LuminaGuardError("BACKEND_UNAVAILABLE", `no sandbox backend works here (${reasons.join("; ")}); run \`luminaguard doctor\``);
}
