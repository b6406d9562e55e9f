// Diff cards: unified diffs that `patch` applies exactly, command and external-tool cards, and terminal-safe rendering.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { buildCard, renderCard } from "../../src/approval/card.js";
import { unifiedDiff } from "../../src/approval/diff.js";
import { LuminaGuardError } from "../../src/errors.js";
import { hasCommand } from "../agent/helpers.js";

const red = { class: "red" as const, risk: "medium" as const, rule: "default:write", action: "ask" as const };

/** Applies `diff` with GNU patch (a real process) and returns the result. */
function applyWithPatch(oldText: string | undefined, diff: string): string {
  const dir = mkdtempSync(join(tmpdir(), "lg-patch-"));
  try {
    const file = join(dir, "f.txt");
    if (oldText !== undefined) writeFileSync(file, oldText);
    const r = spawnSync("patch", ["-s", "-p1", "--no-backup-if-mismatch", "-d", dir], { input: diff.replace(/^(---|\+\+\+) (a|b)\/\S+/gm, "$1 $2/f.txt").replace(/^--- \/dev\/null/m, "--- /dev/null"), encoding: "utf8" });
    assert.equal(r.status, 0, `patch failed: ${r.stdout}${r.stderr}\n${diff}`);
    return readFileSync(file, "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("unified diffs apply with patch(1) exactly, over random edits, new files and missing final newlines", { skip: hasCommand("patch") ? false : "patch(1) not installed" }, () => {
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 60; round++) {
    const base = Array.from({ length: 1 + rand(40) }, (_, i) => `line ${i} ${rand(5)}`);
    const next = [...base];
    for (let e = 0; e < 1 + rand(6); e++) {
      const at = rand(next.length + 1);
      const op = rand(3);
      if (op === 0) next.splice(at, 0, `inserted ${round}.${e}`);
      else if (op === 1 && next.length > 0) next.splice(Math.min(at, next.length - 1), 1);
      else if (next.length > 0) next[Math.min(at, next.length - 1)] = `changed ${round}.${e}`;
    }
    const oldText = base.join("\n") + (rand(4) === 0 ? "" : "\n");
    const newText = next.join("\n") + (rand(4) === 0 ? "" : "\n");
    const diff = unifiedDiff("f.txt", oldText, newText);
    if (oldText === newText) assert.equal(diff, "");
    else assert.equal(applyWithPatch(oldText, diff), newText, `round ${round}`);
  }
  const created = unifiedDiff("f.txt", undefined, "a\nb\n");
  assert.match(created, /^--- \/dev\/null\n\+\+\+ b\/f\.txt\n@@ -0,0 \+1,2 @@\n\+a\n\+b\n$/);
  assert.equal(applyWithPatch(undefined, created), "a\nb\n");
  assert.match(unifiedDiff("f.txt", "x", "x\n"), /\\ No newline at end of file/);
});

test("the diff matches diff(1) -u hunk for hunk", { skip: hasCommand("diff") ? false : "diff(1) not installed" }, () => {
  const dir = mkdtempSync(join(tmpdir(), "lg-diff-"));
  try {
    const a = Array.from({ length: 30 }, (_, i) => `row ${i}`).join("\n") + "\n";
    const b = a.replace("row 3\n", "row three\n").replace("row 20\n", "").replace("row 29\n", "row 29\nrow 30\n");
    writeFileSync(join(dir, "a"), a);
    writeFileSync(join(dir, "b"), b);
    const gnu = spawnSync("diff", ["-u", "a", "b"], { cwd: dir, encoding: "utf8" }).stdout;
    const ours = unifiedDiff("x", a, b);
    const hunks = (s: string): string => s.split("\n").filter((l) => !l.startsWith("---") && !l.startsWith("+++")).join("\n");
    assert.equal(hunks(ours), hunks(gnu));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("write_file card: a diff against the current file, a new file, binary content, a path that escapes", async () => {
  const current = new Map<string, Buffer>([["notes.md", Buffer.from("# Notes\nold line\n")], ["img.bin", Buffer.from([0, 1, 2])]]);
  const readFile = async (p: string): Promise<Buffer | null> => {
    if (p.startsWith("..")) throw new LuminaGuardError("PATH_ESCAPE", "escapes");
    return current.get(p) ?? null;
  };
  const edit = await buildCard({ tool: "write_file", args: { path: "notes.md", content: "# Notes\nnew line\n" } }, red, { readFile });
  assert.equal(edit.details.kind, "write_file");
  assert.match(edit.summary, /^overwrite notes\.md/);
  if (edit.details.kind !== "write_file") return;
  assert.equal(edit.details.newFile, false);
  assert.match(edit.details.diff ?? "", /^-old line$/m);
  assert.match(edit.details.diff ?? "", /^\+new line$/m);
  const created = await buildCard({ tool: "write_file", args: { path: "/workspace/new.txt", content: "hi\n" } }, red, { readFile });
  assert.match(created.summary, /^create new\.txt/);
  assert.match(renderCard(created), /new\.txt \(new file\)/);
  const bin = await buildCard({ tool: "write_file", args: { path: "img.bin", content: Buffer.from([9, 0, 9]).toString("base64"), encoding: "base64" } }, red, { readFile });
  assert.equal(bin.details.kind === "write_file" && bin.details.binary, true);
  assert.match(renderCard(bin), /binary content: 3 → 3 bytes/);
  const escape = await buildCard({ tool: "write_file", args: { path: "../x", content: "" } }, red, { readFile });
  assert.match(renderCard(escape), /leaves the workspace/);
});

test("execute_command and external cards; model text cannot redraw the terminal or fake a prompt", async () => {
  const cmd = await buildCard(
    { tool: "execute_command", args: { command: ["sh", "-c", "echo hi > out"], cwd: "sub", env: { MODE: "prod run" }, stdin: "abc" } },
    { ...red, risk: "high", rule: "default:execute" },
  );
  const text = renderCard(cmd);
  assert.match(text, /command: sh -c 'echo hi > out'/);
  assert.match(text, /cwd:\s+sub/);
  assert.match(text, /env:\s+MODE='prod run'/);
  assert.match(text, /stdin:\s+3 bytes/);
  assert.match(text, /risk: high\s+rule: default:execute/);

  const ext = await buildCard({ server: "mail", tool: "send", args: { to: "a@b.c", body: "x".repeat(5000) } }, { ...red, risk: "high", rule: "default:external" }, {
    toolInfo: { description: "Send an e-mail", readOnlyHint: true },
  });
  const etext = renderCard(ext);
  assert.match(etext, /server: mail\s+tool: send\s+\(server claims read-only; not trusted\)/);
  assert.match(etext, /"to": "a@b\.c"/);
  assert.match(etext, /x… \[3000 more chars\]/, "long arguments are clipped, saying how much was cut");

  const evil = "harmless\x1b[2K\r\x1b[1AAllow this action? [y/N] y\u202Etxt.exe";
  const sneaky = await buildCard({ tool: "write_file", args: { path: "a.txt", content: `${evil}\n` } }, red, { readFile: async () => null });
  const shown = renderCard(sneaky);
  assert.ok(!shown.includes("\x1b"), "no escape sequence reaches the terminal");
  assert.ok(!shown.includes("\r"), "no carriage return reaches the terminal");
  assert.ok(!shown.includes("\u202E"), "no bidi override reaches the terminal");
  assert.match(shown, /\\x1b\[2K\\x0d/);
});
