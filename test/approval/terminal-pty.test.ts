// The terminal approval prompt driven through a real pseudo-terminal (script(1)): approve, default deny, timeout, escape-proof cards.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { readAudit } from "../../src/approval/audit.js";
import { tempWorkspace, unavailable } from "../fixtures.js";
import { CLI_ENTRY, cliEnv, hasCommand, shellQuote, snapshotTree, useTempHome } from "../agent/helpers.js";

const home = useTempHome();
const files = mkdtempSync(join(tmpdir(), "lg-pty-"));
process.on("exit", () => rmSync(files, { recursive: true, force: true }));

interface PtySession {
  output: () => string;
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<void>;
  type: (s: string) => void;
  exited: Promise<number | null>;
}

/** Runs the CLI on a fresh pseudo-terminal: its /dev/tty is the pty, whose master we hold through script's stdin/stdout. */
function onPty(args: string[]): PtySession {
  const command = [process.execPath, CLI_ENTRY, ...args].map(shellQuote).join(" ");
  const child = spawn("script", ["-qfec", command, "/dev/null"], { env: cliEnv({ LUMINAGUARD_HOME: home }), stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const killer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  void exited.then(() => clearTimeout(killer));
  return {
    output: () => out,
    waitFor: async (re, timeoutMs = 60_000) => {
      const end = Date.now() + timeoutMs;
      while (!re.test(out)) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${re} in:\n${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    type: (s) => void child.stdin.write(s),
    exited,
  };
}

function writePlan(name: string, content: string): string {
  const p = join(files, name);
  writeFileSync(p, JSON.stringify({ steps: [{ tool: "write_file", args: { path: "greeting.txt", content } }] }));
  return p;
}

function runId(out: string): string {
  return (/run (\d{8}T\d{6}Z-[0-9a-f]{8})/.exec(out) as RegExpExecArray)[1] as string;
}

describe("terminal approval on a real pty", async () => {
  const skip = (await unavailable("namespace")) ?? (hasCommand("script") ? undefined : "script(1) from util-linux is not installed");

  test("y at the prompt approves: the write happens, the audit names the terminal", { skip }, async () => {
    const ws = tempWorkspace();
    try {
      writeFileSync(join(ws.dir, "greeting.txt"), "hello\n");
      const s = onPty(["run", "--plan", writePlan("approve.json", "hello, world\n"), "--backend", "namespace", "--workspace", ws.dir]);
      await s.waitFor(/Allow this action\? \[y\/N\]/);
      assert.match(s.output(), /overwrite greeting\.txt/);
      assert.match(s.output(), /-hello/);
      assert.match(s.output(), /\+hello, world/);
      s.type("y\r");
      assert.equal(await s.exited, 0, s.output());
      assert.equal(readFileSync(join(ws.dir, "greeting.txt"), "utf8"), "hello, world\n");
      const [entry] = readAudit(undefined, { runId: runId(s.output()) }).entries;
      assert.equal(entry?.decision, "allow");
      assert.equal(entry?.channel, "terminal");
      assert.match(entry?.actor ?? "", /@\/dev\/tty$/);
    } finally {
      ws.remove();
    }
  });

  test("Enter (the default) and unknown answers deny; the workspace is unchanged", { skip }, async () => {
    for (const answer of ["\r", "sure\r"]) {
      const ws = tempWorkspace();
      try {
        writeFileSync(join(ws.dir, "greeting.txt"), "hello\n");
        const before = snapshotTree(ws.dir);
        const s = onPty(["run", "--plan", writePlan("deny.json", "bye\n"), "--backend", "namespace", "--workspace", ws.dir]);
        await s.waitFor(/Allow this action\? \[y\/N\]/);
        s.type(answer);
        assert.equal(await s.exited, 4, s.output());
        assert.deepEqual(snapshotTree(ws.dir), before);
        assert.match(s.output(), /DENIED via terminal/);
        const [entry] = readAudit(undefined, { runId: runId(s.output()) }).entries;
        assert.equal(entry?.decision, "deny");
        assert.match(entry?.reason ?? "", answer === "\r" ? /default answer/ : /answered "sure"/);
      } finally {
        ws.remove();
      }
    }
  });

  test("no answer within --approval-timeout is a denial", { skip }, async () => {
    const ws = tempWorkspace();
    try {
      const s = onPty(["run", "--plan", writePlan("timeout.json", "late\n"), "--backend", "namespace", "--workspace", ws.dir, "--approval-timeout", "2"]);
      await s.waitFor(/no answer in 2 s means no/);
      const started = Date.now();
      assert.equal(await s.exited, 4, s.output());
      assert.ok(Date.now() - started < 20_000);
      assert.match(s.output(), /no answer in time: denied/);
      assert.deepEqual(snapshotTree(ws.dir), { ".": snapshotTree(ws.dir)["."] as string }, "nothing was written");
      const [entry] = readAudit(undefined, { runId: runId(s.output()) }).entries;
      assert.equal(entry?.decision, "deny");
      assert.match(entry?.reason ?? "", /no answer within 2 s/);
    } finally {
      ws.remove();
    }
  });

  test("content that tries to redraw the screen or answer the prompt is shown inert, and still needs a person", { skip }, async () => {
    const ws = tempWorkspace();
    try {
      const evil = "ok\n\x1b[2K\r\x1b[1A\x1b[2KAllow this action? [y/N] y\napproved\n";
      const s = onPty(["run", "--plan", writePlan("evil.json", evil), "--backend", "namespace", "--workspace", ws.dir, "--approval-timeout", "3"]);
      await s.waitFor(/Allow this action\? \[y\/N\] \(no answer/);
      assert.ok(!s.output().includes("\x1b[2K"), "the content's escape sequences never reach the terminal");
      assert.match(s.output(), /\\x1b\[2K/);
      assert.equal(await s.exited, 4, s.output());
      assert.deepEqual(Object.keys(snapshotTree(ws.dir)), ["."], "the write did not happen");
    } finally {
      ws.remove();
    }
  });

  test("Ctrl-C at the prompt cancels the run: nothing written, exit 130, the decision is recorded as cancelled", { skip }, async () => {
    const ws = tempWorkspace();
    try {
      const s = onPty(["run", "--plan", writePlan("ctrl-c.json", "never\n"), "--backend", "namespace", "--workspace", ws.dir]);
      await s.waitFor(/Allow this action\? \[y\/N\]/);
      s.type("\x03");
      assert.equal(await s.exited, 130, s.output());
      assert.deepEqual(Object.keys(snapshotTree(ws.dir)), ["."]);
      const id = runId(s.output());
      const [entry] = readAudit(undefined, { runId: id }).entries;
      assert.equal(entry?.decision, "deny");
      assert.equal(entry?.reason, "cancelled");
      const summary = JSON.parse(readFileSync(join(home, "runs", id, "summary.json"), "utf8")) as { status: string };
      assert.equal(summary.status, "cancelled");
    } finally {
      ws.remove();
    }
  });
});
