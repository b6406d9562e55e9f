// The SDK's Sandbox: one single-use isolated sandbox bound to one workspace, with files, search and commands.
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { LuminaGuardError } from "../errors.js";
import type { SandboxHandle } from "../sandbox/types.js";
import * as tools from "../tools/dispatch.js";
import type { CallOptions, CommandResult, ListDirectoryResult, ReadFileResult, SearchResult, WriteFileResult } from "../tools/dispatch.js";
import type { ToolName } from "../tools/schemas.js";
import { resolveBackend, type BackendChoice } from "./backends.js";
import { createOwnedWorkspace, removeIfOwned, userWorkspace } from "./workspace.js";

export interface SandboxOptions {
  backend?: BackendChoice;
  /** Host directory seen as /workspace; a fresh temp directory (removed on kill) when omitted. */
  workspace?: string;
  memoryMiB?: number;
  pidsMax?: number;
  vcpus?: number;
  /** Lifetime: the sandbox is killed this long after creation. Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export const DEFAULT_MEMORY_MIB = 256;
export const DEFAULT_PIDS_MAX = 256;

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  timeoutMs?: number;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

export class Sandbox {
  readonly files = {
    read: (path: string, o: { offset?: number; length?: number; signal?: AbortSignal } = {}): Promise<ReadFileResult> =>
      this.call(() =>
        tools.readFile(this.handle.channel, tools.parseToolArgs("read_file", { path, ...strip(o, ["offset", "length"]) }), sig(o.signal)),
      ),
    readText: async (path: string): Promise<string> => (await this.files.read(path)).content.toString("utf8"),
    write: (path: string, data: string | Uint8Array, o: { createParents?: boolean; signal?: AbortSignal } = {}): Promise<WriteFileResult> =>
      this.call(() =>
        tools.writeFile(
          this.handle.channel,
          typeof data === "string"
            ? { path, content: data, encoding: "utf8", ...strip(o, ["createParents"]) }
            : { path, content: Buffer.from(data).toString("base64"), encoding: "base64", ...strip(o, ["createParents"]) },
          sig(o.signal),
        ),
      ),
    list: (path = ".", o: { depth?: number; limit?: number; signal?: AbortSignal } = {}): Promise<ListDirectoryResult> =>
      this.call(() =>
        tools.listDirectory(this.handle.channel, tools.parseToolArgs("list_directory", { path, ...strip(o, ["depth", "limit"]) }), sig(o.signal)),
      ),
  };

  readonly commands = {
    run: (command: string | string[], o: RunOptions = {}): Promise<CommandResult> =>
      this.call(() =>
        tools.executeCommand(
          this.handle.channel,
          tools.parseToolArgs("execute_command", { command, ...strip(o, ["cwd", "env", "stdin", "timeoutMs"]) }),
          { ...sig(o.signal), ...(o.onStdout ? { onStdout: o.onStdout } : {}), ...(o.onStderr ? { onStderr: o.onStderr } : {}) },
        ),
      ),
  };

  private killed: Promise<void> | undefined;
  private lifetime: NodeJS.Timeout | undefined;

  private constructor(
    private readonly handle: SandboxHandle,
    readonly workspace: string,
    private readonly ownsWorkspace: boolean,
    timeoutMs: number | undefined,
  ) {
    if (timeoutMs !== undefined) {
      this.lifetime = setTimeout(() => void this.kill(), timeoutMs);
      this.lifetime.unref();
    }
    void handle.exited.then(() => void this.kill());
  }

  static async create(options: SandboxOptions = {}): Promise<Sandbox> {
    const backend = await resolveBackend(options.backend ?? "auto");
    const ws = options.workspace === undefined ? createOwnedWorkspace() : userWorkspace(options.workspace);
    try {
      const handle = await backend.spawn(
        {
          id: `lg-${randomBytes(6).toString("hex")}`,
          workspace: ws.path,
          memoryMiB: options.memoryMiB ?? DEFAULT_MEMORY_MIB,
          pidsMax: options.pidsMax ?? DEFAULT_PIDS_MAX,
          vcpus: options.vcpus ?? 1,
        },
        options.signal,
      );
      return new Sandbox(handle, ws.path, ws.owned, options.timeoutMs);
    } catch (err) {
      removeIfOwned(ws);
      throw err;
    }
  }

  /** Wraps a ready handle (from a pool); `ownsWorkspace` removes the workspace on kill. */
  static fromHandle(handle: SandboxHandle, workspace: string, ownsWorkspace: boolean, timeoutMs?: number): Sandbox {
    return new Sandbox(handle, workspace, ownsWorkspace, timeoutMs);
  }

  get id(): string {
    return this.handle.id;
  }

  get backend(): SandboxHandle["backend"] {
    return this.handle.backend;
  }

  /** What this sandbox runs on: accelerator, whether it shares the host kernel, image. */
  get info(): Readonly<Record<string, string | number | boolean>> {
    return this.handle.info;
  }

  get alive(): boolean {
    return this.killed === undefined;
  }

  /** Host pids that belong to this sandbox. */
  pids(): number[] {
    return this.handle.pids();
  }

  search(args: { path?: string; pattern?: string; glob?: string; maxResults?: number }, o: { signal?: AbortSignal } = {}): Promise<SearchResult> {
    return this.call(() => tools.search(this.handle.channel, tools.parseToolArgs("search", args), sig(o.signal)));
  }

  /** Any of the five tools by name with raw (unvalidated) arguments; the result is JSON-safe. */
  callTool(name: ToolName, args: unknown, o: CallOptions = {}): Promise<Record<string, unknown>> {
    return this.call(() => tools.callTool(this.handle.channel, name, args, o));
  }

  /** Destroys the sandbox and everything it created. Idempotent. */
  kill(): Promise<void> {
    this.killed ??= (async () => {
      if (this.lifetime) clearTimeout(this.lifetime);
      await this.handle.destroy();
      if (this.ownsWorkspace) rmSync(this.workspace, { recursive: true, force: true });
    })();
    return this.killed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.killed) throw new LuminaGuardError("SANDBOX_CLOSED", `sandbox ${this.id} has been killed`);
    return await fn();
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
