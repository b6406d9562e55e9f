// Facts about host binaries are probed once per binary identity and outlive the binary: a built
// image is found with no compiler on PATH, and no probe process runs on a command's path.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdtempSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { z } from "zod";
import { findOnPath, memoized } from "../../src/util/memo.js";
import { privateEnvDir } from "../fixtures.js";

test("memoized: once per binary identity, again when the binary changes, the last value when it is gone", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lg-memo-"));
  privateEnvDir(t, "LUMINAGUARD_CACHE", "lg-memo-cache-");
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, "tool");
  copyFileSync("/bin/true", bin);
  chmodSync(bin, 0o755);
  assert.equal(findOnPath("tool", `/nonexistent:${dir}`), bin);
  assert.equal(findOnPath("tool", "/nonexistent"), undefined);
  let runs = 0;
  const probe = async (): Promise<string> => `v${++runs}`;
  assert.equal(await memoized("t", z.string(), bin, probe), "v1");
  assert.equal(await memoized("t", z.string(), bin, probe), "v1", "the same binary is not probed again");
  utimesSync(bin, new Date(), new Date(Date.now() + 5000));
  assert.equal(await memoized("t", z.string(), bin, probe), "v2", "a changed binary is probed again");
  rmSync(bin);
  assert.equal(await memoized("t", z.string(), findOnPath("tool", dir), probe), "v2", "a removed binary's last fact stays");
  assert.equal(runs, 2);
  assert.equal(await memoized("never", z.string(), undefined, probe), undefined);
});

test("a built image is found with no compiler, dpkg or busybox probe on PATH", (t) => {
  const build = fileURLToPath(new URL("../../src/image/build.js", import.meta.url));
  // Warm the memo with the real PATH first (as `image build` does), then look the image up without one.
  const warm = spawnSync(process.execPath, ["--input-type=module", "-e", `const m = await import(${JSON.stringify(build)}); await m.requireImage();`], { encoding: "utf8" });
  if (warm.status !== 0) {
    // No image here: the micro-VM tests say so and skip; this check has nothing to look up.
    t.skip(`no guest image to look up: ${warm.stderr.trim().split("\n").pop() ?? ""}`);
    return;
  }
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", `const m = await import(${JSON.stringify(build)}); console.log((await m.requireImage()).hash);`], {
    encoding: "utf8",
    env: { ...process.env, PATH: "/nonexistent" },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.trim(), /^[0-9a-f]{16}$/);
});
