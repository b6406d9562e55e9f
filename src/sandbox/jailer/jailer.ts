// The host side's jail: builds lg-jailer and lays out what it may see (its unprivileged host identity: identity.ts).
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { LuminaGuardError } from "../../errors.js";
import { cacheDir } from "../../paths.js";
import { hashInputs } from "../../util/hash.js";
import { packageRoot } from "../../util/pkg.js";
import { run } from "../../util/proc.js";
import { seccompFilterBytes } from "../namespace/seccomp.js";
import type { VmmIdentity } from "./identity.js";
import { Injector } from "./injector.js";

/** Where things appear inside the jail: fixed names, so no host path ever reaches a QEMU option. */
export const JAIL = {
  kernel: "/vm/kernel",
  initrd: "/vm/initrd",
  ram: "/vm/ram",
  run: "/run/vm",
  /** The 9p share's root: read-only, holding only the directory the workspace is mounted on. */
  share: "/share",
  workspace: "/share/ws",
} as const;

/** The workspace's directory in the share's root, as the guest is told it (`init` mount.subdir). */
export const SHARE_WORKSPACE_DIR = "ws";

export interface JailBind {
  kind: "ro" | "rw" | "dev";
  src: string;
  dst: string;
}

export interface JailerBuild {
  path: string;
  seccompPath: string;
  hash: string;
}

function jailerSourceDir(): string {
  return join(packageRoot(), "src", "sandbox", "jailer");
}

let built: Promise<JailerBuild> | undefined;

/** The cached lg-jailer binary and the VMM's extra seccomp filter, built when their inputs change. */
export function ensureJailer(): Promise<JailerBuild> {
  built ??= buildJailer().catch((err: unknown) => {
    built = undefined;
    throw err;
  });
  return built;
}

async function buildJailer(): Promise<JailerBuild> {
  const filter = seccompFilterBytes();
  const hash = hashInputs([join(jailerSourceDir(), "jailer.c")], [createHash("sha256").update(filter).digest("hex")], packageRoot()).slice(0, 16);
  const dir = join(cacheDir(), "jailer", hash);
  const path = join(dir, "lg-jailer");
  const seccompPath = join(dir, "vmm.seccomp");
  if (existsSync(path) && existsSync(seccompPath) && statSync(seccompPath).size === filter.length) return { path, seccompPath, hash };
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = `${path}.tmp-${process.pid}`;
  const r = await run(["cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", tmp, join(jailerSourceDir(), "jailer.c")], { timeoutMs: 120_000 });
  if (r.code !== 0) {
    rmSync(tmp, { force: true });
    throw new LuminaGuardError("IMAGE_BUILD_FAILED", `lg-jailer build failed (apt-get install build-essential):\n${r.stderr || r.stdout}`);
  }
  writeFileSync(`${seccompPath}.tmp`, filter, { mode: 0o644 });
  renameSync(`${seccompPath}.tmp`, seccompPath);
  renameSync(tmp, path);
  return { path, seccompPath, hash };
}

export interface JailPlan {
  identity: VmmIdentity;
  binds: JailBind[];
  /** Host directory shown read-write at JAIL.workspace through an idmapped mount (owner ↔ VMM identity). */
  workspace?: { src: string; uid: number; gid: number; dst?: string };
  /** gid of /dev/kvm, kept as the only supplementary group when KVM is used. */
  kvmGid?: number;
  /**
   * For a launcher that builds its own sandbox (bubblewrap): no new root, binds staged under
   * STAGE_ROOT, descriptors 3..keepFds-1 kept open, no extra seccomp (the launcher applies the
   * sandbox's own filter to what it runs).
   */
  stage?: { keepFds: number; detachUnder?: string[] };
  /** Cgroup directories the jailer joins before anything else (root only), so all it starts is born inside. */
  cgroups?: readonly string[];
}

/** Where staged binds appear to the launcher (lg-jailer's NEW_ROOT). */
export const STAGE_ROOT = "/tmp";

/** lg-jailer's argv up to and including `--`. */
export function jailerArgs(build: JailerBuild, plan: JailPlan): string[] {
  const args = [build.path, "--uid", String(plan.identity.uid), "--gid", String(plan.identity.gid)];
  if (plan.stage) {
    args.push("--stage", "--keep-fds", String(plan.stage.keepFds));
    for (const dir of plan.stage.detachUnder ?? []) args.push("--detach-under", dir);
  }
  else args.push("--seccomp", build.seccompPath);
  if (plan.kvmGid !== undefined) args.push("--kvm-gid", String(plan.kvmGid));
  for (const dir of plan.cgroups ?? []) args.push("--cgroup", dir);
  for (const b of plan.binds) args.push(`--${b.kind}`, b.src, b.dst);
  if (plan.workspace) {
    // Run as an ordinary user the VMM already is the workspace owner: a plain read-write bind.
    const dst = plan.workspace.dst ?? JAIL.workspace;
    if (plan.identity.switched) args.push("--idmap", plan.workspace.src, dst, String(plan.workspace.uid), String(plan.workspace.gid));
    else args.push("--rw", plan.workspace.src, dst);
  }
  args.push("--");
  return args;
}

let injector: Injector | undefined;

/** The one running `lg-jailer --serve` of this process, started now if it is not. */
export async function startInjector(): Promise<Injector> {
  const build = await ensureJailer();
  injector ??= new Injector(build.path);
  injector.start();
  return injector;
}

/** A running process the host started, named by its pid and its start time (procfs field 22). */
export interface StartedProcess {
  pid: number;
  start: string;
}

/**
 * Mounts `workspace` (nosuid, nodev, noexec) at `dst` in the mount namespace of the running process
 * `target`, a jail started ahead of its sandbox (a spare VMM, or a file jail waiting beside it),
 * through the running `lg-jailer --serve` (injector.ts). The process must still be the one the host
 * started (its start time), so a reused pid never receives it. Run as root the workspace is idmapped
 * (its owner's files are `identity`'s) and the process must run as `identity`, an identity only that
 * jail holds; run as an ordinary user the jail is a user namespace of that user, which the jailer
 * enters (lg-jailer --inject).
 */
export async function injectWorkspaceInto(target: StartedProcess, identity: VmmIdentity | undefined, workspace: string, dst: string, what = "its jail"): Promise<void> {
  const root = (process.geteuid?.() ?? 1) === 0;
  if (root && !identity?.switched) {
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", "run as root, a workspace is given to a running jail only when it runs as an identity of its own");
  }
  const uid = root && identity ? identity.uid : (process.getuid?.() ?? -1);
  const gid = root && identity ? identity.gid : (process.getgid?.() ?? -1);
  const st = statSync(workspace);
  try {
    await (await startInjector()).inject({ pid: target.pid, start: target.start, uid, gid, src: workspace, dst, diskUid: st.uid, diskGid: st.gid });
  } catch (err) {
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `cannot give the workspace to ${what}: ${(err as Error).message}`, { cause: err });
  }
}
