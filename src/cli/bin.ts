#!/usr/bin/env node
// The bundled `luminaguard` (dist/cli/main.js, package.json's bin; scripts/bundle.mjs): a bare --version
// answered here, exec and tool run from their own bundle (main-exec.ts), every other command line from
// the whole command's (main.ts). One process loads one of the two, never both.
import { packageVersion } from "../util/pkg.js";
import { bareVersion, namedWord } from "./program.js";

const word = namedWord(process.argv);
if (bareVersion(process.argv)) process.stdout.write(`${packageVersion()}\n`);
else if (word === "exec" || word === "tool") await import("./main-exec.js");
else await import("./main.js");
