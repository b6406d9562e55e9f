// The config file: mcpServers validated strictly with errors naming the file and key, other sections kept.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { configPath, expandEnv, loadConfig, parseConfig } from "../../src/config/config.js";
import { LuminaGuardError } from "../../src/errors.js";

function errorOf(fn: () => unknown): LuminaGuardError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof LuminaGuardError, String(err));
    return err;
  }
  assert.fail("expected an error");
}

describe("config", () => {
  test("accepts the shapes other MCP hosts use, and keeps unknown sections", () => {
    const c = parseConfig(
      {
        mcpServers: {
          github: { command: "npx", args: ["-y", "@modelcontextprotocol/server-github"], env: { GITHUB_TOKEN: "${GITHUB_TOKEN}" } },
          remote: { url: "https://example.com/mcp", headers: { Authorization: "Bearer x" } },
          typed: { type: "http", url: "http://127.0.0.1:9000/mcp", timeoutMs: 5000 },
          "local_fs-2": { type: "stdio", command: "node", cwd: "/tmp" },
        },
        policy: { rules: [{ tool: "execute_command", action: "ask" }] },
      },
      "cfg.json",
    );
    assert.deepEqual(Object.keys(c.mcpServers ?? {}), ["github", "remote", "typed", "local_fs-2"]);
    assert.deepEqual((c as Record<string, unknown>)["policy"], { rules: [{ tool: "execute_command", action: "ask" }] });
    assert.deepEqual(parseConfig({}, "x"), {});
  });

  test("errors name the file and every bad key", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ mcpServers: { gh: { command: "npx", args: ["a", 3] } } }, /cfg\.json: mcpServers\.gh\.args\.1: .*string/],
      [{ mcpServers: { gh: { command: "" } } }, /mcpServers\.gh\.command: command must not be empty/],
      [{ mcpServers: { gh: { command: "x", bogus: 1 } } }, /mcpServers\.gh: .*bogus/],
      [{ mcpServers: { gh: { args: [] } } }, /mcpServers\.gh: a server needs either `command` \(stdio\) or `url`/],
      [{ mcpServers: { gh: { url: "ftp://x" } } }, /mcpServers\.gh\.url: url must be an http/],
      [{ mcpServers: { gh: { type: "sse", url: "http://x/sse" } } }, /mcpServers\.gh\.type: the legacy "sse" transport/],
      [{ mcpServers: { "a.b": { command: "x" } } }, /mcpServers\.a\.b: server names/],
      [{ mcpServers: { gh: { command: "x", env: { "BAD-NAME": "1" } } } }, /mcpServers\.gh\.env\.BAD-NAME: invalid environment variable name/],
      [{ mcpServers: [] }, /mcpServers: /],
      [[], /cfg\.json: \(top level\)/],
    ];
    for (const [raw, re] of cases) {
      const e = errorOf(() => parseConfig(raw, "cfg.json"));
      assert.equal(e.code, "INVALID_ARGUMENT");
      assert.match(e.message, re);
    }
  });

  test("the file: $LUMINAGUARD_CONFIG or $LUMINAGUARD_HOME/config.json; missing is empty, bad JSON is named", (t) => {
    const dir = mkdtempSync(join(tmpdir(), "lg-cfg-"));
    const saved = { home: process.env["LUMINAGUARD_HOME"], config: process.env["LUMINAGUARD_CONFIG"] };
    t.after(() => {
      for (const [k, v] of [["LUMINAGUARD_HOME", saved.home], ["LUMINAGUARD_CONFIG", saved.config]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(dir, { recursive: true, force: true });
    });
    process.env["LUMINAGUARD_HOME"] = dir;
    delete process.env["LUMINAGUARD_CONFIG"];
    assert.equal(configPath(), join(dir, "config.json"));
    assert.deepEqual(loadConfig(), {});
    writeFileSync(join(dir, "config.json"), "{ not json");
    assert.match(errorOf(() => loadConfig()).message, new RegExp(`^${join(dir, "config.json")}: not valid JSON`));
    const other = join(dir, "other.json");
    writeFileSync(other, JSON.stringify({ mcpServers: { fs: { command: "node" } } }));
    process.env["LUMINAGUARD_CONFIG"] = other;
    assert.equal(configPath(), other);
    assert.deepEqual(loadConfig().mcpServers, { fs: { command: "node" } });
  });

  test("${VAR} and ${VAR:-default} expansion", () => {
    const env = { TOKEN: "s3cret", EMPTY: "" };
    assert.equal(expandEnv("Bearer ${TOKEN}", "h", env), "Bearer s3cret");
    assert.equal(expandEnv("${MISSING:-fallback}/${EMPTY:-e}", "h", env), "fallback/e");
    assert.equal(expandEnv("no vars $HOME", "h", env), "no vars $HOME");
    assert.match(errorOf(() => expandEnv("${MISSING}", "mcpServers.x.env.Y", env)).message, /mcpServers\.x\.env\.Y: environment variable MISSING is not set/);
  });
});
