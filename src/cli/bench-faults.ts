// `luminaguard bench faults`: the fault-injection matrix on one or both backends (src/bench/faults.ts).
import { Option, type Command } from "commander";
import { FAULT_CELLS, formatFaultMatrix, runFaultMatrix, type CellResult } from "../bench/faults.js";
import { FAULT_POINTS, type FaultPoint } from "../faults/index.js";
import { progressBar } from "../metrics/format.js";
import { probeBackend } from "../runtime/backends.js";
import type { BackendName } from "../sandbox/types.js";

export function registerBenchFaultsCommand(bench: Command): void {
  bench
    .command("faults")
    .description("inject each named fault on each backend and check it is caught, named, logged, explained and recovered from")
    .addOption(new Option("--backend <name>", "sandbox backend").choices(["microvm", "namespace", "both"]).default("both"))
    .addOption(new Option("--fault <name...>", "only these faults").choices([...FAULT_POINTS]))
    .option("--json", "print the cells as JSON")
    .action(async (o: { backend: BackendName | "both"; fault?: FaultPoint[]; json?: boolean }) => {
      const backends: BackendName[] = o.backend === "both" ? ["namespace", "microvm"] : [o.backend];
      const all: CellResult[] = [];
      for (const backend of backends) {
        const probe = await probeBackend(backend);
        if (!probe.available) {
          process.stderr.write(`luminaguard: ${backend} is unavailable here (${probe.reason ?? "?"}): its ${FAULT_CELLS.filter((c) => c.backends.includes(backend)).length} cells were not run\n`);
          if (o.backend !== "both") process.exitCode = 1;
          continue;
        }
        const bar = progressBar();
        const { cells, path } = await runFaultMatrix({ backend, ...(o.fault ? { faults: o.fault } : {}), progress: (label, done, total) => bar.update(label, done, total) });
        bar.done();
        all.push(...cells);
        if (!o.json) process.stdout.write(`${formatFaultMatrix(cells)}\nstored: ${path ?? "-"}\n`);
      }
      if (o.json) process.stdout.write(`${JSON.stringify(all, null, 2)}\n`);
      if (all.some((c) => !c.pass)) process.exitCode = 1;
    });
}
