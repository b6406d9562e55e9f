// V8's code cache for the CLI. exec's CommonJS bundle (runCachedScript, any node): compiled code stored on
// the first run, read back on the next, never taken for another source (V8 checks only its length), and
// off where the directory is not ours alone. Node's cache for ES modules (node ≥ 22.1): on where node has
// one and the directory is ours alone, off elsewhere, and a command's chunks land in it. Node 20 (the
// suite's node) has none; node 22 is the pinned test binary (npm, cached) where it can be had.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import * as nodeModule from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { compileCacheDir } from "../../src/util/compile-cache.js";
import { packageRoot } from "../../src/util/pkg.js";
import { testTool } from "../mcp/test-tools.js";

const MODULE = fileURLToPath(new URL("../../src/util/compile-cache.js", import.meta.url));
const BUNDLE = join(packageRoot(), "dist", "cli", "main.cjs");
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

/** runCachedScript(file) in a fresh process with this cache dir: what the script printed, and how the run went. */
function runCached(cache: string, file: string): { out: string; hit: boolean; entry: string | undefined } {
  const code = `const m = await import(${JSON.stringify(MODULE)}); const r = m.runCachedScript(${JSON.stringify(file)}); process.stderr.write(JSON.stringify(r));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], { encoding: "utf8", timeout: 60_000, env: withoutNodeCacheEnv({ ...process.env, LUMINAGUARD_CACHE: cache }) });
  assert.equal(r.status, 0, r.stderr);
  const run = JSON.parse(r.stderr) as { hit: boolean; entry?: string };
  return { out: r.stdout, hit: run.hit, entry: run.entry };
}

/** A CommonJS script of a fixed length that prints what it is given and uses what node passes a module. */
function script(dir: string, value: string): string {
  const file = join(dir, "s.cjs");
  writeFileSync(file, `const { join } = require("node:path"); process.stdout.write([${JSON.stringify(value)}, typeof module.exports, join(__dirname, "x") === ${JSON.stringify(join(dir, "x"))}, __filename.endsWith("s.cjs")].join(" "));\n`);
  return file;
}

test("exec's bundle: compiled code stored on the first run (0600, in our 0700 directory), read back on the next", (t) => {
  const cache = tempCache(t);
  const file = script(tempCache(t), "one");
  const first = runCached(cache, file);
  assert.equal(first.out, "one object true true");
  assert.equal(first.hit, false);
  assert.ok(first.entry !== undefined && existsSync(first.entry), "stored at exit");
  assert.equal(statSync(first.entry).mode & 0o777, 0o600);
  assert.equal(statSync(join(cache, `v8-code-${euid}`)).mode & 0o777, 0o700);
  const second = runCached(cache, file);
  assert.deepEqual(second, { ...first, hit: true });
});

test("exec's bundle: another source of the same length never runs the old code; its entry replaces the old one", (t) => {
  const cache = tempCache(t);
  const dir = tempCache(t);
  const one = runCached(cache, script(dir, "one"));
  assert.equal(runCached(cache, script(dir, "one")).hit, true);
  // V8 would take the old entry for this source (it checks the length only): the key is the source's hash.
  const two = runCached(cache, script(dir, "two"));
  assert.equal(two.out, "two object true true");
  assert.equal(two.hit, false);
  assert.notEqual(two.entry, one.entry);
  assert.deepEqual(readdirSync(join(cache, `v8-code-${euid}`)), [String(two.entry).split("/").pop()]);
  assert.equal(runCached(cache, script(dir, "two")).hit, true);
});

test("exec's bundle: a damaged entry is refused and stored afresh; a directory others may write keeps the cache off", (t) => {
  const cache = tempCache(t);
  const file = script(tempCache(t), "one");
  const { entry } = runCached(cache, file);
  assert.ok(entry !== undefined);
  writeFileSync(entry, Buffer.alloc(4096, 7));
  const damaged = runCached(cache, file);
  assert.equal(damaged.out, "one object true true");
  assert.equal(damaged.hit, false);
  assert.equal(runCached(cache, file).hit, true, "stored afresh");
  const open = tempCache(t);
  mkdirSync(join(open, `v8-code-${euid}`), { mode: 0o700 });
  chmodSync(join(open, `v8-code-${euid}`), 0o777);
  const off = runCached(open, file);
  assert.deepEqual(off, { out: "one object true true", hit: false, entry: undefined });
  assert.deepEqual(readdirSync(join(open, `v8-code-${euid}`)), []);
});
