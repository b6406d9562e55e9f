// `luminaguard demo`: builds what is missing, then runs every tool and shows the isolation on each working backend.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { toLuminaGuardError } from "../errors.js";
import { buildImage } from "../image/build.js";
import { probeBackend, type BackendChoice } from "../runtime/backends.js";
import { MAX_DISK_MIB, MIN_DISK_MIB } from "../runtime/disk.js";
import { Sandbox } from "../runtime/sandbox.js";
import type { BackendName } from "../sandbox/types.js";
import { escapeForTerminal } from "../util/terminal.js";
import { parseIntOption } from "./output.js";
import { backendOption } from "./sandbox.js";

// What the demo prints comes from the guest (outputs, file names) and error messages: inert on the terminal.
const say = (line = ""): boolean => process.stdout.write(`${escapeForTerminal(line)}\n`);

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

async function demoBackend(backend: BackendName, diskMiB: number | undefined): Promise<void> {
  const ws = mkdtempSync(join(tmpdir(), "lg-demo-"));
  writeFileSync(join(ws, "notes.txt"), "LuminaGuard keeps tool calls inside the sandbox.\nTODO: try a Red action\n");
  const [sandbox, spawnMs] = await timed(() => Sandbox.create({ backend, workspace: ws, memoryMiB: 256, ...(diskMiB !== undefined ? { diskMiB } : {}) }));
  try {
    say(`\n== ${backend} (${Object.entries(sandbox.info).map(([k, v]) => `${k}=${v}`).join(", ")})`);
    say(`cold start to ready: ${spawnMs.toFixed(0)} ms`);
    const steps: Array<[string, () => Promise<string>]> = [
      ["write_file report.md", async () => `${(await sandbox.files.write("out/report.md", "# made in the sandbox\n", { createParents: true })).bytesWritten} bytes, fsynced`],
      ["read_file notes.txt", async () => JSON.stringify((await sandbox.files.readText("notes.txt")).split("\n")[0])],
      ["list_directory . depth 2", async () => (await sandbox.files.list(".", { depth: 2 })).entries.map((e) => `${e.path}${e.type === "dir" ? "/" : ""}`).join(" ")],
      ["search TODO", async () => (await sandbox.search({ pattern: "TODO" })).matches.map((m) => `${m.path}:${m.line}: ${m.text}`).join("; ")],
      ["execute_command uname -sr", async () => (await sandbox.commands.run(["uname", "-sr"])).stdout.trim()],
      ["cat /etc/shadow (host secret)", async () => describe(await sandbox.commands.run("cat /etc/shadow"))],
      ["read_file ../../etc/passwd", async () => sandbox.files.readText("../../etc/passwd").then(() => "READ (bad)", (e: unknown) => `refused: ${toLuminaGuardError(e).code}`)],
      ["touch /usr/evil (outside workspace)", async () => describe(await sandbox.commands.run("touch /usr/evil"))],
      ["sleep 30 with a 1 s timeout", async () => sandbox.commands.run("sleep 30", { timeoutMs: 1000 }).then(() => "finished (bad)", (e: unknown) => `stopped: ${toLuminaGuardError(e).code}`)],
    ];
    for (const [label, fn] of steps) {
      const [text, ms] = await timed(() => fn().catch((e: unknown) => `error ${toLuminaGuardError(e).code}: ${toLuminaGuardError(e).message}`));
      say(`  ${label.padEnd(38)} ${ms.toFixed(1).padStart(8)} ms  ${text}`);
    }
  } finally {
    await sandbox.kill();
    rmSync(ws, { recursive: true, force: true });
  }
}

function describe(r: { exitCode: number | null; stderr: string }): string {
  return r.exitCode === 0 ? "succeeded" : `denied (exit ${r.exitCode}: ${r.stderr.trim().split("\n")[0] ?? ""})`;
}

async function runDemo(choice: BackendChoice, diskMiB?: number): Promise<void> {
  if (choice !== "namespace") {
    say("Building the guest image if needed (the first time compiles a kernel: a few minutes)...");
    await buildImage({ log: (l) => process.stderr.write(`  ${l}\n`) }).catch((e: unknown) => say(`image build failed, the micro-VM backend will be skipped: ${toLuminaGuardError(e).message}`));
  }
  const wanted: BackendName[] = choice === "auto" ? ["microvm", "namespace"] : [choice];
  let ran = 0;
  for (const backend of wanted) {
    const probe = await probeBackend(backend);
    if (!probe.available) {
      say(`\n== ${backend}: skipped, ${probe.reason ?? "unavailable"}`);
      continue;
    }
    await demoBackend(backend, diskMiB);
    ran++;
  }
  if (ran === 0) {
    process.exitCode = 1;
    say("\nNo backend works here: run `luminaguard doctor`.");
  }
}

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("build what is missing, then show every tool and the isolation on each backend that works here")
    .addOption(backendOption())
    .option("--disk <MiB>", "disk limit of the sandbox: MiB it may add to its workspace (default 1024)", parseIntOption("--disk", MIN_DISK_MIB, MAX_DISK_MIB))
    .action(async (o: { backend: BackendChoice; disk?: number }) => {
      await runDemo(o.backend, o.disk);
    });
}
