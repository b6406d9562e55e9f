// The approval cliff's public surface (re-exported by src/index.ts): the gate, approvers, policy and audit log.
export { ApprovalGate } from "./gate.js";
export type { GateDecision } from "./gate.js";
export { callbackApprover, elicitationApprover, nonInteractiveApprover, terminalApprover } from "./approvers.js";
export type { Approver, ApprovalRequest, ApprovalAnswer } from "./approvers.js";
export type { Card } from "./card.js";
export { loadPolicy, parsePolicy } from "./policy.js";
export type { Policy, PolicyRule } from "./policy.js";
export { AuditLog, readAudit } from "./audit.js";
export type { AuditEntry } from "./audit.js";
