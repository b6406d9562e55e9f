// The audit log: one JSON line per approval decision, appended with O_APPEND before the action proceeds (and fsynced, but for Green reads: group commit).
import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, fstatSync, fsync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, writeSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { fault, faultsOn, injectedErrno } from "../faults/index.js";
import { homeDir } from "../paths.js";
import { ACTIONS, RISKS } from "./policy.js";

const auditEntrySchema = z.object({
  v: z.literal(1),
  id: z.string(),
  time: z.string(),
  runId: z.string().optional(),
  tool: z.string(),
  server: z.string().optional(),
  /** sha256 of the canonical JSON of the arguments (keys sorted, no whitespace). */
  argsHash: z.string(),
  class: z.enum(["green", "red"]),
  risk: z.enum(RISKS),
  rule: z.string(),
  /** What the policy said: allow and deny decide alone, ask goes to the approver. */
  policyAction: z.enum(ACTIONS),
  decision: z.enum(["allow", "deny"]),
  /** policy | terminal | callback | elicitation | non-interactive | timeout */
  channel: z.string(),
  /** Who decided: the policy, or the person (user@terminal), or the SDK callback's name. */
  actor: z.string(),
  reason: z.string(),
  waitedMs: z.number(),
  card: z.record(z.string(), z.unknown()),
});

export type AuditEntry = z.infer<typeof auditEntrySchema>;

export function defaultAuditPath(): string {
  return join(homeDir(), "audit.jsonl");
}

/** Canonical JSON: object keys sorted at every level, no whitespace; undefined members dropped as JSON does. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined && typeof v !== "function")
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

export function argsHash(args: unknown): string {
  return `sha256:${createHash("sha256").update(canonicalJson(args ?? null)).digest("hex")}`;
}

const ID_RANDOM_BYTES = 5;
/** Random bytes for ids, drawn from the CSPRNG 256 ids at a time (one getrandom per 256 decisions, not per decision). */
let idPool = Buffer.alloc(0);
let idPoolAt = 0;

export function newAuditId(): string {
  if (idPoolAt + ID_RANDOM_BYTES > idPool.length) {
    idPool = randomBytes(ID_RANDOM_BYTES * 256);
    idPoolAt = 0;
  }
  const hex = idPool.toString("hex", idPoolAt, idPoolAt + ID_RANDOM_BYTES);
  // Each byte serves one id only.
  idPool.fill(0, idPoolAt, idPoolAt + ID_RANDOM_BYTES);
  idPoolAt += ID_RANDOM_BYTES;
  return `${Date.now().toString(36)}-${hex}`;
}

/** How long a read-only decision's line may wait for the group fsync. */
const GROUP_COMMIT_MS = 100;

export class AuditLog {
  readonly file: string;

  constructor(file: string = defaultAuditPath()) {
    this.file = resolve(file);
  }

  /** Workspaces already found not to contain this log (a gate per MCP call must not resolve both paths each time). */
  private readonly outside = new Set<string>();

  /** Refuses a log that a sandbox could reach: the audit file must not live inside the workspace. */
  assertOutside(workspace: string): void {
    if (this.outside.has(workspace)) return;
    const ws = safeRealpath(workspace);
    const dir = safeRealpath(dirname(this.file));
    const rel = relative(ws, dir);
    if (rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep))) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `the audit log ${this.file} is inside the workspace ${workspace}; set LUMINAGUARD_HOME outside it`);
    }
    this.outside.add(workspace);
  }

  private pendingSync: NodeJS.Timeout | undefined;

  /**
   * Appends one line and fsyncs it; throws (and the action must not proceed) when that fails.
   * `sync: false` (read-only calls, which change nothing) leaves the fsync to a group commit about
   * 100 ms later, off the event loop: the line is written (write(2)) at once and in order, before the
   * call runs, so a crash of this process never loses it; only a kernel crash or power loss within that
   * window can, and only lines of calls that changed nothing. The next `sync` append covers them too.
   */
  append(entry: AuditEntry, options: { sync?: boolean } = {}): void {
    const sync = options.sync ?? true;
    const line = Buffer.from(`${JSON.stringify(entry)}\n`, "utf8");
    // Lines queued by appendSoon go first: the log keeps the order decisions were made in.
    const batch = this.queued;
    this.queued = [];
    try {
      const fd = this.writeLines(batch.length > 0 ? Buffer.concat([...batch.map((b) => b.line), line]) : line);
      if (sync) fsyncSync(fd);
      else this.scheduleSync();
    } catch (err) {
      const e = this.failed(err);
      for (const b of batch) b.reject(e);
      throw e;
    }
    for (const b of batch) b.resolve();
  }

  /** Lines waiting for the write at the end of this tick, with the decisions waiting on them. */
  private queued: Array<{ line: Buffer; resolve: () => void; reject: (err: LuminaGuardError) => void }> = [];

  /**
   * A read-only decision's line, written with every other line queued in the same tick in one write(2)
   * (pipelined calls: one write for the lot, not one each), fsynced by the group commit like `sync: false`.
   * Resolves once the line is in the file, rejects (IO_ERROR) when it cannot be written: the caller runs
   * the call only after this resolves, so nothing runs unaudited.
   */
  appendSoon(entry: AuditEntry): Promise<void> {
    const line = Buffer.from(`${JSON.stringify(entry)}\n`, "utf8");
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ line, resolve, reject });
      if (this.queued.length === 1) process.nextTick(() => this.flushQueued());
    });
  }

  private flushQueued(): void {
    const batch = this.queued;
    if (batch.length === 0) return;
    this.queued = [];
    try {
      this.writeLines(batch.length === 1 && batch[0] ? batch[0].line : Buffer.concat(batch.map((b) => b.line)));
      this.scheduleSync();
    } catch (err) {
      const e = this.failed(err);
      for (const b of batch) b.reject(e);
      return;
    }
    for (const b of batch) b.resolve();
  }

  /** Appends whole lines in one write(2) (O_APPEND keeps concurrent writers' lines whole); returns the descriptor. */
  private writeLines(lines: Buffer): number {
    if (faultsOn && fault("audit-write")) throw injectedErrno("EIO", "write");
    const fd = this.open();
    // A line torn by another writer's crash must not swallow ours: start on a fresh line.
    // When the file ends where our own last line did, its last byte is that line's newline: no need to read it.
    const size = fstatSync(fd).size;
    const last = Buffer.alloc(1);
    const torn = size > 0 && size !== this.endedAt && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
    const data = torn ? Buffer.concat([Buffer.from("\n"), lines]) : lines;
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    // If another writer appended meanwhile, the file is already longer than this (an append-only file only
    // grows), so the next append sees a different size and reads the last byte: never a false "ours".
    this.endedAt = size + data.length;
    return fd;
  }

  private failed(err: unknown): LuminaGuardError {
    this.closeFd();
    return new LuminaGuardError("IO_ERROR", `cannot write the audit log ${this.file}: ${(err as Error).message}`, { cause: err });
  }

  private fd: number | undefined;
  /** The file's size right after our last line, whose newline is then its last byte. */
  private endedAt: number | undefined;

  /** Opens once and keeps the descriptor for the life of the log. */
  private open(): number {
    if (this.fd !== undefined) return this.fd;
    const dir = dirname(this.file);
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const created = !existsSync(this.file);
    const fd = openSync(this.file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o600);
    if (created) fsyncDir(dir);
    this.fd = fd;
    return fd;
  }

  private closeFd(): void {
    this.endedAt = undefined;
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.fd = undefined;
  }

  /** An fsync of the group commit is running in the thread pool. */
  private syncing = false;
  /** Lines were written after the running group fsync began: another one must follow it. */
  private dirty = false;

  private scheduleSync(): void {
    if (this.syncing) {
      this.dirty = true;
      return;
    }
    if (this.pendingSync) return;
    this.pendingSync = setTimeout(() => {
      this.pendingSync = undefined;
      this.groupSync();
    }, GROUP_COMMIT_MS);
    this.pendingSync.unref();
  }

  /** One fsync for every line written so far, in the thread pool: the loop keeps serving calls meanwhile. */
  private groupSync(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.syncing = true;
    this.dirty = false;
    fsync(fd, () => {
      // An error here is not fatal: the next durable append fsyncs (and throws on failure) anyway.
      this.syncing = false;
      if (this.dirty) this.groupSync();
    });
  }
}

interface ReadAuditOptions {
  since?: Date;
  runId?: string;
}

/** Every valid entry in order; a torn or foreign line (a crash mid-write) is counted and skipped, never fatal. */
export function readAudit(file: string = defaultAuditPath(), options: ReadAuditOptions = {}): { entries: AuditEntry[]; skipped: number } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { entries: [], skipped: 0 };
    throw new LuminaGuardError("IO_ERROR", `cannot read the audit log ${file}: ${(err as Error).message}`, { cause: err });
  }
  const entries: AuditEntry[] = [];
  let skipped = 0;
  const sinceMs = options.since?.getTime();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    const parsed = auditEntrySchema.safeParse(raw);
    if (!parsed.success) {
      skipped++;
      continue;
    }
    const e = parsed.data;
    if (sinceMs !== undefined && !(Date.parse(e.time) >= sinceMs)) continue;
    if (options.runId !== undefined && e.runId !== options.runId) continue;
    entries.push(e);
  }
  return { entries, skipped };
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some filesystems refuse fsync on a directory; the file itself is synced */
  }
}

function safeRealpath(p: string): string {
  let cur = resolve(p);
  const tail: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(cur), ...tail);
    } catch {
      const up = dirname(cur);
      if (up === cur) return resolve(p);
      tail.unshift(cur.slice(up.length + (up.endsWith(sep) ? 0 : 1)));
      cur = up;
    }
  }
}
