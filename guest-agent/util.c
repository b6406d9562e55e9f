/* lg-agent: byte buffers, base64, clocks, errno/signal names, logging. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

bool buf_reserve(buf_t *b, size_t extra)
{
	if (b->failed)
		return false;
	if (extra > BUF_HARD_MAX || b->len > BUF_HARD_MAX - extra) {
		b->failed = true;
		return false;
	}
	size_t need = b->len + extra;
	if (need <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > BUF_HARD_MAX / 2 ? BUF_HARD_MAX : cap * 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void buf_put(buf_t *b, const void *data, size_t n)
{
	if (!n || !buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

void buf_putc(buf_t *b, char c)
{
	if (!buf_reserve(b, 1))
		return;
	b->p[b->len++] = c;
}

void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

void buf_free(buf_t *b)
{
	free(b->p);
	*b = (buf_t){0};
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

void b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*out++ = B64[v >> 18];
		*out++ = B64[(v >> 12) & 63];
		*out++ = B64[(v >> 6) & 63];
		*out++ = B64[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		*out++ = B64[v >> 18];
		*out++ = B64[(v >> 12) & 63];
		*out++ = '=';
		*out++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*out++ = B64[v >> 18];
		*out++ = B64[(v >> 12) & 63];
		*out++ = B64[(v >> 6) & 63];
		*out++ = '=';
	}
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long b64_decode(const char *in, size_t n, uint8_t *out)
{
	/* Output never overtakes input (3 bytes out per 4 in), so decoding in place is safe. */
	if (n % 4 == 0 && n >= 2 && in[n - 1] == '=')
		n -= in[n - 2] == '=' ? 2 : 1;
	if (n % 4 == 1)
		return -1;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (long)o;
}

int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t mono_ms(void) { return mono_ns() / 1000000; }

const char *errno_name(int e)
{
	switch (e) {
#define E(x) case x: return #x;
	E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
	E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR)
	E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ETXTBSY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS)
	E(EMLINK) E(EPIPE) E(ERANGE) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(EOVERFLOW)
	E(EDQUOT) E(ESTALE) E(ENOTSUP) E(ETIMEDOUT) E(ECANCELED) E(EILSEQ) E(ENOTTY) E(ENOTCONN)
#undef E
	default:
		return "EUNKNOWN";
	}
}

const char *signal_name(int sig)
{
	static const char *const names[] = {
		[SIGHUP] = "SIGHUP", [SIGINT] = "SIGINT", [SIGQUIT] = "SIGQUIT", [SIGILL] = "SIGILL",
		[SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT", [SIGBUS] = "SIGBUS", [SIGFPE] = "SIGFPE",
		[SIGKILL] = "SIGKILL", [SIGUSR1] = "SIGUSR1", [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
		[SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM", [SIGSTKFLT] = "SIGSTKFLT",
		[SIGCHLD] = "SIGCHLD", [SIGCONT] = "SIGCONT", [SIGSTOP] = "SIGSTOP", [SIGTSTP] = "SIGTSTP",
		[SIGTTIN] = "SIGTTIN", [SIGTTOU] = "SIGTTOU", [SIGURG] = "SIGURG", [SIGXCPU] = "SIGXCPU",
		[SIGXFSZ] = "SIGXFSZ", [SIGVTALRM] = "SIGVTALRM", [SIGPROF] = "SIGPROF", [SIGWINCH] = "SIGWINCH",
		[SIGIO] = "SIGIO", [SIGPWR] = "SIGPWR", [SIGSYS] = "SIGSYS",
	};
	static char rt[16];
	if (sig > 0 && (size_t)sig < sizeof names / sizeof names[0] && names[sig])
		return names[sig];
	snprintf(rt, sizeof rt, "SIG%d", sig);
	return rt;
}

void log_msg(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	/* One write per line so concurrent console output does not interleave mid-line. */
	ssize_t r = write(2, "lg-agent: ", 10);
	if (r >= 0)
		r = write(2, line, (size_t)n);
	(void)r;
}

void random_bytes(void *p, size_t n)
{
	/* Never block: early in a VM's boot the pool may not be initialised yet, and callers only need
	 * uniqueness (temp names), which O_EXCL enforces anyway. */
	long r = syscall(SYS_getrandom, p, n, 0x1 /* GRND_NONBLOCK */);
	if (r == (long)n)
		return;
	static uint64_t counter;
	uint64_t x = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32) ^ (++counter * 0x9e3779b97f4a7c15ull);
	uint8_t *o = p;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		o[i] = (uint8_t)x;
	}
}

int write_small_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = strlen(s);
	ssize_t w = write(fd, s, n);
	int err = w < 0 ? -errno : ((size_t)w == n ? 0 : -EIO);
	close(fd);
	return err;
}

long read_small_file(const char *path, char *out, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got + 1 < cap) {
		ssize_t r = read(fd, out + got, cap - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	out[got] = 0;
	return (long)got;
}

int set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

bool write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		c += w;
		n -= (size_t)w;
	}
	return true;
}
