// The approval cliff: classify a tool call, build its card, ask the approver when the policy says so, audit, decide.
import { LuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { onAbort } from "../util/abort.js";
import type { Approver } from "./approvers.js";
import { AuditLog, argsHash, newAuditId, type AuditEntry } from "./audit.js";
import { buildCard, type Card, type CardContext } from "./card.js";
import { filterResult } from "./filter.js";
import { defaultPolicy, evaluatePolicy, type ActionClass, type Policy, type PolicyAction, type Risk, type ToolCallRequest } from "./policy.js";

const DEFAULT_APPROVAL_TIMEOUT_MS = 300_000;

interface ApprovalGateOptions {
  approver: Approver;
  policy?: Policy;
  /** The audit log; default `$LUMINAGUARD_HOME/audit.jsonl`. */
  audit?: AuditLog;
  /** No answer within this long is a denial. Default: the policy's approvalTimeoutSeconds, else 300 s. */
  timeoutMs?: number;
  /** Host workspace: path rules also see symlinks resolved, and the audit log is refused inside it. */
  workspace?: string;
  /** Recorded with every decision. */
  runId?: string;
}

interface GateContext extends CardContext {
  signal?: AbortSignal;
}

/** Why a call was denied, as the agent sees it. */
type DenialCode = "POLICY_DENIED" | "APPROVAL_DENIED" | "APPROVAL_TIMEOUT" | "CANCELLED";

export interface GateDecision {
  decision: "allow" | "deny";
  /** policy | non-interactive | terminal | callback | elicitation */
  channel: string;
  rule: string;
  card: Card;
  class: ActionClass;
  risk: Risk;
  policyAction: PolicyAction;
  actor: string;
  reason: string;
  auditId: string;
  /** Set when denied. */
  code?: DenialCode;
}

export class ApprovalGate {
  readonly policy: Policy;
  readonly audit: AuditLog;
  readonly timeoutMs: number;
  private readonly approver: Approver;
  private readonly workspace: string | undefined;
  private readonly runId: string | undefined;
  /** One prompt at a time: two cards must never interleave on one terminal. */
  private asking: Promise<unknown> = Promise.resolve();

  constructor(options: ApprovalGateOptions) {
    this.approver = options.approver;
    this.policy = options.policy ?? defaultPolicy();
    this.audit = options.audit ?? new AuditLog();
    this.timeoutMs = options.timeoutMs ?? (this.policy.approvalTimeoutSeconds !== undefined ? this.policy.approvalTimeoutSeconds * 1000 : DEFAULT_APPROVAL_TIMEOUT_MS);
    this.workspace = options.workspace;
    this.runId = options.runId;
    if (this.workspace !== undefined) this.audit.assertOutside(this.workspace);
  }

  /**
   * Decides one call. The decision is in the audit log before this returns, so an allowed action never
   * runs unaudited: fsynced too, except a Green allow, whose fsync the group commit does (AuditLog.append). The call's arguments are data: nothing in them can approve anything.
   */
  async check(call: ToolCallRequest, ctx: GateContext = {}): Promise<GateDecision> {
    const started = Date.now();
    const match = evaluatePolicy(this.policy, call, this.workspace !== undefined ? { workspace: this.workspace } : {});
    // The card resolves a write's target in the same workspace the policy looked at.
    const card = await buildCard(call, match, this.workspace !== undefined && ctx.workspace === undefined ? { ...ctx, workspace: this.workspace } : ctx);
    let decision: "allow" | "deny";
    let channel = "policy";
    let actor = "policy";
    let reason: string;
    let code: DenialCode | undefined;
    if (match.action === "allow") {
      decision = "allow";
      reason = match.class === "green" ? "read-only" : "allowed by policy";
    } else if (match.action === "deny") {
      decision = "deny";
      reason = "denied by policy";
      code = "POLICY_DENIED";
    } else {
      channel = this.approver.channel;
      const r = await this.ask(call, card, ctx.signal);
      decision = r.approved ? "allow" : "deny";
      actor = r.actor;
      reason = r.reason ?? (r.approved ? "approved" : "denied");
      if (!r.approved) code = r.code ?? (this.approver.channel === "non-interactive" ? "POLICY_DENIED" : "APPROVAL_DENIED");
    }
    const entry: AuditEntry = {
      v: 1,
      id: newAuditId(),
      time: new Date().toISOString(),
      ...(this.runId !== undefined ? { runId: this.runId } : {}),
      tool: call.tool,
      ...(call.server !== undefined ? { server: call.server } : {}),
      argsHash: argsHash(call.args),
      class: match.class,
      risk: match.risk,
      rule: match.rule,
      policyAction: match.action,
      decision,
      channel,
      actor,
      reason,
      waitedMs: Date.now() - started,
      card: card as unknown as Record<string, unknown>,
    };
    // A read-only call changes nothing: its line is written before it runs (with the others of this tick, in
    // one write) and made durable by the group commit; everything else is fsynced before the action proceeds.
    try {
      if (decision === "allow" && match.class === "green") await this.audit.appendSoon(entry);
      else this.audit.append(entry, { sync: true });
    } catch (err) {
      log.error({ tool: call.tool, server: call.server, auditId: entry.id, err: (err as Error).message }, "audit log write failed: the call is refused");
      throw err;
    }
    log.debug({ tool: call.tool, server: call.server, decision, channel, rule: match.rule }, "approval decision");
    return {
      decision,
      channel,
      rule: match.rule,
      card,
      class: match.class,
      risk: match.risk,
      policyAction: match.action,
      actor,
      reason,
      auditId: entry.id,
      ...(code !== undefined ? { code } : {}),
    };
  }

  /**
   * What an allowed call's result may show: search and list_directory results lose the entries of files the
   * policy denies reading (see filterResult). Every caller that runs a call this gate allowed passes its result
   * through here before anyone sees it.
   */
  filterResult<T>(call: ToolCallRequest, result: T): T {
    return filterResult(this.policy, call, result, this.workspace !== undefined ? { workspace: this.workspace } : {});
  }

  private async ask(call: ToolCallRequest, card: Card, outer: AbortSignal | undefined): Promise<{ approved: boolean; actor: string; reason?: string; code?: DenialCode }> {
    const turn = this.asking.then(async () => {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort("timeout"), this.timeoutMs);
      const unhook = onAbort(outer, () => controller.abort("cancelled"));
      // An approver that ignores its signal still cannot hold the cliff open past the timeout.
      const gaveUp = new Promise<"aborted">((resolve) => onAbort(controller.signal, () => resolve("aborted")));
      try {
        const answer = await Promise.race([this.approver.ask({ call, card, timeoutMs: this.timeoutMs }, { signal: controller.signal }), gaveUp]);
        if (controller.signal.aborted) {
          const timedOut = controller.signal.reason === "timeout";
          return {
            approved: false,
            actor: answer === "aborted" ? "nobody" : answer.actor,
            reason: timedOut ? `no answer within ${Math.round(this.timeoutMs / 1000)} s` : "cancelled",
            code: timedOut ? ("APPROVAL_TIMEOUT" as const) : ("CANCELLED" as const),
          };
        }
        if (answer === "aborted") throw new Error("unreachable");
        return { approved: answer.approved === true, actor: answer.actor, ...(answer.reason !== undefined ? { reason: answer.reason } : {}) };
      } catch (err) {
        // A channel that fails (no terminal, a throwing callback) is a denial, never an approval.
        const e = err instanceof LuminaGuardError ? err.message : String((err as Error)?.message ?? err);
        return { approved: false, actor: this.approver.channel, reason: `approval channel failed: ${e}` };
      } finally {
        clearTimeout(timer);
        unhook();
      }
    });
    this.asking = turn.catch(() => undefined);
    return await turn;
  }
}

/** The tool result an agent gets for a denied call: clear, and nothing was changed. */
export function denialResult(d: GateDecision): { error: { code: string; message: string; rule: string } } {
  const how =
    d.code === "APPROVAL_TIMEOUT"
      ? "no approval arrived in time"
      : d.code === "POLICY_DENIED"
        ? d.channel === "policy"
          ? `the policy denies it (rule ${d.rule})`
          : "it needs approval and this run is non-interactive"
        : d.code === "CANCELLED"
          ? "the run was cancelled"
          : `the user denied it via ${d.channel}`;
  return { error: { code: d.code ?? "APPROVAL_DENIED", message: `${d.card.server !== undefined ? `${d.card.server}/` : ""}${d.card.tool} was not run: ${how}. Nothing was changed.`, rule: d.rule } };
}
