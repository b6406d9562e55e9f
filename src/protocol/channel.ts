// A multiplexed request/response client over one byte stream to a guest agent; every guest byte is checked.
import type { Readable, Writable } from "node:stream";
import { onAbort } from "../util/abort.js";
import { fault, faultsOn } from "../faults/index.js";
import {
  GuestChannelLostError,
  GuestProtocolError,
  LuminaGuardError,
  ToolTimeoutError,
  isErrorCode,
} from "../errors.js";
import {
  FrameDecoder,
  PROTOCOL_VERSION,
  encodeFrame,
  guestMessageSchema,
  resultSchemas,
  type GuestOp,
  type GuestResult,
  type InitArgs,
} from "./messages.js";

interface ChannelTransport {
  input: Readable;
  output: Writable;
}

/** What a handshake took: hellos sent by the time one was answered, and which (0: the first). */
export interface HelloStats {
  sent: number;
  answered: number;
}

export interface RequestOptions {
  /** Host-side deadline: a guest that has not answered by then is declared lost and killed. */
  deadlineMs?: number;
  signal?: AbortSignal;
  onEvent?: (stream: "stdout" | "stderr", data: Buffer) => void;
  /** Bytes per stream the guest may send for this request before it counts as a flood. */
  maxStreamBytes?: number;
}

interface Pending {
  op: GuestOp;
  resolve: (value: unknown) => void;
  reject: (err: LuminaGuardError) => void;
  onEvent: RequestOptions["onEvent"];
  maxStreamBytes: number;
  streamed: { stdout: number; stderr: number };
  timer: NodeJS.Timeout | undefined;
  /** Set when the host gave up on the request (abort): a late answer is dropped, not an error. */
  abandoned: boolean;
}

const STREAM_SLACK_BYTES = 256 * 1024;
/** The ops whose requests fault injection may touch (never the handshake, cancel or shutdown). */
const TOOL_OPS: ReadonlySet<string> = new Set(["read_file", "write_file", "list_directory", "search", "execute_command"]);
const DEFAULT_DEADLINE_MS = 120_000;

export class GuestChannel {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: LuminaGuardError | undefined;

  /**
   * @param onFatal called once when the channel dies (EOF, violation, deadline): the owner must
   *   kill the guest, since a guest that broke the protocol is never trusted again.
   */
  constructor(
    private readonly transport: ChannelTransport,
    private readonly onFatal: (err: LuminaGuardError) => void,
  ) {
    transport.input.on("data", (chunk: Buffer) => this.onData(chunk));
    transport.input.on("end", () => this.fail(new GuestChannelLostError("guest closed the channel")));
    transport.input.on("close", () => this.fail(new GuestChannelLostError("guest channel closed")));
    transport.input.on("error", (err) => this.fail(new GuestChannelLostError(`guest channel error: ${err.message}`, { cause: err })));
    transport.output.on("error", (err) => this.fail(new GuestChannelLostError(`guest channel error: ${err.message}`, { cause: err })));
  }

  get closed(): boolean {
    return this.failure !== undefined;
  }

  /** Why the channel died (undefined while it works). */
  get failureReason(): LuminaGuardError | undefined {
    return this.failure;
  }

  /** When it died (performance.now()), to tell the first of two failures from its consequence. */
  failedAt: number | undefined;

  get inFlight(): number {
    return this.pending.size;
  }

  request<Op extends GuestOp>(op: Op, args: Record<string, unknown>, options: RequestOptions = {}): Promise<GuestResult<Op>> {
    if (this.failure) return Promise.reject(this.failure);
    if (options.signal?.aborted) return Promise.reject(new LuminaGuardError("CANCELLED", `${op} cancelled before it started`));
    const id = this.allocateId();
    return new Promise<GuestResult<Op>>((resolve, reject) => {
      const entry: Pending = {
        op,
        resolve: resolve as (v: unknown) => void,
        reject,
        onEvent: options.onEvent,
        maxStreamBytes: (options.maxStreamBytes ?? 0) + STREAM_SLACK_BYTES,
        streamed: { stdout: 0, stderr: 0 },
        timer: undefined,
        abandoned: false,
      };
      const deadline = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
      // Checked in the check phase, after the poll phase has read an answer that arrived during an
      // event-loop stall (timers run first): a late look at a timely answer is not a lost guest.
      entry.timer = setTimeout(() => {
        setImmediate(() => {
          if (this.pending.get(id) === entry && !entry.abandoned) this.fail(new GuestChannelLostError(`guest did not answer ${op} within ${deadline} ms`, { details: { op, deadlineMs: deadline } }));
        });
      }, deadline);
      entry.timer.unref?.();
      onAbort(options.signal, () => {
        if (!this.pending.has(id) || entry.abandoned) return;
        entry.abandoned = true;
        if (entry.timer) clearTimeout(entry.timer);
        // Give the guest a bounded time to acknowledge, then forget the id.
        entry.timer = setTimeout(() => this.pending.delete(id), 30_000);
        entry.timer.unref?.();
        void this.request("cancel", { target: id }, { deadlineMs: 30_000 }).catch(() => undefined);
        reject(new LuminaGuardError("CANCELLED", `${op} cancelled`));
      });
      this.pending.set(id, entry);
      if (faultsOn && this.injectRequestFault(id, op, args)) return;
      this.send({ id, op, args });
      if (this.cutArmed && TOOL_OPS.has(op)) {
        this.cutArmed = false;
        // After the uncork that send() queued: the request leaves, then the host end is destroyed.
        process.nextTick(() => this.cut());
      }
    });
  }

  /** Request ids whose answer arrives damaged (the corrupt-frame fault). */
  private corruptIds: Set<number> | undefined;

  /**
   * Fault injection (src/faults), reached only when a fault is armed: the guest's answer to a tool
   * request becomes the error the agent sends for EIO or ENOSPC (through the real decode path), the
   * request reaches the guest late, or its answer arrives damaged. Returns true when it was not sent.
   */
  private injectRequestFault(id: number, op: GuestOp, args: Record<string, unknown>): boolean {
    if (!TOOL_OPS.has(op)) return false;
    const what = typeof args["path"] === "string" ? args["path"] : op;
    const errno = fault("guest-eio", op) ? (["IO_ERROR", "EIO", "Input/output error"] as const) : fault("guest-enospc", op) ? (["NO_SPACE", "ENOSPC", "No space left on device"] as const) : undefined;
    if (errno) {
      const frame = encodeFrame({ id, ok: false, error: { code: errno[0], errno: errno[1], message: `${what}: ${errno[2]} (injected fault)` } });
      setImmediate(() => this.onData(frame));
      return true;
    }
    if (fault("corrupt-frame", op)) (this.corruptIds ??= new Set()).add(id);
    const slow = fault("slow-io", op);
    if (slow) {
      setTimeout(() => {
        if (!this.failure && this.pending.has(id)) this.send({ id, op, args });
      }, slow.ms ?? 1000);
      return true;
    }
    return false;
  }

  /** The corrupt-frame fault: the first frame answering a marked request has its JSON body's first byte overwritten. */
  private damage(frame: Buffer): Buffer {
    const id = /^\{"id":(\d+)/.exec(frame.subarray(0, 24).toString("latin1"))?.[1];
    if (id === undefined || !this.corruptIds?.delete(Number(id))) return frame;
    const copy = Buffer.from(frame);
    copy[0] = 0x00;
    return copy;
  }

  /**
   * Sends `hello` until one is answered: bytes sent before a restored VM runs can be lost. The first
   * resend comes after `intervalMs`, each later one after twice the last wait, up to `maxIntervalMs`
   * (default `intervalMs`: a fixed pace). The agent answers every hello it reads, so a restored
   * guest that finds a pile of them pays for each under TCG: back off instead of flooding it.
   * `init`: init's arguments (made afresh for each attempt: they carry the clock), applied by the
   * agent with the first hello it reads (the answer says `init: true`).
   */
  async handshake(
    timeoutMs: number,
    intervalMs = 10,
    options: { init?: () => InitArgs; maxIntervalMs?: number; stats?: HelloStats } = {},
  ): Promise<GuestResult<"hello">> {
    const { init } = options;
    const maxIntervalMs = Math.max(intervalMs, options.maxIntervalMs ?? intervalMs);
    const started = Date.now();
    let lastError: unknown;
    return await new Promise<GuestResult<"hello">>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let wait = intervalMs;
      let sent = 0;
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        fn();
      };
      const attempt = (): void => {
        if (done) return;
        if (Date.now() - started > timeoutMs) {
          // As for a request's deadline: give an answer already received its poll phase first.
          setImmediate(() => finish(() => reject(new GuestChannelLostError(`guest agent did not answer hello within ${timeoutMs} ms`, { cause: lastError }))));
          return;
        }
        const attemptNo = sent++;
        this.request("hello", { v: PROTOCOL_VERSION, ...(init ? { init: init() } : {}) }, { deadlineMs: timeoutMs + 1000 }).then(
          (r) =>
            finish(() => {
              if (options.stats) Object.assign(options.stats, { sent, answered: attemptNo });
              resolve(r);
            }),
          (err: unknown) => {
            lastError = err;
            if (this.failure) finish(() => reject(this.failure));
          },
        );
        timer = setTimeout(attempt, wait);
        wait = Math.min(maxIntervalMs, wait * 2);
      };
      attempt();
    });
  }

  /**
   * Set by cutForFault: the next tool request sent cuts the channel once it is written (false unless
   * a channel-cut point fired: one boolean check per request otherwise).
   */
  private cutArmed = false;

  /**
   * The channel-cut fault point's effect (src/faults): the host end of the transport is destroyed, as
   * a broken pipe or socket would be, and the channel fails as for any lost guest (GUEST_CHANNEL_LOST
   * for what is in flight, onFatal). "after-request": once the next tool request is written (the
   * guest acts on it, its answer never arrives); a number: that many ms from now. Called only when a
   * channel-cut point fired (Sandbox's call path, which reaches it only when faults are armed).
   */
  cutForFault(when: "after-request" | number): void {
    if (when === "after-request") this.cutArmed = true;
    else setTimeout(() => this.cut(), when);
  }

  private cut(): void {
    this.transport.input.destroy();
    this.transport.output.destroy();
  }

  /** Rejects everything in flight with `err` and stops reading. Idempotent. */
  fail(err: LuminaGuardError): void {
    if (this.failure) return;
    this.failure = err;
    this.failedAt = performance.now();
    for (const [id, entry] of this.pending) {
      if (entry.timer) clearTimeout(entry.timer);
      if (!entry.abandoned) entry.reject(err);
      this.pending.delete(id);
    }
    this.transport.input.removeAllListeners("data");
    this.transport.input.on("error", () => undefined);
    this.transport.output.on("error", () => undefined);
    this.onFatal(err);
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xfffffffe ? 1 : this.nextId + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  /** Frames sent in one tick leave in one writev: pipelined calls wake the agent once, not once each. */
  private corked = false;

  private send(message: unknown): void {
    try {
      const out = this.transport.output;
      if (!this.corked) {
        this.corked = true;
        out.cork();
        process.nextTick(() => {
          this.corked = false;
          out.uncork();
        });
      }
      out.write(encodeFrame(message));
    } catch (err) {
      this.fail(new GuestChannelLostError(`cannot write to guest: ${(err as Error).message}`, { cause: err }));
    }
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.fail(new GuestProtocolError((err as Error).message));
      return;
    }
    for (const frame of frames) {
      if (this.failure) return;
      this.onFrame(frame);
    }
  }

  private onFrame(frame: Buffer): void {
    if (faultsOn && this.corruptIds?.size) frame = this.damage(frame);
    let parsed: unknown;
    try {
      parsed = JSON.parse(frame.toString("utf8"));
    } catch {
      this.fail(new GuestProtocolError("guest sent a frame that is not JSON"));
      return;
    }
    const checked = guestMessageSchema.safeParse(parsed);
    if (!checked.success) {
      this.fail(new GuestProtocolError(`guest sent a malformed message: ${checked.error.issues[0]?.message ?? "invalid"}`));
      return;
    }
    const message = checked.data;
    const entry = this.pending.get(message.id);
    if (!entry) {
      this.fail(new GuestProtocolError(`guest answered request ${message.id}, which is not in flight`));
      return;
    }
    if ("event" in message) {
      const data = Buffer.from(message.data, "base64");
      entry.streamed[message.event] += data.length;
      if (entry.streamed[message.event] > entry.maxStreamBytes) {
        this.fail(new GuestProtocolError(`guest flooded ${message.event} past ${entry.maxStreamBytes} bytes`));
        return;
      }
      if (!entry.abandoned) entry.onEvent?.(message.event, data);
      return;
    }
    this.pending.delete(message.id);
    if (entry.timer) clearTimeout(entry.timer);
    if (entry.abandoned) return;
    if (message.ok) {
      const result = resultSchemas[entry.op].safeParse(message.result);
      if (!result.success) {
        this.fail(new GuestProtocolError(`guest sent an invalid ${entry.op} result: ${result.error.issues[0]?.message ?? "invalid"}`));
        entry.reject(this.failure as LuminaGuardError);
        return;
      }
      entry.resolve(result.data);
    } else {
      const { code, message: text, errno } = message.error;
      const details = errno === undefined ? {} : { errno };
      if (code === "TOOL_TIMEOUT") entry.reject(new ToolTimeoutError(text, { details }));
      else entry.reject(new LuminaGuardError(isErrorCode(code) ? code : "IO_ERROR", text, { details: { ...details, guestCode: code } }));
    }
  }
}
