// Approval channels: the terminal (read from the TTY, never the model's channel), an SDK callback, MCP elicitation, and none.
import { closeSync, openSync, writeSync, constants } from "node:fs";
import { userInfo } from "node:os";
import { createInterface } from "node:readline";
import { ReadStream } from "node:tty";
import type { Readable, Writable } from "node:stream";
import type { ElicitRequestFormParams, ElicitResult as McpElicitResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { onAbort } from "../util/abort.js";
import { renderCard, type Card } from "./card.js";
import type { ToolCallRequest } from "./policy.js";

export interface ApprovalRequest {
  call: ToolCallRequest;
  card: Card;
  /** How long the person has, for the prompt to say so. */
  timeoutMs: number;
}

export interface ApprovalAnswer {
  approved: boolean;
  /** Who answered: a user at a terminal, a callback's name, an MCP client. */
  actor: string;
  reason?: string;
}

/**
 * A channel that can say yes. `signal` aborts when the timeout passes (reason "timeout") or the run is
 * cancelled; the gate treats a late or missing answer as a denial either way.
 */
export interface Approver {
  readonly channel: string;
  ask(request: ApprovalRequest, options: { signal: AbortSignal }): Promise<ApprovalAnswer>;
}

/** `--non-interactive`: nobody to ask, so anything that needs asking is denied. */
export function nonInteractiveApprover(): Approver {
  return {
    channel: "non-interactive",
    ask: () =>
      Promise.resolve({ approved: false, actor: "policy", reason: "non-interactive mode: Red actions are denied unless the policy allows them" }),
  };
}

type ApprovalCallback = (
  card: Card,
  context: { call: ToolCallRequest; signal: AbortSignal },
) => boolean | ApprovalAnswerLike | Promise<boolean | ApprovalAnswerLike>;

interface ApprovalAnswerLike {
  approved: boolean;
  actor?: string;
  reason?: string;
}

/** The SDK's programmatic channel; only a literal `true` (or `{ approved: true }`) approves. */
export function callbackApprover(fn: ApprovalCallback, name = "sdk-callback"): Approver {
  return {
    channel: "callback",
    async ask(req, { signal }) {
      const r = await fn(req.card, { call: req.call, signal });
      if (r === true) return { approved: true, actor: name };
      if (typeof r === "object" && r !== null && r.approved === true) {
        return { approved: true, actor: r.actor ?? name, ...(r.reason !== undefined ? { reason: r.reason } : {}) };
      }
      const reason = typeof r === "object" && r !== null && r.reason !== undefined ? r.reason : "denied by the callback";
      return { approved: false, actor: typeof r === "object" && r !== null && r.actor !== undefined ? r.actor : name, reason };
    },
  };
}

/** What an MCP host answers to `elicitation/create` (the MCP SDK's type). */
export type ElicitResult = McpElicitResult;

/** The form an elicitation asks the user to fill in (the MCP SDK's type). */
export type ElicitationSchema = ElicitRequestFormParams["requestedSchema"];

/**
 * Asks the user through the MCP host: the one elicitation function type, which the MCP server hands each
 * tool call (ToolCallContext.elicit) and the elicitation approver takes.
 */
export type ElicitFn = (message: string, requestedSchema: ElicitationSchema, options?: { signal?: AbortSignal; timeoutMs?: number }) => Promise<ElicitResult>;

const APPROVAL_ELICITATION_SCHEMA: ElicitationSchema = {
  type: "object",
  properties: {
    approve: { type: "boolean", title: "Approve this action", description: "Let LuminaGuard run the action shown above", default: false },
  },
  required: ["approve"],
};

const elicitResultSchema = z.object({
  action: z.enum(["accept", "decline", "cancel"]),
  content: z.record(z.string(), z.unknown()).optional(),
});

/** For the MCP server: asks the host through elicitation; only `accept` with `approve: true` approves. */
export function elicitationApprover(elicit: ElicitFn, actor = "mcp-client"): Approver {
  return {
    channel: "elicitation",
    async ask(req, { signal }) {
      const message = `${renderCard(req.card)}\nApprove this action? (no answer in ${Math.round(req.timeoutMs / 1000)} s means no)`;
      const parsed = elicitResultSchema.safeParse(await elicit(message, APPROVAL_ELICITATION_SCHEMA, { signal }));
      if (!parsed.success) return { approved: false, actor, reason: "the client's elicitation answer was malformed" };
      const { action, content } = parsed.data;
      if (action === "accept" && content?.["approve"] === true) return { approved: true, actor };
      return { approved: false, actor, reason: action === "accept" ? "the user did not tick approve" : `the user chose ${action}` };
    },
  };
}

interface TerminalApproverOptions {
  /** A given stream pair (tests, embedding); otherwise the controlling terminal is opened at each prompt. */
  input?: Readable;
  output?: Writable;
  /** Default /dev/tty. */
  ttyPath?: string;
  color?: boolean;
}

/**
 * The interactive prompt. It reads the controlling terminal itself, so nothing the model writes (its
 * messages, tool output, stdout) can answer it; empty or unknown input is a denial.
 */
export function terminalApprover(options: TerminalApproverOptions = {}): Approver {
  const ttyPath = options.ttyPath ?? "/dev/tty";
  return {
    channel: "terminal",
    async ask(req, { signal }) {
      const io = options.input && options.output ? { input: options.input, output: options.output, close: () => undefined, name: "stream" } : openTty(ttyPath);
      const write = (s: string): void => {
        io.output.write(s);
      };
      try {
        write(`\n${renderCard(req.card, { color: options.color ?? io.name !== "stream" })}`);
        write(`Allow this action? [y/N] (no answer in ${Math.round(req.timeoutMs / 1000)} s means no) `);
        const answer = await readLine(io.input, signal);
        if (answer === undefined) {
          write(`\n${signal.reason === "timeout" ? "no answer in time" : "cancelled"}: denied\n`);
          return { approved: false, actor: terminalActor(io.name), reason: signal.reason === "timeout" ? "no answer in time" : "cancelled" };
        }
        const a = answer.trim().toLowerCase();
        if (a === "y" || a === "yes") {
          write("approved\n");
          return { approved: true, actor: terminalActor(io.name) };
        }
        write("denied\n");
        return { approved: false, actor: terminalActor(io.name), reason: a === "" ? "denied (default answer)" : `answered ${JSON.stringify(answer.trim().slice(0, 40))}` };
      } finally {
        io.close();
      }
    },
  };
}

/** True when this process has a controlling terminal to prompt on. */
export function hasTerminal(ttyPath = "/dev/tty"): boolean {
  try {
    closeSync(openSync(ttyPath, constants.O_RDWR | constants.O_NOCTTY));
    return true;
  } catch {
    return false;
  }
}

function terminalActor(tty: string): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry */
  }
  return `${user}@${tty}`;
}

function openTty(path: string): { input: Readable; output: Writable; close: () => void; name: string } {
  let rfd: number;
  let wfd: number;
  try {
    rfd = openSync(path, constants.O_RDONLY | constants.O_NOCTTY);
    wfd = openSync(path, constants.O_WRONLY | constants.O_NOCTTY);
  } catch (err) {
    throw new LuminaGuardError("UNSUPPORTED_OP", `no terminal to ask for approval (${path}: ${(err as Error).message}); use --non-interactive or a policy`, { cause: err });
  }
  const input = new ReadStream(rfd);
  const output = {
    write: (s: string): boolean => {
      const b = Buffer.from(s, "utf8");
      let off = 0;
      while (off < b.length) off += writeSync(wfd, b, off, b.length - off);
      return true;
    },
  } as unknown as Writable;
  return {
    input,
    output,
    name: path,
    close: () => {
      input.destroy();
      try {
        closeSync(wfd);
      } catch {
        /* closed */
      }
    },
  };
}

/** One line, or undefined when the signal aborts or the input ends first. */
function readLine(input: Readable, signal: AbortSignal): Promise<string | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    // terminal:false keeps the TTY in cooked mode: the kernel does line editing and Ctrl-C stays a real SIGINT.
    const rl = createInterface({ input, terminal: false, crlfDelay: Infinity });
    const done = (v: string | undefined): void => {
      unhook();
      rl.removeAllListeners();
      rl.close();
      input.pause();
      resolve(v);
    };
    const unhook = onAbort(signal, () => done(undefined));
    rl.once("line", (line) => done(line));
    rl.once("close", () => done(undefined));
  });
}
