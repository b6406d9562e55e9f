// LuminaGuard as an MCP server: the five tools, each session's calls run in that session's own sandbox.
import type { FileToolsMode } from "../../sandbox/types.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  LoggingLevelSchema,
  McpError,
  SetLevelRequestSchema,
  type CallToolResult,
  type LoggingLevel,
} from "@modelcontextprotocol/sdk/types.js";
import type { ElicitFn } from "../../approval/approvers.js";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { resolveBackend, type BackendChoice } from "../../runtime/backends.js";
import { SandboxPool } from "../../runtime/pool.js";
import { userWorkspace } from "../../runtime/workspace.js";
import { TOOL_NAMES, isToolName, validateCall, type ToolName, type ValidatedCall } from "../../tools/registry.js";
import { packageVersion } from "../../util/pkg.js";
import type { SandboxSession, SandboxSource, SessionTransport } from "./session.js";
import { MCP_OUTPUT_MAX_BYTES, MCP_READ_MAX_BYTES, MCP_RESULT_MAX_BYTES, MCP_TOOLS, errorResult, successResult } from "./tools.js";

export const DEFAULT_IDLE_MS = 10 * 60_000;
export const DEFAULT_MAX_IN_FLIGHT = 32;

/** What a `beforeToolCall` hook sees: the validated call, its session, and the SDK server (for `elicitInput`). */
export interface ToolCallContext {
  tool: ToolName;
  /** The arguments as validated at this edge (deep-frozen); the sandbox runs exactly these. */
  args: ValidatedCall["args"];
  call: ValidatedCall;
  session: { id: string; transport: SessionTransport };
  /**
   * The session's MCP server. To ask the user through the host:
   * `server.elicitInput(params, { relatedRequestId: requestId, signal })` (over HTTP the question then travels
   * on the call's own response stream).
   */
  server: Server;
  /** JSON-RPC id of the tools/call request. */
  requestId: string | number;
  signal: AbortSignal;
  /** Whether the host declared it can answer (form) elicitation. */
  canElicit: boolean;
  /** Asks the user through the host on this call's own stream; rejects when the host cannot elicit. */
  elicit: ElicitFn;
  /** Sends an MCP log notification (`notifications/message`) on this call's stream, if the host's level lets it through. */
  notify: (level: LoggingLevel, data: Record<string, unknown>) => void;
}

/**
 * Runs before every tool call; throwing (e.g. POLICY_DENIED) turns the call into an `isError` result. It may
 * return a function the call's result passes through before it is sent (the approval gate withholds entries the
 * policy denies reading).
 */
export type BeforeToolCall = (ctx: ToolCallContext) => Promise<void | ((result: Record<string, unknown>) => Record<string, unknown>)>;

export interface McpServeOptions {
  backend?: BackendChoice;
  /** Every session's sandbox sees this host directory; default: each session gets a fresh one. */
  workspace?: string;
  memoryMiB?: number;
  /** Each session sandbox's disk limit in MiB (default DEFAULT_DISK_MIB); see SandboxOptions.diskMiB. */
  diskMiB?: number;
  /** microvm only: where each session's file tools run (see SandboxOptions.fileTools). */
  fileTools?: FileToolsMode;
  /** A pool to take sandboxes from (not drained on close); default: one made from backend/workspace/memoryMiB/diskMiB. */
  pool?: SandboxPool;
  /** Or any other source of sessions' sandboxes (a cluster client); not closed with the server. */
  sandboxSource?: SandboxSource;
  idleMs?: number;
  maxInFlight?: number;
  beforeToolCall?: BeforeToolCall;
}

/** The pool a server uses, and whether closing the server drains it. */
export async function poolFor(
  o: McpServeOptions,
  sizes: { minSize: number; maxSize: number },
): Promise<{ pool: SandboxSource; owned: false } | { pool: SandboxPool; owned: true }> {
  if (o.sandboxSource) return { pool: o.sandboxSource, owned: false };
  if (o.pool) return { pool: o.pool, owned: false };
  // A missing workspace is the user's mistake: say so now, not as spawn failures later.
  if (o.workspace !== undefined) userWorkspace(o.workspace);
  const backend = await resolveBackend(o.backend ?? "auto");
  const pool = new SandboxPool({
    backend,
    ...sizes,
    ...(o.workspace !== undefined ? { workspace: o.workspace } : {}),
    ...(o.memoryMiB !== undefined ? { memoryMiB: o.memoryMiB } : {}),
    ...(o.diskMiB !== undefined ? { diskMiB: o.diskMiB } : {}),
    ...(o.fileTools !== undefined ? { fileTools: o.fileTools } : {}),
  });
  return { pool, owned: true };
}

const INSTRUCTIONS =
  "Every tool runs inside a LuminaGuard sandbox (a micro-VM or a namespace sandbox) bound to this session's workspace, mounted at /workspace. " +
  "Paths are workspace paths; commands run with no network. Failures come back as results whose text starts with an error code (NOT_FOUND, PATH_ESCAPE, TOOL_TIMEOUT, ...).";

/** A low-level SDK server for one session (the tools' JSON schemas and results are ours, not derived by McpServer). */
export function createSessionServer(session: SandboxSession, o: Pick<McpServeOptions, "beforeToolCall"> = {}): Server {
  const server = new Server(
    { name: "luminaguard", title: "LuminaGuard", version: packageVersion() },
    { capabilities: { tools: { listChanged: false }, logging: {} }, instructions: INSTRUCTIONS },
  );
  const notify = sessionLogger(server, session);
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [...MCP_TOOLS] }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const name = request.params.name;
    if (!isToolName(name)) throw new McpError(ErrorCode.InvalidParams, `unknown tool ${JSON.stringify(name)}; tools: ${TOOL_NAMES.join(", ")}`);
    let controller: AbortController;
    try {
      controller = session.begin(extra.requestId, extra.signal);
    } catch (err) {
      return errorResult(err);
    }
    try {
      // Validated once, here: the hook, the approval card and the sandbox all take these arguments as they are.
      const call = validateCall(name, request.params.arguments ?? {});
      let shape: ((result: Record<string, unknown>) => Record<string, unknown>) | undefined;
      if (o.beforeToolCall) {
        const requestId = extra.requestId;
        const signal = controller.signal;
        const after = await o.beforeToolCall({
          tool: name,
          args: call.args,
          call,
          session: { id: session.id, transport: session.transport },
          server,
          requestId,
          signal,
          canElicit: server.getClientCapabilities()?.elicitation !== undefined,
          elicit: (message, requestedSchema, eo = {}) =>
            server.elicitInput({ mode: "form", message, requestedSchema }, { relatedRequestId: requestId, signal: eo.signal ?? signal, ...(eo.timeoutMs !== undefined ? { timeout: eo.timeoutMs } : {}) }),
          notify: (level, data) => notify(level, data, requestId),
        });
        if (typeof after === "function") shape = after;
      }
      const before = session.stats.sandboxesUsed;
      const sandbox = await session.sandboxFor(controller.signal);
      if (session.stats.sandboxesUsed !== before) {
        notify("info", { event: "sandbox.started", sandbox: sandbox.id, workspace: "/workspace", replaced: before > 0 }, extra.requestId);
      }
      const result = await sandbox.callTool(name, call.args, { signal: controller.signal, maxReadBytes: MCP_READ_MAX_BYTES, maxOutputBytes: MCP_OUTPUT_MAX_BYTES });
      return bounded(name, shape ? shape(result) : result);
    } catch (err) {
      log.debug({ session: session.id, tool: name, err: (err as Error).message }, "mcp tool call failed");
      return errorResult(err);
    } finally {
      session.end(extra.requestId, controller);
    }
  });
  return server;
}

const SEVERITY = new Map(LoggingLevelSchema.options.map((l, i) => [l, i]));

/**
 * The session's MCP logging (`logging/setLevel`, `notifications/message`): the level is the session's own (default
 * info); a message related to a call travels on that call's stream, others on the session's GET stream (stdio: stdout).
 */
function sessionLogger(server: Server, session: SandboxSession): (level: LoggingLevel, data: Record<string, unknown>, relatedRequestId?: string | number) => void {
  let threshold: LoggingLevel = "info";
  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    threshold = request.params.level;
    log.debug({ session: session.id, level: threshold }, "mcp logging level set");
    return {};
  });
  const notify = (level: LoggingLevel, data: Record<string, unknown>, relatedRequestId?: string | number): void => {
    if ((SEVERITY.get(level) ?? 0) < (SEVERITY.get(threshold) ?? 0)) return;
    server
      .notification({ method: "notifications/message", params: { level, logger: "luminaguard", data } }, relatedRequestId !== undefined ? { relatedRequestId } : {})
      .catch((err: unknown) => log.debug({ session: session.id, err: (err as Error).message }, "mcp log notification not sent"));
  };
  session.onEvent = (level, data) => notify(level, data);
  return notify;
}

/** Refuses a result too large to send (a huge listing, output full of escapes) instead of breaking the host's connection. */
function bounded(name: ToolName, result: Record<string, unknown>): CallToolResult {
  const maybeLarge = name !== "read_file" || (typeof result["bytesRead"] === "number" && result["bytesRead"] > 256 * 1024);
  if (maybeLarge) {
    const bytes = Buffer.byteLength(JSON.stringify(result));
    if (bytes * 2 > MCP_RESULT_MAX_BYTES) {
      return errorResult(
        new LuminaGuardError("FILE_TOO_LARGE", `${name}: the result is ${bytes} bytes, too large to send; narrow the request (offset/length, depth/limit, maxResults)`),
      );
    }
  }
  return successResult(name, result);
}
