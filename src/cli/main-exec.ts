// `luminaguard exec` and `luminaguard tool` alone, for the bundled bin (src/cli/bin.ts): bundled apart
// from the other command groups, their modules come in a dozen chunks instead of the thirty-odd that
// sharing code with every other group splits them into. Each command line names one group and
// registers only that one (src/cli/program.ts), so what exec and tool print is what main.ts prints.
import { runCli } from "./program.js";

runCli({
  exec: async () => (await import("./exec.js")).registerExecCommand,
  tool: async () => (await import("./tool.js")).registerToolCommand,
});
