/* lg-agent: what the agent does as the VM's PID 1: mounts, console, modules, identity, power. */
#define _GNU_SOURCE
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "confine.h"
#include "ops.h"
#include "policy.h"

/* From <linux/random.h>, which musl does not ship: _IOW('R', 0x03, int[2]). */
#define LG_RNDADDENTROPY 0x40085203
/* _IO('R', 0x07): reseed the kernel's CRNG from its input pool now (CAP_SYS_ADMIN). */
#define LG_RNDRESEEDCRNG 0x5207
#define SEED_MAX 512
/* Upper bound of init's integer fields: they are positive 32-bit ints. */
#define INIT_INT_MAX 2147483647u
/* arg_uint leaves an absent field untouched: a value no field may have tells absent from given. */
#define ABSENT UINT64_MAX
/* Written by the image builder for kernels that have our drivers as modules (Debian's). */
#define MODULE_DIR "/lib/modules/lg"

static bool init_mode; /* PID 1 of the micro-VM: owns mounts, clock, hostname, power */
/* Where a share with a workspace subdir is mounted for the moment it takes to bind that subdir. */
#define SHARE_STAGING "/.lg-share"
/* Where `warmup` mounts the share, read-only, for the moment it takes to look at its root. */
#define WARM_STAGING "/.lg-warm"
/* The workspace's 9p mount options (and the warm-up's, so that it takes the same paths). */
#define NINEP_OPTS "trans=virtio,version=9p2000.L,msize=524288,cache=none"
static bool mounted;   /* the workspace's 9p mount is in place */
static char pending_tag[256]; /* a lazy mount's 9p tag, mounted before the first op that needs it */
static char pending_subdir[256]; /* the directory of the share that is the workspace ("" for its root) */

void sys_set_init(bool on) { init_mode = on; }
bool sys_is_init(void) { return init_mode; }

static void mount_one(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
		log_msg("mount %s on %s: %s", type, dst, strerror(errno));
}

/* Loads the modules listed in MODULE_DIR/order, dependencies first as the builder resolved them.
 * A failure is logged and boot goes on: a missing driver shows up as the agent's port or the
 * workspace mount not appearing, with this line on the console saying why. */
static void load_modules(void)
{
	char list[4096];
	long n = read_small_file(MODULE_DIR "/order", list, sizeof list);
	if (n == -ENOENT)
		return;
	if (n < 0) {
		log_msg("read %s/order: %s", MODULE_DIR, strerror((int)-n));
		return;
	}
	char *save = NULL;
	for (char *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
		char path[256];
		if (strchr(name, '/') || (size_t)snprintf(path, sizeof path, MODULE_DIR "/%s", name) >= sizeof path) {
			log_msg("module %s: bad name", name);
			continue;
		}
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			log_msg("module %s: %s", name, strerror(errno));
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			log_msg("load module %s: %s", name, strerror(errno));
		close(fd);
	}
}

void sys_early_init(void)
{
	mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	/* The initramfs has no /dev/console node, so the kernel started us without fds 0-2. */
	int con = open("/dev/console", O_RDWR | O_NOCTTY);
	if (con >= 0) {
		for (int fd = 0; fd < 3; fd++)
			if (fcntl(fd, F_GETFD) < 0)
				dup2(con, fd);
		if (con > 2)
			close(con);
	}
	/* Before anything waits for the agent's virtio port or mounts 9p: those may be modules. */
	load_modules();
	mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_one("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	cgroup_enable_controllers("/sys/fs/cgroup");
	mkdir(confine_root(), 0755);
}

void sys_ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n < 0)
			n = open("/", O_RDONLY | O_DIRECTORY);
		if (n >= 0 && n != fd) {
			dup2(n, fd);
			close(n);
		}
	}
}

void sys_protect_from_oom(void)
{
	/* A memory bomb in a command should take the command down, never the agent. */
	write_small_file("/proc/self/oom_score_adj", "-1000");
}

void sys_exit(int code)
{
	sync();
	if (!init_mode)
		exit(code);
	/* A restart, not a power-off: microvm with acpi=off has no power-off device, so the kernel
	 * turns RB_POWER_OFF into a halt and the VM would hang; QEMU runs with -no-reboot, so a
	 * reset ends it. PID 1 must never just exit (that panics). */
	reboot(RB_AUTOBOOT);
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static void add_entropy(const uint8_t *seed, size_t len)
{
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	/* Crediting entropy is for the VM kernel only; a host kernel (namespace backend, tests)
	 * just gets the bytes mixed in, like any write to /dev/urandom. */
	bool added = false;
	if (init_mode) {
		struct {
			int entropy_count;
			int buf_size;
			uint8_t buf[SEED_MAX];
		} info = {.entropy_count = (int)len * 8, .buf_size = (int)len};
		memcpy(info.buf, seed, len);
		/* Crediting reseeds the CRNG only when it makes the pool ready. A clone whose CRNG was ready
		 * before the seed (its template or its spare's warm-up was credited enough by the CPU or by
		 * interrupts) would go on drawing from the key every clone of that snapshot shares until its
		 * next scheduled reseed: so that one is reseeded now, from a pool that holds the seed (one
		 * that was not ready is reseeded by the credit itself; a second reseed costs ~1 ms of TCG). */
		uint8_t probe;
		bool was_ready = getrandom(&probe, 1, GRND_NONBLOCK) == 1;
		added = ioctl(fd, LG_RNDADDENTROPY, &info) == 0;
		memset(&info, 0, sizeof info);
		if (was_ready && ioctl(fd, LG_RNDRESEEDCRNG) != 0)
			log_msg("reseeding the CRNG failed: %s", strerror(errno));
	}
	/* The ioctl mixed the bytes in already; otherwise (outside the VM, or refused) they are written. */
	if (!added && write(fd, seed, len) < 0) {
		/* nothing left to try */
	}
	close(fd);
}

bool sys_apply_init(req_t *r)
{
	uint8_t *seed = NULL;
	size_t seed_len = 0;
	const char *id = NULL, *tag = NULL, *subdir = "";
	const jnode *time_n = arg_node(r, "timeMs", J_NUM, true);
	const jnode *mount_n = arg_node(r, "mount", J_OBJ, false);
	uint64_t disk_mib = ABSENT, uid = ABSENT, gid = ABSENT;
	if (!arg_b64(r, "seed", true, &seed, &seed_len) || !arg_cstr(r, "id", true, &id, 64) || !time_n ||
	    !arg_uint(r, "diskMiB", false, INIT_INT_MAX, &disk_mib) ||
	    !arg_uint(r, "commandUid", false, INIT_INT_MAX, &uid) || !arg_uint(r, "commandGid", false, INIT_INT_MAX, &gid)) {
		reply_invalid(r);
		return false;
	}
	if (disk_mib == 0 || uid == 0 || gid == 0) {
		/* uid/gid 0 would hand commands the root the whole scheme keeps from them. */
		reply_error(r->id, "INVALID_ARGUMENT", 0, "args.%s must be at least 1",
			    disk_mib == 0 ? "diskMiB" : uid == 0 ? "commandUid" : "commandGid");
		return false;
	}
	/* Only a root agent can switch its children's uid; elsewhere (the namespace sandbox, where
	 * commands and agent are one unprivileged user) every command would fail to start instead. */
	if ((uid != ABSENT || gid != ABSENT) && !init_mode && geteuid() != 0) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "commandUid/commandGid need the agent to run as root");
		return false;
	}
	bool lazy = false;
	if (mount_n) {
		const jnode *t = json_get(r->doc, mount_n, "tag");
		if (!t || t->type != J_STR || t->len == 0 || t->len > 255 || memchr(t->str, 0, t->len)) {
			reply_error(r->id, "INVALID_ARGUMENT", 0, "args.mount.tag must be a non-empty string");
			return false;
		}
		tag = t->str;
		const jnode *l = json_get(r->doc, mount_n, "lazy");
		if (l && l->type != J_BOOL) {
			reply_error(r->id, "INVALID_ARGUMENT", 0, "args.mount.lazy must be a boolean");
			return false;
		}
		lazy = l && l->boolean;
		const jnode *d = json_get(r->doc, mount_n, "subdir");
		/* One plain name: the host's share holds the workspace as a directory of its root. */
		if (d && (d->type != J_STR || d->len == 0 || d->len > 255 || memchr(d->str, 0, d->len) || memchr(d->str, '/', d->len) ||
			  strcmp(d->str, ".") == 0 || strcmp(d->str, "..") == 0)) {
			reply_error(r->id, "INVALID_ARGUMENT", 0, "args.mount.subdir must be one path component");
			return false;
		}
		subdir = d ? d->str : "";
	}
	if (seed_len == 0 || seed_len > SEED_MAX) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "args.seed must hold 1 to %d bytes", SEED_MAX);
		return false;
	}
	if (!(time_n->num >= 0 && time_n->num < 1e16)) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "args.timeMs is out of range");
		return false;
	}
	if (tag && !init_mode) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "mount is only available when the agent is the VM's init");
		return false;
	}

	if (disk_mib != ABSENT)
		policy_set_max_file_bytes(disk_mib << 20);
	if (uid != ABSENT || gid != ABSENT) {
		/* Whichever of the two init leaves out keeps its current value, or the default. */
		bool dropped = policy_drops_privs();
		policy_run_as(uid != ABSENT ? (uid_t)uid : dropped ? policy_uid() : DEFAULT_COMMAND_ID,
			      gid != ABSENT ? (gid_t)gid : dropped ? policy_gid() : DEFAULT_COMMAND_ID);
	}
	add_entropy(seed, seed_len);
	memset(seed, 0, seed_len);
	/* The clock and hostname belong to the VM; outside it they are the sandbox launcher's job
	 * (bwrap --hostname), and changing a host's would be a bug. */
	if (init_mode) {
		int64_t ms = (int64_t)time_n->num;
		struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
		clock_settime(CLOCK_REALTIME, &ts);
		sethostname(id, strlen(id));
	}
	if (tag && !mounted) {
		/* A lazy mount waits for the first op that uses the workspace here (the file tools may be
		 * served beside the VM): the mount, heavy under TCG, leaves the restore path. */
		snprintf(pending_tag, sizeof pending_tag, "%s", tag);
		snprintf(pending_subdir, sizeof pending_subdir, "%s", subdir);
		if (!lazy && !sys_workspace_ready(r->id))
			return false;
	}
	/* Outside a VM the workspace is the launcher's mount, and a file jail started ahead of its sandbox
	 * (src/sandbox/microvm/spares.ts) has it mounted over its empty placeholder only just before this
	 * init: the file tools resolve beneath the directory as it is now, not as it was at start. */
	if (!init_mode)
		confine_reopen_root();
	return true;
}

void op_init(req_t *r)
{
	if (sys_apply_init(r))
		reply_empty(r->id);
}

void sys_sync_clock(req_t *r)
{
	/* A paused VM's clock stands still (idle VMs are paused, src/sandbox/microvm/idle.ts): the host
	 * sends its time with the hello that follows a resume. Only init owns the clock; a bad or absent
	 * value changes nothing (hello is answered either way). */
	const jnode *t = json_get(r->doc, r->args, "timeMs");
	if (!init_mode || !t || t->type != J_NUM || !(t->num >= 0 && t->num < 1e16))
		return;
	int64_t ms = (int64_t)t->num;
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	clock_settime(CLOCK_REALTIME, &ts);
}

bool sys_workspace_ready(uint32_t req_id)
{
	if (mounted || pending_tag[0] == 0)
		return true;
	mkdir(confine_root(), 0755);
	/* With a subdir the share is mounted aside, its directory bound at the workspace root and the share
	 * itself detached: only the workspace stays visible. */
	const char *at = pending_subdir[0] ? SHARE_STAGING : confine_root();
	if (pending_subdir[0])
		mkdir(at, 0700);
	/* nosuid: a set-id file in the workspace (the host's, or one a command made) must not lift a
	 * command back to root; nodev: nor may a device node there open the VM's hardware. */
	if (mount(pending_tag, at, "9p", MS_NOSUID | MS_NODEV, NINEP_OPTS) < 0) {
		int e = errno;
		reply_error(req_id, "IO_ERROR", e, "mount 9p %.64s on %s: %s", pending_tag, at, strerror(e));
		return false;
	}
	if (pending_subdir[0]) {
		char dir[512];
		snprintf(dir, sizeof dir, "%s/%s", at, pending_subdir);
		int e = 0;
		if (mount(dir, confine_root(), NULL, MS_BIND, NULL) < 0)
			e = errno;
		umount2(at, MNT_DETACH);
		rmdir(at);
		if (e) {
			reply_error(req_id, "IO_ERROR", e, "bind %s on %s: %s", dir, confine_root(), strerror(e));
			return false;
		}
	}
	mounted = true;
	pending_tag[0] = 0;
	confine_reopen_root();
	return true;
}

/* init's kernel paths, run once with no effect so that a spare's VMM has translated them (TCG)
 * before a restore's init needs them: zeros mixed into the input pool uncredited (the pool's hash,
 * which init's seed and the reseed it causes use), the clock set to what it reads, the hostname to
 * what it is. */
static void warm_init_paths(void)
{
	static const uint8_t zeros[64];
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, zeros, sizeof zeros) < 0) {
			/* only a warm-up */
		}
		close(fd);
	}
	struct timespec now;
	if (clock_gettime(CLOCK_REALTIME, &now) == 0)
		clock_settime(CLOCK_REALTIME, &now);
	char host[65];
	if (gethostname(host, sizeof host - 1) == 0) {
		host[sizeof host - 1] = 0;
		sethostname(host, strlen(host));
	}
}

void op_warmup(req_t *r)
{
	/* A VM started ahead of its sandbox (the host's spares) runs the paths of a sandbox's first
	 * requests once, with nothing of a sandbox, so that its VMM has translated them (TCG) before a
	 * restore needs them: the 9p mount of the share and a look at its root. The share is mounted
	 * read-only, aside, and unmounted before the answer. Refused once a workspace is mounted or
	 * pending: warming up is for a VM that has none. */
	const char *tag = NULL;
	if (!arg_cstr(r, "tag", true, &tag, 255)) {
		reply_invalid(r);
		return;
	}
	if (!init_mode) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "warmup is only available when the agent is the VM's init");
		return;
	}
	if (mounted || pending_tag[0]) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "warmup is for a VM that has no workspace yet");
		return;
	}
	warm_init_paths();
	mkdir(WARM_STAGING, 0700);
	if (mount(tag, WARM_STAGING, "9p", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NINEP_OPTS) < 0) {
		int e = errno;
		rmdir(WARM_STAGING);
		reply_error(r->id, "IO_ERROR", e, "mount 9p %.64s on %s: %s", tag, WARM_STAGING, strerror(e));
		return;
	}
	struct stat st;
	int e = stat(WARM_STAGING, &st) < 0 ? errno : 0;
	umount2(WARM_STAGING, MNT_DETACH);
	rmdir(WARM_STAGING);
	if (e) {
		reply_error(r->id, "IO_ERROR", e, "stat %s: %s", WARM_STAGING, strerror(e));
		return;
	}
	reply_empty(r->id);
}
