// Fault injection: named fault points inside the runtime, armed only by the fault harness and tests.
//
// Off (the default) every point is one check of `faultsOn`, a boolean that is false unless
// LUMINAGUARD_FAULTS was set when this module loaded or a test called armFaults(): no fault code runs,
// nothing is allocated. The harness (`luminaguard bench faults`) sets the variable in the child
// process that runs each cell; nothing in the product sets either. Format:
//   LUMINAGUARD_FAULTS=point[:key=value[;key=value...]][,point...]
// keys: times=N|always (how many hits fire, default 1), after=N (let the first N hits pass),
//       op=<guest op> (only requests of this op: guest-eio, guest-enospc, slow-io, corrupt-frame),
//       ms=N (slow-io's delay; guest-crash's delay after the call starts).
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { log } from "../log.js";

export const FAULT_POINTS = [
  /** Sandbox.create: the backend's spawn fails as a failed fork/exec would (EAGAIN). */
  "spawn",
  /** microvm: restoring the snapshot fails; the backend falls back to a cold boot. */
  "restore",
  /** A call in flight: the sandbox's host processes are SIGKILLed `ms` after it starts. */
  "guest-crash",
  /** The guest agent answers the request with EIO (host side, at the protocol layer). */
  "guest-eio",
  /** The guest agent answers the request with ENOSPC (host side, at the protocol layer). */
  "guest-enospc",
  /** The request reaches the guest `ms` late. */
  "slow-io",
  /** One frame from the guest arrives with its JSON body damaged. */
  "corrupt-frame",
  /** Appending to the audit log fails with EIO. */
  "audit-write",
  /** An upstream MCP server answers a call with a JSON-RPC internal error. */
  "upstream-mcp",
] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];

const specSchema = z.strictObject({
  times: z.number().int().min(1).or(z.literal(Infinity)),
  after: z.number().int().min(0),
  op: z.string().min(1).max(64).optional(),
  ms: z.number().int().min(0).max(600_000).optional(),
});
export type FaultSpec = z.infer<typeof specSchema>;

interface Armed {
  spec: FaultSpec;
  hits: number;
  fired: number;
}

const armed = new Map<FaultPoint, Armed>();

/** True only when a fault is armed (harness or test); every fault point checks this first. */
export let faultsOn = false;

/** Parses LUMINAGUARD_FAULTS (see the top of this file); throws INVALID_ARGUMENT on anything else. */
export function parseFaults(text: string): Map<FaultPoint, FaultSpec> {
  const out = new Map<FaultPoint, FaultSpec>();
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const [name, rest = ""] = item.split(/:(.*)/s, 2) as [string, string?];
    if (!(FAULT_POINTS as readonly string[]).includes(name)) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `LUMINAGUARD_FAULTS: unknown fault point ${JSON.stringify(name)}; known: ${FAULT_POINTS.join(", ")}`);
    }
    const raw: Record<string, unknown> = { times: 1, after: 0 };
    for (const kv of rest.split(";").filter((s) => s !== "")) {
      const [k = "", v = ""] = kv.split("=", 2);
      raw[k] = k === "op" ? v : v === "always" ? Infinity : Number(v);
    }
    const parsed = specSchema.safeParse(raw);
    if (!parsed.success) throw new LuminaGuardError("INVALID_ARGUMENT", `LUMINAGUARD_FAULTS: bad spec for ${name}: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    out.set(name as FaultPoint, parsed.data);
  }
  return out;
}

/** Arms faults (replacing any armed before). For the fault harness and tests only. */
export function armFaults(faults: Map<FaultPoint, FaultSpec> | Partial<Record<FaultPoint, Partial<FaultSpec>>>): void {
  armed.clear();
  const entries = faults instanceof Map ? [...faults] : (Object.entries(faults) as Array<[FaultPoint, Partial<FaultSpec>]>);
  for (const [point, spec] of entries) armed.set(point, { spec: { times: 1, after: 0, ...spec }, hits: 0, fired: 0 });
  faultsOn = armed.size > 0;
}

export function disarmFaults(): void {
  armed.clear();
  faultsOn = false;
}

/** How many times each armed point has fired. */
export function faultsFired(): Partial<Record<FaultPoint, number>> {
  return Object.fromEntries([...armed].map(([p, a]) => [p, a.fired]));
}

/**
 * Whether `point` fires on this hit (for `op`, when the spec names one); returns its spec when it
 * does. Callers check `faultsOn` first, so this never runs when nothing is armed.
 */
export function fault(point: FaultPoint, op?: string): FaultSpec | undefined {
  const a = armed.get(point);
  if (!a) return undefined;
  if (a.spec.op !== undefined && a.spec.op !== op) return undefined;
  a.hits++;
  if (a.hits <= a.spec.after || a.fired >= a.spec.times) return undefined;
  a.fired++;
  return a.spec;
}

/** An Error as node's fs or child_process would throw it (errno code), marked as injected. */
export function injectedErrno(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${what}: ${code} (injected fault)`), { code, injected: true });
}

const fromEnv = process.env["LUMINAGUARD_FAULTS"];
if (fromEnv !== undefined && fromEnv !== "") {
  armFaults(parseFaults(fromEnv));
  // Never silent: a process with faults armed fails on purpose.
  log.warn({ faults: fromEnv }, "fault injection is armed (LUMINAGUARD_FAULTS): this process fails on purpose");
}
