/* lg-agent: cgroup v2 for commands: the parent's probe, one cgroup per command, its kill and removal. */
#ifndef LG_CGROUP_H
#define LG_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

/* Room for a command's cgroup path. */
#define CGROUP_PATH_MAX 256

/* Delegates the pids and memory controllers to the children of `dir` (the VM's cgroup2 root). */
void cgroup_enable_controllers(const char *dir);
/* Probes cgroup2 at `parent` (writable, the right filesystem); enables per-command cgroups. */
void cgroup_setup(const char *parent);
bool cgroup_enabled(void);
/* Gives a command an empty cgroup of its own (a spare one, else a new one) and copies its path to
 * `out`; returns an fd of its cgroup.procs, which the command's process joins by writing "0", or -1
 * (and `out` untouched) when there is none. */
int cgroup_create(char out[CGROUP_PATH_MAX]);
/* A finished command's cgroup: kept as a spare when it is empty and there is room, else removed. */
void cgroup_release(const char *dir);
/* SIGKILLs every process in the cgroup. */
void cgroup_kill(const char *dir);
/* True once no process is left in the cgroup (or it cannot be read). */
bool cgroup_empty(const char *dir);
/* Removes the cgroup, or remembers it to retry while processes still hold it. */
void cgroup_remove(const char *dir);
/* Removes a cgroup no process ever joined. */
void cgroup_abandon(const char *dir);
/* Retries the removals that failed (after reaping, when cgroups may have emptied). */
void cgroup_retry_stale(void);
/* SIGKILLs the processes of every cgroup awaiting removal. */
void cgroup_kill_stale(void);

#endif
