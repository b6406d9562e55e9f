/* lg-jailer: starts a VMM with no privilege, in the manner of Firecracker's jailer.
 *
 *   lg-jailer --uid U --gid G [--kvm-gid K] [--ro SRC DST]... [--rw SRC DST]... [--dev SRC DST]...
 *             [--idmap SRC DST DISK_UID DISK_GID] [--seccomp FILE] [--stage] [--keep-fds N] [--cgroup DIR]...
 *             -- PROGRAM ARGS...
 *   lg-jailer --inject PID --start T --uid U --gid G --idmap SRC DST DISK_UID DISK_GID   (root)
 *   lg-jailer --inject PID --start T --rw SRC DST                                        (an ordinary user)
 *   lg-jailer --serve
 *
 * In order: a private mount namespace (and IPC, UTS and network namespaces) whose root is a fresh
 * tmpfs holding only the listed paths; /usr read-only for the VMM's own code; pivot_root onto it so
 * no other host path exists for the VMM; every other file descriptor closed; no_new_privs; the given
 * unprivileged uid/gid with no supplementary groups (except the kvm group when KVM is used); death
 * with the parent; the extra seccomp filter; then exec. Run as root it requires a non-zero uid and
 * maps the workspace with an idmapped mount, so the VMM (uid U) sees the workspace owner's files as
 * its own and everything it creates is owned by the workspace owner on disk. Run as an ordinary user
 * it cannot change uid (and needs not: that user has no privilege to drop); it builds the same mount
 * namespace inside a user namespace that maps only that user.
 *
 * --stage (root only) serves the namespace backend: no new root and no pivot, only a private mount
 * namespace where the listed binds appear under NEW_ROOT (the workspace idmapped), so that bubblewrap,
 * started as the unprivileged identity, can bind what it could not reach itself; --keep-fds keeps the
 * launcher's descriptors 3..N-1 open.
 *
 * --inject PID adds the one workspace bind to the running jail of VMM PID instead: a QEMU started
 * ahead of its sandbox (src/sandbox/microvm/spares.ts) gets its workspace once it has one. PID must
 * still be the process the host started (--start: its start time), so a reused pid never receives
 * it; run as root it must also run as --uid (an identity only that VM holds). The same serves a
 * namespace file jail started ahead of its sandbox. Run as an ordinary user (whose jails are user
 * namespaces of that user), the bind is cloned in a user and mount namespace of our own (where the
 * workspace is ours to clone), handed back to us, and moved into the jail after we enter its user
 * and mount namespaces (inject_unprivileged()). --serve runs --inject requests read from stdin, one
 * child each, so that a restore forks no process of its own (serve()).
 *
 * Every source path is opened (O_PATH, no symlink following at the last component) before anything
 * is mounted, so a later mount cannot shadow it and a swapped symlink cannot redirect it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define LG_OPEN_TREE_CLONE 1
#define LG_OPEN_TREE_CLOEXEC O_CLOEXEC
#define LG_AT_RECURSIVE 0x8000
#define LG_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define LG_MOUNT_ATTR_RDONLY 0x00000001
#define LG_MOUNT_ATTR_NOSUID 0x00000002
#define LG_MOUNT_ATTR_NODEV 0x00000004
#define LG_MOUNT_ATTR_NOEXEC 0x00000008
#define LG_MOUNT_ATTR_IDMAP 0x00100000

struct lg_mount_attr {
	uint64_t attr_set;
	uint64_t attr_clr;
	uint64_t propagation;
	uint64_t userns_fd;
};

#define MAX_BINDS 32
#define NEW_ROOT "/tmp"

enum bind_kind { BIND_RO, BIND_RW, BIND_DEV, BIND_IDMAP };

struct bind {
	enum bind_kind kind;
	const char *src, *dst;
	int tree; /* detached clone of the source mount, from open_tree */
};

static struct bind binds[MAX_BINDS];
static int nbinds;
static const char *detach_under[MAX_BINDS];
static int ndetach;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("lg-jailer: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(126);
}

static long parse_id(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > 0x7fffffffL)
		die("%s: not an id: %s", what, s);
	return v;
}

static void add_bind(enum bind_kind kind, const char *src, const char *dst)
{
	if (nbinds == MAX_BINDS)
		die("too many binds");
	if (src[0] != '/' || dst[0] != '/' || strstr(dst, "..") || strcmp(dst, "/") == 0)
		die("bind paths must be absolute and the target below /: %s -> %s", src, dst);
	binds[nbinds++] = (struct bind){.kind = kind, .src = src, .dst = dst, .tree = -1};
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		die("write %s: %s", path, strerror(errno));
	close(fd);
}

/* A user namespace whose only mapping is `disk -> seen` for uids and gids; its fd names the idmapping
 * of a mount (the kernel maps an on-disk id down through the namespace's map: first column to second).
 * A child creates it and waits; we write its maps and keep a handle. */
static int idmap_userns(long disk_uid, long seen_uid, long disk_gid, long seen_gid)
{
	int go[2], up[2];
	if (pipe2(go, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child == 0) {
		char c;
		close(up[0]);
		if (unshare(CLONE_NEWUSER) < 0)
			_exit(1);
		/* Unshared: its maps are its new namespace's from now on. */
		(void)!write(up[1], "u", 1);
		close(go[1]);
		(void)!read(go[0], &c, 1); /* parent closes its end once it holds the namespace */
		_exit(0);
	}
	close(go[0]);
	close(up[1]);
	char path[64], map[96], c;
	/* Until the child says it has unshared, its maps belong to the parent namespace. */
	ssize_t got;
	while ((got = read(up[0], &c, 1)) < 0 && errno == EINTR)
		;
	close(up[0]);
	if (got != 1)
		die("the idmap helper could not create a user namespace");
	snprintf(path, sizeof path, "/proc/%d/uid_map", child);
	snprintf(map, sizeof map, "%ld %ld 1\n", disk_uid, seen_uid);
	write_file(path, map);
	snprintf(path, sizeof path, "/proc/%d/gid_map", child);
	snprintf(map, sizeof map, "%ld %ld 1\n", disk_gid, seen_gid);
	write_file(path, map);
	snprintf(path, sizeof path, "/proc/%d/ns/user", child);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		die("open %s: %s", path, strerror(errno));
	close(go[1]);
	waitpid(child, NULL, 0);
	return ns;
}

static void set_attr(int tree, uint64_t set, int userns, const char *what)
{
	struct lg_mount_attr attr = {.attr_set = set, .userns_fd = userns < 0 ? 0 : (uint64_t)userns};
	if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | LG_AT_RECURSIVE, &attr, sizeof attr) < 0)
		die("mount_setattr %s: %s", what, strerror(errno));
}

/* Creates `path` (and its parents) inside the new root as a directory, or as an empty file when the
 * source is not a directory: a bind needs a mount point of the same kind. */
static void make_mount_point(const char *path, int is_dir)
{
	char buf[4096];
	if (snprintf(buf, sizeof buf, "%s%s", NEW_ROOT, path) >= (int)sizeof buf)
		die("path too long: %s", path);
	for (char *p = buf + strlen(NEW_ROOT) + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			die("mkdir %s: %s", buf, strerror(errno));
		*p = '/';
	}
	if (is_dir) {
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			die("mkdir %s: %s", buf, strerror(errno));
	} else {
		int fd = open(buf, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			die("create %s: %s", buf, strerror(errno));
		close(fd);
	}
}

static struct sock_filter filter[4096];
static unsigned short filter_len;

/* Read before the jail exists (the file is a host path); installed last, just before exec. */
static void read_seccomp(const char *file)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open seccomp filter %s: %s", file, strerror(errno));
	ssize_t n = read(fd, filter, sizeof filter);
	close(fd);
	if (n <= 0 || n % (ssize_t)sizeof filter[0] != 0)
		die("seccomp filter %s: bad size", file);
	filter_len = (unsigned short)(n / (ssize_t)sizeof filter[0]);
}

/* Decodes mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape(char *s)
{
	char *out = s;
	for (char *in = s; *in; in++) {
		if (in[0] == '\\' && in[1] >= '0' && in[1] <= '3' && in[2] >= '0' && in[2] <= '7' && in[3] >= '0' && in[3] <= '7') {
			*out++ = (char)((in[1] - '0') * 64 + (in[2] - '0') * 8 + (in[3] - '0'));
			in += 3;
		} else {
			*out++ = *in;
		}
	}
	*out = 0;
}

/* A new mount namespace copies every mount of ours, and the launcher's monitor lives in it as long as
 * its sandbox: other sandboxes' workspace mounts (loop-mounted images) would stay pinned there after
 * their own sandbox unmounted them. Detach every mount strictly below the given directories, deepest
 * first (our own sources were cloned already). */
static void detach_mounts_under(const char *dir)
{
	size_t len = strlen(dir);
	for (int iter = 0; iter < 4096; iter++) {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		if (!f)
			die("read mountinfo: %s", strerror(errno));
		char line[8192];
		char *victim = NULL;
		size_t victim_len = 0;
		while (fgets(line, sizeof line, f)) {
			/* fields: id parent major:minor root mount-point ... */
			char *save = NULL, *field = strtok_r(line, " ", &save);
			for (int k = 0; field && k < 4; k++)
				field = strtok_r(NULL, " ", &save);
			if (!field)
				continue;
			unescape(field);
			size_t n = strlen(field);
			if (n > len + 1 && strncmp(field, dir, len) == 0 && field[len] == '/' && n > victim_len) {
				free(victim);
				victim = strdup(field);
				victim_len = n;
			}
		}
		fclose(f);
		if (!victim)
			return;
		/* One at a time, deepest path first; re-read since a detach takes its submounts along. */
		if (umount2(victim, MNT_DETACH) < 0) {
			int e = errno;
			free(victim);
			if (e == EINVAL || e == ENOENT)
				return; /* gone meanwhile: no progress to make on it, and nothing to pin */
			die("detach a mount below %s: %s", dir, strerror(e));
		}
		free(victim);
	}
}

/* The real uid of the process behind an open /proc/PID directory, from its status file; -1 if gone. */
static long status_uid(int proc_dir)
{
	int fd = openat(proc_dir, "status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	const char *u = strstr(buf, "\nUid:");
	return u ? strtol(u + 5, NULL, 10) : -1;
}

/* Field 22 of /proc/PID/stat (its start time, in clock ticks since boot), or "" if unreadable. */
static void start_time(int proc_dir, char *out, size_t size)
{
	out[0] = 0;
	int fd = openat(proc_dir, "stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	/* The command name may hold spaces and parentheses: fields 3 on start after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return;
	p++;
	for (int field = 2; field < 21 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return;
	p++;
	size_t len = strcspn(p, " ");
	if (len == 0 || len >= size)
		return;
	memcpy(out, p, len);
	out[len] = 0;
}

/* Dies unless proc_dir's process is the one the host started: alive and with this start time. */
static void check_start(int proc_dir, long pid, const char *start)
{
	char now[32];
	start_time(proc_dir, now, sizeof now);
	if (now[0] == 0 || strcmp(now, start) != 0)
		die("process %ld is not the one the host started (it exited, or its pid was reused)", pid);
}

/* Whether namespace file `ns` (of the target) is the same namespace as ours of that kind. */
static int same_ns(int ns, const char *own)
{
	int self = open(own, O_RDONLY | O_CLOEXEC);
	struct stat a, b;
	int same = self < 0 || fstat(self, &a) < 0 || fstat(ns, &b) < 0 || (a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	if (self >= 0)
		close(self);
	return same;
}

/* Clones `src` (recursive, nosuid, nodev, noexec) as a detached mount, in a user and mount namespace
 * of a child's own: there the workspace is its owner's to clone, which an ordinary user may not do
 * in the host's mount namespace. The detached tree comes back over a socket pair. */
static int clone_as_user(const char *src)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	uid_t uid = getuid();
	gid_t gid = getgid();
	pid_t child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child == 0) {
		close(sv[0]);
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
			die("unshare: %s (unprivileged user namespaces must be enabled)", strerror(errno));
		char map[64];
		snprintf(map, sizeof map, "%ld %ld 1\n", (long)uid, (long)uid);
		write_file("/proc/self/uid_map", map);
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof map, "%ld %ld 1\n", (long)gid, (long)gid);
		write_file("/proc/self/gid_map", map);
		int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, LG_OPEN_TREE_CLONE | LG_OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW | LG_AT_RECURSIVE);
		if (tree < 0)
			die("open %s: %s", src, strerror(errno));
		set_attr(tree, LG_MOUNT_ATTR_NOSUID | LG_MOUNT_ATTR_NODEV | LG_MOUNT_ATTR_NOEXEC, -1, src);
		char c = 0;
		struct iovec io = {.iov_base = &c, .iov_len = 1};
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} cb;
		memset(&cb, 0, sizeof cb);
		struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof cb.buf};
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &tree, sizeof tree);
		if (sendmsg(sv[1], &m, 0) < 0)
			die("send the workspace mount: %s", strerror(errno));
		_exit(0);
	}
	close(sv[1]);
	int status = 0;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		exit(126); /* the child said why on our stderr */
	char c;
	struct iovec io = {.iov_base = &c, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cb;
	struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof cb.buf};
	if (recvmsg(sv[0], &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
		die("receive the workspace mount: %s", strerror(errno));
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	if (!h || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS || h->cmsg_len != CMSG_LEN(sizeof(int)))
		die("receive the workspace mount: no descriptor");
	int tree;
	memcpy(&tree, CMSG_DATA(h), sizeof tree);
	close(sv[0]);
	return tree;
}

/* --inject as an ordinary user: the jail of `pid` is a user namespace of ours (our uid is its owner),
 * entered with its mount namespace to move the workspace, cloned by clone_as_user(), in at `dst`. */
static void inject_unprivileged(int proc_dir, long pid, const char *start)
{
	if (nbinds != 1 || binds[0].kind != BIND_RW)
		die("--inject as an ordinary user takes exactly one --rw");
	if (status_uid(proc_dir) != (long)getuid())
		die("process %ld does not run as us: not a jail of ours to give this workspace", pid);
	int mntns = openat(proc_dir, "ns/mnt", O_RDONLY | O_CLOEXEC);
	if (mntns < 0)
		die("open the mount namespace of %ld: %s", pid, strerror(errno));
	/* The user namespace that owns its mount namespace, which is where mounting there needs the
	 * capability: bwrap's sandbox process runs in a user namespace nested inside that one. */
	int userns = ioctl(mntns, NS_GET_USERNS);
	if (userns < 0)
		die("find the owner of the mount namespace of %ld: %s", pid, strerror(errno));
	if (same_ns(userns, "/proc/self/ns/user") || same_ns(mntns, "/proc/self/ns/mnt"))
		die("process %ld is not in a jail of its own", pid);
	check_start(proc_dir, pid, start);
	int tree = clone_as_user(binds[0].src);
	/* We are about to enter the jail's namespaces as the very uid its processes run as: not dumpable
	 * (from here: clone_as_user's child must write its own maps), so none of them may ptrace us or
	 * open our /proc files (that needs a capability in the host's user namespace, which owns our memory). */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		die("prctl: %s", strerror(errno));
	/* The kernel lets the owner of a user namespace (or of an ancestor of it) enter it, with every
	 * capability there: enough to mount in the mount namespaces it owns, and in nothing else. */
	if (setns(userns, CLONE_NEWUSER) < 0)
		die("enter the user namespace of %ld: %s", pid, strerror(errno));
	if (setns(mntns, CLONE_NEWNS) < 0)
		die("enter the mount namespace of %ld: %s", pid, strerror(errno));
	if (syscall(SYS_move_mount, tree, "", AT_FDCWD, binds[0].dst, LG_MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("mount %s on %s in the jail of %ld: %s", binds[0].src, binds[0].dst, pid, strerror(errno));
	check_start(proc_dir, pid, start);
	_exit(0);
}

/* --inject: the workspace bind, idmapped to the VMM's identity, moved into the mount namespace of
 * the running VMM `pid` at `dst` (a directory its jail already has, below its read-only root). */
static void inject(long pid, const char *start, long uid, long gid, long disk_uid, long disk_gid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%ld", pid);
	/* The directory stands for that process from now on: if it exits and its pid is reused, reads
	 * through it fail instead of describing the newcomer. */
	int proc_dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc_dir < 0)
		die("open %s: %s", path, strerror(errno));
	if (geteuid() != 0)
		inject_unprivileged(proc_dir, pid, start);
	if (nbinds != 1 || binds[0].kind != BIND_IDMAP)
		die("--inject takes exactly one --idmap");
	int ns = openat(proc_dir, "ns/mnt", O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		die("open the mount namespace of %ld: %s", pid, strerror(errno));
	if (status_uid(proc_dir) != uid)
		die("process %ld does not run as %ld: not the VMM to give this workspace", pid, uid);
	if (same_ns(ns, "/proc/self/ns/mnt"))
		die("process %ld is not in a jail of its own", pid);
	check_start(proc_dir, pid, start);
	int tree = (int)syscall(SYS_open_tree, AT_FDCWD, binds[0].src, LG_OPEN_TREE_CLONE | LG_OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW | LG_AT_RECURSIVE);
	if (tree < 0)
		die("open %s: %s", binds[0].src, strerror(errno));
	int idmap_ns = idmap_userns(disk_uid, uid, disk_gid, gid);
	set_attr(tree, LG_MOUNT_ATTR_NOSUID | LG_MOUNT_ATTR_NODEV | LG_MOUNT_ATTR_NOEXEC | LG_MOUNT_ATTR_IDMAP, idmap_ns, binds[0].src);
	close(idmap_ns);
	if (setns(ns, CLONE_NEWNS) < 0)
		die("enter the mount namespace of %ld: %s", pid, strerror(errno));
	/* Resolved in the jail (setns made its root ours), without following a symlink at the end. */
	if (syscall(SYS_move_mount, tree, "", AT_FDCWD, binds[0].dst, LG_MOVE_MOUNT_F_EMPTY_PATH) < 0)
		die("mount %s on %s in the jail of %ld: %s", binds[0].src, binds[0].dst, pid, strerror(errno));
	if (status_uid(proc_dir) != uid)
		die("process %ld exited while its workspace was mounted", pid);
	check_start(proc_dir, pid, start);
	_exit(0);
}

/* --serve's requests in flight: each a child carrying out one inject, answered in request order. */
#define SERVE_MAX 16
/* "inject", PID, START, UID, GID, SRC, DST, DISK_UID, DISK_GID */
#define SERVE_FIELDS 9
struct job {
	pid_t child;
	int err;	/* read end of the child's stderr; -1 once it has closed */
	int done;	/* the child was reaped */
	int status;
	size_t len;
	char msg[2048];
};

/* Forks the child for one parsed request; its stderr is the job's pipe. */
static void start_job(struct job *j, char f[SERVE_FIELDS][4096])
{
	long pid = parse_id(f[1], "pid"), uid = parse_id(f[3], "uid"), gid = parse_id(f[4], "gid");
	long disk_uid = parse_id(f[7], "disk uid"), disk_gid = parse_id(f[8], "disk gid");
	int privileged = geteuid() == 0;
	if (privileged && (uid <= 0 || gid <= 0))
		die("--serve: uid and gid must name an unprivileged identity");
	if (!privileged && (uid != (long)getuid() || gid != (long)getgid()))
		die("--serve: run as an ordinary user, a jail runs as that user");
	int err[2];
	if (pipe2(err, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	pid_t child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child == 0) {
		dup2(err[1], 2);
		nbinds = 0;
		add_bind(privileged ? BIND_IDMAP : BIND_RW, f[5], f[6]);
		inject(pid, f[2], uid, gid, disk_uid, disk_gid);
	}
	close(err[1]);
	*j = (struct job){.child = child, .err = err[0]};
}

/* Reads what a job's child wrote to its stderr; at its end the child is reaped. */
static void job_input(struct job *j)
{
	char tmp[512];
	ssize_t n = read(j->err, tmp, sizeof tmp);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		size_t room = sizeof j->msg - 1 - j->len;
		size_t take = (size_t)n < room ? (size_t)n : room;
		memcpy(j->msg + j->len, tmp, take);
		j->len += take;
		return;
	}
	close(j->err);
	j->err = -1;
	while (waitpid(j->child, &j->status, 0) < 0 && errno == EINTR)
		;
	j->done = 1;
}

/* Writes the answer of a finished job: "ok" NUL, or "error" NUL MESSAGE NUL. */
static void answer(struct job *j)
{
	if (WIFEXITED(j->status) && WEXITSTATUS(j->status) == 0) {
		fwrite("ok", 1, 3, stdout);
	} else {
		j->msg[j->len] = 0;
		for (size_t k = 0; k < j->len; k++)
			if (j->msg[k] == 0)
				j->msg[k] = ' ';
		if (j->len == 0)
			snprintf(j->msg, sizeof j->msg, "the inject child ended with status %d", j->status);
		fwrite("error", 1, 6, stdout);
		fwrite(j->msg, 1, strlen(j->msg) + 1, stdout);
	}
	if (fflush(stdout) != 0)
		_exit(0);
}

/* --serve: --inject without a process per request. The host keeps one lg-jailer running and sends
 * it requests on stdin, each nine NUL-terminated fields: "inject", PID, START, UID, GID, SRC, DST,
 * DISK_UID, DISK_GID. Each is run in a child of its own, exactly as `--inject PID --start START --uid
 * UID --gid GID --idmap SRC DST DISK_UID DISK_GID` would run as root (as an ordinary user: `--inject
 * PID --start START --rw SRC DST`, UID and GID its own); up to SERVE_MAX run at once (a restore's two, the
 * VMM's and its file jail's, at the same time), and each is answered on stdout in request order: "ok"
 * NUL, or "error" NUL MESSAGE NUL. Ends at the end of its input once every request is answered, and
 * with its parent. A request it cannot parse ends it: the host starts another. */
static void serve(void)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		die("prctl: %s", strerror(errno));
	signal(SIGPIPE, SIG_DFL);
	static char f[SERVE_FIELDS][4096];
	static struct job jobs[SERVE_MAX];
	static char in[8192];
	size_t in_len = 0;
	int nf = 0;	    /* fields of the request being read */
	size_t flen = 0;    /* bytes of the field being read */
	size_t head = 0, n = 0; /* the jobs in flight, oldest first, in a ring */
	int eof = 0;
	for (;;) {
		/* Whole requests in the input start their jobs, while there is room for them. */
		size_t used = 0;
		while (used < in_len && n < SERVE_MAX) {
			char c = in[used++];
			if (c == 0) {
				f[nf][flen] = 0;
				flen = 0;
				if (++nf < SERVE_FIELDS)
					continue;
				nf = 0;
				if (strcmp(f[0], "inject") != 0)
					die("--serve: unknown request %.32s", f[0]);
				start_job(&jobs[(head + n) % SERVE_MAX], f);
				n++;
				continue;
			}
			if (flen + 1 >= sizeof f[0])
				die("--serve: field too long");
			f[nf][flen++] = c;
		}
		memmove(in, in + used, in_len - used);
		in_len -= used;
		/* Answers go out in request order: the oldest first, once it is done. */
		while (n > 0 && jobs[head].done) {
			answer(&jobs[head]);
			head = (head + 1) % SERVE_MAX;
			n--;
		}
		if (eof && n == 0) {
			if (nf != 0 || flen != 0 || in_len != 0)
				die("--serve: request cut short");
			_exit(0);
		}
		struct pollfd pfd[SERVE_MAX + 1];
		int np = 0;
		int want_input = !eof && n < SERVE_MAX && in_len < sizeof in;
		if (want_input)
			pfd[np++] = (struct pollfd){.fd = 0, .events = POLLIN};
		for (size_t k = 0; k < n; k++) {
			struct job *j = &jobs[(head + k) % SERVE_MAX];
			if (j->err >= 0)
				pfd[np++] = (struct pollfd){.fd = j->err, .events = POLLIN};
		}
		if (np == 0)
			die("--serve: nothing to wait for");
		if (poll(pfd, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		int p = 0;
		if (want_input) {
			if (pfd[0].revents) {
				ssize_t r = read(0, in + in_len, sizeof in - in_len);
				if (r < 0 && errno != EINTR && errno != EAGAIN)
					die("read: %s", strerror(errno));
				if (r == 0)
					eof = 1;
				if (r > 0)
					in_len += (size_t)r;
			}
			p = 1;
		}
		for (size_t k = 0; k < n; k++) {
			struct job *j = &jobs[(head + k) % SERVE_MAX];
			if (j->err < 0)
				continue;
			if (pfd[p].revents)
				job_input(j);
			p++;
		}
	}
}

/* --cgroup DIR: the sandbox cgroups this process joins first, so that bwrap and everything it starts
 * are born inside (the host checks, and moves the sandbox process itself if this did not happen). */
#define MAX_CGROUPS 4
static const char *cgroups[MAX_CGROUPS];
static int ncgroups;

/*
 * Joins each --cgroup by writing 0 (this thread) to its v1 `tasks`, or to v2's `cgroup.procs`. Moving
 * oneself, single-threaded, through `tasks` skips the global lock that moving another process takes
 * for writing, whose first writer waits for an RCU grace period (11-16 ms on these machines, the
 * largest and most variable part of a namespace sandbox's start when the host moved its pid). Best
 * effort: a failure is reported on stderr and the host moves the sandbox process as before.
 */
static void join_cgroups(void)
{
	for (int k = 0; k < ncgroups; k++) {
		const char *dir = cgroups[k];
		if (dir[0] != '/')
			die("--cgroup %s: not an absolute path", dir);
		int d = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct statfs fs;
		if (d < 0 || fstatfs(d, &fs) < 0 || (fs.f_type != CGROUP_SUPER_MAGIC && fs.f_type != CGROUP2_SUPER_MAGIC)) {
			fprintf(stderr, "lg-jailer: %s is not a cgroup directory: %s\n", dir, d < 0 ? strerror(errno) : "another file system");
			if (d >= 0)
				close(d);
			continue;
		}
		int fd = openat(d, "tasks", O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 && errno == ENOENT)
			fd = openat(d, "cgroup.procs", O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || write(fd, "0", 1) != 1)
			fprintf(stderr, "lg-jailer: cannot join cgroup %s: %s\n", dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		close(d);
	}
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--serve") == 0)
		serve();
	/* We end with the host from our first instruction, not only once the jail is built: a jailer
	 * orphaned in its set-up would go on holding the workspace and every bind source open, as root,
	 * until it reached the check at the end, and a recovery looking meanwhile would find them in use.
	 * Changing identity clears the signal; it is set again after that. */
	pid_t parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
		_exit(126);
	long uid = -1, gid = -1, kvm_gid = -1, disk_uid = -1, disk_gid = -1, keep_fds = 3, inject_pid = -1;
	int stage = 0;
	const char *inject_start = NULL;
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "--uid") == 0 && i + 1 < argc) {
			uid = parse_id(argv[++i], "--uid");
		} else if (strcmp(a, "--gid") == 0 && i + 1 < argc) {
			gid = parse_id(argv[++i], "--gid");
		} else if (strcmp(a, "--kvm-gid") == 0 && i + 1 < argc) {
			kvm_gid = parse_id(argv[++i], "--kvm-gid");
		} else if (strcmp(a, "--inject") == 0 && i + 1 < argc) {
			inject_pid = parse_id(argv[++i], "--inject");
		} else if (strcmp(a, "--start") == 0 && i + 1 < argc) {
			inject_start = argv[++i];
		} else if (strcmp(a, "--stage") == 0) {
			stage = 1;
		} else if (strcmp(a, "--detach-under") == 0 && i + 1 < argc) {
			if (ndetach == MAX_BINDS)
				die("too many --detach-under");
			detach_under[ndetach++] = argv[++i];
		} else if (strcmp(a, "--cgroup") == 0 && i + 1 < argc) {
			if (ncgroups == MAX_CGROUPS)
				die("too many --cgroup");
			cgroups[ncgroups++] = argv[++i];
		} else if (strcmp(a, "--keep-fds") == 0 && i + 1 < argc) {
			keep_fds = parse_id(argv[++i], "--keep-fds");
			if (keep_fds < 3 || keep_fds > 64)
				die("--keep-fds must be between 3 and 64");
		} else if (strcmp(a, "--seccomp") == 0 && i + 1 < argc) {
			read_seccomp(argv[++i]);
		} else if ((strcmp(a, "--ro") == 0 || strcmp(a, "--rw") == 0 || strcmp(a, "--dev") == 0) && i + 2 < argc) {
			add_bind(a[2] == 'r' ? (a[3] == 'o' ? BIND_RO : BIND_RW) : BIND_DEV, argv[i + 1], argv[i + 2]);
			i += 2;
		} else if (strcmp(a, "--idmap") == 0 && i + 4 < argc) {
			add_bind(BIND_IDMAP, argv[i + 1], argv[i + 2]);
			disk_uid = parse_id(argv[i + 3], "--idmap uid");
			disk_gid = parse_id(argv[i + 4], "--idmap gid");
			i += 4;
		} else {
			die("unknown or incomplete option %s", a);
		}
	}
	if (inject_pid >= 0) {
		if (inject_start == NULL)
			die("--inject needs --start (the start time of the process the host started)");
		if (geteuid() == 0 && (uid <= 0 || gid <= 0))
			die("--inject run as root needs --uid and --gid naming the VMM's unprivileged identity");
		inject(inject_pid, inject_start, uid, gid, disk_uid, disk_gid);
	}
	if (i >= argc)
		die("usage: lg-jailer --uid U --gid G [binds] -- PROGRAM ARGS...");
	char **prog = argv + i;
	int privileged = geteuid() == 0;
	if (privileged && (uid <= 0 || gid <= 0))
		die("run as root, --uid and --gid must name an unprivileged identity");
	if (!privileged) {
		uid = getuid();
		gid = getgid();
	}
	if (ncgroups > 0 && !privileged)
		die("--cgroup is for root");
	join_cgroups();

	if (!privileged) {
		/* An ordinary user: a user namespace mapping only itself gives the rights to build the jail. */
		if (unshare(CLONE_NEWUSER) < 0)
			die("unshare user namespace: %s (unprivileged user namespaces must be enabled)", strerror(errno));
		char map[64];
		snprintf(map, sizeof map, "%ld %ld 1\n", uid, uid);
		write_file("/proc/self/uid_map", map);
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof map, "%ld %ld 1\n", gid, gid);
		write_file("/proc/self/gid_map", map);
	}
	if (stage && !privileged)
		die("--stage is for dropping root; an ordinary user runs the sandbox launcher directly");
	/* --stage prepares a launcher (bubblewrap) that makes every other namespace itself. */
	if (unshare(stage ? CLONE_NEWNS : CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET) < 0)
		die("unshare: %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make / private: %s", strerror(errno));
	/* Open every source before the new root is mounted: a bind of /tmp/x must not find our root there.
	 * (In our own mount namespace: an ordinary user may clone mounts only there.) */
	for (int b = 0; b < nbinds; b++) {
		binds[b].tree = (int)syscall(SYS_open_tree, AT_FDCWD, binds[b].src,
			LG_OPEN_TREE_CLONE | LG_OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW | (binds[b].kind == BIND_DEV ? 0 : LG_AT_RECURSIVE));
		if (binds[b].tree < 0)
			die("open %s: %s", binds[b].src, strerror(errno));
	}
	for (int d = 0; d < ndetach; d++)
		detach_mounts_under(detach_under[d]);
	int usr = (int)syscall(SYS_open_tree, AT_FDCWD, "/usr", LG_OPEN_TREE_CLONE | LG_OPEN_TREE_CLOEXEC | LG_AT_RECURSIVE);
	if (usr < 0)
		die("open /usr: %s", strerror(errno));
	int idmap_ns = -1;
	if (privileged && disk_uid >= 0)
		idmap_ns = idmap_userns(disk_uid, uid, disk_gid, gid);

	if (mount("lg-jail", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") < 0)
		die("mount root tmpfs: %s", strerror(errno));

	if (!stage) {
		set_attr(usr, LG_MOUNT_ATTR_RDONLY | LG_MOUNT_ATTR_NODEV | LG_MOUNT_ATTR_NOSUID, -1, "/usr");
		make_mount_point("/usr", 1);
		if (syscall(SYS_move_mount, usr, "", AT_FDCWD, NEW_ROOT "/usr", LG_MOVE_MOUNT_F_EMPTY_PATH) < 0)
			die("mount /usr: %s", strerror(errno));
		/* Debian's merged /usr: the loader and libraries are found through these links. */
		static const char *links[][2] = {{"usr/bin", "/bin"}, {"usr/sbin", "/sbin"}, {"usr/lib", "/lib"}, {"usr/lib64", "/lib64"}};
		for (size_t l = 0; l < sizeof links / sizeof links[0]; l++) {
			char at[64];
			snprintf(at, sizeof at, "%s%s", NEW_ROOT, links[l][1]);
			if (symlink(links[l][0], at) < 0)
				die("symlink %s: %s", at, strerror(errno));
		}
	}
	for (int b = 0; b < nbinds; b++) {
		struct stat st;
		if (fstat(binds[b].tree, &st) < 0)
			die("stat %s: %s", binds[b].src, strerror(errno));
		uint64_t attrs = LG_MOUNT_ATTR_NOSUID;
		if (binds[b].kind != BIND_DEV)
			attrs |= LG_MOUNT_ATTR_NODEV;
		if (binds[b].kind == BIND_RO)
			attrs |= LG_MOUNT_ATTR_RDONLY;
		/* QEMU executes nothing it writes; a staged workspace is where a sandbox's commands run scripts. */
		if (!stage && (binds[b].kind == BIND_RW || binds[b].kind == BIND_IDMAP))
			attrs |= LG_MOUNT_ATTR_NOEXEC;
		if (binds[b].kind == BIND_IDMAP && idmap_ns >= 0)
			attrs |= LG_MOUNT_ATTR_IDMAP;
		set_attr(binds[b].tree, attrs, binds[b].kind == BIND_IDMAP ? idmap_ns : -1, binds[b].src);
		make_mount_point(binds[b].dst, S_ISDIR(st.st_mode));
		char at[4096];
		snprintf(at, sizeof at, "%s%s", NEW_ROOT, binds[b].dst);
		if (syscall(SYS_move_mount, binds[b].tree, "", AT_FDCWD, at, LG_MOVE_MOUNT_F_EMPTY_PATH) < 0)
			die("mount %s on %s: %s", binds[b].src, binds[b].dst, strerror(errno));
		close(binds[b].tree);
	}
	if (idmap_ns >= 0)
		close(idmap_ns);
	if (stage) {
		/* No pivot: the launcher needs the host's system directories and reads the staged binds
		 * (sources it could not reach as its new identity) from NEW_ROOT. */
		if (mount(NULL, NEW_ROOT, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
			die("remount the stage read-only: %s", strerror(errno));
		if (chdir("/") < 0)
			die("chdir: %s", strerror(errno));
	} else {
		/* QEMU's 9p server reaches files through /proc/self/fd/N/NAME for its *at xattr calls. Only pid
		 * directories, and only the VMM's own (hidepid: other uids' processes are invisible). An ordinary
		 * user owns no pid namespace to mount a new proc for: it gets the host's directory of this very
		 * process (the VMM after exec, the same pid) and a `self` link to it, and no other process's. */
		make_mount_point("/proc", 1);
		if (mount("proc", NEW_ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible,subset=pid") < 0) {
			if (privileged)
				die("mount /proc: %s", strerror(errno));
			char own[32], at[64];
			snprintf(own, sizeof own, "/proc/%ld", (long)getpid());
			snprintf(at, sizeof at, "%s%s", NEW_ROOT, own);
			make_mount_point(own, 1);
			if (mount(own, at, NULL, MS_BIND, NULL) < 0)
				die("bind %s: %s", own, strerror(errno));
			if (symlink(own + strlen("/proc/"), NEW_ROOT "/proc/self") < 0)
				die("symlink /proc/self: %s", strerror(errno));
		}
		if (mkdir(NEW_ROOT "/.old", 0700) < 0)
			die("mkdir: %s", strerror(errno));
		if (syscall(SYS_pivot_root, NEW_ROOT, NEW_ROOT "/.old") < 0)
			die("pivot_root: %s", strerror(errno));
		if (chdir("/") < 0 || umount2("/.old", MNT_DETACH) < 0 || rmdir("/.old") < 0)
			die("detach the host root: %s", strerror(errno));
		if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
			die("remount the root read-only: %s", strerror(errno));

	}
	/* Workspace files get ordinary modes (QEMU creates them fmode=0644, dmode=0755); the run directory
	 * holding the sockets and the console log is 0700 and the VMM's own. */
	umask(022);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("no_new_privs: %s", strerror(errno));
	if (privileged) {
		gid_t groups[1] = {(gid_t)kvm_gid};
		if (setgroups(kvm_gid >= 0 ? 1 : 0, groups) < 0 || setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0 ||
		    setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
			die("drop to %ld:%ld: %s", uid, gid, strerror(errno));
		if (setuid(0) == 0 || geteuid() == 0)
			die("still able to become root after dropping privileges");
	}
	/* A changed identity clears the parent-death signal: set it now, then make sure the parent did
	 * not die before it took effect. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
		_exit(126);
	/* Descriptors the caller handed over on purpose (a launcher's info, block and data fds) stay. */
	if (syscall(SYS_close_range, (unsigned)keep_fds, ~0U, 0) < 0) {
		for (int fd = (int)keep_fds; fd < 1024; fd++)
			close(fd);
	}
	if (filter_len > 0) {
		struct sock_fprog fprog = {.len = filter_len, .filter = filter};
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
			die("seccomp: %s", strerror(errno));
	}
	execv(prog[0], prog);
	die("exec %s: %s", prog[0], strerror(errno));
	return 126;
}
