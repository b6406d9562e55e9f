// The one mock the tests allow: a local HTTP server speaking OpenAI chat completions and Anthropic messages,
// validating requests the way the real APIs do and answering with scripted turns, tool calls and failures.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export const OPENAI_KEY = "sk-test-luminaguard";
export const ANTHROPIC_KEY = "sk-ant-test-luminaguard";

export type Protocol = "openai" | "anthropic";

export interface ScriptedCall {
  name: string;
  args?: unknown;
  /** OpenAI: the arguments string as sent (e.g. broken JSON). */
  rawArgs?: string;
  /** Sent as the whole tool call / tool_use block, for malformed calls. */
  malformed?: Record<string, unknown>;
}

export type ScriptedTurn =
  | { text?: string; calls?: ScriptedCall[]; usage?: { input: number; output: number } }
  | { status: number; retryAfter?: string; message?: string }
  | { rawBody: string; status?: number };

/** What the scripted model sees of a request: the tool results it got back, in order. */
export interface RequestView {
  protocol: Protocol;
  body: Record<string, unknown>;
  toolResults: Array<{ id: string; content: string; isError: boolean }>;
  toolNames: string[];
}

export type ScriptEntry = ScriptedTurn | ((view: RequestView) => ScriptedTurn);

export interface RecordedRequest {
  protocol: Protocol;
  path: string;
  headers: IncomingMessage["headers"];
  body: unknown;
  status: number;
  /** Set when the request broke the protocol (the server answered 400/401 like the real API). */
  invalid?: string;
}

export class FakeLlmServer {
  readonly requests: RecordedRequest[] = [];
  /** Exceptions thrown by scripted turns (their assertions). */
  readonly scriptErrors: unknown[] = [];
  private script: ScriptEntry[];
  private constructor(
    private readonly server: Server,
    script: ScriptEntry[],
    readonly origin: string,
  ) {
    this.script = script;
  }

  static async start(script: ScriptEntry[] = []): Promise<FakeLlmServer> {
    const holder: { self?: FakeLlmServer } = {};
    const server = createServer((req, res) => void (holder.self as FakeLlmServer).handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    holder.self = new FakeLlmServer(server, script, `http://127.0.0.1:${port}`);
    return holder.self;
  }

  /** OPENAI_BASE_URL for this server. */
  get openaiBaseUrl(): string {
    return `${this.origin}/v1`;
  }

  /** ANTHROPIC_BASE_URL for this server. */
  get anthropicBaseUrl(): string {
    return this.origin;
  }

  get invalid(): RecordedRequest[] {
    return this.requests.filter((r) => r.invalid !== undefined);
  }

  setScript(script: ScriptEntry[]): void {
    this.script = script;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const path = (req.url ?? "").split("?")[0] ?? "";
    const protocol: Protocol | undefined = path === "/v1/chat/completions" ? "openai" : path === "/v1/messages" ? "anthropic" : undefined;
    const record: RecordedRequest = { protocol: protocol ?? "openai", path, headers: req.headers, body: undefined, status: 0 };
    this.requests.push(record);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      record.status = status;
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    const reject = (status: number, message: string, type = "invalid_request_error"): void => {
      record.invalid = message;
      send(status, protocol === "anthropic" ? { type: "error", error: { type, message } } : { error: { message, type, param: null, code: null } });
    };
    if (req.method !== "POST" || protocol === undefined) return reject(404, `no route ${req.method ?? "?"} ${path}`, "not_found_error");
    if (!/^application\/json\b/.test(req.headers["content-type"] ?? "")) return reject(400, "content-type must be application/json");
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return reject(400, "We could not parse the JSON body of your request.");
    }
    record.body = body;
    if (protocol === "openai") {
      if (req.headers["authorization"] !== `Bearer ${OPENAI_KEY}`) return reject(401, "Incorrect API key provided.", "invalid_api_key");
    } else {
      if (req.headers["x-api-key"] !== ANTHROPIC_KEY) return reject(401, "invalid x-api-key", "authentication_error");
      if (req.headers["anthropic-version"] === undefined) return reject(400, "anthropic-version: header is required");
    }
    const problem = protocol === "openai" ? validateOpenAI(body) : validateAnthropic(body);
    if (problem) return reject(400, problem);
    const view = protocol === "openai" ? viewOpenAI(body as Record<string, unknown>) : viewAnthropic(body as Record<string, unknown>);
    const entry = this.script.shift();
    let turn: ScriptedTurn;
    try {
      turn = entry === undefined ? { text: "done" } : typeof entry === "function" ? entry(view) : entry;
    } catch (err) {
      // A failed expectation inside a scripted turn must fail the test, not hang the client.
      record.invalid = `script error: ${(err as Error).message}`;
      this.scriptErrors.push(err);
      send(400, { error: { message: record.invalid, type: "invalid_request_error", param: null, code: null } });
      return;
    }
    if ("rawBody" in turn) {
      record.status = turn.status ?? 200;
      res.writeHead(record.status, { "content-type": "application/json" });
      res.end(turn.rawBody);
      return;
    }
    if ("status" in turn) {
      const headers: Record<string, string> = turn.retryAfter !== undefined ? { "retry-after": turn.retryAfter } : {};
      const type = turn.status === 429 ? "rate_limit_error" : turn.status === 529 ? "overloaded_error" : "api_error";
      const message = turn.message ?? (turn.status === 429 ? "Rate limit reached" : "Internal server error");
      send(turn.status, protocol === "anthropic" ? { type: "error", error: { type, message } } : { error: { message, type, param: null, code: null } }, headers);
      return;
    }
    const model = String((body as Record<string, unknown>)["model"]);
    send(200, protocol === "openai" ? openaiAnswer(model, turn) : anthropicAnswer(model, turn));
  }
}

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const OPENAI_PARAMS = new Set(["model", "messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stream", "n", "stop", "user", "parallel_tool_calls", "response_format", "seed"]);

function validateOpenAI(b: unknown): string | undefined {
  if (!isObj(b)) return "request body must be an object";
  for (const k of Object.keys(b)) if (!OPENAI_PARAMS.has(k)) return `Unrecognized request argument supplied: ${k}`;
  if (typeof b["model"] !== "string" || b["model"] === "") return "you must provide a model parameter";
  const messages = b["messages"];
  if (!Array.isArray(messages) || messages.length === 0) return "'messages' must be a non-empty array";
  let pending: Set<string> | undefined;
  for (const [i, m] of messages.entries()) {
    if (!isObj(m)) return `messages[${i}]: must be an object`;
    const role = m["role"];
    if (pending && pending.size > 0 && role !== "tool") {
      return `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...pending].join(", ")}`;
    }
    switch (role) {
      case "system":
      case "developer":
      case "user":
        if (typeof m["content"] !== "string" && !Array.isArray(m["content"])) return `messages[${i}].content: expected a string`;
        pending = undefined;
        break;
      case "assistant": {
        const calls = m["tool_calls"];
        if (m["content"] !== null && m["content"] !== undefined && typeof m["content"] !== "string") return `messages[${i}].content: expected a string or null`;
        if (calls !== undefined) {
          if (!Array.isArray(calls) || calls.length === 0) return `messages[${i}].tool_calls: expected a non-empty array`;
          pending = new Set();
          for (const [j, c] of calls.entries()) {
            if (!isObj(c) || typeof c["id"] !== "string" || c["type"] !== "function" || !isObj(c["function"])) return `messages[${i}].tool_calls[${j}]: invalid tool call`;
            const fn = c["function"];
            if (typeof fn["name"] !== "string" || typeof fn["arguments"] !== "string") return `messages[${i}].tool_calls[${j}].function: name and arguments (a string) are required`;
            pending.add(c["id"]);
          }
        } else {
          if (typeof m["content"] !== "string") return `messages[${i}]: an assistant message needs content or tool_calls`;
          pending = undefined;
        }
        break;
      }
      case "tool": {
        if (typeof m["tool_call_id"] !== "string" || typeof m["content"] !== "string") return `messages[${i}]: tool messages need tool_call_id and string content`;
        if (!pending || !pending.has(m["tool_call_id"])) return `Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.`;
        pending.delete(m["tool_call_id"]);
        break;
      }
      default:
        return `messages[${i}].role: invalid value ${JSON.stringify(role)}`;
    }
  }
  if (pending && pending.size > 0) return `tool_call_ids did not have response messages: ${[...pending].join(", ")}`;
  if (b["tools"] !== undefined) {
    if (!Array.isArray(b["tools"])) return "tools: expected an array";
    for (const [i, t] of b["tools"].entries()) {
      if (!isObj(t) || t["type"] !== "function" || !isObj(t["function"])) return `tools[${i}]: expected {type: "function", function: {...}}`;
      const fn = t["function"];
      if (typeof fn["name"] !== "string" || !NAME.test(fn["name"])) return `tools[${i}].function.name: string does not match pattern ^[a-zA-Z0-9_-]{1,64}$`;
      if (fn["parameters"] !== undefined && (!isObj(fn["parameters"]) || fn["parameters"]["type"] !== "object")) return `tools[${i}].function.parameters: must be a JSON schema of type object`;
    }
  }
  if (b["tool_choice"] !== undefined && !["auto", "none", "required"].includes(String(b["tool_choice"])) && !isObj(b["tool_choice"])) return "tool_choice: invalid value";
  return undefined;
}

const ANTHROPIC_PARAMS = new Set(["model", "messages", "max_tokens", "system", "tools", "tool_choice", "temperature", "top_p", "top_k", "stop_sequences", "stream", "metadata"]);

function validateAnthropic(b: unknown): string | undefined {
  if (!isObj(b)) return "request body must be an object";
  for (const k of Object.keys(b)) if (!ANTHROPIC_PARAMS.has(k)) return `${k}: Extra inputs are not permitted`;
  if (typeof b["model"] !== "string" || b["model"] === "") return "model: Field required";
  if (!Number.isInteger(b["max_tokens"]) || (b["max_tokens"] as number) < 1) return "max_tokens: Field required";
  if (b["system"] !== undefined && typeof b["system"] !== "string" && !Array.isArray(b["system"])) return "system: Input should be a valid string";
  const messages = b["messages"];
  if (!Array.isArray(messages) || messages.length === 0) return "messages: at least one message is required";
  let expected: Set<string> | undefined;
  for (const [i, m] of messages.entries()) {
    if (!isObj(m)) return `messages.${i}: Input should be an object`;
    if (i === 0 && m["role"] !== "user") return "messages: first message must use the \"user\" role";
    if (m["role"] !== "user" && m["role"] !== "assistant") return `messages.${i}.role: Input should be 'user' or 'assistant'`;
    const blocks = typeof m["content"] === "string" ? [{ type: "text", text: m["content"] }] : m["content"];
    if (!Array.isArray(blocks) || blocks.length === 0) return `messages.${i}.content: must be a string or a non-empty array`;
    const seenResults = new Set<string>();
    const uses = new Set<string>();
    for (const [j, blk] of blocks.entries()) {
      if (!isObj(blk)) return `messages.${i}.content.${j}: Input should be an object`;
      switch (blk["type"]) {
        case "text":
          if (typeof blk["text"] !== "string" || blk["text"] === "") return `messages.${i}.content.${j}.text: text content blocks must be non-empty`;
          break;
        case "tool_use":
          if (m["role"] !== "assistant") return `messages.${i}.content.${j}: tool_use blocks are only allowed in assistant messages`;
          if (typeof blk["id"] !== "string" || typeof blk["name"] !== "string" || !NAME.test(blk["name"]) || !isObj(blk["input"])) return `messages.${i}.content.${j}: invalid tool_use block`;
          uses.add(blk["id"]);
          break;
        case "tool_result":
          if (m["role"] !== "user") return `messages.${i}.content.${j}: tool_result blocks are only allowed in user messages`;
          if (typeof blk["tool_use_id"] !== "string") return `messages.${i}.content.${j}.tool_use_id: Field required`;
          if (!expected || !expected.has(blk["tool_use_id"])) {
            return `messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${blk["tool_use_id"]}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`;
          }
          if (blk["content"] !== undefined && typeof blk["content"] !== "string" && !Array.isArray(blk["content"])) return `messages.${i}.content.${j}.content: invalid`;
          seenResults.add(blk["tool_use_id"]);
          break;
        default:
          return `messages.${i}.content.${j}.type: unknown block type ${JSON.stringify(blk["type"])}`;
      }
    }
    if (expected && expected.size > 0) {
      const missing = [...expected].filter((id) => !seenResults.has(id));
      if (m["role"] !== "user" || missing.length > 0) {
        return `messages.${i}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(", ")}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`;
      }
    }
    expected = m["role"] === "assistant" ? uses : undefined;
  }
  if (expected && expected.size > 0) return "the last assistant message has tool_use blocks without results";
  if (b["tools"] !== undefined) {
    if (!Array.isArray(b["tools"])) return "tools: Input should be a valid list";
    for (const [i, t] of b["tools"].entries()) {
      if (!isObj(t)) return `tools.${i}: Input should be an object`;
      for (const k of Object.keys(t)) if (!["name", "description", "input_schema", "cache_control", "type"].includes(k)) return `tools.${i}.${k}: Extra inputs are not permitted`;
      if (typeof t["name"] !== "string" || !NAME.test(t["name"])) return `tools.${i}.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`;
      if (!isObj(t["input_schema"]) || t["input_schema"]["type"] !== "object") return `tools.${i}.input_schema: Input should be a valid JSON schema of type object`;
    }
  }
  return undefined;
}

function viewOpenAI(b: Record<string, unknown>): RequestView {
  const messages = b["messages"] as Array<Record<string, unknown>>;
  const toolResults: RequestView["toolResults"] = [];
  for (let i = messages.length - 1; i >= 0 && (messages[i] as Record<string, unknown>)["role"] === "tool"; i--) {
    const m = messages[i] as Record<string, unknown>;
    const content = String(m["content"]);
    toolResults.unshift({ id: String(m["tool_call_id"]), content, isError: content.startsWith('{"error"') });
  }
  const toolNames = ((b["tools"] as Array<{ function: { name: string } }> | undefined) ?? []).map((t) => t.function.name);
  return { protocol: "openai", body: b, toolResults, toolNames };
}

function viewAnthropic(b: Record<string, unknown>): RequestView {
  const messages = b["messages"] as Array<Record<string, unknown>>;
  const last = messages[messages.length - 1] as Record<string, unknown>;
  const toolResults: RequestView["toolResults"] = [];
  if (Array.isArray(last["content"])) {
    for (const blk of last["content"] as Array<Record<string, unknown>>) {
      if (blk["type"] === "tool_result") toolResults.push({ id: String(blk["tool_use_id"]), content: String(blk["content"]), isError: blk["is_error"] === true });
    }
  }
  const toolNames = ((b["tools"] as Array<{ name: string }> | undefined) ?? []).map((t) => t.name);
  return { protocol: "anthropic", body: b, toolResults, toolNames };
}

function openaiAnswer(model: string, t: Extract<ScriptedTurn, { text?: string }>): unknown {
  const calls = (t.calls ?? []).map((c) =>
    c.malformed ?? { id: `call_${randomBytes(6).toString("hex")}`, type: "function", function: { name: c.name, arguments: c.rawArgs ?? JSON.stringify(c.args ?? {}) } },
  );
  return {
    id: `chatcmpl-${randomBytes(8).toString("hex")}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: t.text ?? null, refusal: null, ...(calls.length > 0 ? { tool_calls: calls } : {}) },
        logprobs: null,
        finish_reason: calls.length > 0 ? "tool_calls" : "stop",
      },
    ],
    usage: { prompt_tokens: t.usage?.input ?? 50, completion_tokens: t.usage?.output ?? 10, total_tokens: (t.usage?.input ?? 50) + (t.usage?.output ?? 10) },
  };
}

function anthropicAnswer(model: string, t: Extract<ScriptedTurn, { text?: string }>): unknown {
  const content: unknown[] = [];
  if (t.text !== undefined && t.text !== "") content.push({ type: "text", text: t.text });
  for (const c of t.calls ?? []) content.push(c.malformed ?? { type: "tool_use", id: `toolu_${randomBytes(8).toString("hex")}`, name: c.name, input: c.args ?? {} });
  return {
    id: `msg_${randomBytes(8).toString("hex")}`,
    type: "message",
    role: "assistant",
    model,
    content,
    stop_reason: (t.calls ?? []).length > 0 ? "tool_use" : "end_turn",
    stop_sequence: null,
    usage: { input_tokens: t.usage?.input ?? 50, output_tokens: t.usage?.output ?? 10 },
  };
}
