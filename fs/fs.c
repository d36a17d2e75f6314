// SPDX-License-Identifier: MIT
/*
 * fs/fs.c - the FUSE session on the event loop: reading requests, the
 * per-inode node table, commits and shutdown (see fs.h).
 *
 * Requests: /dev/fuse is non-blocking; the loop polls it and reads up to
 * FS_BATCH requests per wake-up into buffers from a small free list, then
 * lets completions run. A handler that must keep its request's bytes (a
 * write whose staging I/O is in flight) takes the buffer (fs->cur_buf).
 *
 * Commits: namespace changes are made durable in batches. A commit takes the
 * pending namespace records first, then syncs the chunk store (which covers
 * every chunk those records name, as their chunks were stored before the
 * records were made), then appends and fdatasyncs the records, all on a
 * worker. fsync waits for a commit that starts after its flush; closed
 * files become durable within commit_interval_ms without any fsync.
 *
 * Shutdown: the unmount itself runs on a worker (it can wait on requests
 * that only this loop answers); when the kernel ends the session, every
 * dirty file is flushed and a last commit runs before the done callback.
 */
#define LOG_SUBSYS "fs"
#include "fs/fs_int.h"
#include "chunkstore/store.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FS_BATCH 64
#define FS_FREE_BUFS 8
#define FS_MAX_WRITE (1024 * 1024)

static void arm_poll(struct fs *fs);
static void session_end(struct fs *fs);

/* ---- nodes ---- */

static size_t node_slot(const struct fs *fs, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ULL) >> 20) & (fs->nodes_cap - 1);
}

struct fs_node *fs_node_find(struct fs *fs, uint64_t ino)
{
	struct fs_node *n;

	for (n = fs->nodes[node_slot(fs, ino)]; n; n = n->hnext)
		if (n->ino == ino)
			return n;
	return NULL;
}

static int nodes_grow(struct fs *fs)
{
	size_t ocap = fs->nodes_cap, cap = ocap * 2;
	struct fs_node **old = fs->nodes, **t = calloc(cap, sizeof(*t));

	if (!t)
		return -ENOMEM;
	fs->nodes = t;
	fs->nodes_cap = cap;
	for (size_t i = 0; i < ocap; i++) {
		struct fs_node *n = old[i], *next;

		for (; n; n = next) {
			size_t s = node_slot(fs, n->ino);

			next = n->hnext;
			n->hnext = t[s];
			t[s] = n;
		}
	}
	free(old);
	return 0;
}

struct fs_node *fs_node_get(struct fs *fs, uint64_t ino)
{
	struct fs_node *n = fs_node_find(fs, ino);
	size_t s;

	if (n)
		return n;
	if (fs->nnodes >= fs->nodes_cap && nodes_grow(fs) < 0)
		return NULL;
	if (!(n = calloc(1, sizeof(*n))))
		return NULL;
	n->fs = fs;
	n->ino = ino;
	n->sfd = -1;
	mf_init(&n->mf);
	fs_ext_init(&n->dirty);
	fs_ext_init(&n->wdirty);
	s = node_slot(fs, ino);
	n->hnext = fs->nodes[s];
	fs->nodes[s] = n;
	fs->nnodes++;
	return n;
}

void fs_node_put(struct fs_node *n)
{
	struct fs *fs = n->fs;
	struct fs_node **pp;

	if (n->opens || n->busy || n->queued || n->is_dirty || n->job ||
	    n->mf_state == FS_MF_LOADING || n->flush_waiters || n->next_waiters || n->mf_waiters)
		return;
	for (pp = &fs->nodes[node_slot(fs, n->ino)]; *pp != n; pp = &(*pp)->hnext)
		;
	*pp = n->hnext;
	fs->nnodes--;
	fs_node_run_free(n);
	if (n->sfd >= 0)
		close(n->sfd);
	mf_done(&n->mf);
	fs_ext_done(&n->dirty);
	fs_ext_done(&n->wdirty);
	free(n);
}

/* ---- attributes ---- */

int fs_getattr_ino(struct fs *fs, uint64_t ino, struct ns_attr *a)
{
	struct fs_node *n;
	int rc;

	if ((rc = ns_getattr(fs->ns, ino, a)) < 0)
		return rc;
	n = fs_node_find(fs, ino);
	if (n && a->type == NS_FILE && (n->is_dirty || n->job)) {
		a->size = n->size;
		a->mtime = n->mtime;
	}
	return 0;
}

void fs_fill_stat(struct fs *fs, uint64_t ino, const struct ns_attr *a, struct stat *st)
{
	static const mode_t fmt[] = {
		[NS_DIR] = S_IFDIR, [NS_FILE] = S_IFREG, [NS_SYMLINK] = S_IFLNK
	};

	(void)fs;
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = (a->type < ARRAY_SIZE(fmt) ? fmt[a->type] : S_IFREG) | (a->mode & 07777);
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blksize = 128 * 1024;
	st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	st->st_mtim.tv_sec = a->mtime / 1000000000;
	st->st_mtim.tv_nsec = a->mtime % 1000000000;
	if (st->st_mtim.tv_nsec < 0) {
		st->st_mtim.tv_sec--;
		st->st_mtim.tv_nsec += 1000000000;
	}
	st->st_atim = st->st_mtim;
	st->st_ctim.tv_sec = a->ctime / 1000000000;
	st->st_ctim.tv_nsec = a->ctime % 1000000000;
	if (st->st_ctim.tv_nsec < 0) {
		st->st_ctim.tv_sec--;
		st->st_ctim.tv_nsec += 1000000000;
	}
}

/* ---- waiters ---- */

struct fs_waiter *fs_waiter_new(fuse_req_t req, int kind, uint64_t ino,
				const struct fuse_file_info *fi)
{
	struct fs_waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->req = req;
	w->kind = kind;
	w->ino = ino;
	if (fi)
		w->fi = *fi;
	return w;
}

void fs_reply_waiter(struct fs *fs, struct fs_waiter *w, int rc)
{
	switch (w->kind) {
	case FS_WAIT_FSYNC:
		if (rc == 0) {
			/* Flushed: now wait for a commit that starts after this point. */
			w->kind = FS_WAIT_COMMIT;
			fs_commit_wait(fs, w);
			return;
		}
		fuse_reply_err(w->req, -rc);
		break;
	case FS_WAIT_FLUSH:
	case FS_WAIT_COMMIT:
	case FS_WAIT_RELEASE:
		fuse_reply_err(w->req, rc < 0 ? -rc : 0);
		break;
	case FS_WAIT_SYNC_CB:
		fs_reply_waiter_sync(fs, w->ctx, rc);
		break;
	default:
		fuse_reply_err(w->req, EIO);
		break;
	}
	free(w);
}

/* ---- commits ---- */

static void arm_commit_timer(struct fs *fs, uint64_t ms)
{
	if (ev_timer_start(fs->loop, &fs->commit_timer, ms) < 0)
		log_error("cannot arm the commit timer (out of memory); changes commit on fsync");
}

struct commit_work {
	struct ev_work w;
	struct fs *fs;
	struct ns_commit *c;
	struct fs_waiter *waiters;
	int rc;
};

static void commit_run(struct ev_work *w)
{
	struct commit_work *cw = container_of(w, struct commit_work, w);

	cw->rc = cs_store_sync(cw->fs->cs);
	if (cw->rc == 0 && cw->c)
		cw->rc = ns_commit_run(cw->c);
}

static void commit_done(struct ev_work *w)
{
	struct commit_work *cw = container_of(w, struct commit_work, w);
	struct fs *fs = cw->fs;
	struct fs_waiter *wt = cw->waiters;

	fs->nwork--;
	if (cw->c)
		ns_commit_end(fs->ns, cw->c, cw->rc);
	if (cw->rc < 0) {
		log_error("commit failed: %s; changes stay pending and will be retried",
			  strerror(-cw->rc));
		fs->ns_dirty = true;
	}
	fs->st.commits++;
	fs->commit_running = false;
	while (wt) {
		struct fs_waiter *next = wt->next;

		fs_reply_waiter(fs, wt, cw->rc);
		wt = next;
	}
	free(cw);
	if (fs->commit_again || fs->commit_next_waiters) {
		fs->commit_again = false;
		fs_commit_kick(fs);
	} else if (fs->ns_dirty && !ev_timer_armed(&fs->commit_timer)) {
		arm_commit_timer(fs, fs->o.commit_interval_ms);
	}
}

void fs_commit_kick(struct fs *fs)
{
	struct commit_work *cw;

	if (fs->commit_running) {
		fs->commit_again = true;
		return;
	}
	if (!(cw = calloc(1, sizeof(*cw)))) {
		log_error("out of memory starting a commit; retrying");
		arm_commit_timer(fs, 100);
		return;
	}
	cw->fs = fs;
	cw->c = ns_commit_begin(fs->ns);
	cw->waiters = fs->commit_next_waiters;
	fs->commit_next_waiters = NULL;
	fs->ns_dirty = false;
	ev_timer_stop(fs->loop, &fs->commit_timer);
	if (!cw->c && !cw->waiters) {
		free(cw);
		return;
	}
	fs->commit_running = true;
	fs->nwork++;
	ev_work_submit(fs->pool, fs->loop, &cw->w, commit_run, commit_done);
}

void fs_commit_wait(struct fs *fs, struct fs_waiter *w)
{
	w->next = fs->commit_next_waiters;
	fs->commit_next_waiters = w;
	fs_commit_kick(fs);
}

static void on_commit_timer(struct ev_timer *t)
{
	struct fs *fs = container_of(t, struct fs, commit_timer);

	if (fs->ns_dirty)
		fs_commit_kick(fs);
}

void fs_mark_ns_dirty(struct fs *fs)
{
	fs->ns_dirty = true;
	if (!ev_timer_armed(&fs->commit_timer) && !fs->commit_running)
		arm_commit_timer(fs, fs->o.commit_interval_ms);
}

/* ---- fs_sync: flush everything, then commit ---- */

struct fs_sync_req {
	struct fs_sync_req *next;
	fs_done_fn *done;
	void *arg;
	bool committing; /* every flush is done; waiting for the commit */
	int flush_rc;
};

/* Called whenever a flush ends: move sync requests whose flushes are all done on to a commit. */
static void sync_req_step(struct fs *fs)
{
	for (struct fs_sync_req *r = fs->sync_reqs; r; r = r->next) {
		struct fs_waiter *w;
		int err = 0;

		if (r->committing || fs_flush_all(fs, &err) > 0)
			continue;
		r->committing = true;
		r->flush_rc = err;
		if (!(w = fs_waiter_new(NULL, FS_WAIT_SYNC_CB, 0, NULL))) {
			r->flush_rc = -ENOMEM;
			fs_reply_waiter_sync(fs, r, 0);
			return; /* the list changed; the next flush or commit steps again */
		}
		w->ctx = r;
		fs_commit_wait(fs, w);
	}
}

void fs_reply_waiter_sync(struct fs *fs, void *ctx, int rc)
{
	struct fs_sync_req **pp, *r = ctx;

	for (pp = &fs->sync_reqs; *pp && *pp != r; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = r->next;
	r->done(r->arg, r->flush_rc < 0 ? r->flush_rc : rc);
	free(r);
}

void fs_sync_flushed(struct fs *fs)
{
	sync_req_step(fs);
}

void fs_sync(struct fs *fs, fs_done_fn *done, void *arg)
{
	struct fs_sync_req *r = calloc(1, sizeof(*r));

	if (!r) {
		done(arg, -ENOMEM);
		return;
	}
	r->done = done;
	r->arg = arg;
	r->next = fs->sync_reqs;
	fs->sync_reqs = r;
	sync_req_step(fs);
}

/* ---- request buffers and the /dev/fuse reader ---- */

struct fs_buf *fs_buf_get(struct fs *fs)
{
	struct fs_buf *b = fs->free_bufs;

	if (b) {
		fs->free_bufs = b->next;
		fs->nfree_bufs--;
		return b;
	}
	if (posix_memalign((void **)&b, 4096, sizeof(*b) + fs->bufsize) != 0)
		return NULL;
	return b;
}

void fs_buf_put(struct fs *fs, struct fs_buf *b)
{
	if (fs->nfree_bufs >= FS_FREE_BUFS) {
		free(b);
		return;
	}
	b->next = fs->free_bufs;
	fs->free_bufs = b;
	fs->nfree_bufs++;
}

static void on_fuse_ready(struct ev_op *op, int32_t res)
{
	struct fs *fs = container_of(op, struct fs, poll_op);

	fs->poll_armed = false;
	if (fs->session_ended)
		return;
	if (res < 0 && res != -ECANCELED && res != -EINTR)
		log_warn("poll on /dev/fuse: %s", strerror(-res));
	for (int i = 0; i < FS_BATCH; i++) {
		struct fs_buf *b = fs_buf_get(fs);
		struct fuse_buf fb;
		ssize_t n;

		if (!b) {
			log_error("out of memory for a request buffer");
			break;
		}
		n = read(fs->fd, b->data, fs->bufsize);
		if (n < 0) {
			int err = errno;

			fs_buf_put(fs, b);
			if (err == EINTR || err == ENOENT) /* ENOENT: the request was interrupted */
				continue;
			if (err == EAGAIN)
				break;
			if (err != ENODEV)
				log_error("reading /dev/fuse: %s; ending the session",
					  strerror(err));
			session_end(fs);
			return;
		}
		memset(&fb, 0, sizeof(fb));
		fb.mem = b->data;
		fb.size = (size_t)n;
		fs->cur_buf = b;
		fuse_session_process_buf(fs->se, &fb);
		if (fs->cur_buf)
			fs_buf_put(fs, fs->cur_buf);
		fs->cur_buf = NULL;
		fs->st.requests++;
		if (fuse_session_exited(fs->se)) {
			session_end(fs);
			return;
		}
	}
	arm_poll(fs);
}

static void arm_poll(struct fs *fs)
{
	if (fs->poll_armed || fs->session_ended)
		return;
	if (ev_poll(fs->loop, &fs->poll_op, fs->fd, POLLIN) < 0) {
		log_error("cannot poll /dev/fuse (ring full); retrying on the next request");
		return;
	}
	fs->poll_armed = true;
}

/* ---- the end of the session and shutdown ---- */

static void finish_shutdown(void *arg, int rc)
{
	struct fs *fs = arg;
	fs_done_fn *cb = fs->shutdown_done ? fs->shutdown_done : fs->ended_cb;
	void *cb_arg = fs->shutdown_done ? fs->shutdown_arg : fs->ended_arg;

	fs->shutdown_done = NULL;
	if (cb)
		cb(cb_arg, rc);
}

static void session_end(struct fs *fs)
{
	if (fs->session_ended)
		return;
	fs->session_ended = true;
	if (fs->poll_armed && ev_cancel(fs->loop, &fs->poll_op) < 0)
		log_debug("cannot cancel the /dev/fuse poll; it ends with the session");
	log_info("session ended for %s", fs->mountpoint);
	if (fs->mounted) {
		fuse_session_unmount(fs->se);
		fs->mounted = false;
	}
	/* Flush what is still dirty (mmap writeback, lazily detached files) and commit. */
	fs_sync(fs, finish_shutdown, fs);
}

static int run_fusermount(const char *mp, bool lazy)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (devnull >= 0)
			dup2(devnull, 2);
		execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", "--", mp, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return -EBUSY;
}

static void umount_run(struct ev_work *w)
{
	struct fs *fs = container_of(w, struct fs, umount_work);

	if (geteuid() == 0)
		fs->umount_rc =
		    umount2(fs->mountpoint, fs->umount_lazy ? MNT_DETACH : 0) < 0 ? -errno : 0;
	else
		fs->umount_rc = run_fusermount(fs->mountpoint, fs->umount_lazy);
}

static void umount_done(struct ev_work *w)
{
	struct fs *fs = container_of(w, struct fs, umount_work);

	fs->nwork--;
	if (fs->umount_rc < 0 && !fs->session_ended) {
		fs_done_fn *cb = fs->shutdown_done;

		log_notice("unmounting %s: %s", fs->mountpoint, strerror(-fs->umount_rc));
		fs->shutting_down = false;
		fs->shutdown_done = NULL;
		if (cb)
			cb(fs->shutdown_arg, fs->umount_rc);
		return;
	}
	fs->mounted = false;
	/* The kernel now ends the session: the next read of /dev/fuse fails with ENODEV. */
	if (!fs->session_ended)
		arm_poll(fs);
}

void fs_shutdown(struct fs *fs, bool lazy, fs_done_fn *done, void *arg)
{
	if (fs->shutting_down) {
		done(arg, -EALREADY);
		return;
	}
	fs->shutting_down = true;
	fs->shutdown_done = done;
	fs->shutdown_arg = arg;
	if (fs->session_ended || !fs->se) {
		fs_sync(fs, finish_shutdown, fs);
		return;
	}
	fs->umount_lazy = lazy;
	fs->nwork++;
	ev_work_submit(fs->pool, fs->loop, &fs->umount_work, umount_run, umount_done);
}

void fs_set_ready_cb(struct fs *fs, fs_done_fn *fn, void *arg)
{
	fs->ready_cb = fn;
	fs->ready_arg = arg;
}

void fs_set_ended_cb(struct fs *fs, fs_done_fn *fn, void *arg)
{
	fs->ended_cb = fn;
	fs->ended_arg = arg;
}

/* ---- set-up ---- */

static void tune_bdi(struct ev_timer *t);

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	conn->max_write = P2P_MIN((unsigned)FS_MAX_WRITE, (unsigned)(fs->bufsize - 4096));
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	conn->want |= conn->capable &
		      (FUSE_CAP_ASYNC_READ | FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
		       FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_CACHE_SYMLINKS |
		       FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ASYNC_DIO);
	if (fs->o.writeback_cache)
		conn->want |= conn->capable & FUSE_CAP_WRITEBACK_CACHE;
	/* We invalidate explicitly when content changes; splice measured no faster. */
	conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE);
	/* The kernel applies its read-ahead limit when INIT is answered, which
	 * happens when this returns: tune it on the next loop iteration. */
	if (ev_timer_start(fs->loop, &fs->tune_timer, 0) < 0)
		log_debug("cannot schedule read-ahead tuning");
	if (fs->ready_cb)
		fs->ready_cb(fs->ready_arg, 0);
}

static void op_destroy(void *userdata)
{
	(void)userdata;
}

/*
 * The device number of the mount at @path, from /proc/self/mountinfo. Never
 * stat() the mount point here: until the loop answers INIT that would block.
 */
static int mount_dev(const char *path, unsigned *ret_major, unsigned *ret_minor)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192];
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char mp[4096];
		unsigned maj, min;

		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &maj, &min, mp) != 3)
			continue;
		/* Mount points with spaces are octal-escaped; ours are compared as written. */
		if (!strcmp(mp, path)) {
			*ret_major = maj;
			*ret_minor = min; /* the last match is the visible mount */
			rc = 0;
		}
	}
	fclose(f);
	return rc;
}

/* Raise the kernel's read-ahead for this mount (root only; best effort). */
static void tune_bdi(struct ev_timer *t)
{
	struct fs *fs = container_of(t, struct fs, tune_timer);
	char path[128], val[32];
	unsigned maj, min;
	int fd;

	if (!fs->o.read_ahead_kb || geteuid() != 0 || mount_dev(fs->mountpoint, &maj, &min) < 0)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return;
	snprintf(val, sizeof(val), "%u", fs->o.read_ahead_kb);
	if (write(fd, val, strlen(val)) < 0)
		log_debug("cannot set %s: %s", path, strerror(errno));
	close(fd);
}

int fs_new(struct ev_loop *loop, struct ev_pool *pool, struct cs_store *cs, struct ns *ns,
	   const struct fs_opts *o, struct fs **ret_fs)
{
	struct fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	fs->loop = loop;
	fs->pool = pool;
	fs->cs = cs;
	fs->ns = ns;
	fs->o = *o;
	fs->fd = -1;
	fs->inval_tail = &fs->inval;
	fs->wq_tail = &fs->wq;
	fs_rechunk_cache_init(&fs->window);
	if (!fs->o.attr_timeout)
		fs->o.attr_timeout = 10.0;
	if (!fs->o.entry_timeout)
		fs->o.entry_timeout = 10.0;
	if (!fs->o.commit_interval_ms)
		fs->o.commit_interval_ms = 1000;
	if (!fs->o.cdc.avg_size)
		fs->o.cdc = cs_cdc_default;
	fs->mountpoint = strdup(o->mountpoint);
	fs->staging_dir = strdup(o->staging_dir);
	fs->state_dir = strdup(o->state_dir ? o->state_dir : "");
	fs->nodes_cap = 64;
	fs->nodes = calloc(fs->nodes_cap, sizeof(*fs->nodes));
	/* libfuse sizes requests as 256 pages plus a header page; match it. */
	fs->bufsize = 256 * (size_t)getpagesize() + 4096;
	if (!fs->mountpoint || !fs->staging_dir || !fs->state_dir || !fs->nodes) {
		fs_free(fs);
		return -ENOMEM;
	}
	/* Without the reply thread reads are answered on the loop: slower, not wrong. */
	if (ev_pool_new(1, &fs->reply_pool) < 0)
		log_warn("cannot start the read reply thread; answering reads on the loop");
	ev_op_init(&fs->poll_op, on_fuse_ready);
	ev_timer_init(&fs->commit_timer, on_commit_timer);
	ev_timer_init(&fs->tune_timer, tune_bdi);
	ev_timer_init(&fs->trim_timer, fs_trim_fire);
	*ret_fs = fs;
	return 0;
}

int fs_mount(struct fs *fs)
{
	struct fuse_lowlevel_ops ops;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	char opts[256];
	int rc = -EIO;

	memset(&ops, 0, sizeof(ops));
	fs_ops_init(&ops);
	ops.init = op_init;
	ops.destroy = op_destroy;
	snprintf(opts, sizeof(opts), "default_permissions,fsname=p2pfs,subtype=p2pfs%s",
		 fs->o.allow_other ? ",allow_other" : "");
	if (fuse_opt_add_arg(&args, "p2pfs") < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, opts) < 0 || (fs->o.debug && fuse_opt_add_arg(&args, "-d") < 0))
		goto out;
	fs->se = fuse_session_new(&args, &ops, sizeof(ops), fs);
	if (!fs->se) {
		log_error("cannot create the FUSE session");
		goto out;
	}
	if (fuse_session_mount(fs->se, fs->mountpoint) != 0) {
		log_error("cannot mount %s (see the lines above)", fs->mountpoint);
		fuse_session_destroy(fs->se);
		fs->se = NULL;
		goto out;
	}
	fs->mounted = true;
	fs->fd = fuse_session_fd(fs->se);
	if (fcntl(fs->fd, F_SETFL, fcntl(fs->fd, F_GETFL) | O_NONBLOCK) < 0) {
		rc = -errno;
		goto out;
	}
	arm_poll(fs);
	rc = 0;
out:
	fuse_opt_free_args(&args);
	return rc;
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	/* Replies still queued are sent (or fail on the ended session) first. */
	ev_pool_free(fs->reply_pool);
	fs_write_queue_drop(fs);
	if (ev_timer_armed(&fs->trim_timer))
		ev_timer_stop(fs->loop, &fs->trim_timer);
	fs_remote_done(fs);
	if (fs->se) {
		if (fs->mounted)
			fuse_session_unmount(fs->se);
		fuse_session_destroy(fs->se);
	}
	for (size_t i = 0; fs->nodes && i < fs->nodes_cap; i++) {
		struct fs_node *n = fs->nodes[i], *next;

		for (; n; n = next) {
			next = n->hnext;
			fs_node_run_free(n);
			if (n->sfd >= 0)
				close(n->sfd);
			mf_done(&n->mf);
			fs_ext_done(&n->dirty);
			fs_ext_done(&n->wdirty);
			free(n);
		}
	}
	while (fs->free_bufs) {
		struct fs_buf *b = fs->free_bufs;

		fs->free_bufs = b->next;
		free(b);
	}
	fs_rechunk_cache_done(&fs->window);
	free(fs->nodes);
	free(fs->mountpoint);
	free(fs->staging_dir);
	free(fs->state_dir);
	free(fs);
}

void fs_get_stats(struct fs *fs, struct fs_stats *st)
{
	uint64_t open = 0, dirty = 0;

	for (size_t i = 0; i < fs->nodes_cap; i++)
		for (struct fs_node *n = fs->nodes[i]; n; n = n->hnext) {
			open += n->opens;
			dirty += n->is_dirty;
		}
	*st = fs->st;
	st->open_files = open;
	st->dirty_files = dirty;
	st->staged_mem_bytes = fs->run_bytes;
	st->unchunked_bytes = fs->backlog;
}

bool fs_busy(const struct fs *fs)
{
	return fs && fs->nwork > 0;
}
