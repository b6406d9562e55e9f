// Builds the static guest agent from guest-agent/, cached by the hash of its sources and compiler.
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { cacheDir } from "../paths.js";
import { hashInputs, listFiles } from "../util/hash.js";
import { packageRoot } from "../util/pkg.js";
import { run } from "../util/proc.js";
import { findOnPath, memoized } from "../util/memo.js";
import { z } from "zod";

export interface AgentBuild {
  path: string;
  hash: string;
  built: boolean;
}

export function agentSourceDir(): string {
  return join(packageRoot(), "guest-agent");
}

/** The agent's sources and build script: its tests (guest-agent/test) do not change the binary. */
function agentSources(): string[] {
  const tests = join(agentSourceDir(), "test");
  return listFiles(agentSourceDir()).filter((f) => !f.startsWith(`${tests}/`));
}

/**
 * The compiler build.sh uses, by its version line: part of the agent's key. Found by stat along PATH
 * and remembered per compiler binary (util/memo.ts), so no compiler runs on a command's path, and a
 * built agent is still found after its compiler was removed.
 */
async function compilerId(): Promise<string> {
  for (const cc of ["musl-gcc", "gcc"]) {
    const id = await memoized(`compiler-${cc}`, z.string(), findOnPath(cc), async (path) => {
      const r = await run([path, "--version"], { timeoutMs: 10_000 });
      if (r.code !== 0) throw new LuminaGuardError("IMAGE_BUILD_FAILED", `${cc} --version failed: ${r.stderr.trim()}`);
      return `${cc}:${r.stdout.split("\n")[0] ?? ""}`;
    }).catch(() => undefined);
    if (id !== undefined) return id;
  }
  throw new LuminaGuardError("IMAGE_BUILD_FAILED", "no C compiler found: install musl-tools (apt-get install musl-tools) or gcc");
}

export async function agentHash(): Promise<string> {
  // Names relative to the agent's folder: moving the folder does not change the key.
  return hashInputs(agentSources(), [await compilerId()], agentSourceDir()).slice(0, 16);
}

/** Returns the cached agent binary, building it first when its inputs changed or `force` is set. */
export async function ensureAgent(options: { force?: boolean; log?: (line: string) => void } = {}): Promise<AgentBuild> {
  const hash = await agentHash();
  const dir = join(cacheDir(), "agent", hash);
  const path = join(dir, "lg-agent");
  if (!options.force && existsSync(path)) return { path, hash, built: false };
  options.log?.(`building guest agent ${hash}`);
  mkdirSync(dir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const r = await run(["bash", join(agentSourceDir(), "build.sh"), tmp], { timeoutMs: 300_000 });
  if (r.code !== 0) {
    rmSync(tmp, { force: true });
    throw new LuminaGuardError("IMAGE_BUILD_FAILED", `guest agent build failed:\n${r.stderr || r.stdout}`);
  }
  renameSync(tmp, path);
  return { path, hash, built: true };
}
