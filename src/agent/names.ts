// Tool names as LLM APIs accept them: ^[a-zA-Z0-9_-]{1,64}$.
import { createHash } from "node:crypto";

export function safeToolName(name: string): string {
  const s = name.replace(/[^a-zA-Z0-9_-]/g, "_");
  if (s.length === 0) return "invalid_tool_call";
  if (s.length <= 64) return s;
  return `${s.slice(0, 55)}_${createHash("sha256").update(name).digest("hex").slice(0, 8)}`;
}
