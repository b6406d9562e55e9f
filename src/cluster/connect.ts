// Connecting to the NATS cluster: servers, credentials and TLS as NATS users give them (flags, env, config file).
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from "nats";
import { z } from "zod";
import { loadConfig } from "../config/config.js";
import { LuminaGuardError } from "../errors.js";

export const CLUSTER_ENV = "LUMINAGUARD_CLUSTER";
export const CLUSTER_USER_ENV = "LUMINAGUARD_CLUSTER_USER";
export const CLUSTER_PASSWORD_ENV = "LUMINAGUARD_CLUSTER_PASSWORD";
export const CLUSTER_CREDS_ENV = "LUMINAGUARD_CLUSTER_CREDS";

/** How to reach the cluster. Secrets come from files or the environment; none travels in a message payload. */
export const clusterConnectSchema = z.strictObject({
  /** `nats://host:port` (or `tls://`), several comma-separated or as an array. */
  servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  user: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
  /** A NATS token. */
  token: z.string().min(1).optional(),
  /** A `.creds` file (JWT + nkey seed), as `nats --creds`. */
  creds: z.string().min(1).optional(),
  /** An nkey seed file (`SU...`), as `nats --nkey`. */
  nkey: z.string().min(1).optional(),
  tls: z.strictObject({ ca: z.string().min(1).optional(), cert: z.string().min(1).optional(), key: z.string().min(1).optional() }).optional(),
  /** Connection name shown by the servers (`nats server report connections`). */
  name: z.string().max(200).optional(),
});
export type ClusterConnect = z.infer<typeof clusterConnectSchema>;

/** The config file's `cluster` section: the connection, plus the node's own settings for `serve --cluster`. */
export const clusterConfigSchema = clusterConnectSchema.partial({ servers: true }).extend({
  node: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  heartbeatMs: z.number().int().min(100).max(60_000).optional(),
  ttlMs: z.number().int().min(500).max(600_000).optional(),
  replicas: z.number().int().min(1).max(5).optional(),
});
export type ClusterConfig = z.infer<typeof clusterConfigSchema>;

/** The `cluster` section of the config file ({} when absent); malformed is INVALID_ARGUMENT. */
export function clusterConfig(): ClusterConfig {
  const raw = (loadConfig() as Record<string, unknown>)["cluster"];
  if (raw === undefined) return {};
  const r = clusterConfigSchema.safeParse(raw);
  if (!r.success) throw new LuminaGuardError("INVALID_ARGUMENT", `config file: cluster: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return r.data;
}

/** Flags over environment over the config file; undefined when no servers are named anywhere. */
export function resolveConnect(flags: Partial<ClusterConnect> & { servers?: string | string[] | undefined }): ClusterConnect | undefined {
  const file = clusterConfig();
  const env = process.env;
  const servers = flags.servers ?? (env[CLUSTER_ENV] || undefined) ?? file.servers;
  if (servers === undefined) return undefined;
  const pick = <K extends keyof ClusterConnect>(k: K, envName?: string): ClusterConnect[K] | undefined =>
    (flags[k] as ClusterConnect[K] | undefined) ?? ((envName !== undefined ? env[envName] || undefined : undefined) as ClusterConnect[K] | undefined) ?? (file[k] as ClusterConnect[K] | undefined);
  const out: ClusterConnect = { servers };
  const user = pick("user", CLUSTER_USER_ENV);
  const password = pick("password", CLUSTER_PASSWORD_ENV);
  const creds = pick("creds", CLUSTER_CREDS_ENV);
  const token = pick("token");
  const nkey = pick("nkey");
  const tls = pick("tls");
  const name = pick("name");
  if (user !== undefined) out.user = user;
  if (password !== undefined) out.password = password;
  if (creds !== undefined) out.creds = creds;
  if (token !== undefined) out.token = token;
  if (nkey !== undefined) out.nkey = nkey;
  if (tls !== undefined) out.tls = tls;
  if (name !== undefined) out.name = name;
  return out;
}

export function serverList(servers: string | string[]): string[] {
  const list = (Array.isArray(servers) ? servers : servers.split(",")).map((s) => s.trim()).filter((s) => s !== "");
  for (const s of list) {
    if (!/^(nats|tls):\/\/[^\s/]+$/.test(s)) throw new LuminaGuardError("INVALID_ARGUMENT", `cluster server ${JSON.stringify(s)} is not nats://HOST:PORT or tls://HOST:PORT`);
  }
  if (list.length === 0) throw new LuminaGuardError("INVALID_ARGUMENT", "no cluster server given");
  return list;
}

function readSecret(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new LuminaGuardError("INVALID_ARGUMENT", `cannot read the ${what} file ${path}: ${(err as Error).message}`);
  }
}

/** nats.js options for these settings: reconnect forever, every server of the list tried. */
export function natsOptions(c: ClusterConnect): ConnectionOptions {
  const o: ConnectionOptions = {
    servers: serverList(c.servers),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 5_000,
    timeout: 5_000,
    ...(c.name !== undefined ? { name: c.name } : {}),
  };
  if (c.user !== undefined) o.user = c.user;
  if (c.password !== undefined) o.pass = c.password;
  if (c.token !== undefined) o.token = c.token;
  if (c.creds !== undefined) o.authenticator = credsAuthenticator(readSecret(c.creds, "NATS creds"));
  else if (c.nkey !== undefined) o.authenticator = nkeyAuthenticator(new TextEncoder().encode(Buffer.from(readSecret(c.nkey, "nkey seed")).toString("utf8").trim()));
  if (c.tls !== undefined) {
    o.tls = {
      ...(c.tls.ca !== undefined ? { caFile: c.tls.ca } : {}),
      ...(c.tls.cert !== undefined ? { certFile: c.tls.cert } : {}),
      ...(c.tls.key !== undefined ? { keyFile: c.tls.key } : {}),
    };
  }
  return o;
}

/** Connects, or fails with UNAUTHORIZED (refused credentials) or DAEMON_UNAVAILABLE (no server answers). */
export async function connectCluster(c: ClusterConnect): Promise<NatsConnection> {
  try {
    return await connect(natsOptions(c));
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    const msg = (err as Error).message;
    if (code === "AUTHORIZATION_VIOLATION" || /authoriz|authentic/i.test(msg)) {
      throw new LuminaGuardError("UNAUTHORIZED", `the NATS cluster refused the credentials: ${msg}`, { cause: err });
    }
    if (err instanceof LuminaGuardError) throw err;
    throw new LuminaGuardError("DAEMON_UNAVAILABLE", `no NATS server of ${serverList(c.servers).join(",")} answers: ${msg}`, { cause: err, details: { natsCode: code } });
  }
}
