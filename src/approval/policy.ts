// The approval policy: ordered rules on tool, server and argument patterns; first match wins, built-in defaults last.
import { existsSync, realpathSync } from "node:fs";
import { dirname, join, posix, relative, sep } from "node:path";
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { homeDir } from "../paths.js";
import { isToolName, TOOL_NAMES, TOOLS } from "../tools/registry.js";
import { parseWith, readJsonFile } from "../util/json-file.js";

/** One tool call as the gate sees it: built-in when `server` is absent, otherwise a tool of an external MCP server. */
export interface ToolCallRequest {
  server?: string;
  tool: string;
  args: unknown;
}

export const ACTIONS = ["allow", "ask", "deny"] as const;
export const RISKS = ["low", "medium", "high", "critical"] as const;
export type PolicyAction = (typeof ACTIONS)[number];
export type Risk = (typeof RISKS)[number];
/** Green: read-only, runs without asking. Red: anything with consequences, stops at the cliff unless a rule allows it. */
export type ActionClass = "green" | "red";

/** Tools that only read (the registry says which); everything else built in, and every unknown tool, is Red. */
export const READ_ONLY_TOOLS: readonly string[] = TOOL_NAMES.filter((n) => TOOLS[n].readOnly);

const patterns = z.union([z.string().min(1).max(512), z.array(z.string().min(1).max(512)).min(1).max(256)]);
const regex = z
  .string()
  .min(1)
  .max(4096)
  .superRefine((s, ctx) => {
    try {
      new RegExp(s, "u");
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `invalid regular expression: ${(err as Error).message}` });
    }
  });

const policyRuleSchema = z.strictObject({
  id: z.string().min(1).max(200).optional(),
  description: z.string().max(2000).optional(),
  /** Glob(s) on the tool name (`*`, `?`); absent: any tool. */
  tool: patterns.optional(),
  /** Glob(s) on the MCP server name; absent: built-in tools only (so a rule never leaks onto a server's tool of the same name). */
  server: patterns.optional(),
  /** Regex on the workspace-relative path argument (`path`, or `cwd` of execute_command, default "."). */
  path: regex.optional(),
  /** Regex on the command line of execute_command (argv is shell-quoted and joined by spaces). */
  command: regex.optional(),
  /** Dotted argument path → regex on its value (non-strings are matched as JSON). */
  args: z.record(z.string().min(1).max(512), regex).optional(),
  action: z.enum(ACTIONS),
  /** Marks matching external tools read-only (Green). Ignored for built-in tools, whose class is fixed. */
  readOnly: z.boolean().optional(),
  risk: z.enum(RISKS).optional(),
});

const policyFileSchema = z.strictObject({
  version: z.literal(1).optional(),
  /** How long an approval prompt waits before it counts as a denial. */
  approvalTimeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  rules: z.array(policyRuleSchema).max(10_000).optional(),
});

export type PolicyRule = z.infer<typeof policyRuleSchema>;

interface CompiledRule {
  id: string;
  rule: PolicyRule;
  tool: RegExp[] | undefined;
  server: RegExp[] | undefined;
  path: RegExp | undefined;
  command: RegExp | undefined;
  args: Array<[string[], RegExp]>;
}

export interface Policy {
  /** Where the rules came from (a file path, or "built-in"). */
  readonly source: string;
  readonly approvalTimeoutSeconds: number | undefined;
  readonly rules: readonly CompiledRule[];
}

interface PolicyMatch {
  action: PolicyAction;
  /** Id of the rule that fired. */
  rule: string;
  class: ActionClass;
  risk: Risk;
}

export interface EvaluateOptions {
  /** Host workspace directory: path rules are also checked against the path with symlinks resolved. */
  workspace?: string;
}

/** The built-in rules, last: read-only tools run, every other built-in tool asks (one rule each), then external and unknown tools ask. */
export const DEFAULT_RULES: readonly PolicyRule[] = [
  { id: "default:read-only", tool: [...READ_ONLY_TOOLS], action: "allow", risk: "low" },
  ...TOOL_NAMES.filter((n) => !TOOLS[n].readOnly).map((n): PolicyRule => ({ id: TOOLS[n].defaultRule ?? `default:${n}`, tool: n, action: "ask", risk: TOOLS[n].risk })),
  { id: "default:external", server: "*", action: "ask", risk: "high" },
  { id: "default:unknown", action: "ask", risk: "high" },
];

/** The policy file LuminaGuard reads when none is named. */
function defaultPolicyPath(): string {
  return join(homeDir(), "policy.json");
}

/** Validates a parsed policy document; every problem names the source and the JSON path. */
export function parsePolicy(raw: unknown, source: string): Policy {
  const file = parseWith(policyFileSchema, raw, (issues) => new LuminaGuardError("INVALID_ARGUMENT", `policy ${source}: ${issues.join("; ")}`, { details: { source, issues } }));
  const user = (file.rules ?? []).map((r, i) => compile(r, r.id ?? `${source}#${i + 1}`));
  const defaults = DEFAULT_RULES.map((r) => compile(r, r.id ?? "default"));
  return { source, approvalTimeoutSeconds: file.approvalTimeoutSeconds, rules: [...user, ...defaults] };
}

/** The built-in rules alone: reads allowed, everything else asks. */
export function defaultPolicy(): Policy {
  return parsePolicy({}, "built-in");
}

/** `file` when given (must exist), else `$LUMINAGUARD_HOME/policy.json` when present, else the built-in rules. */
export function loadPolicy(file?: string): Policy {
  const path = file ?? defaultPolicyPath();
  if (file === undefined && !existsSync(path)) return defaultPolicy();
  return readJsonFile(path, (raw) => parsePolicy(raw, path), {
    unreadable: (err) => new LuminaGuardError("NOT_FOUND", `policy ${path}: cannot read: ${err.message}`, { cause: err }),
    notJson: (err) => new LuminaGuardError("INVALID_ARGUMENT", `policy ${path}: not valid JSON: ${err.message}`, { cause: err }),
  });
}

/** First matching rule wins; the defaults at the end match everything, so there is always an answer. */
export function evaluatePolicy(policy: Policy, call: ToolCallRequest, options: EvaluateOptions = {}): PolicyMatch {
  const facts = callFacts(call, options);
  for (const c of policy.rules) {
    const action = c.rule.action;
    if (!matches(c, call, facts, action)) continue;
    const external = call.server !== undefined;
    const builtin = !external && isToolName(call.tool) ? TOOLS[call.tool] : undefined;
    const cls: ActionClass = external ? (c.rule.readOnly === true ? "green" : "red") : builtin?.readOnly === true ? "green" : "red";
    const risk = c.rule.risk ?? (cls === "green" ? "low" : (builtin?.risk ?? "high"));
    return { action, rule: c.id, class: cls, risk };
  }
  // Unreachable with the defaults in place; kept secure anyway.
  return { action: "ask", rule: "default:unknown", class: "red", risk: "high" };
}

interface CallFacts {
  /**
   * Lexical workspace-relative path, and the same with symlinks resolved on the host when it differs. Resolved
   * on first use: only a rule with a `path` asks, so a policy without path rules costs no host syscalls per call.
   */
  paths: () => string[] | undefined;
  command: string | undefined;
}

function callFacts(call: ToolCallRequest, options: EvaluateOptions): CallFacts {
  const args = isRecord(call.args) ? call.args : {};
  let rawPath: unknown;
  if (call.server === undefined) {
    rawPath = call.tool === "execute_command" ? (args["cwd"] ?? ".") : (args["path"] ?? (call.tool === "read_file" || call.tool === "write_file" ? undefined : "."));
  } else rawPath = args["path"];
  let resolvedPaths: string[] | undefined;
  let pathsDone = false;
  const paths = (): string[] | undefined => {
    if (pathsDone) return resolvedPaths;
    pathsDone = true;
    if (typeof rawPath === "string") {
      const lexical = workspaceRelative(rawPath);
      resolvedPaths = [lexical];
      if (options.workspace !== undefined) {
        const resolved = resolvedRelative(options.workspace, lexical);
        if (resolved !== undefined && resolved !== lexical) resolvedPaths.push(resolved);
      }
    }
    return resolvedPaths;
  };
  let command: string | undefined;
  if (call.server === undefined && call.tool === "execute_command") {
    const c = args["command"];
    if (typeof c === "string") command = c;
    else if (Array.isArray(c) && c.every((x) => typeof x === "string")) command = c.map(shellQuote).join(" ");
  }
  return { paths, command };
}

function matches(c: CompiledRule, call: ToolCallRequest, facts: CallFacts, action: PolicyAction): boolean {
  if (c.server === undefined) {
    if (call.server !== undefined) return false;
  } else if (call.server === undefined || !c.server.some((g) => g.test(call.server as string))) return false;
  if (c.tool !== undefined && !c.tool.some((g) => g.test(call.tool))) return false;
  // An allow rule must hold for the path as written and as resolved; deny and ask fire on either.
  if (c.path !== undefined) {
    const re = c.path;
    const paths = facts.paths();
    if (paths === undefined) return false;
    if (action === "allow" ? !paths.every((p) => re.test(p)) : !paths.some((p) => re.test(p))) return false;
  }
  if (c.command !== undefined && (facts.command === undefined || !c.command.test(facts.command))) return false;
  for (const [keyPath, re] of c.args) {
    const v = dig(call.args, keyPath);
    if (v === undefined || !re.test(typeof v === "string" ? v : JSON.stringify(v))) return false;
  }
  // A rule written for "ls" must not wave through "ls" with LD_PRELOAD, a script on stdin or another cwd:
  // an allow holds only for the parts of the call it constrains. Deny and ask may be broader.
  if (action === "allow" && call.server === undefined && call.tool === "execute_command" && !coversCommandExtras(c, call.args)) return false;
  return true;
}

/**
 * Whether an allow rule constrains every cwd, env and stdin the call carries: cwd by `path` or `args.cwd`, stdin
 * by `args.stdin`, each variable by `args.env.NAME`, or by `args.env` (a regex on the whole object) unless the
 * variable is a loader or interpreter hook, which only its exact name covers. What equals the default (cwd ".",
 * no variables, empty stdin) needs no cover. `timeoutMs` needs none: it only bounds the command.
 */
function coversCommandExtras(c: CompiledRule, rawArgs: unknown): boolean {
  const args = isRecord(rawArgs) ? rawArgs : {};
  const named = new Set(c.args.map(([keyPath]) => keyPath.join(".")));
  const cwd = args["cwd"];
  if (cwd !== undefined && !(typeof cwd === "string" && workspaceRelative(cwd) === ".") && c.path === undefined && !named.has("cwd")) return false;
  const stdin = args["stdin"];
  if (stdin !== undefined && stdin !== "" && !named.has("stdin")) return false;
  const env = args["env"];
  if (env === undefined) return true;
  if (!isRecord(env)) return named.has("env");
  for (const name of Object.keys(env)) {
    if (named.has(`env.${name}`)) continue;
    if (named.has("env") && !isHookEnvVar(name)) continue;
    return false;
  }
  return true;
}

/**
 * Environment variables that make a program load or run other code (dynamic loader, interpreters, shells, git,
 * build tools, pagers) or change where it finds its programs and configuration. A rule allows one only by naming
 * it exactly (`args.env.NAME`); a regex on the whole environment never does. Matched case-insensitively
 * (npm reads `npm_config_*` in any case).
 */
export const HOOK_ENV_NAMES: readonly string[] = [
  "PATH", "IFS", "ENV", "BASH_ENV", "PROMPT_COMMAND", "PS0", "PS1", "PS2", "PS4", "SHELLOPTS", "BASHOPTS", "CDPATH", "GLOBIGNORE", "SHELL",
  "HOME", "ZDOTDIR", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_DATA_HOME", "INPUTRC",
  "GCONV_PATH", "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "MALLOC_TRACE",
  "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSLKEYLOGFILE",
  "EDITOR", "VISUAL", "PAGER", "MANPAGER", "MANOPT", "LESSOPEN", "LESSCLOSE", "LESSKEY", "BROWSER", "SUDO_ASKPASS", "SSH_ASKPASS",
  "CLASSPATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "JAVA_OPTIONS", "MAVEN_OPTS", "GRADLE_OPTS",
  "MAKEFLAGS", "MFLAGS", "GNUMAKEFLAGS", "MAKEFILES",
  "CC", "CXX", "CPP", "LD", "AS", "AR", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "COMPILER_PATH", "LIBRARY_PATH", "CPATH", "GCC_EXEC_PREFIX", "PKG_CONFIG_PATH",
  "RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTFLAGS", "RUSTDOCFLAGS", "GOFLAGS", "GOROOT", "GOPATH", "GOTOOLCHAIN", "CGO_CFLAGS", "CGO_LDFLAGS",
  "PHPRC", "PHP_INI_SCAN_DIR", "TCLLIBPATH", "R_PROFILE", "R_PROFILE_USER", "R_ENVIRON", "R_ENVIRON_USER",
  "DOTNET_STARTUP_HOOKS", "CORECLR_PROFILER", "CORECLR_PROFILER_PATH", "CORECLR_ENABLE_PROFILING",
];

/** Prefixes of whole families of hook variables (`LD_*`, `GIT_*`, `PYTHON*`, ...). */
export const HOOK_ENV_PREFIXES: readonly string[] = [
  "LD_", "DYLD_", "GIT_", "PYTHON", "PERL", "RUBY", "GEM_", "BUNDLE_", "NODE_", "NPM_CONFIG_", "YARN_", "PNPM_", "BUN_", "DENO_",
  "LUA_", "BASH_FUNC_", "PIP_", "UV_", "CARGO_", "JAVA_", "_JAVA_", "JDK_", "COMPOSER_", "DOTNET_", "COR_",
];

const HOOK_SET = new Set(HOOK_ENV_NAMES);

/** True for a variable only an exact, named rule may allow (see HOOK_ENV_NAMES and HOOK_ENV_PREFIXES). */
export function isHookEnvVar(name: string): boolean {
  const n = name.toUpperCase();
  return HOOK_SET.has(n) || HOOK_ENV_PREFIXES.some((p) => n.startsWith(p));
}

function compile(rule: PolicyRule, id: string): CompiledRule {
  const globs = (p: string | string[] | undefined): RegExp[] | undefined => (p === undefined ? undefined : (Array.isArray(p) ? p : [p]).map(globToRegExp));
  return {
    id,
    rule,
    tool: globs(rule.tool),
    server: globs(rule.server),
    path: rule.path === undefined ? undefined : new RegExp(rule.path, "u"),
    command: rule.command === undefined ? undefined : new RegExp(rule.command, "u"),
    args: Object.entries(rule.args ?? {}).map(([k, v]) => [k.split("."), new RegExp(v, "u")]),
  };
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`, "su");
}

/** `/workspace/a/../b` → `b`, `./x/` → `x`, `/workspace` → `.`; escapes stay visible as `../…` or absolute paths. */
export function workspaceRelative(p: string): string {
  let n = posix.normalize(p);
  if (n === "/workspace" || n === "/workspace/") return ".";
  if (n.startsWith("/workspace/")) n = n.slice("/workspace/".length);
  if (n.length > 1 && n.endsWith("/")) n = n.slice(0, -1);
  if (n.startsWith("./")) n = n.slice(2);
  return n === "" ? "." : n;
}

/** The workspace-relative path with symlinks in its existing prefix resolved on the host (undefined when it escapes or cannot be resolved). */
function resolvedRelative(workspace: string, rel: string): string | undefined {
  if (rel.startsWith("/") || rel === ".." || rel.startsWith("../")) return undefined;
  try {
    const root = realpathSync(workspace);
    let probe = join(root, rel);
    const tail: string[] = [];
    while (!existsSync(probe)) {
      tail.unshift(probe.slice(dirname(probe).length + 1));
      const up = dirname(probe);
      if (up === probe) return undefined;
      probe = up;
    }
    const real = join(realpathSync(probe), ...tail);
    const r = relative(root, real).split(sep).join("/");
    return r === "" ? "." : r;
  } catch {
    return undefined;
  }
}

function dig(value: unknown, keyPath: readonly string[]): unknown {
  let v: unknown = value;
  for (const k of keyPath) {
    if (!isRecord(v) || !Object.hasOwn(v, k)) return undefined;
    v = v[k];
  }
  return v;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** POSIX shell quoting, for showing and matching argv as one command line. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
