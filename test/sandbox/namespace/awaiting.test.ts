// A files-only namespace sandbox started ahead of its workspace (a spare micro-VM's file jail): it gets
// one workspace, mounted into its own mount namespace alone, and serves that workspace only.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { recover } from "../../../src/daemon/recovery.js";
import { NamespaceBackend } from "../../../src/sandbox/namespace/backend.js";
import { runDir } from "../../../src/paths.js";
import { pidAlive } from "../../../src/util/procfs.js";
import type { SandboxSpec } from "../../../src/sandbox/types.js";
import { tempWorkspace, unavailable, waitFor } from "../../fixtures.js";

const root = (process.getuid?.() ?? 1) === 0;

function jailSpec(id: string, workspace = ""): SandboxSpec {
  return { id, workspace, memoryMiB: 64, pidsMax: 4, vcpus: 1, filesOnly: true };
}

function placeholders(): string[] {
  return readdirSync(runDir()).filter((n) => n.startsWith("awaiting-"));
}

describe("namespace sandbox started ahead of its workspace", async () => {
  const skip = (await unavailable("namespace")) ?? (root ? undefined : "needs root (the workspace is mounted into the running sandbox)");
  if (skip !== undefined) process.stderr.write(`SKIP: ${skip}\n`);

  test("serves the workspace it receives, as the workspace's owner, and nothing of the host's mounts changes", { skip }, async (t) => {
    const backend = new NamespaceBackend();
    const before = placeholders();
    const ahead = await backend.spawnAwaiting(jailSpec("ahead-a-files"));
    t.after(() => ahead.destroy());
    assert.equal(placeholders().length, before.length + 1, "an empty placeholder stands for the workspace meanwhile");
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    writeFileSync(join(ws.dir, "host.txt"), "from the host\n");
    const h = await ahead.receive(jailSpec("real-a-files", ws.dir));
    assert.equal(h.info["startedAhead"], true);
    const list = await h.channel.request("list_directory", { path: "." });
    assert.deepEqual(
      list.entries.map((e) => e.path),
      ["host.txt"],
    );
    const read = await h.channel.request("read_file", { path: "host.txt", maxBytes: 65_536 });
    assert.equal(Buffer.from(read.content, "base64").toString("utf8"), "from the host\n");
    await h.channel.request("write_file", { path: "jail.txt", content: Buffer.from("from the jail\n").toString("base64") });
    assert.equal(readFileSync(join(ws.dir, "jail.txt"), "utf8"), "from the jail\n");
    assert.equal(statSync(join(ws.dir, "jail.txt")).uid, statSync(ws.dir).uid, "what the jail writes is the workspace owner's");
    // Only in the jail's mount namespace, idmapped, with no set-id, devices or exec.
    const pid1 = h.pids().find((p) => (readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0")[0] ?? "").endsWith("lg-agent"));
    assert.ok(pid1 !== undefined, "the agent runs");
    const line = readFileSync(`/proc/${pid1}/mountinfo`, "utf8")
      .split("\n")
      .filter((l) => l.split(" ")[4] === "/workspace")
      .at(-1);
    assert.match(line ?? "", /\bidmapped\b/, line);
    assert.match(line ?? "", /\bnosuid\b.*\bnodev\b.*\bnoexec\b|\bnosuid,nodev,noexec\b/, line);
    assert.doesNotMatch(readFileSync("/proc/self/mountinfo", "utf8"), new RegExp(` ${ws.dir} `), "not mounted in the host's namespace");
    // A second one gets only its own workspace.
    const other = tempWorkspace();
    t.after(() => other.remove());
    const ahead2 = await backend.spawnAwaiting(jailSpec("ahead-b-files"));
    const h2 = await ahead2.receive(jailSpec("real-b-files", other.dir));
    t.after(() => h2.destroy());
    assert.deepEqual((await h2.channel.request("list_directory", { path: "." })).entries, []);
    await assert.rejects(h2.channel.request("read_file", { path: "../" + ws.dir.split("/").pop() + "/host.txt", maxBytes: 65_536 }));
    await h.destroy();
    await h2.destroy();
    assert.deepEqual(placeholders(), before, "the placeholders go with their sandboxes");
  });

  test("is refused a workspace the checks refuse, other limits and a second workspace; a refusal destroys it", { skip }, async (t) => {
    const backend = new NamespaceBackend();
    const ws = tempWorkspace();
    t.after(() => ws.remove());
    // A forbidden workspace: the same check as every spawn, and the waiting sandbox is gone after it.
    const a = await backend.spawnAwaiting(jailSpec("ahead-c-files"));
    t.after(() => a.destroy());
    const pids = a.handle.pids();
    await assert.rejects(a.receive(jailSpec("real-c-files", "/etc")), { code: "WORKSPACE_FORBIDDEN" });
    assert.ok(await waitFor(() => pids.every((p) => !pidAlive(p)), 10_000), "the refused sandbox's processes are gone");
    await assert.rejects(a.receive(jailSpec("real-c2-files", ws.dir)), /one workspace only/);
    // Limits other than its own (a sandbox with another memory ceiling must not get this one).
    const b = await backend.spawnAwaiting(jailSpec("ahead-d-files"));
    t.after(() => b.destroy());
    await assert.rejects(b.receive({ ...jailSpec("real-d-files", ws.dir), memoryMiB: 128 }), /other limits/);
    // Only files-only sandboxes wait for a workspace: a sandbox that runs commands must not start ahead.
    await assert.rejects(backend.spawnAwaiting({ ...jailSpec("ahead-e"), filesOnly: false, pidsMax: 64 }), { code: "INVALID_ARGUMENT" });
    assert.equal(existsSync(join(ws.dir, "x")), false);
  });

  test("start-up recovery removes a placeholder nobody has mounted and keeps one a waiting jail has", { skip }, async (t) => {
    const backend = new NamespaceBackend();
    const ahead = await backend.spawnAwaiting(jailSpec("ahead-f-files"));
    t.after(() => ahead.destroy());
    const before = new Set(placeholders());
    const orphan = mkdtempSync(join(runDir(), "awaiting-"));
    t.after(() => rmSync(orphan, { recursive: true, force: true }));
    // Both past the grace: only what is mounted tells them apart.
    const old = (Date.now() - 600_000) / 1000;
    for (const name of placeholders()) utimesSync(join(runDir(), name), old, old);
    const report = await recover({ graceMs: 1_000, runDirs: [runDir()], cgroupParents: [] });
    assert.deepEqual(
      report.removed.filter((r) => r.kind === "placeholder").map((r) => r.path),
      [orphan],
    );
    assert.deepEqual(new Set(placeholders()), before, "the waiting jail's placeholder is kept");
    const h = await ahead.receive(jailSpec("real-f-files", tempWorkspaceFor(t)));
    assert.deepEqual((await h.channel.request("list_directory", { path: "." })).entries, [], "and the jail still takes its workspace");
  });
});

function tempWorkspaceFor(t: { after: (fn: () => void) => void }): string {
  const ws = tempWorkspace();
  t.after(() => ws.remove());
  return ws.dir;
}

