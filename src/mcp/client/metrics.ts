// Latency of every MCP client call, per server and tool, kept in memory for the bench and (later) the daemon's /metrics.
import type { McpFailureReason } from "./errors.js";

/** How a call ended: a result, a result with `isError`, or one of the named failures. */
export type CallOutcome = "ok" | "tool_error" | McpFailureReason;

interface ToolCallStats {
  calls: number;
  outcomes: Partial<Record<CallOutcome, number>>;
  /** The most recent latencies in ms (at most `maxSamples`), in no particular order. */
  samples: number[];
}

class Ring {
  private readonly values: number[] = [];
  private next = 0;
  constructor(private readonly capacity: number) {}

  push(v: number): void {
    if (this.values.length < this.capacity) this.values.push(v);
    else {
      this.values[this.next] = v;
      this.next = (this.next + 1) % this.capacity;
    }
  }

  snapshot(): number[] {
    return [...this.values];
  }
}

interface Entry {
  calls: number;
  outcomes: Partial<Record<CallOutcome, number>>;
  ring: Ring;
}

export class McpClientMetrics {
  private readonly entries = new Map<string, Map<string, Entry>>();

  constructor(private readonly maxSamples = 10_000) {}

  record(server: string, tool: string, ms: number, outcome: CallOutcome): void {
    let byTool = this.entries.get(server);
    if (!byTool) this.entries.set(server, (byTool = new Map()));
    let e = byTool.get(tool);
    if (!e) byTool.set(tool, (e = { calls: 0, outcomes: {}, ring: new Ring(this.maxSamples) }));
    e.calls++;
    e.outcomes[outcome] = (e.outcomes[outcome] ?? 0) + 1;
    e.ring.push(ms);
  }

  /** Latency samples (ms) of one server's tool. */
  samples(server: string, tool: string): number[] {
    return this.entries.get(server)?.get(tool)?.ring.snapshot() ?? [];
  }

  snapshot(): Record<string, Record<string, ToolCallStats>> {
    const out: Record<string, Record<string, ToolCallStats>> = {};
    for (const [server, byTool] of this.entries) {
      const s: Record<string, ToolCallStats> = {};
      for (const [tool, e] of byTool) s[tool] = { calls: e.calls, outcomes: { ...e.outcomes }, samples: e.ring.snapshot() };
      out[server] = s;
    }
    return out;
  }

  reset(): void {
    this.entries.clear();
  }
}
