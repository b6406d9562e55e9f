// Where a micro-VM's file tools run by default: LUMINAGUARD_FILE_TOOLS, else the config file's `fileTools`, else
// "host" where the namespace jail works. A spawn's own `fileTools` option overrides both.
import { loadConfig } from "../config/config.js";
import { LuminaGuardError } from "../errors.js";
import { FILE_TOOLS_MODES, type FileToolsMode } from "../sandbox/types.js";

export function parseFileTools(value: string, where: string): FileToolsMode {
  if ((FILE_TOOLS_MODES as readonly string[]).includes(value)) return value as FileToolsMode;
  throw new LuminaGuardError("INVALID_ARGUMENT", `${where}: ${JSON.stringify(value)} is not a file-tools mode (${FILE_TOOLS_MODES.join(" or ")})`);
}

export function fileToolsDefault(env: NodeJS.ProcessEnv = process.env): { fileTools?: FileToolsMode } {
  const fromEnv = env["LUMINAGUARD_FILE_TOOLS"];
  if (fromEnv) return { fileTools: parseFileTools(fromEnv, "LUMINAGUARD_FILE_TOOLS") };
  const fromConfig = loadConfig().fileTools;
  return fromConfig ? { fileTools: fromConfig } : {};
}
