// `luminaguard serve`: the daemon's listeners (a private Unix socket, optionally loopback TCP with a token) and its lifecycle.
import { randomBytes } from "node:crypto";
import { chmodSync, lstatSync, unlinkSync, type Stats } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { dirname, resolve } from "node:path";
import { getRequestListener } from "@hono/node-server";
import { LuminaGuardError } from "../errors.js";
import { log } from "../log.js";
import { loadConfig } from "../config/config.js";
import { McpClientPool } from "../mcp/client/pool.js";
import { createMcpHttpHandler, type McpHttpHandler } from "../mcp/server/serve-http.js";
import { runDir } from "../paths.js";
import { createApi, sha256, type Transport } from "./api.js";
import { recover, type RecoveryReport } from "./recovery.js";
import { Daemon, type DaemonOptions } from "./service.js";
import { DEFAULT_DRAIN_GRACE_MS } from "./schemas.js";
import { DAEMON_TOKEN_ENV, defaultSocketPath } from "./socket-path.js";


export interface ServeOptions extends DaemonOptions {
  /** Unix socket path; default defaultSocketPath(). */
  socketPath?: string;
  /** Also listen on loopback TCP: "127.0.0.1:PORT" (PORT 0 picks one). */
  listen?: string;
  /** Bearer token for TCP; default $LUMINAGUARD_DAEMON_TOKEN, else generated. */
  token?: string;
  /** SIGTERM: how long calls in flight may take to finish. */
  drainGraceMs?: number;
  /** Skip start-up recovery (tests of something else). */
  recover?: boolean;
  /** Leftovers younger than this are kept (another process may be about to use them); default 5 s. */
  recoveryGraceMs?: number;
  /** Serve MCP Streamable HTTP at /mcp. Default true. */
  mcp?: boolean;
  /** The pooled MCP client for upstream servers; default: one for the config file's `mcpServers`, if any. */
  upstream?: McpClientPool;
}

export interface RunningDaemon {
  daemon: Daemon;
  socketPath: string;
  /** `http://127.0.0.1:PORT` when listening on TCP. */
  tcpUrl?: string;
  token?: string;
  tokenGenerated: boolean;
  recovery?: RecoveryReport;
  /** Drains (see Daemon.drain), closes the listeners, removes the socket. */
  stop(): Promise<void>;
}

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

function parseListen(spec: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(spec);
  const host = m?.[1];
  const port = Number(m?.[2]);
  if (!host || !Number.isInteger(port) || port > 65_535) throw new LuminaGuardError("INVALID_ARGUMENT", `--listen must be HOST:PORT, not ${JSON.stringify(spec)}`);
  if (!LOOPBACK_HOSTS.has(host) && !/^127\.\d+\.\d+\.\d+$/.test(host)) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `--listen ${spec}: the daemon listens on loopback only (127.0.0.1 or ::1); put a proxy with TLS in front of it for anything else`);
  }
  return { host: host.replace(/^\[|\]$/g, ""), port };
}

function euid(): number {
  return process.geteuid?.() ?? -1;
}

function unsafe(message: string): LuminaGuardError {
  return new LuminaGuardError("RUNTIME_DIR_UNSAFE", message);
}

/** Whether something accepts connections on the Unix socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    setTimeout(() => done(false), 2_000).unref();
  });
}

/**
 * Makes `path` free for our socket: its directory must be ours (or root's) and not writable by others
 * unless sticky; an existing socket must be ours and dead (a crashed daemon's), never a symlink or
 * someone else's; a live one is DAEMON_RUNNING.
 */
async function prepareSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > 107) throw new LuminaGuardError("INVALID_ARGUMENT", `socket path ${path} is longer than a Unix socket allows (107 bytes)`);
  const dir = dirname(path);
  let d: Stats;
  try {
    d = lstatSync(dir);
  } catch (err) {
    throw unsafe(`the socket's directory ${dir} cannot be used: ${(err as Error).message}`);
  }
  if (!d.isDirectory()) throw unsafe(`the socket's directory ${dir} is not a directory (a symbolic link is never followed there)`);
  if (d.uid !== euid() && d.uid !== 0) throw unsafe(`the socket's directory ${dir} is owned by uid ${d.uid}, who could replace our socket`);
  if ((d.mode & 0o022) !== 0 && (d.mode & 0o1000) === 0) throw unsafe(`the socket's directory ${dir} is writable by others without the sticky bit`);
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return; // free
  }
  if (st.isSymbolicLink()) throw unsafe(`${path} is a symbolic link; the daemon never listens through one`);
  if (!st.isSocket()) throw unsafe(`${path} exists and is not a socket; remove it or choose another --socket`);
  if (st.uid !== euid()) throw unsafe(`${path} is a socket of uid ${st.uid}, not ours; remove it as its owner or choose another --socket`);
  if (await answers(path)) throw new LuminaGuardError("DAEMON_RUNNING", `a daemon already listens on ${path}; stop it first (luminaguard serve is one per user)`);
  log.info({ path }, "daemon: replacing the socket of a daemon that is gone");
  unlinkSync(path);
}

function listenUnix(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(err.code === "EADDRINUSE" ? new LuminaGuardError("DAEMON_RUNNING", `${path} was taken while we started`) : new LuminaGuardError("IO_ERROR", `cannot listen on ${path}: ${err.message}`)),
    );
    // The socket is created 0600 (never briefly open to others), then checked.
    const old = process.umask(0o177);
    try {
      server.listen(path, () => resolve());
    } finally {
      process.umask(old);
    }
  });
}

function listenTcp(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once("error", (err) => reject(new LuminaGuardError("IO_ERROR", `cannot listen on ${host}:${port}: ${err.message}`)));
    server.listen(port, host, () => resolve(server.address() as AddressInfo));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 1_000).unref();
  });
}

/** Starts the daemon: recovery, pools, listeners. The caller wires signals to `stop()`. */
export async function startDaemon(o: ServeOptions = {}): Promise<RunningDaemon> {
  const socketPath = o.socketPath ?? defaultSocketPath();
  // The default place is in the private runtime directory: make sure it exists and is ours.
  if (o.socketPath === undefined && dirname(socketPath) === runDirIfFixed()) runDir();
  await prepareSocketPath(socketPath);

  let recovery: RecoveryReport | undefined;
  if (o.recover !== false) recovery = await recover(o.recoveryGraceMs !== undefined ? { graceMs: o.recoveryGraceMs } : {});

  const daemon = new Daemon(o);
  if (recovery) for (const r of recovery.removed) daemon.metrics.recovered.inc({ kind: r.kind });
  await daemon.start();

  let mcp: McpHttpHandler | undefined;
  if (o.mcp !== false) {
    // Sessions get their sandboxes through the daemon's admission: counted in its budget like any other.
    const backend = daemon.mcpBackend();
    if (backend) mcp = await createMcpHttpHandler({ host: "127.0.0.1", sandboxSource: daemon.mcpSource(backend) });
  }

  // One pooled client for the config file's upstream MCP servers (connected on first use).
  const upstream = o.upstream ?? (() => {
    const pool = McpClientPool.fromConfig(loadConfig());
    return pool.serverNames.length > 0 ? pool : undefined;
  })();

  let token: string | undefined;
  let tokenGenerated = false;
  let tcp: { host: string; port: number } | undefined;
  if (o.listen !== undefined) {
    tcp = parseListen(o.listen);
    const env = process.env[DAEMON_TOKEN_ENV];
    token = o.token ?? (env ? env : undefined);
    if (token === undefined) {
      token = randomBytes(32).toString("base64url");
      tokenGenerated = true;
    }
  }
  const app = createApi({ daemon, ...(mcp ? { mcp } : {}), ...(upstream ? { upstream } : {}), ...(token !== undefined ? { tokenDigest: sha256(token) } : {}) });
  const listener = (transport: Transport) =>
    getRequestListener((req, env) => app.fetch(req, { ...(env as { incoming: IncomingMessage; outgoing: ServerResponse }), transport }));
  const servers: Server[] = [];
  const unixServer = createServer(listener("unix"));
  // Long calls stream on an open response; only slow request bodies are cut.
  unixServer.requestTimeout = 0;
  unixServer.keepAliveTimeout = 60_000;
  try {
    await listenUnix(unixServer, socketPath);
    servers.push(unixServer);
    chmodSync(socketPath, 0o600);
  } catch (err) {
    await daemon.drain(0);
    await mcp?.close();
    await upstream?.close();
    throw err;
  }
  const socketIno = lstatSync(socketPath).ino;
  let tcpUrl: string | undefined;
  if (tcp) {
    const tcpServer = createServer(listener("tcp"));
    tcpServer.requestTimeout = 0;
    try {
      const addr = await listenTcp(tcpServer, tcp.host, tcp.port);
      servers.push(tcpServer);
      tcpUrl = `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
    } catch (err) {
      await closeServer(unixServer);
      await daemon.drain(0);
      await mcp?.close();
      await upstream?.close();
      throw err;
    }
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      const r = await daemon.drain(o.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS);
      log.info(r, "daemon: drained");
      await mcp?.close();
      await upstream?.close();
      await Promise.all(servers.map((s) => closeServer(s)));
      try {
        // Only our own socket: a newer daemon may have replaced it meanwhile.
        if (lstatSync(socketPath).ino === socketIno) unlinkSync(socketPath);
      } catch {
        /* already gone */
      }
    })());

  return {
    daemon,
    socketPath,
    ...(tcpUrl !== undefined ? { tcpUrl } : {}),
    ...(token !== undefined ? { token } : {}),
    tokenGenerated,
    ...(recovery ? { recovery } : {}),
    stop,
  };
}

/** The runtime directory when it has a fixed place (the default socket lives there for root). */
function runDirIfFixed(): string | undefined {
  const run = process.env["LUMINAGUARD_RUN"];
  if (run !== undefined && run !== "") return resolve(run);
  if (euid() === 0) return "/run/luminaguard";
  return undefined;
}
