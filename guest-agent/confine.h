/* lg-agent: the workspace root (its path and O_PATH fd) and resolving request paths beneath it. */
#ifndef LG_CONFINE_H
#define LG_CONFINE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

/* Sets the workspace root from --root: made absolute and lexically clean, it is the prefix absolute
 * request paths must carry. False when it cannot be (too long, no cwd). */
bool confine_set_root(const char *dir);
/* The root's absolute path. */
const char *confine_root(void);
/* Resolves paths in userspace only, never with openat2 (--no-openat2). */
void confine_no_openat2(void);
/* Returns the root's fd, opening it (and probing openat2) if needed; -errno on failure. */
int confine_root_fd(void);
/* Opens the root again: something (the 9p mount) now covers the directory the old fd names. */
void confine_reopen_root(void);

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

#endif
