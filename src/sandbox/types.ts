// The contract between the runtime and a sandbox backend; backends know nothing of MCP, HTTP or the CLI.
import type { GuestChannel } from "../protocol/channel.js";
import type { WorkspaceCheck } from "./workspace.js";

export type BackendName = "microvm" | "namespace";
/** A backend, or "auto": the strongest isolation that works here. */
export type BackendChoice = BackendName | "auto";
export const BACKEND_CHOICES = ["auto", "microvm", "namespace"] as const satisfies readonly BackendChoice[];

/** The disk limit's default and bounds in MiB (src/runtime/disk.ts), here so that a command line can be checked without the filesystem machinery. */
export const DEFAULT_DISK_MIB = 1024;
export const MIN_DISK_MIB = 8;
export const MAX_DISK_MIB = 1024 * 1024;

export interface SandboxSpec {
  /** Unique id; also the guest's hostname. */
  id: string;
  /** Absolute host directory, seen inside the sandbox as /workspace; the only writable bridge. */
  workspace: string;
  memoryMiB: number;
  /** Process limit inside the sandbox (fork bombs stop here). */
  pidsMax: number;
  vcpus: number;
  /**
   * The sandbox's disk limit in MiB, passed to the guest agent's `init` (no single file may grow past
   * it). The workspace's total is bounded by the runtime (src/runtime/disk.ts), not by the backend.
   */
  diskMiB?: number;
  /**
   * microvm only: where read_file, write_file, list_directory and search run. "host" (default): an
   * lg-agent beside the VM in a namespace jail on the same workspace; "guest": inside the VM, through
   * 9p. execute_command always runs in the VM. See docs/security.md, "File tools beside the VM".
   */
  fileTools?: FileToolsMode;
  /** namespace only: the agent serves the four file tools and refuses commands (a VM's file jail). */
  filesOnly?: boolean;
  /**
   * In-process only: proof that `workspace` passed the workspace check a moment ago (see
   * checkWorkspaceOnce), so the next part of the same spawn need not read the same paths again.
   * Anything else in this field counts for nothing.
   */
  checked?: WorkspaceCheck;
}

export const FILE_TOOLS_MODES = ["host", "guest"] as const;
export type FileToolsMode = (typeof FILE_TOOLS_MODES)[number];

/** Where one call ran: in a VM's guest, or in a namespace jail on the host kernel. Every result says which. */
export const SERVED_BY = ["vm", "jail"] as const;
export type ServedBy = (typeof SERVED_BY)[number];

export interface SandboxHandle {
  readonly id: string;
  readonly backend: BackendName;
  /** Connected and past the hello/init handshake. */
  readonly channel: GuestChannel;
  /** When set, the channel read_file, write_file, list_directory and search go to instead (file tools beside the VM). */
  readonly fileChannel?: GuestChannel;
  /** What this sandbox runs on, recorded in every result: accelerator, kernel sharing, versions. */
  readonly info: Record<string, string | number | boolean>;
  /** Host pids owned by this sandbox (for PSS accounting); its main host process (QEMU, or bwrap) first while it runs. */
  pids(): number[];
  /** Of those, the file jail's beside a VM (for its own PSS figure); absent without a file jail. */
  fileJailPids?(): number[];
  /**
   * How many processes the sandbox's memory limit has killed so far (namespace: its cgroup's oom_kill;
   * microvm: the guest kernel's), or undefined where the backend cannot tell.
   */
  oomKills?(): Promise<number | undefined>;
  /** Resolves when the sandbox's host process has exited, for whatever reason. */
  readonly exited: Promise<void>;
  /** Kills every process and removes every mount, cgroup, socket and temp file. Idempotent. */
  destroy(): Promise<void>;
}

export interface BackendProbe {
  backend: BackendName;
  available: boolean;
  /** Why not, in words a user can act on. */
  reason?: string;
  details: Record<string, string | number | boolean>;
}

export interface SandboxBackend {
  readonly name: BackendName;
  probe(): Promise<BackendProbe>;
  spawn(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle>;
  /** A files-only sandbox started before its workspace is known (the namespace backend, as root). */
  spawnAwaiting?(spec: SandboxSpec, signal?: AbortSignal): Promise<AwaitingSandbox>;
}

/** A sandbox started ahead of its workspace: running, and given its workspace (and id) by receive(). */
export interface AwaitingSandbox {
  /** The running sandbox, not to be used before receive() has resolved. */
  readonly handle: SandboxHandle;
  /** Mounts `spec.workspace` into it and initialises it; once only. The spec's limits must be those it was started with. */
  receive(spec: SandboxSpec): Promise<SandboxHandle>;
  destroy(): Promise<void>;
}
