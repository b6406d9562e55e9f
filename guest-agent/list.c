/* lg-agent: list_directory: a directory's entries, to a depth, with type, size and mtime. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"
#include "walk.h"

struct list_ctx {
	jw_t *w;
	uint64_t limit, emitted;
};

static const char *type_of(mode_t m)
{
	return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "symlink" : "other";
}

static int64_t mtime_ms(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static bool list_visit(struct walk *wk, int dirfd, const char *name, size_t pathlen, const struct stat *st)
{
	(void)dirfd;
	(void)name;
	struct list_ctx *c = wk->ctx;
	jw_t *w = c->w;
	if (!walk_entry_open(wk, w, pathlen, c->emitted >= c->limit))
		return false;
	jw_key(w, "type");
	jw_cstr(w, type_of(st->st_mode));
	jw_key(w, "size");
	jw_int(w, st->st_size > 0 ? (int64_t)st->st_size : 0);
	jw_key(w, "mtimeMs");
	jw_int(w, mtime_ms(st));
	jw_obj_end(w);
	c->emitted++;
	return true;
}

void op_list_directory(req_t *r)
{
	const char *path = ".";
	uint64_t depth = 1, limit = 1000;
	if (!arg_cstr(r, "path", false, &path, PATH_MAX - 1) || !arg_uint(r, "depth", false, UINT64_MAX, &depth) ||
	    !arg_uint(r, "limit", false, UINT64_MAX, &limit)) {
		reply_invalid(r);
		return;
	}
	/* Each level holds one fd and one name list; 64 levels is as deep as the host ever asks. */
	if (depth < 1)
		depth = 1;
	if (depth > 64)
		depth = 64;
	struct walk wk = {.max_level = (int)depth, .visit = list_visit};
	int fd = walk_start(r, &wk, path, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return;
	jw_t w;
	buf_t b;
	struct list_ctx c = {.w = &w, .limit = limit};
	wk.ctx = &c;
	reply_begin(&w, &b, r->id);
	jw_obj(&w);
	jw_key(&w, "entries");
	jw_arr(&w);
	walk_dir(&wk, fd, strlen(wk.path), 1);
	close(fd);
	jw_arr_end(&w);
	jw_key(&w, "truncated");
	jw_bool(&w, wk.truncated);
	jw_obj_end(&w);
	reply_end(&w, &b, r->id);
}
