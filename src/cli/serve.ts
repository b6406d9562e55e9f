// `luminaguard serve`: the long-running daemon (warm pools, approvals, audit, the HTTP API on a Unix socket).
import { Option, type Command } from "commander";
import { loadConfig } from "../config/config.js";
// The server (hono, prom-client) is loaded by the action only: other commands start without it.
import { DAEMON_APPROVAL_MODES, DEFAULT_DRAIN_GRACE_MS, type DaemonApprovalMode } from "../daemon/schemas.js";
import { DAEMON_TOKEN_ENV } from "../daemon/socket-path.js";
import type { PoolSize } from "../daemon/service.js";
import { LuminaGuardError } from "../errors.js";
import type { BackendName } from "../sandbox/types.js";
import { escapeForTerminal } from "../util/terminal.js";
import { parseIntOption } from "./output.js";
import { addClusterNodeOptions, joinClusterFrom, type ClusterNodeFlags } from "./cluster.js";

interface ServeFlags extends ClusterNodeFlags {
  socket?: string;
  listen?: string;
  namespacePool?: string;
  microvmPool?: string;
  vmmSpares?: number;
  maxSandboxes?: number;
  memoryBudget?: number;
  maxCalls?: number;
  maxQueue?: number;
  admissionWait?: number;
  drainGrace?: number;
  approval?: DaemonApprovalMode;
  approvalTimeout?: number;
  idle?: number;
  policy?: string;
  recover: boolean;
  recoveryGrace?: number;
  mcp: boolean;
}

/** "MIN" or "MIN:MAX" (0 turns the pool off). */
function parsePool(flag: string, value: string): PoolSize {
  const m = /^(\d{1,3})(?::(\d{1,3}))?$/.exec(value);
  if (!m) throw new LuminaGuardError("INVALID_ARGUMENT", `${flag} must be MIN or MIN:MAX (e.g. 2:8), not ${JSON.stringify(value)}`);
  const min = Number(m[1]);
  const max = m[2] !== undefined ? Number(m[2]) : Math.max(min, 1);
  if (max < min) throw new LuminaGuardError("INVALID_ARGUMENT", `${flag}: MAX must not be below MIN`);
  return min === 0 && m[2] === undefined ? { min: 0, max: 0 } : { min, max };
}

function say(line: string): void {
  process.stderr.write(`luminaguard: ${escapeForTerminal(line)}\n`);
}

export function registerServeCommand(program: Command): void {
  const cmd = program
    .command("serve")
    .description("run the daemon: warm pools, the approval queue and audit log, and the HTTP API on a Unix socket (SIGTERM drains)")
    .option("--socket <path>", "Unix socket (default $XDG_RUNTIME_DIR/luminaguard.sock, or in the private runtime directory)")
    .option("--listen <host:port>", `also listen on loopback TCP; clients send the bearer token from $${DAEMON_TOKEN_ENV} (generated and printed once if unset)`)
    .option("--namespace-pool <min:max>", "warm namespace sandboxes kept ready (0 = no pool; default 2:8)")
    .option("--microvm-pool <min:max>", "warm micro-VMs kept ready (0 = no pool; default 1:4)")
    .option("--vmm-spares <n>", "micro-VM VMMs kept started, warmed and paused for the next restore (in all, for the VM sizes restored most recently), 0 to 8 (needs root; default 1; LUMINAGUARD_VMM_SPARES wins)", parseIntOption("--vmm-spares", 0, 8))
    .option("--max-sandboxes <n>", "sandboxes alive at once at most; past it requests wait in the admission queue (default 64)", parseIntOption("--max-sandboxes", 1, 10_000))
    .option("--memory-budget <MiB>", "memory the daemon may commit to sandboxes, pools included (default: MemAvailable at start minus max(1 GiB, 10% of RAM))", parseIntOption("--memory-budget", 64, 16_777_216))
    .option("--max-calls <n>", "tool calls running at once at most (default 4 per core, at least 8)", parseIntOption("--max-calls", 1, 100_000))
    .option("--max-queue <n>", "requests waiting for room at most; past it CAPACITY at once (default 1024)", parseIntOption("--max-queue", 0, 1_000_000))
    .option("--admission-wait <ms>", "how long a request waits for room when it names no deadline, then CAPACITY (default 30000)", parseIntOption("--admission-wait", 0, 3_600_000))
    .option("--drain-grace <seconds>", `SIGTERM: how long calls in flight may take (default ${DEFAULT_DRAIN_GRACE_MS / 1000})`, parseIntOption("--drain-grace", 0, 3600))
    .addOption(new Option("--approval <mode>", "Red calls of sandboxes that do not choose: ask (queued for POST /v1/approvals/ID), policy, off (default, as the SDK)").choices([...DAEMON_APPROVAL_MODES]))
    .option("--approval-timeout <seconds>", "no answer within this long is a denial (default: the policy's, else 300)", parseIntOption("--approval-timeout", 1, 86_400))
    .option("--idle <seconds>", "destroy a sandbox unused for this long (default 600)", parseIntOption("--idle", 1, 7 * 86_400))
    .option("--policy <file>", "approval policy file (default $LUMINAGUARD_HOME/policy.json)")
    .option("--no-recover", "skip start-up recovery of what a crashed run left behind")
    .option("--recovery-grace <ms>", "leave leftovers younger than this alone: another process may be about to use them (default 5000)", parseIntOption("--recovery-grace", 0, 3_600_000))
    .option("--no-mcp", "do not serve MCP at /mcp");
  addClusterNodeOptions(cmd)
    .action(async (flags: ServeFlags) => {
      // A SIGTERM from the moment the socket answers must drain, not kill (Node's default): held until the handler below.
      let early: NodeJS.Signals | undefined;
      const onEarly = (sig: NodeJS.Signals): void => void (early ??= sig);
      process.on("SIGTERM", onEarly);
      process.on("SIGINT", onEarly);
      const config = loadConfig().serve ?? {};
      const pools: Partial<Record<BackendName, PoolSize>> = { ...(config.pools?.namespace ? { namespace: config.pools.namespace } : {}), ...(config.pools?.microvm ? { microvm: config.pools.microvm } : {}) };
      if (flags.namespacePool !== undefined) pools.namespace = parsePool("--namespace-pool", flags.namespacePool);
      if (flags.microvmPool !== undefined) pools.microvm = parsePool("--microvm-pool", flags.microvmPool);
      const socket = flags.socket ?? config.socket;
      const listen = flags.listen ?? config.listen;
      const maxSandboxes = flags.maxSandboxes ?? config.maxSandboxes;
      const memoryBudgetMiB = flags.memoryBudget ?? config.memoryBudgetMiB;
      const maxCalls = flags.maxCalls ?? config.maxCalls;
      const maxQueue = flags.maxQueue ?? config.maxQueue;
      const admissionWaitMs = flags.admissionWait ?? config.admissionWaitMs;
      const approvalTimeoutMs = flags.approvalTimeout !== undefined ? flags.approvalTimeout * 1000 : config.approvalTimeoutMs;
      const idleMs = flags.idle !== undefined ? flags.idle * 1000 : config.idleMs;
      const drainGraceMs = flags.drainGrace !== undefined ? flags.drainGrace * 1000 : (config.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS);

      const { startDaemon } = await import("../daemon/server.js");
      const { formatRecovery } = await import("../daemon/recovery.js");
      const running = await startDaemon({
        pools,
        drainGraceMs,
        recover: flags.recover,
        ...(flags.recoveryGrace !== undefined ? { recoveryGraceMs: flags.recoveryGrace } : {}),
        mcp: flags.mcp,
        ...(socket !== undefined ? { socketPath: socket } : {}),
        ...(listen !== undefined ? { listen } : {}),
        ...(maxSandboxes !== undefined ? { maxSandboxes } : {}),
        ...(flags.vmmSpares !== undefined ? { vmmSpares: flags.vmmSpares } : {}),
        ...(memoryBudgetMiB !== undefined ? { memoryBudgetMiB } : {}),
        ...(maxCalls !== undefined ? { maxCalls } : {}),
        ...(maxQueue !== undefined ? { maxQueue } : {}),
        ...(admissionWaitMs !== undefined ? { admissionWaitMs } : {}),
        ...(flags.approval !== undefined ? { approval: flags.approval } : {}),
        ...(approvalTimeoutMs !== undefined ? { approvalTimeoutMs } : {}),
        ...(idleMs !== undefined ? { idleMs } : {}),
        ...(flags.policy !== undefined ? { policyFile: flags.policy } : {}),
      });
      if (running.recovery) {
        const lines = formatRecovery(running.recovery);
        say(`recovery: ${running.recovery.removed.length} leftover(s) of a previous run removed, ${running.recovery.kept} kept (alive or too recent)`);
        for (const l of lines) say(`recovery: ${l}`);
      }
      const budget = running.daemon.admission;
      say(`budget: ${budget.memoryBudgetMiB} MiB for sandboxes, ${budget.maxSandboxes} sandboxes, ${budget.maxCalls} calls in flight; queue ${budget.maxQueue}, wait ${budget.defaultWaitMs} ms`);
      say(`daemon ${process.pid} serving on unix:${running.socketPath}${running.tcpUrl ? ` and ${running.tcpUrl}` : ""}`);
      if (running.tokenGenerated && running.token) say(`bearer token for ${running.tcpUrl ?? "TCP"} (shown once; set ${DAEMON_TOKEN_ENV} to choose it): ${running.token}`);
      let node;
      try {
        node = await joinClusterFrom(running.daemon, flags);
      } catch (err) {
        await running.stop();
        throw err;
      }
      if (node) say(`cluster node ${node.name} joined`);
      if (running.tcpUrl) say(`dashboard: ${running.tcpUrl}/ui?token=${running.tokenGenerated ? "<the token above>" : `$${DAEMON_TOKEN_ENV}`} (once; then a cookie)`);

      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (sig: NodeJS.Signals): void => {
          signals++;
          if (signals > 1) {
            say(`${sig} again: still draining (sandboxes are being destroyed)`);
            return;
          }
          say(`${sig}: draining (no new work; calls in flight get ${drainGraceMs / 1000} s)`);
          void (node?.leave() ?? Promise.resolve())
            .then(() => running.stop())
            .then(() => node?.close())
            .then(resolve, (err: unknown) => {
            say(`drain failed: ${(err as Error).message}`);
            process.exitCode = 1;
            resolve();
          });
        };
        process.on("SIGTERM", onSignal);
        process.on("SIGINT", onSignal);
        process.off("SIGTERM", onEarly);
        process.off("SIGINT", onEarly);
        if (early) onSignal(early);
      });
      say("daemon stopped; every sandbox destroyed");
    });
}
