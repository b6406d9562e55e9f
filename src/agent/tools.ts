// The tools a run offers the model: the five built-ins and any external MCP tools, under API-safe unique names.
import { z } from "zod";
import { isToolName, TOOL_NAMES, toolArgSchemas, type ToolName } from "../tools/registry.js";
import { safeToolName } from "./names.js";
import type { ExternalToolInfo, ExternalTools, ToolSpec } from "./types.js";

const DESCRIPTIONS: Record<ToolName, string> = {
  read_file: "Read a file in the workspace (/workspace; relative paths resolve there). Returns its content (utf8, or base64 when binary).",
  write_file: "Create or replace a file in the workspace. Needs a person's approval unless the policy allows it; a denial means nothing was written.",
  list_directory: "List a directory in the workspace (name, type, size, mtime), optionally recursively with depth.",
  search: "Search the workspace: a POSIX extended regex per line (pattern) and/or a file-name glob.",
  execute_command:
    "Run a command in an isolated sandbox with no network, working directory /workspace. A string runs under sh -c; an array is argv. Needs a person's approval unless the policy allows it.",
};

export type ResolvedTool = { kind: "builtin"; tool: ToolName } | { kind: "external"; server: string; tool: string; info: ExternalToolInfo };

export class ToolCatalogue {
  private readonly byName = new Map<string, ResolvedTool>();
  private readonly external = new Map<string, ExternalToolInfo>();
  readonly specs: ToolSpec[] = [];

  private constructor(externalTools: readonly ExternalToolInfo[]) {
    for (const name of TOOL_NAMES) {
      this.byName.set(name, { kind: "builtin", tool: name });
      this.specs.push({ name, description: DESCRIPTIONS[name], inputSchema: builtinSchema(name) });
    }
    for (const info of externalTools) {
      this.external.set(`${info.server}\0${info.name}`, info);
      let name = safeToolName(`${info.server}__${info.name}`);
      for (let n = 2; this.byName.has(name); n++) name = safeToolName(`${info.server}__${info.name}_${n}`);
      this.byName.set(name, { kind: "external", server: info.server, tool: info.name, info });
      this.specs.push({
        name,
        description: `[MCP server ${info.server}] ${info.description ?? info.name}`.slice(0, 1024),
        inputSchema: info.inputSchema["type"] === "object" ? info.inputSchema : { type: "object", properties: {} },
      });
    }
  }

  static async create(external?: ExternalTools, signal?: AbortSignal): Promise<ToolCatalogue> {
    return new ToolCatalogue(external ? await external.list(signal ? { signal } : {}) : []);
  }

  /** By the name the model used, or by server and tool name (plan steps). */
  resolve(name: string, server?: string): ResolvedTool | undefined {
    if (server !== undefined) {
      const info = this.external.get(`${server}\0${name}`);
      return info ? { kind: "external", server, tool: name, info } : undefined;
    }
    const r = this.byName.get(name);
    if (r) return r;
    return isToolName(name) ? { kind: "builtin", tool: name } : undefined;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }
}

function builtinSchema(name: ToolName): Record<string, unknown> {
  const s = z.toJSONSchema(toolArgSchemas[name], { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  delete s["$schema"];
  return stripHugeMaximum(s) as Record<string, unknown>;
}

/** Number.MAX_SAFE_INTEGER bounds add nothing for a model; drop them. */
function stripHugeMaximum(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripHugeMaximum);
  if (typeof v !== "object" || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === "maximum" && x === Number.MAX_SAFE_INTEGER) continue;
    out[k] = stripHugeMaximum(x);
  }
  return out;
}
