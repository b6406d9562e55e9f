// File tools beside the VM: read_file, write_file, list_directory and search run no code of the
// agent's, so for a micro-VM they are served by an lg-agent in a namespace jail on the host, on the
// same workspace, instead of through the guest kernel's 9p client that TCG emulates instruction by
// instruction. Only execute_command runs in the VM. docs/security.md, "File tools beside the VM",
// weighs what each mode exposes.
import { GuestChannelLostError, LuminaGuardError, toLuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import type { AwaitingSandbox, SandboxHandle, SandboxSpec } from "../types.js";

/** The jail runs the agent alone: no command is ever sent there, so it needs no room for children. */
const JAIL_PIDS_MAX = 4;

/**
 * The jail's sandbox spec: the VM's workspace and disk limit, its memory as a ceiling (a large
 * read or search needs it), no room for processes.
 */
export function fileJailSpec(spec: SandboxSpec): SandboxSpec {
  return {
    id: `${spec.id}-files`,
    workspace: spec.workspace,
    memoryMiB: spec.memoryMiB,
    pidsMax: JAIL_PIDS_MAX,
    vcpus: 1,
    filesOnly: true,
    ...(spec.checked !== undefined ? { checked: spec.checked } : {}),
    ...(spec.diskMiB !== undefined ? { diskMiB: spec.diskMiB } : {}),
  };
}

/** One sandbox made of a VM and its file jail: either one dying takes the other, destroy ends both. */
function besideVm(vm: SandboxHandle, jail: SandboxHandle): SandboxHandle {
  let destroyed: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      const results = await Promise.allSettled([vm.destroy(), jail.destroy()]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw toLuminaGuardError(failed.reason);
    })();
    return destroyed;
  };
  // One part dying on its own loses the sandbox: calls in flight on the other fail as a lost channel
  // (not as a deliberate close), then both are destroyed.
  const lost = (other: SandboxHandle, what: string): void => {
    if (!destroyed) other.channel.fail(new GuestChannelLostError(`micro-VM ${vm.id}: ${what} exited`));
    destroy().catch((err: unknown) => log.error({ id: vm.id, err: String(err) }, "destroying a micro-VM and its file jail failed"));
  };
  void vm.exited.then(() => lost(jail, "the VM"));
  void jail.exited.then(() => lost(vm, "its file jail"));
  const exited = Promise.race([vm.exited, jail.exited]);
  return {
    id: vm.id,
    backend: vm.backend,
    channel: vm.channel,
    fileChannel: jail.channel,
    info: {
      ...vm.info,
      fileTools: "host",
      fileJail: String(jail.info["isolation"] ?? "namespace"),
      fileJailStart: jail.info["startedAhead"] === true ? "ahead" : "with-vm",
      fileJailUid: jail.info["hostUid"] ?? -1,
    },
    pids: () => [...vm.pids(), ...jail.pids()],
    oomKills: async () => await vm.oomKills?.(),
    fileJailPids: () => jail.pids(),
    exited,
    destroy,
  };
}

/**
 * A jail started ahead of its sandbox (with a spare VMM) given this sandbox's workspace; if that
 * fails, a jail started now. receive() destroys what it was given when it fails.
 */
async function receiveOrSpawn(ahead: AwaitingSandbox, spec: SandboxSpec, spawnJail: () => Promise<SandboxHandle>): Promise<SandboxHandle> {
  try {
    return await ahead.receive(spec);
  } catch (err) {
    log.warn({ id: spec.id, err: toLuminaGuardError(err).message }, "a file jail started ahead did not take its workspace; starting one");
    return await spawnJail();
  }
}

/**
 * Starts the VM, and its jail as soon as the VM's QEMU is launched (`launched`; at the latest once
 * the VM is ready): the jail costs a few ms beside a restore, but its start is synchronous work
 * (bwrap, cgroups) that must not delay the VM's. A spare VMM brings a jail started with it
 * (`ahead`), which only needs the workspace. Whichever fails first, the other is destroyed and
 * nothing is left.
 */
export async function spawnBeside(
  spawnVm: (launched: (ahead?: AwaitingSandbox) => void) => Promise<SandboxHandle>,
  spawnJail: () => Promise<SandboxHandle>,
  spec: SandboxSpec,
): Promise<SandboxHandle> {
  const id = spec.id;
  let started = NaN;
  let jailMs = NaN;
  let jailP: Promise<SandboxHandle> | undefined;
  const startJail = (ahead?: AwaitingSandbox): Promise<SandboxHandle> => {
    if (jailP) {
      // Only the first call starts a jail: one started ahead that arrives later is not needed.
      if (ahead) void ahead.destroy().catch((err: unknown) => log.error({ id, err: String(err) }, "destroying an unused file jail failed"));
      return jailP;
    }
    started = performance.now();
    jailP = (ahead ? receiveOrSpawn(ahead, fileJailSpec(spec), spawnJail) : spawnJail()).then((j) => {
      jailMs = performance.now() - started;
      return j;
    });
    // Settled by whoever awaits it below; this only keeps an early rejection from being unhandled.
    jailP.catch(() => undefined);
    return jailP;
  };
  let vm: SandboxHandle;
  try {
    vm = await spawnVm((ahead) => void startJail(ahead));
  } catch (err) {
    await jailP?.then(
      (j) => j.destroy(),
      () => undefined,
    );
    throw err;
  }
  let jail: SandboxHandle;
  try {
    jail = await startJail();
  } catch (err) {
    await vm.destroy().catch((e: unknown) => log.error({ id, err: String(e) }, "destroying a micro-VM whose file jail failed failed"));
    const e = toLuminaGuardError(err, "SANDBOX_SPAWN_FAILED");
    if (e.code === "CANCELLED") throw e;
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `micro-VM ${id}: its file-tool jail failed to start: ${e.message}`, { cause: err });
  }
  const both = besideVm(vm, jail);
  // Beside the VM's phases, not after them: the jail starts at once and runs in parallel.
  both.info["phaseMs.jail"] = Math.round(jailMs * 100) / 100;
  return both;
}
