// What `bench scale` found: with many sandboxes starting at once, the host's event loop stalls (seconds at
// 50+ agents), and a fixed deadline that expired during the stall fired before the answer that had arrived
// meanwhile was read: "bwrap did not report its sandbox process within 5000 ms", "guest did not answer".
// Each test stalls the loop on purpose, past a deadline, while the answer arrives in time.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { getBackend } from "../../src/runtime/backends.js";
import type { SandboxHandle } from "../../src/sandbox/types.js";
import { unavailable } from "../fixtures.js";

/** Blocks the event loop for ms, as a burst of synchronous work (workspace walks, hashing, JSON) does. */
function stall(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* busy */
  }
}

function workspace(): { dir: string; remove: () => void } {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "lg-stall-")));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Command lines of this process's children. */
function childCommands(): string[] {
  try {
    const pids = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    return pids.map((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8");
      } catch {
        return "";
      }
    });
  } catch {
    return [];
  }
}

test("a guest answer that arrived during an event-loop stall past its deadline is taken, not called a lost guest", { skip: await unavailable("namespace") }, async (t) => {
  const ws = workspace();
  t.after(ws.remove);
  const handle: SandboxHandle = await getBackend("namespace").spawn({ id: `stall-${process.pid}`, workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 });
  t.after(() => handle.destroy());
  const answer = handle.channel.request("execute_command", { argv: ["true"], timeoutMs: 5000, maxOutputBytes: 1024 }, { deadlineMs: 300 });
  // Another callback stalls the loop (as 50 agents' spawns did): the request has left (its frame is written
  // at the end of this tick), the guest answers within milliseconds, and the 300 ms deadline expires meanwhile.
  setImmediate(() => stall(2000));
  const r = await answer;
  assert.equal(r.exitCode, 0);
  // The channel is still whole: the next call works.
  assert.equal((await handle.channel.request("execute_command", { argv: ["true"], timeoutMs: 5000, maxOutputBytes: 1024 }, { deadlineMs: 5000 })).exitCode, 0);
});

test("bwrap's report that arrived during a stall past the 5 s launch deadline is read, and the sandbox starts", { skip: await unavailable("namespace") }, async (t) => {
  const ws = workspace();
  t.after(ws.remove);
  const spawning = getBackend("namespace").spawn({ id: `stall-launch-${process.pid}`, workspace: ws.dir, memoryMiB: 256, pidsMax: 64, vcpus: 1 });
  // As soon as bwrap runs (its 5 s timer armed in the same tick), stall for longer than that.
  let stalled = false;
  const deadline = performance.now() + 30_000;
  while (!stalled && performance.now() < deadline) {
    if (childCommands().some((c) => c.includes("bwrap"))) {
      stall(5500);
      stalled = true;
    } else await new Promise((r) => setImmediate(r));
  }
  assert.ok(stalled, "saw bwrap start");
  const handle = await spawning;
  t.after(() => handle.destroy());
  assert.equal((await handle.channel.request("execute_command", { argv: ["true"], timeoutMs: 5000, maxOutputBytes: 1024 }, { deadlineMs: 5000 })).exitCode, 0);
});
