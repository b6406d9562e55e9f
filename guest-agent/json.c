/* lg-agent: the JSON subset the protocol needs: an in-place parser and a streaming writer. */
#define _GNU_SOURCE
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what one frame can make us allocate or recurse into. The node cap keeps the tree
 * (48 bytes a node) near 3 MiB even for a 16 MiB frame of "[0,0,0,...". */
#define JSON_MAX_NODES 65536
#define JSON_MAX_DEPTH 32

typedef struct parser {
	jdoc *d;
	char *p, *end;
	int depth;
} parser;

static bool fail(parser *ps, const char *why)
{
	if (!ps->d->error)
		ps->d->error = why;
	return false;
}

static void skip_ws(parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int32_t new_node(parser *ps, uint8_t type)
{
	jdoc *d = ps->d;
	if (d->count >= JSON_MAX_NODES)
		return fail(ps, "too many JSON values"), -1;
	if (d->count == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 32;
		jnode *n = realloc(d->n, (size_t)cap * sizeof *n);
		if (!n)
			return fail(ps, "out of memory"), -1;
		d->n = n;
		d->cap = cap;
	}
	jnode *n = &d->n[d->count];
	*n = (jnode){.type = type, .child = -1, .next = -1};
	return (int32_t)d->count++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool read_hex4(parser *ps, uint32_t *out)
{
	if (ps->end - ps->p < 4)
		return fail(ps, "truncated \\u escape");
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(ps->p[i]);
		if (h < 0)
			return fail(ps, "bad \\u escape");
		v = v << 4 | (uint32_t)h;
	}
	ps->p += 4;
	*out = v;
	return true;
}

static char *put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* Decodes the string at ps->p (just past the opening quote) into the same memory: every escape is
 * at least as long as what it decodes to, and the closing quote leaves room for the terminator. */
static bool parse_string(parser *ps, const char **out, uint32_t *outlen)
{
	char *o = ps->p, *start = ps->p;
	for (;;) {
		if (ps->p >= ps->end)
			return fail(ps, "unterminated string");
		unsigned char c = (unsigned char)*ps->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(ps, "control character in string");
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		if (ps->p >= ps->end)
			return fail(ps, "unterminated string");
		char e = *ps->p++;
		switch (e) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			uint32_t cp;
			if (!read_hex4(ps, &cp))
				return false;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				uint32_t lo;
				if (ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
					char *save = ps->p;
					ps->p += 2;
					if (!read_hex4(ps, &lo))
						return false;
					if (lo >= 0xdc00 && lo <= 0xdfff)
						cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					else {
						cp = 0xfffd; /* lone high surrogate: keep the next escape for the next round */
						ps->p = save;
					}
				} else {
					cp = 0xfffd;
				}
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				cp = 0xfffd;
			}
			o = put_utf8(o, cp);
			break;
		}
		default:
			return fail(ps, "bad escape");
		}
	}
	*o = 0;
	*out = start;
	*outlen = (uint32_t)(o - start);
	return true;
}

static bool parse_number(parser *ps, double *out)
{
	char *s = ps->p;
	char *q = s;
	if (q < ps->end && *q == '-')
		q++;
	if (q >= ps->end)
		return fail(ps, "bad number");
	if (*q == '0') {
		q++;
	} else if (*q >= '1' && *q <= '9') {
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	} else {
		return fail(ps, "bad number");
	}
	if (q < ps->end && *q == '.') {
		q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			return fail(ps, "bad number");
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < ps->end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= ps->end || *q < '0' || *q > '9')
			return fail(ps, "bad number");
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	char tmp[64];
	size_t n = (size_t)(q - s);
	if (n >= sizeof tmp)
		return fail(ps, "number too long");
	memcpy(tmp, s, n);
	tmp[n] = 0;
	*out = strtod(tmp, NULL);
	if (!isfinite(*out))
		return fail(ps, "number out of range");
	ps->p = q;
	return true;
}

static bool literal(parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "unexpected token");
	ps->p += n;
	return true;
}

static int32_t parse_value(parser *ps, bool top);

static bool parse_container(parser *ps, int32_t self, bool is_obj, bool top)
{
	char close = is_obj ? '}' : ']';
	int32_t last = -1;
	uint32_t count = 0;
	if (++ps->depth > JSON_MAX_DEPTH)
		return fail(ps, "nesting too deep");
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return true;
	}
	for (;;) {
		const char *key = NULL;
		uint32_t klen = 0;
		skip_ws(ps);
		if (is_obj) {
			if (ps->p >= ps->end || *ps->p != '"')
				return fail(ps, "expected member name");
			ps->p++;
			if (!parse_string(ps, &key, &klen))
				return false;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':')
				return fail(ps, "expected ':'");
			ps->p++;
		}
		int32_t v = parse_value(ps, false);
		if (v < 0)
			return false;
		jnode *n = &ps->d->n[v];
		n->key = key;
		n->klen = klen;
		if (top && key && strcmp(key, "id") == 0 && n->type == J_NUM && n->num >= 0 &&
		    n->num <= 4294967295.0 && n->num == (double)(uint32_t)n->num) {
			ps->d->has_early_id = true;
			ps->d->early_id = (uint32_t)n->num;
		}
		if (last < 0)
			ps->d->n[self].child = v;
		else
			ps->d->n[last].next = v;
		last = v;
		count++;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, "unterminated container");
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == close) {
			ps->p++;
			break;
		}
		return fail(ps, "expected ',' or close");
	}
	ps->d->n[self].len = count;
	ps->depth--;
	return true;
}

static int32_t parse_value(parser *ps, bool top)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "unexpected end"), -1;
	char c = *ps->p;
	int32_t i;
	switch (c) {
	case '{':
	case '[':
		ps->p++;
		if ((i = new_node(ps, c == '{' ? J_OBJ : J_ARR)) < 0)
			return -1;
		return parse_container(ps, i, c == '{', top) ? i : -1;
	case '"': {
		ps->p++;
		const char *s;
		uint32_t n;
		if (!parse_string(ps, &s, &n))
			return -1;
		if ((i = new_node(ps, J_STR)) < 0)
			return -1;
		ps->d->n[i].str = s;
		ps->d->n[i].len = n;
		return i;
	}
	case 't':
	case 'f':
		if (!literal(ps, c == 't' ? "true" : "false") || (i = new_node(ps, J_BOOL)) < 0)
			return -1;
		ps->d->n[i].boolean = c == 't';
		return i;
	case 'n':
		if (!literal(ps, "null"))
			return -1;
		return new_node(ps, J_NULL);
	default: {
		double v = 0;
		if (!parse_number(ps, &v) || (i = new_node(ps, J_NUM)) < 0)
			return -1;
		ps->d->n[i].num = v;
		return i;
	}
	}
}

bool json_parse(jdoc *d, char *text, size_t len)
{
	*d = (jdoc){0};
	parser ps = {.d = d, .p = text, .end = text + len};
	skip_ws(&ps);
	if (ps.p >= ps.end || *ps.p != '{')
		return fail(&ps, "frame is not a JSON object");
	if (parse_value(&ps, true) < 0)
		return false;
	skip_ws(&ps);
	if (ps.p != ps.end)
		return fail(&ps, "trailing data after JSON object");
	return true;
}

void json_free(jdoc *d)
{
	free(d->n);
	d->n = NULL;
	d->count = d->cap = 0;
}

const jnode *json_root(const jdoc *d) { return d->count ? &d->n[0] : NULL; }

const jnode *json_first(const jdoc *d, const jnode *parent)
{
	return parent && parent->child >= 0 ? &d->n[parent->child] : NULL;
}

const jnode *json_next(const jdoc *d, const jnode *node) { return node->next >= 0 ? &d->n[node->next] : NULL; }

const jnode *json_get(const jdoc *d, const jnode *obj, const char *key)
{
	if (!obj || obj->type != J_OBJ)
		return NULL;
	size_t kl = strlen(key);
	const jnode *found = NULL;
	for (const jnode *c = json_first(d, obj); c; c = json_next(d, c))
		if (c->klen == kl && memcmp(c->key, key, kl) == 0)
			found = c;
	return found;
}

/* ---- writer ---- */

void jw_init(jw_t *w, buf_t *b) { *w = (jw_t){.b = b}; }

static void before_value(jw_t *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth > 0) {
		if (!w->first[w->depth - 1])
			buf_putc(w->b, ',');
		w->first[w->depth - 1] = false;
	}
}

static void open_container(jw_t *w, char c)
{
	before_value(w);
	buf_putc(w->b, c);
	if (w->depth >= JW_MAX_DEPTH) {
		w->b->failed = true;
		return;
	}
	w->first[w->depth++] = true;
}

static void close_container(jw_t *w, char c)
{
	if (w->depth > 0)
		w->depth--;
	buf_putc(w->b, c);
}

void jw_obj(jw_t *w) { open_container(w, '{'); }
void jw_obj_end(jw_t *w) { close_container(w, '}'); }
void jw_arr(jw_t *w) { open_container(w, '['); }
void jw_arr_end(jw_t *w) { close_container(w, ']'); }


/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid (overlong, surrogate, > U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cp, min;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2; cp = c & 0x1f; min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3; cp = c & 0x0f; min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4; cp = c & 0x07; min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void put_str(jw_t *w, const char *s, size_t n)
{
	buf_t *b = w->b;
	const unsigned char *u = (const unsigned char *)s;
	/* Worst case 6 output bytes per input byte (\u00XX); reserving once keeps the loop branch-light. */
	if (n > BUF_HARD_MAX / 6 || !buf_reserve(b, n * 6 + 2)) {
		b->failed = true;
		return;
	}
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		if (c >= 0x80) {
			size_t l = utf8_seq(u + i, n - i);
			if (l) {
				memcpy(o, u + i, l);
				o += l;
				i += l;
			} else {
				memcpy(o, "\xef\xbf\xbd", 3);
				o += 3;
				i++;
			}
			continue;
		}
		i++;
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c == '\n') {
			*o++ = '\\'; *o++ = 'n';
		} else if (c == '\t') {
			*o++ = '\\'; *o++ = 't';
		} else if (c == '\r') {
			*o++ = '\\'; *o++ = 'r';
		} else if (c < 0x20 || c == 0x7f) {
			static const char hex[] = "0123456789abcdef";
			*o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
}

void jw_str(jw_t *w, const char *s, size_t n)
{
	before_value(w);
	put_str(w, s, n);
}

void jw_cstr(jw_t *w, const char *s) { jw_str(w, s, strlen(s)); }

void jw_key(jw_t *w, const char *key)
{
	before_value(w);
	put_str(w, key, strlen(key));
	buf_putc(w->b, ':');
	w->after_key = true;
}

void jw_int(jw_t *w, int64_t v)
{
	char tmp[24];
	before_value(w);
	int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
	buf_put(w->b, tmp, (size_t)n);
}

void jw_bool(jw_t *w, bool v)
{
	before_value(w);
	buf_puts(w->b, v ? "true" : "false");
}

void jw_null(jw_t *w)
{
	before_value(w);
	buf_puts(w->b, "null");
}

void jw_b64(jw_t *w, const void *data, size_t n)
{
	before_value(w);
	size_t el = b64_encoded_len(n);
	if (!buf_reserve(w->b, el + 2))
		return;
	w->b->p[w->b->len++] = '"';
	b64_encode(data, n, w->b->p + w->b->len);
	w->b->len += el;
	w->b->p[w->b->len++] = '"';
}
