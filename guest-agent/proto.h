/* lg-agent: request argument checking and the answer and event frames. */
#ifndef LG_PROTO_H
#define LG_PROTO_H

#include "json.h"

typedef struct req {
	uint32_t id;
	const jdoc *doc;
	const jnode *args;
	char bad[256]; /* first argument problem, answered as INVALID_ARGUMENT */
} req_t;

/* Argument accessors. Absent optional arguments leave *out untouched and return true; a wrong
 * type records the problem in r->bad and returns false. */
bool arg_str(req_t *r, const char *key, bool required, const char **s, size_t *len);
/* Like arg_str but also rejects empty strings and embedded NULs (paths, argv, names). */
bool arg_cstr(req_t *r, const char *key, bool required, const char **s, size_t maxlen);
bool arg_uint(req_t *r, const char *key, bool required, uint64_t max, uint64_t *out);
bool arg_bool(req_t *r, const char *key, bool *out);
bool arg_b64(req_t *r, const char *key, bool required, uint8_t **data, size_t *len);
const jnode *arg_node(req_t *r, const char *key, uint8_t type, bool required);
void arg_bad(req_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *errno_code(int err);
void reply_invalid(req_t *r);
void reply_error(uint32_t id, const char *code, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Error answer from an errno: the code by errno_code(), the message "what: strerror". */
void reply_errno(uint32_t id, int err, const char *what);

/* A success answer is built in place: reply_begin writes up to `"result":`, the caller writes one
 * object, reply_end closes and queues it (or an IO_ERROR instead if it grew too large). */
void reply_begin(jw_t *w, buf_t *b, uint32_t id);
void reply_end(jw_t *w, buf_t *b, uint32_t id);
void reply_empty(uint32_t id);
void send_event(uint32_t id, const char *stream, const void *data, size_t n);

/* Counts final answers; the dispatcher uses it to guarantee one answer per synchronous request. */
uint64_t answers_sent(void);

#endif
