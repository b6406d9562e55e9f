// The SDK's Sandbox: one single-use isolated sandbox bound to one workspace, with files, search and commands.
import { randomBytes } from "node:crypto";
import { GuestChannelLostError, LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { disarmSandboxFaults, fault, faultsOn, injectedErrno } from "../faults/index.js";
import { log } from "../log.js";
import type { GuestChannel } from "../protocol/channel.js";
import type { FileToolsMode, SandboxHandle, ServedBy } from "../sandbox/types.js";
import * as tools from "../tools/dispatch.js";
import type { CallOptions, CommandResult, ListDirectoryResult, ReadFileResult, SearchResult, WriteFileResult } from "../tools/dispatch.js";
import { validateCall, type ToolName } from "../tools/registry.js";
import { sandboxFromDaemon } from "../daemon/client.js";
import type { ClusterOption } from "../cluster/client.js";
import { resolveBackendChoice, type BackendChoice } from "./backends.js";
import { DiskGuard, diskLimit, noSpace, type DiskLimit, type DiskLimitMode } from "./disk.js";
import { removeIfOwned, sweepWriteTemps, workspaceFor, type Workspace } from "./workspace.js";

export interface SandboxOptions {
  backend?: BackendChoice;
  /** Host directory seen as /workspace; a fresh temp directory (removed on kill) when omitted. */
  workspace?: string;
  memoryMiB?: number;
  pidsMax?: number;
  vcpus?: number;
  /**
   * What the sandbox may add to its workspace, in MiB (default DEFAULT_DISK_MIB, 1024): past it,
   * writes fail with NO_SPACE. Kernel-enforced on a workspace we create (run as root), watched on
   * any other; `info.diskLimit` says which. See docs/security.md, "Disk".
   */
  diskMiB?: number;
  /** Files and directories it may add (default: 64 per MiB of diskMiB, at least 1024). */
  diskInodes?: number;
  /**
   * microvm only: where read_file, write_file, list_directory and search run. "host" (default where
   * the namespace jail works): beside the VM, on the same workspace; "guest": in the VM through 9p.
   * Commands always run in the VM. `info.fileTools` and each result's `servedBy` say which.
   */
  fileTools?: FileToolsMode;
  /** Lifetime: the sandbox is killed this long after creation. Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Use a running daemon (`luminaguard serve`): by default when one answers on its socket, else in-process;
   * `false` (or LUMINAGUARD_DAEMON=0): always in-process; `true`: the daemon or DAEMON_UNAVAILABLE.
   */
  daemon?: boolean;
  /**
   * A sandbox in a LuminaGuard cluster (`luminaguard serve --cluster`): `nats://host:port[,...]`, or the
   * connection with credentials and placement constraints. The workspace is always fresh on the node
   * (a host `workspace` is WORKSPACE_FORBIDDEN). See docs/cluster.md.
   */
  cluster?: ClusterOption;
}

export const DEFAULT_MEMORY_MIB = 256;
export const DEFAULT_PIDS_MAX = 256;
export { DEFAULT_DISK_MIB } from "./disk.js";

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

/** A tool's result, stamped with where it ran. */
export type Served<T> = T & { servedBy: ServedBy };

/** What a call may do to the workspace's disk use, which decides how the disk limit checks it. */
type DiskUse = { kind: "none" } | { kind: "write"; bytes: number; entries: number } | { kind: "command" };
const NO_DISK_USE: DiskUse = { kind: "none" };

/** What a call's function is given: the signal to obey (the caller's, or the disk watch's) and the output callbacks. */
interface CallContext {
  signal: AbortSignal | undefined;
  onStdout: ((chunk: Buffer) => void) | undefined;
  onStderr: ((chunk: Buffer) => void) | undefined;
}

interface CallHooks {
  signal?: AbortSignal | undefined;
  onStdout?: ((chunk: Buffer) => void) | undefined;
  onStderr?: ((chunk: Buffer) => void) | undefined;
}

/** What a sandbox offers, in-process (Sandbox) or in the daemon (RemoteSandbox, `info.via: "daemon"`). */
export type SandboxApi = { [K in keyof Sandbox]: Sandbox[K] };

export class Sandbox {
  readonly files = {
    read: (path: string, o: { offset?: number; length?: number; signal?: AbortSignal } = {}): Promise<Served<ReadFileResult>> =>
      this.served("read_file", (ch) =>
      this.call(
        (c) => tools.readFile(ch, tools.parseToolArgs("read_file", { path, ...strip(o, ["offset", "length"]) }), sig(c.signal)),
        NO_DISK_USE,
        o,
      )),
    readText: async (path: string): Promise<string> => (await this.files.read(path)).content.toString("utf8"),
    write: (path: string, data: string | Uint8Array, o: { createParents?: boolean; signal?: AbortSignal } = {}): Promise<Served<WriteFileResult>> =>
      this.served("write_file", (ch) =>
      this.call(
        (c) =>
          tools.writeFile(
            ch,
            tools.parseToolArgs(
              "write_file",
              typeof data === "string"
                ? { path, content: data, encoding: "utf8", ...strip(o, ["createParents"]) }
                : { path, content: Buffer.from(data).toString("base64"), encoding: "base64", ...strip(o, ["createParents"]) },
            ),
            sig(c.signal),
          ),
        writeUse(path, typeof data === "string" ? Buffer.byteLength(data, "utf8") : data.byteLength, o.createParents),
        o,
      ), path),
    list: (path = ".", o: { depth?: number; limit?: number; signal?: AbortSignal } = {}): Promise<Served<ListDirectoryResult>> =>
      this.served("list_directory", (ch) =>
        this.call((c) => tools.listDirectory(ch, tools.parseToolArgs("list_directory", { path, ...strip(o, ["depth", "limit"]) }), sig(c.signal)), NO_DISK_USE, o),
      ),
  };

  readonly commands = {
    run: async (command: string | string[], o: RunOptions = {}): Promise<Served<CommandResult>> => {
      const args = tools.parseToolArgs("execute_command", { command, ...strip(o, ["cwd", "env", "stdin", "timeoutMs"]) });
      return await this.served("execute_command", (ch) => this.call((c) => tools.executeCommand(ch, args, callOptions(c)), { kind: "command" }, o));
    },
  };

  private killed: Promise<void> | undefined;
  /** With `--backend auto`: why this is not the strongest backend (set by create). */
  private fallback: string | undefined;
  private lifetime: NodeJS.Timeout | undefined;
  /** The watch on a workspace the kernel does not limit; its baseline is measured while the sandbox starts. */
  private readonly guard: Promise<DiskGuard> | undefined;
  readonly workspace: string;

  private constructor(
    private readonly handle: SandboxHandle,
    private readonly ws: Workspace,
    private readonly disk: DiskLimit,
    timeoutMs: number | undefined,
    guard?: Promise<DiskGuard>,
  ) {
    this.workspace = ws.path;
    this.guard = ws.limited ? undefined : (guard ?? DiskGuard.start(ws.path, disk));
    if (timeoutMs !== undefined) {
      this.lifetime = setTimeout(() => void this.kill(), timeoutMs);
      this.lifetime.unref();
    }
    void handle.exited.then(() => void this.kill());
  }

  static create(options: SandboxOptions & { daemon: false }): Promise<Sandbox>;
  static create(options?: SandboxOptions): Promise<SandboxApi>;
  static async create(options: SandboxOptions = {}): Promise<SandboxApi> {
    if (options.cluster !== undefined) {
      const { sandboxFromCluster } = await import("../cluster/client.js");
      return await sandboxFromCluster(options.cluster, {
        ...(options.backend !== undefined ? { backend: options.backend } : {}),
        ...(options.workspace !== undefined ? { workspace: options.workspace } : {}),
        ...(options.memoryMiB !== undefined ? { memoryMiB: options.memoryMiB } : {}),
        ...(options.diskMiB !== undefined ? { diskMiB: options.diskMiB } : {}),
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        ...(options.fileTools !== undefined ? { fileTools: options.fileTools } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      });
    }
    const remote = await sandboxFromDaemon(options);
    if (remote) return remote;
    const disk = diskLimit(options.diskMiB, options.diskInodes);
    const { backend, fallback } = await resolveBackendChoice(options.backend ?? "auto");
    const ws = await workspaceFor(options.workspace, disk);
    const id = `lg-${randomBytes(6).toString("hex")}`;
    try {
      if (faultsOn && fault("spawn")) throw injectedErrno("EAGAIN", `spawn ${backend.name} sandbox ${id}`);
      // The watched baseline is measured while the sandbox starts: nothing writes to the workspace meanwhile.
      const guard = ws.limited ? undefined : DiskGuard.start(ws.path, disk);
      const handle = await backend.spawn(
        {
          id,
          workspace: ws.path,
          ...(ws.checked !== undefined ? { checked: ws.checked } : {}),
          memoryMiB: options.memoryMiB ?? DEFAULT_MEMORY_MIB,
          pidsMax: options.pidsMax ?? DEFAULT_PIDS_MAX,
          vcpus: options.vcpus ?? 1,
          diskMiB: disk.mib,
          ...(options.fileTools !== undefined ? { fileTools: options.fileTools } : {}),
        },
        options.signal,
      );
      const sandbox = new Sandbox(handle, ws, disk, options.timeoutMs, guard);
      if (fallback !== undefined) sandbox.fallback = fallback;
      return sandbox;
    } catch (err) {
      await removeIfOwned(ws);
      // Whatever a backend let through (a failed fork or exec is a plain Error) leaves here named.
      const e =
        err instanceof LuminaGuardError
          ? err
          : new LuminaGuardError("SANDBOX_SPAWN_FAILED", `cannot start a ${backend.name} sandbox: ${toLuminaGuardError(err).message}; retry, or run \`luminaguard doctor\``, {
              cause: err,
              details: { sandboxId: id, backend: backend.name },
            });
      log[e.code === "CANCELLED" ? "info" : "warn"]({ sandboxId: id, callId: "spawn", backend: backend.name, code: e.code, err: e.message }, "sandbox spawn failed");
      throw e;
    }
  }

  /**
   * Wraps a ready handle (from a pool). An owned workspace is removed (a size-limited one unmounted
   * first) on kill. `disk` is the limit the handle was spawned with (default: the default limit).
   */
  static fromHandle(handle: SandboxHandle, workspace: Workspace, o: { timeoutMs?: number; disk?: DiskLimit } = {}): Sandbox {
    return new Sandbox(handle, workspace, o.disk ?? diskLimit(), o.timeoutMs);
  }

  get id(): string {
    return this.handle.id;
  }

  get backend(): SandboxHandle["backend"] {
    return this.handle.backend;
  }

  /** How its disk limit is enforced: "kernel" (a filesystem of that size) or "watched" (DiskGuard). */
  get diskLimit(): DiskLimitMode {
    return this.ws.limited ? "kernel" : "watched";
  }

  /** What this sandbox runs on: accelerator, whether it shares the host kernel, image, disk limit. */
  get info(): Readonly<Record<string, string | number | boolean>> {
    return {
      ...this.handle.info,
      diskLimit: this.diskLimit,
      diskMiB: this.disk.mib,
      diskInodes: this.disk.inodes,
      ...(this.fallback !== undefined ? { backendFallback: this.fallback } : {}),
    };
  }

  /** False once killed, and as soon as a channel to it has failed (before the kill that follows). */
  get alive(): boolean {
    return this.killed === undefined && !this.handle.channel.closed && this.handle.fileChannel?.closed !== true;
  }

  /** Resolves when a sandbox's host process has exited: killed, or died on its own (static: not part of SandboxApi). */
  static exited(s: Sandbox): Promise<void> {
    return s.handle.exited;
  }

  /** Host pids that belong to this sandbox. */
  pids(): number[] {
    return this.handle.pids();
  }

  search(args: { path?: string; pattern?: string; glob?: string; maxResults?: number }, o: { signal?: AbortSignal } = {}): Promise<Served<SearchResult>> {
    return this.served("search", (ch) => this.call((c) => tools.search(ch, tools.parseToolArgs("search", args), sig(c.signal)), NO_DISK_USE, o));
  }

  /**
   * Where a tool runs in this sandbox: "jail" (the namespace sandbox, or the file jail beside a VM)
   * or "vm" (inside the micro-VM).
   */
  servedBy(tool: ToolName): ServedBy {
    if (this.handle.backend === "namespace") return "jail";
    return tool !== "execute_command" && this.handle.fileChannel ? "jail" : "vm";
  }

  /** The channel a tool's call goes to: a VM's file jail for the four file tools, when it has one. */
  private channelFor(tool: ToolName): GuestChannel {
    return tool !== "execute_command" && this.handle.fileChannel ? this.handle.fileChannel : this.handle.channel;
  }

  private calls = 0;

  /**
   * Runs a call on the tool's channel and stamps the result with where it ran. A failed call is
   * logged with the sandbox's id and the call's (`<sandbox>#<n>`), which its error carries too.
   */
  private async served<T extends object>(tool: ToolName, fn: (channel: GuestChannel) => Promise<T>, writePath?: string): Promise<Served<T>> {
    const callId = `${this.id}#${++this.calls}`;
    const channel = this.channelFor(tool);
    try {
      // One fault, one answer: every call after the sandbox is gone (killed, VM or agent dead, channel
      // cut) is SANDBOX_CLOSED with the same words, whichever part noticed first.
      if (!this.alive) throw this.closedError();
      if (faultsOn) this.injectCallFault(tool, callId, channel);
      const result = await fn(channel);
      return { ...result, servedBy: this.servedBy(tool) };
    } catch (err) {
      let e = toLuminaGuardError(err);
      if (e.code === "GUEST_CHANNEL_LOST") {
        e = new GuestChannelLostError(`sandbox ${this.id} was lost during ${tool} (${e.message}); create a new sandbox`, { cause: e, details: e.details });
      }
      e = withCallIds(e, this.id, callId);
      const fatal = SANDBOX_FAULTS.has(e.code);
      log[fatal ? "warn" : "info"]({ sandboxId: this.id, callId, tool, code: e.code, err: e.message }, fatal ? "sandbox call failed" : "tool call failed");
      // A write the sandbox died during (lost, or killed under it) may have left its named temp file.
      if (writePath !== undefined && !this.alive) await this.afterLostWrite(writePath);
      throw e;
    }
  }

  /**
   * Once the sandbox's processes are gone (the agent cannot still rename its temp file), removes the
   * temp file of a write it died during. The sandbox is lost anyway, so this destroys it (idempotent)
   * and waits at most WRITE_SWEEP_WAIT_MS: a teardown slower than that leaves the temp file, if any.
   */
  private async afterLostWrite(path: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([
      // destroy(), not exited: beside a VM, `exited` is the first part's; the other may still be renaming.
      this.handle.destroy().then(
        () => true,
        () => false,
      ),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), WRITE_SWEEP_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (gone) await sweepWriteTemps(this.workspace, path);
  }

  /** What a call on a sandbox that is gone fails with: one code, one message, the cause in details. */
  private closedError(): LuminaGuardError {
    // The first channel to fail names the cause (with a file jail beside a VM, the other fails after it).
    const failed = [this.handle.channel, this.handle.fileChannel].filter((c): c is GuestChannel => c?.failedAt !== undefined);
    failed.sort((a, b) => (a.failedAt ?? 0) - (b.failedAt ?? 0));
    const cause = failed[0]?.failureReason;
    const lost = cause !== undefined && cause.code !== "SANDBOX_CLOSED";
    const why = lost ? `it was lost: ${cause.message}` : this.killed ? "it was killed" : "its channel closed";
    return new LuminaGuardError("SANDBOX_CLOSED", `sandbox ${this.id} is gone (${why}); create a new sandbox`, {
      details: { sandboxId: this.id, ...(cause ? { cause: cause.code } : {}) },
    });
  }

  /**
   * The call faults (src/faults), armed for every sandbox or for this one (armSandboxFault): the
   * sandbox's host processes are SIGKILLed (guest-crash), or the host end of this call's channel is
   * destroyed (channel-cut: once the call's request is written, or `ms` after the call starts).
   * Reached only when a fault is armed.
   */
  private injectCallFault(tool: ToolName, callId: string, channel: GuestChannel): void {
    const cut = fault("channel-cut", tool, this.id);
    if (cut) {
      // The call's channel, or the one named (a sandbox with one channel has only that one).
      const target = cut.channel === "jail" ? (this.handle.fileChannel ?? this.handle.channel) : cut.channel === "vm" ? this.handle.channel : channel;
      // Its name: the jail's (a namespace sandbox, or the file jail beside a VM) or the VM's.
      const name = this.handle.backend === "namespace" || target === this.handle.fileChannel ? "jail" : "vm";
      log.warn({ sandboxId: this.id, callId, tool, channel: name, ms: cut.ms ?? 0 }, "fault injected: channel cut");
      // The call's own channel once its request is written; another one (nothing of this call on it) now.
      target.cutForFault(cut.ms !== undefined && cut.ms > 0 ? cut.ms : target === channel ? "after-request" : 0);
    }
    const f = fault("guest-crash", tool, this.id);
    if (!f) return;
    setTimeout(() => {
      for (const pid of this.handle.pids()) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone with another part of the sandbox.
        }
      }
    }, f.ms ?? 100);
  }

  /**
   * Any of the five tools by name; the result is JSON-safe. Raw arguments are validated here; arguments an
   * edge already validated (parseToolArgs) are not parsed again.
   */
  async callTool(name: ToolName, args: unknown, o: CallOptions = {}): Promise<Record<string, unknown>> {
    const call = validateCall(name, args);
    let use: DiskUse = call.tool === "execute_command" ? { kind: "command" } : NO_DISK_USE;
    if (call.tool === "write_file") {
      // The content's size, which the disk limit must admit before anything is sent.
      const a = call.args;
      use = writeUse(a.path, Buffer.byteLength(a.content, a.encoding === "base64" ? "base64" : "utf8"), a.createParents);
    }
    return await this.served(call.tool, (ch) => this.call((c) => tools.callTool(ch, call, { ...o, ...callOptions(c) }), use, o), call.tool === "write_file" ? call.args.path : undefined);
  }

  /** Destroys the sandbox and everything it created. Idempotent. */
  kill(): Promise<void> {
    this.killed ??= (async () => {
      if (this.lifetime) clearTimeout(this.lifetime);
      if (faultsOn) disarmSandboxFaults(this.id);
      try {
        await this.handle.destroy();
      } finally {
        // After the sandbox's processes are gone: they hold the size-limited filesystem while alive.
        await removeIfOwned(this.ws);
      }
    })();
    return this.killed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  /**
   * Every call goes through here. Read-only tools go straight to the guest. A write is admitted by
   * the disk watch first (a kernel-limited workspace refuses it itself, and the agent removes its
   * temp file). A command runs under the watch, which aborts it when the limit is crossed; see
   * checkCommand for what its result becomes.
   */
  private async call<T>(fn: (c: CallContext) => Promise<T>, use: DiskUse, hooks: CallHooks): Promise<T> {
    if (this.killed) throw this.closedError();
    const plain: CallContext = { signal: hooks.signal, onStdout: hooks.onStdout, onStderr: hooks.onStderr };
    if (use.kind === "none") return await fn(plain);
    const guard = this.guard ? await this.guard : undefined;
    if (use.kind === "write") {
      if (!guard) return await fn(plain);
      const release = await guard.admitWrite(use.bytes, use.entries);
      try {
        return await fn(plain);
      } finally {
        release();
      }
    }
    const tail = { stdout: new Tail(), stderr: new Tail() };
    const watch = new AbortController();
    let exceeded: LuminaGuardError | undefined;
    const stop = guard?.watch((err) => {
      exceeded = err;
      watch.abort(err);
    });
    let result: T;
    try {
      result = await fn({
        signal: hooks.signal ? AbortSignal.any([hooks.signal, watch.signal]) : watch.signal,
        onStdout: (chunk) => {
          tail.stdout.push(chunk);
          hooks.onStdout?.(chunk);
        },
        onStderr: (chunk) => {
          tail.stderr.push(chunk);
          hooks.onStderr?.(chunk);
        },
      });
    } catch (err) {
      // Aborted by the watch (the guest kills the command's tree): NO_SPACE, with what it printed.
      if (exceeded) throw withDetails(exceeded, { stdout: tail.stdout.text(), stderr: tail.stderr.text() });
      throw err;
    } finally {
      stop?.();
    }
    await this.checkCommand(result, guard, exceeded);
    return result;
  }

  /** OOM kills already reported: a new one since is this command's. */
  private oomSeen = 0;

  /**
   * A command killed by SIGKILL: SANDBOX_OOM when the sandbox's memory limit did it (its OOM count
   * grew), with the exit status and output in `details`. The sandbox itself keeps working.
   */
  private async checkOom(details: Record<string, unknown>): Promise<void> {
    let n: number | undefined;
    try {
      n = await this.handle.oomKills?.();
    } catch {
      return;
    }
    if (n === undefined || n <= this.oomSeen) return;
    this.oomSeen = n;
    const mib = this.handle.info["memoryMiB"];
    throw new LuminaGuardError(
      "SANDBOX_OOM",
      `the command ran out of the sandbox's memory${typeof mib === "number" ? ` (${mib} MiB)` : ""} and was killed; give the sandbox more memory (memoryMiB) or make the command use less`,
      { details: { ...details, ...(typeof mib === "number" ? { memoryMiB: mib } : {}) } },
    );
  }

  /**
   * What a finished command's result becomes (the same rule on both kinds of limit): NO_SPACE, with
   * the exit code and output in `details`, when the watch saw the limit crossed, when the workspace
   * is over its limit now, when the command was killed for a file past the size cap (SIGXFSZ), or
   * when it failed with the workspace within fullSlackBytes of full or out of inodes (it most likely
   * failed for that: ENOSPC, EFBIG). A command that succeeded on a full workspace keeps its result.
   */
  private async checkCommand(result: unknown, guard: DiskGuard | undefined, exceeded: LuminaGuardError | undefined): Promise<void> {
    const r = (result ?? {}) as Partial<Record<"exitCode" | "signal" | "stdout" | "stderr", unknown>>;
    const details = { exitCode: r.exitCode ?? null, signal: r.signal ?? null, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    if (exceeded) throw withDetails(exceeded, details);
    if (r.signal === "SIGKILL") await this.checkOom(details);
    if (r.signal === "SIGXFSZ") throw noSpace(this.disk, "a file the command wrote reached the size limit", details);
    const failed = r.exitCode !== 0 || (r.signal !== null && r.signal !== undefined);
    try {
      if (guard) {
        await guard.check();
        if (failed && (await guard.nearlyFull())) throw noSpace(this.disk, "the command failed with the workspace full");
      } else if (failed && (await this.ws.limited?.nearlyFull())) {
        throw noSpace(this.disk, "the command failed with the workspace full");
      }
    } catch (err) {
      if (err instanceof LuminaGuardError && err.code === "NO_SPACE") throw withDetails(err, details);
      throw err;
    }
  }
}

/** Codes that mean the sandbox itself failed (logged as warnings); the rest (logged at info) are the call's own outcome or follow from an earlier one. */
/** How long a failed write waits for its dead sandbox's processes before sweeping its temp file. */
const WRITE_SWEEP_WAIT_MS = 2000;

const SANDBOX_FAULTS: ReadonlySet<string> = new Set(["GUEST_CHANNEL_LOST", "GUEST_PROTOCOL_VIOLATION", "INTERNAL"]);

/**
 * The error of one call, with the sandbox's and the call's ids in its details: a copy of the same
 * class, since one channel failure is the error of every call in flight on it.
 */
function withCallIds(err: LuminaGuardError, sandboxId: string, callId: string): LuminaGuardError {
  const copy = Object.create(Object.getPrototypeOf(err) as object) as LuminaGuardError;
  Object.defineProperties(copy, Object.getOwnPropertyDescriptors(err));
  Object.defineProperty(copy, "details", { value: { ...err.details, sandboxId, callId }, enumerable: true });
  return copy;
}

/** A write of `bytes` at `path`; with createParents each missing parent is a new directory too. */
function writeUse(path: string, bytes: number, createParents: boolean | undefined): DiskUse {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".").length;
  return { kind: "write", bytes, entries: createParents ? Math.max(1, parts) : 1 };
}

function callOptions(c: CallContext): CallOptions {
  return { ...sig(c.signal), ...(c.onStdout ? { onStdout: c.onStdout } : {}), ...(c.onStderr ? { onStderr: c.onStderr } : {}) };
}

function withDetails(err: LuminaGuardError, details: Record<string, unknown>): LuminaGuardError {
  return new LuminaGuardError(err.code, err.message, { cause: err, details: { ...err.details, ...details } });
}

/** The last 64 KiB of a stream, for the error of a command stopped by the disk limit. */
class Tail {
  private chunks: Buffer[] = [];
  private bytes = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    while (this.bytes > 64 * 1024 && this.chunks.length > 1) this.bytes -= (this.chunks.shift() as Buffer).length;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

function sig(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/** Copies the named keys that are defined, so undefined never reaches an exactOptionalPropertyTypes schema. */
function strip<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
