// `luminaguard run "TASK"`: an agent loop on the host, every tool call through the approval cliff into a fresh sandbox.
import { Option, type Command } from "commander";
import { hasTerminal, nonInteractiveApprover, terminalApprover, type Approver } from "../approval/approvers.js";
import { ApprovalGate } from "../approval/gate.js";
import { loadPolicy } from "../approval/policy.js";
import { exitCodeFor, parseIntOption } from "./output.js";
import { isErrorCode, LuminaGuardError } from "../errors.js";
import { BACKEND_CHOICES, type BackendChoice } from "../sandbox/types.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import type { FileToolsMode } from "../sandbox/types.js";
import { fileToolsOption } from "./options.js";
import { Sandbox, type SandboxApi } from "../runtime/sandbox.js";
import { addClusterConnectOptions, clusterForClient, type ClusterConnectFlags } from "./cluster.js";
import { clipWithMarker, escapeForTerminal } from "../util/terminal.js";
import { DEFAULT_MAX_STEPS, runAgent, type AgentEvent, type AgentRunResult } from "../agent/loop.js";
import { createProvider } from "../agent/models.js";
import { loadPlan, PlanProvider } from "../agent/plan.js";
import { newRunId, Transcript } from "../agent/transcript.js";
import type { ExternalTools, ModelProvider } from "../agent/types.js";

interface RunFlags extends ClusterConnectFlags {
  model?: string;
  plan?: string;
  maxSteps: number;
  maxTokens?: number;
  maxTime?: number;
  workspace?: string;
  backend: BackendChoice;
  memory?: number;
  disk?: number;
  fileTools?: FileToolsMode;
  nonInteractive?: boolean;
  policy?: string;
  approvalTimeout?: number;
  json?: boolean;
}

/** Exit codes of `run`: 0 done, 3 stopped by the step limit or a budget, 4 a plan step failed or was denied, 130 cancelled. */
const RUN_EXIT = { completed: 0, limit: 3, planStepFailed: 4, cancelled: 130 } as const;

interface RegisterRunOptions {
  /** The MCP client pool, once there is one; its tools are offered next to the built-ins. */
  externalTools?: () => Promise<ExternalTools | undefined>;
}

export function registerRunCommand(program: Command, options: RegisterRunOptions = {}): void {
  const run = program
    .command("run")
    .description("run an agent: a model (or a plan file) proposes tool calls; each one passes the approval cliff, then runs in a fresh sandbox")
    .argument("[task]", "what the agent should do (optional with --plan)")
    .option("--model <provider:model>", "openai:MODEL (OPENAI_BASE_URL, OPENAI_API_KEY) or anthropic:MODEL (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY); default $LUMINAGUARD_MODEL")
    .option("--plan <file>", 'replay a fixed sequence of tool calls ({ "steps": [ { "tool": ..., "args": { ... } } ] }) instead of a model')
    .option("--max-steps <n>", "stop after this many model turns", parseIntOption("--max-steps", 1, 100_000), DEFAULT_MAX_STEPS)
    .option("--max-tokens <n>", "stop when the model has used this many tokens (input + output)", parseIntOption("--max-tokens", 1, 1_000_000_000))
    .option("--max-time <seconds>", "stop after this long", parseIntOption("--max-time", 1, 7 * 86_400))
    .option("--workspace <dir>", "host directory seen as /workspace (default: a temporary one, removed afterwards)")
    .addOption(new Option("--backend <name>", "sandbox backend (auto = strongest isolation that works here)").choices([...BACKEND_CHOICES]).default("auto"))
    .option("--memory <MiB>", "memory limit of the sandbox", parseIntOption("--memory", 32, 65_536))
    .option("--disk <MiB>", "disk limit of the sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
    .addOption(fileToolsOption())
    .option("--non-interactive", "nobody to ask: Red actions are denied unless the policy allows them")
    .option("--policy <file>", "approval policy (default $LUMINAGUARD_HOME/policy.json when present)")
    .option("--approval-timeout <seconds>", "an unanswered approval is a denial after this long (default 300)", parseIntOption("--approval-timeout", 1, 86_400))
    .option("--json", "print the run summary as JSON on stdout");
  addClusterConnectOptions(run, "claim the run's sandbox in this cluster (its workspace is then node-local)").action(async (task: string | undefined, flags: RunFlags) => {
    process.exitCode = await runCommand(task, flags, options);
  });
}

async function runCommand(task: string | undefined, flags: RunFlags, options: RegisterRunOptions = {}): Promise<number> {
  const provider = chooseProvider(flags);
  const isPlan = flags.plan !== undefined;
  const theTask = task ?? (isPlan ? `replay the plan ${flags.plan as string}` : undefined);
  if (theTask === undefined || theTask.trim() === "") throw new LuminaGuardError("INVALID_ARGUMENT", "run needs a TASK (or --plan FILE)");
  const policy = loadPolicy(flags.policy);
  const approver = chooseApprover(flags);
  const externalTools = options.externalTools ? await options.externalTools() : undefined;

  const controller = new AbortController();
  let sandbox: SandboxApi | undefined;
  let interrupts = 0;
  const teardownAndExit = (code: number): void => {
    void (sandbox?.kill() ?? Promise.resolve()).finally(() => process.exit(code));
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    const code = sig === "SIGINT" ? 130 : 143;
    if (interrupts === 1) {
      process.stderr.write(`\nluminaguard: ${sig}: cancelling the run and tearing the sandbox down\n`);
      controller.abort(sig);
      // The loop unwinds on its own; this is the backstop if something hangs.
      setTimeout(() => teardownAndExit(code), 15_000).unref();
    } else teardownAndExit(code);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const runId = newRunId();
  let transcript: Transcript | undefined;
  let result: AgentRunResult;
  // The cluster only with --cluster or $LUMINAGUARD_CLUSTER, as for exec; a host --workspace is then WORKSPACE_FORBIDDEN.
  const cluster = await clusterForClient(flags);
  try {
    sandbox = await Sandbox.create({
      ...(cluster !== undefined ? { cluster } : {}),
      backend: flags.backend,
      ...(flags.workspace !== undefined ? { workspace: flags.workspace } : {}),
      ...(flags.memory !== undefined ? { memoryMiB: flags.memory } : {}),
      ...(flags.disk !== undefined ? { diskMiB: flags.disk } : {}),
      ...(flags.fileTools !== undefined ? { fileTools: flags.fileTools } : {}),
      signal: controller.signal,
    });
    const gate = new ApprovalGate({
      approver,
      policy,
      // A cluster sandbox's workspace is a path on its node, not on this host.
      ...(cluster === undefined ? { workspace: sandbox.workspace } : {}),
      runId,
      ...(flags.approvalTimeout !== undefined ? { timeoutMs: flags.approvalTimeout * 1000 } : {}),
    });
    transcript = new Transcript(runId);
    process.stderr.write(
      escapeForTerminal(
        `luminaguard: run ${runId}: ${provider.id} in sandbox ${sandbox.id} (${sandbox.backend}), workspace ${sandbox.workspace}\n` +
          `luminaguard: transcript ${transcript.file}; approvals via ${approver.channel}, policy ${policy.source}\n`,
      ),
    );
    result = await runAgent({
      task: theTask,
      provider,
      sandbox,
      gate,
      ...(externalTools ? { externalTools } : {}),
      maxSteps: flags.maxSteps,
      ...(flags.maxTokens !== undefined ? { maxTokens: flags.maxTokens } : {}),
      ...(flags.maxTime !== undefined ? { maxTimeMs: flags.maxTime * 1000 } : {}),
      signal: controller.signal,
      runId,
      transcript,
      onEvent: progress,
    });
  } catch (err) {
    if (controller.signal.aborted) {
      process.stderr.write("luminaguard: cancelled\n");
      return RUN_EXIT.cancelled;
    }
    throw err;
  } finally {
    await sandbox?.kill();
    await externalTools?.close?.();
    transcript?.close();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }

  const line = `luminaguard: run ${result.runId} ${result.status} after ${result.steps} step(s): ${result.toolCalls} tool call(s), ${result.denied} denied, ${result.failed} failed, ${result.usage.inputTokens + result.usage.outputTokens} tokens, ${(result.durationMs / 1000).toFixed(1)} s\n`;
  process.stderr.write(line);
  // JSON escapes control characters itself; plain text from the model is made inert (it may be an OSC 52
  // clipboard write or a screen clear), even when stdout is a file someone will `cat` later.
  if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else if (result.finalText !== "") process.stdout.write(escapeForTerminal(result.finalText.replace(/\n?$/, "\n")));
  switch (result.status) {
    case "completed":
      return isPlan && result.denied + result.failed > 0 ? RUN_EXIT.planStepFailed : RUN_EXIT.completed;
    case "max_steps":
    case "budget_exceeded":
      if (result.error) process.stderr.write(`luminaguard: ${escapeForTerminal(result.error.message)}\n`);
      else if (result.status === "max_steps") process.stderr.write(`luminaguard: step limit of ${flags.maxSteps} reached\n`);
      return RUN_EXIT.limit;
    case "cancelled":
      return RUN_EXIT.cancelled;
    case "failed": {
      const code = result.error?.code;
      const e = new LuminaGuardError(code !== undefined && isErrorCode(code) ? code : "INTERNAL", result.error?.message ?? "run failed");
      process.stderr.write(`luminaguard: error [${e.code}]: ${escapeForTerminal(e.message)}\n`);
      return exitCodeFor(e);
    }
  }
}

function chooseProvider(flags: RunFlags): ModelProvider {
  if (flags.plan !== undefined) {
    if (flags.model !== undefined) throw new LuminaGuardError("INVALID_ARGUMENT", "--plan and --model exclude each other");
    return new PlanProvider(loadPlan(flags.plan), flags.plan);
  }
  const spec = flags.model ?? process.env["LUMINAGUARD_MODEL"];
  if (spec === undefined || spec === "") throw new LuminaGuardError("INVALID_ARGUMENT", "run needs --model PROVIDER:MODEL (or $LUMINAGUARD_MODEL) or --plan FILE");
  return createProvider(spec, { onRetry: (e) => process.stderr.write(`luminaguard: ${escapeForTerminal(`${e.provider}: ${e.cause}`, false)}; retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s\n`) });
}

function chooseApprover(flags: RunFlags): Approver {
  if (flags.nonInteractive) return nonInteractiveApprover();
  if (!hasTerminal()) {
    throw new LuminaGuardError("INVALID_ARGUMENT", "no terminal to ask for approvals: use --non-interactive (Red actions are then denied unless the policy allows them)");
  }
  return terminalApprover();
}

function progress(e: AgentEvent): void {
  const s = (t: string): string => escapeForTerminal(t, false);
  switch (e.type) {
    case "model":
      if (e.content.trim() !== "") process.stderr.write(`[${e.step}] model: ${s(clipWithMarker(e.content.trim(), 300))}\n`);
      break;
    case "decision": {
      const d = e.decision;
      const verdict = d.decision === "allow" ? (d.class === "green" && d.channel === "policy" ? "allowed (read-only)" : `ALLOWED via ${d.channel}`) : `DENIED via ${d.channel}`;
      process.stderr.write(`[${e.step}] ${e.server !== undefined ? `${s(e.server)}/` : ""}${s(e.tool)}: ${s(d.card.summary)} → ${verdict} (rule ${s(d.rule)})\n`);
      break;
    }
    case "tool_result":
      if (!e.ok) {
        const err = (e.result as { error?: { code?: string; message?: string } } | undefined)?.error;
        process.stderr.write(`[${e.step}] ${s(e.tool)} failed: ${s(clipWithMarker(`${err?.code ?? "ERROR"}: ${err?.message ?? ""}`, 300))}\n`);
      }
      break;
  }
}
