// The bundled `luminaguard` (dist/cli/, package.json's bin) against the per-file build (dist/src/cli/main.js):
// the same answers byte for byte, and a command loads only its own chunks (no package of node_modules,
// no per-file module) while a bundled module's paths still mean what they meant per file.
import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { cliEntry } from "../../src/bench/cli.js";
import { packageRoot } from "../../src/util/pkg.js";
import { unavailable } from "../fixtures.js";

const PER_FILE = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const BUNDLE = join(packageRoot(), "dist", "cli", "main.cjs");

function run(entry: string, args: readonly string[], env: NodeJS.ProcessEnv = {}, execArgv: readonly string[] = []): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [...execArgv, entry, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, LUMINAGUARD_DAEMON: "0", ...env },
  });
}

/** What a user sees, less what differs from run to run (sandbox ids, durations). */
function seen(r: SpawnSyncReturns<string>): { status: number | null; stdout: string; stderr: string } {
  const steady = (s: string): string => s.replace(/\b(lg|ws)-[A-Za-z0-9]+/g, "$1-*").replace(/\d+(\.\d+)? ?ms\b/g, "N ms");
  return { status: r.status, stdout: steady(r.stdout), stderr: steady(r.stderr) };
}

test("package.json's bin is the bundle: executable, a hashbang, source maps beside it", () => {
  assert.equal(cliEntry(), BUNDLE);
  accessSync(BUNDLE, constants.X_OK);
  const text = readFileSync(BUNDLE, "utf8");
  // CommonJS: no ES module loader to start before the first line runs.
  assert.match(text, /^#!\/usr\/bin\/env node\n"use strict";\n/);
  assert.doesNotMatch(text, /^import /m);
  assert.match(text, /\/\/# sourceMappingURL=main\.cjs\.map\s*$/);
  assert.ok(existsSync(`${BUNDLE}.map`));
});

test("the bundle answers like the per-file build: version, help, usage errors, an unknown command", () => {
  for (const args of [["--version"], ["-V"], ["--help"], ["exec", "--help"], ["tool", "--help"], ["exec", "--backend", "bogus", "--", "true"], ["nosuch"], ["exec", "--timeout", "0", "--", "true"]]) {
    const perFile = seen(run(PER_FILE, args));
    const bundled = seen(run(BUNDLE, args));
    assert.deepEqual(bundled, perFile, `luminaguard ${args.join(" ")}`);
  }
});

test("exec through the bundle prints and exits exactly as before", { skip: await unavailable("namespace") }, () => {
  const cases = [
    ["sh", "-c", "echo out; echo err >&2; exit 7"],
    ["sh", "-c", "printf 'no newline'"],
    ["sh", "-c", "kill -TERM $$"],
  ];
  for (const cmd of cases) {
    const args = ["exec", "--backend", "namespace", "--", ...cmd];
    const perFile = seen(run(PER_FILE, args));
    const bundled = seen(run(BUNDLE, args));
    assert.deepEqual(bundled, perFile, cmd.join(" "));
  }
  const timedOut = seen(run(BUNDLE, ["exec", "--backend", "namespace", "--timeout", "1", "--", "sleep", "30"]));
  assert.equal(timedOut.status, 124);
  assert.match(timedOut.stderr, /TOOL_TIMEOUT/);
});

/** The file URLs a command's module loader resolves, seen by a resolve hook (module.register), and the files require() resolves. */
function modulesLoaded(t: TestContext, entry: string, args: readonly string[]): { status: number | null; urls: string[]; required: string[] } {
  const dir = mkdtempSync(join(tmpdir(), "lg-test-modules-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, "resolved.txt");
  const cjsLog = join(dir, "required.txt");
  writeFileSync(log, "");
  writeFileSync(cjsLog, "");
  writeFileSync(
    join(dir, "hooks.mjs"),
    `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (r.url.startsWith("file:")) appendFileSync(${JSON.stringify(log)}, r.url + "\\n");
  return r;
}
`,
  );
  writeFileSync(join(dir, "register.mjs"), `import { register } from "node:module";\nregister(${JSON.stringify(pathToFileURL(join(dir, "hooks.mjs")).href)});\n`);
  // require() of a file (a package of node_modules, a per-file module) passes here; node's own modules do not.
  writeFileSync(
    join(dir, "require.cjs"),
    `const Module = require("node:module"); const { appendFileSync } = require("node:fs");
const resolve = Module._resolveFilename;
Module._resolveFilename = function (...args) { const r = resolve.apply(this, args); if (r.startsWith("/")) appendFileSync(${JSON.stringify(cjsLog)}, r + "\\n"); return r; };
`,
  );
  const r = run(entry, args, {}, ["--import", pathToFileURL(join(dir, "register.mjs")).href, "--require", join(dir, "require.cjs")]);
  const lines = (f: string): string[] => [...new Set(readFileSync(f, "utf8").split("\n").filter((l) => l !== ""))];
  return { status: r.status, urls: lines(log), required: lines(cjsLog) };
}

test("--version through the bundle loads the bin alone; the per-file build loads more", (t) => {
  const bundled = modulesLoaded(t, BUNDLE, ["--version"]);
  assert.equal(bundled.status, 0);
  // Not the error machinery (errors.ts, output.ts), not commander, not either bundle's chunks. (The hook sees
  // the bin itself because --import makes node resolve the entry through its ES module loader; without it,
  // the CommonJS bin starts no ES module loader at all.)
  assert.deepEqual(bundled.urls, [pathToFileURL(BUNDLE).href]);
  assert.deepEqual(bundled.required, [BUNDLE], "require() resolves the CommonJS bin, and nothing else");
  const perFile = modulesLoaded(t, PER_FILE, ["--version"]);
  assert.equal(perFile.status, 0);
  assert.ok(perFile.urls.length > 1, "the hook sees the per-file build's imports");
});

test("exec through the bundle loads its one CommonJS file: no package of node_modules, no per-file module", { skip: await unavailable("namespace") }, (t) => {
  const bundled = modulesLoaded(t, BUNDLE, ["exec", "--backend", "namespace", "--", "true"]);
  assert.equal(bundled.status, 0);
  // The bin is the only module (see above); exec's code is dist/cli/hot/exec.cjs, compiled by the bin
  // (runCachedScript), which require()s node's own modules only.
  assert.deepEqual(bundled.urls, [pathToFileURL(BUNDLE).href]);
  assert.deepEqual(bundled.required, [BUNDLE], "require() resolves the CommonJS bin, and nothing else");
  // The same check on the per-file build fails: commander and zod come from node_modules there.
  const perFile = modulesLoaded(t, PER_FILE, ["exec", "--backend", "namespace", "--", "true"]);
  assert.equal(perFile.status, 0);
  assert.ok(perFile.urls.some((u) => u.includes("/node_modules/zod/")));
});

test("a bundled module's import.meta.url is its per-file twin: pino is found from there (LUMINAGUARD_LOG=debug)", { skip: await unavailable("namespace") }, () => {
  const r = run(BUNDLE, ["exec", "--backend", "namespace", "--", "true"], { LUMINAGUARD_LOG: "debug" });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => l.startsWith("{"));
  assert.ok(lines.length > 0, r.stderr);
  for (const l of lines) assert.equal((JSON.parse(l) as { name: string }).name, "luminaguard");
  assert.equal(r.stdout, "");
});
