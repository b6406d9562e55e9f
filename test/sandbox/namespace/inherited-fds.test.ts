// A descriptor the host process was started with and that lacks close-on-exec (a shell's, a CI
// runner's) never reaches a sandbox: not the first one's, nor one spawned after the process opened
// many more descriptors of its own. Two layers keep it out: bwrap gets /dev/null at its number
// (src/sandbox/namespace/inherited-fds.ts, which scans for such descriptors once), and the jailer
// closes every descriptor past those it was told to keep.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { unavailable } from "../../fixtures.js";

/** The inherited descriptor's number: past the 9 a sandbox's bwrap gets as pipes. */
const SECRET_FD = 12;

// Run by a child node process holding SECRET_FD without close-on-exec: every descriptor of every
// process of two sandboxes, read from the host.
const CHILD = `
import { openSync, readdirSync, readlinkSync } from "node:fs";
const { Sandbox } = await import(process.argv[1]);
const rounds = [];
for (let round = 0; round < 2; round++) {
  const sb = await Sandbox.create({ backend: "namespace", daemon: false });
  await sb.commands.run(["true"]);
  const fds = {};
  for (const pid of sb.pids()) {
    for (const fd of readdirSync("/proc/" + pid + "/fd")) {
      try { fds[pid + ":" + fd] = readlinkSync("/proc/" + pid + "/fd/" + fd); } catch {}
    }
  }
  rounds.push(fds);
  await sb.kill();
  // More descriptors of our own (close-on-exec, as Node opens them) before the next sandbox.
  for (let i = 0; i < 200; i++) openSync("/dev/zero", "r");
}
process.stdout.write(JSON.stringify(rounds));
`;

test("an inherited descriptor without close-on-exec reaches no sandbox process", { skip: await unavailable("namespace") }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lg-test-secret-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "secret.txt"), "host secret");
  const secret = openSync(join(dir, "secret.txt"), "r");
  t.after(() => void import("node:fs").then((fs) => fs.closeSync(secret)));
  const index = new URL("../../../src/index.js", import.meta.url).pathname;
  const stdio: Array<"ignore" | "pipe" | "inherit" | number> = ["ignore", "pipe", "inherit"];
  while (stdio.length < SECRET_FD) stdio.push("ignore");
  stdio.push(secret);
  const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD, index], { stdio });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  assert.equal(code, 0, out);
  const rounds = JSON.parse(out) as Array<Record<string, string>>;
  assert.equal(rounds.length, 2);
  for (const fds of rounds) {
    assert.ok(Object.keys(fds).length > 6, "the sandbox's processes were read");
    for (const [where, target] of Object.entries(fds)) {
      assert.ok(!target.includes("lg-test-secret"), `${where} -> ${target}`);
      if (where.endsWith(`:${SECRET_FD}`)) assert.equal(target, "/dev/null", `${where} is /dev/null in place of the inherited one`);
    }
  }
});
