/* lg-agent: the sorted, bounded, symlink-free directory walk under list_directory and search. */
#define _GNU_SOURCE
#include "walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "confine.h"

/* Names held at once across all levels of a walk: bounds memory on huge or hostile trees. */
#define WALK_NAME_BUDGET (8u * 1024 * 1024)

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void walk_dir(struct walk *wk, int dirfd, size_t plen, int level)
{
	int dupfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	DIR *d = dupfd >= 0 ? fdopendir(dupfd) : NULL;
	if (!d) {
		if (dupfd >= 0)
			close(dupfd);
		return;
	}
	char **names = NULL;
	size_t count = 0, cap = 0, bytes = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		size_t nl = strlen(e->d_name) + 1 + sizeof(char *);
		if (wk->name_bytes + nl > WALK_NAME_BUDGET) {
			wk->truncated = true;
			break;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **nn = realloc(names, ncap * sizeof *nn);
			if (!nn) {
				wk->truncated = true;
				break;
			}
			names = nn;
			cap = ncap;
		}
		if (!(names[count] = strdup(e->d_name))) {
			wk->truncated = true;
			break;
		}
		count++;
		wk->name_bytes += nl;
		bytes += nl;
	}
	closedir(d);
	if (count > 0) /* qsort(NULL, 0, ...) is undefined behaviour */
		qsort(names, count, sizeof *names, cmp_names);
	for (size_t i = 0; i < count && !wk->stop; i++) {
		struct stat st;
		size_t nl = strlen(names[i]);
		if (plen + (plen ? 1 : 0) + nl >= PATH_MAX) {
			wk->truncated = true; /* deeper than a path can name */
			continue;
		}
		if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* removed while we walked */
		size_t l = plen;
		if (l)
			wk->path[l++] = '/';
		memcpy(wk->path + l, names[i], nl + 1);
		l += nl;
		if (!wk->visit(wk, dirfd, names[i], l, &st)) {
			wk->stop = true;
			break;
		}
		if (S_ISDIR(st.st_mode) && level < wk->max_level) {
			int cfd = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd >= 0) {
				walk_dir(wk, cfd, l, level + 1);
				close(cfd);
			}
		}
		wk->path[plen] = 0;
	}
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	wk->name_bytes -= bytes;
}

int walk_start(req_t *r, struct walk *wk, const char *path, int flags)
{
	int fd = path_clean(path, wk->path);
	if (fd == 0)
		fd = open_beneath(wk->path, flags);
	if (fd < 0) {
		reply_path_error(r->id, fd, path);
		return -1;
	}
	if (strcmp(wk->path, ".") == 0)
		wk->path[0] = 0;
	return fd;
}

bool walk_entry_open(struct walk *wk, jw_t *w, size_t pathlen, bool full)
{
	if (full || w->b->len > RESULT_SOFT_CAP) {
		wk->truncated = true;
		return false;
	}
	jw_obj(w);
	jw_key(w, "path");
	jw_str(w, wk->path, pathlen);
	return true;
}
