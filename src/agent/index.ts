// The agent loop's public surface: providers, plans, the loop, transcripts and the `run` command.
export { runAgent, DEFAULT_MAX_STEPS, DEFAULT_SYSTEM_PROMPT, MAX_RESULT_CHARS } from "./loop.js";
export type { AgentRunOptions, AgentRunResult, AgentStatus, AgentEvent } from "./loop.js";
export { OpenAIProvider, DEFAULT_OPENAI_BASE_URL } from "./openai.js";
export type { OpenAIProviderOptions } from "./openai.js";
export { AnthropicProvider, DEFAULT_ANTHROPIC_BASE_URL, ANTHROPIC_VERSION } from "./anthropic.js";
export type { AnthropicProviderOptions } from "./anthropic.js";
export { createProvider, parseModelSpec, PROVIDERS } from "./models.js";
export type { ProviderName, ProviderOptions } from "./models.js";
export type { RetryOptions, RetryEvent } from "./http.js";
export { loadPlan, parsePlan, PlanProvider, planSchema } from "./plan.js";
export type { Plan, PlanStep } from "./plan.js";
export { ToolCatalogue } from "./tools.js";
export { Transcript, newRunId, runsDir } from "./transcript.js";
export { registerRunCommand, runCommand, RUN_EXIT } from "./cli.js";
export type { RunFlags, RegisterRunOptions } from "./cli.js";
export type { ChatMessage, CompletionRequest, ExternalToolInfo, ExternalTools, ModelProvider, ModelToolCall, ModelTurn, ToolSpec, Usage } from "./types.js";
