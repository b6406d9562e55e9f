// The agent loop's public surface (re-exported by src/index.ts): the loop, the providers and plans.
export { runAgent } from "./loop.js";
export type { AgentRunOptions, AgentRunResult } from "./loop.js";
export { OpenAIProvider } from "./openai.js";
export { AnthropicProvider } from "./anthropic.js";
export { createProvider } from "./models.js";
export { loadPlan, PlanProvider } from "./plan.js";
export type { Plan } from "./plan.js";
export type { ExternalTools, ModelProvider } from "./types.js";
