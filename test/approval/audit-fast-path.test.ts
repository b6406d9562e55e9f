// The audit log's per-call fast path (bench mcp: every call audited at full speed) keeps every guarantee it had.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { nonInteractiveApprover } from "../../src/approval/approvers.js";
import { AuditLog, newAuditId, readAudit } from "../../src/approval/audit.js";
import { ApprovalGate } from "../../src/approval/gate.js";
import { evaluatePolicy, parsePolicy } from "../../src/approval/policy.js";
import { LuminaGuardError } from "../../src/errors.js";
import { useTempHome } from "../agent/helpers.js";

const home = useTempHome();

test("a torn line another writer leaves between two of our read-only entries does not swallow the second", async () => {
  const file = join(home, "torn-between-greens.jsonl");
  const gate = new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(file) });
  await gate.check({ tool: "read_file", args: { path: "a" } });
  await gate.check({ tool: "list_directory", args: { path: "." } });
  // Our last line ended the file; now another process dies mid-line.
  appendFileSync(file, '{"v":1,"id":"torn","tool":"read_f');
  await gate.check({ tool: "search", args: { pattern: "x" } });
  await gate.check({ tool: "read_file", args: { path: "b" } });
  const { entries, skipped } = readAudit(file);
  assert.equal(skipped, 1, "only the torn line is lost");
  assert.deepEqual(entries.map((e) => e.tool), ["read_file", "list_directory", "search", "read_file"]);
  // A whole line from another writer (the daemon and an MCP server share the log) is kept as well.
  appendFileSync(file, `${JSON.stringify({ ...entries[0], id: "other-writer" })}\n`);
  await gate.check({ tool: "read_file", args: { path: "c" } });
  assert.deepEqual(readAudit(file).entries.map((e) => e.id).slice(-2, -1), ["other-writer"]);
  assert.equal(readAudit(file).entries.length, 6);
});

test("a read-only decision's line is written before check() returns: a crash right after loses none (group commit batches only the fsync)", () => {
  const file = join(home, "crash.jsonl");
  const gateUrl = new URL("../../src/approval/gate.js", import.meta.url).href;
  const auditUrl = new URL("../../src/approval/audit.js", import.meta.url).href;
  const approversUrl = new URL("../../src/approval/approvers.js", import.meta.url).href;
  const script = `
    const { ApprovalGate } = await import(${JSON.stringify(gateUrl)});
    const { AuditLog } = await import(${JSON.stringify(auditUrl)});
    const { nonInteractiveApprover } = await import(${JSON.stringify(approversUrl)});
    const gate = new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(${JSON.stringify(file)}) });
    for (let i = 0; i < 300; i++) await gate.check({ tool: "read_file", args: { path: "f" + i } });
    process.kill(process.pid, "SIGKILL");
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { timeout: 60_000, encoding: "utf8", env: { ...process.env, LUMINAGUARD_HOME: home } });
  assert.equal(r.signal, "SIGKILL", `the child died by SIGKILL, not otherwise: ${r.stderr}`);
  const { entries, skipped } = readAudit(file);
  assert.equal(skipped, 0);
  assert.equal(entries.length, 300, "every decision made before the crash is in the log");
  assert.deepEqual(entries.slice(-1).map((e) => e.card["summary"]), ["read_file f299"]);
});

test("the outside-the-workspace check is remembered per workspace, never across workspaces", () => {
  const state = join(home, "ws-state");
  mkdirSync(state, { recursive: true });
  mkdirSync(join(home, "ws-other"), { recursive: true });
  const audit = new AuditLog(join(state, "audit.jsonl"));
  audit.assertOutside(join(home, "ws-other"));
  audit.assertOutside(join(home, "ws-other"));
  const inside = (e: unknown): boolean => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT" && /inside the workspace/.test(e.message);
  // A workspace that holds the log is refused every time, after another one passed.
  assert.throws(() => audit.assertOutside(state), inside);
  assert.throws(() => audit.assertOutside(home), inside);
  assert.throws(() => new ApprovalGate({ approver: nonInteractiveApprover(), audit, workspace: home }), inside);
});

test("audit ids stay unique and random when drawn from the pooled random bytes", () => {
  const ids = Array.from({ length: 3000 }, () => newAuditId());
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids.slice(0, 300)) assert.match(id, /^[0-9a-z]+-[0-9a-f]{10}$/);
  // Not a counter: the random parts of neighbours share no structure.
  const tails = new Set(ids.map((id) => id.slice(-10, -8)));
  assert.ok(tails.size > 100, `first random byte takes many values (${tails.size})`);
});

test("path rules still see a symlink's target when paths are resolved only for policies that have path rules", () => {
  const ws = join(home, "ws-links");
  mkdirSync(join(ws, "private"), { recursive: true });
  writeFileSync(join(ws, "private", "key"), "secret");
  symlinkSync("private", join(ws, "pub"));
  const policy = parsePolicy({ rules: [{ id: "no-private", tool: "read_file", path: "^private(/|$)", action: "deny" }] }, "test");
  assert.equal(evaluatePolicy(policy, { tool: "read_file", args: { path: "pub/key" } }, { workspace: ws }).rule, "no-private");
  assert.equal(evaluatePolicy(policy, { tool: "read_file", args: { path: "/workspace/pub/../pub/key" } }, { workspace: ws }).action, "deny");
  assert.equal(evaluatePolicy(policy, { tool: "read_file", args: { path: "other" } }, { workspace: ws }).rule, "default:read-only");
  // Without path rules nothing needs resolving, and the answer is the same default.
  assert.equal(evaluatePolicy(parsePolicy({}, "test"), { tool: "read_file", args: { path: "pub/key" } }, { workspace: ws }).action, "allow");
  // An allow on a path must hold for the resolved path too.
  const allowPub = parsePolicy({ rules: [{ id: "pub-writes", tool: "write_file", path: "^pub(/|$)", action: "allow" }] }, "test");
  assert.equal(evaluatePolicy(allowPub, { tool: "write_file", args: { path: "pub/key", content: "" } }, { workspace: ws }).action, "ask");
});


test("read-only decisions made in one tick share one write, all in the log, in order with a Red one made meanwhile", async () => {
  const file = join(home, "batched.jsonl");
  const gate = new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(file) });
  const greens = Array.from({ length: 40 }, (_, i) => gate.check({ tool: "read_file", args: { path: `f${i}` } }));
  // Denied by the non-interactive approver: fsynced at once, after the reads queued before it.
  const red = gate.check({ tool: "write_file", args: { path: "w", content: "" } });
  const more = Array.from({ length: 10 }, (_, i) => gate.check({ tool: "search", args: { pattern: `p${i}` } }));
  const decisions = await Promise.all([...greens, red, ...more]);
  const { entries, skipped } = readAudit(file);
  assert.equal(skipped, 0);
  assert.equal(entries.length, 51);
  assert.deepEqual(new Set(entries.map((e) => e.id)), new Set(decisions.map((d) => d.auditId)), "each decision's own entry");
  const at = (id: string): number => entries.findIndex((e) => e.id === id);
  const redAt = at(decisions[40]?.auditId ?? "");
  assert.ok(decisions.slice(0, 40).every((d) => at(d.auditId) < redAt), "reads decided before the write are logged before it");
  assert.deepEqual(entries.filter((e) => e.tool === "read_file").map((e) => e.card["summary"]), Array.from({ length: 40 }, (_, i) => `read_file f${i}`));
});

test("a batched read-only line that cannot be written fails every decision in its batch: none of those reads runs", async () => {
  writeFileSync(join(home, "not-a-dir-2"), "");
  const gate = new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(join(home, "not-a-dir-2", "audit.jsonl")) });
  const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => gate.check({ tool: "read_file", args: { path: `f${i}` } })));
  assert.equal(results.length, 5);
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert.ok(r.status === "rejected" && r.reason instanceof LuminaGuardError && r.reason.code === "IO_ERROR", String(r.status === "rejected" ? r.reason : ""));
  }
});
