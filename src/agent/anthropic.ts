// The Anthropic Messages API with tool use.
import { z } from "zod";
import { endpoint, malformedToolCall, requestModel, type RetryConfig } from "./http.js";
import { safeToolName } from "./names.js";
import type { ChatMessage, CompletionRequest, ModelProvider, ModelToolCall, ModelTurn } from "./types.js";

export const DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com";
const ANTHROPIC_VERSION = "2023-06-01";

interface AnthropicProviderOptions extends RetryConfig {
  model: string;
  /** Without /v1 (as the official SDKs take it). */
  baseUrl?: string;
  apiKey: string;
}

const responseSchema = z.object({
  type: z.literal("message"),
  role: z.literal("assistant"),
  content: z.array(z.object({ type: z.string() }).loose()),
  stop_reason: z.string().nullable(),
  usage: z.object({ input_tokens: z.number().nonnegative(), output_tokens: z.number().nonnegative() }).loose(),
});

const toolUseSchema = z.object({ type: z.literal("tool_use"), id: z.string().min(1), name: z.string().min(1), input: z.unknown() });

export class AnthropicProvider implements ModelProvider {
  readonly id: string;
  private readonly url: string;
  private seq = 0;

  constructor(private readonly o: AnthropicProviderOptions) {
    this.id = `anthropic:${o.model}`;
    this.url = endpoint(o.baseUrl ?? DEFAULT_ANTHROPIC_BASE_URL, "/v1/messages");
  }

  async complete(req: CompletionRequest): Promise<ModelTurn> {
    const body: Record<string, unknown> = {
      model: this.o.model,
      max_tokens: req.maxOutputTokens,
      system: req.system,
      messages: req.messages.map(toAnthropic),
    };
    if (req.tools.length > 0) body["tools"] = req.tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.inputSchema }));
    const data = await requestModel({
      provider: this.id,
      url: this.url,
      headers: { "x-api-key": this.o.apiKey, "anthropic-version": ANTHROPIC_VERSION },
      body,
      response: responseSchema,
      signal: req.signal,
      retry: this.o,
    });
    const text: string[] = [];
    const toolCalls: ModelToolCall[] = [];
    for (const block of data.content) {
      if (block.type === "text" && typeof block["text"] === "string") text.push(block["text"]);
      else if (block.type === "tool_use") toolCalls.push(this.toolCall(block));
    }
    return {
      content: text.join(""),
      toolCalls,
      stopReason: data.stop_reason ?? "unknown",
      usage: { inputTokens: data.usage.input_tokens, outputTokens: data.usage.output_tokens },
    };
  }

  private toolCall(block: unknown): ModelToolCall {
    const p = toolUseSchema.safeParse(block);
    if (!p.success) return malformedToolCall(block, p.error, `toolu_lg_${++this.seq}`, { name: "tool_use block", root: "block" });
    const { id, name, input } = p.data;
    if (typeof input !== "object" || input === null || Array.isArray(input)) return { id, name, error: "tool_use input is not an object" };
    return { id, name, args: input };
  }
}

function toAnthropic(m: ChatMessage): Record<string, unknown> {
  switch (m.role) {
    case "user":
      return { role: "user", content: m.content };
    case "assistant": {
      const blocks: Array<Record<string, unknown>> = [];
      if (m.content !== "") blocks.push({ type: "text", text: m.content });
      for (const c of m.toolCalls) {
        const input = typeof c.args === "object" && c.args !== null && !Array.isArray(c.args) ? c.args : {};
        blocks.push({ type: "tool_use", id: c.id, name: safeToolName(c.name), input });
      }
      if (blocks.length === 0) blocks.push({ type: "text", text: "(no content)" });
      return { role: "assistant", content: blocks };
    }
    case "tool":
      return {
        role: "user",
        content: m.results.map((r) => ({ type: "tool_result", tool_use_id: r.callId, content: r.content, ...(r.isError ? { is_error: true } : {}) })),
      };
  }
}
