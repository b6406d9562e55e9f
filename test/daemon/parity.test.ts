// The same tests both ways: the tool suite (test/sandbox/tools.test.ts), which runs in-process everywhere else,
// run once more with every sandbox from a real daemon (Sandbox.create finds it through LUMINAGUARD_SOCKET).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { unavailable } from "../fixtures.js";
import { http, startTestDaemon } from "./helpers.js";

const TOOLS_TEST = fileURLToPath(new URL("../sandbox/tools.test.js", import.meta.url));

test("the tool suite passes with its sandboxes from the daemon", { timeout: 900_000 }, async (t) => {
  const skip = await unavailable("namespace");
  if (skip) return void t.skip(skip);
  const d = await startTestDaemon(t, ["--namespace-pool", "1:2", "--microvm-pool", (await unavailable("microvm")) ? "0" : "1:1"]);
  // A test runner of its own (NODE_TEST_CONTEXT would make it a child of this one, which runs no files).
  const env: NodeJS.ProcessEnv = { ...process.env, LUMINAGUARD_DAEMON: "1", LUMINAGUARD_SOCKET: d.socket };
  delete env["NODE_TEST_CONTEXT"];
  // Asynchronously: the daemon's stderr is read by this process, and must keep flowing meanwhile.
  const child = spawn(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=tap", TOOLS_TEST], { env, stdio: ["ignore", "pipe", "ignore"] });
  const timer = setTimeout(() => child.kill("SIGKILL"), 850_000);
  let stdout = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  const status = await new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  clearTimeout(timer);
  const r = { status, stdout };
  const count = (k: string): number => Number(new RegExp(`^# ${k} (\\d+)$`, "m").exec(r.stdout)?.[1] ?? -1);
  assert.equal(r.status, 0, `the tool suite through the daemon failed:\n${r.stdout.split("\n").filter((l) => /not ok|error|Error/.test(l)).slice(0, 40).join("\n")}`);
  assert.equal(count("fail"), 0);
  assert.ok(count("pass") >= 10, `the suite ran (${count("pass")} passed)`);
  // It really went through the daemon: its counters saw the calls.
  const metrics = (await http(d, "GET", "/metrics")).text;
  const calls = [...metrics.matchAll(/^luminaguard_tool_calls_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  assert.ok(calls > 50, `the daemon served the suite's calls (${calls})`);
});
