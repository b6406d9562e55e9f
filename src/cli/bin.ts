#!/usr/bin/env node
// The bundled `luminaguard` (dist/cli/main.cjs, package.json's bin; scripts/bundle.mjs): a bare --version
// answered here, exec through a running service by the thin client (exec-thin.ts, bundled into this file),
// exec and tool run from their own bundle (main-exec.ts, hot/exec.cjs), every other command line from the
// whole command's (main.ts, all/). One process loads one of the two, never both. The bundle is CommonJS:
// node then never starts its ES module loader for the commands users wait on (--version, exec), which
// an ES module entry costs before its first line runs; all/ is ES modules, imported when reached.
import { fileURLToPath } from "node:url";
import { packageVersion } from "../util/pkg.js";
import { bareVersion, daemonOffByEnv, namedWord } from "./program.js";

async function main(): Promise<void> {
  const word = namedWord(process.argv);
  if (bareVersion(process.argv)) process.stdout.write(`${packageVersion()}\n`);
  // exec with a service running: the thin client straight away (src/cli/exec-thin.ts).
  else if (process.argv[2] === "exec" && !daemonOffByEnv() && (await (await import("./exec-thin.js")).thinExecMain(process.argv))) process.exitCode ??= 0;
  // exec and tool: one CommonJS file (main-exec.ts bundled), compiled with V8's code cache. This path holds in
  // the bundle (where import.meta.url names this file's twin, dist/src/cli/bin.js) and per file alike.
  // (The code cache's module, with node:crypto and node:vm, is loaded on this path only: ~3 ms.)
  else if (word === "exec" || word === "tool") (await import("../util/compile-cache.js")).runCachedScript(fileURLToPath(new URL("../../cli/hot/exec.cjs", import.meta.url)));
  else await import("./main.js");
}

void main();
