/* lg-agent: a command's side of fork: signals, session, cgroup, limits, stdio, credentials, cwd, exec. */
#ifndef LG_SPAWN_H
#define LG_SPAWN_H

#include <sys/types.h>

/* Where the child failed, as reported on its error pipe. */
enum stage { STAGE_SETUP = 1, STAGE_EXEC = 2, STAGE_CWD = 3 };

/* What the child writes to its error pipe when it cannot run the command; EOF means exec worked. */
struct child_error {
	int stage, err;
};

/* Runs in the vforked child (all signals blocked, the agent's memory borrowed) and never returns: makes in_r, out_w and err_w its fds 0-2, joins the
 * cgroup whose cgroup.procs is cgfd (if >= 0), applies the policy (file-size limit, uid/gid),
 * enters cwdfd and executes argv with envp, looking argv[0] up in `path`. Failures are written to
 * errfd (CLOEXEC) as a struct child_error. `agent` is the parent's pid, to notice it dying. */
__attribute__((noreturn)) void spawn_child(int in_r, int out_w, int err_w, int errfd, int cgfd, int cwdfd,
					   char *const argv[], char *const envp[], const char *path, pid_t agent);

#endif
