// Starts one bubblewrap sandbox and places it in its cgroup before any sandboxed code runs.
//
// Why the cgroup placement has no window, without a shell or helper per spawn:
//   1. the sandbox cgroup exists, limits set, empty;
//   2. bwrap is spawned with --info-fd and --block-fd. It clones the sandbox process (new namespaces),
//      which builds its mount tree and then blocks reading --block-fd: it has not forked, loaded the
//      seccomp filter or exec'd anything yet (bubblewrap.c: the block_fd read comes before the
//      seccomp load and before the fork of the pid-1 reaper and the payload);
//   3. the sandbox process's host pid is read from --info-fd; unless it is in the cgroup already, it
//      is written into cgroup.procs;
//   4. a byte on --block-fd releases it. Every process that runs sandboxed code is forked from it
//      afterwards, so it is born inside the cgroup.
// Run as root, bwrap is started by lg-jailer, which joins the cgroup itself first (--cgroup: a
// process moving itself, single-threaded, through v1's `tasks`, skips the global lock whose first
// writer waits for an RCU grace period, 11-16 ms here: the largest and most variable part of a start
// when the host moved the pid). bwrap's monitor and the sandbox process are then born inside, step 3
// only checks, and the cgroup's pids.max is one more than the sandbox's (the backend adds it), for
// the monitor. Its memory, a few hundred KiB, counts against the sandbox's. Otherwise the monitor is
// not moved: it runs no sandboxed code.
import type { ChildProcess } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { statSync } from "node:fs";
import { LuminaGuardError } from "../../errors.js";
import { runDir } from "../../paths.js";
import { STAGE_ROOT, jailerArgs, type JailerBuild } from "../jailer/jailer.js";
import type { VmmIdentity } from "../jailer/identity.js";
import { onAbort } from "../../util/abort.js";
import { sandboxHostEnv } from "../../util/env.js";
import { spawnGroup } from "../../util/proc.js";
import { lowerPriority } from "../priority.js";
import { AGENT_COMMAND, bwrapArgs, groupFile, hostsFile, passwdFile, type BwrapFds } from "./bwrap.js";
import type { SandboxCgroup } from "./cgroup.js";
import { shieldStdio } from "./inherited-fds.js";
import { seccompFilterBytes } from "./seccomp.js";

/** Child descriptor numbers; 0-2 are the agent's channel (stdin/stdout) and its log (stderr). */
const BWRAP_FDS: Required<BwrapFds> = { info: 3, block: 4, seccomp: 5, passwd: 6, group: 7, hosts: 8 };

const INFO_TIMEOUT_MS = 5_000;
/** bwrap's info JSON is a few hundred bytes; anything larger is not bwrap talking. */
const INFO_MAX_BYTES = 64 * 1024;
const STDERR_TAIL_BYTES = 8 * 1024;

interface LaunchOptions {
  id: string;
  /** Real path of the host workspace (validated by the caller). */
  workspace: string;
  agentPath: string;
  memoryMiB: number;
  cgroup: SandboxCgroup | undefined;
  /** What runs in the sandbox: the agent, or a test's command. */
  command?: readonly string[];
  signal?: AbortSignal;
  /** Every chunk bwrap or the sandboxed program writes to stderr (always drained either way). */
  onStderr?: (chunk: Buffer) => void;
  /**
   * Run as root: start bwrap through lg-jailer as this unprivileged identity, the workspace
   * idmapped (its owner's files are the identity's; what the sandbox creates is the owner's on disk).
   */
  jail?: { build: JailerBuild; identity: VmmIdentity };
}

/** Where the jailer stages what bwrap, as its unprivileged identity, could not reach itself. */
const STAGED = { workspace: `${STAGE_ROOT}/lg/workspace`, agent: `${STAGE_ROOT}/lg/lg-agent` } as const;

export interface Launch {
  bwrap: ChildProcess;
  /** Resolves with the host pid of the sandbox process (pid 1 of its pid namespace) once it is in its cgroup and released. */
  ready: Promise<number>;
  stderrTail(): string;
}

/**
 * Spawns bwrap. The caller owns `bwrap` from the moment this returns (and must kill it if `ready`
 * rejects); `ready` settles when the sandbox runs inside its cgroup, or why it does not.
 */
export function launch(options: LaunchOptions): Launch {
  const command = options.command ?? [...AGENT_COMMAND, "--no-init"];
  const jail = options.jail;
  const args = bwrapArgs(
    {
      id: options.id,
      workspace: jail ? STAGED.workspace : options.workspace,
      agentPath: jail ? STAGED.agent : options.agentPath,
      tmpfsBytes: options.memoryMiB * 1024 * 1024,
      fds: BWRAP_FDS,
    },
    command,
  );
  if (options.command === undefined) {
    // The agent is pid 1 of the sandbox's pid namespace, with no bwrap reaper above it: that reaper
    // keeps the agent's stdin and stdout (the channel to the host) open, and runs dumpable under the
    // sandbox uid, so any command could write its memory through /proc/1/mem and talk to the host in
    // the agent's name. The agent makes itself non-dumpable, reaps orphans (as pid 1 it gets them
    // all) and, being pid 1, takes every process of the sandbox with it when it dies. --no-init:
    // pid 1 here is not the VM's init (no mounts, clock or reboot).
    const separator = args.length - command.length - 1;
    if (args[separator] !== "--") throw new Error("bwrapArgs no longer ends in -- COMMAND");
    args.splice(separator, 0, "--as-pid-1");
  }
  // bwrap's own environment is the minimal host one: --clearenv empties the sandbox's, but bwrap itself
  // would keep ours (API keys, tokens) in /proc/PID/environ. The PATH is fixed too, so that a
  // directory early in the caller's PATH cannot put another "bwrap" in its place.
  let prefix: string[] = [];
  if (jail) {
    const st = statSync(options.workspace);
    prefix = jailerArgs(jail.build, {
      identity: jail.identity,
      binds: [{ kind: "ro", src: options.agentPath, dst: STAGED.agent.slice(STAGE_ROOT.length) }],
      workspace: { src: options.workspace, uid: st.uid, gid: st.gid, dst: STAGED.workspace.slice(STAGE_ROOT.length) },
      // Other sandboxes' workspaces (loop mounts under the runtime directory) must not be pinned by
      // this sandbox's mount namespace after their own sandbox is gone.
      stage: { keepFds: Object.keys(BWRAP_FDS).length + 3, detachUnder: [runDir()] },
      // The jailer joins the sandbox cgroup itself before it starts bwrap: the sandbox process is born
      // inside, with no migration of another process, whose first one waits for an RCU grace period.
      ...(options.cgroup ? { cgroups: options.cgroup.dirs } : {}),
    });
  }
  const bwrap = spawnGroup([...prefix, jail ? "/usr/bin/bwrap" : "bwrap", ...args], {
    stdio: shieldStdio(Array<"pipe">(9).fill("pipe")),
    env: sandboxHostEnv(),
  });
  // The host-side bwrap monitor too: every host process of a sandbox runs below the host process.
  if (bwrap.pid !== undefined) lowerPriority(bwrap.pid);
  let tail = "";
  bwrap.stderr?.on("data", (chunk: Buffer) => {
    // Always drained: a full pipe would stall the agent. Only the tail is kept, for error messages.
    tail = (tail + chunk.toString("utf8")).slice(-STDERR_TAIL_BYTES);
    options.onStderr?.(chunk);
  });
  const stderrTail = (): string => tail;
  for (const [fd, data] of [
    [BWRAP_FDS.seccomp, seccompFilterBytes()],
    [BWRAP_FDS.passwd, passwdFile()],
    [BWRAP_FDS.group, groupFile()],
    [BWRAP_FDS.hosts, hostsFile(options.id)],
  ] as const) {
    const sink = bwrap.stdio[fd] as Writable | null;
    sink?.on("error", () => undefined); // EPIPE if bwrap died: reported by the exit path instead
    sink?.end(data);
  }
  const ready = readChildPid(bwrap, bwrap.stdio[BWRAP_FDS.info] as Readable, stderrTail, options.signal).then(async (pid) => {
    try {
      // Born inside when the jailer joined the cgroup (checked, never assumed); moved in otherwise.
      if (options.cgroup && !(jail && options.cgroup.holds(pid))) await options.cgroup.add(pid);
    } catch (err) {
      throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `cannot move sandbox process ${pid} into its cgroup: ${(err as Error).message}`, { cause: err });
    }
    // Still blocked before its first fork: everything the sandbox runs inherits the lower priority.
    lowerPriority(pid);
    const block = bwrap.stdio[BWRAP_FDS.block] as Writable;
    block.on("error", () => undefined);
    block.end("1");
    return pid;
  });
  // The caller may attach its handler late (after other awaits): never an unhandled rejection.
  ready.catch(() => undefined);
  return { bwrap, ready, stderrTail };
}

/** What a spawn throws when its caller cancels it. */
export function spawnCancelled(): LuminaGuardError {
  return new LuminaGuardError("CANCELLED", "sandbox spawn cancelled");
}

/** Reads bwrap's `{"child-pid": N}` from the info fd; rejects if bwrap dies or stalls first. */
function readChildPid(child: ChildProcess, info: Readable, stderrTail: () => string, signal?: AbortSignal): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let text = "";
    let settled = false;
    let unhook = (): void => undefined;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.off("exit", onExit);
      child.off("error", onError);
      unhook();
      fn();
    };
    const fail = (message: string, cause?: unknown): void => {
      const tail = stderrTail().trim();
      finish(() => reject(new LuminaGuardError("SANDBOX_SPAWN_FAILED", `${message}${tail ? `: ${tail.slice(-2000)}` : ""}`, cause === undefined ? {} : { cause })));
    };
    // stderr may still be draining when 'exit' fires: wait a moment so the error says why.
    const onExit = (code: number | null, sig: string | null): void => {
      setTimeout(() => fail(`bwrap exited (${sig ?? `code ${code}`}) before the sandbox started`), 20);
    };
    const onError = (err: Error): void => {
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      fail(missing ? "bubblewrap not installed: apt-get install bubblewrap" : `cannot start bwrap: ${err.message}`, err);
    };
    // After an event-loop stall (many spawns at once) timers run before the I/O that arrived meanwhile:
    // fail only in the check phase, once a report that is already there has been read.
    const timer = setTimeout(() => setImmediate(() => fail(`bwrap did not report its sandbox process within ${INFO_TIMEOUT_MS} ms`)), INFO_TIMEOUT_MS);
    child.on("exit", onExit);
    child.on("error", onError);
    unhook = onAbort(signal, () => finish(() => reject(spawnCancelled())));
    if (settled) return;
    info.on("error", () => undefined);
    info.on("data", (chunk: Buffer) => {
      if (settled) return;
      text += chunk.toString("utf8");
      if (text.length > INFO_MAX_BYTES) return fail("bwrap info output too large");
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return; // incomplete
      }
      const pid = (parsed as Record<string, unknown> | null)?.["child-pid"];
      if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 1) return fail(`bwrap reported no valid child-pid: ${text.slice(0, 200)}`);
      finish(() => resolve(pid));
    });
  });
}
