// Proves, once per process, that bubblewrap can build the sandbox here: namespaces, uid map, seccomp.
import { createHash } from "node:crypto";
import { release, version as kernelVersion } from "node:os";
import { LuminaGuardError } from "../../errors.js";
import { z } from "zod";
import { findOnPath, memoized } from "../../util/memo.js";
import { killGroup, run, spawnGroup } from "../../util/proc.js";
import { SANDBOX_UID, isolationArgs, systemDirArgs } from "./bwrap.js";
import { probeCgroups, type CgroupSupport } from "./cgroup.js";
import { shieldStdio } from "./inherited-fds.js";
import { seccompFilterBytes } from "./seccomp.js";

interface BwrapProbe {
  ok: boolean;
  reason?: string;
  version?: string;
  /** How long the trial sandbox took to run /bin/cat, a floor for every spawn. */
  trialMs?: number;
}

export interface NamespaceProbe {
  bwrap: BwrapProbe;
  cgroups: CgroupSupport;
  kernel: string;
}

const TRIAL_TIMEOUT_MS = 10_000;

/** Turns bwrap's complaint into something a user can act on. */
function explain(stderr: string): string {
  const s = stderr.trim();
  if (/No permissions to creat(e|ing) new namespace|unprivileged user namespaces|Operation not permitted|setting up uid map/i.test(s)) {
    return (
      `bubblewrap cannot create a user namespace (${s.split("\n")[0] ?? ""}): unprivileged user namespaces are disabled; ` +
      "enable them with sysctl kernel.unprivileged_userns_clone=1 (Debian) or user.max_user_namespaces=15000, " +
      "and on Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile for bwrap)"
    );
  }
  if (/Unknown option|Unrecognized option/i.test(s)) {
    return `bubblewrap is too old (${s.split("\n")[0] ?? ""}): version 0.8 or newer is needed (--disable-userns, --size); apt-get install bubblewrap from a current release`;
  }
  if (/seccomp/i.test(s)) return `the kernel refused the seccomp filter (${s}): a kernel with CONFIG_SECCOMP_FILTER is required`;
  return `bubblewrap failed to start a trial sandbox: ${s || "no error output"}`;
}

async function bwrapVersion(): Promise<BwrapProbe> {
  const path = findOnPath("bwrap");
  if (path === undefined) return { ok: false, reason: "bubblewrap not installed: apt-get install bubblewrap (or dnf install bubblewrap)" };
  try {
    // Remembered per bwrap binary (util/memo.ts): no version probe on a command's path.
    const version = await memoized("bwrap-version", z.string(), path, async (bin) => {
      const r = await run([bin, "--version"], { timeoutMs: TRIAL_TIMEOUT_MS });
      if (r.code !== 0) throw new Error(`bwrap --version failed: ${r.stderr.trim()}`);
      return r.stdout.trim().replace(/^bubblewrap\s+/, "");
    });
    return { ok: true, ...(version === undefined ? {} : { version }) };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

/**
 * Runs the real isolation flags around `cat /proc/self/status` and checks what the kernel says: a
 * seccomp filter in force, no_new_privs, no capabilities, and the unprivileged uid.
 */
function trialArgv(): string[] {
  return [
    "bwrap",
    ...isolationArgs(),
    ...systemDirArgs(),
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--size",
    String(1 << 20),
    "--tmpfs",
    "/tmp",
    "--remount-ro",
    "/",
    "--clearenv",
    "--seccomp",
    "3",
    "--",
    "/bin/cat",
    "/proc/self/status",
  ];
}

async function trial(): Promise<BwrapProbe> {
  const started = performance.now();
  const argv = trialArgv();
  const child = spawnGroup(argv, { stdio: shieldStdio(["ignore", "pipe", "pipe", "pipe"]), env: {} });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on("data", (d: Buffer) => out.push(d));
  child.stderr?.on("data", (d: Buffer) => err.push(d));
  const seccompSink = child.stdio[3] as NodeJS.WritableStream | null;
  seccompSink?.on("error", () => undefined);
  seccompSink?.end(seccompFilterBytes());
  const timer = setTimeout(() => killGroup(child), TRIAL_TIMEOUT_MS);
  const result = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
    child.on("error", (e) => resolve({ code: null, error: e }));
    child.on("close", (code) => resolve({ code }));
  });
  clearTimeout(timer);
  killGroup(child);
  const trialMs = Math.round((performance.now() - started) * 10) / 10;
  if (result.error) return { ok: false, reason: `cannot run bwrap: ${result.error.message}` };
  const stderr = Buffer.concat(err).toString("utf8");
  if (result.code !== 0) return { ok: false, reason: explain(stderr) };
  const status = Buffer.concat(out).toString("utf8");
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(status)?.[1];
  const problems: string[] = [];
  if (field("Seccomp") !== "2") problems.push(`seccomp filter not in force (Seccomp: ${field("Seccomp") ?? "?"})`);
  if (field("NoNewPrivs") !== "1") problems.push("no_new_privs not set");
  if (field("CapEff") !== "0000000000000000") problems.push(`capabilities left: CapEff ${field("CapEff") ?? "?"}`);
  if (field("Uid") !== String(SANDBOX_UID)) problems.push(`sandbox uid not applied (Uid: ${field("Uid") ?? "?"})`);
  if (problems.length > 0) return { ok: false, reason: `bubblewrap trial sandbox is not isolated: ${problems.join("; ")}` };
  return { ok: true, trialMs };
}

const trialPassed = z.object({ ok: z.literal(true), trialMs: z.number().optional() });

let freshTrial = false;

/** The next probe in this process runs the trial sandbox even when a pass is remembered (`luminaguard doctor`). */
export function probeNamespaceFresh(): void {
  freshTrial = true;
  cached = undefined;
}

/**
 * The trial, run once per (bwrap binary, kernel build, uid, isolation flags, seccomp filter) and its
 * pass remembered on disk (util/memo.ts): a command does not pay a trial sandbox every time. A failure
 * is never remembered, and any change to the binary, the kernel or what the trial checks runs it again.
 */
async function rememberedTrial(): Promise<BwrapProbe> {
  const bin = findOnPath("bwrap");
  if (bin === undefined) return trial();
  const key = createHash("sha256")
    .update([release(), kernelVersion(), String(process.getuid?.() ?? -1), String(SANDBOX_UID), ...trialArgv()].join("\0"))
    .update(seccompFilterBytes())
    .digest("hex")
    .slice(0, 16);
  let failed: BwrapProbe | undefined;
  const passed = await memoized(
    `bwrap-trial-${key}`,
    trialPassed,
    bin,
    async () => {
      const t = await trial();
      if (!t.ok) {
        failed = t;
        throw new Error(t.reason ?? "bubblewrap trial failed");
      }
      return { ok: true as const, ...(t.trialMs === undefined ? {} : { trialMs: t.trialMs }) };
    },
    { fresh: freshTrial },
  ).catch((err: unknown) => {
    if (failed) return undefined;
    throw err;
  });
  if (failed) return failed;
  if (passed === undefined) return trial();
  return { ok: true, ...(passed.trialMs === undefined ? {} : { trialMs: passed.trialMs }) };
}

let cached: Promise<NamespaceProbe> | undefined;

/** Probes bwrap (installed, runs, seccomp) and cgroups once per process; never throws. */
export function probeNamespace(): Promise<NamespaceProbe> {
  cached ??= (async (): Promise<NamespaceProbe> => {
    const kernel = release();
    if (process.platform !== "linux") {
      return { bwrap: { ok: false, reason: "the namespace backend needs Linux" }, cgroups: probeCgroups(), kernel };
    }
    if (process.arch !== "x64") {
      return { bwrap: { ok: false, reason: `the namespace backend's seccomp filter is x86_64 only; this host is ${process.arch}` }, cgroups: probeCgroups(), kernel };
    }
    const version = await bwrapVersion();
    if (!version.ok) return { bwrap: version, cgroups: probeCgroups(), kernel };
    let t: BwrapProbe;
    try {
      t = await rememberedTrial();
    } catch (err) {
      t = { ok: false, reason: `bubblewrap trial failed: ${err instanceof LuminaGuardError || err instanceof Error ? err.message : String(err)}` };
    }
    return { bwrap: { ...t, ...(version.version === undefined ? {} : { version: version.version }) }, cgroups: probeCgroups(), kernel };
  })();
  return cached;
}
