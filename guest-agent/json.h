/* lg-agent: the JSON subset the protocol needs: an in-place parser and a streaming writer. */
#ifndef LG_JSON_H
#define LG_JSON_H

#include "util.h"

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jnode {
	const char *key; /* member name when the parent is an object (decoded, NUL-terminated) */
	const char *str; /* J_STR: decoded bytes, NUL-terminated, may contain NULs */
	double num;
	uint32_t klen;
	uint32_t len;  /* J_STR: byte length; J_ARR/J_OBJ: number of children */
	int32_t child; /* first child, -1 if none */
	int32_t next;  /* next sibling, -1 if none */
	uint8_t type;
	bool boolean;
} jnode;

typedef struct jdoc {
	jnode *n;
	uint32_t count, cap;
	/* The top-level "id" if it was parsed before an error, so malformed requests can be answered. */
	bool has_early_id;
	uint32_t early_id;
	const char *error;
} jdoc;

/* Parses one top-level object from text[0..len). Strings are decoded in place, so text is modified
 * and must outlive the document. Returns false with d->error set on malformed input. */
bool json_parse(jdoc *d, char *text, size_t len);
void json_free(jdoc *d);
const jnode *json_root(const jdoc *d);
/* Object member lookup; the last duplicate wins, as with JSON.parse. */
const jnode *json_get(const jdoc *d, const jnode *obj, const char *key);
const jnode *json_first(const jdoc *d, const jnode *parent);
const jnode *json_next(const jdoc *d, const jnode *node);

#define JW_MAX_DEPTH 16

typedef struct jw {
	buf_t *b;
	int depth;
	bool after_key;
	bool first[JW_MAX_DEPTH];
} jw_t;

void jw_init(jw_t *w, buf_t *b);
void jw_obj(jw_t *w);
void jw_obj_end(jw_t *w);
void jw_arr(jw_t *w);
void jw_arr_end(jw_t *w);
void jw_key(jw_t *w, const char *key);
/* Emits valid UTF-8 JSON whatever the input bytes: invalid sequences become U+FFFD. */
void jw_str(jw_t *w, const char *s, size_t n);
void jw_cstr(jw_t *w, const char *s);
void jw_int(jw_t *w, int64_t v);
void jw_bool(jw_t *w, bool v);
void jw_null(jw_t *w);
void jw_b64(jw_t *w, const void *data, size_t n);

#endif
