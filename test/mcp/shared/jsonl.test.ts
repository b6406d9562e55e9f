// The stdio framing: bounded lines, oversized lines skipped with their id recovered, structural JSON-RPC checks.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LineSplitter, findRequestId, parseJsonRpcLine, type OversizedLine } from "../../../src/mcp/shared/jsonl.js";

describe("jsonl framing", () => {
  test("lines across chunks, CRLF, blank lines", () => {
    const lines: string[] = [];
    const s = new LineSplitter(1024, (l) => lines.push(l), () => assert.fail("nothing is oversized"));
    s.push(Buffer.from('{"a":1}\n{"b"'));
    s.push(Buffer.from(":2}\r\n\n"));
    s.push(Buffer.from('{"c":3}'));
    assert.deepEqual(lines, ['{"a":1}', '{"b":2}']);
    assert.equal(s.pending, 7);
    s.push(Buffer.from("\n"));
    assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  test("an oversized line is skipped in bounded memory and reported with its ends", () => {
    const lines: string[] = [];
    const big: OversizedLine[] = [];
    const s = new LineSplitter(100, (l) => lines.push(l), (o) => big.push(o));
    const head = '{"jsonrpc":"2.0","method":"x","params":{"p":"';
    const tail = '"},"id":42}';
    s.push(Buffer.from(head));
    for (let i = 0; i < 100; i++) {
      s.push(Buffer.alloc(1000, 0x41));
      assert.equal(s.pending, 0, "nothing is buffered while discarding");
    }
    s.push(Buffer.from(`${tail}\n{"ok":true}\n`));
    assert.equal(big.length, 1);
    assert.equal(big[0]?.bytes, 100_000 + head.length + tail.length);
    assert.equal(findRequestId(big[0] as OversizedLine), 42);
    assert.deepEqual(lines, ['{"ok":true}'], "the next line is read normally");
    assert.equal(findRequestId({ bytes: 0, head: '{"id":"abc","jsonrpc":"2.0"', tail: "AAAA" }), "abc");
    assert.equal(findRequestId({ bytes: 0, head: "AAAA", tail: "AAAA" }), undefined);
  });

  test("structural JSON-RPC checks", () => {
    assert.ok(parseJsonRpcLine('{"jsonrpc":"2.0","id":1,"method":"ping"}').ok);
    assert.ok(parseJsonRpcLine('{"jsonrpc":"2.0","method":"notifications/initialized"}').ok);
    assert.ok(parseJsonRpcLine('{"jsonrpc":"2.0","id":"a","result":{}}').ok);
    assert.ok(parseJsonRpcLine('{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}').ok);
    const bad: Array<[string, RegExp, (string | number)?]> = [
      ["nope", /not JSON/],
      ["[1]", /object/],
      ['{"jsonrpc":"1.0","id":3,"method":"x"}', /2\.0/, 3],
      ['{"jsonrpc":"2.0","id":1.5,"method":"x"}', /id/],
      ['{"jsonrpc":"2.0","id":4,"method":"x","params":[1]}', /params/, 4],
      ['{"jsonrpc":"2.0","id":5,"method":7}', /method/, 5],
      ['{"jsonrpc":"2.0","result":{}}', /needs an id/],
      ['{"jsonrpc":"2.0","id":6,"result":"x"}', /result/, 6],
      ['{"jsonrpc":"2.0","id":7,"error":{"code":"x"}}', /error/, 7],
      ['{"jsonrpc":"2.0","id":8}', /neither/, 8],
    ];
    for (const [line, re, id] of bad) {
      const r = parseJsonRpcLine(line);
      assert.equal(r.ok, false, line);
      if (!r.ok) {
        assert.match(r.error, re, line);
        assert.equal(r.id, id, line);
      }
    }
  });
});
