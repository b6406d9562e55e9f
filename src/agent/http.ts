// JSON over HTTP to an LLM endpoint: retries with backoff on rate limits, overload and outages, then a clear error.
import type { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { issueLines, parseWith } from "../util/json-file.js";
import type { ModelToolCall } from "./types.js";
import { sleep } from "../util/abort.js";

interface RetryOptions {
  /** Attempts after the first. Default 4. */
  retries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** One request's limit. Default 120 s. */
  requestTimeoutMs?: number;
}

export interface RetryEvent {
  provider: string;
  attempt: number;
  delayMs: number;
  /** HTTP status, or the network error's code. */
  cause: string;
}

/** How a provider retries; given by the caller of createProvider. */
export interface RetryConfig {
  retry?: RetryOptions;
  onRetry?: (e: RetryEvent) => void;
}

interface PostOptions extends RetryConfig {
  provider: string;
  signal: AbortSignal;
}

/** One model turn's request, as both providers make it: POST `body`, retry, and check the answer's shape. */
interface ModelRequest<S extends z.ZodType> {
  /** The provider's id, e.g. openai:gpt-4o-mini: errors and retries name it. */
  provider: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
  /** The answer's shape; any other is LLM_BAD_RESPONSE. */
  response: S;
  signal: AbortSignal;
  retry: RetryConfig;
}

export async function requestModel<S extends z.ZodType>(r: ModelRequest<S>): Promise<z.output<S>> {
  const raw = await postJson(r.url, r.headers, r.body, {
    provider: r.provider,
    signal: r.signal,
    ...(r.retry.retry ? { retry: r.retry.retry } : {}),
    ...(r.retry.onRetry ? { onRetry: r.retry.onRetry } : {}),
  });
  return parseWith(r.response, raw, (issues) => new LuminaGuardError("LLM_BAD_RESPONSE", `${r.provider}: unexpected response: ${issues.join("; ")}`), { root: "" });
}

/** The endpoint `path` below a base URL given with or without trailing slashes. */
export function endpoint(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, "")}${path}`;
}

/** A tool call the model got wrong, kept (with its id, or a made-up one) so the model is told what was wrong. */
export function malformedToolCall(raw: unknown, error: z.ZodError, fallbackId: string, what: { name: string; root: string }): ModelToolCall {
  const id = typeof (raw as { id?: unknown } | null)?.id === "string" ? (raw as { id: string }).id : fallbackId;
  return { id, name: "invalid_tool_call", error: `malformed ${what.name}: ${issueLines(error, { root: what.root }).join("; ")}` };
}

const RETRYABLE = new Set([408, 409, 425, 429, 500, 502, 503, 504, 529]);
const MAX_ERROR_BODY = 2000;

async function postJson(url: string, headers: Record<string, string>, body: unknown, o: PostOptions): Promise<unknown> {
  const retries = o.retry?.retries ?? 4;
  const base = o.retry?.baseDelayMs ?? 500;
  const maxDelay = o.retry?.maxDelayMs ?? 30_000;
  const perRequest = o.retry?.requestTimeoutMs ?? 120_000;
  const payload = JSON.stringify(body);
  let last = "";
  for (let attempt = 0; ; attempt++) {
    if (o.signal.aborted) throw cancelled(o);
    let res: Response;
    try {
      res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json", ...headers },
        body: payload,
        signal: AbortSignal.any([o.signal, AbortSignal.timeout(perRequest)]),
      });
    } catch (err) {
      if (o.signal.aborted) throw cancelled(o);
      const cause = networkCause(err);
      last = `${cause} (${url})`;
      if (attempt >= retries) throw unavailable(o.provider, attempt, last, err);
      await backoff(o, attempt, backoffDelay(base, maxDelay, attempt), cause);
      continue;
    }
    const text = await readBody(res, o);
    if (res.ok) {
      try {
        return JSON.parse(text) as unknown;
      } catch (err) {
        throw new LuminaGuardError("LLM_BAD_RESPONSE", `${o.provider}: the endpoint answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`, { cause: err });
      }
    }
    last = `HTTP ${res.status}${errorMessage(text)}`;
    if (!RETRYABLE.has(res.status) || attempt >= retries) {
      throw unavailable(o.provider, attempt, last, undefined, res.status);
    }
    await backoff(o, attempt, retryAfter(res.headers, maxDelay) ?? backoffDelay(base, maxDelay, attempt), String(res.status));
  }
}

function backoffDelay(base: number, max: number, attempt: number): number {
  const ceiling = Math.min(max, base * 2 ** attempt);
  // Half fixed, half jitter: spreads a crowd of clients without ever retrying at once.
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** `retry-after-ms`, or `retry-after` in seconds or as an HTTP date; capped. */
function retryAfter(h: Headers, max: number): number | undefined {
  const ms = h.get("retry-after-ms");
  if (ms !== null && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.min(max, Math.ceil(Number(ms)));
  const ra = h.get("retry-after");
  if (ra === null) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra.trim())) return Math.min(max, Math.ceil(Number(ra) * 1000));
  const t = Date.parse(ra);
  return Number.isNaN(t) ? undefined : Math.min(max, Math.max(0, t - Date.now()));
}

async function backoff(o: PostOptions, attempt: number, delayMs: number, cause: string): Promise<void> {
  log.warn({ provider: o.provider, attempt: attempt + 1, delayMs, cause }, "LLM endpoint failed; retrying");
  o.onRetry?.({ provider: o.provider, attempt: attempt + 1, delayMs, cause });
  await sleep(delayMs, o.signal, () => cancelled(o));
}

async function readBody(res: Response, o: PostOptions): Promise<string> {
  try {
    return await res.text();
  } catch (err) {
    if (o.signal.aborted) throw cancelled(o);
    throw new LuminaGuardError("LLM_UNAVAILABLE", `${o.provider}: the connection broke while reading the answer: ${(err as Error).message}`, { cause: err });
  }
}

function errorMessage(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown; type?: unknown } | string; message?: unknown };
    const m = typeof j.error === "string" ? j.error : (j.error?.message ?? j.message);
    if (typeof m === "string") return `: ${m.slice(0, MAX_ERROR_BODY)}`;
  } catch {
    /* not JSON */
  }
  return text.trim() ? `: ${text.trim().slice(0, MAX_ERROR_BODY)}` : "";
}

function networkCause(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError") return "request timed out";
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}

function unavailable(provider: string, attempt: number, last: string, cause?: unknown, status?: number): LuminaGuardError {
  const tries = attempt + 1;
  return new LuminaGuardError("LLM_UNAVAILABLE", `${provider}: the model endpoint failed${tries > 1 ? ` after ${tries} attempts` : ""}: ${last}`, {
    ...(cause !== undefined ? { cause } : {}),
    details: { attempts: tries, ...(status !== undefined ? { status } : {}) },
  });
}

function cancelled(o: PostOptions): LuminaGuardError {
  return new LuminaGuardError("CANCELLED", `${o.provider}: request cancelled`);
}
