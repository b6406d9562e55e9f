// Snapshot templates: boot once to "agent ready", save; every clone restores with its RAM mapped copy-on-write.
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { z } from "zod";
import { GuestChannel } from "../../protocol/channel.js";
import type { ImageManifest } from "../../image/build.js";
import { LuminaGuardError, toLuminaGuardError } from "../../errors.js";
import { log } from "../../log.js";
import { cacheDir } from "../../paths.js";
import { QmpClient } from "./qmp.js";
import { connectWhenReady, consoleTail, destroyVm, launchVm, vmStderr, type Accelerator, type VmProcess } from "./qemu.js";

// 3: the template saves no run state (migration.store-global-state=off), so clones autostart.
const SNAPSHOT_FORMAT = 4;

const snapshotMetaSchema = z.object({
  format: z.number().int(),
  key: z.string(),
  image: z.string(),
  accel: z.enum(["kvm", "tcg"]),
  memoryMiB: z.number().int(),
  vcpus: z.number().int(),
  qemu: z.string(),
  ramBytes: z.number().int(),
  ramMtimeMs: z.number(),
  stateSha256: z.string(),
  stateBytes: z.number().int(),
  createdAt: z.string(),
  bootMs: z.number(),
});
type SnapshotMeta = z.infer<typeof snapshotMetaSchema>;

export interface Snapshot {
  dir: string;
  ramPath: string;
  /** The device and CPU state, kept in memory: every restore streams it to QEMU. */
  state: Buffer;
  meta: SnapshotMeta;
}

interface SnapshotParams {
  image: ImageManifest;
  accel: Accelerator;
  memoryMiB: number;
  vcpus: number;
  qemu: string;
}

export function snapshotKey(p: SnapshotParams): string {
  return createHash("sha256")
    .update(JSON.stringify([SNAPSHOT_FORMAT, p.image.hash, p.accel, p.memoryMiB, p.vcpus, p.qemu]))
    .digest("hex")
    .slice(0, 16);
}

async function pollMigration(qmp: QmpClient, vm: VmProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = (await qmp.execute("query-migrate")) as { status?: string; "error-desc"?: string };
    if (info.status === "completed") return;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `migration ${info.status}: ${info["error-desc"] ?? vmStderr(vm)}`);
    }
    if (Date.now() > deadline) throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `migration did not complete within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Loads a snapshot from disk if it is complete and unchanged; a stale or corrupt one is removed. */
export function loadSnapshot(p: SnapshotParams): Snapshot | undefined {
  const dir = join(cacheDir(), "snapshots", snapshotKey(p));
  const metaPath = join(dir, "meta.json");
  if (!existsSync(metaPath)) return undefined;
  try {
    const meta = snapshotMetaSchema.parse(JSON.parse(readFileSync(metaPath, "utf8")));
    const ramPath = join(dir, "ram");
    const st = statSync(ramPath);
    const state = readFileSync(join(dir, "state"));
    const sha = createHash("sha256").update(state).digest("hex");
    if (meta.format !== SNAPSHOT_FORMAT || meta.key !== snapshotKey(p)) throw new Error("snapshot was made by another version");
    if (st.size !== meta.ramBytes || st.mtimeMs !== meta.ramMtimeMs || sha !== meta.stateSha256 || state.length !== meta.stateBytes) {
      throw new Error("snapshot files changed after they were written");
    }
    checkMigrationStream(state, "the snapshot's device state");
    return { dir, ramPath, state, meta };
  } catch (err) {
    log.warn({ dir, err: (err as Error).message }, "discarding a stale or corrupt snapshot");
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
}

export function discardSnapshot(s: Snapshot): void {
  rmSync(s.dir, { recursive: true, force: true });
}

/** The guest's clock source: "tsc-early" until the kernel's refined TSC calibration (about 1 s after it set the TSC up) switches it. */
const CLOCKSOURCE = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
const SETTLE_MAX_MS = 5_000;

/**
 * Waits until the template's kernel has done the work it defers after boot, so that clones do not
 * each do it again: the switch from the early TSC clock source to the refined one happens about
 * 1.5 s of guest time after boot (after the template's first answer under TCG), and in every clone
 * of a template saved before it, at a random point of its first commands or of a restore's hello.
 * Bounded: a kernel that never switches (another clock source, under KVM) is saved as it is.
 */
async function settleBootWork(channel: GuestChannel, deadlineMs: number): Promise<void> {
  const end = performance.now() + Math.min(SETTLE_MAX_MS, deadlineMs);
  while (performance.now() < end) {
    let out = "";
    await channel.request(
      "execute_command",
      { argv: ["cat", CLOCKSOURCE], timeoutMs: 10_000, maxOutputBytes: 256 },
      { deadlineMs, onEvent: (stream, data) => void (stream === "stdout" && (out += data.toString("utf8"))) },
    );
    if (out.trim() !== "tsc-early") return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Boots a template VM with file-backed shared RAM, waits for the guest agent, disconnects (so the
 * agent sleeps waiting for a host), pauses it and saves device state with x-ignore-shared: the RAM
 * file itself is the memory image.
 */
export async function createSnapshot(p: SnapshotParams, bootTimeoutMs: number): Promise<Snapshot> {
  const key = snapshotKey(p);
  const final = join(cacheDir(), "snapshots", key);
  const dir = `${final}.tmp-${process.pid}-${randomBytes(3).toString("hex")}`;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ramPath = join(dir, "ram");
  // The jail binds the RAM file, so it exists before QEMU starts; the VMM identity fills it.
  writeFileSync(ramPath, "", { mode: 0o600 });
  const started = performance.now();
  const vm = await launchVm({
    id: `tpl-${key}-${randomBytes(3).toString("hex")}`,
    accel: p.accel,
    image: p.image,
    memoryMiB: p.memoryMiB,
    vcpus: p.vcpus,
    memoryFile: { path: ramPath, share: true },
  });
  let qmpSocket: Socket | undefined;
  try {
    const socket = await connectWhenReady(vm.socketPath, vm, bootTimeoutMs);
    const channel = new GuestChannel({ input: socket, output: socket }, () => socket.destroy());
    void vm.exited.then(() => channel.fail(new LuminaGuardError("GUEST_CHANNEL_LOST", "template VM exited")));
    await channel.handshake(bootTimeoutMs);
    const bootMs = performance.now() - started;
    // Exercise the command path once so its guest-side caches (slabs, cgroup, page cache) are in
    // the snapshot every clone starts from.
    await channel.request("execute_command", { argv: ["true"], timeoutMs: 10_000, maxOutputBytes: 1024 }, { deadlineMs: bootTimeoutMs });
    await settleBootWork(channel, bootTimeoutMs);
    channel.fail(new LuminaGuardError("SANDBOX_CLOSED", "template ready"));
    socket.destroy();
    // Let the agent see the hang-up and go back to waiting for a host before the VM is frozen.
    await new Promise((r) => setTimeout(r, 100));
    qmpSocket = await connectWhenReady(vm.qmpPath, vm, 5000);
    const qmp = new QmpClient(qmpSocket);
    await qmp.execute("stop");
    await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
    const state = await receiveMigration(vm, async (uri) => {
      await qmp.execute("migrate", { uri });
      await pollMigration(qmp, vm, 60_000);
    });
    qmp.close();
    await destroyVm(vm);
    // Clones map this file copy-on-write. QEMU 7.2 opens it read-write to do so, so clones need write
    // permission: owner root, group the VMM group, no one else (docs/security.md: the residual risk).
    if (vm.identity.switched) {
      chownSync(ramPath, 0, vm.identity.gid);
      chmodSync(ramPath, 0o660);
    }
    const st = statSync(ramPath);
    const meta: SnapshotMeta = {
      format: SNAPSHOT_FORMAT,
      key,
      image: p.image.hash,
      accel: p.accel,
      memoryMiB: p.memoryMiB,
      vcpus: p.vcpus,
      qemu: p.qemu,
      ramBytes: st.size,
      ramMtimeMs: st.mtimeMs,
      stateSha256: createHash("sha256").update(state).digest("hex"),
      stateBytes: state.length,
      createdAt: new Date().toISOString(),
      bootMs,
    };
    writeFileSync(join(dir, "state"), state);
    writeFileSync(join(dir, "meta.json"), `${JSON.stringify(meta, null, 2)}\n`);
    rmSync(final, { recursive: true, force: true });
    renameSync(dir, final);
    return { dir: final, ramPath: join(final, "ram"), state, meta };
  } catch (err) {
    const tail = consoleTail(vm);
    await destroyVm(vm);
    rmSync(dir, { recursive: true, force: true });
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `cannot create the micro-VM snapshot: ${(err as Error).message}`, {
      cause: err,
      details: tail ? { console: tail } : {},
    });
  } finally {
    qmpSocket?.destroy();
  }
}

/**
 * QEMU connects to a unix socket of ours in its run directory and sends its migration stream; no
 * exec:, so QEMU's -sandbox spawn=deny holds.
 *
 * QEMU calls the migration complete once it has written the stream into the socket, which can be
 * before this process has even accepted the connection (a small device state fits in the socket's
 * buffer): the stream is awaited until its end whatever `start` saw, never taken as empty. Exported
 * for the tests.
 */
export async function receiveMigration(
  vm: Pick<VmProcess, "dir" | "qemuRunDir"> & { identity: Pick<VmProcess["identity"], "uid" | "gid" | "switched"> },
  start: (uri: string) => Promise<void>,
  timeoutMs = 60_000,
): Promise<Buffer> {
  const path = join(vm.dir, "migrate.sock");
  const chunks: Buffer[] = [];
  let finish!: () => void;
  let fail!: (err: Error) => void;
  const ended = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  // A stream that fails while `start` does is reported by `start` (QEMU's migration failed); no unhandled rejection.
  ended.catch(() => undefined);
  let accepted = false;
  const server = createServer((s) => {
    // One stream: a second connection (nothing of ours makes one) is not mixed into it.
    if (accepted) {
      s.destroy();
      return;
    }
    accepted = true;
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("end", finish);
    s.on("error", fail);
  });
  await new Promise<void>((r) => server.listen(path, r));
  let timer: NodeJS.Timeout | undefined;
  try {
    // Connecting needs write permission on the socket: it is the VMM's, in the VMM's directory.
    if (vm.identity.switched) chownSync(path, vm.identity.uid, vm.identity.gid);
    await start(`unix:${vm.qemuRunDir}/migrate.sock`);
    await Promise.race([
      ended,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new LuminaGuardError("SANDBOX_SPAWN_FAILED", `the migration stream did not end within ${timeoutMs} ms of QEMU's "completed"`)), timeoutMs);
      }),
    ]);
    const state = Buffer.concat(chunks);
    checkMigrationStream(state, "the template's migration stream");
    return state;
  } finally {
    clearTimeout(timer);
    server.close();
    rmSync(path, { force: true });
  }
}

/** QEMU's QEMU_VM_FILE_MAGIC ("QEVM"): the first four bytes of every migration stream. */
const MIGRATION_MAGIC = 0x5145564d;

/** Throws unless `state` begins as a QEMU migration stream does (an empty or cut stream is "Not a migration stream" to QEMU). */
function checkMigrationStream(state: Buffer, what: string): void {
  if (state.length < 8 || state.readUInt32BE(0) !== MIGRATION_MAGIC) {
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `${what} is not a QEMU migration stream (${state.length} bytes)`);
  }
}

/**
 * Loads a snapshot into a VMM started with `incoming: "stdin"` and `paused` (a spare: spares.ts) and
 * waits until it is loaded. The guest has not run when this returns; QMP `cont` on the returned
 * client (negotiated, kept open) starts it.
 */
export async function preloadSnapshot(vm: VmProcess, snapshot: Snapshot, timeoutMs: number): Promise<QmpClient> {
  const stdin = vm.child.stdin;
  if (!stdin) throw new LuminaGuardError("INTERNAL", "a VMM to preload needs its stdin as the migration stream");
  const qmp = new QmpClient(await connectWhenReady(vm.qmpPath, vm, timeoutMs));
  try {
    stdin.end(snapshot.state);
    await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
    await qmp.execute("migrate-incoming", { uri: "fd:0" });
    await pollMigration(qmp, vm, timeoutMs);
    return qmp;
  } catch (err) {
    qmp.close();
    const stderr = vmStderr(vm);
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `preloading the snapshot failed: ${toLuminaGuardError(err).message}${stderr ? ` (QEMU: ${stderr.slice(-500)})` : ""}`, { cause: err });
  }
}

/**
 * Streams a snapshot's device state into a VM started with `-incoming defer`. A VM launched with
 * `incoming: "stdin"` reads it from its stdin pipe: the QMP commands are pipelined after the greeting
 * (negotiation, capability, `migrate-incoming fd:0`) and nothing more is awaited, since a snapshot
 * without run state starts by itself once loaded (a failed load makes QEMU exit, which fails the
 * guest handshake at once). Otherwise (`incoming: true`) the stream goes over a socket and the VM is
 * resumed with `cont` once the load completes.
 */
export async function restoreInto(vm: VmProcess, snapshot: Snapshot, timeoutMs: number): Promise<Record<string, number>> {
  const t0 = performance.now();
  const qmpSocket = await connectWhenReady(vm.qmpPath, vm, timeoutMs);
  const qmp = new QmpClient(qmpSocket);
  try {
    const stdin = vm.child.stdin;
    if (stdin) {
      stdin.end(snapshot.state);
      const caps = qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
      const incoming = qmp.execute("migrate-incoming", { uri: "fd:0" });
      await Promise.all([caps, incoming]);
      const phases = { qmp: performance.now() - t0 };
      log.debug(phases, "restore phases (ms)");
      return phases;
    }
    await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
    const t1 = performance.now();
    const path = join(vm.dir, "incoming.sock");
    await qmp.execute("migrate-incoming", { uri: `unix:${vm.qemuRunDir}/incoming.sock` });
    const sender = await connectWhenReady(path, vm, timeoutMs);
    await new Promise<void>((resolve, reject) => {
      sender.on("error", reject);
      sender.end(snapshot.state, resolve);
    });
    await pollMigration(qmp, vm, timeoutMs);
    const t2 = performance.now();
    await qmp.execute("cont");
    const phases = { qmp: t1 - t0, migrate: t2 - t1, cont: performance.now() - t2 };
    log.debug(phases, "restore phases (ms)");
    return phases;
  } catch (err) {
    // Said with QEMU's own words when it is the VMM that went away.
    const stderr = vmStderr(vm);
    const e = toLuminaGuardError(err, "SANDBOX_SPAWN_FAILED");
    throw new LuminaGuardError("SANDBOX_SPAWN_FAILED", `restore failed: ${e.message}${stderr ? ` (QEMU: ${stderr.slice(-500)})` : ""}`, { cause: err });
  } finally {
    qmp.close();
  }
}
