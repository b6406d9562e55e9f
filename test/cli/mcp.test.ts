// `luminaguard mcp list` and `mcp call` against servers from a real config file, through the command line.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { FS_SERVER, SERVE_ENTRY } from "../mcp/helpers.js";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SERVE_ENTRY, "mcp", "--approval", "off", ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`mcp ${args.join(" ")} did not finish: ${stderr}`));
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function home(t: TestContext, config: unknown): { env: Record<string, string>; dir: string } {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "lg-mcp-cli-")));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "config.json"), typeof config === "string" ? config : JSON.stringify(config));
  writeFileSync(join(dir, "note.txt"), "a note");
  return { dir, env: { LUMINAGUARD_HOME: dir, LUMINAGUARD_CONFIG: "" } };
}

describe("mcp list / mcp call", () => {
  test("list every server's tools, naming the broken one; list one server; call a tool", async (t) => {
    const h = home(t, {});
    writeFileSync(
      join(h.dir, "config.json"),
      JSON.stringify({ mcpServers: { fs: { command: process.execPath, args: [FS_SERVER, h.dir] }, broken: { command: "/nonexistent/server" } } }),
    );
    const env = { ...h.env, LUMINAGUARD_CONFIG: join(h.dir, "config.json") };
    const all = await run(["list", "--json"], env);
    assert.equal(all.code, 1, "a broken server makes list exit 1");
    const listed = JSON.parse(all.stdout) as { tools: Array<{ name: string }>; errors: Record<string, { code: string; message: string }> };
    assert.ok(listed.tools.some((x) => x.name === "fs.read_text_file"));
    assert.match(listed.errors["broken"]?.message ?? "", /ENOENT/);
    assert.equal(listed.errors["broken"]?.code, "UPSTREAM_UNREACHABLE");
    const one = await run(["list", "fs"], env);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /^fs\.read_text_file\s+\S/m);
    const call = await run(["call", "fs", "read_text_file", "--args", JSON.stringify({ path: join(h.dir, "note.txt") })], env);
    assert.equal(call.code, 0, call.stderr);
    assert.equal((JSON.parse(call.stdout) as { content: Array<{ text: string }> }).content[0]?.text, "a note");
    const toolErr = await run(["call", "fs", "read_text_file", "--args", JSON.stringify({ path: "/etc/hostname" })], env);
    assert.equal(toolErr.code, 1, "an isError result exits 1");
    assert.equal((JSON.parse(toolErr.stdout) as { isError: boolean }).isError, true);
    const unknownTool = await run(["call", "fs", "nope"], env);
    assert.equal(unknownTool.code, 125);
    assert.match(unknownTool.stderr, /error \[NOT_FOUND\]: server fs has no tool "nope"/);
    const unknownServer = await run(["call", "ghost", "x"], env);
    assert.match(unknownServer.stderr, /error \[NOT_FOUND\]: no MCP server "ghost" is configured; configured: fs, broken/);
    const unreachable = await run(["call", "broken", "x"], env);
    assert.equal(unreachable.code, 125);
    assert.match(unreachable.stderr, /error \[UPSTREAM_UNREACHABLE\]: .*ENOENT/);
    const badArgs = await run(["call", "fs", "read_text_file", "--args", "[1]"], env);
    assert.equal(badArgs.code, 2);
    assert.match(badArgs.stderr, /--args must be a JSON object/);
  });

  test("a bad config file is reported with its path and key", async (t) => {
    const h = home(t, { mcpServers: { fs: { command: 42 } } });
    const r = await run(["list"], h.env);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.includes(`${join(h.dir, "config.json")}: mcpServers.fs.command:`), r.stderr);
    const empty = home(t, {});
    const none = await run(["list"], empty.env);
    assert.match(none.stderr, /no MCP servers are configured/);
  });
});
