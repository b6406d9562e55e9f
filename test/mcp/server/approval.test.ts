// The approval cliff at the MCP edge: by default a host that cannot answer elicitation gets Red calls denied and audited.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { tempWorkspace, unavailable } from "../../fixtures.js";
import { SERVE_ENTRY, text } from "../helpers.js";

test("default --approval elicit: Green runs, Red is denied without elicitation, both are audited", { skip: await unavailable("namespace") }, async (t) => {
  const ws = tempWorkspace();
  const home = mkdtempSync(join(tmpdir(), "lg-home-"));
  writeFileSync(join(ws.dir, "keep.txt"), "original\n");
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [SERVE_ENTRY, "mcp", "--backend", "namespace", "--workspace", ws.dir],
    env: { ...(process.env as Record<string, string>), LUMINAGUARD_HOME: home, LUMINAGUARD_LOG: "warn" },
    stderr: "pipe",
  });
  const client = new Client({ name: "no-elicitation-host", version: "1" });
  await client.connect(transport, { timeout: 60_000 });
  t.after(async () => {
    await client.close();
    ws.remove();
    rmSync(home, { recursive: true, force: true });
  });
  const read = await client.callTool({ name: "read_file", arguments: { path: "keep.txt" } });
  assert.equal(read.isError, undefined);
  assert.equal(text(read as never), "original\n");
  const write = await client.callTool({ name: "write_file", arguments: { path: "keep.txt", content: "overwritten" } });
  assert.equal(write.isError, true);
  assert.match(text(write as never), /POLICY_DENIED/);
  const exec = await client.callTool({ name: "execute_command", arguments: { command: "touch made.txt" } });
  assert.equal(exec.isError, true);
  assert.equal(readFileSync(join(ws.dir, "keep.txt"), "utf8"), "original\n", "a denied write changes nothing");
  assert.equal(existsSync(join(ws.dir, "made.txt")), false, "a denied command never ran");
  const audit = readFileSync(join(home, "audit.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { tool: string; decision: string });
  assert.deepEqual(audit.map((e) => `${e.tool}:${e.decision}`), ["read_file:allow", "write_file:deny", "execute_command:deny"]);
});
