#!/usr/bin/env node
// The bundled `luminaguard` (dist/cli/main.js, package.json's bin; scripts/bundle.mjs): a bare --version
// answered here, exec through a running service by the thin client (exec-thin.ts, an entry of exec's
// bundle), exec and tool run from their own bundle (main-exec.ts, hot/exec.cjs), every other command line
// from the whole command's (main.ts). One process loads one of the two, never both.
import { fileURLToPath } from "node:url";
import { runCachedScript } from "../util/compile-cache.js";
import { packageVersion } from "../util/pkg.js";
import { bareVersion, daemonOffByEnv, namedWord } from "./program.js";

const word = namedWord(process.argv);
if (bareVersion(process.argv)) process.stdout.write(`${packageVersion()}\n`);
// exec with a service running: the thin client straight away (src/cli/exec-thin.ts), one load fewer before it.
else if (process.argv[2] === "exec" && !daemonOffByEnv() && (await (await import("./exec-thin.js")).thinExecMain(process.argv))) process.exitCode ??= 0;
// exec and tool: one CommonJS file (main-exec.ts bundled), compiled with V8's code cache. This path holds in
// the bundle (where import.meta.url names this file's twin, dist/src/cli/bin.js) and per file alike.
else if (word === "exec" || word === "tool") runCachedScript(fileURLToPath(new URL("../../cli/hot/exec.cjs", import.meta.url)));
else await import("./main.js");
