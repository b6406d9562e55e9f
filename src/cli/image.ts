// `luminaguard image build`: the guest image (kernel, initramfs, guest agent), cached by content hash.
import { Option, type Command } from "commander";
import { buildImage, KERNEL_KINDS, type KernelKind } from "../image/build.js";

export function registerImageCommand(program: Command): void {
  const image = program.command("image").description("the guest image (kernel, initramfs, guest agent)");
  image
    .command("build")
    .description("build the guest image from Debian packages (cached by content hash)")
    .option("--force", "rebuild even if the cache is current")
    .addOption(
      new Option("--kernel <kind>", "minimal: built from linux-source-6.1 (fast boot); debian: Debian's packaged kernel (fallback, slower boot)")
        .choices([...KERNEL_KINDS])
        .default("minimal"),
    )
    .action(async (o: { force?: boolean; kernel: KernelKind }) => {
      const started = Date.now();
      const m = await buildImage({ kernel: o.kernel, ...(o.force ? { force: true } : {}), log: (l) => process.stderr.write(`${l}\n`) });
      process.stderr.write(`guest image ${m.hash} (${m.kernelKind} kernel) ${m.built ? "built" : "already current"} in ${((Date.now() - started) / 1000).toFixed(1)} s; it is now the current image\n`);
      process.stdout.write(`${JSON.stringify({ hash: m.hash, kernelKind: m.kernelKind, kernel: m.kernel, initrd: m.initrd, agent: m.agent, built: m.built })}\n`);
    });
}
