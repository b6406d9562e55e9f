// Minimal QMP client: newline-delimited JSON over QEMU's unix socket, one command at a time.
import type { Socket } from "node:net";
import { z } from "zod";
import { LuminaGuardError } from "../../errors.js";

const qmpReply = z.union([
  z.object({ QMP: z.unknown() }),
  z.object({ event: z.string() }),
  z.object({ error: z.object({ class: z.string(), desc: z.string() }) }),
  z.object({ return: z.unknown() }),
]);

const MAX_LINE = 1024 * 1024;

export class QmpClient {
  private buffer = "";
  private waiters: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void; id: number }> = [];
  private readonly greeted: Promise<void>;
  private nextId = 1;
  private closedError: Error | undefined;

  private failGreeting: (e: Error) => void = () => undefined;

  constructor(private readonly socket: Socket) {
    let greet: () => void = () => undefined;
    // A QEMU that exits before it greets must fail the waiter, not leave it pending forever (a
    // pending promise with nothing else alive lets node exit 0 as if the work were done).
    this.greeted = new Promise((resolve, reject) => {
      greet = resolve;
      this.failGreeting = reject;
    });
    this.greeted.catch(() => undefined);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      if (this.buffer.length > MAX_LINE) return this.close(new LuminaGuardError("SANDBOX_SPAWN_FAILED", "QMP line too long"));
      let nl: number;
      while ((nl = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (!line) continue;
        let raw: unknown;
        try {
          raw = JSON.parse(line);
        } catch {
          continue;
        }
        const parsed = qmpReply.safeParse(raw);
        if (!parsed.success) continue;
        const msg = parsed.data;
        if ("QMP" in msg) greet();
        else if ("event" in msg) continue;
        else {
          // QEMU answers commands in order, so the oldest waiter owns this reply.
          const w = this.waiters.shift();
          if (!w) continue;
          if ("error" in msg) w.reject(new LuminaGuardError("SANDBOX_SPAWN_FAILED", `QMP: ${msg.error.desc}`));
          else w.resolve(msg.return);
        }
      }
    });
    const onGone = (): void => this.close(new LuminaGuardError("SANDBOX_SPAWN_FAILED", "QEMU closed its QMP connection"));
    socket.on("close", onGone);
    socket.on("error", onGone);
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError) throw this.closedError;
    await this.greeted;
    if (this.closedError) throw this.closedError;
    // Leave capabilities negotiation mode once, before the first real command. QEMU answers in
    // order, so the commands follow it at once (pipelined), not a round trip later; a refused
    // negotiation fails them too.
    if (!this.negotiated) {
      this.negotiated = this.send("qmp_capabilities");
      this.negotiated.catch(() => undefined);
    }
    const reply = this.send(command, args);
    reply.catch(() => undefined);
    await this.negotiated;
    return await reply;
  }

  private negotiated: Promise<unknown> | undefined;

  private send(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, id });
      this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`);
    });
  }

  close(err: Error = new LuminaGuardError("SANDBOX_CLOSED", "QMP closed")): void {
    if (this.closedError) return;
    this.closedError = err;
    this.failGreeting(err);
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.socket.destroy();
  }
}
