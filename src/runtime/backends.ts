// One backend instance per kind per process, and the `auto` choice: the strongest isolation that works here.
import { LuminaGuardError } from "../errors.js";
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
  if (choice !== "auto") {
    const probe = await probeBackend(choice);
    if (!probe.available) throw new LuminaGuardError("BACKEND_UNAVAILABLE", `${choice} backend unavailable: ${probe.reason ?? "unknown reason"}`);
    return getBackend(choice);
  }
  const reasons: string[] = [];
  for (const name of STRENGTH_ORDER) {
    const probe = await probeBackend(name);
    if (probe.available) return getBackend(name);
    reasons.push(`${name}: ${probe.reason ?? "unavailable"}`);
  }
  throw new LuminaGuardError("BACKEND_UNAVAILABLE", `no sandbox backend works here (${reasons.join("; ")}); run \`luminaguard doctor\``);
}
