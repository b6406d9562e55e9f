// execute_command's cwd, env and stdin are part of what an allow rule must cover; loader and interpreter hooks are never allowed by a broad rule.
import assert from "node:assert/strict";
import { test } from "node:test";
import { evaluatePolicy, HOOK_ENV_NAMES, HOOK_ENV_PREFIXES, isHookEnvVar, parsePolicy } from "../../src/approval/policy.js";

const LS = { id: "ls", tool: "execute_command", command: "^ls( |$)", action: "allow" as const };
const run = (args: Record<string, unknown>): { tool: string; args: Record<string, unknown> } => ({ tool: "execute_command", args: { command: "ls", ...args } });

test("an allow rule that names only the command does not allow a call carrying env, stdin or a cwd", () => {
  const p = parsePolicy({ rules: [LS] }, "p");
  assert.equal(evaluatePolicy(p, run({})).rule, "ls", "the bare command is allowed");
  assert.equal(evaluatePolicy(p, run({ timeoutMs: 5000 })).rule, "ls", "a timeout is not something a rule must cover");
  for (const extra of [{ env: { LD_PRELOAD: "/workspace/x.so" } }, { env: { MODE: "fast" } }, { stdin: "rm -rf /\n" }, { cwd: "../.." }, { cwd: ".git/hooks" }]) {
    const m = evaluatePolicy(p, run(extra));
    assert.deepEqual([m.action, m.rule], ["ask", "default:execute"], JSON.stringify(extra));
  }
  // What is the same as absent changes nothing: no variables, empty stdin, the workspace root as cwd.
  for (const same of [{ env: {} }, { stdin: "" }, { cwd: "." }, { cwd: "/workspace" }, { cwd: "/workspace/" }]) {
    assert.equal(evaluatePolicy(p, run(same)).rule, "ls", JSON.stringify(same));
  }
});

test("a rule covers what it names: path or args.cwd for cwd, args.stdin for stdin, args.env.NAME or args.env for variables", () => {
  const p = parsePolicy(
    {
      rules: [
        { id: "ls-src", tool: "execute_command", command: "^ls$", path: "^src(/|$)", action: "allow" },
        { id: "ls-cwd", tool: "execute_command", command: "^ls -l$", args: { cwd: "^docs$" }, action: "allow" },
        { id: "sort-stdin", tool: "execute_command", command: "^sort$", args: { stdin: "^[a-z\\n]*$" }, action: "allow" },
        { id: "make-cc", tool: "execute_command", command: "^make$", args: { "env.CC": "^(gcc|clang)$" }, action: "allow" },
        { id: "env-any", tool: "execute_command", command: "^env$", args: { env: ".*" }, action: "allow" },
      ],
    },
    "p",
  );
  assert.equal(evaluatePolicy(p, run({ cwd: "src/lib" })).rule, "ls-src");
  assert.equal(evaluatePolicy(p, run({ cwd: "../.." })).rule, "default:execute", "the path rule still has to match");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "ls -l", cwd: "docs" } }).rule, "ls-cwd");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "sort", stdin: "b\na\n" } }).rule, "sort-stdin");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "sort", stdin: "B\n" } }).rule, "default:execute");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "make", env: { CC: "clang" } } }).rule, "make-cc");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "make", env: { CC: "clang", CFLAGS: "-O2" } } }).rule, "default:execute", "CFLAGS is not named");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "env", env: { MODE: "x", COLOR: "1" } } }).rule, "env-any");
  // Naming stdin or cwd does not cover env, and the other way round.
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "sort", stdin: "a\n", env: { X: "1" } } }).rule, "default:execute");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "env", env: { MODE: "x" }, stdin: "a" } }).rule, "default:execute");
});

test("loader and interpreter hooks are allowed only by a rule that names the variable exactly", () => {
  const p = parsePolicy(
    {
      rules: [
        { id: "broad", tool: "execute_command", command: "^run$", args: { env: ".*" }, action: "allow" },
        { id: "named", tool: "execute_command", command: "^node app\\.js$", args: { "env.NODE_OPTIONS": "^--max-old-space-size=\\d+$" }, action: "allow" },
      ],
    },
    "p",
  );
  const hooks = ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_BIND_NOW", "NODE_OPTIONS", "NODE_PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PERL5LIB", "PERL5OPT", "RUBYOPT", "RUBYLIB", "BASH_ENV", "ENV", "PROMPT_COMMAND", "SHELLOPTS", "BASHOPTS", "IFS", "GCONV_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_COUNT", "PATH", "LESSOPEN", "GLIBC_TUNABLES", "npm_config_script_shell"];
  for (const name of hooks) {
    assert.ok(isHookEnvVar(name), name);
    const m = evaluatePolicy(p, { tool: "execute_command", args: { command: "run", env: { [name]: "/workspace/evil" } } });
    assert.deepEqual([m.action, m.rule, m.class], ["ask", "default:execute", "red"], name);
  }
  assert.ok(HOOK_ENV_NAMES.includes("BASH_ENV") && HOOK_ENV_PREFIXES.includes("LD_"));
  assert.equal(isHookEnvVar("MODE"), false);
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "run", env: { MODE: "x" } } }).rule, "broad");
  // One hook among harmless variables is enough to fall to asking.
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "run", env: { MODE: "x", LD_PRELOAD: "/workspace/x.so" } } }).rule, "default:execute");
  // Named exactly, it is the rule's (and its value regex's) decision.
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "node app.js", env: { NODE_OPTIONS: "--max-old-space-size=512" } } }).rule, "named");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "node app.js", env: { NODE_OPTIONS: "--require /workspace/x.js" } } }).rule, "default:execute");
});

test("deny and ask rules match as before, whatever cwd, env or stdin the call carries", () => {
  const p = parsePolicy(
    {
      rules: [
        { id: "no-rm", tool: "execute_command", command: "^rm ", action: "deny" },
        { id: "ask-curl", tool: "execute_command", command: "^curl ", action: "ask", risk: "critical" },
      ],
    },
    "p",
  );
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "rm -rf x", env: { A: "1" }, stdin: "y\n", cwd: "sub" } }).rule, "no-rm");
  assert.equal(evaluatePolicy(p, { tool: "execute_command", args: { command: "curl x", env: { LD_PRELOAD: "x" } } }).rule, "ask-curl");
});
