// The approval cliff's public surface: policy, cards, approvers, the gate and the audit log.
export { ApprovalGate, denialResult, DEFAULT_APPROVAL_TIMEOUT_MS } from "./gate.js";
export type { ApprovalGateOptions, GateContext, GateDecision, DenialCode } from "./gate.js";
export { callbackApprover, elicitationApprover, nonInteractiveApprover, terminalApprover, hasTerminal, APPROVAL_ELICITATION_SCHEMA } from "./approvers.js";
export type { Approver, ApprovalRequest, ApprovalAnswer, ApprovalCallback, ElicitFn, ElicitResult, ElicitationSchema, TerminalApproverOptions } from "./approvers.js";
export { buildCard, renderCard } from "./card.js";
export { escapeForTerminal } from "../util/terminal.js";
export { filterResult } from "./filter.js";
export type { Card, CardDetails, CardContext } from "./card.js";
export { unifiedDiff } from "./diff.js";
export { loadPolicy, parsePolicy, defaultPolicy, evaluatePolicy, defaultPolicyPath, DEFAULT_RULES, READ_ONLY_TOOLS, HOOK_ENV_NAMES, HOOK_ENV_PREFIXES, isHookEnvVar } from "./policy.js";
export type { Policy, PolicyRule, PolicyFile, PolicyMatch, ToolCallRequest, ActionClass, Risk, PolicyAction } from "./policy.js";
export { AuditLog, readAudit, argsHash, canonicalJson, defaultAuditPath, auditEntrySchema } from "./audit.js";
export type { AuditEntry } from "./audit.js";
