// The chaos monkey's `agent_kill` must hit the sandbox's agent, not a command the agent has just
// forked (named lg-agent until it execs) nor bwrap (whose arguments name lg-agent). It picked the
// first pid whose command line contained "lg-agent": once pids wrapped around (pid_max is 32,768
// here), that was a fresh command child, whose SIGKILL the run then counted as an unnamed failure.
import assert from "node:assert/strict";
import { test } from "node:test";
import { guestAgentPid } from "../../src/bench/chaos.js";
import { procStat } from "../../src/util/procfs.js";
import { sandboxFor, unavailable, waitFor } from "../fixtures.js";

test("the agent is the lg-agent whose parent is not one, whatever the pid order", () => {
  const procs = new Map([
    [120, { comm: "lg-agent", ppid: 30_001 }], // a command forked after the pids wrapped, not yet exec'd
    [30_000, { comm: "bwrap", ppid: 2_000 }],
    [30_001, { comm: "lg-agent", ppid: 30_000 }], // the agent
    [30_002, { comm: "sh", ppid: 30_001 }],
  ]);
  const read = (p: number): { comm: string; ppid: number } | undefined => procs.get(p);
  assert.equal(guestAgentPid([120, 30_000, 30_001, 30_002], read), 30_001);
  assert.equal(guestAgentPid([30_000, 30_002], read), undefined, "no agent among them: none");
});

test("namespace: the agent found in a real sandbox is the parent of the command it runs", { skip: await unavailable("namespace") }, async (t) => {
  const { sandbox } = await sandboxFor(t, "namespace");
  const running = sandbox.callTool("execute_command", { command: "sleep 2", timeoutMs: 10_000 });
  let sleeper: number | undefined;
  assert.ok(await waitFor(() => (sleeper = sandbox.pids().find((p) => procStat(p)?.comm === "sleep")) !== undefined, 5_000), "the command runs");
  const agent = guestAgentPid(sandbox.pids());
  assert.ok(agent !== undefined, "an agent is found");
  assert.equal(procStat(agent)?.comm, "lg-agent");
  let p = procStat(sleeper as number)?.ppid;
  while (p !== undefined && p !== agent && p > 1) p = procStat(p)?.ppid;
  assert.equal(p, agent, "the command descends from it");
  await running;
});
