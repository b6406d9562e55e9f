// The run's transcript: $LUMINAGUARD_HOME/runs/<run-id>/transcript.jsonl, one line per event as it happens, then summary.json.
import { randomBytes } from "node:crypto";
import { closeSync, constants, fsyncSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LuminaGuardError } from "../errors.js";
import { homeDir } from "../paths.js";

export function newRunId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${randomBytes(4).toString("hex")}`;
}

function runsDir(): string {
  return join(homeDir(), "runs");
}

export class Transcript {
  readonly dir: string;
  readonly file: string;
  private fd: number | undefined;

  constructor(readonly runId: string, root: string = runsDir()) {
    this.dir = join(root, runId);
    this.file = join(this.dir, "transcript.jsonl");
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.fd = openSync(this.file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    } catch (err) {
      throw new LuminaGuardError("IO_ERROR", `cannot create the transcript ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Written at once (no buffering), so a crash leaves everything up to the crash. */
  write(event: Record<string, unknown>): void {
    if (this.fd === undefined) return;
    const line = Buffer.from(`${JSON.stringify({ t: new Date().toISOString(), ...event })}\n`, "utf8");
    let off = 0;
    while (off < line.length) off += writeSync(this.fd, line, off, line.length - off);
  }

  writeSummary(summary: Record<string, unknown>): void {
    const tmp = join(this.dir, `.summary.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(summary, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, join(this.dir, "summary.json"));
  }

  close(): void {
    if (this.fd === undefined) return;
    try {
      fsyncSync(this.fd);
    } catch {
      /* best effort */
    }
    closeSync(this.fd);
    this.fd = undefined;
  }
}
