/* lg-agent: the guest agent's entry point and its single-threaded poll() event loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cgroup.h"
#include "channel.h"
#include "confine.h"
#include "dispatch.h"
#include "exec.h"
#include "policy.h"
#include "sys.h"

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	ssize_t w = write(sig_pipe[1], &b, 1);
	(void)w;
	errno = saved;
}

static void setup_signals(bool init_mode)
{
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_msg("pipe: %s", strerror(errno));
		sys_exit(1);
	}
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGIO, &sa, NULL);
	/* As PID 1 a stray `kill 1` from a command must not take the VM down. */
	if (!init_mode) {
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
	} else {
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
	}
	signal(SIGPIPE, SIG_IGN);
	/* A file-size limit (inherited, or a filesystem's maximum) must fail the write with EFBIG, which
	 * write_file answers as NO_SPACE, rather than kill the agent. */
	signal(SIGXFSZ, SIG_IGN);
}

static void usage(void)
{
	static const char text[] =
		"usage: lg-agent [--channel stdio|virtio:NAME] [--root DIR] [--init|--no-init]\n"
		"                [--cgroup-parent DIR] [--no-openat2] [--files-only]\n";
	write_all(2, text, sizeof text - 1);
}

static void cleanup_and_exit(int code)
{
	chan_flush_blocking(1000);
	exec_kill_all(2000);
	sys_exit(code);
}

int main(int argc, char **argv)
{
	const char *channel = NULL, *root = "/workspace", *cgroup_parent = NULL;
	int force_init = -1;
	bool init_mode = getpid() == 1;
	/* Before anything worth taking exists: a non-dumpable process's /proc/PID/{fd,mem,environ,...}
	 * are closed to processes without CAP_SYS_PTRACE, even to its own uid. In the namespace sandbox
	 * commands share the agent's uid, and would otherwise open its descriptors (their siblings' pipes)
	 * or write its memory and speak to the host in its name. Forked children stay non-dumpable until
	 * their exec, so they are covered while they still hold the agent's memory and descriptors. */
	prctl(PR_SET_DUMPABLE, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--channel") == 0 && next) {
			channel = next;
			i++;
		} else if (strcmp(a, "--root") == 0 && next) {
			root = next;
			i++;
		} else if (strcmp(a, "--cgroup-parent") == 0 && next) {
			cgroup_parent = next;
			i++;
		} else if (strcmp(a, "--init") == 0) {
			force_init = 1;
		} else if (strcmp(a, "--no-init") == 0) {
			force_init = 0;
		} else if (strcmp(a, "--files-only") == 0) {
			dispatch_files_only();
		} else if (strcmp(a, "--no-openat2") == 0) {
			confine_no_openat2();
		} else if (strcmp(a, "--help") == 0) {
			usage();
			return 0;
		} else if (!init_mode) {
			/* As PID 1, unknown words are kernel command-line leftovers and are ignored. */
			usage();
			return 2;
		}
	}
	if (force_init >= 0)
		init_mode = force_init;
	sys_set_init(init_mode);
	/* As the VM's init the agent is root and keeps root (cgroupfs, mounts, reboot); commands never
	 * get it: as root they could read /proc/1/fd, open the agent's port and answer in its name. */
	if (init_mode)
		policy_run_as(DEFAULT_COMMAND_ID, DEFAULT_COMMAND_ID);
	if (!confine_set_root(root)) {
		log_msg("bad --root %s", root);
		return 2;
	}
	if (init_mode)
		sys_early_init();
	sys_ensure_std_fds();
	setup_signals(init_mode);
	sys_protect_from_oom();
	if (!init_mode)
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (cgroup_parent || init_mode)
		cgroup_setup(cgroup_parent ? cgroup_parent : "/sys/fs/cgroup");
	confine_root_fd();
	if (!channel)
		channel = init_mode ? "virtio:lg.agent" : "stdio";
	if (!chan_open(channel, dispatch_frame))
		sys_exit(1);
	if (init_mode)
		log_msg("ready on %s, workspace %s%s", channel, confine_root(), cgroup_enabled() ? ", cgroups" : "");

	struct pollfd pfd[1 + 2 + EXEC_POLLFDS];
	for (;;) {
		int n = 0;
		pfd[n++] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
		int chan_at = n;
		int chan_n = chan_pollfds(&pfd[n]);
		n += chan_n;
		int exec_at = n;
		n += exec_fill_poll(&pfd[n], !chan_backpressured());
		int64_t now = mono_ms();
		int t1 = chan_timeout_ms(now), t2 = exec_timeout_ms(now);
		int timeout = t1 < 0 ? t2 : t2 < 0 ? t1 : (t1 < t2 ? t1 : t2);
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR) {
			log_msg("poll: %s", strerror(errno));
			cleanup_and_exit(1);
		}
		bool sigchld = false, sigio = false, term = false;
		if (pfd[0].revents & POLLIN) {
			unsigned char sigs[64];
			ssize_t got;
			while ((got = read(sig_pipe[0], sigs, sizeof sigs)) > 0) {
				for (ssize_t i = 0; i < got; i++) {
					sigchld |= sigs[i] == SIGCHLD;
					sigio |= sigs[i] == SIGIO;
					term |= sigs[i] == SIGTERM || sigs[i] == SIGINT || sigs[i] == SIGHUP;
				}
			}
		}
		/* Command pipes first: requests handled below may close them (cancel). */
		exec_handle_poll(&pfd[exec_at]);
		if (sigchld)
			exec_reap();
		chan_tick(sigio);
		enum chan_status st = chan_handle(&pfd[chan_at], chan_n);
		exec_tick();
		if (st == CHAN_OK)
			st = chan_pump();
		if (dispatch_shutdown_requested())
			cleanup_and_exit(0);
		if (term)
			cleanup_and_exit(0);
		if (st == CHAN_EOF)
			cleanup_and_exit(0);
		if (st == CHAN_FATAL)
			cleanup_and_exit(2);
	}
}
