// A file the policy will not let an agent read never shows up in search or list_directory results either:
// not by content, not by name, not through a symlink; the result says how many entries were withheld.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { nonInteractiveApprover } from "../../src/approval/approvers.js";
import { AuditLog } from "../../src/approval/audit.js";
import { filterResult } from "../../src/approval/filter.js";
import { ApprovalGate } from "../../src/approval/gate.js";
import { parsePolicy } from "../../src/approval/policy.js";
import { tempWorkspace, unavailable } from "../fixtures.js";
import { runCli, useTempHome } from "../agent/helpers.js";
import { SERVE_ENTRY } from "../mcp/helpers.js";

const home = useTempHome();
const files = mkdtempSync(join(tmpdir(), "lg-filter-"));
process.on("exit", () => rmSync(files, { recursive: true, force: true }));

const RULES = [
  { id: "no-env", tool: ["read_file", "write_file"], path: "(^|/)\\.env$", action: "deny" },
  { id: "no-secrets", tool: "read_file", path: "^secrets(/|$)", action: "deny" },
];
const policyFile = join(files, "policy.json");
writeFileSync(policyFile, JSON.stringify({ version: 1, rules: RULES }));

/** A workspace with secrets at the top, deeper down, behind a symlink, and ordinary files next to them. */
function seed(dir: string): void {
  writeFileSync(join(dir, ".env"), "TOKEN=hunter2\n");
  writeFileSync(join(dir, "readme.md"), "see TOKEN in the docs\n");
  mkdirSync(join(dir, "app"));
  writeFileSync(join(dir, "app/.env"), "TOKEN=deep\n");
  writeFileSync(join(dir, "app/main.ts"), "const TOKEN = process.env.TOKEN;\n");
  mkdirSync(join(dir, "secrets"));
  writeFileSync(join(dir, "secrets/key.txt"), "TOKEN=key\n");
  symlinkSync("secrets/key.txt", join(dir, "public.txt"));
}

test("filterResult: denied paths leave list_directory and search results, counted; everything else is untouched", (t) => {
  const ws = mkdtempSync(join(tmpdir(), "lg-filter-ws-"));
  t.after(() => rmSync(ws, { recursive: true, force: true }));
  seed(ws);
  const policy = parsePolicy({ rules: RULES }, "p");
  const listing = {
    entries: ["app", "app/.env", "app/main.ts", ".env", "public.txt", "readme.md", "secrets", "secrets/key.txt"].map((path) => ({ path, type: "file", size: 1, mtimeMs: 0 })),
    truncated: false,
  };
  const listed = filterResult(policy, { tool: "list_directory", args: { depth: 2 } }, listing, { workspace: ws }) as typeof listing & { filtered?: number };
  assert.deepEqual(listed.entries.map((e) => e.path), ["app", "app/main.ts", "readme.md"]);
  assert.equal(listed.filtered, 5, "app/.env, .env, public.txt (a link to a secret), secrets, secrets/key.txt");
  const found = {
    matches: [
      { path: ".env", line: 1, text: "TOKEN=hunter2" },
      { path: "app/.env", line: 1, text: "TOKEN=deep" },
      { path: "app/main.ts", line: 1, text: "const TOKEN = process.env.TOKEN;" },
      { path: "secrets/key.txt" },
      { path: "readme.md", line: 1, text: "see TOKEN in the docs" },
    ],
    truncated: false,
    filesScanned: 5,
  };
  const searched = filterResult(policy, { tool: "search", args: { pattern: "TOKEN" } }, found, { workspace: ws }) as typeof found & { filtered?: number };
  assert.deepEqual(searched.matches.map((m) => m.path), ["app/main.ts", "readme.md"]);
  assert.equal(searched.filtered, 3);
  // Nothing to withhold: the very same object comes back, no `filtered` member.
  const clean = { entries: [{ path: "readme.md", type: "file", size: 1, mtimeMs: 0 }], truncated: false };
  assert.equal(filterResult(policy, { tool: "list_directory", args: {} }, clean), clean);
  // Other tools, external servers and a policy without read denials are passed through.
  assert.equal(filterResult(policy, { tool: "read_file", args: { path: "readme.md" } }, found), found);
  assert.equal(filterResult(policy, { server: "fs", tool: "search", args: {} }, found), found);
  assert.equal(filterResult(parsePolicy({}, "none"), { tool: "search", args: {} }, found), found);
  // A rule allowing reads of one secret first wins over the denial, exactly as it would for read_file.
  const allowOne = parsePolicy({ rules: [{ tool: "read_file", path: "^app/\\.env$", action: "allow" }, ...RULES] }, "p2");
  const some = filterResult(allowOne, { tool: "search", args: {} }, found, { workspace: ws }) as typeof found;
  assert.deepEqual(some.matches.map((m) => m.path), ["app/.env", "app/main.ts", "readme.md"]);
});

test("the gate filters with its own policy and workspace", (t) => {
  const ws = mkdtempSync(join(tmpdir(), "lg-filter-ws-"));
  t.after(() => rmSync(ws, { recursive: true, force: true }));
  seed(ws);
  const gate = new ApprovalGate({ approver: nonInteractiveApprover(), policy: parsePolicy({ rules: RULES }, "p"), audit: new AuditLog(join(home, "gate.jsonl")), workspace: ws });
  const r = gate.filterResult({ tool: "list_directory", args: {} }, { entries: [{ path: "public.txt", type: "symlink", size: 15, mtimeMs: 0 }], truncated: false }) as { entries: unknown[]; filtered?: number };
  assert.deepEqual([r.entries.length, r.filtered], [0, 1]);
});

describe("read denials filter real results", async () => {
  const skip = await unavailable("namespace");

  test("luminaguard run: search and list_directory never show a denied file to the model", { skip }, () => {
    const ws = tempWorkspace();
    try {
      seed(ws.dir);
      const plan = join(files, "plan.json");
      writeFileSync(
        plan,
        JSON.stringify({
          steps: [
            { tool: "list_directory", args: { depth: 3 } },
            { tool: "list_directory", args: { path: "secrets" } },
            { tool: "search", args: { pattern: "TOKEN" } },
            { tool: "search", args: { glob: "*" } },
            { tool: "search", args: { glob: ".env" } },
          ],
        }),
      );
      const r = runCli(["run", "--plan", plan, "--backend", "namespace", "--workspace", ws.dir, "--policy", policyFile, "--non-interactive", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const { runId } = JSON.parse(r.stdout) as { runId: string };
      const events = readFileSync(join(home, "runs", runId, "transcript.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; result?: Record<string, unknown> });
      const results = events.filter((e) => e.type === "tool_result").map((e) => e.result as { entries?: Array<{ path: string }>; matches?: Array<{ path: string; text?: string }>; filtered?: number });
      assert.equal(results.length, 5);
      const [all, secretDir, byContent, byName, envByName] = results;
      assert.deepEqual(all?.entries?.map((e) => e.path), ["app", "app/main.ts", "readme.md"]);
      assert.equal(all?.filtered, 5);
      assert.deepEqual([secretDir?.entries, secretDir?.filtered], [[], 1]);
      assert.deepEqual(byContent?.matches?.map((m) => m.path).sort(), ["app/main.ts", "readme.md"]);
      assert.equal(byContent?.filtered, 3, ".env, app/.env, secrets/key.txt (public.txt, a symlink, is not followed by search)");
      assert.ok(!JSON.stringify(results).includes("hunter2") && !JSON.stringify(results).includes("TOKEN=key"), "no secret content anywhere");
      assert.deepEqual(byName?.matches?.map((m) => m.path).sort(), ["app/main.ts", "readme.md"]);
      assert.deepEqual([envByName?.matches, envByName?.filtered], [[], 2]);
    } finally {
      ws.remove();
    }
  });

  test("luminaguard mcp: the same filter, and the filtered count validates against the advertised output schema", { skip }, async (t) => {
    const ws = tempWorkspace();
    seed(ws.dir);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [SERVE_ENTRY, "mcp", "--approval", "policy", "--policy", policyFile, "--backend", "namespace", "--workspace", ws.dir],
      env: { ...(process.env as Record<string, string>), LUMINAGUARD_HOME: home, LUMINAGUARD_LOG: "warn" },
      stderr: "pipe",
    });
    const client = new Client({ name: "filter-test", version: "1" });
    await client.connect(transport, { timeout: 60_000 });
    t.after(async () => {
      await client.close();
      ws.remove();
    });
    const list = await client.callTool({ name: "list_directory", arguments: { depth: 3 } });
    assert.equal(list.isError, undefined, JSON.stringify(list));
    const listed = list.structuredContent as { entries: Array<{ path: string }>; filtered?: number };
    assert.deepEqual(listed.entries.map((e) => e.path), ["app", "app/main.ts", "readme.md"]);
    assert.equal(listed.filtered, 5);
    const search = await client.callTool({ name: "search", arguments: { pattern: "TOKEN" } });
    assert.equal(search.isError, undefined, JSON.stringify(search));
    const found = search.structuredContent as { matches: Array<{ path: string }>; filtered?: number };
    assert.deepEqual(found.matches.map((m) => m.path).sort(), ["app/main.ts", "readme.md"]);
    assert.ok(!JSON.stringify(search.content).includes("hunter2"), "the text block is the filtered result too");
  });
});
