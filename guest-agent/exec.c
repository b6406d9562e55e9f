/* lg-agent: execute_command and cancel: the running commands, their deadlines, tree kills and answers. */
#define _GNU_SOURCE
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "channel.h"
#include "confine.h"
#include "escapees.h"
#include "ops.h"
#include "policy.h"
#include "pump.h"
#include "spawn.h"

/* After the command's own process exits, how long a background child holding its stdout may keep
 * the answer waiting. */
#define EXIT_GRACE_MS 200
#define KILL_RETRY_MS 10
/* A tree that survives SIGKILL this long is stuck in the kernel (D state): answer anyway. */
#define KILL_GIVEUP_MS 2000
#define MAX_ENV 4096

/* END_EXITED: the command's own process ended, and what it left running is being killed.
 * END_OUTPUT_CAP: it wrote past the output cap; everything more would be discarded, so it is
 * killed at once instead of holding a core until its timeout. */
enum end_reason { END_NONE, END_TIMEOUT, END_CANCEL, END_EXITED, END_OUTPUT_CAP };

typedef struct cmd {
	struct cmd *next;
	uint32_t id;
	uint32_t generation; /* of the host connection that asked; only it gets output and answer */
	pid_t pid; /* also the process group id (setsid) */
	bool reaped;
	int status;
	int64_t start_ms, deadline_ms, reaped_ms;
	struct pump io;
	int err_fd; /* CLOEXEC pipe: EOF means exec succeeded, a child_error means it did not */
	enum end_reason end;
	int64_t kill_started, next_kill;
	char cg[CGROUP_PATH_MAX];
	bool has_cg;
	/* Its cgroup holds everything it starts: it runs as a uid that cannot write to any cgroup.procs
	 * (the tree is root's), so it cannot move out. Otherwise escapees are found by walking /proc. */
	bool confined;
	char argv0[128]; /* for error messages */
} cmd_t;

static cmd_t *cmds;
static int ncmds;

static const char *const BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/* ---- bookkeeping ---- */

static bool current(const cmd_t *c) { return c->generation == chan_generation(); }

static cmd_t *find_cmd(uint32_t id)
{
	for (cmd_t *c = cmds; c; c = c->next)
		if (c->id == id && current(c))
			return c;
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void free_cmd(cmd_t *c)
{
	for (cmd_t **pp = &cmds; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	ncmds--;
	pump_free(&c->io);
	close_fd(&c->err_fd);
	if (c->has_cg)
		cgroup_release(c->cg);
	free(c);
}

/* Sends the output read so far, to the host that asked if it is still the one connected. */
static void emit_output(cmd_t *c) { pump_flush(&c->io, c->id, current(c)); }

/* ---- killing a command's process tree ---- */

/* Finds, and with `kill_them` SIGKILLs, the agent's descendants: with `spare_live` only those that
 * are not part of a command still running (escapees.c says how it tells), else all of them.
 * Returns how many there were. */
static size_t sweep(bool spare_live, bool kill_them)
{
	pid_t live[MAX_COMMANDS];
	size_t n = 0;
	for (cmd_t *c = cmds; c && spare_live; c = c->next)
		if (c->end == END_NONE && n < MAX_COMMANDS)
			live[n++] = c->pid;
	return escapees_sweep(live, n, kill_them);
}

/* The command's cgroup and process group. */
static void kill_own(cmd_t *c)
{
	if (c->has_cg)
		cgroup_kill(c->cg);
	/* setsid made pid the group id; before setsid runs the child is still in ours, so also
	 * signal the child itself (safe: it is not reaped, so the pid cannot be reused). */
	kill(-c->pid, SIGKILL);
	if (!c->reaped)
		kill(c->pid, SIGKILL);
}

static void kill_tree(cmd_t *c)
{
	kill_own(c);
	if (!c->confined)
		sweep(true, true);
}

static bool tree_gone(cmd_t *c)
{
	if (!c->reaped)
		return false;
	if (c->has_cg && !cgroup_empty(c->cg))
		return false;
	if (!(kill(-c->pid, 0) < 0 && errno == ESRCH))
		return false;
	return c->confined || sweep(true, false) == 0;
}

static void start_kill(cmd_t *c, enum end_reason why)
{
	c->end = why;
	c->kill_started = mono_ms();
	c->next_kill = c->kill_started + KILL_RETRY_MS;
	kill_tree(c);
	pump_close_stdin(&c->io);
}

/* ---- execute_command ---- */

static char *env_entry(const char *key, const char *val)
{
	size_t kl = strlen(key), vl = strlen(val);
	char *e = malloc(kl + vl + 2);
	if (e) {
		memcpy(e, key, kl);
		e[kl] = '=';
		memcpy(e + kl + 1, val, vl + 1);
	}
	return e;
}

/* Environment = base (PATH, HOME, LANG) overridden or extended by args.env. Records problems in
 * r->bad; *out_path is the PATH the program is looked up in. */
static void build_env(req_t *r, const jnode *env, char ***out_envp, const char **out_path)
{
	static const char *const base_keys[] = {"PATH", "HOME", "LANG"};
	const char *base_vals[] = {BASE_PATH, confine_root(), "C.UTF-8"};
	size_t n = 3 + (env ? env->len : 0);
	*out_path = BASE_PATH;
	if (env && env->len > MAX_ENV) {
		arg_bad(r, "args.env has more than %d entries", MAX_ENV);
		return;
	}
	char **envp = calloc(n + 1, sizeof *envp);
	if (!envp) {
		arg_bad(r, "out of memory");
		return;
	}
	*out_envp = envp;
	size_t k = 0;
	for (int i = 0; i < 3; i++) {
		if (env && json_get(r->doc, env, base_keys[i]))
			continue;
		if (!(envp[k++] = env_entry(base_keys[i], base_vals[i]))) {
			arg_bad(r, "out of memory");
			return;
		}
	}
	for (const jnode *e = json_first(r->doc, env); e; e = json_next(r->doc, e)) {
		if (e->type != J_STR || e->klen == 0 || memchr(e->key, '=', e->klen) || memchr(e->key, 0, e->klen) ||
		    memchr(e->str, 0, e->len)) {
			arg_bad(r, "args.env entries must be NAME: string, without '=' in NAME or NUL anywhere");
			return;
		}
		/* Like JSON.parse, the last of duplicate names wins (MAX_ENV bounds this quadratic check). */
		if (json_get(r->doc, env, e->key) != e)
			continue;
		if (!(envp[k] = env_entry(e->key, e->str))) {
			arg_bad(r, "out of memory");
			return;
		}
		if (strcmp(e->key, "PATH") == 0)
			*out_path = envp[k] + 5;
		k++;
	}
}

static void free_env(char **envp)
{
	if (!envp)
		return;
	for (char **e = envp; *e; e++)
		free(*e);
	free(envp);
}

static int make_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	return 0;
}

void op_execute_command(req_t *r)
{
	const jnode *argvn = arg_node(r, "argv", J_ARR, true);
	const jnode *envn = arg_node(r, "env", J_OBJ, false);
	const char *cwd = ".";
	uint8_t *stdin_data = NULL;
	size_t stdin_len = 0;
	uint64_t timeout_ms = 0, max_out = 0;
	if (!argvn || !arg_cstr(r, "cwd", false, &cwd, PATH_MAX - 1) || !arg_b64(r, "stdin", false, &stdin_data, &stdin_len) ||
	    !arg_uint(r, "timeoutMs", true, UINT64_MAX, &timeout_ms) ||
	    !arg_uint(r, "maxOutputBytes", true, UINT64_MAX, &max_out)) {
		reply_invalid(r);
		return;
	}
	if (argvn->len == 0) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "args.argv must not be empty");
		return;
	}
	for (const jnode *a = json_first(r->doc, argvn); a; a = json_next(r->doc, a)) {
		if (a->type != J_STR || memchr(a->str, 0, a->len)) {
			reply_error(r->id, "INVALID_ARGUMENT", 0, "args.argv must hold strings without NUL");
			return;
		}
	}
	if (json_first(r->doc, argvn)->len == 0) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "args.argv[0] must not be empty");
		return;
	}
	if (find_cmd(r->id)) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "request id %u is already running", r->id);
		return;
	}
	if (ncmds >= MAX_COMMANDS) {
		reply_error(r->id, "IO_ERROR", EAGAIN, "too many commands running (%d)", MAX_COMMANDS);
		return;
	}
	/* A week is far beyond any host deadline; the clamp only keeps the arithmetic sane. */
	if (timeout_ms > 86400000ull * 7)
		timeout_ms = 86400000ull * 7;

	char rel[PATH_MAX];
	int cwdfd = path_clean(cwd, rel);
	if (cwdfd == 0)
		cwdfd = open_beneath(rel, O_PATH | O_DIRECTORY);
	if (cwdfd < 0) {
		reply_path_error(r->id, cwdfd, cwd);
		return;
	}

	char **argv = calloc(argvn->len + 1, sizeof *argv);
	char **envp = NULL;
	const char *path = BASE_PATH;
	cmd_t *c = calloc(1, sizeof *c);
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1}, cgfd = -1;
	int e = 0;
	if (!argv || !c) {
		e = ENOMEM;
		goto fail;
	}
	*c = (cmd_t){.id = r->id, .generation = chan_generation(), .err_fd = -1};
	pump_init(&c->io, max_out);
	size_t i = 0;
	/* The strings live in the request frame; the forked child has its own copy of it. */
	for (const jnode *a = json_first(r->doc, argvn); a; a = json_next(r->doc, a))
		argv[i++] = (char *)(uintptr_t)a->str;
	build_env(r, envn, &envp, &path);
	if (r->bad[0]) {
		free_env(envp);
		free(argv);
		free(c);
		close(cwdfd);
		reply_invalid(r);
		return;
	}
	if (!envp) {
		e = ENOMEM;
		goto fail;
	}
	snprintf(c->argv0, sizeof c->argv0, "%s", argv[0]);
	if (stdin_len && !pump_set_stdin(&c->io, stdin_data, stdin_len)) {
		e = ENOMEM;
		goto fail;
	}
	if ((e = -make_pipe(in)) || (e = -make_pipe(out)) || (e = -make_pipe(err)) || (e = -make_pipe(ep)))
		goto fail;
	if (cgroup_enabled()) {
		if ((cgfd = cgroup_create(c->cg)) < 0)
			log_msg("command %u runs without its own cgroup", c->id);
		c->has_cg = cgfd >= 0;
	}
	c->start_ms = mono_ms();
	c->deadline_ms = c->start_ms + (int64_t)timeout_ms;
	c->confined = c->has_cg && policy_drops_privs();
	pid_t self = getpid();
	/* vfork: the child borrows the agent's memory until its exec instead of copying it. Under TCG
	 * that copy, its copy-on-write faults and its teardown at exec were ~15 % of a command's cost in
	 * QEMU CPU (measured with `true`, `wc` and `sh -c`). The agent waits (it is single-threaded)
	 * until the child has exec'd or exited; spawn_child touches none of the agent's memory (no
	 * malloc, no stdio) and only its own stack and fds. All signals stay blocked across the call so
	 * that no agent handler runs in the child: spawn_child resets them to the default first. */
	sigset_t all_signals, mask;
	sigfillset(&all_signals);
	sigprocmask(SIG_SETMASK, &all_signals, &mask);
	pid_t pid = vfork();
	if (pid == 0)
		spawn_child(in[0], out[1], err[1], ep[1], cgfd, cwdfd, argv, envp, path, self);
	int vfork_errno = errno;
	sigprocmask(SIG_SETMASK, &mask, NULL);
	if (pid < 0) {
		e = vfork_errno;
		goto fail;
	}
	c->pid = pid;
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(ep[1]);
	if (cgfd >= 0)
		close(cgfd);
	close(cwdfd);
	free(argv);
	free_env(envp);
	pump_attach(&c->io, in[1], out[0], err[0]);
	c->err_fd = ep[0];
	set_nonblock(c->err_fd, true);
	c->next = cmds;
	cmds = c;
	ncmds++;
	return;
fail:
	for (int k = 0; k < 2; k++) {
		if (in[k] >= 0) close(in[k]);
		if (out[k] >= 0) close(out[k]);
		if (err[k] >= 0) close(err[k]);
		if (ep[k] >= 0) close(ep[k]);
	}
	if (cgfd >= 0) {
		close(cgfd);
		cgroup_abandon(c->cg);
	}
	close(cwdfd);
	free_env(envp);
	free(argv);
	if (c)
		pump_free(&c->io);
	free(c);
	reply_error(r->id, "IO_ERROR", e, "cannot start command: %s", strerror(e));
}

void op_cancel(req_t *r)
{
	uint64_t target = 0;
	if (!arg_uint(r, "target", true, UINT32_MAX, &target)) {
		reply_invalid(r);
		return;
	}
	cmd_t *c = find_cmd((uint32_t)target);
	if (c && c->end == END_NONE)
		start_kill(c, END_CANCEL);
	jw_t w;
	buf_t b;
	reply_begin(&w, &b, r->id);
	jw_obj(&w);
	jw_key(&w, "found");
	jw_bool(&w, c != NULL);
	jw_obj_end(&w);
	reply_end(&w, &b, r->id);
}

/* ---- the event loop's side ---- */

int exec_fill_poll(struct pollfd *pfd, bool want_output)
{
	int n = 0;
	for (cmd_t *c = cmds; c; c = c->next)
		n = pump_fill_poll(&c->io, pfd, n, want_output);
	return n;
}

void exec_handle_poll(const struct pollfd *pfd)
{
	for (cmd_t *c = cmds; c; c = c->next)
		pump_handle(&c->io, pfd, c->id, current(c));
}

void exec_reap(void)
{
	int64_t now = mono_ms();
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p <= 0)
			break;
		for (cmd_t *c = cmds; c; c = c->next) {
			if (c->pid == p && !c->reaped) {
				c->reaped = true;
				c->status = st;
				c->reaped_ms = now;
			}
		}
	}
	cgroup_retry_stale();
}

static void answer_exec_error(cmd_t *c, const struct child_error *ce)
{
	int e = ce->err;
	if (ce->stage == STAGE_CWD) {
		reply_errno(c->id, e, "cwd");
		return;
	}
	if (ce->stage != STAGE_EXEC) {
		reply_error(c->id, "IO_ERROR", e, "cannot set up the command: %s", strerror(e));
		return;
	}
	const char *code = e == ENOENT || e == ENOTDIR ? "COMMAND_NOT_FOUND"
			   : e == EACCES || e == EPERM    ? "PERMISSION_DENIED"
			   : e == E2BIG                   ? "INVALID_ARGUMENT"
							  : "IO_ERROR";
	reply_error(c->id, code, e, "%s: %s", c->argv0, e == ENOENT ? "command not found" : strerror(e));
}

static void finish(cmd_t *c)
{
	emit_output(c);
	int64_t dur = mono_ms() - c->start_ms;
	if (!current(c)) {
		/* Asked by a host that has gone: nobody to answer. */
	} else if (c->end == END_TIMEOUT) {
		reply_error(c->id, "TOOL_TIMEOUT", 0, "command timed out after %lld ms; its process tree was killed",
			    (long long)(c->deadline_ms - c->start_ms));
	} else if (c->end == END_CANCEL) {
		reply_error(c->id, "CANCELLED", 0, "command cancelled; its process tree was killed");
	} else {
		jw_t w;
		buf_t b;
		reply_begin(&w, &b, c->id);
		jw_obj(&w);
		jw_key(&w, "exitCode");
		if (WIFEXITED(c->status))
			jw_int(&w, WEXITSTATUS(c->status));
		else
			jw_null(&w);
		jw_key(&w, "signal");
		if (WIFSIGNALED(c->status))
			jw_cstr(&w, signal_name(WTERMSIG(c->status)));
		else
			jw_null(&w);
		jw_key(&w, "stdoutTruncated");
		jw_bool(&w, c->io.trunc[0]);
		jw_key(&w, "stderrTruncated");
		jw_bool(&w, c->io.trunc[1]);
		jw_key(&w, "killedAtOutputCap");
		jw_bool(&w, c->end == END_OUTPUT_CAP);
		jw_key(&w, "durationMs");
		jw_int(&w, dur);
		jw_obj_end(&w);
		reply_end(&w, &b, c->id);
	}
	free_cmd(c);
}

/* Returns true when c was answered and freed. */
static bool step(cmd_t *c, int64_t now)
{
	if (c->end != END_NONE) {
		if (tree_gone(c) || now - c->kill_started >= KILL_GIVEUP_MS) {
			finish(c);
			return true;
		}
		if (now >= c->next_kill) {
			kill_tree(c);
			c->next_kill = now + KILL_RETRY_MS;
		}
		return false;
	}
	if (!c->reaped) {
		if (c->io.trunc[0] || c->io.trunc[1])
			start_kill(c, END_OUTPUT_CAP);
		else if (now >= c->deadline_ms)
			start_kill(c, END_TIMEOUT);
		return false;
	}
	if (c->err_fd >= 0) {
		/* The child is gone, so the CLOEXEC error pipe holds its verdict or is at EOF. */
		struct child_error ce;
		ssize_t n = read(c->err_fd, &ce, sizeof ce);
		close_fd(&c->err_fd);
		if (n == (ssize_t)sizeof ce) {
			if (current(c))
				answer_exec_error(c, &ce);
			free_cmd(c);
			return true;
		}
	}
	if (pump_output_open(&c->io)) {
		if (now - c->reaped_ms < EXIT_GRACE_MS && now < c->deadline_ms)
			return false;
		/* A background process still holds the pipes: take what is there and answer without it. */
		pump_drain(&c->io, c->id, current(c));
	}
	if (!tree_gone(c)) {
		/* Nothing a command started outlives it (background jobs, a fork bomb still forking):
		 * left running, it would hold the sandbox's pids and memory against the next call. */
		start_kill(c, END_EXITED);
		return false;
	}
	finish(c);
	return true;
}

void exec_tick(void)
{
	int64_t now = mono_ms();
	for (cmd_t *c = cmds, *next; c; c = next) {
		next = c->next;
		if (step(c, now))
			continue;
		emit_output(c);
	}
}

int exec_timeout_ms(int64_t now)
{
	int64_t best = -1;
	for (cmd_t *c = cmds; c; c = c->next) {
		int64_t t;
		if (c->end != END_NONE)
			t = c->next_kill < c->kill_started + KILL_GIVEUP_MS ? c->next_kill : c->kill_started + KILL_GIVEUP_MS;
		else if (!c->reaped)
			t = c->deadline_ms;
		else
			t = c->reaped_ms + EXIT_GRACE_MS;
		if (best < 0 || t < best)
			best = t;
	}
	if (best < 0)
		return -1;
	return best <= now ? 0 : (best - now > 1000000 ? 1000000 : (int)(best - now));
}

void exec_kill_all(int ms)
{
	for (cmd_t *c = cmds; c; c = c->next)
		kill_own(c);
	cgroup_kill_stale();
	int64_t deadline = mono_ms() + ms;
	do {
		for (cmd_t *c = cmds; c; c = c->next)
			kill_own(c);
		sweep(false, true); /* every descendant, whichever command it came from */
		pid_t p;
		while ((p = waitpid(-1, NULL, WNOHANG)) > 0)
			for (cmd_t *c = cmds; c; c = c->next)
				if (c->pid == p)
					c->reaped = true;
		if (p < 0 && errno == ECHILD)
			break;
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	} while (mono_ms() < deadline);
	while (cmds)
		free_cmd(cmds);
	cgroup_retry_stale();
}
