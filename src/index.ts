// Public API of the luminaguard package: named exports only.
export { Sandbox, DEFAULT_MEMORY_MIB, DEFAULT_PIDS_MAX, DEFAULT_DISK_MIB } from "./runtime/sandbox.js";
export type { SandboxOptions, RunOptions, SandboxApi } from "./runtime/sandbox.js";
export { DaemonClient, RemoteSandbox } from "./daemon/client.js";
export type { SandboxDescription, CreateSandboxBody, CommandStreamLine } from "./daemon/schemas.js";
export { connectClusterClient } from "./cluster/lazy.js";
export type { ClusterClient, ClusterSandbox, ClusterOption, ClaimOptions } from "./cluster/client.js";
export type { ClusterConnect } from "./cluster/connect.js";
export { resolveBackend, probeBackend, getBackend, BACKEND_CHOICES } from "./runtime/backends.js";
export type { BackendChoice } from "./runtime/backends.js";
export { doctor } from "./runtime/doctor.js";
export type { DoctorReport } from "./runtime/doctor.js";
export {
  LuminaGuardError,
  ToolTimeoutError,
  GuestChannelLostError,
  GuestProtocolError,
  ERROR_CODES,
  isErrorCode,
} from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { toolArgSchemas, TOOL_NAMES, isToolName } from "./tools/registry.js";
export type { ToolName } from "./tools/registry.js";
export { readFileArgs } from "./tools/read-file.js";
export { writeFileArgs } from "./tools/write-file.js";
export { listDirectoryArgs } from "./tools/list-directory.js";
export { searchArgs } from "./tools/search.js";
export { executeCommandArgs } from "./tools/execute-command.js";
export type { ReadFileArgs, ReadFileResult } from "./tools/read-file.js";
export type { WriteFileArgs, WriteFileResult } from "./tools/write-file.js";
export type { ListDirectoryArgs, ListDirectoryResult } from "./tools/list-directory.js";
export type { SearchArgs, SearchResult } from "./tools/search.js";
export type { ExecuteCommandArgs, CommandResult } from "./tools/execute-command.js";
export type { BackendName, BackendProbe } from "./sandbox/types.js";
export { buildImage } from "./image/build.js";
export type { ImageManifest } from "./image/build.js";
export { McpClientPool, serveStdio, serveHttp } from "./mcp/index.js";
export { ApprovalGate, callbackApprover, nonInteractiveApprover, terminalApprover, elicitationApprover, loadPolicy, parsePolicy, AuditLog, readAudit } from "./approval/index.js";
export type { Approver, ApprovalRequest, ApprovalAnswer, GateDecision, Policy, PolicyRule, AuditEntry, Card } from "./approval/index.js";
export { runAgent, OpenAIProvider, AnthropicProvider, PlanProvider, loadPlan, createProvider } from "./agent/index.js";
export type { AgentRunOptions, AgentRunResult, ExternalTools, ModelProvider, Plan } from "./agent/index.js";
export { mcpExternalTools } from "./agent/external.js";
