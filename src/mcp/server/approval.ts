// The approval cliff at the MCP edge: Red calls are asked of the user through the host (elicitation), or denied.
import { elicitationApprover, nonInteractiveApprover } from "../../approval/approvers.js";
import { AuditLog } from "../../approval/audit.js";
import { ApprovalGate } from "../../approval/gate.js";
import { loadPolicy } from "../../approval/policy.js";
import { LuminaGuardError } from "../../errors.js";
import type { BeforeToolCall } from "./server.js";

export const APPROVAL_MODES = ["elicit", "policy", "off"] as const;
export type ApprovalMode = (typeof APPROVAL_MODES)[number];

/**
 * elicit: ask through the host when it can answer elicitation, else deny Red unless the policy allows it;
 * policy: never ask, the policy alone decides; off: no cliff (for hosts that gate every call themselves).
 */
export function approvalHook(mode: ApprovalMode, options: { policyFile?: string; workspace?: string } = {}): BeforeToolCall | undefined {
  if (mode === "off") return undefined;
  const policy = loadPolicy(options.policyFile);
  const audit = new AuditLog();
  return async (ctx) => {
    const approver =
      mode === "elicit" && ctx.canElicit ? elicitationApprover(ctx.elicit, `mcp-session:${ctx.session.id}`) : nonInteractiveApprover();
    const gate = new ApprovalGate({ approver, policy, audit, ...(options.workspace !== undefined ? { workspace: options.workspace } : {}) });
    const call = { tool: ctx.tool, args: ctx.args };
    const d = await gate.check(call, { signal: ctx.signal });
    // The host's log shows every decision that was not a plain Green pass (what was asked, denied, and why).
    if (d.decision === "deny" || d.class !== "green") {
      ctx.notify(d.decision === "deny" ? "warning" : "notice", {
        event: `approval.${d.decision}`,
        tool: ctx.tool,
        class: d.class,
        rule: d.rule,
        channel: d.channel,
        reason: d.reason,
        audit: d.auditId,
      });
    }
    if (d.decision === "deny") {
      throw new LuminaGuardError(d.code ?? "APPROVAL_DENIED", `${ctx.tool} not run: ${d.reason} (rule ${d.rule}; audit ${d.auditId})`);
    }
    return (result) => gate.filterResult(call, result);
  };
}
