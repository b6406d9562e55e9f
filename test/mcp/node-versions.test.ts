// The whole suite runs on Node 20 (the floor in package.json engines); this smoke runs the CLI, the SDK (one sandbox
// per backend), and the MCP server over stdio and HTTP on Node 22 and Node 24 (binaries from npm, cached).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { probeBackend } from "../../src/runtime/backends.js";
import { run } from "../../src/util/proc.js";
import { BACKENDS } from "../fixtures.js";
import { SERVE_ENTRY } from "./helpers.js";
import { PINNED, REPO_ROOT, testTool } from "./test-tools.js";

const SMOKE = fileURLToPath(new URL("./fixtures/node-smoke.js", import.meta.url));
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string; engines: { node: string } };

describe("Node 22 and 24 smoke", async () => {
  for (const which of ["node22", "node24"] as const) {
    const node = await testTool(which);
    const skip = "skip" in node ? node.skip : undefined;
    const major = PINNED[which].version.split(".")[0] as string;

    test(`Node ${PINNED[which].version}: CLI, SDK per backend, MCP stdio and HTTP`, { skip, timeout: 600_000 }, async () => {
      if ("skip" in node) return;
      const env = { ...process.env, LUMINAGUARD_DAEMON: "0", LUMINAGUARD_LOG: "warn" };
      const v = await run([node.path, "--version"], { timeoutMs: 30_000, env });
      assert.equal(v.stdout.trim(), `v${PINNED[which].version}`);
      const cli = await run([node.path, SERVE_ENTRY, "--version"], { timeoutMs: 60_000, env });
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(cli.stdout.trim(), pkg.version);

      const backends: string[] = [];
      for (const b of BACKENDS) {
        const p = await probeBackend(b);
        if (p.available) backends.push(b);
        else process.stderr.write(`SKIP: Node ${major} SDK smoke on ${b}: ${p.reason ?? "unavailable"}\n`);
      }
      const r = await run([node.path, SMOKE, ...backends], { timeoutMs: 540_000, env });
      assert.equal(r.code, 0, r.stderr.slice(-2000));
      const report = JSON.parse(r.stdout) as Record<string, Record<string, unknown>>;
      process.stderr.write(`node ${major} smoke: ${r.stdout}`);
      assert.equal(report["node"], `v${PINNED[which].version}`);
      for (const b of backends) assert.deepEqual(report[`sdk:${b}`], { stdout: "smoke", exitCode: 0, backend: b }, `sdk on ${b}`);
      for (const t of ["mcp:stdio", "mcp:http"]) {
        assert.equal(report[t]?.["stdout"], "mcp\n", `${t}: ${JSON.stringify(report[t])}`);
        assert.equal(report[t]?.["server"], "luminaguard");
      }
    });
  }

  test("package.json engines names exactly the majors tested: 20 (the suite) and those of this smoke", () => {
    const majors = pkg.engines.node.split("||").map((r) => /^\s*\^(\d+)\./.exec(r)?.[1]);
    assert.deepEqual(majors, ["20", PINNED.node22.version.split(".")[0], PINNED.node24.version.split(".")[0]]);
  });
});
