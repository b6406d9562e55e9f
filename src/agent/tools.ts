// The tools a run offers the model: the five built-ins and any external MCP tools, under API-safe unique names.
import { DEFAULT_LIMITS } from "../tools/tool.js";
import { isToolName, TOOL_NAMES, TOOLS, toolInputSchema, type ToolName } from "../tools/registry.js";
import { safeToolName } from "./names.js";
import type { ExternalToolInfo, ExternalTools, ToolSpec } from "./types.js";

/** Said of every tool that is not read-only: the run's approval gate stands before it. */
const NEEDS_APPROVAL = " Needs a person's approval unless the policy allows it; a denial means nothing was changed.";

export type ResolvedTool = { kind: "builtin"; tool: ToolName } | { kind: "external"; server: string; tool: string; info: ExternalToolInfo };

export class ToolCatalogue {
  private readonly byName = new Map<string, ResolvedTool>();
  private readonly external = new Map<string, ExternalToolInfo>();
  readonly specs: ToolSpec[] = [];

  private constructor(externalTools: readonly ExternalToolInfo[]) {
    for (const name of TOOL_NAMES) {
      this.byName.set(name, { kind: "builtin", tool: name });
      const t = TOOLS[name];
      this.specs.push({ name, description: t.describe(DEFAULT_LIMITS) + (t.readOnly ? "" : NEEDS_APPROVAL), inputSchema: toolInputSchema(name, { dropSafeIntegerBounds: true }) });
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
