// `luminaguard doctor`: which backends work here, and why not.
import type { Command } from "commander";
import { doctor, formatDoctor } from "../runtime/doctor.js";

export function registerDoctorCommand(program: Command): void {
  program
    .command("doctor")
    .description("show which backends work here, the accelerator, versions, and why not")
    .option("--json", "print one JSON object")
    .action(async (o: { json?: boolean }) => {
      const report = await doctor();
      process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctor(report)}\n`);
      process.exitCode = report.auto ? 0 : 1;
    });
}
