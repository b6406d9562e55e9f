// LuminaGuard's config file ($LUMINAGUARD_HOME/config.json): zod-validated, open to sections other features own.
import { join } from "node:path";
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { homeDir } from "../paths.js";
import { FILE_TOOLS_MODES } from "../sandbox/types.js";
import { parseWith, readJsonFile } from "../util/json-file.js";

/** A server name becomes the prefix of its tools (`name.tool`), so it cannot contain a dot. */
const SERVER_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const timeoutMs = z.number().int().min(1).max(24 * 3600 * 1000);
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "invalid environment variable name");

/** `{ command, args, env }`: the shape Claude Desktop, Cursor and Claude Code use for a stdio server. */
const stdioServerSchema = z.strictObject({
  type: z.literal("stdio").optional(),
  command: z.string().min(1, "command must not be empty"),
  args: z.array(z.string()).optional(),
  env: z.record(envName, z.string()).optional(),
  cwd: z.string().min(1).optional(),
  /** Per-call deadline for this server; default 60 s. */
  timeoutMs: timeoutMs.optional(),
});

/** `{ url, headers }`: a Streamable HTTP server. */
const httpServerSchema = z.strictObject({
  type: z.enum(["http", "streamable-http", "streamableHttp"]).optional(),
  url: z.url({ protocol: /^https?$/, error: "url must be an http:// or https:// URL" }),
  headers: z.record(z.string().min(1), z.string()).optional(),
  timeoutMs: timeoutMs.optional(),
});

type StdioServerConfig = z.infer<typeof stdioServerSchema>;
type HttpServerConfig = z.infer<typeof httpServerSchema>;
export type McpServerConfig = StdioServerConfig | HttpServerConfig;

/** zod reports a bad record key as "Invalid key in record" with the reason nested: show the reason. */
function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_key") return issue.issues.map((i) => i.message).join("; ");
  return issue.message;
}

/** Picks the schema by the keys present, so an error names the real problem instead of "no union member matched". */
const mcpServerSchema = z.unknown().transform((value, ctx): McpServerConfig => {
  const isObject = typeof value === "object" && value !== null && !Array.isArray(value);
  const has = (k: string): boolean => isObject && Object.hasOwn(value, k);
  const type = isObject ? (value as Record<string, unknown>)["type"] : undefined;
  if (type === "sse") {
    ctx.addIssue({ code: "custom", path: ["type"], message: 'the legacy "sse" transport is not supported; use a Streamable HTTP url' });
    return z.NEVER;
  }
  const schema = has("command") ? stdioServerSchema : has("url") ? httpServerSchema : undefined;
  if (!schema) {
    ctx.addIssue({ code: "custom", message: "a server needs either `command` (stdio) or `url` (Streamable HTTP)" });
    return z.NEVER;
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    for (const issue of r.error.issues) ctx.addIssue({ code: "custom", path: issue.path, message: issueMessage(issue) });
    return z.NEVER;
  }
  return r.data;
});

const mcpServersSchema = z.record(
  z.string().regex(SERVER_NAME_PATTERN, "server names are 1-64 letters, digits, '_' or '-' (no '.')"),
  mcpServerSchema,
);

const poolSize = z.number().int().min(0).max(256);

/** One backend's warm pool in the daemon: ready sandboxes kept when idle (min) and at most under demand (max). */
export const servePoolSchema = z.strictObject({ min: poolSize.optional(), max: poolSize.optional() });

/** `luminaguard serve`: flags override these. */
export const serveConfigSchema = z.strictObject({
  /** Unix socket path; default $XDG_RUNTIME_DIR/luminaguard.sock or the private runtime directory. */
  socket: z.string().min(1).max(107).optional(),
  /** Also listen on loopback TCP, "127.0.0.1:PORT" (bearer token required). */
  listen: z.string().min(1).optional(),
  pools: z.strictObject({ microvm: servePoolSchema.optional(), namespace: servePoolSchema.optional() }).optional(),
  /** Sandboxes alive at once at most; past it, creating one is CAPACITY. */
  maxSandboxes: z.number().int().min(1).max(10_000).optional(),
  /** SIGTERM: how long in-flight calls may take to finish before their sandboxes are destroyed. */
  drainGraceMs: z.number().int().min(0).max(3_600_000).optional(),
  /** A pending Red call nobody answers within this long is denied. */
  approvalTimeoutMs: timeoutMs.optional(),
  /** A sandbox nobody has used for this long is destroyed (default 10 minutes). */
  idleMs: timeoutMs.optional(),
  /** Memory the daemon may commit to sandboxes, MiB (default: MemAvailable at start minus max(1 GiB, 10 % of RAM)). */
  memoryBudgetMiB: z.number().int().min(64).max(16_777_216).optional(),
  /** Tool calls running at once at most; past it they wait in the admission queue. */
  maxCalls: z.number().int().min(1).max(100_000).optional(),
  /** Requests waiting for room at most; past it, CAPACITY at once. */
  maxQueue: z.number().int().min(0).max(1_000_000).optional(),
  /** How long a request waits for room when it names no deadline (default 30 s). */
  admissionWaitMs: z.number().int().min(0).max(3_600_000).optional(),
});

export type ServeConfig = z.infer<typeof serveConfigSchema>;

/** The whole file: `mcpServers` is validated strictly, other top-level sections are kept for their owners. */
const configSchema = z.looseObject({
  mcpServers: mcpServersSchema.optional(),
  serve: serveConfigSchema.optional(),
  /** Where a micro-VM's file tools run: "host" (beside the VM, the default) or "guest" (through 9p). */
  fileTools: z.enum(FILE_TOOLS_MODES).optional(),
});

export type LuminaGuardConfig = z.infer<typeof configSchema>;

/** `$LUMINAGUARD_CONFIG` (if set and not empty), else `$LUMINAGUARD_HOME/config.json` (default `~/.luminaguard/config.json`). */
export function configPath(): string {
  return process.env["LUMINAGUARD_CONFIG"] || join(homeDir(), "config.json");
}

export function isHttpServer(c: McpServerConfig): c is HttpServerConfig {
  return "url" in c;
}

/** Validates a parsed config; errors name `source` and every bad key (`mcpServers.github.args.0: ...`). */
export function parseConfig(raw: unknown, source: string): LuminaGuardConfig {
  return parseWith(configSchema, raw, (issues) => new LuminaGuardError("INVALID_ARGUMENT", `${source}: ${issues.join("; ")}`, { details: { file: source, issues } }), {
    message: issueMessage,
  });
}

/** Reads and validates the config file; a missing file is an empty config. */
export function loadConfig(path: string = configPath()): LuminaGuardConfig {
  return readJsonFile(path, (raw) => parseConfig(raw, path), {
    missing: () => ({}),
    unreadable: (err) => new LuminaGuardError("IO_ERROR", `${path}: cannot read the config file: ${err.message}`, { cause: err }),
    notJson: (err) => new LuminaGuardError("INVALID_ARGUMENT", `${path}: not valid JSON: ${err.message}`, { cause: err, details: { file: path } }),
  });
}

/**
 * Expands `${VAR}` and `${VAR:-default}` from `env` in a config string (tokens in headers and env stay out of the
 * file). Done when a server is connected, so a missing variable only breaks the server that uses it.
 */
export function expandEnv(value: string, where: string, env: NodeJS.ProcessEnv = process.env): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
    const v = env[name];
    if (v !== undefined && v !== "") return v;
    if (fallback !== undefined) return fallback;
    throw new LuminaGuardError("INVALID_ARGUMENT", `${where}: environment variable ${name} is not set`);
  });
}
