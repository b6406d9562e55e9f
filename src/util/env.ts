// The environment of the host processes that run a sandbox (bwrap, QEMU): an explicit allowlist, so
// that nothing of ours (OPENAI_API_KEY, ANTHROPIC_API_KEY, LUMINAGUARD_MCP_TOKEN, cloud credentials,
// proxies with passwords in them, ...) reaches them, or the guest through them, by accident.

/** A fixed search path: not the caller's PATH, which may name directories others can write to. */
export const SANDBOX_HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The whole environment for a sandbox's host processes: PATH (fixed), LANG=C.UTF-8 (messages we
 * parse stay in English; UTF-8 file names), and TZ if set (log timestamps); nothing else.
 */
export function sandboxHostEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: SANDBOX_HOST_PATH, LANG: "C.UTF-8" };
  const tz = process.env["TZ"];
  if (tz !== undefined && tz !== "") env["TZ"] = tz;
  return env;
}
