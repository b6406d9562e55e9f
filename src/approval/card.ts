// The diff card: what a Red action will change (a diff, a command line, a server's tool and arguments), the risk and the rule.
import { createHash } from "node:crypto";
import { LuminaGuardError } from "../errors.js";
import { isToolName, parseToolArgs, type ValidArgs } from "../tools/registry.js";
import { writeBytes } from "../tools/write-file.js";
import { clipWithMarker, escapeForTerminal } from "../util/terminal.js";
import { unifiedDiff } from "./diff.js";
import { isHookEnvVar, shellQuote, workspaceRelative, type ActionClass, type PolicyAction, type Risk, type ToolCallRequest } from "./policy.js";
import { resolveWriteTarget } from "./resolve.js";

interface WriteFileDetails {
  kind: "write_file";
  /** The path as the call names it (normalised). */
  path: string;
  /** The file the write really replaces, when `path` passes through a symlinked directory. */
  target?: string;
  /** `path` is itself a symlink (to this): the write replaces the link with a regular file and leaves its target alone. */
  replacesSymlink?: string;
  /** The path resolves outside the workspace: the sandbox will refuse the write (PATH_ESCAPE). */
  refused?: boolean;
  newFile: boolean;
  binary: boolean;
  bytesAfter: number;
  sha256After: string;
  bytesBefore?: number;
  diff?: string;
  /** The diff was longer than the card keeps; `diffChars` is its whole length. */
  diffTruncated?: boolean;
  diffChars?: number;
  note?: string;
}

interface ExecuteCommandDetails {
  kind: "execute_command";
  command: string;
  cwd: string;
  /** Variables the command sets on top of the sandbox's environment. */
  env: Record<string, string>;
  /** The whole of stdin (the audit log keeps it all; the screen shows the start and says how much is left). */
  stdin?: string;
  stdinBytes?: number;
  timeoutMs?: number;
}

interface ExternalDetails {
  kind: "external";
  server: string;
  tool: string;
  args: unknown;
  description?: string;
  /** What the server claims; never trusted on its own (only the policy marks a tool read-only). */
  readOnlyHint?: boolean;
}

interface ToolDetails {
  kind: "tool";
  args: unknown;
  /** Why the arguments could not be understood (the call will fail), when they could not. */
  note?: string;
}

type CardDetails = WriteFileDetails | ExecuteCommandDetails | ExternalDetails | ToolDetails;

export interface Card {
  tool: string;
  server?: string;
  class: ActionClass;
  risk: Risk;
  rule: string;
  action: PolicyAction;
  /** One line: what the action does. */
  summary: string;
  details: CardDetails;
}

export interface CardContext {
  /** Current content of a workspace file (null: it does not exist); read through the sandbox so paths mean the same. */
  readFile?: (path: string) => Promise<Buffer | null>;
  toolInfo?: { description?: string; readOnlyHint?: boolean };
  /** Host workspace directory: a write's path is resolved through its symlinks to name the real target. */
  workspace?: string;
}

export interface Classification {
  class: ActionClass;
  risk: Risk;
  rule: string;
  action: PolicyAction;
}

const MAX_DIFF_CHARS = 64 * 1024;
const MAX_ARG_STRING = 2000;
const MAX_ARG_ITEMS = 200;
/** How much of a command's stdin the screen shows; the card (and so the audit log) keeps all of it. */
const MAX_STDIN_LINES = 20;
const MAX_STDIN_CHARS = 1000;

/**
 * The card of one call. A built-in call's arguments are read as parsed at the edge (`parseToolArgs`); raw ones
 * are parsed here, and ones that do not parse make a card that says why.
 */
export async function buildCard(call: ToolCallRequest, cls: Classification, ctx: CardContext = {}): Promise<Card> {
  const base = { tool: call.tool, ...(call.server !== undefined ? { server: call.server } : {}), ...cls };
  if (call.server !== undefined) {
    const details: ExternalDetails = { kind: "external", server: call.server, tool: call.tool, args: clip(call.args) };
    if (ctx.toolInfo?.description !== undefined) details.description = clipWithMarker(ctx.toolInfo.description, MAX_ARG_STRING);
    if (ctx.toolInfo?.readOnlyHint !== undefined) details.readOnlyHint = ctx.toolInfo.readOnlyHint;
    return { ...base, summary: `call ${call.tool} on MCP server ${call.server}`, details };
  }
  if (call.tool === "write_file") {
    try {
      return { ...base, ...(await writeCard(parseToolArgs("write_file", call.args), ctx)) };
    } catch (err) {
      return { ...base, summary: "write_file with invalid arguments", details: { kind: "tool", args: clip(call.args), note: (err as Error).message } };
    }
  }
  if (call.tool === "execute_command") {
    try {
      return { ...base, ...commandCard(parseToolArgs("execute_command", call.args)) };
    } catch (err) {
      return { ...base, summary: "execute_command with invalid arguments", details: { kind: "tool", args: clip(call.args), note: (err as Error).message } };
    }
  }
  const known = isToolName(call.tool);
  const summary = known ? `${call.tool} ${describeArgs(call.args)}`.trim() : `unknown tool ${call.tool}`;
  return { ...base, summary, details: { kind: "tool", args: clip(call.args), ...(known ? {} : { note: "not a LuminaGuard tool" }) } };
}

function commandCard(a: ValidArgs<"execute_command">): Pick<Card, "summary" | "details"> {
  const command = typeof a.command === "string" ? a.command : a.command.map(shellQuote).join(" ");
  const details: ExecuteCommandDetails = { kind: "execute_command", command, cwd: a.cwd === undefined ? "/workspace" : a.cwd, env: a.env ?? {} };
  if (a.stdin !== undefined) {
    details.stdin = a.stdin;
    details.stdinBytes = Buffer.byteLength(a.stdin);
  }
  if (a.timeoutMs !== undefined) details.timeoutMs = a.timeoutMs;
  return { summary: `run ${oneLine(command, 120)}`, details };
}

async function writeCard(a: ValidArgs<"write_file">, ctx: CardContext): Promise<Pick<Card, "summary" | "details">> {
  const after = writeBytes(a);
  const path = workspaceRelative(a.path);
  const d: WriteFileDetails = { kind: "write_file", path, newFile: false, binary: !isText(after), bytesAfter: after.length, sha256After: sha256(after) };
  let before: Buffer | null | undefined;
  if (ctx.readFile) {
    try {
      before = await ctx.readFile(a.path);
    } catch (err) {
      const code = err instanceof LuminaGuardError ? err.code : "IO_ERROR";
      if (code === "PATH_ESCAPE") d.refused = true;
      d.note =
        code === "PATH_ESCAPE"
          ? "the path leaves the workspace: the sandbox will refuse this write"
          : code === "FILE_TOO_LARGE"
            ? "the current file is too large to diff; it will be replaced"
            : `cannot read the current file (${code}): ${(err as Error).message}`;
    }
  } else d.note = "current content unknown (no workspace reader)";
  if (ctx.workspace !== undefined) {
    const t = resolveWriteTarget(ctx.workspace, path);
    if (t.kind === "outside") {
      d.refused = true;
      d.note =
        t.via !== undefined
          ? `the path resolves outside the workspace through the symlink ${t.via} → ${t.target ?? "?"}: the sandbox will refuse this write`
          : "the path leaves the workspace: the sandbox will refuse this write";
    } else if (t.kind === "inside") {
      if (t.path !== path) d.target = t.path;
      if (t.symlink !== undefined) d.replacesSymlink = t.symlink;
    }
  }
  if (before === null) d.newFile = true;
  if (before) {
    d.bytesBefore = before.length;
    if (!isText(before)) d.binary = true;
  }
  if (before !== undefined && !d.binary) {
    const diff = unifiedDiff(d.target ?? path, before === null ? undefined : before.toString("utf8"), after.toString("utf8"));
    if (diff.length > MAX_DIFF_CHARS) {
      d.diff = diff.slice(0, MAX_DIFF_CHARS);
      d.diffTruncated = true;
      d.diffChars = diff.length;
    } else d.diff = diff;
    if (diff === "") d.note = "no change: the content is identical";
  }
  const verb = d.newFile ? "create" : "overwrite";
  const where = d.target !== undefined ? `${d.target} via ${path}` : path;
  const size = `${after.length} bytes${d.binary ? ", binary" : ""}`;
  return { summary: `${verb} ${where} (${size})${d.refused === true ? " — will be refused: outside the workspace" : ""}`, details: d };
}

function isText(b: Buffer): boolean {
  return !b.includes(0) && Buffer.from(b.toString("utf8"), "utf8").equals(b);
}

function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

function describeArgs(args: unknown): string {
  if (typeof args !== "object" || args === null) return "";
  const p = (args as Record<string, unknown>)["path"];
  return typeof p === "string" ? oneLine(p, 200) : "";
}

/**
 * Long strings, arrays and objects shortened so a card (and the audit line holding it) stays readable and
 * bounded; every cut says how much it left out.
 */
function clip(v: unknown, depth = 0): unknown {
  if (typeof v === "string") return clipWithMarker(v, MAX_ARG_STRING);
  if (depth > 8 || typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) {
    const out = v.slice(0, MAX_ARG_ITEMS).map((x) => clip(x, depth + 1));
    if (v.length > MAX_ARG_ITEMS) out.push(`… [${v.length - MAX_ARG_ITEMS} more items]`);
    return out;
  }
  const entries = Object.entries(v);
  const out = Object.fromEntries(entries.slice(0, MAX_ARG_ITEMS).map(([k, x]) => [k, clip(x, depth + 1)]));
  if (entries.length > MAX_ARG_ITEMS) out["…"] = `[${entries.length - MAX_ARG_ITEMS} more keys]`;
  return out;
}

function oneLine(s: string, max: number): string {
  return clipWithMarker(s.replace(/\s+/g, " "), max);
}

/** The start of stdin that fits the screen: whole lines while they fit, else a cut inside the first long line. */
function stdinPreview(stdin: string): string {
  let end = 0;
  for (let lines = 0; lines < MAX_STDIN_LINES && end < stdin.length; lines++) {
    const nl = stdin.indexOf("\n", end);
    const next = nl === -1 ? stdin.length : nl + 1;
    if (next > MAX_STDIN_CHARS) {
      if (end > 0) return stdin.slice(0, end);
      // Never half a surrogate pair: the byte count of what is left must add up.
      const high = stdin.charCodeAt(MAX_STDIN_CHARS - 1);
      const cut = high >= 0xd800 && high <= 0xdbff ? MAX_STDIN_CHARS - 1 : MAX_STDIN_CHARS;
      return stdin.slice(0, cut);
    }
    end = next;
  }
  return stdin.slice(0, end);
}

interface RenderOptions {
  color?: boolean;
  /** Longest diff shown, in lines; the audit keeps the whole (bounded) diff. */
  maxDiffLines?: number;
}

/** The card as text for a terminal or an MCP elicitation message. */
export function renderCard(card: Card, options: RenderOptions = {}): string {
  const c = options.color === true;
  const paint = (code: string, s: string): string => (c ? `\x1b[${code}m${s}\x1b[0m` : s);
  const s = (t: string): string => escapeForTerminal(t, false);
  const cls = card.class === "red" ? paint("1;31", "RED") : paint("1;32", "GREEN");
  const lines: string[] = [];
  lines.push(`${paint("1", "LuminaGuard approval")}  ${cls}  risk: ${paint(card.risk === "low" ? "32" : "33", card.risk)}  rule: ${s(card.rule)}`);
  lines.push(`  ${card.server !== undefined ? `${s(card.server)} › ` : ""}${s(card.tool)}: ${s(card.summary)}`);
  const d = card.details;
  switch (d.kind) {
    case "write_file": {
      lines.push(`  path: ${s(d.path)}${d.newFile ? " (new file)" : ""}`);
      if (d.target !== undefined) lines.push(`  target: ${s(d.target)} (${s(d.path)} passes through a symlink)`);
      if (d.replacesSymlink !== undefined) {
        lines.push(`  symlink: replaces the symlink ${s(d.target ?? d.path)} (→ ${s(d.replacesSymlink)}) with a regular file; ${s(d.replacesSymlink)} is not changed`);
      }
      if (d.binary) lines.push(`  binary content: ${d.bytesBefore ?? 0} → ${d.bytesAfter} bytes, sha256 ${d.sha256After}`);
      if (d.note !== undefined) lines.push(`  note: ${s(d.note)}`);
      if (d.diff !== undefined && d.diff !== "") {
        const max = options.maxDiffLines ?? 200;
        const diffLines = d.diff.replace(/\n$/, "").split("\n");
        for (const l of diffLines.slice(0, max)) {
          const safe = escapeForTerminal(l, false);
          lines.push(`  ${l.startsWith("+") && !l.startsWith("+++") ? paint("32", safe) : l.startsWith("-") && !l.startsWith("---") ? paint("31", safe) : l.startsWith("@@") ? paint("36", safe) : safe}`);
        }
        if (diffLines.length > max) lines.push(`  … ${diffLines.length - max} more diff lines not shown`);
        if (d.diffTruncated === true) lines.push(`  … the diff is ${d.diffChars ?? "more than"} chars; the card keeps the first ${MAX_DIFF_CHARS}`);
      }
      break;
    }
    case "execute_command": {
      lines.push(`  command: ${s(d.command)}`);
      lines.push(`  cwd:     ${s(d.cwd)}`);
      const env = Object.entries(d.env);
      lines.push(`  env:     ${env.length === 0 ? "(unchanged)" : env.map(([k, v]) => `${s(k)}=${s(shellQuote(v))}`).join(" ")}`);
      const hooks = env.map(([k]) => k).filter(isHookEnvVar);
      if (hooks.length > 0) lines.push(`  hooks:   ${hooks.map(s).join(" ")} (these variables make programs load or run other code)`);
      if (d.stdinBytes !== undefined) lines.push(`  stdin:   ${d.stdinBytes} bytes`);
      if (d.stdin !== undefined && d.stdin !== "") {
        const shown = stdinPreview(d.stdin);
        for (const l of shown.replace(/\n$/, "").split("\n")) lines.push(`    | ${s(l)}`);
        const rest = Buffer.byteLength(d.stdin) - Buffer.byteLength(shown);
        if (rest > 0) lines.push(`    … ${rest} more bytes of stdin not shown (the audit log keeps all of it)`);
      }
      if (d.timeoutMs !== undefined) lines.push(`  timeout: ${d.timeoutMs} ms`);
      break;
    }
    case "external": {
      lines.push(`  server: ${s(d.server)}   tool: ${s(d.tool)}${d.readOnlyHint === true ? "   (server claims read-only; not trusted)" : ""}`);
      if (d.description !== undefined) lines.push(`  description: ${s(d.description)}`);
      for (const l of JSON.stringify(d.args ?? null, null, 2).split("\n")) lines.push(`  ${s(l)}`);
      break;
    }
    case "tool": {
      for (const l of JSON.stringify(d.args ?? null, null, 2).split("\n")) lines.push(`  ${s(l)}`);
      if (d.note !== undefined) lines.push(`  note: ${s(d.note)}`);
      break;
    }
  }
  return `${lines.join("\n")}\n`;
}
