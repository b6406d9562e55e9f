/* lg-agent: read_file (a bounded range of a regular file) and write_file (atomic replace via rename). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confine.h"
#include "ops.h"
#include "policy.h"

/* read_file content is base64 inside one frame: 12 MiB encodes to 16 MiB, minus room for JSON. */
#define READ_CAP (12u * 1024 * 1024 - 4096)

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
