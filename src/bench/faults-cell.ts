// One cell of `luminaguard bench faults`, run as its own process with LUMINAGUARD_FAULTS armed:
// `node faults-cell.js <fault> <backend> [vm-files]` prints the cell's outcome as one JSON line on stdout.
import { FAULT_POINTS, type FaultPoint } from "../faults/index.js";
import type { BackendName } from "../sandbox/types.js";
import { runCellHere } from "./faults.js";

const [fault, backend, files] = process.argv.slice(2);
if (!(FAULT_POINTS as readonly string[]).includes(fault ?? "") || (backend !== "microvm" && backend !== "namespace")) {
  process.stderr.write(`usage: faults-cell.js <${FAULT_POINTS.join("|")}> <microvm|namespace>\n`);
  process.exit(2);
}
if (process.env["LUMINAGUARD_FAULTS"] === undefined) {
  process.stderr.write("faults-cell.js runs only with LUMINAGUARD_FAULTS set (by `luminaguard bench faults`)\n");
  process.exit(2);
}
const outcome = await runCellHere(fault as FaultPoint, backend as BackendName, files === "vm-files");
process.stdout.write(`${JSON.stringify(outcome)}\n`);
