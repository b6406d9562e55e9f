// The official SDK client against `luminaguard mcp` over stdio: tools, schemas, results, bad input, disconnects, both backends.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import { tempWorkspace, unavailable } from "../../fixtures.js";
import { SERVE_ENTRY, alive, pidsWithCmdline, sandboxAncestors, sandboxPids, sdkStdioClient, text, uniqueSleep, until } from "../helpers.js";

describe("mcp server over stdio (namespace)", async () => {
  const skip = await unavailable("namespace");

  test("lists the five tools with schemas, descriptions and annotations", { skip }, async (t) => {
    const ws = tempWorkspace();
    const { client } = await sdkStdioClient(["--backend", "namespace", "--workspace", ws.dir]);
    t.after(async () => {
      await client.close();
      ws.remove();
    });
    const info = client.getServerVersion();
    assert.equal(info?.name, "luminaguard");
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((x) => x.name).sort(), ["execute_command", "list_directory", "read_file", "search", "write_file"]);
    const byName = new Map(tools.map((x) => [x.name, x]));
    const read = byName.get("read_file");
    assert.ok(read?.description && read.description.length > 20);
    assert.deepEqual(read.inputSchema.required, ["path"]);
    assert.equal((read.inputSchema as { additionalProperties?: unknown }).additionalProperties, false);
    assert.ok((read.inputSchema.properties?.["path"] as { description?: string }).description?.includes("workspace"));
    assert.equal(read.outputSchema?.type, "object");
    assert.equal(read.annotations?.readOnlyHint, true);
    assert.equal(byName.get("write_file")?.annotations?.destructiveHint, true);
    assert.equal(byName.get("execute_command")?.annotations?.readOnlyHint, false);
    assert.equal(byName.get("execute_command")?.annotations?.openWorldHint, false);
    assert.equal(byName.get("search")?.annotations?.readOnlyHint, true);
  });

  test("every tool works in the sandbox and returns structured results the SDK validates", { skip }, async (t) => {
    const ws = tempWorkspace();
    writeFileSync(join(ws.dir, "hello.txt"), "hello from the host\n");
    const { client } = await sdkStdioClient(["--backend", "namespace", "--workspace", ws.dir]);
    t.after(async () => {
      await client.close();
      ws.remove();
    });
    await client.listTools(); // caches the output schemas: every callTool below is validated against them
    const read = await client.callTool({ name: "read_file", arguments: { path: "hello.txt" } });
    assert.equal(read.isError, undefined);
    assert.equal(text(read as never), "hello from the host\n");
    assert.deepEqual(read.structuredContent, { content: "hello from the host\n", encoding: "utf8", size: 20, offset: 0, bytesRead: 20, eof: true, servedBy: "jail" });

    const w = await client.callTool({ name: "write_file", arguments: { path: "out/new.txt", content: "written by mcp", createParents: true } });
    assert.deepEqual(w.structuredContent, { path: "out/new.txt", bytesWritten: 14, servedBy: "jail" });
    assert.equal(readFileSync(join(ws.dir, "out/new.txt"), "utf8"), "written by mcp");

    const ls = await client.callTool({ name: "list_directory", arguments: { depth: 2 } });
    const entries = (ls.structuredContent as { entries: Array<{ path: string; type: string }> }).entries.map((e) => `${e.type}:${e.path}`);
    assert.deepEqual(entries, ["file:hello.txt", "dir:out", "file:out/new.txt"]);

    const s = await client.callTool({ name: "search", arguments: { pattern: "host" } });
    assert.deepEqual((s.structuredContent as { matches: unknown[] }).matches, [{ path: "hello.txt", line: 1, text: "hello from the host" }]);

    const x = await client.callTool({ name: "execute_command", arguments: { command: "cat hello.txt; echo oops >&2; exit 3" } });
    assert.equal(x.isError, undefined, "a command that fails is a result, not a tool error");
    const xr = x.structuredContent as { exitCode: number; stdout: string; stderr: string };
    assert.equal(xr.exitCode, 3);
    assert.equal(xr.stdout, "hello from the host\n");
    assert.equal(xr.stderr, "oops\n");
    const bin = await client.callTool({ name: "execute_command", arguments: { command: ["printf", "\\000\\001"] } });
    assert.equal((bin.structuredContent as { exitCode: number }).exitCode, 0);
    writeFileSync(join(ws.dir, "bin.dat"), Buffer.from([0, 1, 2, 255]));
    const rb = await client.callTool({ name: "read_file", arguments: { path: "bin.dat" } });
    assert.equal((rb.structuredContent as { encoding: string; content: string }).encoding, "base64");
    assert.equal((rb.structuredContent as { content: string }).content, Buffer.from([0, 1, 2, 255]).toString("base64"));
  });

  test("bad input: protocol errors or isError results, and the session keeps serving", { skip }, async (t) => {
    const ws = tempWorkspace();
    writeFileSync(join(ws.dir, "ok.txt"), "ok");
    mkdirSync(join(ws.dir, "sub"));
    symlinkSync("/etc", join(ws.dir, "etc-link"));
    const { client } = await sdkStdioClient(["--backend", "namespace", "--workspace", ws.dir]);
    t.after(async () => {
      await client.close();
      ws.remove();
    });
    await assert.rejects(client.callTool({ name: "no_such_tool", arguments: {} }), (e: unknown) => e instanceof McpError && e.code === ErrorCode.InvalidParams && /unknown tool/.test(e.message));
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ["read_file", { path: 42 }, "INVALID_ARGUMENT"],
      ["read_file", {}, "INVALID_ARGUMENT"],
      ["read_file", { path: "ok.txt", bogus: true }, "INVALID_ARGUMENT"],
      ["execute_command", { command: "" }, "INVALID_ARGUMENT"],
      ["search", {}, "INVALID_ARGUMENT"],
      ["read_file", { path: "../../etc/passwd" }, "PATH_ESCAPE"],
      ["read_file", { path: "/etc/passwd" }, "PATH_ESCAPE"],
      ["read_file", { path: "etc-link/passwd" }, "PATH_ESCAPE"],
      ["write_file", { path: "../escape.txt", content: "x" }, "PATH_ESCAPE"],
      ["read_file", { path: "missing.txt" }, "NOT_FOUND"],
      ["read_file", { path: "sub" }, "IS_A_DIRECTORY"],
      ["write_file", { path: "big.bin", content: "A".repeat(9 * 1024 * 1024) }, "FILE_TOO_LARGE"],
      ["execute_command", { command: "sleep 5", timeoutMs: 200 }, "TOOL_TIMEOUT"],
    ];
    for (const [name, args, code] of cases) {
      const r = await client.callTool({ name, arguments: args });
      assert.equal(r.isError, true, `${name} ${JSON.stringify(args).slice(0, 80)} should be an isError result`);
      assert.match(text(r as never), new RegExp(`^${code}: `), `${name} ${JSON.stringify(args).slice(0, 80)}`);
      assert.equal((r._meta?.["luminaguard/error"] as { code: string }).code, code);
    }
    // A file over the MCP read cap needs a range; the range works.
    writeFileSync(join(ws.dir, "large.txt"), "x".repeat(3 * 1024 * 1024));
    const large = await client.callTool({ name: "read_file", arguments: { path: "large.txt" } });
    assert.match(text(large as never), /^FILE_TOO_LARGE: /);
    const part = await client.callTool({ name: "read_file", arguments: { path: "large.txt", offset: 10, length: 5 } });
    assert.equal((part.structuredContent as { content: string }).content, "xxxxx");
    const ok = await client.callTool({ name: "read_file", arguments: { path: "ok.txt" } });
    assert.equal(text(ok as never), "ok", "still serving after all of that");
  });

  test("raw protocol abuse: garbage, oversized lines and a request storm get errors, not a dead server", { skip }, async (t) => {
    const ws = tempWorkspace();
    writeFileSync(join(ws.dir, "ok.txt"), "ok");
    const child = spawn(process.execPath, [SERVE_ENTRY, "mcp", "--approval", "off", "--backend", "namespace", "--workspace", ws.dir], { stdio: ["pipe", "pipe", "pipe"] });
    t.after(async () => {
      child.kill("SIGKILL");
      ws.remove();
    });
    child.stderr.resume();
    const answers = new Map<unknown, Record<string, unknown>>();
    const nulls: Array<Record<string, unknown>> = [];
    let buf = "";
    let badStdout = "";
    child.stdout.on("data", (c: Buffer) => {
      buf += c.toString("utf8");
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const m = JSON.parse(line) as Record<string, unknown>;
          if (m["id"] === null) nulls.push(m);
          else answers.set(m["id"], m);
        } catch {
          badStdout += line;
        }
      }
    });
    const send = (s: string): boolean => child.stdin.write(s);
    const rpc = (id: number, method: string, params: object): boolean => send(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
    rpc(1, "initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } });
    assert.ok(await until(() => answers.has(1), 20_000));
    send(`${JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" })}\n`);
    send("this is not json\n");
    send('{"jsonrpc":"1.0","id":2,"method":"ping"}\n');
    send('["not", "an", "object"]\n');
    // 17 MiB on one line, id last as the SDK writes it: refused with that id, without buffering it all.
    const huge = `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write_file","arguments":{"path":"h","content":"${"A".repeat(17 * 1024 * 1024)}"}},"id":3}\n`;
    send(huge);
    rpc(4, "tools/call", { name: "read_file", arguments: { path: "ok.txt" } });
    rpc(5, "no/such/method", {});
    assert.ok(await until(() => answers.has(4) && answers.has(5) && answers.has(3) && answers.has(2), 30_000), `answers: ${[...answers.keys()].join(",")}`);
    assert.equal((answers.get(2)?.["error"] as { code: number }).code, ErrorCode.InvalidRequest);
    assert.equal((answers.get(3)?.["error"] as { code: number; message: string }).code, ErrorCode.InvalidRequest);
    assert.match((answers.get(3)?.["error"] as { message: string }).message, /exceeds/);
    assert.equal((answers.get(5)?.["error"] as { code: number }).code, ErrorCode.MethodNotFound);
    assert.equal(((answers.get(4)?.["result"] as { content: Array<{ text: string }> }).content[0] as { text: string }).text, "ok");
    assert.ok(nulls.some((m) => (m["error"] as { code: number }).code === ErrorCode.ParseError), "garbage gets a parse error with id null");
    // A storm: 300 calls at once on one session. Beyond the in-flight bound they get a busy isError; none is lost.
    for (let i = 0; i < 300; i++) rpc(100 + i, "tools/call", { name: "execute_command", arguments: { command: ["sleep", "0.2"] } });
    assert.ok(await until(() => [...Array(300).keys()].every((i) => answers.has(100 + i)), 60_000), "every storm request is answered");
    const results = [...Array(300).keys()].map((i) => answers.get(100 + i)?.["result"] as { isError?: boolean; content: Array<{ text: string }> });
    const busy = results.filter((r) => r.isError && /^SESSION_BUSY: too many calls in flight/.test(r.content[0]?.text ?? "")).length;
    const done = results.filter((r) => !r.isError).length;
    assert.ok(busy > 0 && done >= 32, `busy ${busy}, done ${done}`);
    assert.equal(busy + done, 300);
    rpc(999, "tools/call", { name: "read_file", arguments: { path: "ok.txt" } });
    assert.ok(await until(() => answers.has(999), 10_000));
    assert.equal(badStdout, "", "stdout carries only protocol messages");
  });

  test("a call the client cancels stops its command; the session goes on", { skip }, async (t) => {
    const ws = tempWorkspace();
    const { client } = await sdkStdioClient(["--backend", "namespace", "--workspace", ws.dir]);
    t.after(async () => {
      await client.close();
      ws.remove();
    });
    const secs = uniqueSleep();
    const ac = new AbortController();
    const call = client.callTool({ name: "execute_command", arguments: { command: ["sleep", secs] } }, undefined, { signal: ac.signal });
    assert.ok(await until(() => pidsWithCmdline(`sleep ${secs}`).length === 1, 10_000), "the command runs");
    ac.abort();
    await assert.rejects(call);
    assert.ok(await until(() => pidsWithCmdline(`sleep ${secs}`).length === 0, 5000), "notifications/cancelled killed it");
    const r = await client.callTool({ name: "execute_command", arguments: { command: "echo next" } });
    assert.equal((r.structuredContent as { stdout: string }).stdout, "next\n");
  });

  test("a client that vanishes mid-call: the call is killed, the sandbox reclaimed, the server exits", { skip }, async (t) => {
    const ws = tempWorkspace();
    const { client, transport } = await sdkStdioClient(["--backend", "namespace", "--workspace", ws.dir]);
    t.after(() => ws.remove());
    const serverPid = transport.pid as number;
    const secs = uniqueSleep();
    const pending = client.callTool({ name: "execute_command", arguments: { command: ["sleep", secs] } }, undefined, { timeout: 60_000 }).catch(() => undefined);
    assert.ok(await until(() => pidsWithCmdline(`sleep ${secs}`).length === 1, 10_000), "the command runs");
    const [sleeper] = pidsWithCmdline(`sleep ${secs}`);
    const pids = sandboxAncestors(sleeper ?? 0);
    assert.ok(pids.length > 0, "the session has a sandbox");
    // Close stdin (the host went away) without any goodbye.
    transport.stderr?.removeAllListeners();
    await client.close();
    await pending;
    assert.ok(await until(() => !alive(serverPid), 10_000), "server exits when stdin ends");
    assert.ok(await until(() => pids.every((p) => !alive(p)), 10_000), "sandbox processes are gone");
    assert.equal(pidsWithCmdline(`sleep ${secs}`).length, 0, "the command died with it");
  });

  test("idle timeout releases the sandbox; the next call gets a fresh one", { skip }, async (t) => {
    const ws = tempWorkspace();
    const { client } = await sdkStdioClient(["--backend", "namespace", "--workspace", ws.dir, "--idle-timeout", "1"]);
    t.after(async () => {
      await client.close();
      ws.remove();
    });
    const a = await client.callTool({ name: "execute_command", arguments: { command: "hostname" } });
    const first = (a.structuredContent as { stdout: string }).stdout.trim();
    // The sandbox's id is its hostname and appears in its launcher's command line.
    const pids = sandboxPids(first);
    assert.ok(pids.length > 0, `no process for ${first}`);
    await new Promise((r) => setTimeout(r, 1200));
    assert.ok(await until(() => pids.every((p) => !alive(p)), 5000), "the idle sandbox was killed");
    const b = await client.callTool({ name: "execute_command", arguments: { command: "hostname" } });
    assert.notEqual((b.structuredContent as { stdout: string }).stdout.trim(), first, "a fresh sandbox (new hostname)");
  });
});

describe("mcp server over stdio (microvm)", async () => {
  const skip = await unavailable("microvm");

  test("read_file, write_file and execute_command in a micro-VM", { skip, timeout: 120_000 }, async (t) => {
    const ws = tempWorkspace();
    writeFileSync(join(ws.dir, "in.txt"), "from the host");
    const { client } = await sdkStdioClient(["--backend", "microvm", "--workspace", ws.dir]);
    t.after(async () => {
      await client.close();
      ws.remove();
    });
    await client.listTools();
    const r = await client.callTool({ name: "read_file", arguments: { path: "in.txt" } }, undefined, { timeout: 90_000 });
    assert.equal(text(r as never), "from the host");
    const w = await client.callTool({ name: "write_file", arguments: { path: "out.txt", content: "from the vm" } });
    assert.equal(w.isError, undefined);
    assert.equal(readFileSync(join(ws.dir, "out.txt"), "utf8"), "from the vm");
    const x = await client.callTool({ name: "execute_command", arguments: { command: "cat /proc/version" } });
    assert.match((x.structuredContent as { stdout: string }).stdout, /Linux version/);
    const esc = await client.callTool({ name: "read_file", arguments: { path: "../../etc/shadow" } });
    assert.match(text(esc as never), /^PATH_ESCAPE: /);
  });
});
