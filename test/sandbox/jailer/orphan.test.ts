// lg-jailer ends with its host from its first instruction: a jailer whose host dies while it builds the
// jail (as root, holding the workspace and its bind sources open) does not go on to finish the set-up.
// Found by the randomly SIGKILLed hosts of identity.test.ts: the next recovery found such a jailer
// holding a workspace and kept it mounted.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { ensureJailer } from "../../../src/sandbox/jailer/jailer.js";
import { dying, pidAlive, procStat } from "../../../src/util/procfs.js";
import { waitFor } from "../../fixtures.js";

test("a jailer whose host dies during its set-up ends at once instead of finishing it", async (t) => {
  const build = await ensureJailer();
  const dir = mkdtempSync(join(tmpdir(), "lg-orphan-"));
  // The jailer reads its seccomp filter while it parses its arguments; a FIFO nobody writes holds it
  // there, in its set-up, for as long as the test likes.
  const fifo = join(dir, "filter");
  const made = spawnSync("mkfifo", [fifo], { encoding: "utf8" });
  if (made.status !== 0) return void t.skip(`cannot make a FIFO: ${made.stderr || made.error?.message}`);
  let jailer: number | undefined;
  t.after(() => {
    if (jailer !== undefined) {
      try {
        process.kill(jailer, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const uid = String(process.getuid?.() === 0 ? 65534 : (process.getuid?.() ?? 65534));
  const gid = String(process.getuid?.() === 0 ? 65534 : (process.getgid?.() ?? 65534));
  const host = `
    const { spawn } = await import("node:child_process");
    const child = spawn(${JSON.stringify(build.path)}, ${JSON.stringify(["--uid", uid, "--gid", gid, "--seccomp", fifo, "--", "/bin/true"])}, { stdio: "ignore" });
    process.stdout.write(child.pid + "\\n");
    setInterval(() => {}, 1000);
  `;
  const h = spawn(process.execPath, ["--input-type=module", "-e", host], { stdio: ["ignore", "pipe", "inherit"] });
  for await (const line of createInterface({ input: h.stdout! })) {
    jailer = Number(line);
    break;
  }
  assert.ok(jailer !== undefined && jailer > 0, "the host reported its jailer");
  const pid = jailer;
  // Sleeping in the FIFO's open, still the jailer (not yet the program it would exec).
  assert.ok(
    await waitFor(() => procStat(pid)?.comm === "lg-jailer" && procStat(pid)?.state === "S", 5_000),
    "the jailer waits in its set-up",
  );
  await new Promise((r) => setTimeout(r, 50));
  const exited = new Promise((r) => h.once("exit", r));
  h.kill("SIGKILL");
  await exited;
  assert.ok(await waitFor(() => !pidAlive(pid), 2_000), `the jailer (pid ${pid}) outlived its host${dying(pid) ? " (dying)" : ""}`);
});
