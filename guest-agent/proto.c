/* lg-agent: request argument checking and the answer and event frames. */
#define _GNU_SOURCE
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

static uint64_t answers;

uint64_t answers_sent(void) { return answers; }

/* ---- arguments ---- */

void arg_bad(req_t *r, const char *fmt, ...)
{
	if (r->bad[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->bad, sizeof r->bad, fmt, ap);
	va_end(ap);
}

static const char *type_name(uint8_t t)
{
	static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
	return t <= J_OBJ ? names[t] : "?";
}

const jnode *arg_node(req_t *r, const char *key, uint8_t type, bool required)
{
	const jnode *n = json_get(r->doc, r->args, key);
	if (!n || n->type == J_NULL) {
		if (required)
			arg_bad(r, "args.%s is required", key);
		return NULL;
	}
	if (n->type != type) {
		arg_bad(r, "args.%s must be a %s, not a %s", key, type_name(type), type_name(n->type));
		return NULL;
	}
	return n;
}

bool arg_str(req_t *r, const char *key, bool required, const char **s, size_t *len)
{
	const jnode *n = arg_node(r, key, J_STR, required);
	if (!n)
		return !r->bad[0];
	*s = n->str;
	if (len)
		*len = n->len;
	return true;
}

bool arg_cstr(req_t *r, const char *key, bool required, const char **s, size_t maxlen)
{
	const jnode *n = arg_node(r, key, J_STR, required);
	if (!n)
		return !r->bad[0];
	if (n->len == 0 || n->len > maxlen || memchr(n->str, 0, n->len)) {
		arg_bad(r, "args.%s must be a non-empty string of at most %zu bytes without NUL", key, maxlen);
		return false;
	}
	*s = n->str;
	return true;
}

bool arg_uint(req_t *r, const char *key, bool required, uint64_t max, uint64_t *out)
{
	const jnode *n = arg_node(r, key, J_NUM, required);
	if (!n)
		return !r->bad[0];
	/* 2^53 bounds the cast below and is the largest integer JSON numbers carry exactly. */
	if (!(n->num >= 0 && n->num <= 9007199254740992.0) || n->num != (double)(uint64_t)n->num) {
		arg_bad(r, "args.%s must be a non-negative integer", key);
		return false;
	}
	uint64_t v = (uint64_t)n->num;
	if (v > max) {
		arg_bad(r, "args.%s must be at most %llu", key, (unsigned long long)max);
		return false;
	}
	*out = v;
	return true;
}

bool arg_bool(req_t *r, const char *key, bool *out)
{
	const jnode *n = arg_node(r, key, J_BOOL, false);
	if (!n)
		return !r->bad[0];
	*out = n->boolean;
	return true;
}

bool arg_b64(req_t *r, const char *key, bool required, uint8_t **data, size_t *len)
{
	const jnode *n = arg_node(r, key, J_STR, required);
	if (!n)
		return !r->bad[0];
	/* The decoded bytes overwrite the string inside the request frame, which we own. */
	uint8_t *out = (uint8_t *)(uintptr_t)n->str;
	long l = b64_decode(n->str, n->len, out);
	if (l < 0) {
		arg_bad(r, "args.%s is not valid base64", key);
		return false;
	}
	*data = out;
	*len = (size_t)l;
	return true;
}

/* ---- answers ---- */

const char *errno_code(int err)
{
	switch (err) {
	case ENOENT: return "NOT_FOUND";
	case EISDIR: return "IS_A_DIRECTORY";
	case ENOTDIR: return "NOT_A_DIRECTORY";
	case EACCES:
	case EPERM: return "PERMISSION_DENIED";
	case ENOSPC:
	case EDQUOT:
	case EFBIG: return "NO_SPACE"; /* EFBIG: past RLIMIT_FSIZE or the filesystem's largest file */
	case EXDEV: return "PATH_ESCAPE";
	default: return "IO_ERROR";
	}
}

static void frame_begin(buf_t *b)
{
	static const char hdr[4];
	buf_put(b, hdr, 4);
}

static void frame_send(buf_t *b)
{
	size_t body = b->len - 4;
	b->p[0] = (char)(body >> 24);
	b->p[1] = (char)(body >> 16);
	b->p[2] = (char)(body >> 8);
	b->p[3] = (char)body;
	chan_send(b);
}

/* Every frame is one object that starts with the request's id. */
static void frame_open(jw_t *w, buf_t *b, uint32_t id)
{
	*b = (buf_t){0};
	jw_init(w, b);
	frame_begin(b);
	jw_obj(w);
	jw_key(w, "id");
	jw_int(w, id);
}

static void send_error_frame(uint32_t id, const char *code, int err, const char *msg)
{
	buf_t b;
	jw_t w;
	frame_open(&w, &b, id);
	jw_key(&w, "ok");
	jw_bool(&w, false);
	jw_key(&w, "error");
	jw_obj(&w);
	jw_key(&w, "code");
	jw_cstr(&w, code);
	jw_key(&w, "message");
	jw_cstr(&w, msg);
	if (err) {
		jw_key(&w, "errno");
		jw_cstr(&w, errno_name(err));
	}
	jw_obj_end(&w);
	jw_obj_end(&w);
	answers++;
	if (b.failed) {
		log_msg("cannot build the answer to request %u", id);
		buf_free(&b);
		return;
	}
	frame_send(&b);
}

void reply_error(uint32_t id, const char *code, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	send_error_frame(id, code, err, msg);
}

void reply_errno(uint32_t id, int err, const char *what)
{
	reply_error(id, errno_code(err), err, "%s: %s", what,
		    err == EXDEV ? "path escapes the workspace" : strerror(err));
}

void reply_invalid(req_t *r) { send_error_frame(r->id, "INVALID_ARGUMENT", 0, r->bad[0] ? r->bad : "invalid arguments"); }

void reply_begin(jw_t *w, buf_t *b, uint32_t id)
{
	frame_open(w, b, id);
	jw_key(w, "ok");
	jw_bool(w, true);
	jw_key(w, "result");
}

void reply_end(jw_t *w, buf_t *b, uint32_t id)
{
	jw_obj_end(w);
	if (b->failed || b->len - 4 > FRAME_MAX) {
		buf_free(b);
		reply_error(id, "IO_ERROR", ENOMEM, "the answer does not fit in a %u-byte frame", FRAME_MAX);
		return;
	}
	answers++;
	frame_send(b);
}

void reply_empty(uint32_t id)
{
	jw_t w;
	buf_t b;
	reply_begin(&w, &b, id);
	jw_obj(&w);
	jw_obj_end(&w);
	reply_end(&w, &b, id);
}

void send_event(uint32_t id, const char *stream, const void *data, size_t n)
{
	if (!chan_connected())
		return; /* nobody would receive it; the final answer is likewise dropped */
	buf_t b;
	jw_t w;
	frame_open(&w, &b, id);
	jw_key(&w, "event");
	jw_cstr(&w, stream);
	jw_key(&w, "data");
	jw_b64(&w, data, n);
	jw_obj_end(&w);
	if (b.failed) {
		buf_free(&b);
		return;
	}
	frame_send(&b);
}
