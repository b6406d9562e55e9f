// `luminaguard run` as a user runs it: plan files end to end in real sandboxes, a model over HTTP, Ctrl-C, bad input.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { AuditEntry } from "../../src/approval/audit.js";
import { BACKENDS, tempWorkspace, unavailable } from "../fixtures.js";
import { FakeLlmServer, OPENAI_KEY } from "../agent/llm-server.js";
import { alive, descendants, runCli, runCliAsync, runCliAwait, snapshotTree, useTempHome } from "../agent/helpers.js";

const home = useTempHome();
const files = mkdtempSync(join(tmpdir(), "lg-run-files-"));
process.on("exit", () => rmSync(files, { recursive: true, force: true }));
const server = await FakeLlmServer.start();
after(() => server.close());

const plan = (steps: unknown[]): string => {
  const p = join(files, `plan-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(p, JSON.stringify({ description: "test plan", steps }));
  return p;
};
const policyFile = join(files, "policy.json");
writeFileSync(
  policyFile,
  JSON.stringify({
    version: 1,
    rules: [
      { id: "out-writes", tool: "write_file", path: "^out/", action: "allow" },
      { id: "safe-commands", tool: "execute_command", command: "^(cat|wc) [a-z/.]+$|^sleep \\d+$", action: "allow" },
    ],
  }),
);

function runIdOf(stderr: string): string {
  const m = /run (\d{8}T\d{6}Z-[0-9a-f]{8})/.exec(stderr);
  assert.ok(m, `no run id in: ${stderr}`);
  return m[1] as string;
}

function auditOf(runId: string): AuditEntry[] {
  const r = runCli(["audit", "--json", "--run", runId]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as AuditEntry[];
}

const E2E_PLAN = [
  { tool: "list_directory", args: {} },
  { tool: "read_file", args: { path: "in.txt" } },
  { tool: "write_file", args: { path: "out/result.txt", content: "from the plan\n", createParents: true } },
  { tool: "execute_command", args: { command: "cat out/result.txt" } },
  { tool: "search", args: { pattern: "plan" } },
];

for (const backend of BACKENDS) {
  describe(`run --plan on ${backend}`, async () => {
    const skip = await unavailable(backend);

    test("a plan file runs end to end in a sandbox: allowed by policy, transcript and audit written", { skip }, () => {
      const ws = tempWorkspace();
      try {
        writeFileSync(join(ws.dir, "in.txt"), "input\n");
        const r = runCli(["run", "--plan", plan(E2E_PLAN), "--backend", backend, "--workspace", ws.dir, "--policy", policyFile, "--non-interactive", "--json"]);
        assert.equal(r.code, 0, r.stderr);
        const summary = JSON.parse(r.stdout) as { status: string; toolCalls: number; denied: number; failed: number; runId: string; finalText: string };
        assert.deepEqual([summary.status, summary.toolCalls, summary.denied, summary.failed], ["completed", 5, 0, 0]);
        assert.equal(summary.finalText, "plan finished: 5 step(s)");
        assert.equal(readFileSync(join(ws.dir, "out/result.txt"), "utf8"), "from the plan\n");
        const runDir = join(home, "runs", summary.runId);
        assert.deepEqual(readdirSync(runDir).sort(), ["summary.json", "transcript.jsonl"]);
        const events = readFileSync(join(runDir, "transcript.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; ok?: boolean; result?: { stdout?: string } });
        const results = events.filter((e) => e.type === "tool_result");
        assert.equal(results.length, 5);
        assert.equal(results[3]?.result?.stdout, "from the plan\n");
        assert.equal((JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")) as { model: string }).model.startsWith("plan:"), true);
        assert.deepEqual(auditOf(summary.runId).map((e) => [e.tool, e.decision, e.rule]), [
          ["list_directory", "allow", "default:read-only"],
          ["read_file", "allow", "default:read-only"],
          ["write_file", "allow", "out-writes"],
          ["execute_command", "allow", "safe-commands"],
          ["search", "allow", "default:read-only"],
        ]);
      } finally {
        ws.remove();
      }
    });
  });
}

describe("run on the namespace backend", async () => {
  const skip = await unavailable("namespace");

  test("--non-interactive denies Red steps: exit 4, workspace byte-identical, denials in the audit log", { skip }, () => {
    const ws = tempWorkspace();
    try {
      writeFileSync(join(ws.dir, "keep.txt"), "precious\n");
      const before = snapshotTree(ws.dir);
      const r = runCli([
        "run",
        "--plan",
        plan([
          { tool: "write_file", args: { path: "keep.txt", content: "gone\n" } },
          { tool: "execute_command", args: { command: "rm -f keep.txt" } },
          { tool: "write_file", args: { path: "out/x.txt", content: "x" } },
          { tool: "no_such_tool", args: {} },
        ]),
        "--backend",
        "namespace",
        "--workspace",
        ws.dir,
        "--non-interactive",
      ]);
      assert.equal(r.code, 4, r.stderr);
      assert.deepEqual(snapshotTree(ws.dir), before);
      assert.match(r.stderr, /write_file: overwrite keep\.txt \(5 bytes\) → DENIED via non-interactive \(rule default:write\)/);
      assert.match(r.stderr, /no_such_tool failed: INVALID_ARGUMENT: unknown tool/);
      assert.deepEqual(auditOf(runIdOf(r.stderr)).map((e) => [e.tool, e.decision, e.channel]), [
        ["write_file", "deny", "non-interactive"],
        ["execute_command", "deny", "non-interactive"],
        ["write_file", "deny", "non-interactive"],
      ]);
    } finally {
      ws.remove();
    }
  });

  test("--model against an OpenAI-compatible endpoint from the environment", { skip }, async () => {
    const ws = tempWorkspace();
    try {
      writeFileSync(join(ws.dir, "a.txt"), "alpha\n");
      server.setScript([{ calls: [{ name: "read_file", args: { path: "a.txt" } }] }, (view) => ({ text: `The file holds ${JSON.stringify(JSON.parse(view.toolResults[0]?.content ?? "{}").content)}` })]);
      const r = await runCliAwait(["run", "what is in a.txt?", "--model", "openai:gpt-4o-mini", "--backend", "namespace", "--workspace", ws.dir, "--non-interactive"], {
        env: { OPENAI_BASE_URL: server.openaiBaseUrl, OPENAI_API_KEY: OPENAI_KEY },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'The file holds "alpha\\n"\n', "stdout carries only the answer");
      assert.deepEqual(server.invalid, []);
      server.setScript([{ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }]);
      const down = await runCliAwait(["run", "x", "--model", "openai:gpt-4o-mini", "--backend", "namespace", "--non-interactive"], {
        env: { OPENAI_BASE_URL: server.openaiBaseUrl, OPENAI_API_KEY: OPENAI_KEY },
        timeoutMs: 120_000,
      });
      assert.equal(down.code, 125);
      assert.match(down.stderr, /retry 1 in/);
      assert.match(down.stderr, /error \[LLM_UNAVAILABLE\]: openai:gpt-4o-mini: the model endpoint failed after 5 attempts: HTTP 500/);
    } finally {
      ws.remove();
    }
  });

  test("Ctrl-C cancels cleanly: exit 130, nothing left running, the transcript says cancelled", { skip }, async () => {
    const ws = tempWorkspace();
    try {
      const child = runCliAsync([
        "run",
        "--plan",
        plan([{ tool: "execute_command", args: { command: "sleep 60" } }]),
        "--backend",
        "namespace",
        "--workspace",
        ws.dir,
        "--policy",
        policyFile,
        "--non-interactive",
      ]);
      let stderr = "";
      child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
      const seen: number[] = [];
      const deadline = Date.now() + 60_000;
      // Wait until the command is running inside the sandbox.
      while (!/sleep 60 → ALLOWED/.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      for (const p of descendants(child.pid as number)) seen.push(p);
      assert.ok(seen.length > 0, `the sandbox runs as child processes: ${stderr}`);
      const started = Date.now();
      child.kill("SIGINT");
      const code = await exited;
      assert.equal(code, 130, stderr);
      assert.ok(Date.now() - started < 15_000);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(alive(seen), [], "every process of the run is gone");
      const summary = JSON.parse(readFileSync(join(home, "runs", runIdOf(stderr), "summary.json"), "utf8")) as { status: string };
      assert.equal(summary.status, "cancelled");
    } finally {
      ws.remove();
    }
  });
});

test("bad input: a broken plan names the file and the path; a missing task or model is exit 2", async () => {
  const broken = join(files, "broken.json");
  writeFileSync(broken, JSON.stringify({ steps: [{ tool: "read_file", args: { path: "a" } }, { tol: "x" }] }));
  const r = runCli(["run", "--plan", broken, "--non-interactive", "--backend", "namespace"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`INVALID_ARGUMENT\\]: plan ${broken.replace(/\./g, "\\.")}: steps\\.1`));
  assert.equal(runCli(["run", "task", "--non-interactive"], { env: { LUMINAGUARD_MODEL: "" } }).code, 2);
  const noTty = await runCliAwait(["run", "task", "--model", "openai:x"], { env: { OPENAI_BASE_URL: server.openaiBaseUrl } });
  // spawnSync runs without a controlling terminal only when the test runner has none; either way it must not prompt on stdin.
  if (noTty.code === 2) assert.match(noTty.stderr, /no terminal to ask for approvals: use --non-interactive/);
  assert.equal(runCli(["run", "--plan", broken, "--model", "openai:x", "--non-interactive"]).code, 2);
});
