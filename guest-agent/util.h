/* lg-agent: byte buffers, base64, clocks, errno/signal names, logging. */
#ifndef LG_UTIL_H
#define LG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LG_AGENT_NAME "lg-agent/0.1.0"

/* Frame bodies in either direction are at most this long (docs/protocol.md). */
#define FRAME_MAX (16u * 1024u * 1024u)
/* Growable buffers refuse to grow past this, so no guest-controlled input can make us allocate more. */
#define BUF_HARD_MAX (FRAME_MAX + 4096u)

typedef struct buf {
	char *p;
	size_t len, cap;
	bool failed; /* sticky: an append did not fit (allocation failure or BUF_HARD_MAX) */
} buf_t;

bool buf_reserve(buf_t *b, size_t extra);
void buf_put(buf_t *b, const void *data, size_t n);
void buf_putc(buf_t *b, char c);
void buf_puts(buf_t *b, const char *s);
void buf_free(buf_t *b);

size_t b64_encoded_len(size_t n);
/* Writes b64_encoded_len(n) bytes, no terminator. */
void b64_encode(const uint8_t *in, size_t n, char *out);
/* Decodes standard base64 (padding optional); out may equal in. Returns the length or -1. */
long b64_decode(const char *in, size_t n, uint8_t *out);

int64_t mono_ms(void);
int64_t mono_ns(void);
const char *errno_name(int e);
const char *signal_name(int sig);

void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void random_bytes(void *p, size_t n);
/* open(path, O_WRONLY) + write + close; returns 0 or -errno. */
int write_small_file(const char *path, const char *s);
/* Reads at most cap-1 bytes and NUL-terminates; returns length or -errno. */
long read_small_file(const char *path, char *out, size_t cap);
int set_nonblock(int fd, bool on);
/* write() until done or error; for blocking fds only. */
bool write_all(int fd, const void *p, size_t n);

#endif
