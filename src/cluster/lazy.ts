// The SDK's door to the cluster client, loading nats only when a program uses it.
import type { ClusterClient } from "./client.js";
import type { ClusterConnect } from "./connect.js";

/** A connection to the cluster for many claims (`client.claim()`, `client.attach(id)`, `client.nodes()`); close it when done. */
export async function connectClusterClient(c: ClusterConnect): Promise<ClusterClient> {
  const { ClusterClient } = await import("./client.js");
  return await ClusterClient.connect(c);
}
