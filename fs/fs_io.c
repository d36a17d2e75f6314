// SPDX-License-Identifier: MIT
/*
 * fs/fs_io.c - FUSE file I/O: open, read, write, flush, fsync, release,
 * truncate, fallocate; loading manifests; flush jobs.
 *
 * Reads: a request is cut into pieces - chunk ranges (read through cs_read,
 * verified, often from its memory cache), staging ranges (dirty bytes, read
 * with io_uring) and zeros - and answered with one fuse_reply_iov once every
 * piece is in, so no bytes are copied in user space.
 *
 * Writes: the request buffer is handed to an io_uring write into the inode's
 * staging file (a memfd) and the request is answered when the write
 * completes. Large writes that follow each other (a file being written from
 * start to end: cp, dd, tar, downloads) skip that copy: the request buffer
 * itself is kept in the node's staged run (fs_seg.h) and the request is
 * answered at once; the re-chunker reads the run from memory. That copy was
 * a fifth of the CPU of a long write here. Anything else that touches the
 * run's range (an overwrite, a punch) first writes the run out to the
 * staging file (run_spill), so the run only ever holds the newest bytes of
 * its range. Either way the written range joins the inode's dirty set.
 *
 * Flush (close) and fsync: a worker re-chunks the dirty ranges (fs_rechunk.c)
 * and stores the new chunks and manifest; back on the loop the new version
 * becomes the inode's content in the namespace. Writes that arrive during a
 * flush stay dirty for the next one.
 *
 * Invariants:
 *  1. n->dirty holds every range whose newest bytes are only in staging (the
 *     run where it lies, else the staging file); reads take those ranges
 *     from staging, the rest from n->mf. Every byte of the run is dirty.
 *  2. n->mf does not change while a flush job runs (the job reads it).
 *  3. n->size is the file's current size whenever the node exists.
 *  4. A buffer a running flush job may read (its snapshot of the run) is
 *     not freed or reused until that job is done (n->run_dead).
 */
#define LOG_SUBSYS "fs"
#include "fs/fs_int.h"
#include "common/bigbuf.h"
#include "common/tm.h"
#include "fs/fs_rechunk.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Dirty bytes after which a file being written is flushed in the background.
 * Each flush re-reads only the last chunk of the previous one, so the cost is
 * about max_size / FS_BG_FLUSH_BYTES (~6 %) extra hashing.
 */
#define FS_BG_FLUSH_BYTES (64ULL << 20)

/* Writes at least this large may join a staged run (a request buffer holds
 * up to 1 MiB: smaller writes would pin mostly empty buffers). */
#define FS_RUN_MIN_WRITE (256 * 1024)
/*
 * Bytes written and not yet taken by a flush, across files, past which a
 * write waits until a running flush ends. Writes are answered as soon as
 * they are staged, so without this a writer faster than chunking (a 100 GB
 * copy) would stage without bound, in memory. Writes wait only while a
 * flush runs: a count that drifted could never make them wait for nothing.
 */
#define FS_BACKLOG_MAX (512ULL << 20)
/* Bytes all staged runs may hold; past it writes go to the staging file.
 * Above the backlog limit: in practice the backlog bounds the runs. */
#define FS_RUN_MAX_BYTES (FS_BACKLOG_MAX + (256ULL << 20))

static struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- node set-up ---- */

/* Make sure n->size and n->content reflect the namespace (for a node just created). */
static int node_sync_attr(struct fs_node *n)
{
	struct ns_attr a;
	int rc;

	if (n->is_dirty || n->job || n->mf_state != FS_MF_NONE)
		return 0;
	if ((rc = ns_getattr(n->fs->ns, n->ino, &a)) < 0)
		return rc;
	n->size = a.size;
	n->mtime = a.mtime;
	return 0;
}

static int ensure_staging(struct fs_node *n)
{
	struct fs *fs = n->fs;

	if (n->sfd >= 0)
		return 0;
	/* Staged bytes live in memory: they are chunked into the store within
	 * FS_BG_FLUSH_BYTES and then punched out, so writing them to a disk
	 * file first would only cost CPU and disk bandwidth for nothing. */
	if ((n->sfd = memfd_create("p2pfs-staging", MFD_CLOEXEC)) >= 0)
		return 0;
	n->sfd = open(fs->staging_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (n->sfd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/stage-XXXXXX", fs->staging_dir);
		n->sfd = mkostemp(path, O_CLOEXEC);
		if (n->sfd >= 0)
			unlink(path);
	}
	if (n->sfd < 0) {
		int err = errno;

		log_error("cannot create a staging file in %s: %s", fs->staging_dir, strerror(err));
		return -err;
	}
	return 0;
}

/* ---- the staged run ---- */

static void run_forget(struct fs_node *n, size_t from)
{
	struct fs *fs = n->fs;

	for (size_t i = from; i < n->nrun; i++) {
		struct fs_buf *b = n->run[i].buf;

		fs->run_bytes -= fs->bufsize;
		if (n->job) { /* invariant 4 */
			b->next = n->run_dead;
			n->run_dead = b;
		} else {
			fs_buf_put(fs, b);
		}
	}
	n->nrun = P2P_MIN(n->nrun, from);
}

/* The buffers a flush job kept alive (invariant 4): it has ended. */
static void run_dead_free(struct fs_node *n)
{
	while (n->run_dead) {
		struct fs_buf *b = n->run_dead;

		n->run_dead = b->next;
		fs_buf_put(n->fs, b);
	}
}

void fs_node_run_free(struct fs_node *n)
{
	run_forget(n, 0);
	run_dead_free(n);
	free(n->run);
	n->run = NULL;
	n->run_cap = 0;
}

/* Write the run out to the staging file and drop it: something is about to
 * change bytes in its range through the file. */
static int run_spill(struct fs_node *n)
{
	for (size_t i = 0; i < n->nrun; i++) {
		const struct fs_seg *g = &n->run[i];
		size_t done = 0;

		while (done < g->len) {
			ssize_t k =
			    pwrite(n->sfd, g->data + done, g->len - done, (off_t)(g->off + done));

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				int err = k < 0 ? errno : ENOSPC;

				log_error(
				    "writing staged bytes of inode %llu to its staging file: %s",
				    (unsigned long long)n->ino, strerror(err));
				return -err;
			}
			done += (size_t)k;
		}
	}
	run_forget(n, 0);
	return 0;
}

/* Spill the run if [start, end) touches its range. */
static int run_spill_over(struct fs_node *n, uint64_t start, uint64_t end)
{
	if (!n->nrun || end <= fs_run_start(n->run, n->nrun) ||
	    start >= fs_run_end(n->run, n->nrun))
		return 0;
	return run_spill(n);
}

/* The file shrinks to @size: the run keeps only what lies below it. */
static void run_trim(struct fs_node *n, uint64_t size)
{
	size_t i = 0;

	while (i < n->nrun && n->run[i].off < size)
		i++;
	run_forget(n, i);
	if (n->nrun && fs_run_end(n->run, n->nrun) > size) {
		struct fs_seg *g = &n->run[n->nrun - 1];

		g->len = (size_t)(size - g->off);
	}
}

/* After a flush: the run's first segments are in the store now, drop them. */
static void run_drop_clean(struct fs_node *n)
{
	size_t k = 0;

	for (; k < n->nrun; k++) {
		const struct fs_seg *g = &n->run[k];
		size_t di = fs_ext_first_after(&n->dirty, g->off);

		if (di < n->dirty.n && n->dirty.r[di].start < g->off + g->len)
			break; /* still dirty: it and what follows stay */
	}
	if (!k)
		return;
	for (size_t i = 0; i < k; i++) {
		n->fs->run_bytes -= n->fs->bufsize;
		fs_buf_put(n->fs, n->run[i].buf);
	}
	memmove(n->run, n->run + k, (n->nrun - k) * sizeof(*n->run));
	n->nrun -= k;
}

/* Keep a write of @size bytes at @off in the run, taking @buf. 0 if kept;
 * < 0 if it must go to the staging file instead. */
static int run_take(struct fs_node *n, struct fs_buf *buf, const char *data, size_t size,
		    uint64_t off)
{
	struct fs *fs = n->fs;

	if (!buf || !size || fs->run_bytes + fs->bufsize > FS_RUN_MAX_BYTES)
		return -E2BIG;
	if (n->nrun && off != fs_run_end(n->run, n->nrun))
		return -E2BIG; /* not the next bytes of the run */
	/* A short write starts no run, but may follow a long one: the kernel's
	 * writeback cuts a long sequential write into 1 MiB requests with a
	 * short one every few dozen, and turning that one away would send every
	 * later request of the file to the staging file. */
	if (size < FS_RUN_MIN_WRITE && (!n->nrun || n->run[n->nrun - 1].len < FS_RUN_MIN_WRITE))
		return -E2BIG;
	if (n->nrun == n->run_cap) {
		size_t cap = n->run_cap ? 2 * n->run_cap : 64;
		struct fs_seg *v = realloc(n->run, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		n->run = v;
		n->run_cap = cap;
	}
	n->run[n->nrun++] =
	    (struct fs_seg){ .off = off, .len = size, .data = (const uint8_t *)data, .buf = buf };
	fs->run_bytes += fs->bufsize; /* the whole buffer stays allocated */
	return 0;
}

/* Free the staged copies of @flushed bytes that are not in @keep (now in the store). */
static void staging_punch(int fd, const struct fs_ext *flushed, const struct fs_ext *keep)
{
	size_t k = 0;

	for (size_t i = 0; i < flushed->n; i++) {
		uint64_t pos = flushed->r[i].start, end = flushed->r[i].end;

		while (pos < end) {
			uint64_t stop = end;

			while (k < keep->n && keep->r[k].end <= pos)
				k++;
			if (k < keep->n && keep->r[k].start <= pos) {
				pos = P2P_MIN(end, keep->r[k].end);
				continue;
			}
			if (k < keep->n && keep->r[k].start < stop)
				stop = keep->r[k].start;
			(void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)pos,
					(off_t)(stop - pos));
			pos = stop;
		}
	}
}

/* ---- manifests ---- */

static void mf_loaded(struct fs_node *n, int rc);
static void mf_load_step(struct fs_node *n);

static void on_mf_block(void *arg, int rc, struct cs_buf *b)
{
	struct fs_node *n = arg;

	n->busy--;
	if (rc == 0)
		rc = mf_loader_feed(n->loader, cs_buf_data(b), cs_buf_len(b));
	if (rc < 0) {
		mf_loaded(n, rc);
		return;
	}
	mf_load_step(n);
}

static void mf_load_step(struct fs_node *n)
{
	uint8_t id[CS_ID_LEN];
	int rc;

	while ((rc = mf_loader_next(n->loader, id)) == 1) {
		struct cs_buf *b = NULL;

		rc = fs_chunk_read(n->fs, id, &n->content, true, on_mf_block, n, &b);
		if (rc == 0) {
			n->busy++;
			return;
		}
		if (rc < 0)
			break;
		rc = mf_loader_feed(n->loader, cs_buf_data(b), cs_buf_len(b));
		cs_buf_unref(b);
		if (rc < 0)
			break;
	}
	mf_loaded(n, rc);
}

static void mf_loaded(struct fs_node *n, int rc)
{
	struct fs *fs = n->fs;
	struct fs_waiter *w = n->mf_waiters;

	if (n->loader) {
		if (rc == 0) {
			mf_done(&n->mf);
			mf_loader_take(n->loader, &n->mf);
		}
		mf_loader_done(n->loader);
		free(n->loader);
		n->loader = NULL;
	}
	if (rc == 0 && n->mf.size != n->content_size) {
		char hex[9];

		p2p_hex8(hex, n->content.id);
		log_error("manifest %s of inode %llu covers %llu bytes, the entry says %llu", hex,
			  (unsigned long long)n->ino, (unsigned long long)n->mf.size,
			  (unsigned long long)n->content_size);
		rc = -EIO;
	}
	if (rc < 0) {
		char hex[9];

		p2p_hex8(hex, n->content.id);
		if (log_rl_allow(&fs->rl_eio, 10, 10000))
			log_error("cannot load the chunk list %s of inode %llu: %s", hex,
				  (unsigned long long)n->ino,
				  rc == -ENOENT ? "a manifest block is not stored here"
						: strerror(-rc));
		n->mf_state = FS_MF_NONE;
		n->mf_err = rc;
		rc = -EIO;
	} else {
		n->mf_state = FS_MF_READY;
	}
	n->mf_waiters = NULL;
	while (w) {
		struct fs_waiter *next = w->next;

		if (w->kind == FS_WAIT_OPEN) {
			if (rc < 0) {
				n->opens--;
				fuse_reply_err(w->req, -rc);
			} else {
				fuse_reply_open(w->req, &w->fi);
			}
			free(w);
		} else {
			/* A flush that needed the manifest first. */
			if (rc < 0)
				fs_reply_waiter(fs, w, rc);
			else
				fs_flush_node(n, w);
		}
		w = next;
	}
	if (n->flush_after_load) {
		n->flush_after_load = false;
		if (rc == 0)
			fs_flush_node(n, NULL);
	}
	fs_node_put(n);
}

/* Start loading n's content for the namespace's current version; @w waits for it. */
static void node_load(struct fs_node *n, struct fs_waiter *w)
{
	struct ns_content c;
	struct ns_attr a;
	int rc;

	if (w) {
		w->next = n->mf_waiters;
		n->mf_waiters = w;
	}
	if (n->mf_state == FS_MF_LOADING)
		return;
	if ((rc = ns_get_content(n->fs->ns, n->ino, &c)) < 0 ||
	    (rc = ns_getattr(n->fs->ns, n->ino, &a)) < 0) {
		mf_loaded(n, rc);
		return;
	}
	n->content = c;
	n->content_size = a.size;
	if (!n->is_dirty && !n->job) {
		n->size = a.size;
		n->mtime = a.mtime;
	}
	mf_done(&n->mf);
	switch (c.kind) {
	case NS_CONTENT_NONE:
		mf_loaded(n, a.size ? -EIO : 0);
		return;
	case NS_CONTENT_CHUNK:
		rc = a.size && a.size <= CS_CHUNK_MAX_LIMIT
			 ? mf_append(&n->mf, c.id, (uint32_t)a.size)
			 : -EIO;
		mf_loaded(n, rc);
		return;
	case NS_CONTENT_MANIFEST:
		if (!(n->loader = malloc(sizeof(*n->loader)))) {
			mf_loaded(n, -ENOMEM);
			return;
		}
		mf_loader_init(n->loader, c.id);
		n->mf_state = FS_MF_LOADING;
		mf_load_step(n);
		return;
	default:
		mf_loaded(n, -EIO);
	}
}

/* ---- open, create, release ---- */

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_node *n;
	struct fs_waiter *w;
	struct ns_attr a;
	int rc;

	if ((rc = ns_getattr(fs->ns, ino, &a)) < 0)
		goto err;
	if (a.type != NS_FILE) {
		rc = a.type == NS_DIR ? -EISDIR : -EINVAL;
		goto err;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY && ns_read_only(fs->ns)) {
		rc = -EROFS;
		goto err;
	}
	if (!(n = fs_node_get(fs, ino))) {
		rc = -ENOMEM;
		goto err;
	}
	if ((rc = node_sync_attr(n)) < 0) {
		fs_node_put(n);
		goto err;
	}
	n->opens++;
	fi->fh = 0;
	/* Local writes go through the page cache, so it stays valid across opens;
	 * changes from elsewhere invalidate it explicitly. */
	fi->keep_cache = 1;
	if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY && n->size) {
		if ((rc = fs_truncate(fs, ino, 0)) < 0) {
			n->opens--;
			fs_node_put(n);
			goto err;
		}
	}
	if (n->stale && n->opens == 1 && !n->busy && !n->is_dirty && !n->job &&
	    n->mf_state == FS_MF_READY) {
		/* A newer version arrived while the file was open: this is the
		 * first open since, so it reads the new one. */
		mf_done(&n->mf);
		n->mf_state = FS_MF_NONE;
		n->stale = false;
		fi->keep_cache = 0;
	}
	if (n->mf_state == FS_MF_READY) {
		fuse_reply_open(req, fi);
		return;
	}
	if (!(w = fs_waiter_new(req, FS_WAIT_OPEN, ino, fi))) {
		n->opens--;
		fs_node_put(n);
		rc = -ENOMEM;
		goto err;
	}
	node_load(n, w);
	return;
err:
	fuse_reply_err(req, -rc);
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fuse_entry_param e;
	struct fs_node *n;
	struct ns_attr pa, a;
	uint32_t gid = ctx->gid;
	uint64_t ino;
	int rc;

	if (ns_getattr(fs->ns, parent, &pa) == 0 && (pa.mode & S_ISGID))
		gid = pa.gid;
	rc = ns_create(fs->ns, parent, name, NS_FILE, mode & 07777, ctx->uid, gid, NULL, &ino);
	if (rc < 0)
		goto err;
	fs_mark_ns_dirty(fs);
	if (!(n = fs_node_get(fs, ino))) {
		rc = -ENOMEM;
		goto err;
	}
	n->opens++;
	n->size = 0;
	n->mf_state = FS_MF_READY;
	memset(&n->content, 0, sizeof(n->content));
	if ((rc = ns_getattr(fs->ns, ino, &a)) < 0) {
		n->opens--;
		fs_node_put(n);
		goto err;
	}
	n->mtime = a.mtime;
	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.generation = 1;
	e.attr_timeout = fs->o.attr_timeout;
	e.entry_timeout = fs->o.entry_timeout;
	fs_fill_stat(fs, ino, &a, &e.attr);
	fi->fh = 0;
	fi->keep_cache = 1;
	fuse_reply_create(req, &e, fi);
	return;
err:
	fuse_reply_err(req, -rc);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_node *n = fs_node_find(fs, ino);

	(void)fi;
	fuse_reply_err(req, 0);
	if (!n)
		return;
	if (n->opens)
		n->opens--;
	/* Pages written back through a shared mapping after close arrive as
	 * writes with no flush of their own: record them now. */
	if (!n->opens && n->is_dirty && !n->job)
		fs_flush_node(n, NULL);
	fs_node_put(n);
}

/* ---- reads ---- */

static void read_ahead(struct fs *fs, struct fs_node *n, uint64_t off, uint64_t end);

struct rd;

struct rd_piece {
	struct rd *rd;
	struct ev_op op;    /* staging reads */
	struct cs_buf *buf; /* chunk pieces */
	uint8_t *own;	    /* staging and zero pieces */
	size_t skip;	    /* offset of the piece in the chunk */
	size_t len;
	uint64_t off; /* file offset, for messages */
	uint8_t id[CS_ID_LEN];
};

struct rd {
	struct ev_work w; /* the reply, on fs->reply_pool */
	fuse_req_t req;
	struct fs_node *n;
	unsigned pending;
	int err;
	size_t npieces;
	struct rd_piece p[];
};

/*
 * Send a read's data and free it. On the reply thread: this write to
 * /dev/fuse is where the kernel copies the data into the reader's pages,
 * the largest single cost of a read, so the loop goes on with the next
 * requests meanwhile. Nothing here touches loop state: the pieces are
 * reference-counted buffers (cs_buf) and memory of the read's own.
 */
static void rd_reply(struct ev_work *w)
{
	struct rd *rd = container_of(w, struct rd, w);
	struct iovec small[8] = { { 0 } }, *iov = small;

	if (rd->npieces > ARRAY_SIZE(small) && !(iov = malloc(rd->npieces * sizeof(*iov)))) {
		fuse_reply_err(rd->req, ENOMEM);
	} else {
		for (size_t i = 0; i < rd->npieces; i++) {
			struct rd_piece *p = &rd->p[i];

			iov[i].iov_base = p->buf ? (void *)(cs_buf_data(p->buf) + p->skip) : p->own;
			iov[i].iov_len = p->len;
		}
		fuse_reply_iov(rd->req, iov, (int)rd->npieces);
		if (iov != small)
			free(iov);
	}
	for (size_t i = 0; i < rd->npieces; i++) {
		cs_buf_unref(rd->p[i].buf);
		free(rd->p[i].own);
	}
	free(rd);
}

static void rd_finish(struct rd *rd)
{
	struct fs_node *n = rd->n;
	struct fs *fs = n->fs;
	bool failed = rd->err != 0;

	if (failed) {
		fs->st.read_errors++;
		fuse_reply_err(rd->req, rd->err);
		for (size_t i = 0; i < rd->npieces; i++) {
			cs_buf_unref(rd->p[i].buf);
			free(rd->p[i].own);
		}
		free(rd);
	} else {
		fs->st.reads++;
		for (size_t i = 0; i < rd->npieces; i++)
			fs->st.read_bytes += rd->p[i].len;
		if (fs->reply_pool)
			ev_work_submit(fs->reply_pool, NULL, &rd->w, rd_reply, NULL);
		else
			rd_reply(&rd->w);
	}
	n->busy--;
	fs_node_put(n);
}

static void rd_fail(struct rd_piece *p, int rc)
{
	struct fs_node *n = p->rd->n;
	char hex[9];

	p2p_hex8(hex, p->id);
	if (!n->eio_logged || log_get_level() >= LOG_LVL_DEBUG) {
		n->eio_logged = true;
		log_error("read of inode %llu at offset %llu failed: chunk %s %s",
			  (unsigned long long)n->ino, (unsigned long long)p->off, hex,
			  rc == -ENOENT	   ? "is not stored on this node"
			  : rc == -EBADMSG ? "failed verification (corrupt on disk)"
					   : strerror(-rc));
	}
	p->rd->err = EIO;
}

static void on_rd_chunk(void *arg, int rc, struct cs_buf *b)
{
	struct rd_piece *p = arg;
	struct rd *rd = p->rd;

	if (rc < 0)
		rd_fail(p, rc);
	else if (cs_buf_len(b) < p->skip + p->len)
		rd_fail(p, -EIO);
	else
		p->buf = cs_buf_ref(b);
	if (--rd->pending == 0)
		rd_finish(rd);
}

static void on_rd_staging(struct ev_op *op, int32_t res)
{
	struct rd_piece *p = container_of(op, struct rd_piece, op);
	struct rd *rd = p->rd;

	if (res < 0) {
		log_error("reading the staging file of inode %llu: %s",
			  (unsigned long long)rd->n->ino, strerror(-res));
		rd->err = EIO;
	} else if ((size_t)res < p->len) {
		/* Past the end of the staging file: a hole, zeros. */
		memset(p->own + res, 0, p->len - (size_t)res);
	}
	if (--rd->pending == 0)
		rd_finish(rd);
}

static size_t count_pieces(const struct fs_node *n, uint64_t off, uint64_t end)
{
	size_t count = 0;
	uint64_t pos = off;

	while (pos < end) {
		size_t di = fs_ext_first_after(&n->dirty, pos);
		uint64_t lim;

		if (di < n->dirty.n && n->dirty.r[di].start <= pos) {
			bool in_run;

			lim = fs_run_piece_end(n->run, n->nrun, pos,
					       P2P_MIN(end, n->dirty.r[di].end), &in_run);
		} else {
			lim = di < n->dirty.n ? P2P_MIN(end, n->dirty.r[di].start) : end;
			if (pos < n->mf.size) {
				const struct mf_chunk *c = &n->mf.c[mf_find(&n->mf, pos)];

				lim = P2P_MIN(lim, c->off + c->len);
			}
		}
		count++;
		pos = lim;
	}
	return count;
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_node *n = fs_node_find(fs, ino);
	uint64_t pos = (uint64_t)off, end;
	size_t np;
	struct rd *rd;

	(void)fi;
	if (!n || n->mf_state != FS_MF_READY) {
		fuse_reply_err(req, n ? -(n->mf_err ? n->mf_err : -EIO) : EBADF);
		return;
	}
	if (pos >= n->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	end = P2P_MIN(n->size, pos + size);
	np = count_pieces(n, pos, end);
	if (!(rd = calloc(1, sizeof(*rd) + np * sizeof(rd->p[0])))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rd->req = req;
	rd->n = n;
	rd->npieces = np;
	rd->pending = 1; /* held until every piece is started */
	n->busy++;
	for (size_t i = 0; i < np; i++) {
		struct rd_piece *p = &rd->p[i];
		size_t di = fs_ext_first_after(&n->dirty, pos);

		p->rd = rd;
		p->off = pos;
		if (di < n->dirty.n && n->dirty.r[di].start <= pos) {
			bool in_run;

			p->len =
			    (size_t)(fs_run_piece_end(n->run, n->nrun, pos,
						      P2P_MIN(end, n->dirty.r[di].end), &in_run) -
				     pos);
			if (!(p->own = malloc(p->len))) {
				rd->err = ENOMEM;
				break;
			}
			if (in_run) {
				fs_run_copy(n->run, n->nrun, pos, p->own, p->len);
			} else {
				ev_op_init(&p->op, on_rd_staging);
				if (ev_read(fs->loop, &p->op, n->sfd, p->own, p->len, pos) < 0) {
					rd->err = EIO;
					break;
				}
				rd->pending++;
			}
		} else if (pos >= n->mf.size) {
			uint64_t lim = di < n->dirty.n ? P2P_MIN(end, n->dirty.r[di].start) : end;

			p->len = (size_t)(lim - pos);
			if (!(p->own = calloc(1, p->len))) {
				rd->err = ENOMEM;
				break;
			}
		} else {
			const struct mf_chunk *c = &n->mf.c[mf_find(&n->mf, pos)];
			uint64_t lim = di < n->dirty.n ? P2P_MIN(end, n->dirty.r[di].start) : end;
			struct cs_buf *b = NULL;
			int rc;

			lim = P2P_MIN(lim, c->off + c->len);
			p->len = (size_t)(lim - pos);
			p->skip = (size_t)(pos - c->off);
			memcpy(p->id, c->id, CS_ID_LEN);
			rc = fs_chunk_read(fs, c->id, &n->content, true, on_rd_chunk, p, &b);
			if (rc == 1) {
				if (cs_buf_len(b) < p->skip + p->len) {
					cs_buf_unref(b);
					rd_fail(p, -EIO);
					break;
				}
				p->buf = b;
			} else if (rc == 0) {
				rd->pending++;
				fs->st.read_waits++;
			} else {
				rd_fail(p, rc);
				break;
			}
		}
		pos += p->len;
	}
	read_ahead(fs, n, (uint64_t)off, end);
	if (--rd->pending == 0)
		rd_finish(rd);
}

/* ---- read-ahead ---- */

#define FS_PREFETCH_BYTES (16 * MiB)

static void on_prefetch(void *arg, int rc, struct cs_buf *b)
{
	/* The chunk is now in the store's memory cache (or the read failed, and
	 * the reader that needs it will see why). */
	(void)arg;
	(void)rc;
	(void)b;
}

/*
 * On sequential reads, start reading the next FS_PREFETCH_BYTES of chunks
 * from the store, so the disk works on several chunks while FUSE copies
 * this one. Random access starts nothing.
 */
static void read_ahead(struct fs *fs, struct fs_node *n, uint64_t off, uint64_t end)
{
	bool seq = off && off == n->ra_next;
	uint64_t limit;

	n->ra_next = end;
	if (!seq || n->mf_state != FS_MF_READY)
		return;
	if (n->ra_done < end)
		n->ra_done = end;
	limit = P2P_MIN(n->mf.size, end + FS_PREFETCH_BYTES);
	while (n->ra_done < limit) {
		const struct mf_chunk *c = &n->mf.c[mf_find(&n->mf, n->ra_done)];
		struct cs_buf *b = NULL;
		int rc = fs_chunk_read(fs, c->id, &n->content, false, on_prefetch, NULL, &b);

		if (rc == 1)
			cs_buf_unref(b);
		n->ra_done = c->off + c->len;
		if (rc < 0)
			break;
	}
}

/* ---- writes ---- */

struct wr {
	struct ev_op op;
	fuse_req_t req;
	struct fs_node *n;
	struct fs_buf *buf; /* NULL when the run took it */
	const char *data;   /* the bytes, in buf */
	struct wr *qnext;   /* in fs->wq while waiting for the backlog */
	bool in_run;
	uint64_t off;
	size_t size;
};

static int node_mark_dirty(struct fs_node *n, uint64_t start, uint64_t end)
{
	int rc;

	if ((rc = fs_ext_add(&n->dirty, start, end)) < 0)
		return rc;
	if (n->job && (rc = fs_ext_add(&n->wdirty, start, end)) < 0)
		return rc;
	n->is_dirty = true;
	n->flush_err = 0;
	return 0;
}

static void on_write_done(struct ev_op *op, int32_t res)
{
	struct wr *w = container_of(op, struct wr, op);
	struct fs_node *n = w->n;
	struct fs *fs = n->fs;
	int rc = 0;

	if (res < 0) {
		rc = res;
		if (res != -ENOSPC)
			log_error("writing the staging file of inode %llu: %s",
				  (unsigned long long)n->ino, strerror(-res));
	} else if ((size_t)res != w->size) {
		/* A regular file only writes short when its disk is full. */
		rc = -ENOSPC;
	} else {
		uint64_t end = w->off + w->size;

		/* A write past the end leaves a gap that reads as zeros (a hole in staging). */
		if (w->off > n->size)
			rc = node_mark_dirty(n, n->size, w->off);
		if (rc == 0)
			rc = node_mark_dirty(n, w->off, end);
		if (rc == 0) {
			if (end > n->size)
				n->size = end;
			if (!fs->o
				 .writeback_cache) /* with it, the kernel keeps mtime and sends it */
				n->mtime = (int64_t)tm_real_ns();
			if (n->job)
				n->meta_during_flush = true;
			fs->st.writes++;
			fs->st.write_bytes += w->size;
			/* Long writes are chunked as they go, on a worker, so close has
			 * little left to do and the data becomes durable meanwhile. */
			n->written_since_flush += w->size;
			fs->backlog += w->size;
			if (!n->job && n->written_since_flush >= FS_BG_FLUSH_BYTES)
				fs_flush_node(n, NULL);
		}
	}
	if (rc < 0 && w->in_run && n->nrun)
		run_forget(n, n->nrun - 1); /* not recorded as dirty: not kept either */
	if (rc < 0)
		fuse_reply_err(w->req, -rc);
	else
		fuse_reply_write(w->req, w->size);
	if (w->buf)
		free(w->buf);
	free(w);
	n->busy--;
	fs_node_put(n);
}

/* Stage a write: in the node's run, or through an io_uring write into its staging file. */
static void write_start(struct wr *w)
{
	struct fs_node *n = w->n;
	struct fs *fs = n->fs;
	int rc;

	ev_op_init(&w->op, on_write_done);
	n->busy++;
	if (run_take(n, w->buf, w->data, w->size, w->off) == 0) {
		w->buf = NULL;
		w->in_run = true;
		on_write_done(&w->op, (int32_t)w->size);
		return;
	}
	if ((rc = run_spill_over(n, w->off, w->off + w->size)) < 0 ||
	    (rc = ev_write(fs->loop, &w->op, n->sfd, w->data, w->size, w->off)) < 0) {
		fuse_reply_err(w->req, rc == -EBUSY ? EAGAIN : -rc);
		free(w->buf);
		free(w);
		n->busy--;
		fs_node_put(n);
	}
}

/*
 * Writing is over for now (nothing staged, no flush running): give the
 * memory a long write used (request buffers of the staged run, flush
 * windows) back to the system, at most every FS_TRIM_MS. Without it the
 * daemon kept ~400 MiB after a 20 GiB copy.
 */
#define FS_TRIM_MS 2000

static void maybe_trim(struct fs *fs)
{
	uint64_t now = tm_mono_ms();

	if (fs->nflush || fs->backlog || fs->run_bytes)
		return;
	if (now - fs->trim_at < FS_TRIM_MS) {
		/* Trimmed lately: once more when the interval is over. */
		if (!ev_timer_armed(&fs->trim_timer) &&
		    ev_timer_start(fs->loop, &fs->trim_timer, fs->trim_at + FS_TRIM_MS - now) < 0)
			log_debug("cannot arm the trim timer");
		return;
	}
	fs->trim_at = now;
	fs_rechunk_cache_drop(&fs->window);
	p2p_bigbuf_trim();
	malloc_trim(0);
}

void fs_trim_fire(struct ev_timer *t)
{
	maybe_trim(container_of(t, struct fs, trim_timer));
}

/* A flush ended: start the writes that waited, as far as the backlog allows. */
static void write_queue_run(struct fs *fs)
{
	while (fs->wq && (fs->backlog < FS_BACKLOG_MAX || !fs->nflush)) {
		struct wr *w = fs->wq;

		if (!(fs->wq = w->qnext))
			fs->wq_tail = &fs->wq;
		w->n->queued--; /* kept the node while queued; write_start takes busy */
		write_start(w);
	}
}

void fs_write_queue_drop(struct fs *fs)
{
	while (fs->wq) {
		struct wr *w = fs->wq;

		fs->wq = w->qnext;
		fuse_reply_err(w->req, EIO);
		free(w->buf);
		free(w);
	}
	fs->wq_tail = &fs->wq;
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_node *n = fs_node_find(fs, ino);
	struct wr *w;
	int rc;

	(void)fi;
	if (!n) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (ns_read_only(fs->ns)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((rc = ensure_staging(n)) < 0 || !(w = calloc(1, sizeof(*w)))) {
		fuse_reply_err(req, rc < 0 ? -rc : ENOMEM);
		return;
	}
	w->req = req;
	w->n = n;
	w->off = (uint64_t)off;
	w->size = size;
	w->data = buf;
	/* The bytes live in the request buffer: keep it until the write completes. */
	w->buf = fs->cur_buf;
	fs->cur_buf = NULL;
	if (w->buf && (fs->wq || (fs->backlog >= FS_BACKLOG_MAX && fs->nflush))) {
		/* Chunking is behind: wait for a flush to end (in order). */
		n->queued++;
		fs->st.write_waits++;
		*fs->wq_tail = w;
		fs->wq_tail = &w->qnext;
		return;
	}
	write_start(w);
}

/* ---- truncate and fallocate ---- */

int fs_truncate(struct fs *fs, uint64_t ino, uint64_t size)
{
	struct fs_node *n;
	int rc;

	if (ns_read_only(fs->ns))
		return -EROFS;
	if (!(n = fs_node_get(fs, ino)))
		return -ENOMEM;
	if ((rc = node_sync_attr(n)) < 0)
		goto out;
	if (size == n->size)
		goto out;
	if (size < n->size) {
		run_trim(n, size);
		fs_ext_truncate(&n->dirty, size);
		fs_ext_truncate(&n->wdirty, size);
		if (n->sfd >= 0 && ftruncate(n->sfd, (off_t)size) < 0) {
			rc = -errno;
			goto out;
		}
		n->is_dirty = true;
		n->flush_err = 0;
	} else {
		if ((rc = ensure_staging(n)) < 0)
			goto out;
		/* Staging bytes past its end read as zeros; drop any stale ones first. */
		if (ftruncate(n->sfd, (off_t)n->size) < 0) {
			rc = -errno;
			goto out;
		}
		if ((rc = node_mark_dirty(n, n->size, size)) < 0)
			goto out;
	}
	n->size = size;
	n->mtime = (int64_t)tm_real_ns();
	if (n->job)
		n->meta_during_flush = true;
	else if (size == 0 && n->mf_state != FS_MF_LOADING) {
		/* Nothing of the old version survives: no need to load its chunk list. */
		mf_done(&n->mf);
		n->mf_state = FS_MF_READY;
	}
	/* truncate(2) on a file nobody has open: record it now. */
	if (!n->opens)
		fs_flush_node(n, NULL);
out:
	fs_node_put(n);
	return rc;
}

void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_node *n = fs_node_find(fs, ino);
	uint64_t start = (uint64_t)off, end = (uint64_t)off + (uint64_t)len;
	int rc = 0;

	(void)fi;
	if (!n) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (ns_read_only(fs->ns)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	switch (mode) {
	case 0:
		/* Space is not reserved (chunks are written on flush); the size grows. */
		if (end > n->size)
			rc = fs_truncate(fs, ino, end);
		break;
	case FALLOC_FL_KEEP_SIZE:
		break;
	case FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
	case FALLOC_FL_ZERO_RANGE:
	case FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE: {
		uint64_t zend = (mode & FALLOC_FL_KEEP_SIZE) ? P2P_MIN(end, n->size) : end;

		if (start < zend) {
			if ((rc = ensure_staging(n)) < 0 ||
			    (rc = run_spill_over(n, start, zend)) < 0)
				break;
			if (fallocate(n->sfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
				      (off_t)(zend - start)) < 0) {
				rc = -errno;
				break;
			}
			if ((rc = node_mark_dirty(n, start, zend)) < 0)
				break;
			n->mtime = (int64_t)tm_real_ns();
		}
		if (!(mode & FALLOC_FL_KEEP_SIZE) && end > n->size)
			rc = fs_truncate(fs, ino, end);
		break;
	}
	default:
		rc = -EOPNOTSUPP;
	}
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

/* ---- flush ---- */

struct fs_flush_job {
	struct ev_work w;
	struct fs_node *n;
	struct fs_rechunk_in in;
	struct fs_ext dirty;
	struct mf new_mf;
	struct ns_content content;
	struct ns_content base_content; /* what j->in.base was loaded for */
	struct fs_seg *run;		/* the node's run when the job started */
	uint64_t bytes;			/* written since the previous flush (fs->backlog) */
	struct fs_rechunk_stats st;
	uint64_t size;
	int64_t mtime;
	int rc;
};

/*
 * The rechunker's source of old chunks (on a worker): the store, and for a
 * chunk not stored here (a file written elsewhere) the network: the loop
 * thread fetches it while this worker waits, up to the fetch timeout. The
 * fetched bytes are copied from the buffer they arrive in: the store may
 * still be writing them (fetches for readers do not wait for the disk).
 */
struct flush_fetch {
	struct ev_job job;
	struct fs *fs;
	const uint8_t *id;
	struct ns_content file;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rc;
	uint8_t *buf; /* malloc'd copy of the chunk */
	size_t len;
};

static void flush_fetch_done(void *arg, int rc, struct cs_buf *b)
{
	struct flush_fetch *x = arg;
	uint8_t *copy = NULL;

	if (rc == 0 && !(copy = malloc(cs_buf_len(b) ? cs_buf_len(b) : 1)))
		rc = -ENOMEM;
	if (copy)
		memcpy(copy, cs_buf_data(b), cs_buf_len(b));
	pthread_mutex_lock(&x->lock);
	x->rc = rc;
	x->buf = copy;
	x->len = copy ? cs_buf_len(b) : 0;
	x->done = true;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->lock);
}

static void flush_fetch_start(struct ev_job *job)
{
	struct flush_fetch *x = container_of(job, struct flush_fetch, job);
	struct cs_buf *b = NULL;
	int rc = fs_chunk_read(x->fs, x->id, &x->file, true, flush_fetch_done, x, &b);

	if (rc == 1) {
		flush_fetch_done(x, 0, b);
		cs_buf_unref(b);
	} else if (rc < 0) {
		flush_fetch_done(x, rc, NULL);
	}
}

static int flush_get(void *arg, const uint8_t id[static CS_ID_LEN], uint8_t **ret_buf,
		     size_t *ret_len)
{
	struct fs_flush_job *j = arg;
	struct fs *fs = j->n->fs;
	struct flush_fetch x = { .fs = fs, .id = id, .file = j->base_content };
	int rc = cs_get(fs->cs, id, ret_buf, ret_len);

	if (rc != -ENOENT || !fs->fetch_fn)
		return rc;
	pthread_mutex_init(&x.lock, NULL);
	pthread_cond_init(&x.cond, NULL);
	x.job.fn = flush_fetch_start;
	ev_post(fs->loop, &x.job);
	pthread_mutex_lock(&x.lock);
	while (!x.done)
		pthread_cond_wait(&x.cond, &x.lock);
	pthread_mutex_unlock(&x.lock);
	pthread_cond_destroy(&x.cond);
	pthread_mutex_destroy(&x.lock);
	if (x.rc < 0)
		return x.rc == -ENOENT ? -EIO : x.rc;
	*ret_buf = x.buf;
	*ret_len = x.len;
	return 0;
}

static void flush_run(struct ev_work *w)
{
	struct fs_flush_job *j = container_of(w, struct fs_flush_job, w);
	struct mf_block *blocks;
	size_t nb;

	j->rc = fs_rechunk(&j->in, &j->new_mf, &j->st);
	if (j->rc < 0)
		return;
	memset(&j->content, 0, sizeof(j->content));
	if (j->new_mf.n == 0)
		return;
	if (j->new_mf.n == 1) {
		j->content.kind = NS_CONTENT_CHUNK;
		memcpy(j->content.id, j->new_mf.c[0].id, CS_ID_LEN);
		return;
	}
	if ((j->rc = mf_encode(&j->new_mf, &blocks, &nb)) < 0)
		return;
	for (size_t i = 0; i < nb && j->rc >= 0; i++)
		j->rc = cs_put(j->in.cs, blocks[i].id, blocks[i].data, blocks[i].len, CS_PUT_PIN);
	if (j->rc >= 0) {
		j->rc = 0;
		j->content.kind = NS_CONTENT_MANIFEST;
		memcpy(j->content.id, blocks[nb - 1].id, CS_ID_LEN);
	}
	mf_blocks_free(blocks, nb);
}

static void flush_done(struct ev_work *w)
{
	struct fs_flush_job *j = container_of(w, struct fs_flush_job, w);
	struct fs_node *n = j->n;
	struct fs *fs = n->fs;
	struct fs_waiter *wt = n->flush_waiters;
	int rc = j->rc;

	fs->nwork--;
	struct fs_ext still_dirty;

	/* What was written during the flush is still only in staging. */
	if (rc == 0 && fs_ext_copy(&still_dirty, &n->wdirty) < 0)
		rc = -ENOMEM;
	if (rc == 0) {
		rc = ns_set_content(fs->ns, n->ino, j->size, &j->content, j->mtime);
		if (rc == -ENOENT) /* unlinked while open: the data goes with it */
			rc = 0;
		if (rc < 0)
			fs_ext_done(&still_dirty);
	}
	if (rc == 0) {
		fs->st.flushes++;
		fs->st.flush_bytes_hashed += j->st.bytes_hashed;
		fs->st.chunks_new += j->st.chunks_new;
		fs->st.chunks_dedup += j->st.chunks_dedup;
		mf_done(&n->mf);
		n->mf = j->new_mf;
		mf_init(&j->new_mf);
		n->content = j->content;
		n->content_size = j->size;
		n->mf_state = FS_MF_READY;
		fs_announce_stored(fs, &n->mf, &n->content);
		/* No staging read or write in flight: the flushed bytes can go. */
		if (!n->busy && n->sfd >= 0)
			staging_punch(n->sfd, &n->dirty, &still_dirty);
		fs_ext_done(&n->dirty);
		n->dirty = still_dirty;
		run_drop_clean(n);
		n->is_dirty = n->dirty.n || n->meta_during_flush || n->size != j->size;
		fs_mark_ns_dirty(fs);
		if (!n->is_dirty && !n->busy && n->sfd >= 0) {
			close(n->sfd);
			n->sfd = -1;
		}
	} else {
		log_error("flushing inode %llu failed: %s; its changes stay in staging",
			  (unsigned long long)n->ino, strerror(-rc));
		n->flush_err = rc;
	}
	fs_ext_clear(&n->wdirty);
	n->meta_during_flush = false;
	n->job = NULL;
	fs->nflush--;
	if (rc == 0)
		fs->backlog -= P2P_MIN(fs->backlog, j->bytes);
	else
		n->written_since_flush += j->bytes; /* still staged, still counted */
	run_dead_free(n);			    /* invariant 4: the job is done with them */
	mf_done(&j->new_mf);
	fs_ext_done(&j->dirty);
	free(j->run);
	free(j);
	n->flush_waiters = NULL;
	while (wt) {
		struct fs_waiter *next = wt->next;

		fs_reply_waiter(fs, wt, rc);
		wt = next;
	}
	if (n->next_waiters) {
		struct fs_waiter *nw = n->next_waiters;

		n->next_waiters = NULL;
		while (nw) {
			struct fs_waiter *next = nw->next;

			fs_flush_node(n, nw);
			nw = next;
		}
	}
	fs_sync_flushed(fs);
	fs_node_put(n); /* last use of n: a queued write below may free it */
	write_queue_run(fs);
	maybe_trim(fs);
}

void fs_flush_node(struct fs_node *n, struct fs_waiter *w)
{
	struct fs *fs = n->fs;
	struct fs_flush_job *j;

	if (n->job) {
		if (w) {
			w->next = n->next_waiters;
			n->next_waiters = w;
		}
		return;
	}
	if (!n->is_dirty) {
		if (w)
			fs_reply_waiter(fs, w, 0);
		return;
	}
	if (n->mf_state != FS_MF_READY) {
		/* The old chunk list is needed to keep unchanged chunks: load it first. */
		if (!w)
			n->flush_after_load = true;
		node_load(n, w);
		return;
	}
	if (!(j = calloc(1, sizeof(*j))) || fs_ext_copy(&j->dirty, &n->dirty) < 0 ||
	    (n->nrun && !(j->run = malloc(n->nrun * sizeof(*j->run))))) {
		if (j)
			fs_ext_done(&j->dirty);
		free(j);
		if (w)
			fs_reply_waiter(fs, w, -ENOMEM);
		return;
	}
	j->n = n;
	j->size = n->size;
	j->mtime = n->mtime;
	j->in.base = &n->mf;
	j->in.dirty = &j->dirty;
	j->in.size = n->size;
	j->in.staging_fd = n->sfd;
	if (n->nrun)
		memcpy(j->run, n->run, n->nrun * sizeof(*j->run));
	j->in.run = j->run;
	j->in.nrun = n->nrun;
	j->in.cdc = &fs->o.cdc;
	j->in.cs = fs->cs;
	j->in.get = flush_get;
	j->in.get_arg = j;
	j->in.pool = fs->pool;
	j->in.cache = &fs->window;
	j->base_content = n->content;
	j->in.put_flags = CS_PUT_PIN;
	mf_init(&j->new_mf);
	fs_ext_clear(&n->wdirty);
	n->meta_during_flush = false;
	j->bytes = n->written_since_flush;
	n->written_since_flush = 0;
	n->job = j;
	fs->nflush++;
	if (w) {
		w->next = n->flush_waiters;
		n->flush_waiters = w;
	}
	fs->nwork++;
	ev_work_submit(fs->pool, fs->loop, &j->w, flush_run, flush_done);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_node *n = fs_node_find(fs, ino);
	struct fs_waiter *w;

	if (!n || (!n->is_dirty && !n->job)) {
		fuse_reply_err(req, n && n->flush_err ? -n->flush_err : 0);
		return;
	}
	if (!(w = fs_waiter_new(req, FS_WAIT_FLUSH, ino, fi))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fs_flush_node(n, w);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_node *n = fs_node_find(fs, ino);
	struct fs_waiter *w = fs_waiter_new(req, FS_WAIT_FSYNC, ino, fi);

	(void)datasync;
	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fs->st.fsyncs++;
	if (n)
		fs_flush_node(n, w);
	else
		fs_reply_waiter(fs, w, 0);
}

void fs_node_discard(struct fs *fs, uint64_t ino)
{
	struct fs_node *n = fs_node_find(fs, ino);

	/* Open handles keep an unlinked file alive; a running flush finishes on its own. */
	if (!n || n->opens || n->job)
		return;
	fs_ext_clear(&n->dirty);
	fs_node_run_free(n);
	fs->backlog -= P2P_MIN(fs->backlog, n->written_since_flush);
	n->written_since_flush = 0;
	n->is_dirty = false;
	n->flush_err = 0;
	if (!n->busy && n->sfd >= 0) {
		close(n->sfd);
		n->sfd = -1;
	}
	fs_node_put(n);
}

unsigned fs_flush_all(struct fs *fs, int *ret_err)
{
	unsigned busy = 0;

	for (size_t i = 0; i < fs->nodes_cap; i++) {
		struct fs_node *n, *next;

		for (n = fs->nodes[i]; n; n = next) {
			next = n->hnext;
			if (n->job || n->mf_state == FS_MF_LOADING) {
				busy++;
				continue;
			}
			if (!n->is_dirty)
				continue;
			if (n->flush_err) {
				*ret_err = n->flush_err;
				continue;
			}
			busy++;
			fs_flush_node(n, NULL);
		}
	}
	return busy;
}

/* Files have no holes that p2pfs tracks: all of [0, size) is data. */
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct ns_attr a;
	int rc;

	(void)fi;
	if ((rc = fs_getattr_ino(fs, ino, &a)) < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0 || (uint64_t)off >= a.size) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	fuse_reply_lseek(req, whence == SEEK_DATA ? off : (off_t)a.size);
}
