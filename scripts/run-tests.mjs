#!/usr/bin/env node
// Runs every compiled test file with node's test runner, one file at a time (VM tests share 2 cores),
// and ends with the summary line CI reads: "N passed, N failed, N skipped".
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";

const root = process.argv[2] ?? "dist/test";

// The micro-VM tests need the guest image of this exact source; building it is a no-op when current.
// If it cannot be built here, the microvm tests skip and print why (CI makes that a failure).
const image = spawnSync(process.execPath, ["dist/src/cli/main.js", "image", "build"], { stdio: ["ignore", "ignore", "inherit"] });
if (image.status !== 0) process.stderr.write("run-tests: guest image build failed; micro-VM tests will be skipped\n");
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.test\.(m?js)$/.test(name)) files.push(p);
  }
})(root);
const extra = ["guest-agent/test"].flatMap((d) => {
  try {
    return readdirSync(d).filter((n) => n.endsWith(".test.mjs")).map((n) => join(d, n));
  } catch {
    return [];
  }
});
const all = [...extra, ...files];
// The suites test the in-process runtime: a developer's running daemon must not take their sandboxes
// (test/daemon starts daemons of its own and asks for them explicitly).
const env = { ...process.env, LUMINAGUARD_DAEMON: process.env.LUMINAGUARD_DAEMON ?? "0" };
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=spec", ...all], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", maxBuffer: 256 * 1024 * 1024, env });
process.stdout.write(r.stdout ?? "");
const num = (label) => Number((r.stdout ?? "").match(new RegExp(`^ℹ ${label} (\\d+)$`, "m"))?.[1] ?? 0);
const passed = num("pass");
const failed = num("fail") + num("cancelled");
const skipped = num("skipped");
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(r.status === 0 && failed === 0 && passed > 0 ? 0 : 1);
