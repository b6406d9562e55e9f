// The agent loop: the model proposes tool calls, each one goes through the approval cliff, then into the sandbox or to an MCP server.
import { denialResult, type ApprovalGate, type GateDecision } from "../approval/gate.js";
import { isRecord } from "../approval/policy.js";
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import type { SandboxApi as Sandbox } from "../runtime/sandbox.js";
import { parseToolArgs } from "../tools/registry.js";
import { newRunId, type Transcript } from "./transcript.js";
import { ToolCatalogue, type ResolvedTool } from "./tools.js";
import type { ChatMessage, ExternalTools, ModelProvider, ModelToolCall, ToolResultMessage, Usage } from "./types.js";

export const DEFAULT_MAX_STEPS = 20;
const DEFAULT_MAX_OUTPUT_TOKENS = 4096;
/** Tool results longer than this are cut before they go back to the model. */
const MAX_RESULT_CHARS = 32_000;
const MAX_CALLS_PER_TURN = 32;

const DEFAULT_SYSTEM_PROMPT = [
  "You are an agent working in an isolated sandbox. The project's files are in /workspace.",
  "Use the tools to complete the task. Reading is free. Writing files, running commands and external tools stop for a person's approval and may be denied.",
  "A denial is final for that action: do not retry it; adapt your approach or explain what you could not do.",
  "Nothing you write can approve an action. When the task is done, reply with a short summary and no tool call.",
].join(" ");

type AgentStatus = "completed" | "max_steps" | "budget_exceeded" | "cancelled" | "failed";

export type AgentEvent =
  | { type: "model"; step: number; content: string; toolCalls: Array<{ id: string; name: string }>; usage: Usage }
  | { type: "decision"; step: number; callId: string; tool: string; server?: string; decision: GateDecision }
  | { type: "tool_result"; step: number; callId: string; tool: string; ok: boolean; result: unknown };

export interface AgentRunOptions {
  task: string;
  provider: ModelProvider;
  sandbox: Sandbox;
  gate: ApprovalGate;
  externalTools?: ExternalTools;
  /** Model turns. Default 20. */
  maxSteps?: number;
  /** Total tokens (input + output) the run may use. */
  maxTokens?: number;
  /** Wall-clock budget of the whole run. */
  maxTimeMs?: number;
  maxOutputTokens?: number;
  systemPrompt?: string;
  signal?: AbortSignal;
  runId?: string;
  transcript?: Transcript;
  onEvent?: (e: AgentEvent) => void;
}

export interface AgentRunResult {
  runId: string;
  status: AgentStatus;
  steps: number;
  toolCalls: number;
  denied: number;
  failed: number;
  finalText: string;
  usage: Usage;
  durationMs: number;
  error?: { code: string; message: string };
}

export async function runAgent(o: AgentRunOptions): Promise<AgentRunResult> {
  const started = Date.now();
  const runId = o.runId ?? newRunId();
  const maxSteps = o.maxSteps ?? DEFAULT_MAX_STEPS;
  const usage: Usage = { inputTokens: 0, outputTokens: 0 };
  const counts = { toolCalls: 0, denied: 0, failed: 0 };
  const budget = new AbortController();
  const budgetTimer = o.maxTimeMs !== undefined ? setTimeout(() => budget.abort("time budget"), o.maxTimeMs) : undefined;
  const signal = o.signal ? AbortSignal.any([o.signal, budget.signal]) : budget.signal;
  const messages: ChatMessage[] = [{ role: "user", content: o.task }];
  let steps = 0;
  let finalText = "";

  const emit = (e: AgentEvent): void => {
    o.transcript?.write(transcriptEvent(e));
    o.onEvent?.(e);
  };
  const finish = (status: AgentStatus, error?: LuminaGuardError): AgentRunResult => {
    if (budgetTimer) clearTimeout(budgetTimer);
    const result: AgentRunResult = {
      runId,
      status,
      steps,
      ...counts,
      finalText,
      usage,
      durationMs: Date.now() - started,
      ...(error ? { error: { code: error.code, message: error.message } } : {}),
    };
    o.transcript?.write({ type: "end", ...result });
    o.transcript?.writeSummary({ ...result, task: o.task, model: o.provider.id, sandbox: { id: o.sandbox.id, backend: o.sandbox.backend, workspace: o.sandbox.workspace } });
    return result;
  };
  const stopped = (): AgentStatus | undefined => (o.signal?.aborted ? "cancelled" : budget.signal.aborted ? "budget_exceeded" : undefined);

  o.transcript?.write({
    type: "start",
    runId,
    task: o.task,
    model: o.provider.id,
    maxSteps,
    ...(o.maxTokens !== undefined ? { maxTokens: o.maxTokens } : {}),
    ...(o.maxTimeMs !== undefined ? { maxTimeMs: o.maxTimeMs } : {}),
    sandbox: { id: o.sandbox.id, backend: o.sandbox.backend, workspace: o.sandbox.workspace, info: o.sandbox.info },
  });

  let catalogue: ToolCatalogue;
  try {
    catalogue = await ToolCatalogue.create(o.externalTools, signal);
  } catch (err) {
    return finish(stopped() ?? "failed", toLuminaGuardError(err));
  }

  try {
    while (steps < maxSteps) {
      const halt = stopped();
      if (halt) return finish(halt);
      if (o.maxTokens !== undefined && usage.inputTokens + usage.outputTokens >= o.maxTokens) {
        return finish("budget_exceeded", new LuminaGuardError("BUDGET_EXCEEDED", `token budget of ${o.maxTokens} used up (${usage.inputTokens + usage.outputTokens})`));
      }
      steps++;
      const turn = await o.provider.complete({
        system: o.systemPrompt ?? DEFAULT_SYSTEM_PROMPT,
        messages,
        tools: catalogue.specs,
        maxOutputTokens: o.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
        signal,
      });
      usage.inputTokens += turn.usage.inputTokens;
      usage.outputTokens += turn.usage.outputTokens;
      emit({ type: "model", step: steps, content: turn.content, toolCalls: turn.toolCalls.map((c) => ({ id: c.id, name: c.name })), usage: turn.usage });
      o.transcript?.write({ type: "model_detail", step: steps, stopReason: turn.stopReason, toolCalls: turn.toolCalls });
      messages.push({ role: "assistant", content: turn.content, toolCalls: turn.toolCalls });
      if (turn.toolCalls.length === 0) {
        finalText = turn.content;
        return finish("completed");
      }
      const results: ToolResultMessage[] = [];
      for (const [i, call] of turn.toolCalls.entries()) {
        if (i >= MAX_CALLS_PER_TURN) {
          results.push(errorResult(call, "INVALID_ARGUMENT", `more than ${MAX_CALLS_PER_TURN} tool calls in one turn; this one was not run`));
          continue;
        }
        const halted = stopped();
        if (halted) return finish(halted);
        counts.toolCalls++;
        results.push(await handleCall(o, catalogue, call, steps, signal, counts, emit));
      }
      messages.push({ role: "tool", results });
    }
    return finish("max_steps");
  } catch (err) {
    const halt = stopped();
    if (halt) return finish(halt, halt === "budget_exceeded" ? new LuminaGuardError("BUDGET_EXCEEDED", `time budget of ${o.maxTimeMs} ms used up`) : undefined);
    return finish("failed", toLuminaGuardError(err));
  }
}

async function handleCall(
  o: AgentRunOptions,
  catalogue: ToolCatalogue,
  call: ModelToolCall,
  step: number,
  signal: AbortSignal,
  counts: { denied: number; failed: number },
  emit: (e: AgentEvent) => void,
): Promise<ToolResultMessage> {
  const fail = (code: string, message: string): ToolResultMessage => {
    counts.failed++;
    const r = errorResult(call, code, message);
    emit({ type: "tool_result", step, callId: call.id, tool: call.name, ok: false, result: JSON.parse(r.content) as unknown });
    return r;
  };
  if (call.error !== undefined) return fail("INVALID_ARGUMENT", call.error);
  const resolved = catalogue.resolve(call.name, call.server);
  if (!resolved) {
    const where = call.server !== undefined ? ` on server ${JSON.stringify(call.server)}` : "";
    return fail("INVALID_ARGUMENT", `unknown tool ${JSON.stringify(call.name)}${where}; available tools: ${catalogue.names().join(", ")}`);
  }
  let args: Record<string, unknown>;
  try {
    args = validateArgs(resolved, call.args);
  } catch (err) {
    const e = toLuminaGuardError(err, "INVALID_ARGUMENT");
    return fail(e.code, e.message);
  }
  const request = resolved.kind === "builtin" ? { tool: resolved.tool, args } : { server: resolved.server, tool: resolved.tool, args };
  // The model's text and arguments never reach the approver as an answer: only the card is shown.
  const decision = await o.gate.check(request, {
    signal,
    ...(resolved.kind === "builtin" ? { readFile: (p: string) => readCurrent(o.sandbox, p, signal) } : {}),
    ...(resolved.kind === "external"
      ? {
          toolInfo: {
            ...(resolved.info.description !== undefined ? { description: resolved.info.description } : {}),
            ...(resolved.info.readOnlyHint !== undefined ? { readOnlyHint: resolved.info.readOnlyHint } : {}),
          },
        }
      : {}),
  });
  emit({ type: "decision", step, callId: call.id, tool: request.tool, ...(request.server !== undefined ? { server: request.server } : {}), decision });
  if (decision.decision === "deny") {
    counts.denied++;
    const result = denialResult(decision);
    emit({ type: "tool_result", step, callId: call.id, tool: call.name, ok: false, result });
    return { callId: call.id, name: call.name, content: JSON.stringify(result), isError: true };
  }
  try {
    const result =
      resolved.kind === "builtin"
        ? o.gate.filterResult(request, await o.sandbox.callTool(resolved.tool, args, { signal }))
        : await (o.externalTools as NonNullable<AgentRunOptions["externalTools"]>).call(resolved.server, resolved.tool, args, { signal });
    emit({ type: "tool_result", step, callId: call.id, tool: call.name, ok: true, result });
    return { callId: call.id, name: call.name, content: clipResult(JSON.stringify(result ?? null)), isError: false };
  } catch (err) {
    if (signal.aborted) throw err;
    const e = toLuminaGuardError(err);
    return fail(e.code, e.message);
  }
}

/** The one parse of a call's arguments: the gate's card and the sandbox take a built-in's parsed arguments as they are. */
function validateArgs(resolved: ResolvedTool, raw: unknown): Record<string, unknown> {
  if (resolved.kind === "builtin") return parseToolArgs(resolved.tool, raw ?? {}) as Record<string, unknown>;
  if (raw === undefined) return {};
  if (!isRecord(raw)) throw new LuminaGuardError("INVALID_ARGUMENT", `${resolved.server}/${resolved.tool}: arguments must be a JSON object`);
  return raw;
}

async function readCurrent(sandbox: Sandbox, path: string, signal: AbortSignal): Promise<Buffer | null> {
  try {
    return (await sandbox.files.read(path, { signal })).content;
  } catch (err) {
    if (err instanceof LuminaGuardError && err.code === "NOT_FOUND") return null;
    throw err;
  }
}

function errorResult(call: ModelToolCall, code: string, message: string): ToolResultMessage {
  return { callId: call.id, name: call.name, content: JSON.stringify({ error: { code, message } }), isError: true };
}

function clipResult(text: string): string {
  return text.length <= MAX_RESULT_CHARS ? text : `${text.slice(0, MAX_RESULT_CHARS)}… [result cut at ${MAX_RESULT_CHARS} of ${text.length} characters]`;
}

const MAX_TRANSCRIPT_RESULT_CHARS = 64 * 1024;

function transcriptEvent(e: AgentEvent): Record<string, unknown> {
  if (e.type === "tool_result") {
    const text = JSON.stringify(e.result ?? null);
    return text.length <= MAX_TRANSCRIPT_RESULT_CHARS ? { ...e } : { ...e, result: { clipped: true, chars: text.length, preview: text.slice(0, MAX_TRANSCRIPT_RESULT_CHARS) } };
  }
  if (e.type !== "decision") return e as unknown as Record<string, unknown>;
  const d = e.decision;
  return {
    type: "decision",
    step: e.step,
    callId: e.callId,
    tool: e.tool,
    ...(e.server !== undefined ? { server: e.server } : {}),
    decision: d.decision,
    channel: d.channel,
    actor: d.actor,
    rule: d.rule,
    class: d.class,
    risk: d.risk,
    reason: d.reason,
    auditId: d.auditId,
    summary: d.card.summary,
  };
}
