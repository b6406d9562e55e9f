// The card shows what will actually happen: the real target of a write through a symlink, a command's stdin,
// cwd and environment; whatever is shortened for the screen says how much was left out.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { callbackApprover } from "../../src/approval/approvers.js";
import { AuditLog, readAudit } from "../../src/approval/audit.js";
import { buildCard, renderCard, type Card } from "../../src/approval/card.js";
import { ApprovalGate } from "../../src/approval/gate.js";
import { useTempHome } from "../agent/helpers.js";

const home = useTempHome();
const red = { class: "red" as const, risk: "medium" as const, rule: "default:write", action: "ask" as const };

function workspace(t: { after: (fn: () => void) => void }): string {
  const ws = mkdtempSync(join(tmpdir(), "lg-card-ws-"));
  t.after(() => rmSync(ws, { recursive: true, force: true }));
  mkdirSync(join(ws, "docs"));
  writeFileSync(join(ws, "docs/real.md"), "real\n");
  mkdirSync(join(ws, ".git/hooks"), { recursive: true });
  symlinkSync("docs", join(ws, "notes"));
  symlinkSync("../.git/hooks", join(ws, "docs/hooks"));
  symlinkSync("real.md", join(ws, "docs/alias.md"));
  symlinkSync("../..", join(ws, "docs/up"));
  symlinkSync("/etc", join(ws, "etc"));
  return ws;
}

const write = (path: string, ws: string): Promise<Card> => buildCard({ tool: "write_file", args: { path, content: "new\n" } }, red, { workspace: ws, readFile: async () => null });

test("write_file through a symlinked directory names the real target", async (t) => {
  const ws = workspace(t);
  const viaDir = await write("notes/todo.md", ws);
  assert.equal(viaDir.details.kind === "write_file" && viaDir.details.target, "docs/todo.md");
  assert.match(viaDir.summary, /docs\/todo\.md/);
  assert.match(renderCard(viaDir), /target: docs\/todo\.md \(notes\/todo\.md passes through a symlink\)/);
  const hook = await write("docs/hooks/pre-commit", ws);
  assert.match(renderCard(hook), /target: \.git\/hooks\/pre-commit/);
  // A plain path has no separate target line.
  assert.doesNotMatch(renderCard(await write("docs/plain.md", ws)), /target:/);
});

test("write_file at a symlink replaces the link, not its target, and the card says so", async (t) => {
  const ws = workspace(t);
  const card = await write("docs/alias.md", ws);
  assert.equal(card.details.kind === "write_file" && card.details.replacesSymlink, "real.md");
  assert.match(renderCard(card), /replaces the symlink docs\/alias\.md \(→ real\.md\) with a regular file; real\.md is not changed/);
});

test("write_file that resolves outside the workspace: the card says the write will be refused", async (t) => {
  const ws = workspace(t);
  for (const p of ["docs/up/x.txt", "etc/passwd", "etc/new/file"]) {
    const card = await write(p, ws);
    assert.equal(card.details.kind === "write_file" && card.details.refused, true, p);
    assert.match(renderCard(card), /resolves outside the workspace .*: the sandbox will refuse this write/, p);
  }
});

test("execute_command card: stdin shown and clipped with a visible marker, whole in the audit log; cwd and env shown", async () => {
  const stdin = `${"line of input\n".repeat(400)}END`;
  const card = await buildCard(
    { tool: "execute_command", args: { command: "sort", cwd: "src", env: { LD_PRELOAD: "/workspace/x.so", MODE: "a b" }, stdin } },
    { ...red, risk: "high", rule: "default:execute" },
  );
  const text = renderCard(card);
  assert.match(text, /cwd:\s+src/);
  assert.match(text, /env:\s+LD_PRELOAD=\/workspace\/x\.so MODE='a b'/);
  assert.match(text, new RegExp(`stdin:\\s+${Buffer.byteLength(stdin)} bytes`));
  assert.match(text, /^\s+\| line of input$/m, "the content itself is on the card");
  const more = /… (\d+) more bytes of stdin not shown/.exec(text);
  assert.ok(more, text);
  const shown = [...text.matchAll(/^\s+\| (.*)$/gm)].map((m) => `${m[1]}\n`).join("");
  assert.equal(Buffer.byteLength(shown) + Number(more[1]), Buffer.byteLength(stdin), "shown + not shown = all of it");
  assert.ok(!text.includes("END"));

  const audit = new AuditLog(join(home, "stdin.jsonl"));
  const gate = new ApprovalGate({ approver: callbackApprover(() => false), audit });
  await gate.check({ tool: "execute_command", args: { command: "sort", stdin } });
  const [entry] = readAudit(audit.file).entries;
  assert.equal((entry?.card["details"] as { stdin?: string }).stdin, stdin, "the audit keeps every byte");
});

test("nothing is cut silently: clipped arguments, descriptions, summaries and diffs say how much is missing", async () => {
  const long = "x".repeat(5000);
  const ext = await buildCard({ server: "mail", tool: "send", args: { body: long, to: Array.from({ length: 250 }, (_, i) => `u${i}@x`) } }, { ...red, risk: "high" }, {
    toolInfo: { description: "d".repeat(3000) },
  });
  const text = renderCard(ext);
  assert.match(text, /… \[3000 more chars\]/);
  assert.match(text, /… \[50 more items\]/);
  assert.match(text, /description: d+… \[1000 more chars\]/);
  const cmd = await buildCard({ tool: "execute_command", args: { command: `echo ${"y".repeat(300)}` } }, { ...red, risk: "high" });
  assert.match(cmd.summary, /… \[\d+ more chars\]$/);
  assert.match(renderCard(cmd), new RegExp(`command: echo y{300}\\n`), "the details line has the whole command");
  const before = Array.from({ length: 300 }, (_, i) => `old ${i}`).join("\n");
  const after = Array.from({ length: 300 }, (_, i) => `new ${i}`).join("\n");
  const big = await buildCard({ tool: "write_file", args: { path: "f.txt", content: after } }, red, { readFile: async () => Buffer.from(before) });
  assert.match(renderCard(big, { maxDiffLines: 50 }), /… \d+ more diff lines not shown/);
});
