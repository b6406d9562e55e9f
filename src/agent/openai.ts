// OpenAI-compatible chat completions with function tool calls (OpenAI, and servers that speak its protocol).
import { z } from "zod";
import { endpoint, malformedToolCall, requestModel, type RetryConfig } from "./http.js";
import { safeToolName } from "./names.js";
import type { ChatMessage, CompletionRequest, ModelProvider, ModelToolCall, ModelTurn } from "./types.js";

export const DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1";

interface OpenAIProviderOptions extends RetryConfig {
  model: string;
  /** Ends in /v1 (the chat completions path is appended). */
  baseUrl?: string;
  apiKey?: string;
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
    this.url = endpoint(o.baseUrl ?? DEFAULT_OPENAI_BASE_URL, "/chat/completions");
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
    const data = await requestModel({
      provider: this.id,
      url: this.url,
      headers: this.o.apiKey ? { authorization: `Bearer ${this.o.apiKey}` } : {},
      body,
      response: responseSchema,
      signal: req.signal,
      retry: this.o,
    });
    const choice = data.choices[0] as z.infer<typeof responseSchema>["choices"][number];
    const toolCalls = (choice.message.tool_calls ?? []).map((tc) => this.toolCall(tc));
    return {
      content: choice.message.content ?? choice.message.refusal ?? "",
      toolCalls,
      stopReason: choice.finish_reason ?? "unknown",
      usage: { inputTokens: data.usage?.prompt_tokens ?? 0, outputTokens: data.usage?.completion_tokens ?? 0 },
    };
  }

  private toolCall(raw: unknown): ModelToolCall {
    const p = toolCallSchema.safeParse(raw);
    if (!p.success) return malformedToolCall(raw, p.error, `call_lg_${++this.seq}`, { name: "tool call", root: "call" });
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
