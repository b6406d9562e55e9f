// Builds the minimal guest kernel from Debian's linux-source-6.1 (tinyconfig + our fragment), cached by content hash.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { cacheDir } from "../paths.js";
import { hashInputs } from "../util/hash.js";
import { packageRoot } from "../util/pkg.js";
import { run } from "../util/proc.js";
import { memoized } from "../util/memo.js";
import { z } from "zod";

const KERNEL_SOURCE_TARBALL = "/usr/src/linux-source-6.1.tar.xz";
const BUILD_TIMEOUT_MS = 60 * 60 * 1000;

export function kernelFragmentPath(): string {
  return join(packageRoot(), "src", "image", "kernel.config.fragment");
}

/** CONFIG_X=y lines the built .config must contain; a missing one means the fragment did not apply. */
function requiredOptions(fragment: string): string[] {
  return fragment
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^CONFIG_[A-Z0-9_]+=y$/.test(l));
}

/** The kernel source's package version and size: part of the kernel's key, remembered per tarball (util/memo.ts). */
async function sourceIdentity(): Promise<string> {
  const id = await memoized("linux-source", z.string(), existsSync(KERNEL_SOURCE_TARBALL) ? KERNEL_SOURCE_TARBALL : undefined, async () => {
    const r = await run(["dpkg-query", "-W", "-f", "${Version}", "linux-source-6.1"], { timeoutMs: 10_000 }).catch(() => undefined);
    const st = statSync(KERNEL_SOURCE_TARBALL);
    return `linux-source-6.1:${r?.code === 0 ? r.stdout : "?"}:${st.size}`;
  });
  if (id === undefined) {
    throw new LuminaGuardError(
      "IMAGE_BUILD_FAILED",
      `kernel source ${KERNEL_SOURCE_TARBALL} not found: apt-get install linux-source-6.1 (or use --kernel debian)`,
    );
  }
  return id;
}

export async function minimalKernelHash(): Promise<string> {
  // Keyed by the fragment's content, not by where it lives in the tree.
  return hashInputs([kernelFragmentPath()], [await sourceIdentity(), "tinyconfig+fragment v1"], dirname(kernelFragmentPath())).slice(0, 16);
}

interface KernelBuild {
  path: string;
  hash: string;
  built: boolean;
}

/** Returns the cached PVH vmlinux, building it (about 3 to 7 minutes on 2 cores) when missing. */
export async function ensureMinimalKernel(options: { force?: boolean; log?: (line: string) => void; signal?: AbortSignal } = {}): Promise<KernelBuild> {
  const say = options.log ?? (() => undefined);
  const hash = await minimalKernelHash();
  const outDir = join(cacheDir(), "kernel", hash);
  const out = join(outDir, "vmlinux");
  if (!options.force && existsSync(out)) return { path: out, hash, built: false };

  const work = join(cacheDir(), "kernel", `build-${hash}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const step = async (what: string, argv: string[], cwd: string, timeoutMs = BUILD_TIMEOUT_MS): Promise<void> => {
    let lines = 0;
    let last = Date.now();
    const r = await run(argv, {
      cwd,
      timeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
      onOutput: (chunk) => {
        lines += chunk.toString("latin1").split("\n").length - 1;
        if (Date.now() - last > 5000) {
          last = Date.now();
          say(`kernel: ${what}: ${lines} steps`);
        }
      },
    });
    if (r.code !== 0) {
      throw new LuminaGuardError("IMAGE_BUILD_FAILED", `kernel ${what} failed (exit ${r.code ?? r.signal}):\n${(r.stderr || r.stdout).slice(-4000)}`);
    }
  };
  try {
    say(`kernel: unpacking ${KERNEL_SOURCE_TARBALL}`);
    await step("unpack", ["tar", "-xf", KERNEL_SOURCE_TARBALL, "-C", work], work);
    const src = join(work, "linux-source-6.1");
    say("kernel: configuring (tinyconfig + fragment)");
    await step("tinyconfig", ["make", "tinyconfig"], src, 300_000);
    const fragment = readFileSync(kernelFragmentPath(), "utf8");
    const config = join(src, ".config");
    const merged = `${readFileSync(config, "utf8")}\n${fragment}\n`;
    writeFileSync(config, merged);
    await step("olddefconfig", ["make", "olddefconfig"], src, 300_000);
    const final = readFileSync(config, "utf8");
    const missing = requiredOptions(fragment).filter((opt) => !final.includes(`\n${opt}\n`));
    if (missing.length > 0) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `kernel config lost options: ${missing.join(", ")}`);
    const jobs = String(Math.max(1, cpus().length));
    say(`kernel: compiling with make -j${jobs} (a few minutes)`);
    await step("compile", ["make", `-j${jobs}`, "vmlinux"], src);
    mkdirSync(outDir, { recursive: true });
    copyFileSync(join(src, ".config"), join(outDir, "config"));
    copyFileSync(join(src, "vmlinux"), `${out}.tmp`);
    renameSync(`${out}.tmp`, out);
    say(`kernel: built ${out}`);
    return { path: out, hash, built: true };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
