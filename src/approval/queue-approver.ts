// An approval channel for the daemon's HTTP API: a Red call waits in a queue until someone answers it over HTTP.
import { randomBytes } from "node:crypto";
import type { ApprovalAnswer, ApprovalRequest, Approver } from "./approvers.js";
import type { Card } from "./card.js";

/** A Red call waiting for a person, as `GET /v1/approvals` shows it. */
export interface PendingApproval {
  id: string;
  tool: string;
  server?: string;
  card: Card;
  /** Free-form context the caller attached (the daemon: which sandbox asked). */
  context: Record<string, string>;
  requestedAt: string;
  /** After this the gate denies the call (APPROVAL_TIMEOUT). */
  expiresAt: string;
}

export interface QueueAnswer {
  approve: boolean;
  /** Who answered: recorded in the audit log. */
  actor: string;
  reason?: string;
}

interface Waiting {
  entry: PendingApproval;
  resolve: (a: ApprovalAnswer) => void;
}

/**
 * Queues every request it is asked and answers it when `answer` is called with its id. Nothing else can
 * approve: the call's arguments and the sandbox have no way to reach `answer`. A request whose gate gives
 * up (timeout, the caller went away) leaves the queue and is denied by the gate.
 */
export class ApprovalQueue {
  private readonly waiting = new Map<string, Waiting>();

  /** An Approver on this queue; `context` is shown with every request it asks (e.g. `{ sandbox: id }`). */
  approver(context: Record<string, string> = {}): Approver {
    return {
      channel: "http",
      ask: (req, { signal }) => this.ask(req, signal, context),
    };
  }

  /** Requests waiting for an answer, oldest first. */
  pending(): PendingApproval[] {
    return [...this.waiting.values()].map((w) => w.entry);
  }

  get size(): number {
    return this.waiting.size;
  }

  /** Answers a pending request; false when there is none with this id (answered, expired or never asked). */
  answer(id: string, a: QueueAnswer): boolean {
    const w = this.waiting.get(id);
    if (!w) return false;
    this.waiting.delete(id);
    w.resolve({ approved: a.approve === true, actor: a.actor, ...(a.reason !== undefined ? { reason: a.reason } : {}) });
    return true;
  }

  /** Denies everything still waiting (shutdown). */
  denyAll(reason: string): void {
    for (const id of [...this.waiting.keys()]) this.answer(id, { approve: false, actor: "daemon", reason });
  }

  private ask(req: ApprovalRequest, signal: AbortSignal, context: Record<string, string>): Promise<ApprovalAnswer> {
    const id = `ap-${randomBytes(8).toString("hex")}`;
    const now = Date.now();
    const entry: PendingApproval = {
      id,
      tool: req.call.tool,
      ...(req.call.server !== undefined ? { server: req.call.server } : {}),
      card: req.card,
      context,
      requestedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + req.timeoutMs).toISOString(),
    };
    return new Promise<ApprovalAnswer>((resolve) => {
      const onAbort = (): void => {
        if (!this.waiting.delete(id)) return;
        resolve({ approved: false, actor: "nobody", reason: signal.reason === "timeout" ? "no answer in time" : "cancelled" });
      };
      this.waiting.set(id, {
        entry,
        resolve: (a) => {
          signal.removeEventListener("abort", onAbort);
          resolve(a);
        },
      });
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
