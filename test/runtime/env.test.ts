// Secrets stay out: what LuminaGuard starts for a sandbox (bwrap, QEMU, the guest) gets a minimal, explicit environment.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { SANDBOX_HOST_PATH, sandboxHostEnv } from "../../src/util/env.js";
import { spawnGroup } from "../../src/util/proc.js";
import { cmdline } from "../../src/util/procfs.js";
import { BACKENDS, sandboxFor, unavailable } from "../fixtures.js";

// Set before anything is spawned: whatever inherits our environment by accident would carry them.
const SECRETS = { OPENAI_API_KEY: "sk-test-secret", ANTHROPIC_API_KEY: "sk-ant-test-secret", LUMINAGUARD_MCP_TOKEN: "tok-test-secret" };
Object.assign(process.env, SECRETS);
// A caller's PATH with a directory in front that is not ours: launchers must not search it.
process.env["PATH"] = `/tmp/lg-evil-path:${process.env["PATH"] ?? "/usr/bin:/bin"}`;

function assertClean(what: string, environ: string): void {
  for (const [name, value] of Object.entries(SECRETS)) {
    assert.ok(!environ.includes(value), `${what}: ${name}'s value leaked:\n${environ}`);
    assert.ok(!environ.includes(`${name}=`), `${what}: ${name} leaked:\n${environ}`);
  }
}

function collect(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnGroup(argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout?.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.on("error", reject);
    child.on("close", () => resolve(out));
  });
}

test("spawnGroup without an env option passes a minimal one, not ours", async () => {
  const environ = await collect(["cat", "/proc/self/environ"]);
  assertClean("a spawnGroup child", environ);
  const names = environ.split("\0").filter((kv) => kv !== "").map((kv) => kv.slice(0, kv.indexOf("=")));
  for (const name of names) assert.ok(["PATH", "LANG", "TZ"].includes(name), `unexpected ${name} in ${environ}`);
  assert.ok(names.includes("PATH"), "PATH is set, to a fixed value");
});

test("sandboxHostEnv: a fixed PATH, LANG, and TZ only when set; nothing else", () => {
  const savedTz = process.env["TZ"];
  try {
    delete process.env["TZ"];
    assert.deepEqual(sandboxHostEnv(), { PATH: SANDBOX_HOST_PATH, LANG: "C.UTF-8" });
    process.env["TZ"] = "Europe/Paris";
    assert.deepEqual(sandboxHostEnv(), { PATH: SANDBOX_HOST_PATH, LANG: "C.UTF-8", TZ: "Europe/Paris" });
  } finally {
    if (savedTz === undefined) delete process.env["TZ"];
    else process.env["TZ"] = savedTz;
  }
});

/** The environment of `pid` as a map, or undefined when it is gone. */
function environOf(pid: number): Map<string, string> | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/environ`, "utf8");
    return new Map(raw.split("\0").filter((kv) => kv.includes("=")).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
  } catch {
    return undefined;
  }
}

for (const backend of BACKENDS) {
  describe(`${backend}: neither the host processes nor the guest see our secrets`, async () => {
    const skip = await unavailable(backend);

    test("host /proc/<pid>/environ of every sandbox process, and every environment inside", { skip }, async (t) => {
      const { sandbox } = await sandboxFor(t, backend);
      const pids = sandbox.pids();
      assert.ok(pids.length > 0);
      for (const pid of pids) {
        let environ: string;
        try {
          environ = readFileSync(`/proc/${pid}/environ`, "utf8");
        } catch {
          continue; // exited meanwhile
        }
        const cmd = (cmdline(pid) ?? "").split(" ").slice(0, 2).join(" ");
        assertClean(`host pid ${pid} (${cmd})`, environ);
        // The launcher (bwrap, or QEMU) runs with a fixed PATH, not one a caller could prepend to.
        if (/^(\S*\/)?(bwrap|qemu-system-\S+|setpriv)( |$)/.test(cmd)) {
          const path = environOf(pid)?.get("PATH");
          if (path !== undefined) assert.ok(!path.includes("/tmp/lg-evil-path"), `${cmd}: PATH ${path} is the caller's`);
        }
      }
      const inside = await sandbox.commands.run(["/bin/sh", "-c", "cat /proc/1/environ 2>&1; echo; env; for e in /proc/[0-9]*/environ; do cat \"$e\" 2>/dev/null; echo; done"]);
      assert.equal(inside.exitCode, 0, inside.stderr);
      assert.match(inside.stdout, /PATH=/, "env ran");
      assertClean("inside the sandbox", inside.stdout + inside.stderr);
    });
  });
}
