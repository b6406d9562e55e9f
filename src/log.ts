// pino logger writing to stderr only: stdout belongs to command output and MCP stdio.
// pino (and its ~30 CommonJS modules) is loaded at the first message at an enabled level, not at
// startup: a one-shot command at the default level "warn" that logs nothing never loads it.
import { createRequire } from "node:module";
import type { Logger } from "pino";

const LEVEL = process.env["LUMINAGUARD_LOG"] ?? "warn";

/** pino's numeric levels: a call below the configured level is a no-op without loading pino. */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

let real: Logger | undefined;

function pinoLogger(): Logger {
  if (!real) {
    const { pino } = createRequire(import.meta.url)("pino") as typeof import("pino");
    real = pino({ name: "luminaguard", level: LEVEL }, pino.destination({ fd: 2, sync: true }));
  }
  return real;
}

// A level pino does not know (or a custom one) is pino's to judge, at once, as before.
let threshold = LEVELS[LEVEL];
if (threshold === undefined) pinoLogger();

const noop = (): void => undefined;

export const log: Logger = new Proxy({} as Logger, {
  get(_target, prop) {
    if (typeof prop === "string" && threshold !== undefined && prop !== "silent") {
      const n = LEVELS[prop];
      if (n !== undefined && n < threshold) return noop;
    }
    const l = pinoLogger();
    const v: unknown = Reflect.get(l, prop, l);
    return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(l) : v;
  },
  set(_target, prop, value) {
    const l = pinoLogger();
    const ok = Reflect.set(l, prop, value);
    if (prop === "level") threshold = LEVELS[l.level];
    return ok;
  },
  has(_target, prop) {
    return Reflect.has(pinoLogger(), prop);
  },
});
