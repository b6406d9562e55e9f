// The audit log: one fsynced JSON line per decision, outside any workspace, read back by `luminaguard audit`.
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { callbackApprover, nonInteractiveApprover } from "../../src/approval/approvers.js";
import { argsHash, AuditLog, canonicalJson, readAudit, type AuditEntry } from "../../src/approval/audit.js";
import { parseSince } from "../../src/cli/audit.js";
import { ApprovalGate } from "../../src/approval/gate.js";
import { LuminaGuardError } from "../../src/errors.js";
import { runCli, useTempHome } from "../agent/helpers.js";

const home = useTempHome();

test("canonical JSON and the arguments hash do not depend on key order", () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: "x" } }), '{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}');
  assert.equal(argsHash({ path: "a", content: "b" }), argsHash({ content: "b", path: "a" }));
  assert.notEqual(argsHash({ path: "a" }), argsHash({ path: "b" }));
  assert.match(argsHash({}), /^sha256:[0-9a-f]{64}$/);
});

test("every decision is appended as one line (mode 0600), torn lines are skipped, --since and --run filter", async () => {
  const file = join(home, "audit-a.jsonl");
  const audit = new AuditLog(file);
  const gate = new ApprovalGate({ approver: nonInteractiveApprover(), audit, runId: "run-1" });
  const read = await gate.check({ tool: "read_file", args: { path: "a" } });
  const write = await gate.check({ tool: "write_file", args: { path: "a", content: "x" } });
  assert.equal(read.decision, "allow");
  assert.equal(write.decision, "deny");
  assert.equal(write.code, "POLICY_DENIED");
  assert.equal(statSync(file).mode & 0o777, 0o600);
  appendFileSync(file, '{"v":1,"id":"torn","ti'); // a crash mid-line
  const gate2 = new ApprovalGate({ approver: callbackApprover(() => true, "ci-bot"), audit, runId: "run-2" });
  await gate2.check({ tool: "execute_command", args: { command: "make" } });
  const { entries, skipped } = readAudit(file);
  assert.equal(skipped, 1, "the torn line is skipped");
  assert.deepEqual(entries.map((e) => e.tool), ["read_file", "write_file", "execute_command"], "the entry after the torn line is intact");
  assert.equal(entries[2]?.actor, "ci-bot");
  assert.equal(entries[2]?.channel, "callback");
  const byRun = readAudit(file, { runId: "run-1" }).entries;
  assert.deepEqual(byRun.map((e) => [e.tool, e.decision, e.channel]), [
    ["read_file", "allow", "policy"],
    ["write_file", "deny", "non-interactive"],
  ]);
  assert.equal(byRun[1]?.argsHash, argsHash({ path: "a", content: "x" }));
  assert.equal(readAudit(file, { since: new Date(Date.now() + 60_000) }).entries.length, 0);
});

test("the audit log is refused inside the workspace, so a sandbox can never touch it", () => {
  const ws = join(home, "ws");
  mkdirSync(join(ws, "state"), { recursive: true });
  assert.throws(
    () => new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(join(ws, "state", "audit.jsonl")), workspace: ws }),
    (e: unknown) => e instanceof LuminaGuardError && e.code === "INVALID_ARGUMENT" && /inside the workspace/.test(e.message),
  );
  assert.throws(() => new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(join(ws, "audit.jsonl")), workspace: ws }), /inside the workspace/);
  // Outside (a sibling whose name merely starts with the workspace's) is fine.
  mkdirSync(`${ws}-other`, { recursive: true });
  new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(join(`${ws}-other`, "audit.jsonl")), workspace: ws });
});

test("an audit write that fails stops the decision: nothing proceeds unaudited", async () => {
  writeFileSync(join(home, "not-a-dir"), "");
  const gate = new ApprovalGate({ approver: callbackApprover(() => true), audit: new AuditLog(join(home, "not-a-dir", "audit.jsonl")) });
  await assert.rejects(gate.check({ tool: "write_file", args: { path: "a", content: "" } }), (e: unknown) => e instanceof LuminaGuardError && e.code === "IO_ERROR");
});

test("luminaguard audit [--since] [--json] reads $LUMINAGUARD_HOME/audit.jsonl", async () => {
  const gate = new ApprovalGate({ approver: nonInteractiveApprover(), runId: "cli-run" });
  await gate.check({ tool: "execute_command", args: { command: "rm -rf /workspace/*" } });
  const json = runCli(["audit", "--json", "--since", "1h"], { env: { LUMINAGUARD_HOME: home } });
  assert.equal(json.code, 0, json.stderr);
  const entries = JSON.parse(json.stdout) as AuditEntry[];
  const e = entries.find((x) => x.runId === "cli-run");
  assert.ok(e);
  assert.equal(e.decision, "deny");
  assert.equal(e.card["summary"], "run rm -rf /workspace/*");
  const human = runCli(["audit", "--run", "cli-run"], { env: { LUMINAGUARD_HOME: home } });
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /DENY\s+red\s+high\s+execute_command\s+via non-interactive \(policy\)\s+rule default:execute\s+run rm -rf/);
  assert.equal(runCli(["audit", "--since", "yesterday"], { env: { LUMINAGUARD_HOME: home } }).code, 2);
  assert.equal(parseSince("2h", 10_000_000).getTime(), 10_000_000 - 7_200_000);
  assert.equal(parseSince("2024-05-01T00:00:00Z").toISOString(), "2024-05-01T00:00:00.000Z");
});
