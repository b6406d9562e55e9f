/* lg-agent: the byte stream to the host (stdio or a virtio-serial port) and its framing. */
#ifndef LG_CHANNEL_H
#define LG_CHANNEL_H

#include <poll.h>

#include "util.h"

enum chan_status { CHAN_OK, CHAN_EOF, CHAN_FATAL };

/* Handles one complete frame body, which it may modify and which lives until it returns. Returns
 * false to take no further frame from this channel (the host asked to shut down). */
typedef bool (*chan_frame_fn)(char *body, size_t len);

/* spec is "stdio" or "virtio:NAME"; every complete frame received goes to on_frame. */
bool chan_open(const char *spec, chan_frame_fn on_frame);
bool chan_connected(void);
/* Changes whenever the host disconnects: requests belong to the connection they came on, and a new
 * host must never see answers to ids it did not send. */
uint32_t chan_generation(void);
/* Queues a complete frame (header included) and takes ownership of its memory. */
void chan_send(buf_t *frame);
/* True while unsent output is above the high-water mark: stop producing more (command output). */
bool chan_backpressured(void);
/* Fills at most 2 pollfds; returns how many. */
int chan_pollfds(struct pollfd *pfd);
/* Handles the revents of the pollfds chan_pollfds filled, then hands buffered frames on. */
enum chan_status chan_handle(const struct pollfd *pfd, int n);
/* Hands on complete frames that waited for the output queue to drain, and tries to write. */
enum chan_status chan_pump(void);
/* ms until chan_tick wants to run (the reconnection check), or -1. */
int chan_timeout_ms(int64_t now);
/* Called on SIGIO and when the timeout expires: notices a host (re)connecting. */
void chan_tick(bool sigio);
/* Writes queued output for up to ms milliseconds (shutdown and exit paths). */
void chan_flush_blocking(int ms);

#endif
