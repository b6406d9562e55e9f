// The disk limit's bounds, apart from src/runtime/disk.ts so that a command line can be checked against
// them without loading the filesystem machinery (the thin `exec` client, src/cli/exec-thin.ts).
export const DEFAULT_DISK_MIB = 1024;
export const MIN_DISK_MIB = 8;
export const MAX_DISK_MIB = 1024 * 1024;
