/* lg-agent: the workspace root (its path and O_PATH fd) and resolving request paths beneath it. */
#define _GNU_SOURCE
#include "confine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proto.h"
#include "util.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define LG_RESOLVE_NO_MAGICLINKS 0x02
#define LG_RESOLVE_BENEATH 0x08
#define MAX_LINKS 40

struct lg_open_how {
	uint64_t flags, mode, resolve;
};

static struct {
	char path[PATH_MAX]; /* absolute, no trailing slash unless "/" */
	int fd;              /* O_PATH directory fd of path, -1 until it can be opened */
	bool openat2;        /* cleared when the kernel (or a seccomp filter) says ENOSYS */
} root = {.fd = -1, .openat2 = true};

/* Appends the components of `in` to out (of length *olen), resolving "." and ".." lexically.
 * ".." above the start fails with -EXDEV unless `clamp` (absolute paths: "/.." is "/"). */
static int clean_into(const char *in, char *out, size_t *olen, bool clamp)
{
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *s = p;
		while (*p && *p != '/')
			p++;
		size_t n = (size_t)(p - s);
		if (n == 1 && s[0] == '.')
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (*olen == 0) {
				if (clamp)
					continue;
				return -EXDEV;
			}
			char *slash = memrchr(out, '/', *olen);
			*olen = slash ? (size_t)(slash - out) : 0;
			continue;
		}
		if (*olen + (*olen ? 1 : 0) + n >= PATH_MAX)
			return -ENAMETOOLONG;
		if (*olen)
			out[(*olen)++] = '/';
		memcpy(out + *olen, s, n);
		*olen += n;
	}
	out[*olen] = 0;
	return 0;
}

static bool strip_root(const char *abs, size_t alen, const char *prefix, char out[PATH_MAX])
{
	/* prefix is absolute and clean; compare without its leading slash, as `abs` is stored. */
	const char *r = prefix + 1;
	size_t rl = strlen(r);
	if (rl == 0) {
		memcpy(out, abs, alen + 1);
		return true;
	}
	if (alen < rl || memcmp(abs, r, rl) != 0 || (alen > rl && abs[rl] != '/'))
		return false;
	const char *rest = abs + rl + (alen > rl ? 1 : 0);
	memmove(out, rest, strlen(rest) + 1);
	return true;
}

int path_clean(const char *in, char out[PATH_MAX])
{
	size_t len = 0;
	int e = clean_into(in, out, &len, in[0] == '/');
	if (e)
		return e;
	if (in[0] == '/') {
		char abs[PATH_MAX];
		memcpy(abs, out, len + 1);
		if (!strip_root(abs, len, root.path, out))
			return -EXDEV;
	}
	if (!out[0])
		strcpy(out, ".");
	return 0;
}

void reply_path_error(uint32_t id, int neg_errno, const char *shown)
{
	int e = -neg_errno;
	if (e == EINVAL || e == ENAMETOOLONG)
		reply_error(id, "INVALID_ARGUMENT", e, "%.512s: invalid workspace path", shown);
	else
		reply_errno(id, e, shown);
}

/* Checks that openat2 works here (not ENOSYS, not refused by a seccomp filter). */
static void probe_openat2(int rootfd)
{
	if (!root.openat2)
		return;
	struct lg_open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = LG_RESOLVE_BENEATH | LG_RESOLVE_NO_MAGICLINKS};
	long fd = syscall(SYS_openat2, rootfd, ".", &how, sizeof how);
	if (fd >= 0) {
		close((int)fd);
		return;
	}
	/* Older container seccomp profiles answer EPERM rather than ENOSYS for syscalls they do not know. */
	if (errno == ENOSYS || errno == EPERM) {
		log_msg("openat2 unavailable (%s): resolving paths in userspace", errno_name(errno));
		root.openat2 = false;
	}
}

/* Re-walks a physical path (real directories only, no symlinks, no ".."): used by the fallback
 * resolver to step back up after "..". O_NOFOLLOW keeps a concurrent swap-in of a symlink out. */
static int open_phys(int rootfd, const char *phys)
{
	int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	char tmp[PATH_MAX];
	strcpy(tmp, phys);
	for (char *save = NULL, *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next = openat(cur, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int err = errno;
		close(cur);
		if (next < 0)
			return -err;
		cur = next;
	}
	return cur;
}

/* Userspace RESOLVE_BENEATH for kernels without openat2: one component at a time with
 * O_NOFOLLOW, symlinks expanded by hand (absolute targets and ".." above the root are escapes). */
static int walk_open(int rootfd, const char *rel, int flags)
{
	char rest[2 * PATH_MAX], phys[PATH_MAX];
	size_t physlen = 0;
	int links = 0;
	if (strlen(rel) >= sizeof rest)
		return -ENAMETOOLONG;
	strcpy(rest, rel);
	phys[0] = 0;
	int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	char *p = rest;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p) {
			/* The path named a directory we are standing in. */
			int fd = openat(cur, ".", flags & ~O_NOFOLLOW);
			if (fd < 0)
				fd = -errno;
			close(cur);
			return fd;
		}
		char comp[NAME_MAX + 1];
		char *s = p;
		while (*p && *p != '/')
			p++;
		size_t n = (size_t)(p - s);
		if (n > NAME_MAX) {
			close(cur);
			return -ENAMETOOLONG;
		}
		memcpy(comp, s, n);
		comp[n] = 0;
		while (*p == '/')
			p++;
		bool last = !*p;
		if (strcmp(comp, ".") == 0)
			continue;
		if (strcmp(comp, "..") == 0) {
			if (physlen == 0) {
				close(cur);
				return -EXDEV;
			}
			char *slash = memrchr(phys, '/', physlen);
			physlen = slash ? (size_t)(slash - phys) : 0;
			phys[physlen] = 0;
			close(cur);
			if ((cur = open_phys(rootfd, phys)) < 0)
				return cur;
			continue;
		}
		int fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			int err = errno;
			if (fd >= 0)
				close(fd);
			close(cur);
			return -err;
		}
		if (S_ISLNK(st.st_mode)) {
			close(fd);
			char target[PATH_MAX];
			ssize_t tl = readlinkat(cur, comp, target, sizeof target - 1);
			if (tl < 0 || ++links > MAX_LINKS) {
				int err = tl < 0 ? errno : ELOOP;
				close(cur);
				return -err;
			}
			target[tl] = 0;
			if (target[0] == '/') {
				close(cur);
				return -EXDEV;
			}
			/* Splice the target in front of what is left of the path. */
			size_t rl = strlen(p);
			if ((size_t)tl + 1 + rl >= sizeof rest) {
				close(cur);
				return -ENAMETOOLONG;
			}
			memmove(rest + tl + 1, p, rl + 1);
			memcpy(rest, target, (size_t)tl);
			rest[tl] = '/';
			p = rest;
			continue;
		}
		if (last) {
			/* O_NOFOLLOW: a symlink swapped in since the fstat fails rather than being followed. */
			close(fd);
			fd = openat(cur, comp, flags | O_NOFOLLOW);
			if (fd < 0)
				fd = -errno;
			close(cur);
			return fd;
		}
		if (!S_ISDIR(st.st_mode)) {
			close(fd);
			close(cur);
			return -ENOTDIR;
		}
		if (physlen + 1 + n >= PATH_MAX) {
			close(fd);
			close(cur);
			return -ENAMETOOLONG;
		}
		if (physlen)
			phys[physlen++] = '/';
		memcpy(phys + physlen, comp, n + 1);
		physlen += n;
		close(cur);
		cur = fd;
	}
}

int open_beneath(const char *rel, int flags)
{
	int rfd = confine_root_fd();
	if (rfd < 0)
		return rfd;
	flags |= O_CLOEXEC;
	if (root.openat2) {
		struct lg_open_how how = {
			.flags = (uint64_t)(unsigned)flags,
			.resolve = LG_RESOLVE_BENEATH | LG_RESOLVE_NO_MAGICLINKS,
		};
		for (;;) {
			long fd = syscall(SYS_openat2, rfd, rel, &how, sizeof how);
			if (fd >= 0)
				return (int)fd;
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno != ENOSYS)
				return -errno;
			root.openat2 = false;
			break;
		}
	}
	return walk_open(rfd, rel, flags);
}

/* ---- the root ---- */

bool confine_set_root(const char *dir)
{
	char tmp[PATH_MAX];
	if (dir[0] == '/') {
		if (strlen(dir) >= sizeof tmp)
			return false;
		strcpy(tmp, dir);
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof cwd) || (size_t)snprintf(tmp, sizeof tmp, "%s/%s", cwd, dir) >= sizeof tmp)
			return false;
	}
	/* Reuse the request-path cleaner with an empty root prefix. */
	char out[PATH_MAX];
	strcpy(root.path, "/");
	if (path_clean(tmp, out) < 0)
		return false;
	if (strcmp(out, ".") == 0)
		strcpy(root.path, "/");
	else if (strlen(out) + 2 > sizeof root.path)
		return false;
	else {
		root.path[0] = '/';
		strcpy(root.path + 1, out);
	}
	return true;
}

const char *confine_root(void) { return root.path; }

void confine_no_openat2(void) { root.openat2 = false; }

int confine_root_fd(void)
{
	if (root.fd >= 0)
		return root.fd;
	int fd = open(root.path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	probe_openat2(fd);
	root.fd = fd;
	return fd;
}

void confine_reopen_root(void)
{
	if (root.fd >= 0)
		close(root.fd);
	root.fd = -1;
	confine_root_fd();
}
