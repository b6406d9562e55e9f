// The command line's skeleton, shared by src/cli/main.ts (every command group) and src/cli/main-exec.ts
// (exec and tool alone, which the bundled bin loads for those two): commander is configured once, here,
// and only the group a command line names is loaded.
import type { Command } from "commander";
import { packageVersion } from "../util/pkg.js";

export type Register = (program: Command) => void;
export type Groups = Record<string, () => Promise<Register>>;

/** The first word of a command line that is not an option: the command group it names, if any. */
export function namedWord(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((w) => !w.startsWith("-"));
}

/** The groups this command line needs: the one it names; none for a bare --version; all otherwise (help, errors). */
function groupsFor(groups: Groups, argv: readonly string[]): string[] {
  const words = argv.slice(2);
  const named = namedWord(argv);
  if (named !== undefined && Object.hasOwn(groups, named)) return [named];
  if (named === undefined && words.length > 0 && words.every((w) => w === "--version" || w === "-V")) return [];
  return Object.keys(groups);
}

/**
 * LUMINAGUARD_DAEMON=0 (or false, off, no), as daemonDisabledByEnv (src/daemon/socket-path.ts) reads it:
 * here too so that deciding whether to load the thin exec client loads nothing.
 */
export function daemonOffByEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return ["0", "false", "off", "no"].includes((env["LUMINAGUARD_DAEMON"] ?? "").trim().toLowerCase());
}

/** A bare `--version` (or `-V`) is answered before commander is loaded, as commander would answer it. */
export function bareVersion(argv: readonly string[]): boolean {
  const words = argv.slice(2);
  return words.length === 1 && (words[0] === "--version" || words[0] === "-V");
}

async function main(groups: Groups): Promise<void> {
  if (bareVersion(process.argv)) {
    process.stdout.write(`${packageVersion()}\n`);
    return;
  }
  // `exec` with a service running: answered by the thin client, before commander and the command's modules.
  // With the daemon turned off (LUMINAGUARD_DAEMON=0) the thin client is not even loaded.
  if (Object.hasOwn(groups, "exec") && process.argv[2] === "exec" && !daemonOffByEnv()) {
    const { thinExec } = await import("./exec-thin.js");
    if (await thinExec(process.argv)) return;
  }
  // The code cache first (node ≥ 22.1): every chunk loaded from here on is compiled once per build.
  (await import("../util/compile-cache.js")).enableCompileCache();
  const { Command } = await import("commander");
  const program = new Command();
  program.name("luminaguard").description("Run AI agents' tool calls in single-use micro-VMs and namespace sandboxes").version(packageVersion());
  program.showHelpAfterError();
  // A subcommand's options are its own: `bench faults --backend both` is not the scenario runner's --backend.
  program.enablePositionalOptions();
  const registers = await Promise.all(groupsFor(groups, process.argv).map((name) => (groups[name] as () => Promise<Register>)()));
  for (const register of registers) register(program);
  await program.parseAsync(process.argv);
}

/** Runs the command line with these command groups; the exit code is set on failure. */
export function runCli(groups: Groups): void {
  main(groups).catch(async (err: unknown) => {
    // Loaded on failure only: a bare --version needs none of the error machinery.
    const { reportError } = await import("./output.js");
    process.exitCode = reportError(err);
  });
}
