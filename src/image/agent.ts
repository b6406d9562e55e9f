// Builds the static guest agent from guest-agent/, cached by the hash of its sources and compiler.
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { cacheDir } from "../paths.js";
import { hashInputs, listFiles } from "../util/hash.js";
import { packageRoot } from "../util/pkg.js";
import { run } from "../util/proc.js";

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

async function compilerId(): Promise<string> {
  for (const cc of ["musl-gcc", "gcc"]) {
    try {
      const r = await run([cc, "--version"], { timeoutMs: 10_000 });
      if (r.code === 0) return `${cc}:${r.stdout.split("\n")[0] ?? ""}`;
    } catch {
      /* try the next */
    }
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
