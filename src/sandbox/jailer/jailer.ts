// The host side's jail: builds lg-jailer, picks each sandbox's unprivileged host identity, lays out what it may see.
import { closeSync, constants, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { createHash, randomInt } from "node:crypto";
import { join } from "node:path";
import { LuminaGuardError } from "../../errors.js";
import { cacheDir, runSubdir } from "../../paths.js";
import { hashInputs } from "../../util/hash.js";
import { packageRoot } from "../../util/pkg.js";
import { run } from "../../util/proc.js";
import { seccompFilterBytes } from "../namespace/seccomp.js";

/** Where things appear inside the jail: fixed names, so no host path ever reaches a QEMU option. */
export const JAIL = {
  kernel: "/vm/kernel",
  initrd: "/vm/initrd",
  ram: "/vm/ram",
  run: "/run/vm",
  workspace: "/workspace",
} as const;

export interface JailBind {
  kind: "ro" | "rw" | "dev";
  src: string;
  dst: string;
}

export interface VmmIdentity {
  uid: number;
  gid: number;
  /** Whether we switch to it (root) or run as ourselves (an ordinary user has nothing to drop). */
  switched: boolean;
  release(): void;
}

export interface JailerBuild {
  path: string;
  seccompPath: string;
  hash: string;
}

/**
 * Host identities when LuminaGuard runs as root: uid BASE+slot, one per live sandbox (so one VMM or
 * bwrap can neither signal, ptrace nor read another), and gid BASE shared by all (it owns the snapshot
 * RAM files every micro-VM clone maps). No passwd entry is needed; LUMINAGUARD_VMM_ID_BASE moves the
 * range if it collides.
 */
export function vmmIdBase(): number {
  const raw = process.env["LUMINAGUARD_VMM_ID_BASE"];
  const base = raw === undefined ? 2_100_000_000 : Number(raw);
  if (!Number.isInteger(base) || base < 100_000 || base > 4_000_000_000) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `LUMINAGUARD_VMM_ID_BASE must be an integer between 100000 and 4000000000, not ${raw ?? ""}`);
  }
  return base;
}

const SLOTS = 65_535;

/** A fresh identity for one VMM; its lock file keeps two live VMs from sharing a uid. */
export function allocateIdentity(): VmmIdentity {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) return { uid, gid, switched: false, release: () => undefined };
  const base = vmmIdBase();
  const dir = runSubdir("vmm-ids");
  for (let attempt = 0; attempt < 64; attempt++) {
    const slot = randomInt(1, SLOTS + 1);
    const lock = join(dir, String(slot));
    try {
      closeSync(openSync(lock, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
    } catch {
      continue;
    }
    return {
      uid: base + slot,
      gid: base,
      switched: true,
      release: () => {
        try {
          unlinkSync(lock);
        } catch {
          /* already released */
        }
      },
    };
  }
  throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", "no free VMM identity (64 random slots were taken)");
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
