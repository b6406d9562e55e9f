/* lg-agent: what commands run as and may make: their uid/gid, and the largest file they may write. */
#define _GNU_SOURCE
#include "policy.h"

#include <errno.h>
#include <unistd.h>

static struct {
	bool drop_privs;
	uid_t uid;
	gid_t gid;
	uint64_t max_file_bytes;
} policy;

void policy_run_as(uid_t uid, gid_t gid)
{
	policy.drop_privs = true;
	policy.uid = uid;
	policy.gid = gid;
}

bool policy_drops_privs(void) { return policy.drop_privs; }
uid_t policy_uid(void) { return policy.uid; }
gid_t policy_gid(void) { return policy.gid; }

/* What the agent creates in the workspace belongs to the user commands run as, so that they can
 * change it: the agent may be root, they are not. The fd is one the agent just created (a file) or
 * opened with O_NOFOLLOW|O_DIRECTORY (a directory), so a name swapped meanwhile cannot redirect it. */
int policy_give_to_commands(int fd)
{
	if (policy.drop_privs && fchown(fd, policy.uid, policy.gid) < 0)
		return -errno;
	return 0;
}

void policy_set_max_file_bytes(uint64_t n) { policy.max_file_bytes = n; }
uint64_t policy_max_file_bytes(void) { return policy.max_file_bytes; }
