// The JSON file reader on real files: each failure (missing, a directory, not JSON, invalid) is the caller's own error.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { z } from "zod";
import { issueLines, parseWith, readJsonFile } from "../../src/util/json-file.js";

const dir = mkdtempSync(join(tmpdir(), "lg-json-file-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const schema = z.strictObject({ name: z.string(), size: z.number().int().optional() });
const invalid = (issues: string[]): Error => new Error(`invalid: ${issues.join("; ")}`);
const errors = {
  unreadable: (err: NodeJS.ErrnoException) => new Error(`unreadable ${err.code}`),
  notJson: (err: Error) => new Error(`not JSON: ${err.message}`),
};
const read = (path: string): z.infer<typeof schema> => readJsonFile(path, (raw) => parseWith(schema, raw, invalid), errors);

describe("readJsonFile", () => {
  test("a valid file gives the validated value", () => {
    const path = join(dir, "ok.json");
    writeFileSync(path, JSON.stringify({ name: "a", size: 3 }));
    assert.deepEqual(read(path), { name: "a", size: 3 });
  });

  test("missing, a directory, not JSON, invalid: the caller's error for each", () => {
    assert.throws(() => read(join(dir, "absent.json")), { message: "unreadable ENOENT" });
    mkdirSync(join(dir, "sub"));
    assert.throws(() => read(join(dir, "sub")), { message: "unreadable EISDIR" });
    writeFileSync(join(dir, "bad.json"), "{ name: ");
    assert.throws(() => read(join(dir, "bad.json")), /^Error: not JSON: /);
    writeFileSync(join(dir, "wrong.json"), JSON.stringify({ name: 1, extra: true }));
    assert.throws(() => read(join(dir, "wrong.json")), (err: Error) => /^invalid: name: .+; \(top level\): .*extra/.test(err.message));
  });

  test("`missing` stands in for a file that does not exist, and only for that", () => {
    const value = readJsonFile(join(dir, "absent.json"), (raw) => parseWith(schema, raw, invalid), { ...errors, missing: () => ({ name: "default" }) });
    assert.deepEqual(value, { name: "default" });
    assert.throws(() => readJsonFile(join(dir, "sub"), (raw) => raw, { ...errors, missing: () => ({}) }), { message: "unreadable EISDIR" });
  });
});

describe("issueLines", () => {
  test("paths joined with dots, the root named as asked, messages as asked", () => {
    const r = z.object({ a: z.array(z.number()) }).safeParse({ a: [1, "x"] });
    assert.ok(!r.success);
    assert.deepEqual(issueLines(r.error).map((l) => l.split(":")[0]), ["a.1"]);
    const top = z.number().safeParse("x");
    assert.ok(!top.success);
    assert.deepEqual(issueLines(top.error, { root: "(root)", message: () => "no" }), ["(root): no"]);
  });
});
