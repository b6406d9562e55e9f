// The guest agent's own defences inside a real namespace sandbox: what write_file leaves on the host,
// what commands can reach of the agent, and that nothing a command started outlives its call.
import assert from "node:assert/strict";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { NamespaceBackend } from "../../../src/sandbox/namespace/backend.js";
import type { SandboxHandle, SandboxSpec } from "../../../src/sandbox/types.js";
import { namespaceSkip, tempDir, uniqueId } from "./helpers.js";
import { execOn, type ExecResult } from "../../fixtures.js";

const sh = (sb: SandboxHandle, script: string, timeoutMs?: number): Promise<ExecResult> => execOn(sb, ["/bin/sh", "-c", script], timeoutMs);

const backend = new NamespaceBackend();
const probe = await backend.probe();

const skip = await namespaceSkip(probe);

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

  test("commands can reach neither the agent's descriptors and memory nor any other holder of the channel", async () => {
    const { sb } = await spawnSandbox();
    const hello = await sb.channel.request("hello", { v: 1 });
    // Every process that is not the command itself (nor its shell's children): the agent, and pid 1
    // if that is someone else (bwrap's reaper keeps the agent's stdin/stdout open).
    const script = [
      `for p in $(ls /proc | grep -E '^[0-9]+$'); do`,
      `  [ "$p" = "$$" ] && continue`,
      `  case "$(cat /proc/$p/stat 2>/dev/null)" in *" $$ "*) continue;; esac`,
      // (Listing the fd numbers may work: a non-dumpable process's /proc entries belong to kuid 0,
      // which is the sandbox user itself when the host user is root. What they point to may not.)
      `  for fd in 0 1 2 3 4 5; do`,
      `    readlink /proc/$p/fd/$fd >/dev/null 2>&1 && echo "resolved /proc/$p/fd/$fd"`,
      `    (exec 3</proc/$p/fd/$fd) 2>/dev/null && echo "opened /proc/$p/fd/$fd"`,
      `    (exec 3>/proc/$p/fd/$fd) 2>/dev/null && echo "opened /proc/$p/fd/$fd for writing"`,
      `  done`,
      `  (exec 3</proc/$p/mem) 2>/dev/null && echo "opened /proc/$p/mem"`,
      `  (exec 3>/proc/$p/mem) 2>/dev/null && echo "opened /proc/$p/mem for writing"`,
      `  cat /proc/$p/environ >/dev/null 2>&1 && echo "read /proc/$p/environ"`,
      `done; echo checked`,
    ].join("\n");
    const r = await sh(sb, script);
    assert.equal(r.stdout, "checked\n", `agent pid ${hello.pid}: ${r.stdout}`);
    // The command's own /proc is still its own.
    assert.equal((await sh(sb, "ls /proc/self/fd >/dev/null && echo ok")).stdout, "ok\n");
    await sb.destroy();
  });

  test("nothing a command started outlives its call: setsid and double-forked processes are gone when it ends", async () => {
    const { sb } = await spawnSandbox();
    const r = await sh(sb, ["setsid sh -c 'exec sleep 1000 >/dev/null 2>&1' &", "(sh -c 'sleep 1001 >/dev/null 2>&1 &' &)", "sleep 0.3"].join("\n"));
    assert.equal(r.exitCode, 0, JSON.stringify(r));
    const ps = await sh(sb, "ps -eo pid,ppid,sid,args");
    assert.doesNotMatch(ps.stdout, /sleep 100[01]/, ps.stdout);
    await sb.destroy();
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
