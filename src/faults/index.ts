// Fault injection: named fault points inside the runtime, armed only by the fault harness and tests.
//
// Off (the default) every point is one check of `faultsOn`, a boolean that is false unless
// LUMINAGUARD_FAULTS was set when this module loaded or a test called armFaults(): no fault code runs,
// nothing is allocated. The harness (`luminaguard bench faults`) sets the variable in the child
// process that runs each cell; nothing in the product sets either. Format:
//   LUMINAGUARD_FAULTS=point[:key=value[;key=value...]][,point...]
// keys: times=N|always (how many hits fire, default 1), after=N (let the first N hits pass),
//       op=<guest op> (only requests of this op: guest-eio, guest-enospc, slow-io, corrupt-frame),
//       ms=N (slow-io's delay; guest-crash's and channel-cut's delay after the call starts),
//       channel=vm|jail (channel-cut: which channel of the sandbox, default the call's).
// A harness may also arm a call point (guest-crash, channel-cut) for one sandbox only, by its id
// (armSandboxFault): the chaos monkey cuts the channel of the sandbox it picked, not of every one.
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
  /**
   * A call in flight: the host end of its channel (the VM's, or the file jail's beside it for a file
   * tool) is destroyed as a broken pipe or socket would be: once the call's request is written (the
   * guest acts on it; its answer never arrives), or `ms` after the call starts when given. With
   * `channel=vm|jail`, that channel of the sandbox instead, as the call starts when it is not the
   * call's (a sandbox with one channel, namespace or a VM without a file jail: that one).
   */
  "channel-cut",
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
  /** channel-cut: which of the sandbox's channels (default: the call's); see FAULT_POINTS. */
  channel: z.enum(["vm", "jail"]).optional(),
  ms: z.number().int().min(0).max(600_000).optional(),
});
export type FaultSpec = z.infer<typeof specSchema>;

interface Armed {
  spec: FaultSpec;
  hits: number;
  fired: number;
}

const armed = new Map<FaultPoint, Armed>();

/** The points a harness may arm for one sandbox: those checked on a sandbox's call, which knows its id. */
export const SANDBOX_FAULT_POINTS = ["guest-crash", "channel-cut"] as const satisfies readonly FaultPoint[];
export type SandboxFaultPoint = (typeof SANDBOX_FAULT_POINTS)[number];

/** Points armed for one sandbox (by id), each removed once spent. */
const armedFor = new Map<string, Map<SandboxFaultPoint, Armed>>();

/** True only when a fault is armed (harness or test); every fault point checks this first. */
export let faultsOn = false;

/** Fired counts of per-sandbox faults already spent (kept for faultsFired). */
const firedFor = new Map<FaultPoint, number>();

function updateOn(): void {
  faultsOn = armed.size > 0 || armedFor.size > 0;
}

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
      raw[k] = k === "op" || k === "channel" ? v : v === "always" ? Infinity : Number(v);
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
  updateOn();
}

/**
 * Arms one call point for the sandbox `sandboxId` only (beside, and before, whatever is armed for
 * all): its next call (of `op`, when given) fires it. Replaces what was armed for that sandbox at
 * that point; spent after `times` hits (default 1). For the fault harness and tests only: the
 * chaos monkey's channel cut goes through here, never through the sandbox's private state.
 */
export function armSandboxFault(sandboxId: string, point: SandboxFaultPoint, spec: Partial<FaultSpec> = {}): void {
  if (!(SANDBOX_FAULT_POINTS as readonly string[]).includes(point)) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `${String(point)} cannot be armed for one sandbox; these can: ${SANDBOX_FAULT_POINTS.join(", ")}`);
  }
  const parsed = specSchema.safeParse({ times: 1, after: 0, ...spec });
  if (!parsed.success) throw new LuminaGuardError("INVALID_ARGUMENT", `bad spec for ${point}: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  let m = armedFor.get(sandboxId);
  if (!m) armedFor.set(sandboxId, (m = new Map()));
  m.set(point, { spec: parsed.data, hits: 0, fired: 0 });
  updateOn();
}

/** Forgets what was armed for one sandbox (called when it is killed, and by harnesses). */
export function disarmSandboxFaults(sandboxId: string): void {
  if (armedFor.delete(sandboxId)) updateOn();
}

export function disarmFaults(): void {
  armed.clear();
  armedFor.clear();
  firedFor.clear();
  faultsOn = false;
}

/** How many times each armed point has fired (for every sandbox and for one). */
export function faultsFired(): Partial<Record<FaultPoint, number>> {
  const out: Partial<Record<FaultPoint, number>> = Object.fromEntries([...armed].map(([p, a]) => [p, a.fired]));
  const add = (p: FaultPoint, n: number): void => void (out[p] = (out[p] ?? 0) + n);
  for (const [p, n] of firedFor) add(p, n);
  for (const m of armedFor.values()) for (const [p, a] of m) add(p, a.fired);
  return out;
}

function hit(a: Armed, op: string | undefined): FaultSpec | undefined {
  if (a.spec.op !== undefined && a.spec.op !== op) return undefined;
  a.hits++;
  if (a.hits <= a.spec.after || a.fired >= a.spec.times) return undefined;
  a.fired++;
  return a.spec;
}

/**
 * Whether `point` fires on this hit (for `op`, when the spec names one); returns its spec when it
 * does. `sandboxId`: the sandbox whose call this is, for the points armed for one sandbox (which
 * come first). Callers check `faultsOn` first, so this never runs when nothing is armed.
 */
export function fault(point: FaultPoint, op?: string, sandboxId?: string): FaultSpec | undefined {
  if (sandboxId !== undefined && armedFor.size > 0) {
    const m = armedFor.get(sandboxId);
    const a = m?.get(point as SandboxFaultPoint);
    if (m && a) {
      const spec = hit(a, op);
      if (a.fired >= a.spec.times) {
        // Spent: forgotten, so that a harness arming many sandboxes leaves nothing behind.
        firedFor.set(point, (firedFor.get(point) ?? 0) + a.fired);
        m.delete(point as SandboxFaultPoint);
        if (m.size === 0) disarmSandboxFaults(sandboxId);
      }
      if (spec) return spec;
    }
  }
  const a = armed.get(point);
  return a ? hit(a, op) : undefined;
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
