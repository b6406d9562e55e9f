// OpenAI-compatible chat completions with function tool calls (OpenAI, and servers that speak its protocol).
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { postJson, type RetryEvent, type RetryOptions } from "./http.js";
import { safeToolName } from "./names.js";
import type { ChatMessage, CompletionRequest, ModelProvider, ModelToolCall, ModelTurn } from "./types.js";

export const DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1";

export interface OpenAIProviderOptions {
  model: string;
  /** Ends in /v1 (the chat completions path is appended). */
  baseUrl?: string;
  apiKey?: string;
  retry?: RetryOptions;
  onRetry?: (e: RetryEvent) => void;
}

const responseSchema = z.object({
  choices: z
    .array(
      z.object({
        message: z.object({
          content: z.string().nullable().optional(),
          refusal: z.string().nullable().optional(),
          tool_calls: z.array(z.unknown()).nullable().optional(),
        }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1),
  usage: z.object({ prompt_tokens: z.number().nonnegative(), completion_tokens: z.number().nonnegative() }).nullable().optional(),
});

const toolCallSchema = z.object({
  id: z.string().min(1),
  type: z.literal("function").optional(),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

export class OpenAIProvider implements ModelProvider {
  readonly id: string;
  private readonly url: string;
  private seq = 0;

  constructor(private readonly o: OpenAIProviderOptions) {
    this.id = `openai:${o.model}`;
    this.url = `${(o.baseUrl ?? DEFAULT_OPENAI_BASE_URL).replace(/\/+$/, "")}/chat/completions`;
  }

  async complete(req: CompletionRequest): Promise<ModelTurn> {
    const body: Record<string, unknown> = {
      model: this.o.model,
      messages: [{ role: "system", content: req.system }, ...req.messages.flatMap(toOpenAI)],
    };
    if (req.tools.length > 0) {
      body["tools"] = req.tools.map((t) => ({ type: "function", function: { name: t.name, description: t.description, parameters: t.inputSchema } }));
      body["tool_choice"] = "auto";
    }
    const raw = await postJson(this.url, this.o.apiKey ? { authorization: `Bearer ${this.o.apiKey}` } : {}, body, {
      provider: this.id,
      signal: req.signal,
      ...(this.o.retry ? { retry: this.o.retry } : {}),
      ...(this.o.onRetry ? { onRetry: this.o.onRetry } : {}),
    });
    const parsed = responseSchema.safeParse(raw);
    if (!parsed.success) {
      throw new LuminaGuardError("LLM_BAD_RESPONSE", `${this.id}: unexpected response: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    }
    const choice = parsed.data.choices[0] as z.infer<typeof responseSchema>["choices"][number];
    const toolCalls = (choice.message.tool_calls ?? []).map((tc) => this.toolCall(tc));
    return {
      content: choice.message.content ?? choice.message.refusal ?? "",
      toolCalls,
      stopReason: choice.finish_reason ?? "unknown",
      usage: { inputTokens: parsed.data.usage?.prompt_tokens ?? 0, outputTokens: parsed.data.usage?.completion_tokens ?? 0 },
    };
  }

  private toolCall(raw: unknown): ModelToolCall {
    const p = toolCallSchema.safeParse(raw);
    if (!p.success) {
      const id = typeof (raw as { id?: unknown })?.id === "string" ? (raw as { id: string }).id : `call_lg_${++this.seq}`;
      return { id, name: "invalid_tool_call", error: `malformed tool call: ${p.error.issues.map((i) => `${i.path.join(".") || "call"}: ${i.message}`).join("; ")}` };
    }
    const { id, function: fn } = p.data;
    try {
      return { id, name: fn.name, rawArgs: fn.arguments, args: fn.arguments.trim() === "" ? {} : (JSON.parse(fn.arguments) as unknown) };
    } catch (err) {
      return { id, name: fn.name, rawArgs: fn.arguments, error: `arguments are not valid JSON: ${(err as Error).message}` };
    }
  }
}

function toOpenAI(m: ChatMessage): Array<Record<string, unknown>> {
  switch (m.role) {
    case "user":
      return [{ role: "user", content: m.content }];
    case "assistant":
      return [
        {
          role: "assistant",
          content: m.content === "" && m.toolCalls.length > 0 ? null : m.content,
          ...(m.toolCalls.length > 0
            ? {
                tool_calls: m.toolCalls.map((c) => ({
                  id: c.id,
                  type: "function",
                  function: { name: safeToolName(c.name), arguments: c.rawArgs ?? JSON.stringify(c.args ?? {}) },
                })),
              }
            : {}),
        },
      ];
    case "tool":
      return m.results.map((r) => ({ role: "tool", tool_call_id: r.callId, content: r.content }));
  }
}
