#!/usr/bin/env node
// The `luminaguard` command: each command group registers itself from its own file here, and only the
// group a command line names is loaded (a command starts like node, not like every module at once).
import type { Command } from "commander";
import { packageVersion } from "../util/pkg.js";

type Register = (program: Command) => void;

/** Every command group, in help order, loaded when named (all of them only for the top-level help). */
const GROUPS: Record<string, () => Promise<Register>> = {
  doctor: async () => (await import("./doctor.js")).registerDoctorCommand,
  image: async () => (await import("./image.js")).registerImageCommand,
  exec: async () => (await import("./exec.js")).registerExecCommand,
  tool: async () => (await import("./tool.js")).registerToolCommand,
  demo: async () => (await import("./demo.js")).registerDemoCommand,
  bench: async () => (await import("./bench.js")).registerBenchCommand,
  metrics: async () => (await import("./metrics.js")).registerMetricsCommand,
  mcp: async () => (await import("./mcp.js")).registerMcpCommand,
  run: async () => {
    const [{ registerRunCommand }, { configuredExternalTools }] = await Promise.all([import("./run.js"), import("../agent/external.js")]);
    return (program) => registerRunCommand(program, { externalTools: configuredExternalTools });
  },
  audit: async () => (await import("./audit.js")).registerAuditCommand,
  serve: async () => (await import("./serve.js")).registerServeCommand,
  cluster: async () => (await import("./cluster.js")).registerClusterCommand,
};

/** The groups this command line needs: the one it names; none for a bare --version; all otherwise (help, errors). */
function groupsFor(argv: readonly string[]): string[] {
  const words = argv.slice(2);
  const named = words.find((w) => !w.startsWith("-"));
  if (named !== undefined && Object.hasOwn(GROUPS, named)) return [named];
  if (named === undefined && words.length > 0 && words.every((w) => w === "--version" || w === "-V")) return [];
  return Object.keys(GROUPS);
}

/** A bare `--version` (or `-V`) is answered before commander is loaded, as commander would answer it. */
function bareVersion(argv: readonly string[]): boolean {
  const words = argv.slice(2);
  return words.length === 1 && (words[0] === "--version" || words[0] === "-V");
}

async function main(): Promise<void> {
  if (bareVersion(process.argv)) {
    process.stdout.write(`${packageVersion()}\n`);
    return;
  }
  // The code cache first (node ≥ 22.1): every chunk loaded from here on is compiled once per build.
  (await import("../util/compile-cache.js")).enableCompileCache();
  const { Command } = await import("commander");
  const program = new Command();
  program.name("luminaguard").description("Run AI agents' tool calls in single-use micro-VMs and namespace sandboxes").version(packageVersion());
  program.showHelpAfterError();
  // A subcommand's options are its own: `bench faults --backend both` is not the scenario runner's --backend.
  program.enablePositionalOptions();
  const registers = await Promise.all(groupsFor(process.argv).map((name) => (GROUPS[name] as () => Promise<Register>)()));
  for (const register of registers) register(program);
  await program.parseAsync(process.argv);
}

main().catch(async (err: unknown) => {
  // Loaded on failure only: a bare --version needs none of the error machinery.
  const { reportError } = await import("./output.js");
  process.exitCode = reportError(err);
});
