// `--model PROVIDER:MODEL` → a provider, with the base URL and key from the environment.
import { LuminaGuardError } from "../errors.js";
import { AnthropicProvider, DEFAULT_ANTHROPIC_BASE_URL } from "./anthropic.js";
import type { RetryConfig } from "./http.js";
import { DEFAULT_OPENAI_BASE_URL, OpenAIProvider } from "./openai.js";
import type { ModelProvider } from "./types.js";

const PROVIDERS = ["openai", "anthropic"] as const;
type ProviderName = (typeof PROVIDERS)[number];

export function parseModelSpec(spec: string): { provider: ProviderName; model: string } {
  const i = spec.indexOf(":");
  const provider = i < 0 ? "" : spec.slice(0, i);
  const model = i < 0 ? "" : spec.slice(i + 1);
  if (!(PROVIDERS as readonly string[]).includes(provider) || model.trim() === "") {
    throw new LuminaGuardError("INVALID_ARGUMENT", `--model must be PROVIDER:MODEL with PROVIDER one of ${PROVIDERS.join(", ")} (e.g. openai:gpt-4o-mini), got ${JSON.stringify(spec)}`);
  }
  return { provider: provider as ProviderName, model };
}

interface ProviderOptions extends RetryConfig {
  env?: NodeJS.ProcessEnv;
}

/**
 * OpenAI-compatible: OPENAI_BASE_URL (default https://api.openai.com/v1), OPENAI_API_KEY (optional only
 * for a non-default base URL, e.g. a local server). Anthropic: ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY.
 */
export function createProvider(spec: string, o: ProviderOptions = {}): ModelProvider {
  const env = o.env ?? process.env;
  const { provider, model } = parseModelSpec(spec);
  const common = { ...(o.retry ? { retry: o.retry } : {}), ...(o.onRetry ? { onRetry: o.onRetry } : {}) };
  if (provider === "openai") {
    const baseUrl = nonEmpty(env["OPENAI_BASE_URL"]) ?? DEFAULT_OPENAI_BASE_URL;
    const apiKey = nonEmpty(env["OPENAI_API_KEY"]);
    if (apiKey === undefined && baseUrl === DEFAULT_OPENAI_BASE_URL) {
      throw new LuminaGuardError("INVALID_ARGUMENT", "OPENAI_API_KEY is not set (or set OPENAI_BASE_URL to an OpenAI-compatible server that needs no key)");
    }
    return new OpenAIProvider({ model, baseUrl, ...(apiKey !== undefined ? { apiKey } : {}), ...common });
  }
  const apiKey = nonEmpty(env["ANTHROPIC_API_KEY"]);
  if (apiKey === undefined) throw new LuminaGuardError("INVALID_ARGUMENT", "ANTHROPIC_API_KEY is not set");
  return new AnthropicProvider({ model, baseUrl: nonEmpty(env["ANTHROPIC_BASE_URL"]) ?? DEFAULT_ANTHROPIC_BASE_URL, apiKey, ...common });
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== "" ? v.trim() : undefined;
}
