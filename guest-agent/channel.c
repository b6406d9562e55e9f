/* lg-agent: the byte stream to the host (stdio or a virtio-serial port) and its framing. */
#define _GNU_SOURCE
#include "channel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { CH_STDIO, CH_VIRTIO };

/* Frames up to this size are parsed straight out of the read buffer; larger ones get their own. */
#define RBUF_SIZE (64 * 1024)
/* Above this much unsent output we stop taking requests and command output: the host's reading
 * pace then bounds our memory (one answer is at most FRAME_MAX on top of this). */
#define OUT_HIGH (1024 * 1024)
#define RECONNECT_CHECK_MS 100
#define PORT_WAIT_MS 10000

struct outframe {
	struct outframe *next;
	char *data;
	size_t len, off;
};

static struct {
	int kind;
	int rfd, wfd;
	bool connected;
	bool resync; /* lost frame alignment (virtio): skip to the next plausible frame start */
	bool eof;
	size_t rlen; /* bytes in rbuf */
	char *body; /* a frame too large for rbuf, being read */
	size_t body_len, body_got;
	struct outframe *head, *tail;
	size_t out_bytes;
	int64_t next_check;
	uint32_t generation;
	chan_frame_fn on_frame;
	bool done; /* on_frame wants no more frames */
} ch = {.rfd = -1, .wfd = -1};
/* Outside `ch` so it lands in .bss rather than 64 KiB of initialised data in the binary. */
static char rbuf[RBUF_SIZE];

bool chan_connected(void) { return ch.connected; }
uint32_t chan_generation(void) { return ch.generation; }
bool chan_backpressured(void) { return ch.out_bytes >= OUT_HIGH; }

static void drop_output(void)
{
	while (ch.head) {
		struct outframe *f = ch.head;
		ch.head = f->next;
		free(f->data);
		free(f);
	}
	ch.tail = NULL;
	ch.out_bytes = 0;
}

static void drop_input(void)
{
	free(ch.body);
	ch.body = NULL;
	ch.body_len = ch.body_got = 0;
	ch.rlen = 0;
	ch.resync = false;
}

/* The host went away (virtio): whatever was half-sent or half-received belongs to the old
 * connection, and a new host starts with a fresh hello. */
static void disconnected(void)
{
	drop_input();
	drop_output();
	ch.connected = false;
	ch.generation++;
	/* Bytes still queued in the port were sent by the old host. */
	char tmp[4096];
	for (int i = 0; i < 256 && read(ch.rfd, tmp, sizeof tmp) > 0; i++)
		;
	ch.next_check = mono_ms() + RECONNECT_CHECK_MS;
}

static enum chan_status lost(void)
{
	if (ch.kind == CH_STDIO)
		return CHAN_EOF;
	disconnected();
	return CHAN_OK;
}

void chan_send(buf_t *frame)
{
	struct outframe *f = NULL;
	if (!ch.connected || frame->failed || !(f = malloc(sizeof *f))) {
		buf_free(frame);
		return;
	}
	*f = (struct outframe){.data = frame->p, .len = frame->len};
	*frame = (buf_t){0};
	if (ch.tail)
		ch.tail->next = f;
	else
		ch.head = f;
	ch.tail = f;
	ch.out_bytes += f->len;
}

static enum chan_status flush(void)
{
	while (ch.head) {
		struct outframe *f = ch.head;
		ssize_t w = write(ch.wfd, f->data + f->off, f->len - f->off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return CHAN_OK;
			return lost();
		}
		f->off += (size_t)w;
		ch.out_bytes -= (size_t)w;
		if (f->off == f->len) {
			ch.head = f->next;
			if (!ch.head)
				ch.tail = NULL;
			free(f->data);
			free(f);
		}
	}
	return CHAN_OK;
}

static uint32_t be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* After lost bytes (a restored VM drops what the host sent before it ran) the stream is realigned
 * on a length header followed by `{"id"`, which is how every host request starts. */
static bool resync_scan(size_t *off)
{
	for (size_t q = *off + 4; q + 5 <= ch.rlen; q++) {
		if (memcmp(rbuf + q, "{\"id\"", 5) != 0)
			continue;
		uint32_t len = be32(rbuf + q - 4);
		if (len >= 5 && len <= FRAME_MAX) {
			*off = q - 4;
			ch.resync = false;
			return true;
		}
	}
	if (ch.rlen > 8 && *off < ch.rlen - 8)
		*off = ch.rlen - 8;
	return false;
}

static enum chan_status protocol_error(const char *why)
{
	log_msg("protocol error from host: %s", why);
	if (ch.kind == CH_STDIO)
		return CHAN_FATAL;
	ch.resync = true;
	return CHAN_OK;
}

static void deliver(char *body, size_t len)
{
	if (!ch.on_frame(body, len))
		ch.done = true;
}

/* Hands on the complete frames in rbuf, as long as the output queue has room. */
static enum chan_status parse_rbuf(void)
{
	size_t off = 0;
	enum chan_status st = CHAN_OK;
	while (ch.connected && !ch.body && !ch.done && ch.out_bytes < OUT_HIGH) {
		if (ch.resync && !resync_scan(&off))
			break;
		if (ch.rlen - off < 4)
			break;
		uint32_t len = be32(rbuf + off);
		if (len > FRAME_MAX) {
			if ((st = protocol_error("frame length exceeds 16 MiB")) != CHAN_OK)
				break;
			continue;
		}
		size_t avail = ch.rlen - off - 4;
		/* Bytes lost inside a header leave a plausible length followed by the middle of a JSON
		 * text: the first body byte gives it away before we wait for megabytes that never come. */
		if (ch.kind == CH_VIRTIO && len > 0) {
			if (avail == 0)
				break;
			char first = rbuf[off + 4];
			if (first != '{' && first != ' ' && first != '\t' && first != '\n' && first != '\r') {
				if ((st = protocol_error("frame does not start with '{'")) != CHAN_OK)
					break;
				continue;
			}
		}
		if (len <= RBUF_SIZE - 4) {
			if (avail < len)
				break;
			off += 4;
			deliver(rbuf + off, len);
			off += len;
			continue;
		}
		ch.body = malloc(len);
		if (!ch.body) {
			if ((st = protocol_error("no memory for a large frame")) != CHAN_OK)
				break;
			off += 4;
			continue;
		}
		ch.body_len = len;
		ch.body_got = avail < len ? avail : len;
		memcpy(ch.body, rbuf + off + 4, ch.body_got);
		off += 4 + ch.body_got;
	}
	if (off) {
		memmove(rbuf, rbuf + off, ch.rlen - off);
		ch.rlen -= off;
	}
	return st;
}

static void finish_body(void)
{
	char *body = ch.body;
	size_t len = ch.body_len;
	ch.body = NULL;
	ch.body_len = ch.body_got = 0;
	deliver(body, len);
	free(body);
}

static enum chan_status read_input(void)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		ssize_t r;
		if (ch.body)
			r = read(ch.rfd, ch.body + ch.body_got, ch.body_len - ch.body_got);
		else if (ch.rlen < RBUF_SIZE && ch.out_bytes < OUT_HIGH)
			r = read(ch.rfd, rbuf + ch.rlen, RBUF_SIZE - ch.rlen);
		else
			return CHAN_OK;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return CHAN_OK;
			return lost();
		}
		if (r == 0) {
			if (ch.kind == CH_STDIO)
				ch.eof = true;
			return lost();
		}
		if (ch.body) {
			ch.body_got += (size_t)r;
			if (ch.body_got == ch.body_len)
				finish_body();
		} else {
			ch.rlen += (size_t)r;
		}
		enum chan_status st = parse_rbuf();
		if (st != CHAN_OK || !ch.connected)
			return st;
	}
	return CHAN_OK;
}

int chan_pollfds(struct pollfd *pfd)
{
	if (!ch.connected)
		return 0;
	short in = (ch.body || (ch.rlen < RBUF_SIZE && ch.out_bytes < OUT_HIGH)) ? POLLIN : 0;
	short out = ch.head ? POLLOUT : 0;
	/* An fd we have nothing to ask of is left out (-1): a hung-up pipe would otherwise report
	 * POLLHUP on every call and spin the loop. */
	if (ch.rfd == ch.wfd) {
		pfd[0] = (struct pollfd){.fd = (in | out) ? ch.rfd : -1, .events = in | out};
		return 1;
	}
	pfd[0] = (struct pollfd){.fd = in ? ch.rfd : -1, .events = in};
	pfd[1] = (struct pollfd){.fd = out ? ch.wfd : -1, .events = out};
	return 2;
}

enum chan_status chan_handle(const struct pollfd *pfd, int n)
{
	enum chan_status st = CHAN_OK;
	for (int i = 0; i < n && st == CHAN_OK && ch.connected; i++) {
		short re = pfd[i].revents;
		if (!re)
			continue;
		if (ch.kind == CH_VIRTIO && (re & (POLLHUP | POLLERR)))
			return lost();
		if (pfd[i].fd == ch.wfd && (re & (POLLOUT | POLLERR | POLLHUP)) && ch.head)
			st = flush();
		if (st == CHAN_OK && ch.connected && pfd[i].fd == ch.rfd && (re & (POLLIN | POLLHUP | POLLERR)))
			st = read_input();
	}
	return st;
}

enum chan_status chan_pump(void)
{
	if (!ch.connected)
		return CHAN_OK;
	enum chan_status st = parse_rbuf();
	if (st == CHAN_OK && ch.connected)
		st = flush();
	if (st == CHAN_OK && ch.eof)
		st = CHAN_EOF;
	return st;
}

int chan_timeout_ms(int64_t now)
{
	if (ch.connected || ch.kind != CH_VIRTIO)
		return -1;
	return ch.next_check > now ? (int)(ch.next_check - now) : 0;
}

void chan_tick(bool sigio)
{
	if (ch.kind != CH_VIRTIO || ch.connected)
		return;
	int64_t now = mono_ms();
	if (!sigio && now < ch.next_check)
		return;
	ch.next_check = now + RECONNECT_CHECK_MS;
	struct pollfd p = {.fd = ch.rfd, .events = POLLIN | POLLOUT};
	if (poll(&p, 1, 0) >= 0 && !(p.revents & (POLLHUP | POLLERR | POLLNVAL)))
		ch.connected = true;
}

void chan_flush_blocking(int ms)
{
	int64_t deadline = mono_ms() + ms;
	while (ch.connected && ch.head) {
		if (flush() != CHAN_OK || !ch.head)
			break;
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			break;
		struct pollfd p = {.fd = ch.wfd, .events = POLLOUT};
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			break;
	}
}

static bool find_port(const char *name, char *dev, size_t cap)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) > 64)
			continue;
		char path[128], got[128];
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%.64s/name", e->d_name);
		long n = read_small_file(path, got, sizeof got);
		while (n > 0 && (got[n - 1] == '\n' || got[n - 1] == ' '))
			got[--n] = 0;
		if (n > 0 && strcmp(got, name) == 0) {
			snprintf(dev, cap, "/dev/%.64s", e->d_name);
			found = true;
		}
	}
	closedir(d);
	return found;
}

/* The port's /dev node can exist before the port is registered, and opening it then fails with
 * ENXIO: so wait for sysfs to name it, and retry the open until the node is ready too. */
static int open_virtio(const char *name)
{
	int64_t deadline = mono_ms() + PORT_WAIT_MS;
	char dev[128];
	int err = ENOENT;
	for (;;) {
		if (find_port(name, dev, sizeof dev)) {
			int fd = open(dev, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
			if (fd >= 0)
				return fd;
			err = errno;
		}
		if (mono_ms() >= deadline)
			break;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	log_msg("virtio port %s not available: %s", name, strerror(err));
	return -1;
}

bool chan_open(const char *spec, chan_frame_fn on_frame)
{
	ch.on_frame = on_frame;
	if (strcmp(spec, "stdio") == 0) {
		ch.kind = CH_STDIO;
		ch.rfd = 0;
		ch.wfd = 1;
		set_nonblock(0, true);
		set_nonblock(1, true);
		ch.connected = true;
		return true;
	}
	if (strncmp(spec, "virtio:", 7) != 0 || !spec[7]) {
		log_msg("unknown channel %s", spec);
		return false;
	}
	int fd = open_virtio(spec + 7);
	if (fd < 0)
		return false;
	ch.kind = CH_VIRTIO;
	ch.rfd = ch.wfd = fd;
	/* virtio_console raises SIGIO when the host side opens or closes the port, which is how a
	 * disconnected agent sleeps without polling a permanently-hung-up fd. */
	fcntl(fd, F_SETOWN, getpid());
	fcntl(fd, F_SETSIG, 0);
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_ASYNC | O_NONBLOCK);
	ch.connected = false;
	chan_tick(true);
	return true;
}
