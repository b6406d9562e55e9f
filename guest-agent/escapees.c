/* lg-agent: finding (and killing) the agent's descendants that escaped their command, from /proc. */
#define _GNU_SOURCE
#include "escapees.h"

#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* A command can leave its process group and session (setsid) and lose its parent (double fork),
 * and in the namespace sandbox, where it has the agent's uid, leave its cgroup too. What it cannot
 * leave is the agent's subtree: the agent is PID 1 or a child subreaper, so orphans are reparented
 * to it. So /proc tells what is ours: a process whose parent chain reaches the agent. Of those, one
 * belongs to a command still running if it is that command's leader, in its session (sessions
 * cannot be joined, only created), or below either; anything else is an escapee, which is killed
 * when any command's call ends. (An escapee of a command still running is killed too: once it has
 * left its session and lost its parent, nothing tells whose it is.) */

struct pinfo {
	pid_t pid, ppid, sid;
};

static int cmp_pinfo(const void *a, const void *b)
{
	pid_t x = ((const struct pinfo *)a)->pid, y = ((const struct pinfo *)b)->pid;
	return x < y ? -1 : x > y;
}

/* Every process in /proc (zombies too: a zombie leader may still have live threads), sorted by
 * pid; NULL with *n = 0 if /proc cannot be read. */
static struct pinfo *proc_snapshot(size_t *n)
{
	*n = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return NULL;
	struct pinfo *all = NULL;
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char path[64], st[512];
		snprintf(path, sizeof path, "/proc/%.20s/stat", e->d_name);
		if (read_small_file(path, st, sizeof st) <= 0)
			continue;
		/* "pid (comm) state ppid pgrp session ...": comm may hold anything, so parse from the last ')'. */
		char *rp = strrchr(st, ')');
		char state;
		int ppid, pgrp, sid;
		if (!rp || sscanf(rp + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4)
			continue;
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 128;
			struct pinfo *p = realloc(all, ncap * sizeof *p);
			if (!p)
				break;
			all = p;
			cap = ncap;
		}
		all[(*n)++] = (struct pinfo){.pid = (pid_t)atoi(e->d_name), .ppid = ppid, .sid = sid};
	}
	closedir(d);
	if (*n)
		qsort(all, *n, sizeof *all, cmp_pinfo);
	return all;
}

/* A command still running: its leader, or a process in its session. */
static bool of_live_command(const struct pinfo *p, const pid_t *live, size_t nlive)
{
	for (size_t i = 0; i < nlive; i++)
		if (p->pid == live[i] || p->sid == live[i])
			return true;
	return false;
}

/* Descends from the agent and is not part of a command still running. */
static bool escapee(const struct pinfo *all, size_t n, const struct pinfo *p, pid_t self, const pid_t *live,
		    size_t nlive)
{
	if (p->pid == self)
		return false;
	/* Bounded: the snapshot is not atomic, so a reused pid could in theory make a loop. */
	for (int depth = 0; depth < 4096; depth++) {
		if (of_live_command(p, live, nlive))
			return false;
		if (p->ppid == self)
			return true;
		struct pinfo key = {.pid = p->ppid};
		if (!(p = bsearch(&key, all, n, sizeof *all, cmp_pinfo)))
			return false;
	}
	return false;
}

size_t escapees_sweep(const pid_t *live, size_t nlive, bool kill_them)
{
	size_t n, found = 0;
	struct pinfo *all = proc_snapshot(&n);
	pid_t self = getpid();
	for (size_t i = 0; i < n; i++) {
		if (!escapee(all, n, &all[i], self, live, nlive))
			continue;
		found++;
		if (kill_them)
			kill(all[i].pid, SIGKILL);
	}
	free(all);
	return found;
}
