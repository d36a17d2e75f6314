// SPDX-License-Identifier: MIT
/*
 * tools/bench/fuse_ceiling.c - the smallest FUSE filesystem that can serve
 * the benchmark's workloads, to measure what the kernel's FUSE path itself
 * allows on this machine. p2pfs is judged as a fraction of it.
 *
 * It negotiates the same settings as p2pfs (1 MiB requests, write-back cache
 * unless --no-writeback-cache, the same read-ahead), keeps no data: reads of
 * the file "data" return a fixed pattern at memory speed, writes are counted
 * and dropped (the "write sink"), and other files hold only their size.
 * It runs libfuse's multi-threaded loop, so the kernel, not this program, is
 * the limit.
 *
 * Usage: fuse_ceiling MOUNTPOINT --size BYTES [--no-writeback-cache]
 *                     [--read-ahead-kb N] [--foreground]
 */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES (1U << 20)
#define DATA_INO 2

struct file {
	char *name;
	uint64_t size;
	mode_t mode;
};

static struct file *files; /* index = ino - 2 */
static unsigned nfiles;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t pattern[1 << 20];
static int writeback = 1;
static const char *mountpoint;
static unsigned read_ahead_kb = 4096;

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return;
	}
	pthread_mutex_lock(&lock);
	st->st_mode = S_IFREG | files[ino - 2].mode;
	st->st_size = (off_t)files[ino - 2].size;
	pthread_mutex_unlock(&lock);
	st->st_nlink = 1;
	st->st_blksize = 128 * 1024;
}

static long find(const char *name)
{
	for (unsigned i = 0; i < nfiles; i++)
		if (!strcmp(files[i].name, name))
			return (long)i + 2;
	return -1;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.attr_timeout = 10;
	e.entry_timeout = 10;
	fill_attr(ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void *tune_bdi(void *unused);

static void op_init(void *ud, struct fuse_conn_info *conn)
{
	(void)ud;
	conn->max_write = 1024 * 1024;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->want |= conn->capable & (FUSE_CAP_ASYNC_READ | FUSE_CAP_ATOMIC_O_TRUNC);
	if (writeback)
		conn->want |= conn->capable & FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE);
	{
		pthread_t th;

		if (pthread_create(&th, NULL, tune_bdi, NULL) == 0)
			pthread_detach(th);
	}
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	long ino;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	pthread_mutex_lock(&lock);
	ino = find(name);
	pthread_mutex_unlock(&lock);
	if (ino < 0)
		fuse_reply_err(req, ENOENT);
	else
		reply_entry(req, (fuse_ino_t)ino);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, 10);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && (to_set & FUSE_SET_ATTR_SIZE)) {
		pthread_mutex_lock(&lock);
		files[ino - 2].size = (uint64_t)attr->st_size;
		pthread_mutex_unlock(&lock);
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, 10);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	long ino;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	pthread_mutex_lock(&lock);
	ino = find(name);
	if (ino < 0 && nfiles < MAX_FILES) {
		files[nfiles].name = strdup(name);
		files[nfiles].mode = mode & 07777;
		files[nfiles].size = 0;
		ino = (long)nfiles++ + 2;
	}
	pthread_mutex_unlock(&lock);
	if (ino < 0) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = (fuse_ino_t)ino;
	e.attr_timeout = 10;
	e.entry_timeout = 10;
	fill_attr((fuse_ino_t)ino, &e.attr);
	fi->keep_cache = 1;
	fuse_reply_create(req, &e, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if ((fi->flags & O_TRUNC) && ino != FUSE_ROOT_ID) {
		pthread_mutex_lock(&lock);
		files[ino - 2].size = 0;
		pthread_mutex_unlock(&lock);
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	uint64_t fsize;
	size_t n;

	(void)fi;
	pthread_mutex_lock(&lock);
	fsize = files[ino - 2].size;
	pthread_mutex_unlock(&lock);
	if ((uint64_t)off >= fsize) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	n = size;
	if ((uint64_t)off + n > fsize)
		n = (size_t)(fsize - (uint64_t)off);
	if (n > sizeof(pattern))
		n = sizeof(pattern);
	fuse_reply_buf(req, (const char *)pattern, n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)buf;
	(void)fi;
	pthread_mutex_lock(&lock);
	if ((uint64_t)off + size > files[ino - 2].size)
		files[ino - 2].size = (uint64_t)off + size;
	pthread_mutex_unlock(&lock);
	fuse_reply_write(req, size);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	char *buf = malloc(size);
	size_t pos = 0;

	(void)ino;
	(void)fi;
	pthread_mutex_lock(&lock);
	for (unsigned i = (unsigned)off; i < nfiles; i++) {
		struct stat st = { .st_ino = i + 2, .st_mode = S_IFREG };
		size_t n =
		    fuse_add_direntry(req, buf + pos, size - pos, files[i].name, &st, (off_t)i + 1);

		if (n > size - pos)
			break;
		pos += n;
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int ds, struct fuse_file_info *fi)
{
	(void)ino;
	(void)ds;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* Never stat() the mount point before the loop runs: INIT is not answered yet.
 * And the kernel applies its read-ahead limit when INIT is answered, so this
 * runs on a thread started from init, a moment later. */
static void *tune_bdi(void *unused)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], path[128];
	unsigned maj = 0, min = 0;
	int found = 0;

	(void)unused;
	usleep(100000);
	if (!read_ahead_kb || !f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		char mp[4096];
		unsigned a, b;

		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &a, &b, mp) == 3 &&
		    !strcmp(mp, mountpoint)) {
			maj = a;
			min = b;
			found = 1;
		}
	}
	fclose(f);
	if (!found)
		return NULL;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	if ((f = fopen(path, "w"))) {
		fprintf(f, "%u", read_ahead_kb);
		fclose(f);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "no-writeback-cache", no_argument, NULL, 'W' },
		{ "read-ahead-kb", required_argument, NULL, 'r' },
		{ "foreground", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct fuse_lowlevel_ops ops = {
		.init = op_init,
		.lookup = op_lookup,
		.getattr = op_getattr,
		.setattr = op_setattr,
		.create = op_create,
		.open = op_open,
		.read = op_read,
		.write = op_write,
		.readdir = op_readdir,
		.flush = op_flush,
		.release = op_release,
		.fsync = op_fsync,
	};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lc;
	struct fuse_session *se;
	uint64_t size = 0;
	int c, foreground = 0, rc;

	while ((c = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			size = strtoull(optarg, NULL, 0);
			break;
		case 'W':
			writeback = 0;
			break;
		case 'r':
			read_ahead_kb = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'f':
			foreground = 1;
			break;
		default:
			fprintf(stderr,
				"usage: fuse_ceiling MOUNTPOINT --size BYTES "
				"[--no-writeback-cache] [--read-ahead-kb N] [--foreground]\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "fuse_ceiling: one MOUNTPOINT expected\n");
		return 2;
	}
	mountpoint = realpath(argv[optind], NULL);
	if (!mountpoint) {
		perror(argv[optind]);
		return 1;
	}
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 131 + (i >> 12));
	files = calloc(MAX_FILES, sizeof(*files));
	files[0].name = strdup("data");
	files[0].size = size;
	files[0].mode = 0644;
	nfiles = 1;
	fuse_opt_add_arg(&args, "fuse_ceiling");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, "fsname=ceiling,subtype=ceiling,default_permissions");
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se || fuse_session_mount(se, mountpoint) != 0)
		return 1;
	if (fuse_daemonize(foreground) != 0)
		return 1;
	lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, 0);
	fuse_loop_cfg_set_max_threads(lc, 8);
	rc = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	fuse_session_unmount(se);
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	return rc ? 1 : 0;
}
