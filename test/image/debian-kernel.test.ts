// The Debian prebuilt kernel: built from apt into a throwaway cache, cold booted and restored through MicroVmBackend, 9p working.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { LuminaGuardError } from "../../src/errors.js";
import { buildImage, currentKernelKind, requireImage, type ImageManifest } from "../../src/image/build.js";
import { tscFromCpuinfo, tscFromKernelLog } from "../../src/image/tsc-clock.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { MicroVmBackend } from "../../src/sandbox/microvm/backend.js";
import { qemuVersion } from "../../src/sandbox/microvm/accel.js";

describe("host TSC rate for tsc_early_khz", () => {
  test("the kernel log's refined calibration wins over its first guess", () => {
    const log = "[0.0] tsc: Detected 2599.998 MHz TSC\n[1.2] tsc: Refined TSC clocksource calibration: 2600.123 MHz\n";
    assert.deepEqual(tscFromKernelLog(log), { khz: 2_600_123, source: "kernel log (refined TSC calibration)" });
    assert.equal(tscFromKernelLog("[0.0] tsc: Detected 3000.000 MHz processor\n"), undefined, "the processor clock is not the TSC");
  });

  test("/proc/cpuinfo cpu MHz, times 1000, rounded", () => {
    assert.equal(tscFromCpuinfo("processor\t: 0\ncpu MHz\t\t: 2599.998\n")?.khz, 2_599_998);
    assert.equal(tscFromCpuinfo("cpu MHz\t\t: 0.000\n"), undefined);
  });
});

describe("debian kernel image", async () => {
  // The minimal kernel takes minutes to compile; this test builds only the debian kind, into its own cache.
  const cache = mkdtempSync(join(tmpdir(), "lg-debian-cache-"));
  const savedCache = process.env["LUMINAGUARD_CACHE"];
  const noQemu = (await qemuVersion()) ? undefined : "qemu-system-x86_64 is not installed: the boot tests need it";
  if (noQemu) process.stderr.write(`SKIP: ${noQemu}\n`);
  const cleanups: (() => Promise<void>)[] = [];
  let image: ImageManifest | undefined;

  before(() => {
    process.env["LUMINAGUARD_CACHE"] = cache;
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    if (savedCache === undefined) delete process.env["LUMINAGUARD_CACHE"];
    else process.env["LUMINAGUARD_CACHE"] = savedCache;
    rmSync(cache, { recursive: true, force: true });
  });

  const built = (): ImageManifest => {
    assert.ok(image, "the debian image was built by the first test");
    return image;
  };

  /** A sandbox on `backend`, killed (and its workspace removed) when the suite ends. */
  const spawn = async (backend: MicroVmBackend, name: string): Promise<{ sandbox: Sandbox; ws: string }> => {
    const ws = mkdtempSync(join(tmpdir(), "lg-debian-ws-"));
    const handle = await backend
      .spawn({ id: `lg-deb-${name}-${process.pid}`, workspace: ws, memoryMiB: 256, pidsMax: 64, vcpus: 1 })
      .catch((err: unknown) => {
        rmSync(ws, { recursive: true, force: true });
        throw err;
      });
    const sandbox = Sandbox.fromHandle(handle, { path: ws, owned: true });
    cleanups.push(() => sandbox.kill());
    return { sandbox, ws };
  };

  /** The kernel is Debian's, and the workspace is the host directory in both directions. */
  const checkGuest = async (sandbox: Sandbox, ws: string): Promise<void> => {
    const uname = await sandbox.commands.run(["uname", "-r"]);
    assert.equal(uname.exitCode, 0, uname.stderr);
    assert.equal(uname.stdout.trim(), built().kernelRelease, "the guest runs the Debian kernel of the package");
    assert.notEqual(uname.stdout.trim(), release());
    writeFileSync(join(ws, "from-host.txt"), "written on the host\n");
    assert.equal(await sandbox.files.readText("from-host.txt"), "written on the host\n");
    await sandbox.files.write("from-guest.txt", "written in the guest\n");
    assert.equal(readFileSync(join(ws, "from-guest.txt"), "utf8"), "written in the guest\n");
    const sh = await sandbox.commands.run(["sh", "-c", "cat /workspace/from-host.txt > /workspace/copied.txt"]);
    assert.equal(sh.exitCode, 0, sh.stderr);
    assert.equal(readFileSync(join(ws, "copied.txt"), "utf8"), "written on the host\n");
  };

  test("builds from the package linux-image-amd64 points at, and becomes the current image", async () => {
    // No skip on apt trouble: a failed download fails here with apt's reason.
    const lines: string[] = [];
    const m = await buildImage({ kernel: "debian", log: (l) => lines.push(l) });
    image = m;
    assert.equal(m.kernelKind, "debian");
    assert.match(m.kernelPackage?.name ?? "", /^linux-image-[0-9]/);
    assert.match(m.kernelRelease ?? "", /^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-amd64$/);
    assert.match(m.cmdline, / tsc_early_khz=[0-9]{6,8}$/);
    for (const mod of ["virtio_mmio", "virtio_console", "9pnet", "9pnet_virtio", "9p"]) assert.ok(m.modules?.includes(mod), `${mod} is loaded at boot: ${lines.join("\n")}`);
    const order = m.modules ?? [];
    assert.ok(order.indexOf("virtio_ring") < order.indexOf("virtio_mmio") && order.indexOf("9pnet") < order.indexOf("9p"), "dependencies load first");
    assert.ok(existsSync(join(cache, "images", "current.json")));
    assert.equal(currentKernelKind(), "debian");
    assert.equal((await requireImage()).hash, m.hash, "the runtime now uses the debian image");
    const again = await buildImage({ kernel: "debian" });
    assert.equal(again.built, false, "a second build is a cache hit");
    assert.equal(again.hash, m.hash);
  });

  test("cold boot: Debian's kernel, workspace over 9p", { skip: noQemu, timeout: 60_000 }, async () => {
    built();
    const backend = new MicroVmBackend({ snapshots: false });
    const { sandbox, ws } = await spawn(backend, "cold");
    assert.equal(sandbox.info["start"], "cold");
    assert.equal(sandbox.info["image"], built().hash);
    await checkGuest(sandbox, ws);
    const probe = await backend.probe();
    assert.equal(probe.details["kernel"], "debian");
  });

  test("snapshot restore: clones of the debian template work the same", { skip: noQemu, timeout: 60_000 }, async () => {
    built();
    const backend = new MicroVmBackend({ snapshots: true });
    const first = await spawn(backend, "tpl");
    assert.equal(first.sandbox.info["start"], "restore", `restored, not cold booted: ${String(first.sandbox.info["restoreFallback"] ?? "")}`);
    await checkGuest(first.sandbox, first.ws);
    const second = await spawn(backend, "clone");
    assert.equal(second.sandbox.info["start"], "restore");
    await checkGuest(second.sandbox, second.ws);
  });

  test("a current image that is gone is IMAGE_MISSING naming the debian build command", async () => {
    const m = built();
    rmSync(join(cache, "images", m.hash), { recursive: true, force: true });
    await assert.rejects(requireImage(), (err: unknown) => {
      assert.ok(err instanceof LuminaGuardError);
      assert.equal(err.code, "IMAGE_MISSING");
      assert.match(err.message, /run `luminaguard image build --kernel debian`/);
      return true;
    });
  });
});
