// The provider-neutral conversation: what the loop keeps, and what each LLM protocol adapter translates to and from.

/** A tool as offered to the model. */
export interface ToolSpec {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
}

/** One tool call proposed by the model (or a plan step). Malformed calls are kept, with `error` saying why. */
export interface ModelToolCall {
  id: string;
  name: string;
  /** Parsed arguments; undefined when they could not be parsed. */
  args?: unknown;
  /** The arguments exactly as the model sent them (OpenAI sends a JSON string), for echoing back. */
  rawArgs?: string;
  /** Why this call cannot be understood (bad JSON, missing name, ...). */
  error?: string;
  /** Plan steps may name an external server directly. */
  server?: string;
}

export interface ToolResultMessage {
  callId: string;
  name: string;
  /** JSON text of the result or of `{ error: { code, message } }`. */
  content: string;
  isError: boolean;
}

export type ChatMessage =
  | { role: "user"; content: string }
  | { role: "assistant"; content: string; toolCalls: ModelToolCall[] }
  | { role: "tool"; results: ToolResultMessage[] };

export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

export interface ModelTurn {
  content: string;
  toolCalls: ModelToolCall[];
  stopReason: string;
  usage: Usage;
}

export interface CompletionRequest {
  system: string;
  messages: readonly ChatMessage[];
  tools: readonly ToolSpec[];
  /** Output cap per turn (Anthropic requires one). */
  maxOutputTokens: number;
  signal: AbortSignal;
}

/** What the loop needs from a model: one turn at a time. */
export interface ModelProvider {
  /** `openai:gpt-4o-mini`, `anthropic:claude-…`, `plan:FILE`. */
  readonly id: string;
  complete(request: CompletionRequest): Promise<ModelTurn>;
}

/** A tool of an external MCP server, as the MCP client pool lists it. */
export interface ExternalToolInfo {
  server: string;
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
  /** The server's claim; the policy decides whether the tool is read-only. */
  readOnlyHint?: boolean;
}

/** External tools (the MCP client pool plugs in here). */
export interface ExternalTools {
  list(options?: { signal?: AbortSignal }): Promise<ExternalToolInfo[]>;
  call(server: string, tool: string, args: Record<string, unknown>, options: { signal: AbortSignal }): Promise<unknown>;
  /** Releases connections (stops upstream server processes); called when the run ends. */
  close?(): Promise<void>;
}
