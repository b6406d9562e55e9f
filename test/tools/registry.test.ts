// The tool registry's promises: every tool is offered by MCP and to the model with the registry's schemas, has a
// policy class and risk, answers the guest protocol with its own result schema, and is parsed once per call.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import type { z } from "zod";
import { ToolCatalogue } from "../../src/agent/tools.js";
import { callbackApprover } from "../../src/approval/approvers.js";
import { AuditLog } from "../../src/approval/audit.js";
import { ApprovalGate } from "../../src/approval/gate.js";
import { DEFAULT_RULES, defaultPolicy, evaluatePolicy, READ_ONLY_TOOLS } from "../../src/approval/policy.js";
import { LuminaGuardError } from "../../src/errors.js";
import type { RequestOptions } from "../../src/protocol/channel.js";
import { resultSchemas } from "../../src/protocol/messages.js";
import { MCP_READ_MAX_BYTES, MCP_TOOLS } from "../../src/mcp/server/tools.js";
import { Sandbox } from "../../src/runtime/sandbox.js";
import { getBackend } from "../../src/runtime/backends.js";
import { isValidArgs, parseToolArgs, TOOL_NAMES, toolInputSchema, toolOutputSchema, TOOLS } from "../../src/tools/registry.js";
import { DEFAULT_LIMITS } from "../../src/tools/tool.js";
import { useTempHome } from "../agent/helpers.js";
import { unavailable } from "../fixtures.js";

const home = useTempHome();
const skip = await unavailable("namespace");

test("the registry is keyed by each tool's own name, and the five tools are there in order", () => {
  assert.deepEqual(TOOL_NAMES, ["read_file", "write_file", "list_directory", "search", "execute_command"]);
  for (const name of TOOL_NAMES) assert.equal(TOOLS[name].name, name);
});

test("MCP tools/list is the registry: names, order, descriptions, schemas and read-only hints", () => {
  assert.deepEqual(
    MCP_TOOLS.map((t) => t.name),
    TOOL_NAMES,
  );
  for (const t of MCP_TOOLS) {
    const def = TOOLS[t.name as (typeof TOOL_NAMES)[number]];
    assert.equal(t.title, def.title);
    assert.equal(t.description, def.describe({ ...DEFAULT_LIMITS, maxReadBytes: MCP_READ_MAX_BYTES }));
    assert.deepEqual(t.inputSchema, toolInputSchema(def.name));
    assert.deepEqual(t.outputSchema, toolOutputSchema(def.name));
    assert.equal(t.annotations?.readOnlyHint, def.readOnly);
    assert.equal(t.annotations?.destructiveHint, !def.readOnly);
    assert.equal(t.annotations?.idempotentHint, def.idempotent);
    // Every argument is described, and no description names an argument the schema lacks.
    assert.deepEqual(Object.keys(t.inputSchema.properties ?? {}).sort(), Object.keys(def.argDescriptions).sort());
    for (const [k, p] of Object.entries(t.inputSchema.properties ?? {})) assert.equal((p as { description?: string }).description, (def.argDescriptions as Record<string, string>)[k], `${t.name}.${k}`);
  }
});

test("the agent's catalogue offers every tool with the registry's text and input schema (minus zod's safe-integer bounds)", async () => {
  const specs = (await ToolCatalogue.create()).specs;
  assert.deepEqual(
    specs.map((s) => s.name),
    TOOL_NAMES,
  );
  for (const s of specs) {
    const def = TOOLS[s.name as (typeof TOOL_NAMES)[number]];
    assert.ok(s.description.startsWith(def.describe(DEFAULT_LIMITS)), s.name);
    assert.equal(s.description.includes("approval"), !def.readOnly, `${s.name}: only Red tools say they need approval`);
    assert.deepEqual(s.inputSchema, toolInputSchema(def.name, { dropSafeIntegerBounds: true }));
    assert.ok(!JSON.stringify(s.inputSchema).includes(String(Number.MAX_SAFE_INTEGER)));
  }
});

test("the approval policy classes and rates every tool from the registry, each under a built-in rule of its own", () => {
  const policy = defaultPolicy();
  assert.deepEqual(READ_ONLY_TOOLS, ["read_file", "list_directory", "search"]);
  assert.deepEqual(
    DEFAULT_RULES.map((r) => [r.id, r.tool, r.action, r.risk]),
    [
      ["default:read-only", ["read_file", "list_directory", "search"], "allow", "low"],
      ["default:write", "write_file", "ask", "medium"],
      ["default:execute", "execute_command", "ask", "high"],
      ["default:external", undefined, "ask", "high"],
      ["default:unknown", undefined, "ask", "high"],
    ],
  );
  for (const name of TOOL_NAMES) {
    const m = evaluatePolicy(policy, { tool: name, args: { path: "a", command: "true" } });
    assert.equal(m.class, TOOLS[name].readOnly ? "green" : "red", name);
    assert.equal(m.risk, TOOLS[name].risk, name);
    assert.notEqual(m.rule, "default:unknown", name);
  }
});

test("the guest protocol checks each tool's answer with the schema in that tool's module", () => {
  for (const name of TOOL_NAMES) assert.equal(resultSchemas[name], TOOLS[name].wireResult, name);
  for (const op of ["hello", "init", "cancel", "shutdown"] as const) assert.ok(resultSchemas[op]);
});

test("a result that lists workspace paths has a `filtered` count for what the policy withholds", () => {
  for (const name of TOOL_NAMES) {
    const shape = (TOOLS[name].result as unknown as z.ZodObject).shape;
    const list = TOOLS[name].pathList;
    assert.equal("filtered" in shape, list !== undefined, name);
    if (list !== undefined) assert.ok(list in shape, `${name}.${list}`);
  }
});

test("parseToolArgs: one parse, deep-frozen output, the same object back for arguments it already validated", () => {
  const raw = { command: ["echo", "hi"], env: { A: "1" } };
  const a = parseToolArgs("execute_command", raw);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.command) && Object.isFrozen(a.env));
  assert.ok(!Object.isFrozen(raw) && !Object.isFrozen(raw.command), "the caller's object is left alone");
  assert.equal(parseToolArgs("execute_command", a), a);
  assert.ok(isValidArgs("execute_command", a));
  assert.ok(!isValidArgs("execute_command", { ...a }), "a copy is not validated");
  assert.ok(!isValidArgs("write_file", a), "validated for one tool is not validated for another");
  assert.throws(
    () => parseToolArgs("search", { path: "" }),
    (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT" && e.message === "search: path: path must not be empty; args: search needs a pattern, a glob or both",
  );
});

/** A real namespace sandbox whose guest channel records each request on its way to the agent. */
async function recordingSandbox(t: TestContext, workspace: string): Promise<{ sandbox: Sandbox; sent: Array<{ op: string; args: Record<string, unknown> }> }> {
  const sent: Array<{ op: string; args: Record<string, unknown> }> = [];
  const handle = await getBackend("namespace").spawn({ id: `lg-reg-${randomBytes(4).toString("hex")}`, workspace, memoryMiB: 128, pidsMax: 64, vcpus: 1 });
  const real = handle.channel;
  const channel = new Proxy(real, {
    get(target, key, receiver) {
      if (key !== "request") return Reflect.get(target, key, receiver) as unknown;
      return (op: string, args: Record<string, unknown>, o?: RequestOptions) => {
        sent.push({ op, args });
        return (target.request as (op: string, args: unknown, o?: RequestOptions) => Promise<unknown>)(op, args, o);
      };
    },
  });
  const sandbox = Sandbox.fromHandle({ ...handle, channel, pids: () => handle.pids(), destroy: () => handle.destroy() }, { path: workspace, owned: false });
  t.after(() => sandbox.kill());
  return { sandbox, sent };
}

test("Sandbox.files.write validates its arguments like the other four: nothing bad reaches the guest", { skip }, async (t) => {
  const ws = mkdtempSync(join(tmpdir(), "lg-test-ws-"));
  t.after(() => rmSync(ws, { recursive: true, force: true }));
  const { sandbox, sent } = await recordingSandbox(t, ws);
  for (const path of ["", "a\0b"]) {
    await assert.rejects(sandbox.files.write(path, "hi"), (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT" && /^write_file: path: /.test(e.message));
  }
  assert.deepEqual(sent, []);
  await sandbox.files.write("a.txt", "hi");
  assert.deepEqual(sent, [{ op: "write_file", args: { path: "a.txt", content: Buffer.from("hi").toString("base64"), createParents: false } }]);
});

test("one call is parsed once: the edge parses, the gate's card and the sandbox take the parsed arguments as they are", { skip }, async (t) => {
  const ws = mkdtempSync(join(tmpdir(), "lg-test-ws-"));
  t.after(() => rmSync(ws, { recursive: true, force: true }));
  const { sandbox, sent } = await recordingSandbox(t, ws);
  const schema = TOOLS.write_file.args as unknown as { safeParse: (v: unknown) => unknown };
  const original = schema.safeParse;
  let parses = 0;
  schema.safeParse = (v: unknown) => {
    parses++;
    return original.call(schema, v);
  };
  t.after(() => {
    schema.safeParse = original;
  });
  const args = parseToolArgs("write_file", { path: "a.txt", content: "hi" });
  const gate = new ApprovalGate({ approver: callbackApprover(() => true), audit: new AuditLog(join(home, "audit.jsonl")) });
  const d = await gate.check({ tool: "write_file", args }, { readFile: async () => null });
  assert.equal(d.card.summary, "create a.txt (2 bytes)");
  assert.deepEqual(await sandbox.callTool("write_file", args), { path: "a.txt", bytesWritten: 2, servedBy: "jail" });
  assert.equal(parses, 1);
  // Raw arguments from an SDK caller are still parsed (once) at that edge.
  await sandbox.callTool("write_file", { path: "a.txt", content: "hi" });
  assert.equal(parses, 2);
  assert.equal(sent.length, 2);
});

test("callTool shapes each tool's answer into its JSON-safe result", { skip }, async (t) => {
  const ws = mkdtempSync(join(tmpdir(), "lg-test-ws-"));
  t.after(() => rmSync(ws, { recursive: true, force: true }));
  const { sandbox } = await recordingSandbox(t, ws);
  await sandbox.files.write("a.txt", "hi");
  const read = await sandbox.callTool("read_file", { path: "a.txt" });
  assert.deepEqual(read, { size: 2, offset: 0, bytesRead: 2, eof: true, encoding: "utf8", content: "hi", servedBy: "jail" });
  TOOLS.read_file.result.parse(read);
  const run = await sandbox.callTool("execute_command", { command: "true" });
  TOOLS.execute_command.result.parse(run);
});
