// The OpenAI and Anthropic adapters against a local server that speaks both protocols: tool calls, retries, failures.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, test } from "node:test";
import { AnthropicProvider } from "../../src/agent/anthropic.js";
import { createProvider, parseModelSpec } from "../../src/agent/models.js";
import { OpenAIProvider } from "../../src/agent/openai.js";
import { ToolCatalogue } from "../../src/agent/tools.js";
import type { ChatMessage, ModelProvider } from "../../src/agent/types.js";
import type { RetryEvent } from "../../src/agent/http.js";
import { LuminaGuardError } from "../../src/errors.js";
import { ANTHROPIC_KEY, FakeLlmServer, OPENAI_KEY } from "./llm-server.js";

const server = await FakeLlmServer.start();
after(() => server.close());
const tools = (await ToolCatalogue.create()).specs;
const fast = { retries: 3, baseDelayMs: 10, maxDelayMs: 2000 };

function providers(retries: RetryEvent[] = []): Array<[string, ModelProvider]> {
  return [
    ["openai", new OpenAIProvider({ model: "gpt-4o-mini", baseUrl: server.openaiBaseUrl, apiKey: OPENAI_KEY, retry: fast, onRetry: (e) => retries.push(e) })],
    ["anthropic", new AnthropicProvider({ model: "claude-sonnet-4-5", baseUrl: server.anthropicBaseUrl, apiKey: ANTHROPIC_KEY, retry: fast, onRetry: (e) => retries.push(e) })],
  ];
}

function complete(p: ModelProvider, messages: ChatMessage[]): ReturnType<ModelProvider["complete"]> {
  return p.complete({ system: "be brief", messages, tools, maxOutputTokens: 256, signal: new AbortController().signal });
}

for (const [name, provider] of providers()) {
  test(`${name}: a tool call, its result sent back in the protocol's format, then a final answer`, async () => {
    server.requests.length = 0;
    server.setScript([
      { text: "Let me look.", calls: [{ name: "read_file", args: { path: "a.txt" } }, { name: "list_directory", args: {} }], usage: { input: 120, output: 30 } },
      (view) => {
        assert.equal(view.toolResults.length, 2);
        assert.equal(view.toolResults[0]?.content, '{"content":"hello"}');
        assert.equal(view.toolResults[1]?.isError, true, "the error result arrives (Anthropic: is_error)");
        return { text: "The file says hello.", usage: { input: 200, output: 8 } };
      },
    ]);
    const messages: ChatMessage[] = [{ role: "user", content: "what is in a.txt?" }];
    const t1 = await complete(provider, messages);
    assert.equal(t1.content, "Let me look.");
    assert.deepEqual(t1.toolCalls.map((c) => [c.name, c.args]), [
      ["read_file", { path: "a.txt" }],
      ["list_directory", {}],
    ]);
    assert.deepEqual(t1.usage, { inputTokens: 120, outputTokens: 30 });
    messages.push({ role: "assistant", content: t1.content, toolCalls: t1.toolCalls });
    messages.push({
      role: "tool",
      results: [
        { callId: t1.toolCalls[0]?.id as string, name: "read_file", content: '{"content":"hello"}', isError: false },
        { callId: t1.toolCalls[1]?.id as string, name: "list_directory", content: '{"error":{"code":"X","message":"y"}}', isError: true },
      ],
    });
    const t2 = await complete(provider, messages);
    assert.equal(t2.content, "The file says hello.");
    assert.equal(t2.toolCalls.length, 0);
    assert.deepEqual(server.invalid, [], "every request was valid for the real protocol");
    const first = server.requests[0]?.body as Record<string, unknown>;
    if (name === "openai") {
      assert.equal((first["tools"] as unknown[]).length, 5);
      assert.equal((first["messages"] as Array<{ role: string }>)[0]?.role, "system");
    } else {
      assert.equal(first["system"], "be brief");
      assert.equal(first["max_tokens"], 256);
      assert.equal(server.requests[0]?.headers["anthropic-version"], "2023-06-01");
    }
  });

  test(`${name}: malformed tool calls become per-call errors, not a failed turn`, async () => {
    server.setScript([
      {
        calls:
          name === "openai"
            ? [{ name: "write_file", rawArgs: '{"path": "a.txt", "content": ' }, { name: "x", malformed: { id: "call_bad", type: "function", function: { arguments: "{}" } } }, { name: "search", args: { pattern: "x" } }]
            : [{ name: "write_file", malformed: { type: "tool_use", id: "toolu_1", name: "write_file", input: "not an object" } }, { name: "x", malformed: { type: "tool_use", input: {} } }, { name: "search", args: { pattern: "x" } }],
      },
    ]);
    const t = await complete(provider, [{ role: "user", content: "go" }]);
    assert.equal(t.toolCalls.length, 3);
    assert.match(t.toolCalls[0]?.error ?? "", name === "openai" ? /not valid JSON/ : /not an object/);
    assert.match(t.toolCalls[1]?.error ?? "", /malformed/);
    assert.equal(t.toolCalls[1]?.name, "invalid_tool_call");
    assert.equal(t.toolCalls[2]?.error, undefined);
  });
}

test("rate limits (429 with retry-after) and outages (500, 529) are retried with backoff, then succeed", async () => {
  const retries: RetryEvent[] = [];
  for (const [name, provider] of providers(retries)) {
    retries.length = 0;
    server.setScript([{ status: 429, retryAfter: "1" }, { status: 500 }, { status: name === "anthropic" ? 529 : 503 }, { text: "finally" }]);
    const started = Date.now();
    const t = await complete(provider, [{ role: "user", content: "hi" }]);
    assert.equal(t.content, "finally");
    assert.deepEqual(retries.map((r) => r.cause), ["429", "500", name === "anthropic" ? "529" : "503"]);
    assert.equal(retries[0]?.delayMs, 1000, "retry-after is honoured");
    assert.ok(Date.now() - started >= 1000);
  }
});

test("an endpoint that stays down is reported as LLM_UNAVAILABLE after the retries", async () => {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const retries: RetryEvent[] = [];
  const p = new OpenAIProvider({ model: "m", baseUrl: `http://127.0.0.1:${port}/v1`, apiKey: "k", retry: { retries: 2, baseDelayMs: 10 }, onRetry: (e) => retries.push(e) });
  await assert.rejects(complete(p, [{ role: "user", content: "hi" }]), (e: unknown) => {
    assert.ok(e instanceof LuminaGuardError);
    assert.equal(e.code, "LLM_UNAVAILABLE");
    assert.match(e.message, /after 3 attempts: ECONNREFUSED/);
    return true;
  });
  assert.equal(retries.length, 2);

  server.setScript([{ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }]);
  const [, anthropic] = providers()[1] as [string, ModelProvider];
  await assert.rejects(complete(anthropic, [{ role: "user", content: "hi" }]), /LLM_UNAVAILABLE|after 4 attempts: HTTP 500: Internal server error/);
});

test("a rejected key or request fails at once with the API's message; a garbled body is LLM_BAD_RESPONSE", async () => {
  const wrongKey = new OpenAIProvider({ model: "m", baseUrl: server.openaiBaseUrl, apiKey: "sk-wrong", retry: fast });
  await assert.rejects(complete(wrongKey, [{ role: "user", content: "hi" }]), (e: unknown) => e instanceof LuminaGuardError && e.code === "LLM_UNAVAILABLE" && /HTTP 401: Incorrect API key/.test(e.message));
  const [, openai] = providers()[0] as [string, ModelProvider];
  server.setScript([{ rawBody: "<html>bad gateway</html>" }]);
  await assert.rejects(complete(openai, [{ role: "user", content: "hi" }]), (e: unknown) => e instanceof LuminaGuardError && e.code === "LLM_BAD_RESPONSE");
  server.setScript([{ rawBody: '{"object":"chat.completion","choices":[]}' }]);
  await assert.rejects(complete(openai, [{ role: "user", content: "hi" }]), (e: unknown) => e instanceof LuminaGuardError && e.code === "LLM_BAD_RESPONSE" && /choices/.test(e.message));
  // Our own request broken on purpose: the server rejects it like the real API would, and we say so.
  const broken = new AnthropicProvider({ model: "claude", baseUrl: server.anthropicBaseUrl, apiKey: ANTHROPIC_KEY, retry: fast });
  await assert.rejects(
    broken.complete({ system: "s", messages: [{ role: "assistant", content: "x", toolCalls: [] }], tools, maxOutputTokens: 10, signal: new AbortController().signal }),
    /HTTP 400: messages: first message must use the "user" role/,
  );
});

test("cancelling stops a request and its backoff at once", async () => {
  const [, openai] = providers()[0] as [string, ModelProvider];
  server.setScript([{ status: 429, retryAfter: "30" }]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  const started = Date.now();
  await assert.rejects(
    openai.complete({ system: "s", messages: [{ role: "user", content: "hi" }], tools, maxOutputTokens: 10, signal: controller.signal }),
    (e: unknown) => e instanceof LuminaGuardError && e.code === "CANCELLED",
  );
  assert.ok(Date.now() - started < 2000);
});

test("--model PROVIDER:MODEL and the environment", () => {
  assert.deepEqual(parseModelSpec("anthropic:claude-sonnet-4-5"), { provider: "anthropic", model: "claude-sonnet-4-5" });
  assert.throws(() => parseModelSpec("gpt-4o"), /PROVIDER:MODEL/);
  assert.throws(() => parseModelSpec("mistral:large"), /PROVIDER:MODEL/);
  assert.throws(() => createProvider("openai:gpt-4o-mini", { env: {} }), /OPENAI_API_KEY/);
  assert.equal(createProvider("openai:llama3", { env: { OPENAI_BASE_URL: "http://127.0.0.1:1/v1" } }).id, "openai:llama3");
  assert.throws(() => createProvider("anthropic:claude", { env: {} }), /ANTHROPIC_API_KEY/);
  assert.equal(createProvider("anthropic:claude", { env: { ANTHROPIC_API_KEY: "k" } }).id, "anthropic:claude");
});
