// bench mcp fails unless every call our server answered is in its audit log.
import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { nonInteractiveApprover } from "../../src/approval/approvers.js";
import { AuditLog } from "../../src/approval/audit.js";
import { ApprovalGate } from "../../src/approval/gate.js";
import { parsePolicy } from "../../src/approval/policy.js";
import { checkAudited } from "../../src/bench/mcp.js";
import { LuminaGuardError } from "../../src/errors.js";
import { useTempHome } from "../agent/helpers.js";

const home = useTempHome();
const notAudited = (re: RegExp) => (e: unknown): boolean => e instanceof LuminaGuardError && /does not show every call/.test(e.message) && re.test(e.message);

test("checkAudited: passes when each answered read_file has its Green entry, fails for a missing, foreign or odd one", async () => {
  const file = join(home, "bench-audit.jsonl");
  const gate = new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(file) });
  for (let i = 0; i < 5; i++) await gate.check({ tool: "read_file", args: { path: "bench.txt" } });
  assert.deepEqual(checkAudited(file, { attempted: 5, succeeded: 5 }), { entries: 5, skipped: 0 });
  // A call that timed out on the client may or may not have reached the server.
  assert.deepEqual(checkAudited(file, { attempted: 7, succeeded: 5 }), { entries: 5, skipped: 0 });
  assert.throws(() => checkAudited(file, { attempted: 6, succeeded: 6 }), notAudited(/6 read_file calls succeeded but the audit log has 5/));
  assert.throws(() => checkAudited(file, { attempted: 4, succeeded: 4 }), notAudited(/5 read_file entries for 4 calls/));
  assert.throws(() => checkAudited(join(home, "no-such.jsonl"), { attempted: 1, succeeded: 1 }), notAudited(/has 0/));
  // An entry for another tool, or a read that was not a Green allow, means the bench did not measure what it says.
  await gate.check({ tool: "write_file", args: { path: "x", content: "" } });
  assert.throws(() => checkAudited(file, { attempted: 5, succeeded: 5 }), notAudited(/1 entries for other tools/));
  const file2 = join(home, "bench-audit-2.jsonl");
  const strict = new ApprovalGate({ approver: nonInteractiveApprover(), audit: new AuditLog(file2), policy: parsePolicy({ rules: [{ id: "ask-reads", tool: "read_file", action: "ask" }] }, "test") });
  await strict.check({ tool: "read_file", args: { path: "bench.txt" } });
  assert.throws(() => checkAudited(file2, { attempted: 1, succeeded: 0 }), notAudited(/not a Green allow by default:read-only/));
  appendFileSync(file2, "garbage\n");
  assert.throws(() => checkAudited(file2, { attempted: 1, succeeded: 0 }), notAudited(/1 unreadable lines/));
});
