// The daemon `bench chaos --daemon` runs against: `luminaguard serve` on a private socket, runtime and
// home directory, which the monkey SIGKILLs and restarts (start-up recovery then sweeps what the killed
// one left). At the end it is stopped, started once more past the recovery grace if it was ever
// killed, and what any of them left is reported.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LuminaGuardError } from "../errors.js";
import { DaemonClient } from "../daemon/client.js";
import { recordCreated } from "../runtime/created.js";
import type { BackendName } from "../sandbox/types.js";
import { cmdline, descendants, pidAlive } from "../util/procfs.js";

const MAIN = fileURLToPath(new URL("../cli/main.js", import.meta.url));
/** The daemon's default recovery grace (leftovers younger than this are left alone), plus a margin. */
const RECOVERY_GRACE_MS = 5_000 + 500;

export class ChaosDaemon {
  /** Every sandbox id handed out, to find their processes and leftovers. */
  readonly seen = new Set<string>();
  private child: ChildProcess | undefined;
  private stderrTail = "";
  private lastKill = 0;
  private kills = 0;

  private constructor(
    private readonly backend: BackendName,
    private readonly agents: number,
    readonly root: string,
  ) {}

  get socket(): string {
    return join(this.root, "d.sock");
  }

  private get run(): string {
    return join(this.root, "run");
  }

  static async start(backend: BackendName, agents: number): Promise<ChaosDaemon> {
    const root = mkdtempSync(join(tmpdir(), "lg-bench-chaosd-"));
    recordCreated(root);
    mkdirSync(join(root, "run"), { mode: 0o700 });
    mkdirSync(join(root, "home"), { mode: 0o700 });
    const d = new ChaosDaemon(backend, agents, root);
    await d.launch();
    return d;
  }

  private async launch(): Promise<void> {
    const env: NodeJS.ProcessEnv = { ...process.env, LUMINAGUARD_RUN: this.run, LUMINAGUARD_HOME: join(this.root, "home") };
    delete env["LUMINAGUARD_SOCKET"];
    delete env["LUMINAGUARD_DAEMON"];
    const pool = `${this.agents}:${this.agents * 2}`;
    // Only the backend under test: the other's pool would be killed with the daemon too, outside the monkey's count.
    const args = [MAIN, "serve", "--socket", this.socket, "--no-mcp", "--microvm-pool", this.backend === "microvm" ? pool : "0", "--namespace-pool", this.backend === "namespace" ? pool : "0"];
    const child = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", (c: Buffer) => {
      this.stderrTail = (this.stderrTail + c.toString("utf8")).slice(-4096);
    });
    this.child = child;
    const client = new DaemonClient({ socketPath: this.socket });
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new LuminaGuardError("DAEMON_UNAVAILABLE", `the chaos daemon exited on start: ${this.stderrTail}`);
      try {
        await client.health();
        return;
      } catch {
        if (Date.now() > deadline) throw new LuminaGuardError("DAEMON_UNAVAILABLE", `the chaos daemon did not answer within 120 s: ${this.stderrTail}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Host pids of one of its sandboxes (QEMU or bwrap first, then the rest), found by the id in their command lines. */
  pidsOf(id: string): number[] {
    const pid = this.child?.pid;
    if (pid === undefined) return [];
    const naming = descendants(pid).filter((p) => (cmdline(p) ?? "").includes(id));
    const main = naming.find((p) => /qemu-system/.test(cmdline(p) ?? "")) ?? naming.find((p) => !(cmdline(p) ?? "").includes(`${id}-files`));
    if (main === undefined) return [];
    const rest = new Set(naming.flatMap((p) => [p, ...descendants(p)]));
    rest.delete(main);
    return [main, ...rest];
  }

  async killAndRestart(): Promise<void> {
    const child = this.child;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
    this.kills++;
    this.lastKill = Date.now();
    await this.launch();
  }

  private async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    await exited;
    clearTimeout(timer);
  }

  /**
   * Stops it; if it was ever killed, starts it once more past the recovery grace, so that start-up
   * recovery sweeps the killed ones' leftovers, and stops it again. Returns what is still left: its
   * processes, run-directory entries, the sandboxes' cgroups. Removes its directories.
   */
  async finish(): Promise<string[]> {
    await this.stop();
    if (this.kills > 0) {
      const wait = this.lastKill + RECOVERY_GRACE_MS - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await this.launch();
      await this.stop();
    }
    const left: string[] = [];
    const ids = [...this.seen];
    for (const p of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
      const c = cmdline(Number(p)) ?? "";
      if (pidAlive(Number(p)) && /qemu-system|bwrap|lg-agent/.test(c) && (c.includes(this.root) || ids.some((id) => c.includes(id)))) left.push(`processes: ${p} ${c.slice(0, 120)}`);
    }
    const entries = (dir: string): string[] => {
      try {
        return readdirSync(dir).map((n) => join(dir, n));
      } catch {
        return [];
      }
    };
    for (const e of [...entries(this.run), ...entries(join(this.run, "workspaces"))]) {
      const n = basename(e);
      if (n !== "workspaces" && n !== "vmm-ids" && !n.endsWith(".sock") && !n.endsWith(".lock")) left.push(`daemon runDir: ${e}`);
    }
    for (const c of cgroupsNamed(ids)) left.push(`cgroups: ${c}`);
    if (left.length === 0) rmSync(this.root, { recursive: true, force: true });
    return left;
  }
}

/** Sandbox cgroups (below a `luminaguard` parent) named after one of `ids`. */
function cgroupsNamed(ids: readonly string[]): string[] {
  if (ids.length === 0) return [];
  const out: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let list;
    try {
      list = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of list) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      if (e.name === "luminaguard") {
        for (const c of readdirSync(p)) if (ids.some((id) => c === id || c === `${id}-files`)) out.push(join(p, c));
      } else if (depth > 0) walk(p, depth - 1);
    }
  };
  walk("/sys/fs/cgroup", 3);
  return out;
}
