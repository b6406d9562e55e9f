// The test cluster lives in src/cluster/testbed.ts (shared with `bench cluster`); this adds the test's skip.
import { natsServerMissingReason } from "../../src/cluster/testbed.js";

export { CLIENT_USER, NODE_USER, connectionNames, startNatsCluster, type NatsCluster, type NatsServer } from "../../src/cluster/testbed.js";

export function natsServerMissing(): string | undefined {
  const reason = natsServerMissingReason();
  if (reason === undefined) return undefined;
  if (process.env["CI"] === "true") throw new Error(reason);
  process.stderr.write(`SKIP: ${reason}\n`);
  return reason;
}
