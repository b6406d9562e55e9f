// The thin exec's HTTP over the daemon's Unix socket (src/daemon/unix-http.ts) against a real server on a
// real socket that answers with bytes written by hand: bodies split anywhere, and answers that are not HTTP.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { unixRequest } from "../../src/daemon/unix-http.js";

/** A server that reads one request and answers with `parts`, written one by one (a pause between). */
async function server(t: TestContext, parts: Array<string | Buffer>, o: { close?: boolean } = {}): Promise<{ path: string; requests: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), "lg-test-uh-"));
  const path = join(dir, "s.sock");
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const srv: Server = createServer((s: Socket) => {
    sockets.add(s);
    let got = "";
    s.on("data", async (c: Buffer) => {
      got += c.toString("latin1");
      if (!got.includes("\r\n\r\n")) return;
      requests.push(got);
      for (const p of parts) {
        s.write(p);
        await new Promise((r) => setTimeout(r, 2));
      }
      if (o.close !== false) s.end();
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => srv.listen(path, r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => srv.close(r));
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, requests };
}

async function body(path: string, o: { method?: string; body?: string } = {}): Promise<{ status: number; text: string }> {
  const chunks: Buffer[] = [];
  const r = await unixRequest(path, { method: o.method ?? "GET", path: "/x", ...(o.body !== undefined ? { body: o.body } : {}), onData: (c) => chunks.push(c) });
  return { status: r.status, text: Buffer.concat(chunks).toString("utf8") };
}

test("a chunked body split anywhere, a Content-Length body, a close-delimited one; the request is well formed", async (t) => {
  const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n8;ext=1\r\n, w\u00f6rld\r\n0\r\n\r\n";
  const bytes = Buffer.from(chunked, "utf8");
  // Every split point of the answer into two writes.
  for (const at of [1, 10, 40, 47, 50, 52, 60, bytes.length - 3, bytes.length - 1]) {
    const s = await server(t, [bytes.subarray(0, at), bytes.subarray(at)]);
    assert.deepEqual(await body(s.path, { method: "POST", body: '{"a":"\u00e9"}' }), { status: 200, text: "hello, w\u00f6rld" }, `split at ${at}`);
    assert.match(s.requests[0] ?? "", /^POST \/x HTTP\/1\.1\r\n/);
    assert.match(s.requests[0] ?? "", /\r\nContent-Length: 10\r\n/);
    assert.match(s.requests[0] ?? "", /\r\nConnection: close\r\n\r\n\{"a":"\u00c3\u00a9"\}$/);
  }
  const sized = await server(t, ["HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"], { close: false });
  assert.deepEqual(await body(sized.path), { status: 404, text: "abc" }, "ends at its length, not at the close");
  const closing = await server(t, ["HTTP/1.1 200 OK\r\n\r\nuntil", " the end"]);
  assert.deepEqual(await body(closing.path), { status: 200, text: "until the end" });
  const interim = await server(t, ["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"]);
  assert.deepEqual(await body(interim.path), { status: 201, text: "ok" });
});

test("what is not the HTTP expected is an error, never a result; a cut answer is a hang-up; no daemon is its errno", async (t) => {
  const cases: Array<[string, Array<string | Buffer>, RegExp]> = [
    ["no status line", ["SSH-2.0-OpenSSH\r\n\r\n"], /no status line/],
    ["bad chunk size", ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], /bad chunk size/],
    ["huge chunk size", ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n"], /bad chunk size/],
    ["chunk without CRLF", ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY"], /CRLF/],
    ["two lengths", ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"], /Content-Length/],
    ["bad header", ["HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"], /bad header/],
    ["endless headers", ["HTTP/1.1 200 OK\r\n", Buffer.alloc(70 * 1024, "a")], /headers too large/],
  ];
  for (const [what, parts, message] of cases) {
    const s = await server(t, parts, { close: false });
    await assert.rejects(body(s.path), (err: NodeJS.ErrnoException) => err.code === "EPROTO" && message.test(err.message), what);
  }
  const cut = await server(t, ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
  await assert.rejects(body(cut.path), { code: "ECONNRESET", message: "socket hang up" });
  const chunkCut = await server(t, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe"]);
  await assert.rejects(body(chunkCut.path), { code: "ECONNRESET" });
  await assert.rejects(body(join(tmpdir(), "lg-no-such-dir", "s.sock")), { code: "ENOENT" });
  // An abort closes the connection and rejects at once.
  const slow = await server(t, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], { close: false });
  const controller = new AbortController();
  const pending = unixRequest(slow.path, { method: "GET", path: "/", onData: () => undefined, signal: controller.signal });
  setTimeout(() => controller.abort(), 20);
  await assert.rejects(pending, { name: "AbortError" });
});
