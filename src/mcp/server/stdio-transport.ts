// The server side of MCP over stdio: bounded lines, protocol errors for garbage and oversized requests, EOF ends the session.
import type { Readable, Writable } from "node:stream";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { ErrorCode, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { log } from "../../log.js";
import { DEFAULT_MAX_MESSAGE_BYTES, LineSplitter, findRequestId, parseJsonRpcLine, serialize } from "../shared/jsonl.js";

/**
 * Unlike the SDK's StdioServerTransport this one answers a line it cannot use with a JSON-RPC error and keeps
 * serving (the SDK's closes on an oversized line), and it closes when stdin ends, so a vanished client ends the
 * session and its sandbox is reclaimed.
 */
export class LineStdioServerTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JSONRPCMessage) => void) | undefined;
  private readonly splitter: LineSplitter;
  private closed = false;
  private corked = false;
  private readonly maxMessageBytes: number;

  constructor(
    private readonly input: Readable = process.stdin,
    private readonly output: Writable = process.stdout,
    options: { maxMessageBytes?: number } = {},
  ) {
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.splitter = new LineSplitter(
      this.maxMessageBytes,
      (line) => this.onLine(line),
      (o) => {
        const id = findRequestId(o);
        log.warn({ bytes: o.bytes, id }, "mcp stdio: oversized message discarded");
        this.reply(id, ErrorCode.InvalidRequest, `message of ${o.bytes} bytes exceeds the ${this.maxMessageBytes}-byte limit`);
      },
    );
  }

  async start(): Promise<void> {
    this.input.on("data", this.onData);
    this.input.once("end", this.onEnd);
    this.input.once("close", this.onEnd);
    this.input.on("error", this.onStreamError);
    this.output.on("error", this.onStreamError);
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.corkUntilNextTick();
    return new Promise((resolve) => {
      if (this.output.write(serialize(message))) resolve();
      else this.output.once("drain", () => resolve());
    });
  }

  /** Answers finished in the same tick leave in one write(v) instead of one syscall each (pipelined hosts). */
  private corkUntilNextTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.output.cork();
    process.nextTick(() => {
      this.corked = false;
      this.output.uncork();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.input.off("data", this.onData);
    this.input.off("end", this.onEnd);
    this.input.off("close", this.onEnd);
    this.input.pause();
    this.splitter.reset();
    this.onclose?.();
  }

  private readonly onData = (chunk: Buffer): void => this.splitter.push(chunk);

  private readonly onEnd = (): void => void this.close();

  private readonly onStreamError = (err: Error): void => {
    // EPIPE on stdout or a broken stdin: the client is gone.
    this.onerror?.(err);
    void this.close();
  };

  private onLine(line: string): void {
    const parsed = parseJsonRpcLine(line);
    if (parsed.ok) {
      this.onmessage?.(parsed.message);
      return;
    }
    log.warn({ error: parsed.error }, "mcp stdio: invalid message");
    this.reply(parsed.id, parsed.error.startsWith("not JSON") ? ErrorCode.ParseError : ErrorCode.InvalidRequest, parsed.error);
  }

  private reply(id: string | number | undefined, code: number, message: string): void {
    // JSON-RPC: an error about a message whose id cannot be read carries id null.
    if (!this.closed) this.output.write(serialize({ jsonrpc: "2.0", id: id ?? null, error: { code, message } }));
  }
}
