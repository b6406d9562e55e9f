#!/usr/bin/env node
// The `luminaguard` command: each command group registers itself from its own file here, and only the
// group a command line names is loaded (a command starts like node, not like every module at once).
// The bundled bin (src/cli/bin.ts) runs this file for every command but exec and tool (main-exec.ts).
import { runCli, type Groups } from "./program.js";

/** Every command group, in help order, loaded when named (all of them only for the top-level help). */
const GROUPS: Groups = {
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

runCli(GROUPS);
