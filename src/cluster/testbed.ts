// A real NATS cluster and LuminaGuard nodes on loopback, for the cluster tests and `bench cluster`: 3 nats-server
// processes clustered with JetStream (each its own store, ports and process group; users `node`, which may publish
// anything, and `client`, which may claim and call but never act as a node), and `luminaguard serve --cluster`
// nodes as child processes, each with its own home, runtime directory and socket.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nkeys } from "nats";
import { freePort } from "../util/net.js";

export const NODE_USER = { user: "node", password: "node-secret-1" };
export const CLIENT_USER = { user: "client", password: "client-secret-1" };

/** Why a NATS cluster cannot be started here (no nats-server), or undefined. */
export function natsServerMissingReason(): string | undefined {
  const r = spawnSync("nats-server", ["--version"], { encoding: "utf8" });
  if (r.status === 0) return undefined;
  return "nats-server not installed (apt-get install nats-server; scripts/install-deps.sh)";
}

export interface NatsServer {
  name: string;
  port: number;
  url: string;
  /** The monitoring port (/healthz, /connz). */
  http: number;
  proc: ChildProcess;
  log: () => string;
  kill: (signal?: NodeJS.Signals) => Promise<void>;
  alive: () => boolean;
}

export interface NatsCluster {
  servers: NatsServer[];
  /** All three client URLs, comma-separated. */
  urls: string;
  root: string;
  /** A client user that signs in with an nkey (its seed file), with the client's permissions. */
  nkeySeedFile: string;
  /** A seed the servers do not know. */
  strangerSeedFile: string;
  stop: () => Promise<void>;
}

function permissions(nkeyUser: string): string {
  const client = {
    publish: {
      allow: ["lg.offer", "lg.node.*.create", "lg.node.*.call", "lg.node.*.cancel", "lg.node.*.kill", "lg.node.*.ping", "$JS.API.>"],
      deny: ["$KV.>", "$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>"],
    },
    subscribe: { allow: ["_INBOX.>"] },
  };
  const users = [
    { user: NODE_USER.user, password: NODE_USER.password, permissions: { publish: { allow: [">"] }, subscribe: { allow: [">"] } } },
    { user: CLIENT_USER.user, password: CLIENT_USER.password, permissions: client },
    { nkey: nkeyUser, permissions: client },
  ];
  // The NATS config format accepts JSON values.
  return `authorization: ${JSON.stringify({ users })}\n`;
}

/** Whether a loopback HTTP port or a Unix socket answers 200 on /healthz within `timeoutMs`. */
function healthy(at: { port: number } | { socketPath: string }, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const where = "port" in at ? { host: "127.0.0.1", port: at.port } : { socketPath: at.socketPath };
    const req = request({ ...where, path: "/healthz", timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once("error", () => resolve(false));
    req.once("timeout", () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** The names of the client connections a server holds now (its /connz). */
export function connectionNames(server: NatsServer): Promise<string[]> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port: server.http, path: "/connz?limit=1024", timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.once("end", () => {
        try {
          resolve(((JSON.parse(body) as { connections?: { name?: string }[] }).connections ?? []).map((c) => c.name ?? ""));
        } catch {
          resolve([]);
        }
      });
    });
    req.once("error", () => resolve([]));
    req.end();
  });
}

export async function startNatsCluster(): Promise<NatsCluster> {
  const root = mkdtempSync(join(tmpdir(), "lg-nats-test-"));
  const user = nkeys.createUser();
  const nkeySeedFile = join(root, "client.nk");
  writeFileSync(nkeySeedFile, `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
  const strangerSeedFile = join(root, "stranger.nk");
  writeFileSync(strangerSeedFile, new TextDecoder().decode(nkeys.createUser().getSeed()), { mode: 0o600 });
  const ports = await Promise.all(Array.from({ length: 3 }, async () => ({ client: await freePort(), route: await freePort(), http: await freePort() })));
  const servers: NatsServer[] = [];
  for (let i = 0; i < 3; i++) {
    const p = ports[i] as { client: number; route: number; http: number };
    const name = `n${i + 1}`;
    const dir = join(root, name);
    mkdirSync(join(dir, "js"), { recursive: true });
    const routes = ports.filter((_, j) => j !== i).map((q) => `"nats-route://127.0.0.1:${q.route}"`);
    const conf = [
      `server_name: ${name}`,
      `listen: "127.0.0.1:${p.client}"`,
      `http: "127.0.0.1:${p.http}"`,
      `max_payload: 8388608`,
      `jetstream: { store_dir: "${join(dir, "js")}", max_memory_store: 67108864, max_file_store: 268435456 }`,
      `cluster: { name: "lgtest", listen: "127.0.0.1:${p.route}", routes: [${routes.join(", ")}] }`,
      permissions(user.getPublicKey()),
    ].join("\n");
    const file = join(dir, "nats.conf");
    writeFileSync(file, conf, { mode: 0o600 });
    const proc = spawn("nats-server", ["-c", file], { stdio: ["ignore", "ignore", "pipe"], detached: true });
    let log = "";
    proc.stderr?.on("data", (c: Buffer) => {
      log = (log + c.toString("utf8")).slice(-20_000);
    });
    let gone = false;
    const exited = new Promise<void>((r) => proc.once("exit", () => r()));
    void exited.then(() => (gone = true));
    servers.push({
      name,
      port: p.client,
      url: `nats://127.0.0.1:${p.client}`,
      http: p.http,
      proc,
      log: () => log,
      alive: () => !gone,
      kill: async (signal: NodeJS.Signals = "SIGKILL") => {
        if (!gone) {
          try {
            process.kill(-(proc.pid as number), signal);
          } catch {
            /* gone */
          }
        }
        await exited;
      },
    });
  }
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.kill("SIGKILL")));
    rmSync(root, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (const [i, s] of servers.entries()) {
    while (!(await healthy({ port: (ports[i] as { http: number }).http }))) {
      if (!s.alive() || Date.now() > deadline) {
        const logs = servers.map((x) => `${x.name}:\n${x.log()}`).join("\n");
        await stop();
        throw new Error(`nats-server ${s.name} did not start:\n${logs}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { servers, urls: servers.map((s) => s.url).join(","), root, nkeySeedFile, strangerSeedFile, stop };
}

const MAIN = fileURLToPath(new URL("../cli/main.js", import.meta.url));

/** A `luminaguard serve --cluster` node as a child process in its own process group. */
export interface ClusterNode {
  name: string;
  pid: number;
  socket: string;
  /** Its private runtime directory and home; restart() reuses them (recovering what a SIGKILL left). */
  root: string;
  stderr: () => string;
  alive: () => boolean;
  /** SIGTERM (the node drains) or SIGKILL; resolves once the process is gone (SIGKILL after 60 s). */
  stop: (signal?: NodeJS.Signals) => Promise<void>;
  /** Removes its directories (after stop). */
  remove: () => void;
}

export interface ClusterNodeOptions {
  name: string;
  /** The NATS URLs, comma-separated. */
  servers: string;
  /** `serve --namespace-pool` (default "1:2"). */
  namespacePool?: string;
  maxSandboxes?: number;
  heartbeatMs?: number;
  ttlMs?: number;
  labels?: Record<string, string>;
  /** An earlier node's directory: recover what it left (restart after a SIGKILL). */
  root?: string;
}

/**
 * Runs the daemon once more on a node's directories, without the cluster, only to recover what a SIGKILLed run
 * left (mounted workspaces of sandboxes that outlived it), then stops it. For cleanup once every node is stopped.
 */
export async function recoverNodeDirs(root: string): Promise<void> {
  const socket = join(root, "recover.sock");
  const env: NodeJS.ProcessEnv = { ...process.env, LUMINAGUARD_RUN: join(root, "run"), LUMINAGUARD_HOME: join(root, "home"), LUMINAGUARD_LOG: "warn" };
  delete env["LUMINAGUARD_SOCKET"];
  delete env["LUMINAGUARD_CLUSTER"];
  const child = spawn(process.execPath, [MAIN, "serve", "--socket", socket, "--no-mcp", "--recovery-grace", "0", "--namespace-pool", "0", "--microvm-pool", "0"], {
    env,
    stdio: ["ignore", "ignore", "ignore"],
    detached: true,
  });
  let gone = false;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  void exited.then(() => (gone = true));
  for (const end = Date.now() + 30_000; !gone && Date.now() < end && !(await healthy({ socketPath: socket }, 2000)); ) await new Promise((r) => setTimeout(r, 50));
  if (!gone) child.kill("SIGTERM");
  const timer = setTimeout(() => {
    try {
      process.kill(-(child.pid as number), "SIGKILL");
    } catch {
      /* gone */
    }
  }, 30_000);
  await exited;
  clearTimeout(timer);
}

/** Starts a node (namespace backend, no MCP, user `node`) and resolves once its socket answers /healthz. */
export async function startClusterNode(o: ClusterNodeOptions): Promise<ClusterNode> {
  const root = o.root ?? mkdtempSync(join(tmpdir(), `lg-cluster-${o.name}-`));
  const run = join(root, "run");
  const home = join(root, "home");
  mkdirSync(run, { recursive: true, mode: 0o700 });
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const socket = join(root, "d.sock");
  const env: NodeJS.ProcessEnv = { ...process.env, LUMINAGUARD_RUN: run, LUMINAGUARD_HOME: home, LUMINAGUARD_LOG: "warn", LUMINAGUARD_CLUSTER_PASSWORD: NODE_USER.password };
  delete env["LUMINAGUARD_SOCKET"];
  delete env["LUMINAGUARD_CLUSTER"];
  const argv = [
    MAIN,
    "serve",
    "--socket",
    socket,
    "--no-mcp",
    ...(o.root !== undefined ? ["--recovery-grace", "0"] : ["--no-recover"]),
    "--namespace-pool",
    o.namespacePool ?? "1:2",
    "--microvm-pool",
    "0",
    "--max-sandboxes",
    String(o.maxSandboxes ?? 2),
    "--cluster",
    o.servers,
    "--cluster-user",
    NODE_USER.user,
    "--cluster-node",
    o.name,
    "--cluster-label",
    `name=${o.name}`,
    ...Object.entries(o.labels ?? {}).flatMap(([k, v]) => ["--cluster-label", `${k}=${v}`]),
    ...(o.heartbeatMs !== undefined ? ["--cluster-heartbeat", String(o.heartbeatMs)] : []),
    ...(o.ttlMs !== undefined ? ["--cluster-ttl", String(o.ttlMs)] : []),
  ];
  const child = spawn(process.execPath, argv, { env, stdio: ["ignore", "ignore", "pipe"], detached: true });
  let err = "";
  child.stderr?.on("data", (c: Buffer) => {
    err = (err + c.toString("utf8")).slice(-20_000);
  });
  let gone = false;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  void exited.then(() => (gone = true));
  const signalGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-(child.pid as number), signal);
    } catch {
      /* gone */
    }
  };
  const stop = async (signal: NodeJS.Signals = "SIGTERM"): Promise<void> => {
    // The node's process only (as a crash would): its sandboxes are recovered by a restart on the same root.
    if (!gone) child.kill(signal);
    const timer = setTimeout(() => signalGroup("SIGKILL"), 60_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (gone) throw new Error(`node ${o.name} exited before it answered:\n${err}`);
    // Answering on its socket is not enough: the node joins the cluster after that (and exits if it cannot).
    if (err.includes(`cluster node ${o.name} joined`) && (await healthy({ socketPath: socket }, 2000))) break;
    if (Date.now() > deadline) {
      await stop("SIGKILL");
      throw new Error(`node ${o.name} did not join within 60 s:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: o.name,
    pid: child.pid as number,
    socket,
    root,
    stderr: () => err,
    alive: () => !gone,
    stop,
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}
