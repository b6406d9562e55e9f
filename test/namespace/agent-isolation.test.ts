// The guest agent's own defences inside a real namespace sandbox: what write_file leaves on the host,
// what commands can reach of the agent, and that nothing a command started outlives its call.
import assert from "node:assert/strict";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ensureAgent } from "../../src/guest/image/agent.js";
import { NamespaceBackend } from "../../src/sandbox/namespace/backend.js";
import type { SandboxHandle, SandboxSpec } from "../../src/sandbox/types.js";
import { tempDir, uniqueId } from "./helpers.js";

const backend = new NamespaceBackend();
const probe = await backend.probe();

async function why(): Promise<string | false> {
  const required = (process.env["LUMINAGUARD_REQUIRE_BACKENDS"] ?? "").split(",").includes("namespace");
  let reason: string | undefined;
  if (!probe.available) reason = `namespace backend unavailable: ${probe.reason ?? "?"}`;
  else {
    try {
      await ensureAgent();
    } catch (err) {
      reason = `guest agent does not build: ${(err as Error).message.slice(0, 300)}`;
    }
  }
  if (reason === undefined) return false;
  if (required) throw new Error(reason);
  process.stderr.write(`SKIP: ${reason}\n`);
  return reason;
}
const skip = await why();

const handles = new Set<SandboxHandle>();
const workspaces: Array<() => void> = [];

async function spawnSandbox(overrides: Partial<SandboxSpec> = {}): Promise<{ sb: SandboxHandle; workspace: string }> {
  const ws = tempDir("lg-ns-ws-");
  workspaces.push(ws.remove);
  const spec: SandboxSpec = { id: uniqueId("lgai"), workspace: ws.dir, memoryMiB: 256, pidsMax: 256, vcpus: 1, ...overrides };
  const sb = await backend.spawn(spec);
  handles.add(sb);
  return { sb, workspace: ws.dir };
}

describe("guest agent in the namespace sandbox", { skip }, () => {
  after(async () => {
    await Promise.allSettled([...handles].map((h) => h.destroy()));
    for (const remove of workspaces) remove();
  });

  test("write_file replacing a set-id or sticky file keeps the permission bits, never the set-id/sticky ones", async () => {
    const { sb, workspace } = await spawnSandbox();
    for (const [mode, kept] of [
      [0o4755, 0o755],
      [0o2750, 0o750],
      [0o1644, 0o644],
    ] as const) {
      const name = `m${mode.toString(8)}`;
      writeFileSync(join(workspace, name), "old");
      chmodSync(join(workspace, name), mode);
      await sb.channel.request("write_file", { path: name, content: Buffer.from("new").toString("base64") });
      const got = statSync(join(workspace, name)).mode & 0o7777;
      assert.equal(got, kept, `${mode.toString(8)} became ${got.toString(8)}`);
      assert.equal(readFileSync(join(workspace, name), "utf8"), "new");
    }
    await sb.destroy();
  });
});
