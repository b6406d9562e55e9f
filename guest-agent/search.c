/* lg-agent: search: files by name glob and lines by regular expression, over a walk. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"
#include "walk.h"

#define SEARCH_MAX_FILE (8u * 1024 * 1024)
#define SEARCH_BINARY_PROBE 8192
#define SEARCH_TEXT_MAX 512
/* Bounds on one search's work, since file ops run on the event loop. */
#define SEARCH_MAX_FILES 100000
#define SEARCH_MAX_SCAN_BYTES (512ull * 1024 * 1024)

struct search_ctx {
	jw_t *w;
	const char *glob;
	regex_t re;
	bool has_re;
	uint64_t max_results, max_bytes, results, result_bytes, files_scanned, files_seen, scan_bytes;
	char *data;
	size_t cap;
};

/* Adds one match; false when a bound says stop (and marks the result truncated). */
static bool add_match(struct walk *wk, struct search_ctx *c, size_t pathlen, uint64_t line, const char *text, size_t tl)
{
	jw_t *w = c->w;
	if (!walk_entry_open(wk, w, pathlen, c->results >= c->max_results || c->result_bytes + pathlen + tl > c->max_bytes))
		return false;
	if (text) {
		jw_key(w, "line");
		jw_int(w, (int64_t)line);
		jw_key(w, "text");
		jw_str(w, text, tl);
	}
	jw_obj_end(w);
	c->results++;
	c->result_bytes += pathlen + tl;
	return true;
}

static size_t utf8_cut(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	size_t cut = max;
	/* Back off continuation bytes so a character is never split. */
	for (int i = 0; i < 3 && cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80; i++)
		cut--;
	return cut;
}

static bool search_file(struct walk *wk, struct search_ctx *c, int fd, size_t pathlen, const struct stat *st)
{
	if ((uint64_t)st->st_size > SEARCH_MAX_FILE)
		return true;
	size_t size = (size_t)st->st_size;
	if (size + 1 > c->cap) {
		char *p = realloc(c->data, size + 1);
		if (!p)
			return true;
		c->data = p;
		c->cap = size + 1;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, c->data + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	c->scan_bytes += got;
	if (memchr(c->data, 0, got < SEARCH_BINARY_PROBE ? got : SEARCH_BINARY_PROBE))
		return true;
	c->files_scanned++;
	c->data[got] = 0;
	uint64_t lineno = 0;
	for (char *line = c->data; line < c->data + got;) {
		char *nl = memchr(line, '\n', (size_t)(c->data + got - line));
		char *end = nl ? nl : c->data + got;
		lineno++;
		*end = 0;
		bool hit = regexec(&c->re, line, 0, NULL, 0) == 0;
		if (hit && !add_match(wk, c, pathlen, lineno, line, utf8_cut(line, (size_t)(end - line), SEARCH_TEXT_MAX)))
			return false;
		line = end + 1;
	}
	return true;
}

static bool search_visit(struct walk *wk, int dirfd, const char *name, size_t pathlen, const struct stat *st)
{
	struct search_ctx *c = wk->ctx;
	if (!S_ISREG(st->st_mode))
		return true;
	if (++c->files_seen > SEARCH_MAX_FILES || c->scan_bytes > SEARCH_MAX_SCAN_BYTES) {
		wk->truncated = true;
		return false;
	}
	if (c->glob && fnmatch(c->glob, name, 0) != 0)
		return true;
	if (!c->has_re) {
		c->files_scanned++;
		return add_match(wk, c, pathlen, 0, NULL, 0);
	}
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return true;
	struct stat fst;
	bool go = true;
	if (fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode))
		go = search_file(wk, c, fd, pathlen, &fst);
	close(fd);
	return go;
}

void op_search(req_t *r)
{
	const char *path = ".", *pattern = NULL, *glob = NULL;
	uint64_t max_results = 100, max_bytes = 1048576;
	if (!arg_cstr(r, "path", false, &path, PATH_MAX - 1) || !arg_cstr(r, "pattern", false, &pattern, 8192) ||
	    !arg_cstr(r, "glob", false, &glob, 4096) || !arg_uint(r, "maxResults", false, UINT64_MAX, &max_results) ||
	    !arg_uint(r, "maxBytes", false, UINT64_MAX, &max_bytes)) {
		reply_invalid(r);
		return;
	}
	if (!pattern && !glob) {
		reply_error(r->id, "INVALID_ARGUMENT", 0, "search needs a pattern, a glob or both");
		return;
	}
	struct search_ctx c = {.glob = glob, .max_results = max_results, .max_bytes = max_bytes};
	if (pattern) {
		int rc = regcomp(&c.re, pattern, REG_EXTENDED | REG_NOSUB);
		if (rc != 0) {
			char msg[128];
			regerror(rc, &c.re, msg, sizeof msg);
			reply_error(r->id, "INVALID_ARGUMENT", 0, "bad pattern: %s", msg);
			return;
		}
		c.has_re = true;
	}
	struct walk wk = {.max_level = 256, .visit = search_visit, .ctx = &c};
	int fd = walk_start(r, &wk, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (c.has_re)
			regfree(&c.re);
		return;
	}
	jw_t w;
	buf_t b;
	c.w = &w;
	reply_begin(&w, &b, r->id);
	jw_obj(&w);
	jw_key(&w, "matches");
	jw_arr(&w);
	struct stat st;
	if (fstat(fd, &st) == 0) {
		size_t plen = strlen(wk.path);
		if (S_ISDIR(st.st_mode)) {
			walk_dir(&wk, fd, plen, 1);
		} else if (S_ISREG(st.st_mode)) {
			/* A single file: the glob applies to its own name. */
			const char *base = strrchr(wk.path, '/');
			base = base ? base + 1 : wk.path;
			c.files_seen++;
			if (!glob || fnmatch(glob, base, 0) == 0) {
				if (c.has_re) {
					search_file(&wk, &c, fd, plen, &st);
				} else {
					c.files_scanned++;
					add_match(&wk, &c, plen, 0, NULL, 0);
				}
			}
		}
	}
	close(fd);
	jw_arr_end(&w);
	jw_key(&w, "truncated");
	jw_bool(&w, wk.truncated);
	jw_key(&w, "filesScanned");
	jw_int(&w, (int64_t)c.files_scanned);
	jw_obj_end(&w);
	free(c.data);
	if (c.has_re)
		regfree(&c.re);
	reply_end(&w, &b, r->id);
}
