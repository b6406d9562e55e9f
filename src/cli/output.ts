// How the CLI reports errors: one line with the code on stderr, JSON when asked; exit codes a script can use.
import { LuminaGuardError, toLuminaGuardError } from "../errors.js";
import { escapeForTerminal } from "../util/terminal.js";

/** Exit codes: 124 like timeout(1) for TOOL_TIMEOUT, 125 for LuminaGuard's own failures, 2 for bad usage. */
export function exitCodeFor(err: LuminaGuardError): number {
  if (err.code === "TOOL_TIMEOUT") return 124;
  // A refused workspace is a bad argument too: the user named a directory that may not be shared.
  if (err.code === "INVALID_ARGUMENT" || err.code === "WORKSPACE_FORBIDDEN") return 2;
  return 125;
}

export function reportError(err: unknown, json = false): number {
  const e = toLuminaGuardError(err);
  if (json) process.stdout.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
  else {
    // Messages carry what others wrote (paths, a model endpoint's answer, a guest's console): never raw to a terminal.
    process.stderr.write(`luminaguard: error [${e.code}]: ${escapeForTerminal(e.message)}\n`);
    const console = e.details["console"];
    if (typeof console === "string" && console) process.stderr.write(`guest console (last lines):\n${escapeForTerminal(console)}\n`);
    const qemu = e.details["qemuStderr"];
    if (typeof qemu === "string" && qemu) process.stderr.write(`qemu: ${escapeForTerminal(qemu)}\n`);
  }
  return exitCodeFor(e);
}

export function parseIntOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new LuminaGuardError("INVALID_ARGUMENT", `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}
