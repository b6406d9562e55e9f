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

#include "util.h"

#define PIDS_MAX "512"
#define CGROUP2_SUPER_MAGIC 0x63677270
#define MAX_STALE_CGROUPS 64

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

int cgroup_create(uint32_t id, char out[CGROUP_PATH_MAX])
{
	static uint32_t seq;
	char dir[CGROUP_PATH_MAX];
	snprintf(dir, sizeof dir, "%.200s/lg-cmd-%u", parent, id);
	/* A same-named leftover that cannot be removed still holds an earlier command's background
	 * processes: use a unique name instead. */
	if (mkdir(dir, 0755) < 0 && (errno != EEXIST || rmdir(dir) < 0 || mkdir(dir, 0755) < 0)) {
		snprintf(dir, sizeof dir, "%.200s/lg-cmd-%u-%u", parent, id, ++seq);
		if (mkdir(dir, 0755) < 0)
			return -1;
	}
	char f[300];
	if (cg_file(dir, "pids.max", f, sizeof f))
		write_small_file(f, PIDS_MAX);
	int fd = cg_file(dir, "cgroup.procs", f, sizeof f) ? open(f, O_WRONLY | O_CLOEXEC) : -1;
	if (fd < 0) {
		rmdir(dir);
		return -1;
	}
	memcpy(out, dir, sizeof dir);
	return fd;
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
