/* lg-agent: one command's stdio pipes: feeding its stdin, turning its output into events, the output cap. */
#define _GNU_SOURCE
#include "pump.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

#define CHUNK (64 * 1024)

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void pump_init(struct pump *p, uint64_t max_out)
{
	*p = (struct pump){.in_fd = -1, .out_fd = {-1, -1}, .max_out = max_out, .pidx = {-1, -1, -1}};
}

bool pump_set_stdin(struct pump *p, const uint8_t *data, size_t n)
{
	if (!(p->in_buf = malloc(n)))
		return false;
	memcpy(p->in_buf, data, n);
	p->in_len = n;
	return true;
}

void pump_attach(struct pump *p, int in_fd, int out_fd, int err_fd)
{
	p->in_fd = in_fd;
	p->out_fd[0] = out_fd;
	p->out_fd[1] = err_fd;
	set_nonblock(p->in_fd, true);
	set_nonblock(p->out_fd[0], true);
	set_nonblock(p->out_fd[1], true);
	if (!p->in_len)
		close_fd(&p->in_fd);
}

static void emit(struct pump *p, int s, uint32_t id, bool deliver)
{
	if (p->pend_len[s] && deliver)
		send_event(id, s ? "stderr" : "stdout", p->pend[s], p->pend_len[s]);
	p->pend_len[s] = 0;
}

int pump_fill_poll(struct pump *p, struct pollfd *pfd, int n, bool want_output)
{
	p->pidx[0] = p->pidx[1] = p->pidx[2] = -1;
	if (p->in_fd >= 0) {
		p->pidx[0] = n;
		pfd[n++] = (struct pollfd){.fd = p->in_fd, .events = POLLOUT};
	}
	for (int s = 0; s < 2; s++) {
		/* Output past the cap is only discarded, so it is read even under backpressure. */
		if (p->out_fd[s] >= 0 && (want_output || p->out_total[s] >= p->max_out)) {
			p->pidx[1 + s] = n;
			pfd[n++] = (struct pollfd){.fd = p->out_fd[s], .events = POLLIN};
		}
	}
	return n;
}

static void write_stdin(struct pump *p)
{
	while (p->in_fd >= 0 && p->in_off < p->in_len) {
		ssize_t w = write(p->in_fd, p->in_buf + p->in_off, p->in_len - p->in_off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0) {
			/* EPIPE: the command closed its stdin early, which is its business. */
			break;
		}
		p->in_off += (size_t)w;
	}
	close_fd(&p->in_fd);
	free(p->in_buf);
	p->in_buf = NULL;
}

static void read_output(struct pump *p, int s, uint32_t id, bool deliver)
{
	static char discard[CHUNK];
	for (int round = 0; round < 16 && p->out_fd[s] >= 0; round++) {
		bool keep = p->out_total[s] < p->max_out;
		char *dst = discard;
		size_t room = sizeof discard;
		if (keep) {
			if (!p->pend[s] && !(p->pend[s] = malloc(CHUNK)))
				keep = false;
			else {
				if (p->pend_len[s] == CHUNK)
					emit(p, s, id, deliver);
				dst = p->pend[s] + p->pend_len[s];
				room = CHUNK - p->pend_len[s];
				if (room > p->max_out - p->out_total[s])
					room = (size_t)(p->max_out - p->out_total[s]);
			}
		}
		ssize_t n = read(p->out_fd[s], dst, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close_fd(&p->out_fd[s]);
			return;
		}
		if (keep) {
			p->pend_len[s] += (size_t)n;
			p->out_total[s] += (uint64_t)n;
			if (p->pend_len[s] == CHUNK)
				emit(p, s, id, deliver);
		} else {
			p->trunc[s] = true;
		}
	}
}

void pump_handle(struct pump *p, const struct pollfd *pfd, uint32_t id, bool deliver)
{
	if (p->pidx[0] >= 0 && pfd[p->pidx[0]].revents)
		write_stdin(p);
	for (int s = 0; s < 2; s++)
		if (p->pidx[1 + s] >= 0 && pfd[p->pidx[1 + s]].revents)
			read_output(p, s, id, deliver);
	p->pidx[0] = p->pidx[1] = p->pidx[2] = -1;
}

bool pump_output_open(const struct pump *p) { return p->out_fd[0] >= 0 || p->out_fd[1] >= 0; }

void pump_drain(struct pump *p, uint32_t id, bool deliver)
{
	for (int s = 0; s < 2; s++) {
		read_output(p, s, id, deliver);
		close_fd(&p->out_fd[s]);
	}
}

void pump_flush(struct pump *p, uint32_t id, bool deliver)
{
	emit(p, 0, id, deliver);
	emit(p, 1, id, deliver);
}

void pump_close_stdin(struct pump *p) { close_fd(&p->in_fd); }

void pump_free(struct pump *p)
{
	close_fd(&p->in_fd);
	close_fd(&p->out_fd[0]);
	close_fd(&p->out_fd[1]);
	free(p->in_buf);
	free(p->pend[0]);
	free(p->pend[1]);
	p->in_buf = NULL;
	p->pend[0] = p->pend[1] = NULL;
}
