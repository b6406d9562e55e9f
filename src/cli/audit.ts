// `luminaguard audit`: reads the approval decisions back from $LUMINAGUARD_HOME/audit.jsonl.
import type { Command } from "commander";
import { LuminaGuardError } from "../errors.js";
import { escapeForTerminal } from "../util/terminal.js";
import { defaultAuditPath, readAudit, type AuditEntry } from "../approval/audit.js";

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `30m`, `2h`, `7d` (ago) or an ISO 8601 date/time. */
export function parseSince(value: string, now = Date.now()): Date {
  const rel = /^(\d+)\s*([smhdw])$/.exec(value.trim());
  if (rel) return new Date(now - Number(rel[1]) * (UNITS[rel[2] as string] as number));
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return new Date(t);
  }
  throw new LuminaGuardError("INVALID_ARGUMENT", `--since: expected a duration like 30m, 2h, 7d or an ISO date, got ${JSON.stringify(value)}`);
}

function formatAuditEntry(e: AuditEntry): string {
  const summary = typeof e.card["summary"] === "string" ? e.card["summary"] : "";
  const tool = e.server !== undefined ? `${e.server}/${e.tool}` : e.tool;
  return escapeForTerminal(
    [e.time, e.decision.toUpperCase().padEnd(5), e.class.padEnd(5), e.risk.padEnd(8), tool, `via ${e.channel} (${e.actor})`, `rule ${e.rule}`, summary, e.reason ? `— ${e.reason}` : ""]
      .filter((s) => s !== "")
      .join("  "),
    false,
  );
}

export function registerAuditCommand(program: Command): void {
  program
    .command("audit")
    .description("show the approval decisions in the audit log ($LUMINAGUARD_HOME/audit.jsonl)")
    .option("--since <when>", "only decisions since a duration ago (30m, 2h, 7d) or an ISO date")
    .option("--run <id>", "only decisions of one agent run")
    .option("--json", "print the entries as one JSON array")
    .option("--file <path>", "read another audit file")
    .action((o: { since?: string; run?: string; json?: boolean; file?: string }) => {
      const since = o.since !== undefined ? parseSince(o.since) : undefined;
      const { entries, skipped } = readAudit(o.file ?? defaultAuditPath(), {
        ...(since !== undefined ? { since } : {}),
        ...(o.run !== undefined ? { runId: o.run } : {}),
      });
      if (o.json) process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
      else for (const e of entries) process.stdout.write(`${formatAuditEntry(e)}\n`);
      if (skipped > 0) process.stderr.write(`luminaguard: skipped ${skipped} unreadable audit line(s)\n`);
    });
}
