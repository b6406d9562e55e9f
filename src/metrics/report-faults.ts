// The fault matrix's section of `metrics report`: the latest `faults` run per backend as one table.
// (A function of its own for report.ts to call: `faultMatrixSection()`.)
import { latestRun, type StoredRun } from "./store.js";

const CHECKS = ["caught", "code", "log", "message", "recovery"] as const;

/** Markdown for the latest `bench faults` run of each backend, or "" when there is none. */
/** A stored run, or a report input (id and run only). */
type MatrixRun = Pick<StoredRun, "id" | "run"> & { path?: string };

export function faultMatrixSection(runs: readonly (MatrixRun | undefined)[] = [latestRun("faults", "namespace"), latestRun("faults", "microvm")]): string {
  const present = runs.filter((r): r is MatrixRun => r !== undefined);
  if (present.length === 0) return "";
  const lines = ["## Fault injection", "", "| fault | backend | result | code | caught | code ok | log ids | message | recovery |", "|---|---|---|---|---|---|---|---|---|"];
  let failed = 0;
  for (const { run } of present) {
    const info = run.info ?? {};
    const faults = Object.keys(info)
      .map((k) => /^cell\.([a-z@-]+)$/.exec(k)?.[1])
      .filter((f): f is string => f !== undefined);
    for (const f of faults) {
      const pass = info[`cell.${f}`] === "PASS";
      if (!pass) failed++;
      const checks = CHECKS.map((c) => (info[`cell.${f}.${c}`] === true ? "yes" : "**no**"));
      lines.push(`| ${f} | ${run.backend} | ${pass ? "PASS" : "**FAIL**"} | ${String(info[`cell.${f}.errorCode`] ?? "")} | ${checks.join(" | ")} |`);
    }
  }
  lines.push("", failed === 0 ? "Every cell passes." : `${failed} cell(s) fail: see the runs' notes.`, `Runs: ${present.map((r) => r.id).join(", ")}.`, "");
  return lines.join("\n");
}
