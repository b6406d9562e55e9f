/* lg-agent: a command's side of vfork: signals, session, cgroup, limits, stdio, credentials, cwd, exec.
 * It runs in the agent's memory (exec.c): nothing here may allocate, use stdio or write a global. */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "policy.h"
#include "sys.h"
#include "util.h"

__attribute__((noreturn)) static void child_fail(int errfd, int stage, int err)
{
	struct child_error ce = {stage, err};
	ssize_t w = write(errfd, &ce, sizeof ce);
	(void)w;
	_exit(127);
}

/* Arguments of a file without a #! line (run by /bin/sh) at most. */
#define SCRIPT_ARGV_MAX 4096

/* execvp semantics (PATH search, EACCES remembered, ENOEXEC run by /bin/sh), but with the PATH of
 * the command's own environment rather than the agent's. */
static int exec_search(char *const argv[], char *const envp[], const char *path)
{
	const char *file = argv[0];
	int argc = 0;
	while (argv[argc])
		argc++;
	char buf[PATH_MAX];
	bool eacces = false;
	const char *p = strchr(file, '/') ? "" : path;
	size_t fl = strlen(file);
	for (;;) {
		const char *cand = file;
		const char *colon = NULL;
		if (*p || !strchr(file, '/')) {
			colon = strchrnul(p, ':');
			size_t dl = (size_t)(colon - p);
			if (dl + 1 + fl >= sizeof buf)
				goto next;
			memcpy(buf, p, dl);
			if (dl == 0)
				buf[dl++] = '.';
			buf[dl] = '/';
			memcpy(buf + dl + 1, file, fl + 1);
			cand = buf;
		}
		execve(cand, argv, envp);
		if (errno == ENOEXEC) {
			/* On the stack, not the heap (the agent's, under vfork); bounded so that a huge argv
			 * cannot take the stack. */
			if (argc > SCRIPT_ARGV_MAX)
				return E2BIG;
			char *sh[SCRIPT_ARGV_MAX + 2];
			sh[0] = "sh";
			sh[1] = (char *)cand;
			for (int i = 1; i < argc; i++)
				sh[i + 1] = argv[i];
			execve("/bin/sh", sh, envp);
			return ENOEXEC;
		}
		if (errno == EACCES)
			eacces = true;
		else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV && errno != ETIMEDOUT)
			return errno;
	next:
		if (!colon || !*colon)
			break;
		p = colon + 1;
	}
	return eacces ? EACCES : ENOENT;
}

/* Gives up root for good: no supplementary groups, the command's gid and uid (real, effective and
 * saved, so there is no way back), then no_new_privs so that no set-id file or file capability
 * can return any of it. Changing credentials also leaves the child non-dumpable until its exec. */
static void drop_privileges(int errfd)
{
	if (policy_drops_privs()) {
		uid_t uid = policy_uid();
		gid_t gid = policy_gid();
		if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
			child_fail(errfd, STAGE_SETUP, errno);
	}
	/* Harmless where commands were never privileged (the namespace sandbox sets it already). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(errfd, STAGE_SETUP, errno);
}

void spawn_child(int in_r, int out_w, int err_w, int errfd, int cgfd, int cwdfd, char *const argv[],
		 char *const envp[], const char *path, pid_t agent)
{
	/* Every signal is blocked on entry (exec.c). The agent's handlers are reset before any is let
	 * in: one running here would run on the agent's memory. Ignored signals would also stay
	 * ignored across exec. */
	static const int sigs[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGIO, SIGCHLD, SIGXFSZ};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	/* Joined as root, before the uid changes: the cgroup tree belongs to root, so that the command
	 * cannot move itself out of its cgroup afterwards. */
	if (cgfd >= 0 && write(cgfd, "0", 1) != 1)
		child_fail(errfd, STAGE_SETUP, errno);
	/* No single file larger than the sandbox's disk: the host bounds the total, this bounds what one
	 * runaway write can take of it before the host's limit is even looked at. */
	uint64_t max_file = policy_max_file_bytes();
	if (max_file) {
		struct rlimit rl = {.rlim_cur = max_file, .rlim_max = max_file};
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			child_fail(errfd, STAGE_SETUP, errno);
	}
	/* The agent protects itself from the OOM killer; its commands must stay the preferred victim. */
	write_small_file("/proc/self/oom_score_adj", "0");
	/* All pipe fds are >= 3 (main keeps 0-2 open), so these dup2s cannot clobber each other. */
	if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		child_fail(errfd, STAGE_SETUP, errno);
	drop_privileges(errfd);
	/* After the uid change, which clears the parent-death signal. If the agent died before it was
	 * set, nothing would ever kill this command: stop now. */
	if (!sys_is_init() && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != agent))
		_exit(127);
	/* As the command's user: a directory it may not enter is its own PERMISSION_DENIED. */
	if (fchdir(cwdfd) < 0)
		child_fail(errfd, STAGE_CWD, errno);
	child_fail(errfd, STAGE_EXEC, exec_search(argv, envp, path));
}
