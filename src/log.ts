// pino logger writing to stderr only: stdout belongs to command output and MCP stdio.
import { pino, type Logger } from "pino";

export const log: Logger = pino(
  { name: "luminaguard", level: process.env["LUMINAGUARD_LOG"] ?? "warn" },
  pino.destination({ fd: 2, sync: true }),
);
