// The bubblewrap command line of a namespace sandbox: which namespaces, which host paths, which identity.
//
// Identity. Inside, commands run as uid/gid 1000 ("sandbox") with no capabilities. bwrap maps that
// uid onto the uid that runs bwrap. Run by an ordinary user, that is the user itself. Run as root,
// bwrap is started through lg-jailer (src/sandbox/jailer) as an unprivileged uid of its own per
// sandbox, with the workspace idmapped so that files the sandbox creates belong to the workspace's
// owner on disk: the sandbox is then not host root for any check the kernel makes on the uid
// (sysctl files, keyrings, signals, file permissions). Each of those doors is also closed here or in
// the seccomp filter, for the ordinary-user case and as a second layer, and the tests knock on each:
//   - file permissions: the mount tree is the boundary. Nothing is bound that the sandbox need not
//     see: system binaries and libraries read-only, an allowlist of /etc files, synthetic
//     passwd/group/hosts, the agent, and the workspace as the only writable host path;
//   - /proc/sys (sysctl writes are allowed by euid alone): read-only, see PROC_READ_ONLY;
//   - kernel keyrings (per uid, not per namespace) and set-id files in the workspace: seccomp.ts;
//   - signals and ptrace against host processes: the pid namespace hides them, seccomp denies ptrace.
// Known and accepted: /proc/self/mountinfo shows the host paths of the binds (workspace, agent).
import { existsSync, lstatSync, readlinkSync } from "node:fs";

/** Where the agent binary appears inside the sandbox. */
const AGENT_PATH_IN_SANDBOX = "/.lg/lg-agent";
/** Where the workspace is in the sandbox (the agent's --root). */
export const WORKSPACE_IN_SANDBOX = "/workspace";
/** Unprivileged-looking identity inside; mapped onto the invoking host uid/gid by bwrap. */
export const SANDBOX_UID = 1000;
const SANDBOX_GID = 1000;

/** The same base environment the agent gives commands (docs/protocol.md). */
const SANDBOX_ENV: Readonly<Record<string, string>> = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: WORKSPACE_IN_SANDBOX,
  LANG: "C.UTF-8",
};

/**
 * Host directories bound read-only when they are real directories. On merged-/usr systems (Debian 12)
 * /bin, /lib, ... are symlinks into /usr and are recreated as the same symlinks instead.
 */
const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"] as const;

/**
 * /etc entries commands need, each bound read-only if it exists. Deliberately absent: shadow, gshadow,
 * sudoers, ssh, ssl private keys, machine-id (a stable host identifier), hostname, resolv.conf (no
 * network, and it names internal DNS), and every package's own config (may hold credentials: npmrc,
 * pip.conf, gitconfig, apt auth).
 */
const ETC_ALLOWLIST = [
  "/etc/ld.so.cache", // the dynamic loader's library index: without it every exec scans directories
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/ld-musl-x86_64.path", // musl's equivalent
  "/etc/alternatives", // Debian's command symlinks (awk, editor, ...): commands break without them
  "/etc/nsswitch.conf", // how libc resolves users and hosts: it must point at our synthetic files
  "/etc/localtime",
  "/etc/timezone",
  "/etc/locale.alias",
  "/etc/protocols", // getprotobyname
  "/etc/services", // getservbyname
  "/etc/mime.types",
  "/etc/magic", // file(1)
  "/etc/magic.mime",
  "/etc/os-release",
  "/etc/debian_version",
  "/etc/shells",
] as const;

/**
 * Paths inside the read-only system binds that are configuration, not code, and may hold a host's
 * credentials (e.g. /usr/local/etc/npmrc with a registry token): hidden under an empty read-only tmpfs.
 */
const MASKED_PATHS = ["/usr/local/etc"] as const;

/**
 * /proc entries that are global (not per namespace) and gated by the caller's uid rather than by a
 * capability. The sandbox uid maps to the invoking host uid, which here is root (kuid 0), and the
 * kernel lets kuid 0 write every 0644 file under /proc/sys (sysctl permissions look at the euid
 * only): kernel.core_pattern would run any program as host root. So /proc/sys and friends are bound
 * read-only (values are still those of the sandbox's own namespaces: the kernel resolves net, ipc and
 * uts sysctls from the reader's namespaces, not from the mount).
 */
const PROC_READ_ONLY = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"] as const;

/** Root-only kernel information files (heap layout, physical pages, timers): covered with /dev/null. */
const PROC_MASKED_FILES = [
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/slabinfo",
  "/proc/pagetypeinfo",
  "/proc/vmallocinfo",
  "/proc/kpagecount",
  "/proc/kpageflags",
  "/proc/kpagecgroup",
] as const;

/** Hardware directories the sandbox has no business with: covered with an empty read-only tmpfs. */
const PROC_MASKED_DIRS = ["/proc/acpi", "/proc/asound", "/proc/scsi"] as const;

export interface BwrapFds {
  /** bwrap writes `{"child-pid": N, ...}` here once the sandbox process exists. */
  info: number;
  /** bwrap's sandbox process waits for a byte here before it forks or execs anything. */
  block: number;
  /** The serialized seccomp filter; omitted only by tests that show what the filter changes. */
  seccomp?: number;
  passwd: number;
  group: number;
  hosts: number;
}

interface BwrapPlan {
  id: string;
  /** Real path of the host workspace directory. */
  workspace: string;
  /** Host path of the guest agent binary. */
  agentPath: string;
  /** Size cap of the sandbox-private /tmp and /dev/shm (also charged to the memory cgroup). */
  tmpfsBytes: number;
  fds: BwrapFds;
}

export function systemDirArgs(): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    let st;
    try {
      st = lstatSync(dir);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(dir), dir);
    else if (st.isDirectory()) args.push("--ro-bind", dir, dir);
  }
  return args;
}

function maskArgs(): string[] {
  const args: string[] = [];
  for (const path of MASKED_PATHS) {
    // Only an existing directory can be covered: bwrap cannot create a mount point in a read-only bind.
    if (!existsSync(path) || !lstatSync(path).isDirectory()) continue;
    args.push("--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path);
  }
  return args;
}

/** The sandbox's own /proc, with the global knobs read-only and kernel internals masked. */
function procArgs(): string[] {
  const args = ["--proc", "/proc"];
  // Same kernel inside and out, so what exists in the host's /proc exists in the sandbox's.
  for (const path of PROC_READ_ONLY) if (existsSync(path)) args.push("--ro-bind", path, path);
  for (const path of PROC_MASKED_FILES) if (existsSync(path)) args.push("--ro-bind", "/dev/null", path);
  for (const path of PROC_MASKED_DIRS) if (existsSync(path)) args.push("--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path);
  return args;
}

function etcArgs(): string[] {
  const args: string[] = [];
  for (const path of ETC_ALLOWLIST) args.push("--ro-bind-try", path, path);
  return args;
}

/** The agent's command line inside the sandbox. */
export const AGENT_COMMAND = [AGENT_PATH_IN_SANDBOX, "--channel", "stdio", "--root", WORKSPACE_IN_SANDBOX] as const;

/** The isolation every sandbox (and the probe's trial) runs with: namespaces, identity, capabilities. */
export function isolationArgs(): string[] {
  return [
    // Every namespace; the new network namespace holds only a loopback, so there is no network.
    // --unshare-all only *tries* a user namespace, and without one --uid and --cap-drop would mean
    // something else entirely: demand it.
    "--unshare-all",
    "--unshare-user",
    // Sets user.max_user_namespaces=1 inside: no nested user namespace even if seccomp were bypassed.
    "--disable-userns",
    // PR_SET_PDEATHSIG: if this process dies the sandbox dies with it, even on SIGKILL.
    "--die-with-parent",
    // setsid(): no controlling terminal, so no TIOCSTI injection into a host terminal.
    "--new-session",
    // Invoked as root, bwrap would keep capabilities in the sandbox unless told otherwise.
    "--cap-drop",
    "ALL",
    "--uid",
    String(SANDBOX_UID),
    "--gid",
    String(SANDBOX_GID),
  ];
}

/** The whole bwrap argv (without `bwrap` itself), ending in `command` (the agent, except in tests). */
export function bwrapArgs(plan: BwrapPlan, command: readonly string[] = AGENT_COMMAND): string[] {
  const { fds } = plan;
  return [
    ...isolationArgs(),
    "--hostname",
    plan.id,
    ...systemDirArgs(),
    ...maskArgs(),
    ...etcArgs(),
    "--perms",
    "0644",
    "--ro-bind-data",
    String(fds.passwd),
    "/etc/passwd",
    "--perms",
    "0644",
    "--ro-bind-data",
    String(fds.group),
    "/etc/group",
    "--perms",
    "0644",
    "--ro-bind-data",
    String(fds.hosts),
    "/etc/hosts",
    ...procArgs(),
    "--dev",
    "/dev",
    "--size",
    String(plan.tmpfsBytes),
    "--tmpfs",
    "/dev/shm",
    // bwrap's /dev is a tmpfs the sandbox user owns; the device nodes in it are separate binds.
    "--remount-ro",
    "/dev",
    "--size",
    String(plan.tmpfsBytes),
    "--tmpfs",
    "/tmp",
    "--ro-bind",
    plan.agentPath,
    AGENT_PATH_IN_SANDBOX,
    "--bind",
    plan.workspace,
    WORKSPACE_IN_SANDBOX,
    // The root is bwrap's tmpfs, owned by the sandbox user: without this, /etc, / and /.lg would be
    // writable (private to the sandbox, but a command could replace /etc/passwd or the agent's path).
    // It comes after every mount that needs a mount point created in the root.
    "--remount-ro",
    "/",
    "--chdir",
    WORKSPACE_IN_SANDBOX,
    "--clearenv",
    ...Object.entries(SANDBOX_ENV).flatMap(([k, v]) => ["--setenv", k, v]),
    "--info-fd",
    String(fds.info),
    "--block-fd",
    String(fds.block),
    ...(fds.seccomp === undefined ? [] : ["--seccomp", String(fds.seccomp)]),
    "--",
    ...command,
  ];
}

export function passwdFile(): string {
  return [
    "root:x:0:0:root:/root:/usr/sbin/nologin",
    `sandbox:x:${SANDBOX_UID}:${SANDBOX_GID}:sandbox:${WORKSPACE_IN_SANDBOX}:/bin/sh`,
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    "",
  ].join("\n");
}

export function groupFile(): string {
  return ["root:x:0:", `sandbox:x:${SANDBOX_GID}:`, "nogroup:x:65534:", ""].join("\n");
}

export function hostsFile(id: string): string {
  return `127.0.0.1\tlocalhost ${id}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}
