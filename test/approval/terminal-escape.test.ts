// Nothing a model, a guest, a workspace file, an MCP peer or an error message says can drive the terminal:
// control characters, escape sequences and bidi overrides are printed as visible escapes.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { buildCard, renderCard } from "../../src/approval/card.js";
import { escapeForTerminal } from "../../src/util/terminal.js";
import { tempWorkspace, unavailable } from "../fixtures.js";
import { runCli, runCliAwait, useTempHome } from "../agent/helpers.js";
import { FakeLlmServer, OPENAI_KEY } from "../agent/llm-server.js";

useTempHome();
const server = await FakeLlmServer.start();
after(() => server.close());

const OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07";
const CLEAR = "\x1b[2J";
/** Raw bytes a terminal would act on. */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const ACTIVE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/u;

test("escapeForTerminal: C0 (but newline and tab), DEL, C1 and bidi controls become visible escapes", () => {
  assert.equal(escapeForTerminal(`a${OSC52}b${CLEAR}\r\n\tc\x7f\x9b\u202e\u2066`), "a\\x1b]52;c;cm0gLXJmIH4K\\x07b\\x1b[2J\\x0d\n\tc\\x7f\\x9b\\u202e\\u2066");
  assert.equal(escapeForTerminal("one\ntwo", false), "one\\ntwo");
  assert.equal(escapeForTerminal("plain ünïcode ✓"), "plain ünïcode ✓");
});

test("a card for a file whose name carries ESC shows it escaped", async () => {
  const card = await buildCard({ tool: "write_file", args: { path: `x${CLEAR}\x1b]0;pwned\x07.txt`, content: "hi\n" } }, { class: "red", risk: "medium", rule: "default:write", action: "ask" }, { readFile: async () => null });
  const text = renderCard(card);
  assert.doesNotMatch(text, ACTIVE);
  assert.match(text, /x\\x1b\[2J\\x1b\]0;pwned\\x07\.txt/);
});

test("an error message with ESC is printed escaped", () => {
  const r = runCli(["tool", "read_file", "--args", `${CLEAR}${OSC52}`]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /luminaguard: error \[INVALID_ARGUMENT\]: --args is not valid JSON/);
  assert.doesNotMatch(r.stderr, ACTIVE, JSON.stringify(r.stderr));
  assert.match(r.stderr, /\\x1b\[2J/);
  // --json keeps it as JSON, which escapes control characters itself.
  const j = runCli(["tool", "read_file", "--args", `${CLEAR}`, "--json"]);
  assert.doesNotMatch(j.stdout + j.stderr, ACTIVE);
});

describe("luminaguard run prints model text escaped", async () => {
  const skip = await unavailable("namespace");
  const env = { OPENAI_BASE_URL: server.openaiBaseUrl, OPENAI_API_KEY: OPENAI_KEY };

  test("a final answer with OSC 52 and a screen clear: escaped on stdout and in the progress lines", { skip }, async () => {
    const ws = tempWorkspace();
    try {
      server.setScript([{ text: `Done.${OSC52}${CLEAR}\rAll good\u202etxt.exe\nsecond line\tok` }]);
      const r = await runCliAwait(["run", "task", "--model", "openai:gpt-4o-mini", "--backend", "namespace", "--workspace", ws.dir, "--non-interactive"], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, ACTIVE, JSON.stringify(r.stdout));
      assert.doesNotMatch(r.stderr, ACTIVE, JSON.stringify(r.stderr));
      assert.equal(r.stdout, "Done.\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\x0dAll good\\u202etxt.exe\nsecond line\tok\n", "newlines and tabs stay");
      assert.match(r.stderr, /model: Done\.\\x1b\]52/);
      // --json is JSON: already inert, and the text is kept as the model sent it.
      server.setScript([{ text: `x${OSC52}` }]);
      const j = await runCliAwait(["run", "task", "--model", "openai:gpt-4o-mini", "--backend", "namespace", "--workspace", ws.dir, "--non-interactive", "--json"], { env });
      assert.equal((JSON.parse(j.stdout) as { finalText: string }).finalText, `x${OSC52}`);
    } finally {
      ws.remove();
    }
  });

  test("an endpoint's error message with escape sequences is printed escaped", { skip }, async () => {
    server.setScript([{ status: 400, message: `bad request${CLEAR}${OSC52}` }]);
    const r = await runCliAwait(["run", "task", "--model", "openai:gpt-4o-mini", "--backend", "namespace", "--non-interactive"], { env });
    assert.equal(r.code, 125, r.stderr);
    assert.doesNotMatch(r.stderr, ACTIVE, JSON.stringify(r.stderr));
    assert.match(r.stderr, /error \[LLM_UNAVAILABLE\]: .*bad request\\x1b\[2J\\x1b\]52/);
  });
});
