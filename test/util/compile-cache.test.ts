// V8's code cache for the CLI (node ≥ 22.1): on where node has one and the directory is ours alone,
// off elsewhere, and a command's chunks land in it. Node 20 (the suite's node) has none; node 22 is
// the pinned test binary (npm, cached) where it can be had.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import * as nodeModule from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { compileCacheDir } from "../../src/util/compile-cache.js";
import { packageRoot } from "../../src/util/pkg.js";
import { testTool } from "../mcp/test-tools.js";

const MODULE = fileURLToPath(new URL("../../src/util/compile-cache.js", import.meta.url));
const BUNDLE = join(packageRoot(), "dist", "cli", "main.js");
const euid = process.geteuid?.() ?? "user";

function tempCache(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "lg-test-cache-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Node's own switches (set at all, even empty, NODE_DISABLE_COMPILE_CACHE turns the cache off). */
function withoutNodeCacheEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { NODE_DISABLE_COMPILE_CACHE: _off, NODE_COMPILE_CACHE: _dir, ...rest } = env;
  return rest;
}

/** enableCompileCache() in a fresh process of `node` with this cache dir: what it answered. */
function enableIn(node: string, cache: string): string {
  const r = spawnSync(node, ["--input-type=module", "-e", `const m = await import(${JSON.stringify(MODULE)}); process.stdout.write(String(m.enableCompileCache()));`], {
    encoding: "utf8",
    timeout: 60_000,
    env: withoutNodeCacheEnv({ ...process.env, LUMINAGUARD_CACHE: cache }),
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

const hasCache = typeof (nodeModule as unknown as { enableCompileCache?: unknown }).enableCompileCache === "function";

test("on a node without a code cache for ES modules it stays off and creates nothing", { skip: hasCache ? `node ${process.version} has module.enableCompileCache` : undefined }, (t) => {
  const cache = tempCache(t);
  assert.equal(enableIn(process.execPath, cache), "false");
  assert.deepEqual(readdirSync(cache), []);
});

test("node 22: the cache is on in a directory of our own, 0700, and an exec's chunks land in it", async (t) => {
  const node = await testTool("node22");
  if ("skip" in node) return t.skip(node.skip);
  const cache = tempCache(t);
  assert.equal(enableIn(node.path, cache), "true");
  const dir = join(cache, `v8-code-${euid}`);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const r = spawnSync(node.path, [BUNDLE, "exec", "--help"], { encoding: "utf8", timeout: 60_000, env: withoutNodeCacheEnv({ ...process.env, LUMINAGUARD_CACHE: cache, LUMINAGUARD_DAEMON: "0" }) });
  assert.equal(r.status, 0, r.stderr);
  const entries = readdirSync(dir, { recursive: true }).filter((f) => statSync(join(dir, String(f))).isFile());
  assert.ok(entries.length > 0, "compiled code was stored");
});

test("node 22: a cache directory others may write, or a symlink, is refused (the cache stays off)", async (t) => {
  const node = await testTool("node22");
  if ("skip" in node) return t.skip(node.skip);
  const open = tempCache(t);
  mkdirSync(join(open, `v8-code-${euid}`), { mode: 0o700 });
  chmodSync(join(open, `v8-code-${euid}`), 0o777);
  assert.equal(enableIn(node.path, open), "false");
  const linked = tempCache(t);
  const elsewhere = tempCache(t);
  symlinkSync(elsewhere, join(linked, `v8-code-${euid}`));
  assert.equal(enableIn(node.path, linked), "false");
  assert.deepEqual(readdirSync(elsewhere), [], "nothing was written through the link");
});

test("the cache directory is per user under LUMINAGUARD_CACHE", (t) => {
  const cache = tempCache(t);
  const saved = process.env["LUMINAGUARD_CACHE"];
  process.env["LUMINAGUARD_CACHE"] = cache;
  t.after(() => {
    if (saved === undefined) delete process.env["LUMINAGUARD_CACHE"];
    else process.env["LUMINAGUARD_CACHE"] = saved;
  });
  assert.equal(compileCacheDir(), join(cache, `v8-code-${euid}`));
  assert.equal(existsSync(compileCacheDir()), false);
});
