// Small network helpers.
import { createServer } from "node:net";

/** A loopback TCP port free at the moment of asking (for a child that must be told which port to take). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
