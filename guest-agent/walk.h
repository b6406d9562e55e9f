/* lg-agent: the sorted, bounded, symlink-free directory walk under list_directory and search. */
#ifndef LG_WALK_H
#define LG_WALK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "proto.h"

/* Results stop growing here so an answer never exceeds FRAME_MAX (one entry is far below 64 KiB). */
#define RESULT_SOFT_CAP (FRAME_MAX - 64 * 1024)

struct walk {
	int max_level;
	bool stop;      /* set by the visitor, or when a bound is hit */
	bool truncated; /* something was left out */
	size_t name_bytes;
	char path[PATH_MAX];
	/* Return false to stop the walk. `st` is lstat-like (symlinks are never followed). */
	bool (*visit)(struct walk *wk, int dirfd, const char *name, size_t pathlen, const struct stat *st);
	void *ctx;
};

/* Opens a walk's starting point beneath the root (answering the request if it cannot) and sets
 * wk->path, the display prefix, to the cleaned path ("" for the root). Returns the fd or -1. */
int walk_start(req_t *r, struct walk *wk, const char *path, int flags);
/* Visits the entries of dirfd in name order, descending into directories (never through symlinks)
 * while level < wk->max_level; wk->path holds the first plen bytes of the display path. */
void walk_dir(struct walk *wk, int dirfd, size_t plen, int level);
/* Starts a result entry (an object holding the current path) in w; when `full`, or when the answer
 * has reached RESULT_SOFT_CAP, marks the walk truncated instead and returns false. */
bool walk_entry_open(struct walk *wk, jw_t *w, size_t pathlen, bool full);

#endif
