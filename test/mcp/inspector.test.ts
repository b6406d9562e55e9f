// The MCP Inspector (@modelcontextprotocol/inspector, CLI mode, on Node 22 from npm) as a second real client:
// over stdio (it starts `luminaguard mcp`) and over Streamable HTTP (with the bearer token header), it lists the
// tools, calls each one, gets an error result, and has a path escape refused.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { serveHttp } from "../../src/mcp/server/serve-http.js";
import { run } from "../../src/util/proc.js";
import { unavailable } from "../fixtures.js";
import { SERVE_ENTRY } from "./helpers.js";
import { PINNED, onNode22 } from "./test-tools.js";

interface Outcome {
  code: number | null;
  json: Record<string, unknown>;
  stderr: string;
}

const TOOLS = ["read_file", "write_file", "list_directory", "search", "execute_command"];

function resultText(r: Record<string, unknown>): string {
  const c = (r["content"] as { type: string; text?: string }[] | undefined)?.[0];
  return c?.type === "text" ? (c.text ?? "") : "";
}

describe("MCP Inspector CLI as a client", async () => {
  const tools = await onNode22("inspector");
  const backend = await unavailable("namespace");
  const skip = "skip" in tools ? tools.skip : backend;

  /** One Inspector CLI invocation (`inspector --cli <target...> --method ...`); its stdout is one JSON document. */
  const inspect = async (home: string, target: string[], args: string[]): Promise<Outcome> => {
    if ("skip" in tools) throw new Error(tools.skip);
    const r = await run([tools.node, tools.entry, "--cli", ...target, ...args], {
      cwd: home,
      timeoutMs: 120_000,
      // Its catalog and settings go to a throwaway home, not the user's.
      env: { ...process.env, HOME: home, LUMINAGUARD_LOG: "warn" },
    });
    assert.equal(r.timedOut, false, `inspector ${args.join(" ")} finished`);
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(r.stdout) as Record<string, unknown>;
    } catch {
      assert.fail(`inspector ${args.join(" ")}: stdout is not JSON (exit ${r.code}): ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 1000)}`);
    }
    return { code: r.code, json, stderr: r.stderr };
  };

  /** The same session of checks over either transport. */
  const exercise = async (home: string, target: string[]): Promise<void> => {
    const call = (name: string, ...kv: string[]): Promise<Outcome> => inspect(home, target, ["--method", "tools/call", "--tool-name", name, ...kv.flatMap((a) => ["--tool-arg", a])]);
    const list = await inspect(home, target, ["--method", "tools/list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual((list.json["tools"] as { name: string }[]).map((t) => t.name), TOOLS);
    const level = await inspect(home, target, ["--method", "logging/setLevel", "--log-level", "warning"]);
    assert.equal(level.code, 0, `logging/setLevel: ${level.stderr}`);

    const w = await call("write_file", "path=notes/hello.txt", "content=hello from the inspector", "createParents=true");
    assert.equal(w.code, 0, `${JSON.stringify(w.json)} ${w.stderr}`);
    const r = await call("read_file", "path=notes/hello.txt");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(resultText(r.json), "hello from the inspector");
    const l = await call("list_directory", "path=notes");
    assert.equal(l.code, 0, l.stderr);
    assert.match(JSON.stringify(l.json["structuredContent"]), /hello\.txt/);
    const s = await call("search", "pattern=inspector");
    assert.equal(s.code, 0, s.stderr);
    assert.match(JSON.stringify(s.json["structuredContent"]), /notes\/hello\.txt/);
    const x = await call("execute_command", "command=cat notes/hello.txt; echo; id -u");
    assert.equal(x.code, 0, x.stderr);
    assert.match(String((x.json["structuredContent"] as { stdout: string }).stdout), /^hello from the inspector\n\d+\n$/);

    // An error result: the Inspector reports isError (exit 5) and shows our code.
    const missing = await call("read_file", "path=nope.txt");
    assert.notEqual(missing.code, 0);
    assert.equal(missing.json["isError"], true);
    assert.match(resultText(missing.json), /^NOT_FOUND: /);
    // A path escape, refused.
    for (const path of ["../../../etc/passwd", "/etc/shadow"]) {
      const esc = await call("read_file", `path=${path}`);
      assert.equal(esc.json["isError"], true, path);
      assert.match(resultText(esc.json), /^PATH_ESCAPE: /, path);
    }
  };

  test(`inspector ${PINNED.inspector.version} over stdio: tools/list, every tool, an error, a path escape`, { skip, timeout: 600_000 }, async (t) => {
    const home = mkdtempSync(join(tmpdir(), "lg-inspector-"));
    const ws = mkdtempSync(join(tmpdir(), "lg-inspector-ws-"));
    t.after(() => {
      rmSync(home, { recursive: true, force: true });
      rmSync(ws, { recursive: true, force: true });
    });
    await exercise(home, [process.execPath, SERVE_ENTRY, "mcp", "--backend", "namespace", "--approval", "off", "--workspace", ws]);
    assert.equal(readFileSync(join(ws, "notes/hello.txt"), "utf8"), "hello from the inspector", "the write landed in the workspace");
  });

  test(`inspector ${PINNED.inspector.version} over Streamable HTTP with the bearer token`, { skip, timeout: 600_000 }, async (t) => {
    const home = mkdtempSync(join(tmpdir(), "lg-inspector-"));
    const ws = mkdtempSync(join(tmpdir(), "lg-inspector-ws-"));
    const server = await serveHttp({ backend: "namespace", port: 0, token: "inspector-token", workspace: ws });
    t.after(async () => {
      await server.close();
      rmSync(home, { recursive: true, force: true });
      rmSync(ws, { recursive: true, force: true });
    });
    const noToken = await inspect(home, [server.url, "--transport", "http"], ["--method", "tools/list"]).catch((e: unknown) => e);
    assert.ok(noToken instanceof Error || (noToken as Outcome).code !== 0, "without the token the Inspector is refused");
    await exercise(home, [server.url, "--transport", "http", "--header", "Authorization: Bearer inspector-token"]);
    assert.equal(readFileSync(join(ws, "notes/hello.txt"), "utf8"), "hello from the inspector");
  });
});
