// `luminaguard cluster status`, and the --cluster flags that serve, exec and tool share (nats is loaded only when used).
import type { Command } from "commander";
import type { ClusterConnect } from "../cluster/connect.js";
import type { ClusterNode } from "../cluster/node.js";
import type { NodeRecord } from "../cluster/protocol.js";
import type { Daemon } from "../daemon/service.js";
import { LuminaGuardError } from "../errors.js";
import { escapeForTerminal } from "../util/terminal.js";
import { parseIntOption } from "./output.js";

export interface ClusterConnectFlags {
  cluster?: string;
  clusterUser?: string;
  clusterPassword?: string;
  clusterCreds?: string;
  clusterNkey?: string;
  clusterTlsCa?: string;
  clusterTlsCert?: string;
  clusterTlsKey?: string;
}

export interface ClusterNodeFlags extends ClusterConnectFlags {
  clusterNode?: string;
  clusterLabel?: string[];
  clusterHeartbeat?: number;
  clusterTtl?: number;
}

/** The connection flags, as the `nats` CLI names them. The password is better given as $LUMINAGUARD_CLUSTER_PASSWORD. */
export function addClusterConnectOptions(cmd: Command, what: string): Command {
  return cmd
    .option("--cluster <urls>", `${what}: nats://HOST:PORT[,...] (or $LUMINAGUARD_CLUSTER, or the config file's cluster.servers)`)
    .option("--cluster-user <user>", "NATS user (or $LUMINAGUARD_CLUSTER_USER)")
    .option("--cluster-password <password>", "NATS password (better: $LUMINAGUARD_CLUSTER_PASSWORD, not seen in ps)")
    .option("--cluster-creds <file>", "NATS credentials file (JWT + nkey seed), as nats --creds")
    .option("--cluster-nkey <file>", "NATS nkey seed file, as nats --nkey")
    .option("--cluster-tls-ca <file>", "CA to verify the NATS servers with")
    .option("--cluster-tls-cert <file>", "client certificate for NATS mutual TLS")
    .option("--cluster-tls-key <file>", "client key for NATS mutual TLS");
}

/** The cluster connection from flags, environment and config file; undefined when none names servers. */
export async function clusterConnectFrom(flags: ClusterConnectFlags): Promise<ClusterConnect | undefined> {
  const { resolveConnect } = await import("../cluster/connect.js");
  const tls =
    flags.clusterTlsCa !== undefined || flags.clusterTlsCert !== undefined || flags.clusterTlsKey !== undefined
      ? {
          ...(flags.clusterTlsCa !== undefined ? { ca: flags.clusterTlsCa } : {}),
          ...(flags.clusterTlsCert !== undefined ? { cert: flags.clusterTlsCert } : {}),
          ...(flags.clusterTlsKey !== undefined ? { key: flags.clusterTlsKey } : {}),
        }
      : undefined;
  return resolveConnect({
    ...(flags.cluster !== undefined ? { servers: flags.cluster } : {}),
    ...(flags.clusterUser !== undefined ? { user: flags.clusterUser } : {}),
    ...(flags.clusterPassword !== undefined ? { password: flags.clusterPassword } : {}),
    ...(flags.clusterCreds !== undefined ? { creds: flags.clusterCreds } : {}),
    ...(flags.clusterNkey !== undefined ? { nkey: flags.clusterNkey } : {}),
    ...(tls !== undefined ? { tls } : {}),
  });
}

/** exec and tool: the cluster when --cluster or $LUMINAGUARD_CLUSTER names one (credentials as for serve); else undefined. */
export async function clusterForClient(flags: ClusterConnectFlags): Promise<ClusterConnect | undefined> {
  if (flags.cluster === undefined && !process.env["LUMINAGUARD_CLUSTER"]) return undefined;
  return await clusterConnectFrom(flags);
}

/** serve: the connection flags plus the node's own. */
export function addClusterNodeOptions(cmd: Command): Command {
  return addClusterConnectOptions(cmd, "join this cluster as a node")
    .option("--cluster-node <name>", "this node's name in the cluster (default: the host name)")
    .option("--cluster-label <key=value>", "a label claims can require (repeatable)", (v: string, prev: string[] = []) => [...prev, v])
    .option("--cluster-heartbeat <ms>", "heartbeat interval (default 2000)", parseIntOption("--cluster-heartbeat", 100, 60_000))
    .option("--cluster-ttl <ms>", "a node silent this long is lost (default 10000); clients judge each node by its own TTL, at most the bucket's max age, which the first node to join sets for the cluster", parseIntOption("--cluster-ttl", 500, 600_000));
}

/** serve --cluster: joins when servers are named (flag, env or config file); undefined otherwise. */
export async function joinClusterFrom(daemon: Daemon, flags: ClusterNodeFlags): Promise<ClusterNode | undefined> {
  const connect = await clusterConnectFrom(flags);
  if (connect === undefined) return undefined;
  const [{ ClusterNode }, { clusterConfig }] = await Promise.all([import("../cluster/node.js"), import("../cluster/connect.js")]);
  const file = clusterConfig();
  const labels: Record<string, string> = { ...(file.labels ?? {}) };
  for (const l of flags.clusterLabel ?? []) {
    const m = /^([A-Za-z0-9_.-]{1,63})=(.{0,200})$/.exec(l);
    if (!m) throw new LuminaGuardError("INVALID_ARGUMENT", `--cluster-label must be KEY=VALUE, not ${JSON.stringify(l)}`);
    labels[m[1] as string] = m[2] as string;
  }
  const name = flags.clusterNode ?? file.node;
  const heartbeatMs = flags.clusterHeartbeat ?? file.heartbeatMs;
  const ttlMs = flags.clusterTtl ?? file.ttlMs;
  return await ClusterNode.start(daemon, {
    connect,
    labels,
    ...(name !== undefined ? { name } : {}),
    ...(heartbeatMs !== undefined ? { heartbeatMs } : {}),
    ...(ttlMs !== undefined ? { ttlMs } : {}),
    ...(file.replicas !== undefined ? { replicas: file.replicas } : {}),
  });
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)}G`;
}

export function formatStatus(nodes: NodeRecord[]): string[] {
  const lines = [`${nodes.length} node(s), ${nodes.reduce((n, x) => n + x.free, 0)} sandbox(es) free of ${nodes.reduce((n, x) => n + x.max, 0)}`];
  const rows = [["NODE", "STATE", "VERSION", "BACKENDS", "SANDBOXES", "CLUSTER", "FREE", "IN-FLIGHT", "LOAD1", "MEM-FREE", "LABELS", "HEARTBEAT"]];
  for (const n of nodes) {
    const backends = Object.entries(n.backends)
      .filter(([, b]) => b.available)
      .map(([k, b]) => (b.accelerator ? `${k}(${b.accelerator})` : k))
      .join(",");
    const labels = Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-";
    rows.push([n.name, n.state, n.version, backends || "-", `${n.alive}/${n.max}`, String(n.clusterSandboxes), String(n.free), String(n.inFlight), String(n.load1), gib(n.memoryAvailableBytes), labels, n.at]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  for (const r of rows) lines.push(r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd());
  return lines;
}

export function registerClusterCommand(program: Command): void {
  const cluster = program.command("cluster").description("a LuminaGuard cluster on NATS (nodes are `luminaguard serve --cluster`)");
  addClusterConnectOptions(cluster.command("status").description("the cluster's nodes: capacity, load, version, sandboxes per node"), "the cluster")
    .option("--json", "print JSON")
    .action(async (flags: ClusterConnectFlags & { json?: boolean }) => {
      const connect = await clusterConnectFrom(flags);
      if (connect === undefined) throw new LuminaGuardError("INVALID_ARGUMENT", "no cluster named: --cluster nats://HOST:PORT, $LUMINAGUARD_CLUSTER, or cluster.servers in the config file");
      const { ClusterClient } = await import("../cluster/client.js");
      const client = await ClusterClient.connect(connect);
      try {
        const nodes = await client.nodes();
        if (flags.json) process.stdout.write(`${JSON.stringify({ nodes, ttlMs: await client.nodeTtlMs() }, null, 2)}\n`);
        else for (const l of formatStatus(nodes)) process.stdout.write(`${escapeForTerminal(l)}\n`);
      } finally {
        await client.close();
      }
    });
}
