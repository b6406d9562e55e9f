/* lg-agent: workspace path resolution that never leaves the root. */
#ifndef LG_FSOPS_H
#define LG_FSOPS_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

/* Cleans a workspace path (relative, or absolute inside the root) into a root-relative one
 * without "." or ".." components ("." for the root itself). Returns 0, -EXDEV when it leaves
 * the root, -EINVAL or -ENAMETOOLONG. */
int path_clean(const char *in, char out[PATH_MAX]);
/* Opens a cleaned path beneath the root; symlinks are followed only while they stay inside.
 * Returns an fd (O_CLOEXEC) or -errno, -EXDEV meaning the path escapes. No O_CREAT: callers
 * create names with *at() calls in a directory opened this way. */
int open_beneath(const char *rel, int flags);
/* Answers a path_clean/open_beneath failure for `shown` (the path as the host sent it). */
void reply_path_error(uint32_t id, int neg_errno, const char *shown);
/* Checks that openat2 works here (not ENOSYS, not refused by a seccomp filter). */
void probe_openat2(int rootfd);

#endif
