/* lg-agent: the file tools (read_file, write_file, list_directory, search). */
#define _GNU_SOURCE
#include "ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine.h"
#include "policy.h"

/* read_file content is base64 inside one frame: 12 MiB encodes to 16 MiB, minus room for JSON. */
#define READ_CAP (12u * 1024 * 1024 - 4096)
/* Results stop growing here so an answer never exceeds FRAME_MAX (one entry is far below 64 KiB). */
#define RESULT_SOFT_CAP (FRAME_MAX - 64 * 1024)

/* ---- read_file ---- */

void op_read_file(req_t *r)
{
	const char *path = NULL;
	uint64_t offset = 0, length = 0, max_bytes = 0;
	bool has_length = json_get(r->doc, r->args, "length") != NULL;
	if (!arg_cstr(r, "path", true, &path, PATH_MAX - 1) ||
	    !arg_uint(r, "offset", false, UINT64_MAX, &offset) ||
	    !arg_uint(r, "length", false, UINT64_MAX, &length) ||
	    !arg_uint(r, "maxBytes", true, UINT64_MAX, &max_bytes)) {
		reply_invalid(r);
		return;
	}
	char rel[PATH_MAX];
	int fd = path_clean(path, rel);
	if (fd == 0)
		fd = open_beneath(rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		reply_path_error(r->id, fd, path);
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		reply_errno(r->id, e, path);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		reply_error(r->id, "IS_A_DIRECTORY", EISDIR, "%.512s: is a directory", path);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		/* FIFOs and devices could block the loop forever or never end. */
		close(fd);
		reply_error(r->id, "IO_ERROR", EINVAL, "%.512s: not a regular file", path);
		return;
	}
	uint64_t size = (uint64_t)st.st_size;
	uint64_t remaining = offset < size ? size - offset : 0;
	uint64_t asked = has_length && length < remaining ? length : remaining;
	if (asked > max_bytes || asked > READ_CAP) {
		close(fd);
		reply_error(r->id, "FILE_TOO_LARGE", EFBIG, "%.512s: %llu bytes requested, the limit is %llu", path,
			    (unsigned long long)asked, (unsigned long long)(max_bytes < READ_CAP ? max_bytes : READ_CAP));
		return;
	}
	uint8_t *data = malloc(asked ? asked : 1);
	if (!data) {
		close(fd);
		reply_errno(r->id, ENOMEM, path);
		return;
	}
	size_t got = 0;
	bool hit_eof = false;
	while (got < asked) {
		ssize_t n = pread(fd, data + got, asked - got, (off_t)(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(data);
			close(fd);
			reply_errno(r->id, e, path);
			return;
		}
		if (n == 0) {
			hit_eof = true;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	jw_t w;
	buf_t b;
	reply_begin(&w, &b, r->id);
	jw_obj(&w);
	jw_key(&w, "content");
	jw_b64(&w, data, got);
	jw_key(&w, "size");
	jw_int(&w, (int64_t)size);
	jw_key(&w, "offset");
	jw_int(&w, (int64_t)offset);
	jw_key(&w, "bytesRead");
	jw_int(&w, (int64_t)got);
	jw_key(&w, "eof");
	jw_bool(&w, hit_eof || offset + got >= size);
	jw_obj_end(&w);
	free(data);
	reply_end(&w, &b, r->id);
}

/* ---- write_file ---- */

/* mkdir -p inside the root: each level is resolved beneath the root before the next is made. */
static int make_parents(const char *dir)
{
	int fd = open_beneath(dir, O_PATH | O_DIRECTORY);
	if (fd >= 0 || fd != -ENOENT) {
		if (fd >= 0)
			close(fd);
		return fd < 0 ? fd : 0;
	}
	char prefix[PATH_MAX];
	size_t len = strlen(dir);
	for (size_t i = 1; i <= len; i++) {
		if (i < len && dir[i] != '/')
			continue;
		memcpy(prefix, dir, i);
		prefix[i] = 0;
		fd = open_beneath(prefix, O_PATH | O_DIRECTORY);
		if (fd >= 0) {
			close(fd);
			continue;
		}
		if (fd != -ENOENT)
			return fd;
		char *slash = strrchr(prefix, '/');
		const char *name = slash ? slash + 1 : prefix;
		int pfd;
		if (slash) {
			*slash = 0;
			pfd = open_beneath(prefix, O_PATH | O_DIRECTORY);
		} else {
			pfd = open_beneath(".", O_PATH | O_DIRECTORY);
		}
		if (pfd < 0)
			return pfd;
		int rc = mkdirat(pfd, name, 0755);
		int err = errno;
		if (rc == 0 && policy_drops_privs()) {
			int dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			rc = dfd < 0 ? -errno : policy_give_to_commands(dfd);
			if (dfd >= 0)
				close(dfd);
			if (rc < 0) {
				close(pfd);
				return rc;
			}
		}
		close(pfd);
		if (rc < 0 && err != EEXIST)
			return -err;
	}
	return 0;
}

static void tmp_name(char out[32])
{
	uint8_t rnd[8];
	random_bytes(rnd, sizeof rnd);
	static const char hex[] = "0123456789abcdef";
	char *o = out + sprintf(out, ".lg-");
	for (size_t i = 0; i < sizeof rnd; i++) {
		*o++ = hex[rnd[i] >> 4];
		*o++ = hex[rnd[i] & 15];
	}
	strcpy(o, ".tmp");
}

void op_write_file(req_t *r)
{
	const char *path = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	bool parents = false;
	if (!arg_cstr(r, "path", true, &path, PATH_MAX - 1) || !arg_b64(r, "content", true, &data, &len) ||
	    !arg_bool(r, "createParents", &parents)) {
		reply_invalid(r);
		return;
	}
	char rel[PATH_MAX], dir[PATH_MAX];
	int rc = path_clean(path, rel);
	if (rc < 0) {
		reply_path_error(r->id, rc, path);
		return;
	}
	/* Refused before anything is created: the same bound commands get as RLIMIT_FSIZE. */
	uint64_t max_file = policy_max_file_bytes();
	if (max_file && len > max_file) {
		reply_error(r->id, "NO_SPACE", EFBIG, "%.512s: %zu bytes exceed the sandbox's file size limit of %llu bytes", path,
			    len, (unsigned long long)max_file);
		return;
	}
	if (strcmp(rel, ".") == 0) {
		reply_error(r->id, "IS_A_DIRECTORY", EISDIR, "%.512s: is the workspace root", path);
		return;
	}
	const char *slash = strrchr(rel, '/');
	const char *name = slash ? slash + 1 : rel;
	if (slash) {
		memcpy(dir, rel, (size_t)(slash - rel));
		dir[slash - rel] = 0;
	} else {
		strcpy(dir, ".");
	}
	if (parents && (rc = make_parents(dir)) < 0) {
		reply_path_error(r->id, rc, path);
		return;
	}
	int dfd = open_beneath(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0) {
		reply_path_error(r->id, dfd, path);
		return;
	}
	struct stat st;
	bool keep_mode = false;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(st.st_mode)) {
			close(dfd);
			reply_error(r->id, "IS_A_DIRECTORY", EISDIR, "%.512s: is a directory", path);
			return;
		}
		keep_mode = S_ISREG(st.st_mode);
	}
	char tmp[32];
	int fd = -1;
	for (int tries = 0; tries < 16 && fd < 0; tries++) {
		tmp_name(tmp);
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		int e = errno;
		close(dfd);
		reply_errno(r->id, e, path);
		return;
	}
	int err = 0;
	size_t done = 0;
	while (done < len && !err) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno != EINTR)
			err = errno;
		else if (n > 0)
			done += (size_t)n;
	}
	/* Only the permission bits carry over. A set-user/group-ID bit would make the file a setuid
	 * program for whoever runs it: root's, on the host of a namespace sandbox (whose user is the
	 * invoking host user) or in the VM (where the agent is root and commands are not); the
	 * namespace sandbox's seccomp filter would also refuse the whole fchmod, losing the mode. The
	 * sticky bit means nothing on a file. */
	if (!err && (rc = policy_give_to_commands(fd)) < 0)
		err = -rc;
	if (!err && keep_mode)
		fchmod(fd, st.st_mode & 0777);
	if (!err && fsync(fd) < 0)
		err = errno;
	/* Network filesystems (9p) may only report a failed write at close. */
	if (close(fd) < 0 && !err && errno != EINTR)
		err = errno;
	if (!err && renameat(dfd, tmp, dfd, name) < 0)
		err = errno;
	if (err) {
		unlinkat(dfd, tmp, 0);
		close(dfd);
		reply_errno(r->id, err, path);
		return;
	}
	/* Makes the rename itself durable; filesystems without directory fsync say EINVAL. */
	if (fsync(dfd) < 0 && errno != EINVAL && errno != EROFS && errno != ENOTSUP)
		err = errno;
	close(dfd);
	if (err) {
		reply_errno(r->id, err, path);
		return;
	}
	jw_t w;
	buf_t b;
	reply_begin(&w, &b, r->id);
	jw_obj(&w);
	jw_key(&w, "path");
	jw_cstr(&w, rel);
	jw_key(&w, "bytesWritten");
	jw_int(&w, (int64_t)len);
	jw_obj_end(&w);
	reply_end(&w, &b, r->id);
}

/* ---- directory walking, shared by list_directory and search ---- */

/* Names held at once across all levels of a walk: bounds memory on huge or hostile trees. */
#define WALK_NAME_BUDGET (8u * 1024 * 1024)

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

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void walk_dir(struct walk *wk, int dirfd, size_t plen, int level)
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

/* Opens a walk's starting point; the display prefix is the cleaned path ("" for the root). */
static int walk_start(req_t *r, struct walk *wk, const char *path, int flags)
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

/* ---- list_directory ---- */

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
	if (c->emitted >= c->limit || c->w->b->len > RESULT_SOFT_CAP) {
		wk->truncated = true;
		return false;
	}
	jw_t *w = c->w;
	jw_obj(w);
	jw_key(w, "path");
	jw_str(w, wk->path, pathlen);
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

/* ---- search ---- */

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
	if (c->results >= c->max_results || c->result_bytes + pathlen + tl > c->max_bytes ||
	    c->w->b->len > RESULT_SOFT_CAP) {
		wk->truncated = true;
		return false;
	}
	jw_t *w = c->w;
	jw_obj(w);
	jw_key(w, "path");
	jw_str(w, wk->path, pathlen);
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
