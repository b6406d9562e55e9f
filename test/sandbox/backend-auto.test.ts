// `--backend auto` picks the strongest backend that works; when that is not the micro-VM it says so: a
// warning in the log and `backendFallback` in the sandbox's info (before: a silent fall back to namespace).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cacheDir } from "../../src/paths.js";
import { unavailable } from "../fixtures.js";

describe("--backend auto", async () => {
  const skip = await unavailable("namespace");

  test("falling back to namespace (no micro-VM image here) is logged and in the sandbox's info", { skip }, (t) => {
    // A cache with the built agent but no guest image: the micro-VM is unavailable, namespace works.
    const cache = mkdtempSync(join(tmpdir(), "lg-auto-cache-"));
    t.after(() => rmSync(cache, { recursive: true, force: true }));
    symlinkSync(join(cacheDir(), "agent"), join(cache, "agent"));
    const sandboxModule = fileURLToPath(new URL("../../src/runtime/sandbox.js", import.meta.url));
    const script = `const { Sandbox } = await import(${JSON.stringify(sandboxModule)});
      const sb = await Sandbox.create({ backend: "auto", daemon: false });
      process.stdout.write(JSON.stringify({ backend: sb.backend, fallback: sb.info.backendFallback ?? null }));
      await sb.kill();`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, LUMINAGUARD_CACHE: cache, LUMINAGUARD_DAEMON: "0", LUMINAGUARD_LOG: "warn" },
      encoding: "utf8",
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { backend: string; fallback: string | null };
    assert.equal(out.backend, "namespace");
    assert.match(String(out.fallback), /fell back to namespace .*microvm unavailable: .*image/);
    assert.match(r.stderr, /"msg":"auto backend fell back"/);
  });
});
