#!/usr/bin/env node
// The `luminaguard` command: each command group registers itself from its own file here.
import { Command } from "commander";
import { configuredExternalTools } from "../agent/external.js";
import { packageVersion } from "../util/pkg.js";
import { registerAuditCommand } from "./audit.js";
import { registerBenchCommand } from "./bench.js";
import { registerDemoCommand } from "./demo.js";
import { registerDoctorCommand } from "./doctor.js";
import { registerExecCommand } from "./exec.js";
import { registerImageCommand } from "./image.js";
import { registerMcpCommand } from "./mcp.js";
import { registerMetricsCommand } from "./metrics.js";
import { reportError } from "./output.js";
import { registerRunCommand } from "./run.js";
import { registerToolCommand } from "./tool.js";

const program = new Command();
program.name("luminaguard").description("Run AI agents' tool calls in single-use micro-VMs and namespace sandboxes").version(packageVersion());
program.showHelpAfterError();

registerDoctorCommand(program);
registerImageCommand(program);
registerExecCommand(program);
registerToolCommand(program);
registerDemoCommand(program);
registerBenchCommand(program);
registerMetricsCommand(program);
registerMcpCommand(program);
registerRunCommand(program, { externalTools: configuredExternalTools });
registerAuditCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.exitCode = reportError(err);
});
