// Newline-delimited JSON-RPC over byte streams (the MCP stdio framing), with a size bound that skips a long line instead of dying.
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** What is kept of a line that was too long: its size and its two ends (where a request id may be found). */
export interface OversizedLine {
  bytes: number;
  head: string;
  tail: string;
}

const EDGE_BYTES = 512;
const NEWLINE = 0x0a;

/**
 * Splits a byte stream into lines of at most `maxLineBytes`. A longer line is discarded as it streams in (memory
 * stays bounded) and reported once its end arrives, so the reader stays aligned on the next message.
 */
export class LineSplitter {
  private chunks: Buffer[] = [];
  private size = 0;
  private discarding: { bytes: number; head: Buffer; tail: Buffer } | undefined;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOversized: (line: OversizedLine) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl === -1) {
        this.append(chunk.subarray(start));
        return;
      }
      this.append(chunk.subarray(start, nl));
      this.endLine();
      start = nl + 1;
    }
  }

  /** Bytes buffered for the current, unfinished line. */
  get pending(): number {
    return this.discarding ? 0 : this.size;
  }

  reset(): void {
    this.chunks = [];
    this.size = 0;
    this.discarding = undefined;
  }

  private append(part: Buffer): void {
    if (part.length === 0) return;
    if (this.discarding) {
      this.discarding.bytes += part.length;
      this.discarding.tail = lastBytes(Buffer.concat([this.discarding.tail, part]), EDGE_BYTES);
      return;
    }
    if (this.size + part.length > this.maxLineBytes) {
      const sofar = Buffer.concat([...this.chunks, part]);
      this.discarding = { bytes: sofar.length, head: sofar.subarray(0, EDGE_BYTES), tail: lastBytes(sofar, EDGE_BYTES) };
      this.chunks = [];
      this.size = 0;
      return;
    }
    this.chunks.push(part);
    this.size += part.length;
  }

  private endLine(): void {
    if (this.discarding) {
      const d = this.discarding;
      this.discarding = undefined;
      this.onOversized({ bytes: d.bytes, head: d.head.toString("utf8"), tail: d.tail.toString("utf8") });
      return;
    }
    const line = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [];
    this.size = 0;
    let text = line.toString("utf8");
    if (text.endsWith("\r")) text = text.slice(0, -1);
    if (text.trim() !== "") this.onLine(text);
  }
}

function lastBytes(b: Buffer, n: number): Buffer {
  return b.length <= n ? b : b.subarray(b.length - n);
}

/** A request id found at either end of a discarded line (the SDK serialises `id` last, others first). */
export function findRequestId(line: OversizedLine): string | number | undefined {
  const tail = /"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,256}")\s*}\s*$/.exec(line.tail);
  const head = /^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,256}")/.exec(line.head);
  const raw = tail?.[1] ?? head?.[1];
  if (raw === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === "number" || typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

type ParsedLine = { ok: true; message: JSONRPCMessage } | { ok: false; error: string; id?: string | number };

/**
 * Structural JSON-RPC 2.0 check of one line: cheaper than a schema parse on the hot path, and enough here since
 * the SDK's Protocol validates every request's params and every result against the method's schema.
 */
export function parseJsonRpcLine(line: string): ParsedLine {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    return { ok: false, error: `not JSON: ${(err as Error).message}` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { ok: false, error: "a JSON-RPC message must be a JSON object" };
  const m = v as Record<string, unknown>;
  const id = m["id"];
  const idOk = typeof id === "string" || (typeof id === "number" && Number.isInteger(id));
  const badId = id !== undefined && !idOk;
  const withId = (error: string): ParsedLine => (idOk ? { ok: false, error, id: id as string | number } : { ok: false, error });
  if (m["jsonrpc"] !== "2.0") return withId('"jsonrpc" must be "2.0"');
  if (badId) return { ok: false, error: '"id" must be a string or an integer' };
  const params = m["params"];
  if (params !== undefined && (typeof params !== "object" || params === null || Array.isArray(params))) return withId('"params" must be an object');
  if (typeof m["method"] === "string") return { ok: true, message: m as JSONRPCMessage };
  if (m["method"] !== undefined) return withId('"method" must be a string');
  if ("result" in m) {
    if (!idOk) return { ok: false, error: "a response needs an id" };
    if (typeof m["result"] !== "object" || m["result"] === null || Array.isArray(m["result"])) return withId('"result" must be an object');
    return { ok: true, message: m as JSONRPCMessage };
  }
  if ("error" in m) {
    const e = m["error"] as Record<string, unknown> | null;
    if (typeof e !== "object" || e === null || typeof e["code"] !== "number" || typeof e["message"] !== "string") return withId('"error" needs a numeric code and a message');
    return { ok: true, message: m as JSONRPCMessage };
  }
  return withId("neither a request, a notification nor a response");
}

export function serialize(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}
