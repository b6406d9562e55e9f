// Plan files: a fixed sequence of tool calls replayed through the same loop and cliff as a model, for offline, repeatable runs.
import { resolve } from "node:path";
import { z } from "zod";
import { LuminaGuardError } from "../errors.js";
import { parseWith, readJsonFile } from "../util/json-file.js";
import type { CompletionRequest, ModelProvider, ModelTurn } from "./types.js";

const planStepSchema = z.strictObject({
  tool: z.string().min(1).max(256),
  /** An external MCP server; absent for the built-in tools. */
  server: z.string().min(1).max(256).optional(),
  args: z.record(z.string(), z.unknown()).optional(),
  note: z.string().max(2000).optional(),
});

const planSchema = z.strictObject({
  description: z.string().max(10_000).optional(),
  steps: z.array(planStepSchema).max(100_000),
});

export type Plan = z.infer<typeof planSchema>;

function parsePlan(raw: unknown, source: string): Plan {
  return parseWith(planSchema, raw, (issues) => new LuminaGuardError("INVALID_ARGUMENT", `plan ${source}: ${issues.join("; ")}`, { details: { source, issues } }));
}

export function loadPlan(file: string): Plan {
  const path = resolve(file);
  return readJsonFile(path, (raw) => parsePlan(raw, path), {
    unreadable: (err) => new LuminaGuardError("NOT_FOUND", `plan ${path}: cannot read: ${err.message}`, { cause: err }),
    notJson: (err) => new LuminaGuardError("INVALID_ARGUMENT", `plan ${path}: not valid JSON: ${err.message}`, { cause: err }),
  });
}

/** Plays the plan as if it were a model: one step per turn, then a final answer. */
export class PlanProvider implements ModelProvider {
  readonly id: string;
  private next = 0;

  constructor(
    private readonly plan: Plan,
    source = "plan",
  ) {
    this.id = `plan:${source}`;
  }

  complete(req: CompletionRequest): Promise<ModelTurn> {
    if (req.signal.aborted) return Promise.reject(new LuminaGuardError("CANCELLED", "plan run cancelled"));
    const usage = { inputTokens: 0, outputTokens: 0 };
    const step = this.plan.steps[this.next];
    if (step === undefined) {
      return Promise.resolve({ content: `plan finished: ${this.plan.steps.length} step(s)`, toolCalls: [], stopReason: "end_turn", usage });
    }
    const index = this.next++;
    return Promise.resolve({
      content: step.note ?? "",
      toolCalls: [{ id: `plan-${index + 1}`, name: step.tool, args: step.args ?? {}, ...(step.server !== undefined ? { server: step.server } : {}) }],
      stopReason: "tool_use",
      usage,
    });
  }
}
