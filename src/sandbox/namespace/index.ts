// The namespace backend's public surface: the backend itself and what doctor and tests inspect.
export { NamespaceBackend, type NamespaceBackendOptions } from "./backend.js";
export { probeNamespace, type NamespaceProbe, type BwrapProbe } from "./probe.js";
export { probeCgroups, SandboxCgroup, type CgroupSupport, type CgroupLimits, type CgroupVersion } from "./cgroup.js";
export { DENIED_SYSCALLS, seccompFilterBytes, seccompProgram, type DeniedSyscall, type SockFilter } from "./seccomp.js";
export { ETC_ALLOWLIST, MASKED_PATHS, AGENT_PATH_IN_SANDBOX, WORKSPACE_IN_SANDBOX, SANDBOX_UID, SANDBOX_GID } from "./bwrap.js";
