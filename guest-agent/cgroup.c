/* lg-agent: cgroup v2 for commands: the parent's probe, one cgroup per command, its kill and removal. */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "policy.h"
#include "util.h"

#define PIDS_MAX "512"
#define CGROUP2_SUPER_MAGIC 0x63677270
#define MAX_STALE_CGROUPS 64
#define MAX_SPARE_CGROUPS 4

static bool enabled;
static char parent[200];
/* Cgroups whose removal failed: background processes still live in them. */
static char stale[MAX_STALE_CGROUPS][CGROUP_PATH_MAX];
static int nstale;

void cgroup_enable_controllers(const char *dir)
{
	char f[300];
	snprintf(f, sizeof f, "%s/cgroup.subtree_control", dir);
	if (write_small_file(f, "+pids +memory") < 0) {
		write_small_file(f, "+pids");
		write_small_file(f, "+memory");
	}
}

void cgroup_setup(const char *parent_dir)
{
	struct statfs sf;
	char probe[300];
	snprintf(probe, sizeof probe, "%s/cgroup.procs", parent_dir);
	if (statfs(parent_dir, &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC || access(probe, W_OK) < 0 ||
	    strlen(parent_dir) >= sizeof parent)
		return;
	strcpy(parent, parent_dir);
	enabled = true;
}

bool cgroup_enabled(void) { return enabled; }

static bool cg_file(const char *dir, const char *file, char *out, size_t cap)
{
	return (size_t)snprintf(out, cap, "%s/%s", dir, file) < cap;
}

/* Empty command cgroups kept for the next commands: under TCG a mkdir, its pids.max and the rmdir
 * cost ~0.6 ms of a command's ~7 ms. Only where the agent is root and commands are not (the VM):
 * the cgroup's files are root's there, so a command cannot have changed any setting of it and, once
 * empty, it holds nothing of its last command. Where commands share the agent's uid (a delegated
 * --cgroup-parent) they could raise their own pids.max: such cgroups are removed, never reused. */
static char spare[MAX_SPARE_CGROUPS][CGROUP_PATH_MAX];
static int nspare;

static int open_procs(const char *dir)
{
	char f[300];
	return cg_file(dir, "cgroup.procs", f, sizeof f) ? open(f, O_WRONLY | O_CLOEXEC) : -1;
}

int cgroup_create(char out[CGROUP_PATH_MAX])
{
	while (nspare > 0) {
		const char *dir = spare[--nspare];
		int fd = cgroup_empty(dir) ? open_procs(dir) : -1;
		if (fd >= 0) {
			memcpy(out, dir, CGROUP_PATH_MAX);
			return fd;
		}
		cgroup_remove(dir);
	}
	/* Names are the agent's own sequence, never reused while the cgroup exists; one left over from
	 * before (a stale one) is skipped. */
	static uint32_t seq;
	char dir[CGROUP_PATH_MAX];
	for (int tries = 0;; tries++) {
		snprintf(dir, sizeof dir, "%.200s/lg-cmd-%u", parent, ++seq);
		if (mkdir(dir, 0755) == 0)
			break;
		if (errno != EEXIST || tries >= 16)
			return -1;
	}
	char f[300];
	if (cg_file(dir, "pids.max", f, sizeof f))
		write_small_file(f, PIDS_MAX);
	int fd = open_procs(dir);
	if (fd < 0) {
		rmdir(dir);
		return -1;
	}
	memcpy(out, dir, sizeof dir);
	return fd;
}

void cgroup_release(const char *dir)
{
	if (nspare < MAX_SPARE_CGROUPS && policy_drops_privs() && geteuid() == 0 && cgroup_empty(dir)) {
		snprintf(spare[nspare++], CGROUP_PATH_MAX, "%s", dir);
		return;
	}
	cgroup_remove(dir);
}

void cgroup_kill(const char *dir)
{
	char f[300], pids[4096];
	snprintf(f, sizeof f, "%s/cgroup.kill", dir);
	if (write_small_file(f, "1") == 0)
		return;
	/* Kernels before 5.14 have no cgroup.kill: signal each member instead. */
	snprintf(f, sizeof f, "%s/cgroup.procs", dir);
	if (read_small_file(f, pids, sizeof pids) <= 0)
		return;
	for (char *save = NULL, *t = strtok_r(pids, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
		kill((pid_t)atoi(t), SIGKILL);
}

bool cgroup_empty(const char *dir)
{
	char f[300], ev[512];
	snprintf(f, sizeof f, "%s/cgroup.events", dir);
	if (read_small_file(f, ev, sizeof ev) <= 0)
		return true;
	return strstr(ev, "populated 0") != NULL;
}

void cgroup_remove(const char *dir)
{
	if (rmdir(dir) == 0 || errno == ENOENT)
		return;
	/* Background processes still live in it: try again each time something is reaped. */
	if (nstale < MAX_STALE_CGROUPS)
		snprintf(stale[nstale++], sizeof stale[0], "%s", dir);
}

void cgroup_retry_stale(void)
{
	for (int i = 0; i < nstale;) {
		if (rmdir(stale[i]) == 0 || errno == ENOENT) {
			memmove(stale[i], stale[nstale - 1], sizeof stale[0]);
			nstale--;
		} else {
			i++;
		}
	}
}

void cgroup_abandon(const char *dir) { rmdir(dir); }

void cgroup_kill_stale(void)
{
	for (int i = 0; i < nstale; i++)
		cgroup_kill(stale[i]);
}
