// One lg-jailer kept running (`--serve`, as root or as an ordinary user) that mounts workspaces into jails started ahead of
// their sandbox: a restore from a spare then forks no process. Node forks a child synchronously, in
// a time that grows with its own size (several ms here, during which nothing else runs); the
// jailer's own fork, per request, costs a fraction of that and blocks nothing of ours.
import type { ChildProcess } from "node:child_process";
import type { Writable } from "node:stream";
import { LuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { killGroup, spawnGroup } from "../../util/proc.js";

/** The jailer reads fields of at most 4095 bytes. */
const MAX_FIELD = 4095;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_REPLY_BYTES = 8 * 1024;

export interface InjectRequest {
  pid: number;
  /** The start time of the process the host started as `pid` (procfs field 22): a reused pid is refused. */
  start: string;
  uid: number;
  gid: number;
  src: string;
  dst: string;
  diskUid: number;
  diskGid: number;
}

interface Pending {
  resolve: () => void;
  reject: (err: LuminaGuardError) => void;
  timer: NodeJS.Timeout;
  request: Buffer;
  /** Whether it was sent again already, after the server it was sent to exited. */
  resent: boolean;
}

/** A client of one `lg-jailer --serve`; started at the first request (or start()), again after it dies. */
export class Injector {
  private child: ChildProcess | undefined;
  private readonly pending: Pending[] = [];
  private buffer = Buffer.alloc(0);

  constructor(private readonly jailerPath: string) {}

  /** Starts the server now (off a restore's path), if it is not running. */
  start(): void {
    if (this.child) return;
    const child = spawnGroup([this.jailerPath, "--serve"], { stdio: ["pipe", "pipe", "pipe"], env: {} });
    this.child = child;
    this.buffer = Buffer.alloc(0);
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => void (stderr = (stderr + chunk.toString("utf8")).slice(-2000)));
    child.stdout?.on("data", (chunk: Buffer) => this.onData(child, chunk));
    (child.stdin as Writable | null)?.on("error", () => undefined);
    const gone = (why: string): void => {
      if (this.child !== child) return;
      this.child = undefined;
      // A request may have been written after the server died and before we heard of it: each is
      // sent once more, to a new server. (One it had carried out is then made again: the same
      // mount on the same target, which changes nothing the jail sees.)
      const again = this.pending.filter((p) => !p.resent);
      const message = `lg-jailer --serve ${why}${stderr.trim() ? `: ${stderr.trim()}` : ""}`;
      this.fail(this.pending.filter((p) => p.resent), message);
      this.pending.length = 0;
      if (again.length === 0) return;
      this.start();
      for (const p of again) {
        p.resent = true;
        this.pending.push(p);
        (this.child as ChildProcess | undefined)?.stdin?.write(p.request);
      }
    };
    child.once("error", (err) => gone(`could not start (${err.message})`));
    child.once("exit", (code, signal) => gone(`exited (${signal ?? `code ${String(code)}`})`));
    // It must not keep the process alive on its own: it ends when our end of its stdin closes.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();
  }

  /** Mounts req.src (idmapped when root) at req.dst in the mount namespace of req.pid; see lg-jailer --inject. */
  inject(req: InjectRequest): Promise<void> {
    const fields = ["inject", String(req.pid), req.start, String(req.uid), String(req.gid), req.src, req.dst, String(req.diskUid), String(req.diskGid)];
    for (const f of fields) {
      if (f.includes("\0") || Buffer.byteLength(f) > MAX_FIELD) {
        return Promise.reject(new LuminaGuardError("INVALID_ARGUMENT", "a path given to the jail is too long or holds a NUL byte"));
      }
    }
    this.start();
    const child = this.child;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Requests are served one after another: the server this one waits on (the one it was
        // sent to, or the one it was sent to again) is stuck, and not trusted with the next either.
        const current = this.child;
        this.child = undefined;
        if (current) killGroup(current);
        this.failAll(`lg-jailer --serve did not answer within ${REQUEST_TIMEOUT_MS} ms`);
      }, REQUEST_TIMEOUT_MS);
      const request = Buffer.from(fields.map((f) => `${f}\0`).join(""));
      this.pending.push({ resolve, reject, timer, request, resent: false });
      (child?.stdin as Writable | null)?.write(request);
    });
  }

  /** Stops the server (the next request starts another). */
  close(): void {
    const child = this.child;
    this.child = undefined;
    if (child) killGroup(child);
    this.failAll("the injector was closed");
  }

  private failAll(message: string): void {
    this.fail(this.pending.splice(0), message);
  }

  private fail(list: readonly Pending[], message: string): void {
    for (const p of list) {
      clearTimeout(p.timer);
      p.reject(new LuminaGuardError("SANDBOX_SPAWN_FAILED", message));
    }
  }

  /** Replies, in request order: "ok" NUL, or "error" NUL MESSAGE NUL. */
  private onData(child: ChildProcess, chunk: Buffer): void {
    if (this.child !== child) return;
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const end = this.buffer.indexOf(0);
      if (end < 0) break;
      const word = this.buffer.subarray(0, end).toString("utf8");
      let message: string | undefined;
      let used = end + 1;
      if (word === "error") {
        const end2 = this.buffer.indexOf(0, used);
        if (end2 < 0) break;
        message = this.buffer.subarray(used, end2).toString("utf8").trim();
        used = end2 + 1;
      } else if (word !== "ok") {
        return this.broken(child, `lg-jailer --serve answered ${JSON.stringify(word.slice(0, 40))}`);
      }
      this.buffer = this.buffer.subarray(used);
      const p = this.pending.shift();
      if (!p) return this.broken(child, "lg-jailer --serve answered a request it was not sent");
      clearTimeout(p.timer);
      if (message === undefined) p.resolve();
      else p.reject(new LuminaGuardError("SANDBOX_SPAWN_FAILED", message || "lg-jailer --inject failed"));
    }
    if (this.buffer.length > MAX_REPLY_BYTES) this.broken(child, "lg-jailer --serve sent an oversized reply");
  }

  private broken(child: ChildProcess, message: string): void {
    log.error({ err: message }, "the workspace injector broke its protocol; restarting it");
    this.child = undefined;
    killGroup(child);
    this.failAll(message);
  }
}
