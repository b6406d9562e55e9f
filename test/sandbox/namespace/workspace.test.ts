// Workspace names and places through the real namespace backend: odd but legal names share exactly that directory.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { LuminaGuardError } from "../../../src/errors.js";
import { NamespaceBackend } from "../../../src/sandbox/namespace/backend.js";
import type { SandboxHandle, SandboxSpec } from "../../../src/sandbox/types.js";
import { unavailable } from "../../fixtures.js";
import { tempDir, uniqueId } from "./helpers.js";

const backend = new NamespaceBackend();
const skip = await unavailable("namespace");
const root = tempDir("lg-ns-names-");
const handles = new Set<SandboxHandle>();

function spec(workspace: string): SandboxSpec {
  return { id: uniqueId("lgnm"), workspace, memoryMiB: 64, pidsMax: 64, vcpus: 1 };
}

describe("namespace workspaces", { skip }, () => {
  after(async () => {
    await Promise.allSettled([...handles].map((h) => h.destroy()));
    root.remove();
  });

  test("a workspace named with commas, quotes, spaces, '=' and ':' is shared as exactly that directory", async () => {
    // A sibling whose name is a prefix of ours: it must not be what gets shared.
    mkdirSync(join(root.dir, "ws"));
    writeFileSync(join(root.dir, "ws", "decoy.txt"), "decoy");
    const dir = join(root.dir, `ws, "dq" 'sq' a=b:c,path=/`);
    mkdirSync(dir);
    writeFileSync(join(dir, "host.txt"), "from host");
    const sb = await backend.spawn(spec(dir));
    handles.add(sb);
    const r = await sb.channel.request("execute_command", { argv: ["/bin/sh", "-c", "ls -A /workspace; echo from-sandbox > /workspace/out.txt"], timeoutMs: 10_000, maxOutputBytes: 1 << 16 }, { deadlineMs: 20_000, maxStreamBytes: 1 << 16, onEvent: () => undefined });
    assert.equal(r.exitCode, 0);
    assert.equal(readFileSync(join(dir, "out.txt"), "utf8"), "from-sandbox\n");
    assert.deepEqual(readdirSync(dir).sort(), ["host.txt", "out.txt"]);
    assert.deepEqual(readdirSync(join(root.dir, "ws")), ["decoy.txt"]);
    await sb.destroy();
  });

  test("a newline in the name is refused with a named error; a symlink named like an option pointing to / too", async () => {
    const nl = join(root.dir, "new\nline");
    mkdirSync(nl);
    await assert.rejects(backend.spawn(spec(nl)), (e: LuminaGuardError) => e.code === "INVALID_ARGUMENT" && /control character/.test(e.message));
    const link = join(root.dir, "a,path=");
    symlinkSync("/", link);
    await assert.rejects(backend.spawn(spec(link)), (e: LuminaGuardError) => e.code === "WORKSPACE_FORBIDDEN");
  });
});
