/* lg-agent: one command's stdio pipes: feeding its stdin, turning its output into events, the output cap. */
#ifndef LG_PUMP_H
#define LG_PUMP_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pump {
	int in_fd; /* -1 once all of stdin is written or the command stopped reading */
	uint8_t *in_buf;
	size_t in_len, in_off;
	int out_fd[2]; /* stdout, stderr; -1 at EOF */
	uint64_t out_total[2], max_out;
	bool trunc[2]; /* output past max_out was discarded */
	char *pend[2]; /* output coalesced into one event of up to CHUNK bytes */
	size_t pend_len[2];
	int pidx[3]; /* this round's pollfd index of in_fd/out_fd, -1 if not polled */
};

/* No pipes yet; at most max_out bytes of each output stream will be kept. */
void pump_init(struct pump *p, uint64_t max_out);
/* Copies what is to be written to the command's stdin; false when out of memory. */
bool pump_set_stdin(struct pump *p, const uint8_t *data, size_t n);
/* Takes the agent's ends of the command's stdin, stdout and stderr pipes and makes them
 * non-blocking; stdin is closed at once when there is nothing to write. */
void pump_attach(struct pump *p, int in_fd, int out_fd, int err_fd);
/* Fills pfd[n...] with the pipes to poll, noting their indices, and returns the new count. Output
 * is polled only with want_output (no backpressure), or past the cap, where it is only discarded. */
int pump_fill_poll(struct pump *p, struct pollfd *pfd, int n, bool want_output);
/* Writes stdin and reads output as the revents of pump_fill_poll's pollfds allow. Output that fills
 * a chunk goes out as an event of request `id` if `deliver`, else it is dropped. */
void pump_handle(struct pump *p, const struct pollfd *pfd, uint32_t id, bool deliver);
/* True while stdout or stderr is still open. */
bool pump_output_open(const struct pump *p);
/* Takes what the output pipes hold now and closes them (a background process may hold them open). */
void pump_drain(struct pump *p, uint32_t id, bool deliver);
/* Sends the buffered output as events of request `id` if `deliver`, else drops it. */
void pump_flush(struct pump *p, uint32_t id, bool deliver);
void pump_close_stdin(struct pump *p);
/* Closes the pipes and frees the buffers. */
void pump_free(struct pump *p);

#endif
