// Results that would show what the policy will not let an agent read: search and list_directory entries of
// read-denied files are withheld, and the result says how many.
import { isToolName, TOOLS } from "../tools/registry.js";
import { evaluatePolicy, isRecord, type EvaluateOptions, type Policy, type ToolCallRequest } from "./policy.js";

/**
 * A built-in `list_directory` or `search` result without the entries whose path a `read_file` would be denied
 * for (the same policy, first match wins, symlinks resolved when `workspace` is given), with `filtered`: how
 * many entries were withheld. Anything else, or a result with nothing to withhold, comes back as it is.
 *
 * Without this, a deny rule on reading `.env` would still let `search` print its lines, or a name-only glob
 * list the file: the read rule is about the content and the name, not about the one tool.
 */
export function filterResult<T>(policy: Policy, call: ToolCallRequest, result: T, options: EvaluateOptions = {}): T {
  const key = call.server === undefined && isToolName(call.tool) ? TOOLS[call.tool].pathList : undefined;
  if (key === undefined || !isRecord(result) || !canDenyReads(policy)) return result;
  const items = result[key];
  if (!Array.isArray(items)) return result;
  const verdicts = new Map<string, boolean>();
  const denied = (path: string): boolean => {
    let d = verdicts.get(path);
    if (d === undefined) {
      d = evaluatePolicy(policy, { tool: "read_file", args: { path } }, options).action === "deny";
      verdicts.set(path, d);
    }
    return d;
  };
  const kept = items.filter((item) => !(isRecord(item) && typeof item["path"] === "string" && denied(item["path"])));
  const withheld = items.length - kept.length;
  if (withheld === 0) return result;
  const before = typeof result["filtered"] === "number" ? result["filtered"] : 0;
  return { ...result, [key]: kept, filtered: before + withheld } as T;
}

/**
 * Whether any rule could deny a built-in read_file (a deny rule for built-in tools whose tool pattern takes
 * read_file in). When none can, results need no filtering, which keeps the common case free.
 */
function canDenyReads(policy: Policy): boolean {
  return policy.rules.some((c) => c.rule.action === "deny" && c.server === undefined && (c.tool === undefined || c.tool.some((g) => g.test("read_file"))));
}
