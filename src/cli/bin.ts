#!/usr/bin/env node
// The bundled `luminaguard` (dist/cli/main.js, package.json's bin; scripts/bundle.mjs): a bare --version
// answered here, exec through a running service by the thin client (exec-thin.ts, an entry of exec's
// bundle), exec and tool run from their own bundle (main-exec.ts), every other command line from
// the whole command's (main.ts). One process loads one of the two, never both.
import { packageVersion } from "../util/pkg.js";
import { bareVersion, daemonOffByEnv, namedWord } from "./program.js";

const word = namedWord(process.argv);
if (bareVersion(process.argv)) process.stdout.write(`${packageVersion()}\n`);
// exec with a service running: the thin client straight away (src/cli/exec-thin.ts), one load fewer before it.
else if (process.argv[2] === "exec" && !daemonOffByEnv() && (await (await import("./exec-thin.js")).thinExecMain(process.argv))) process.exitCode ??= 0;
else if (word === "exec" || word === "tool") await import("./main-exec.js");
else await import("./main.js");
