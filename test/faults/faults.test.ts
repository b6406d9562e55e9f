// The fault points: inert unless armed, parsed strictly, and each armed point fails the real path it sits on.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { describe, test } from "node:test";
import { armFaults, armSandboxFault, disarmFaults, disarmSandboxFaults, fault, faultsFired, faultsOn, parseFaults, type SandboxFaultPoint } from "../../src/faults/index.js";
import { GuestChannel } from "../../src/protocol/channel.js";
import { BACKENDS, rejectsWith, sandboxFor, unavailable, waitFor } from "../fixtures.js";

describe("fault specs", () => {
  test("nothing is armed unless LUMINAGUARD_FAULTS was set or a test armed it", () => {
    assert.equal(process.env["LUMINAGUARD_FAULTS"], undefined);
    assert.equal(faultsOn, false);
    assert.equal(fault("spawn"), undefined);
    assert.equal(fault("channel-cut", "read_file", "lg-000000000000"), undefined);
  });

  test("with nothing armed, a channel's requests go out and its transport stays whole", async () => {
    assert.equal(faultsOn, false);
    const input = new PassThrough();
    const output = new PassThrough();
    const lost: string[] = [];
    const channel = new GuestChannel({ input, output }, (e) => lost.push(e.code));
    const answer = channel.request("read_file", { path: "a" }, { deadlineMs: 5000 }).catch((e: unknown) => e);
    await new Promise((r) => setImmediate(r));
    assert.equal(input.destroyed || output.destroyed, false, "the transport is intact");
    assert.ok(output.read() !== null, "the request was written");
    assert.equal(channel.closed, false);
    assert.deepEqual(lost, []);
    channel.fail(new (await import("../../src/errors.js")).LuminaGuardError("SANDBOX_CLOSED", "test over"));
    await answer;
  });

  test("a fired channel-cut cuts after the request is written: the guest gets it, its answer cannot come back", async () => {
    const written: Buffer[] = [];
    const input = new PassThrough();
    const output = new Writable({
      write(chunk: Buffer, _enc, cb) {
        written.push(chunk);
        cb();
      },
      writev(chunks, cb) {
        for (const c of chunks) written.push(c.chunk as Buffer);
        cb();
      },
    });
    const lost: string[] = [];
    const channel = new GuestChannel({ input, output }, (e) => lost.push(e.code));
    // As a fired channel-cut point does (its spec, no delay): the channel keeps its own one-shot.
    channel.cutForFault("after-request");
    const e = (await channel.request("read_file", { path: "a" }, { deadlineMs: 5000 }).catch((err: unknown) => err)) as { code?: string };
    assert.equal(e.code, "GUEST_CHANNEL_LOST");
    assert.match(Buffer.concat(written).toString("latin1"), /"op":"read_file"/, "the request left before the cut");
    assert.equal(input.destroyed && output.destroyed, true);
    assert.deepEqual(lost, ["GUEST_CHANNEL_LOST"]);
  });

  test("a fired channel-cut with a delay cuts that long after, whatever is in flight", async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const lost: string[] = [];
    const channel = new GuestChannel({ input, output }, (e) => lost.push(e.code));
    const answer = channel.request("execute_command", { argv: ["true"] }, { deadlineMs: 5000 }).then(() => ({ code: "answered" }), (err: unknown) => err as { code?: string });
    const t0 = performance.now();
    channel.cutForFault(50);
    assert.equal((await answer).code, "GUEST_CHANNEL_LOST");
    assert.ok(performance.now() - t0 >= 45, "not before its delay");
    assert.equal(input.destroyed && output.destroyed, true);
    assert.deepEqual(lost, ["GUEST_CHANNEL_LOST"]);
  });

  test("a point armed for one sandbox fires only on that sandbox's calls, is spent, and leaves faults off", (t) => {
    t.after(disarmFaults);
    armSandboxFault("lg-a", "channel-cut", { op: "execute_command" });
    assert.equal(faultsOn, true);
    assert.equal(fault("channel-cut", "execute_command"), undefined, "not a call of a sandbox");
    assert.equal(fault("channel-cut", "execute_command", "lg-b"), undefined, "another sandbox");
    assert.equal(fault("channel-cut", "read_file", "lg-a"), undefined, "another op");
    assert.ok(fault("channel-cut", "execute_command", "lg-a"));
    assert.equal(fault("channel-cut", "execute_command", "lg-a"), undefined, "spent after one hit");
    assert.deepEqual(faultsFired(), { "channel-cut": 1 });
    assert.equal(faultsOn, false, "nothing is left armed");
    armSandboxFault("lg-c", "guest-crash");
    disarmSandboxFaults("lg-c");
    assert.equal(faultsOn, false);
    assert.throws(() => armSandboxFault("lg-a", "spawn" as SandboxFaultPoint), /cannot be armed for one sandbox/);
    assert.throws(() => armSandboxFault("lg-a", "channel-cut", { ms: -1 }), /bad spec/);
    assert.equal(faultsOn, false);
  });

  test("parses points, counts, ops and delays; refuses the unknown", () => {
    const m = parseFaults("spawn, guest-eio:op=write_file;times=2;after=1 ,slow-io:ms=250;times=always");
    assert.deepEqual(m.get("spawn"), { times: 1, after: 0 });
    assert.deepEqual(m.get("guest-eio"), { times: 2, after: 1, op: "write_file" });
    assert.deepEqual(m.get("slow-io"), { times: Infinity, after: 0, ms: 250 });
    assert.deepEqual(parseFaults("channel-cut:op=read_file;ms=5").get("channel-cut"), { times: 1, after: 0, op: "read_file", ms: 5 });
    assert.deepEqual(parseFaults("channel-cut:channel=vm").get("channel-cut"), { times: 1, after: 0, channel: "vm" });
    assert.throws(() => parseFaults("channel-cut:channel=host"), /bad spec/);
    assert.throws(() => parseFaults("no-such-point"), /unknown fault point/);
    assert.throws(() => parseFaults("slow-io:ms=-1"), /bad spec/);
    assert.throws(() => parseFaults("spawn:colour=red"), /bad spec/);
  });

  test("a point fires after `after` hits, `times` times, only for its op", (t) => {
    t.after(disarmFaults);
    armFaults({ "guest-eio": { op: "read_file", after: 1, times: 2 } });
    assert.equal(faultsOn, true);
    assert.equal(fault("guest-eio", "write_file"), undefined);
    assert.equal(fault("guest-eio", "read_file"), undefined);
    assert.ok(fault("guest-eio", "read_file"));
    assert.ok(fault("guest-eio", "read_file"));
    assert.equal(fault("guest-eio", "read_file"), undefined);
    assert.deepEqual(faultsFired(), { "guest-eio": 2 });
    disarmFaults();
    assert.equal(faultsOn, false);
  });
});

for (const backend of BACKENDS) {
  describe(`fault points on ${backend}`, async () => {
    const skip = await unavailable(backend);

    test("EIO and ENOSPC from the agent name the file and leave the sandbox working", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      t.after(disarmFaults);
      armFaults({ "guest-eio": { op: "write_file" } });
      const eio = await rejectsWith(sandbox.files.write("a.txt", "x"), "IO_ERROR");
      assert.match(eio.message, /^a\.txt: Input\/output error/);
      assert.equal(eio.details["sandboxId"], sandbox.id);
      assert.match(String(eio.details["callId"]), new RegExp(`^${sandbox.id}#\\d+$`));
      armFaults({ "guest-enospc": { op: "write_file" } });
      await rejectsWith(sandbox.files.write("a.txt", "x"), "NO_SPACE");
      disarmFaults();
      await sandbox.files.write("a.txt", "fine");
      assert.equal(await sandbox.files.readText("a.txt"), "fine");
    });

    test("a damaged frame is a protocol violation; the sandbox is killed and every later call is SANDBOX_CLOSED", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      await sandbox.files.write("a.txt", "x");
      t.after(disarmFaults);
      armFaults({ "corrupt-frame": { op: "read_file" } });
      await rejectsWith(sandbox.files.read("a.txt"), "GUEST_PROTOCOL_VIOLATION");
      disarmFaults();
      assert.ok(await waitFor(() => !sandbox.alive, 10_000));
      const closed = await rejectsWith(sandbox.commands.run("true"), "SANDBOX_CLOSED");
      assert.match(closed.message, new RegExp(`^sandbox ${sandbox.id} is gone \\(it was lost: .*not JSON.*\\); create a new sandbox$`));
    });

    test("a guest crash mid-call: GUEST_CHANNEL_LOST for that call, then one SANDBOX_CLOSED for every call after", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      t.after(disarmFaults);
      armFaults({ "guest-crash": { op: "execute_command", ms: 200 } });
      const lost = await rejectsWith(sandbox.commands.run("sleep 10"), "GUEST_CHANNEL_LOST");
      assert.match(lost.message, new RegExp(`^sandbox ${sandbox.id} was lost during execute_command .*; create a new sandbox$`));
      disarmFaults();
      // Before: depending on which part noticed first, GUEST_CHANNEL_LOST or SANDBOX_CLOSED, in six wordings.
      const messages = new Set<string>();
      for (const call of [() => sandbox.files.read("x"), () => sandbox.commands.run("true"), () => sandbox.files.list(".")]) {
        const e = await rejectsWith(call(), "SANDBOX_CLOSED");
        messages.add(e.message);
      }
      assert.equal(messages.size, 1, [...messages].join(" | "));
    });

    test("a sandbox dying during write_file leaves no named temp file in the target directory, and nothing outside is touched", { skip }, async (t) => {
      const { sandbox, workspace } = await sandboxFor(t, backend);
      await sandbox.files.write("d/keep.txt", "kept", { createParents: true });
      // What a kill between the agent's linkat and rename leaves (guest-agent/readwrite.c): a named temp.
      const temp = join(workspace, "d", ".lg-0123456789abcdef.tmp");
      writeFileSync(temp, "partial");
      writeFileSync(join(workspace, "d", ".lg-notours.tmp"), "a user's file");
      // A symlinked directory to outside the workspace with a temp-like name in it: never swept.
      const outside = mkdtempSync(join(tmpdir(), "lg-outside-"));
      t.after(() => rmSync(outside, { recursive: true, force: true }));
      writeFileSync(join(outside, ".lg-fedcba9876543210.tmp"), "not the workspace's");
      symlinkSync(outside, join(workspace, "link"));
      t.after(disarmFaults);
      // The write reaches the agent late; the sandbox is killed before it does.
      armFaults({ "slow-io": { op: "write_file", ms: 3000 }, "guest-crash": { op: "write_file", ms: 200 } });
      await rejectsWith(sandbox.files.write("d/new.txt", "x"), "GUEST_CHANNEL_LOST");
      assert.deepEqual(readdirSync(join(workspace, "d")).sort(), [".lg-notours.tmp", "keep.txt"]);
      disarmFaults();
      const { sandbox: again } = await sandboxFor(t, backend, { workspace });
      t.after(disarmFaults);
      armFaults({ "slow-io": { op: "write_file", ms: 3000 }, "guest-crash": { op: "write_file", ms: 200 } });
      await rejectsWith(again.files.write("link/x.txt", "x"), "GUEST_CHANNEL_LOST");
      assert.deepEqual(readdirSync(outside), [".lg-fedcba9876543210.tmp"], "outside the workspace, nothing is removed");
    });

    test("a channel cut armed for one sandbox: its next call is GUEST_CHANNEL_LOST, every call after SANDBOX_CLOSED, another sandbox untouched", { skip }, async (t) => {
      const { sandbox: a, workspace } = await sandboxFor(t, backend);
      const { sandbox: b } = await sandboxFor(t, backend, { workspace });
      await a.files.write("a.txt", "x");
      t.after(disarmFaults);
      armSandboxFault(a.id, "channel-cut");
      assert.equal(await b.files.readText("a.txt"), "x", "the other sandbox's call is not cut");
      const lost = await rejectsWith(a.files.readText("a.txt"), "GUEST_CHANNEL_LOST");
      assert.match(lost.message, new RegExp(`^sandbox ${a.id} was lost during read_file \\(.*\\); create a new sandbox$`));
      assert.equal(lost.details["sandboxId"], a.id);
      assert.match(String(lost.details["callId"]), new RegExp(`^${a.id}#\\d+$`));
      assert.equal(faultsOn, false, "spent: nothing left armed");
      assert.ok(await waitFor(() => !a.alive, 10_000));
      const closed = await rejectsWith(a.commands.run("true"), "SANDBOX_CLOSED");
      assert.match(closed.message, new RegExp(`^sandbox ${a.id} is gone \\(it was lost: .*\\); create a new sandbox$`));
      assert.equal((await b.commands.run("echo ok")).stdout, "ok\n");
    });

    test("a channel cut armed for a command's call: other tools pass, the command is GUEST_CHANNEL_LOST", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      t.after(disarmFaults);
      armSandboxFault(sandbox.id, "channel-cut", { op: "execute_command" });
      await sandbox.files.write("before.txt", "1");
      assert.equal(await sandbox.files.readText("before.txt"), "1");
      const lost = await rejectsWith(sandbox.commands.run(["sleep", "30"]), "GUEST_CHANNEL_LOST");
      assert.ok(lost.message.startsWith(`sandbox ${sandbox.id} was lost during execute_command`), lost.message);
      assert.ok(await waitFor(() => !sandbox.alive, 10_000));
    });

    test("a channel cut of a named channel: the sandbox is lost whichever channel the call used", { skip }, async (t) => {
      for (const channel of ["vm", "jail"] as const) {
        const { sandbox } = await sandboxFor(t, backend);
        await sandbox.files.write("a.txt", "x");
        t.after(disarmFaults);
        armSandboxFault(sandbox.id, "channel-cut", { channel });
        // On a VM the other channel is cut as the call starts: the call may still finish first.
        const first = await sandbox.files.readText("a.txt").then(
          () => "ok",
          (e: unknown) => (e as { code?: string }).code,
        );
        assert.ok(first === "GUEST_CHANNEL_LOST" || (first === "ok" && backend === "microvm" && channel === "vm"), `${channel}: ${String(first)}`);
        assert.ok(await waitFor(() => !sandbox.alive, 10_000), `${channel}: the sandbox is lost`);
        const closed = await rejectsWith(sandbox.commands.run("true"), "SANDBOX_CLOSED");
        assert.match(closed.message, /it was lost: /);
      }
    });

    test("a killed sandbox forgets what was armed for it", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      t.after(disarmFaults);
      armSandboxFault(sandbox.id, "channel-cut", { op: "search" });
      assert.equal(faultsOn, true);
      await sandbox.kill();
      assert.equal(faultsOn, false);
    });

    test("an injected spawn failure is SANDBOX_SPAWN_FAILED with a hint, and the next spawn works", { skip }, async (t) => {
      t.after(disarmFaults);
      armFaults({ spawn: {} });
      const { Sandbox } = await import("../../src/runtime/sandbox.js");
      const e = await rejectsWith(Sandbox.create({ backend, daemon: false }), "SANDBOX_SPAWN_FAILED");
      assert.match(e.message, /EAGAIN .*retry/);
      const { sandbox } = await sandboxFor(t, backend);
      assert.equal((await sandbox.commands.run("echo ok")).stdout, "ok\n");
    });
  });
}

describe("restore failure on microvm", async () => {
  const skip = await unavailable("microvm");
  test("a failed restore falls back to a cold boot that works, and says so in its info", { skip }, async (t) => {
    t.after(disarmFaults);
    armFaults({ restore: {} });
    const { sandbox } = await sandboxFor(t, "microvm");
    assert.equal(sandbox.info["start"], "cold");
    assert.match(String(sandbox.info["restoreFallback"]), /injected/);
    assert.equal((await sandbox.commands.run("echo ok")).stdout, "ok\n");
  });
});
