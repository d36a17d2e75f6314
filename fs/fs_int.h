/* SPDX-License-Identifier: MIT */
/*
 * fs/fs_int.h - state shared by the fs_*.c files (never included from outside fs/).
 *
 * Object lifetimes:
 *  - struct fs_node exists for an inode while anything needs per-inode state:
 *    open handles, dirty data, a flush, staging writes or reads in flight.
 *    fs_node_put() frees it when none of those remain.
 *  - A fuse_req_t is answered exactly once; every path that takes a request
 *    (including error paths and shutdown) ends in one fuse_reply_*.
 */
#ifndef P2P_FS_INT_H
#define P2P_FS_INT_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/ev.h"
#include "common/log.h"
#include "fs/fs.h"
#include "fs/fs_ext.h"
#include "fs/fs_rechunk.h"
#include "fs/fs_seg.h"
#include "fs/mf.h"

/* A request waiting for something (a manifest load, a flush, a commit). */
struct fs_waiter {
	struct fs_waiter *next;
	fuse_req_t req;
	int kind; /* enum fs_wait_kind */
	struct fuse_file_info fi;
	uint64_t ino;
	void *ctx; /* FS_WAIT_SYNC_CB: the struct fs_sync_req */
};

enum fs_wait_kind {
	FS_WAIT_OPEN,	 /* reply fuse_reply_open once the manifest is loaded */
	FS_WAIT_FLUSH,	 /* reply 0 once flushed */
	FS_WAIT_FSYNC,	 /* after the flush, wait for a commit, then reply 0 */
	FS_WAIT_COMMIT,	 /* reply 0 after the next commit */
	FS_WAIT_SYNC_CB, /* internal: fs_sync() completion */
	FS_WAIT_RELEASE, /* reply 0 (release) once flushed */
};

enum fs_mf_state {
	FS_MF_NONE,
	FS_MF_LOADING,
	FS_MF_READY,
};

struct fs_flush_job;
struct wr;

struct fs_node {
	struct fs_node *hnext;
	struct fs *fs;
	uint64_t ino;
	unsigned opens;
	unsigned busy;	 /* reads, staging writes, loads in flight */
	unsigned queued; /* writes waiting for the backlog (fs->wq) */

	/* The committed version this node's reads come from. */
	enum fs_mf_state mf_state;
	int mf_err;
	struct ns_content content; /* what mf was loaded for */
	struct mf mf;
	struct mf_loader *loader;
	struct fs_waiter *mf_waiters;

	/* Writes not yet chunked. */
	int sfd;	     /* staging file (O_TMPFILE), -1 if none */
	struct fs_ext dirty; /* ranges whose newest bytes are in staging (file or run) */
	struct fs_seg *run;  /* the staged run: contiguous appended writes in memory */
	size_t nrun, run_cap;
	struct fs_buf *run_dead;      /* buffers a running flush may still read (freed after it) */
	struct fs_ext wdirty;	      /* ranges written while a flush runs */
	uint64_t size;		      /* current size */
	int64_t mtime;		      /* current mtime (ns), valid when dirty */
	bool is_dirty;		      /* differs from the committed entry */
	bool meta_during_flush;	      /* size/mtime changed while a flush ran */
	int flush_err;		      /* last flush failed with this; cleared by new writes */
	uint64_t written_since_flush; /* bytes written since the last flush started */
	uint64_t ra_next;	      /* where the last read ended (sequential detection) */
	uint64_t ra_done;	      /* chunks are being read ahead up to here */
	bool flush_after_load;	      /* a flush is due once the chunk list is loaded */
	uint64_t content_size;	      /* size of the committed version n->mf was loaded for */

	struct fs_flush_job *job;	 /* flush in flight */
	struct fs_waiter *flush_waiters; /* answered when the running flush ends */
	struct fs_waiter *next_waiters;	 /* need a flush after the running one */

	/* Page-cache coherence: the kernel may keep cached pages across opens
	 * only if the content has not changed since they were cached. */
	uint64_t gen;
	uint64_t cached_gen;
	bool eio_logged;
	bool stale; /* a newer version arrived while open: reload after the last close */
};

struct fs_buf {
	struct fs_buf *next;
	uint8_t data[];
};

struct fs {
	struct ev_loop *loop;
	struct ev_pool *pool;
	struct ev_pool *reply_pool; /* one thread that sends read data (fs_io.c rd_reply) */
	struct cs_store *cs;
	struct ns *ns;
	struct fs_opts o;
	char *mountpoint;
	char *staging_dir;
	char *state_dir;

	struct fuse_session *se;
	int fd;
	struct ev_op poll_op;
	bool poll_armed;
	bool session_ended;
	size_t bufsize;
	struct fs_buf *free_bufs;
	unsigned nfree_bufs;
	uint64_t run_bytes; /* memory of the buffers held in staged runs, all nodes */
	uint64_t backlog;   /* bytes written and not yet taken by a flush job, all nodes */
	unsigned nflush;    /* flush jobs running */
	uint64_t trim_at;   /* ms: the last malloc_trim (fs_io.c maybe_trim) */
	struct ev_timer trim_timer;
	struct fs_rechunk_cache window; /* kept between flush jobs, dropped with the trim */
	struct wr *wq, **wq_tail;	/* writes waiting for the backlog to shrink (fs_io.c) */
	struct fs_buf *cur_buf; /* buffer of the request being dispatched; a handler may take it */

	struct fs_node **nodes;
	size_t nodes_cap, nnodes;

	/* Commits: pending namespace records made durable in batches. */
	struct ev_timer commit_timer;
	struct ev_timer tune_timer;
	bool commit_running;
	unsigned nwork; /* jobs on the worker pool whose completion has not run yet */
	bool commit_again;
	struct fs_waiter *commit_waiters;      /* answered by the running commit */
	struct fs_waiter *commit_next_waiters; /* need a commit that starts later */
	bool ns_dirty;

	/* Shutdown. */
	bool shutting_down;
	fs_done_fn *shutdown_done;
	void *shutdown_arg;
	fs_done_fn *ended_cb;
	void *ended_arg;
	fs_done_fn *ready_cb;
	void *ready_arg;
	struct ev_work umount_work;
	bool umount_lazy;
	int umount_rc;
	bool mounted;

	/* fs_sync() callers. */
	struct fs_sync_req *sync_reqs;

	struct fs_stats st;

	/* Other members' changes (fs_remote.c). */
	fs_fetch_fn *fetch_fn;
	void *fetch_arg;
	fs_stored_fn *stored_fn;
	void *stored_arg;
	fs_holders_fn *holders_fn;
	void *holders_arg;
	struct fs_inval *inval, **inval_tail;
	bool inval_running, change_cb_set;
	struct log_rl rl_eio;
};

/* fs.c */
struct fs_node *fs_node_get(struct fs *fs, uint64_t ino);  /* find or create; NULL on ENOMEM */
struct fs_node *fs_node_find(struct fs *fs, uint64_t ino); /* find only */

/* fs_remote.c: cs_read, and on -ENOENT the network (see fs_set_fetch). */
P2P_MUST_CHECK int fs_chunk_read(struct fs *fs, const uint8_t id[static CS_ID_LEN],
				 const struct ns_content *file, bool urgent, cs_read_fn *cb,
				 void *arg, struct cs_buf **ret_buf);
void fs_remote_done(struct fs *fs);
/* A flush stored this version: tell the stored callback its chunk ids. */
void fs_announce_stored(struct fs *fs, const struct mf *m, const struct ns_content *c);
struct fs_inval;
void fs_node_put(struct fs_node *n); /* free if nothing needs it */
/* Request buffers (loop thread). */
struct fs_buf *fs_buf_get(struct fs *fs);
void fs_buf_put(struct fs *fs, struct fs_buf *b);
/* Drop a node's staged run and the buffers a flush kept (no flush running). */
void fs_node_run_free(struct fs_node *n);
/* Answer writes still waiting for the backlog with EIO (at the end). */
void fs_write_queue_drop(struct fs *fs);
void fs_trim_fire(struct ev_timer *t);
void fs_commit_kick(struct fs *fs);
void fs_commit_wait(struct fs *fs, struct fs_waiter *w); /* w answered after a later commit */
void fs_mark_ns_dirty(struct fs *fs);
struct fs_waiter *fs_waiter_new(fuse_req_t req, int kind, uint64_t ino,
				const struct fuse_file_info *fi);
void fs_fill_stat(struct fs *fs, uint64_t ino, const struct ns_attr *a, struct stat *st);
/* Attributes of @ino as the kernel should see them (dirty size/mtime included). */
int fs_getattr_ino(struct fs *fs, uint64_t ino, struct ns_attr *ret_attr);
void fs_ops_init(struct fuse_lowlevel_ops *ops);
void fs_sync_flushed(struct fs *fs); /* a flush ended: let fs_sync() callers advance */
void fs_reply_waiter_sync(struct fs *fs, void *ctx, int rc);

/* fs_io.c */
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi);
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
/* Truncate (setattr size): 0 or -errno. */
int fs_truncate(struct fs *fs, uint64_t ino, uint64_t size);
/* Start a flush of @n if it is dirty; @w (may be NULL) is answered when done. */
void fs_flush_node(struct fs_node *n, struct fs_waiter *w);
/*
 * Start a flush of every dirty node; returns how many are dirty or flushing.
 * Nodes whose last flush failed (and were not written since) are not retried
 * here; *ret_err is set to that error.
 */
unsigned fs_flush_all(struct fs *fs, int *ret_err);
void fs_reply_waiter(struct fs *fs, struct fs_waiter *w, int rc);
/* The entry @ino is gone from the namespace: drop unflushed data nobody can reach. */
void fs_node_discard(struct fs *fs, uint64_t ino);

#endif
