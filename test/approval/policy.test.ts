// Classification and the policy file: secure defaults, first match wins, patterns on tools, servers, paths, commands and arguments.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { defaultPolicy, evaluatePolicy, loadPolicy, parsePolicy, workspaceRelative } from "../../src/approval/policy.js";
import { useTempHome } from "../agent/helpers.js";

const home = useTempHome();

test("defaults: reads are Green and allowed, writes, commands, external and unknown tools are Red and ask", () => {
  const p = defaultPolicy();
  for (const tool of ["read_file", "list_directory", "search"]) {
    const m = evaluatePolicy(p, { tool, args: { path: "a" } });
    assert.deepEqual([m.class, m.action, m.risk], ["green", "allow", "low"], tool);
  }
  assert.deepEqual(pick(evaluatePolicy(p, { tool: "write_file", args: { path: "a", content: "" } })), ["red", "ask", "medium", "default:write"]);
  assert.deepEqual(pick(evaluatePolicy(p, { tool: "execute_command", args: { command: "ls" } })), ["red", "ask", "high", "default:execute"]);
  assert.deepEqual(pick(evaluatePolicy(p, { tool: "frobnicate", args: {} })), ["red", "ask", "high", "default:unknown"]);
  // An external server's tool is Red even when it is called read_file: the built-in rule does not leak onto it.
  assert.deepEqual(pick(evaluatePolicy(p, { server: "fs", tool: "read_file", args: { path: "a" } })), ["red", "ask", "high", "default:external"]);
});

test("rules: first match wins; path, command and argument patterns; readOnly marks external tools Green", () => {
  const p = parsePolicy(
    {
      version: 1,
      rules: [
        { id: "no-env", tool: ["read_file", "write_file"], path: "(^|/)\\.env$", action: "deny", risk: "critical" },
        { id: "docs", tool: "write_file", path: "^docs/", action: "allow" },
        { id: "tests", tool: "execute_command", command: "^npm (test|run lint)$", action: "allow" },
        { id: "git-read", server: "git", tool: ["status", "log*"], action: "allow", readOnly: true },
        { id: "http-get", server: "http*", tool: "fetch", args: { method: "^GET$", "options.host": "^example\\.org$" }, action: "allow" },
        { id: "nothing-else-from-git", server: "git", action: "deny" },
      ],
    },
    "test-policy",
  );
  assert.deepEqual(pick(evaluatePolicy(p, { tool: "read_file", args: { path: "config/.env" } })), ["green", "deny", "critical", "no-env"]);
  assert.deepEqual(pick(evaluatePolicy(p, { tool: "write_file", args: { path: "/workspace/docs/a.md", content: "" } })), ["red", "allow", "medium", "docs"]);
  // `..` cannot smuggle a write out of docs/.
  assert.equal(evaluatePolicy(p, { tool: "write_file", args: { path: "docs/../src/a.ts", content: "" } }).rule, "default:write");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "npm test" } }).action, "allow");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: ["npm", "test"] } }).action, "allow");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "npm test; rm -rf /" } }).action, "ask");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "npm test\nrm -rf /" } }).action, "ask");
  assert.deepEqual(pick(evaluatePolicy(p, { server: "git", tool: "log_oneline", args: {} })), ["green", "allow", "low", "git-read"]);
  assert.deepEqual(pick(evaluatePolicy(p, { server: "git", tool: "push", args: {} })), ["red", "deny", "high", "nothing-else-from-git"]);
  assert.equal(evaluatePolicy(p, { server: "https", tool: "fetch", args: { method: "GET", options: { host: "example.org" } } }).rule, "http-get");
  assert.equal(evaluatePolicy(p, { server: "https", tool: "fetch", args: { method: "POST", options: { host: "example.org" } } }).rule, "default:external");
  assert.equal(evaluatePolicy(p, { server: "https", tool: "fetch", args: { method: "GET" } }).rule, "default:external", "a missing argument does not match");
  // Built-in tools keep their class whatever a rule says.
  const q = parsePolicy({ rules: [{ tool: "write_file", action: "allow", readOnly: true }] }, "q");
  assert.equal(evaluatePolicy(q, { tool: "write_file", args: { path: "x", content: "" } }).class, "red");
  assert.equal(evaluatePolicy(q, { tool: "write_file", args: { path: "x", content: "" } }).rule, "q#1");
});

test("an allow rule on a path must hold for the path with symlinks resolved too", (t) => {
  const ws = mkdtempSync(join(tmpdir(), "lg-policy-ws-"));
  t.after(() => rmSync(ws, { recursive: true, force: true }));
  mkdirSync(join(ws, "docs"));
  mkdirSync(join(ws, ".git/hooks"), { recursive: true });
  symlinkSync("../.git/hooks", join(ws, "docs/hooks"));
  const p = parsePolicy({ rules: [{ id: "docs", tool: "write_file", path: "^docs/", action: "allow" }, { id: "git", tool: "*", path: "^\\.git(/|$)", action: "deny" }] }, "p");
  assert.equal(evaluatePolicy(p, { tool: "write_file", args: { path: "docs/readme.md", content: "" } }, { workspace: ws }).rule, "docs");
  const viaLink = evaluatePolicy(p, { tool: "write_file", args: { path: "docs/hooks/pre-commit", content: "" } }, { workspace: ws });
  assert.equal(viaLink.rule, "git", "the resolved path .git/hooks/pre-commit hits the deny rule");
  assert.equal(viaLink.action, "deny");
});

test("workspace paths are normalised before matching", () => {
  assert.equal(workspaceRelative("/workspace"), ".");
  assert.equal(workspaceRelative("/workspace/a/./b/../c/"), "a/c");
  assert.equal(workspaceRelative("./x"), "x");
  assert.equal(workspaceRelative("../etc/passwd"), "../etc/passwd");
  assert.equal(workspaceRelative("/etc/passwd"), "/etc/passwd");
});

test("policy files: $LUMINAGUARD_HOME/policy.json by default, --policy FILE, clear errors with file and JSON path", (t) => {
  t.after(() => rmSync(join(home, "policy.json"), { force: true }));
  assert.equal(loadPolicy().source, "built-in", "no file: built-in rules");
  writeFileSync(join(home, "policy.json"), JSON.stringify({ approvalTimeoutSeconds: 42, rules: [{ tool: "write_file", action: "deny" }] }));
  const p = loadPolicy();
  assert.equal(p.source, join(home, "policy.json"));
  assert.equal(p.approvalTimeoutSeconds, 42);
  assert.equal(evaluatePolicy(p, { tool: "write_file", args: { path: "a", content: "" } }).action, "deny");

  const bad = join(home, "bad.json");
  writeFileSync(bad, JSON.stringify({ rules: [{ tool: "x", action: "allow" }, { tool: "y", action: "maybe", command: "(" }] }));
  assert.throws(() => loadPolicy(bad), (e: unknown) => {
    assert.ok(e instanceof LuminaGuardError);
    assert.equal(e.code, "INVALID_ARGUMENT");
    assert.match(e.message, new RegExp(`policy ${bad.replace(/[.]/g, "\\.")}:`));
    assert.match(e.message, /rules\.1\.action/);
    assert.match(e.message, /rules\.1\.command: invalid regular expression/);
    return true;
  });
  writeFileSync(bad, "{ not json");
  assert.throws(() => loadPolicy(bad), /not valid JSON/);
  writeFileSync(bad, JSON.stringify({ rules: [], extra: 1 }));
  assert.throws(() => loadPolicy(bad), /\(top level\)|extra/);
  assert.throws(() => loadPolicy(join(home, "missing.json")), (e: unknown) => e instanceof LuminaGuardError && e.code === "NOT_FOUND");
});

function pick(m: { class: string; action: string; risk: string; rule: string }): string[] {
  return [m.class, m.action, m.risk, m.rule];
}
