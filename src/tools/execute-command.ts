// execute_command: one command (a shell line or an argv) in the sandbox, its output streamed, its process tree killed at the timeout.
import { z } from "zod";
import { ToolTimeoutError } from "../errors.js";
import type { GuestChannel } from "../protocol/channel.js";
import { DEFAULT_OUTPUT_MAX_BYTES, WORKSPACE_PATH_TEXT, defineTool, requestOptions, workspacePath, type CallOptions, type Valid } from "./tool.js";

const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** Slack on top of a command's own timeout before the host declares the guest stalled. */
const HOST_DEADLINE_SLACK_MS = 15_000;

export const executeCommandArgs = z.strictObject({
  command: z.union([
    z.string().min(1, "command must not be empty"),
    z.array(z.string().refine((s) => !s.includes("\0"), "argv must not contain NUL")).min(1, "argv must not be empty"),
  ]),
  cwd: workspacePath.optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "invalid environment variable name"), z.string()).optional(),
  stdin: z.string().optional(),
  timeoutMs: z.number().int().min(1).max(24 * 3600 * 1000).optional(),
});
export type ExecuteCommandArgs = z.infer<typeof executeCommandArgs>;

/** The guest's answer; stdout and stderr arrive before it as stream events. */
const wireResult = z.object({
  exitCode: z.number().int().nullable(),
  signal: z.string().max(32).nullable(),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  /** The command wrote past the output cap and was killed there, instead of running on to its timeout. */
  killedAtOutputCap: z.boolean(),
  durationMs: z.number().nonnegative(),
});

const { exitCode, signal, ...wireRest } = wireResult.shape;
const result = z.object({ exitCode, signal, stdout: z.string(), stderr: z.string(), ...wireRest });
export type CommandResult = z.infer<typeof result>;

export async function executeCommand(channel: GuestChannel, args: Valid<ExecuteCommandArgs, "execute_command">, o: CallOptions = {}): Promise<CommandResult> {
  const argv = typeof args.command === "string" ? ["/bin/sh", "-c", args.command] : args.command;
  const timeoutMs = args.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const maxOutputBytes = o.maxOutputBytes ?? DEFAULT_OUTPUT_MAX_BYTES;
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  try {
    const r = await channel.request(
      "execute_command",
      {
        argv,
        ...(args.cwd !== undefined ? { cwd: args.cwd } : {}),
        ...(args.env !== undefined ? { env: args.env } : {}),
        ...(args.stdin !== undefined ? { stdin: Buffer.from(args.stdin, "utf8").toString("base64") } : {}),
        timeoutMs,
        maxOutputBytes,
      },
      requestOptions(o.signal, {
        deadlineMs: timeoutMs + HOST_DEADLINE_SLACK_MS,
        maxStreamBytes: maxOutputBytes,
        onEvent: (stream, data) => {
          (stream === "stdout" ? out : err).push(data);
          (stream === "stdout" ? o.onStdout : o.onStderr)?.(data);
        },
      }),
    );
    return { ...r, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
  } catch (e) {
    if (e instanceof ToolTimeoutError) {
      throw new ToolTimeoutError(`command timed out after ${timeoutMs} ms; its process tree was killed`, {
        details: { timeoutMs, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") },
      });
    }
    throw e;
  }
}

export const executeCommandTool = defineTool({
  name: "execute_command",
  title: "Execute command",
  describe: () =>
    "Run a command inside the sandbox with /workspace as the working directory and no network. A string runs under `sh -c`; an array runs that argv directly. Returns exit code, stdout and stderr. The whole process tree is killed at the timeout.",
  argDescriptions: {
    command: "A shell command line (run with sh -c) or an argv array.",
    cwd: `Working directory. ${WORKSPACE_PATH_TEXT}`,
    env: "Extra environment variables.",
    stdin: "Text fed to the command's standard input.",
    timeoutMs: `Kill the command after this many milliseconds (default ${DEFAULT_COMMAND_TIMEOUT_MS}).`,
  },
  args: executeCommandArgs,
  wireResult,
  result,
  readOnly: false,
  idempotent: false,
  risk: "high",
  defaultRule: "default:execute",
  call: executeCommand,
});
