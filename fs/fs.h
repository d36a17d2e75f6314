/* SPDX-License-Identifier: MIT */
/*
 * fs/fs.h - the mounted filesystem: FUSE low-level operations served from the
 * daemon's event loop, over a namespace (fs/ns.h) and the chunk store.
 *
 * Requests from /dev/fuse are read on the loop's thread and answered there,
 * many of them later (when a chunk read or a flush completes), so no thread
 * ever blocks per request. Writes land in a staging file per open inode; on
 * flush (close) and fsync the dirty ranges are re-chunked on a worker, only
 * new chunks are stored, and a new file version is recorded in the
 * namespace. fsync returns once the chunks and the namespace record are
 * durable.
 */
#ifndef P2P_FS_FS_H
#define P2P_FS_FS_H

#include <stdbool.h>
#include <stdint.h>

#include "chunkstore/store.h"
#include "common/ev.h"
#include "fs/ns.h"

struct fs;

struct fs_opts {
	const char *mountpoint;
	const char *staging_dir; /* where staging files live (same disk as the store) */
	const char *state_dir;	 /* reported through the "user.p2pfs.state" xattr of the root */
	struct cs_cdc_params cdc;
	double attr_timeout;	     /* seconds the kernel may cache attributes; 0: default */
	double entry_timeout;	     /* seconds the kernel may cache names; 0: default */
	unsigned commit_interval_ms; /* closed files become durable this soon; 0: default 1000 */
	unsigned read_ahead_kb;	     /* kernel read-ahead for the mount; 0: default */
	bool writeback_cache;	     /* kernel write-back caching of file data */
	bool allow_other;	     /* let other users in (root mounts) */
	bool debug;		     /* log every request */
};

/* Caller keeps @loop, @pool, @cs and @ns alive until fs_free(). */
P2P_MUST_CHECK int fs_new(struct ev_loop *loop, struct ev_pool *pool, struct cs_store *cs,
			  struct ns *ns, const struct fs_opts *opts, struct fs **ret_fs);
/* Mount and start serving on the loop. Returns 0 once the kernel has the mount. */
P2P_MUST_CHECK int fs_mount(struct fs *fs);

/*
 * fs_shutdown() - unmount and make everything durable. @lazy detaches a busy
 * mount instead of failing with -EBUSY. @done runs on the loop once the
 * session has ended, dirty files are flushed and the namespace committed
 * (rc 0), or when the unmount was refused (rc -EBUSY; still mounted).
 */
typedef void fs_done_fn(void *arg, int rc);
void fs_shutdown(struct fs *fs, bool lazy, fs_done_fn *done, void *arg);
/* The kernel has sent INIT: the mount is usable. */
void fs_set_ready_cb(struct fs *fs, fs_done_fn *fn, void *arg);
/* The kernel ended the session by itself (someone ran umount): @fn is told. */
void fs_set_ended_cb(struct fs *fs, fs_done_fn *fn, void *arg);
/* Flush every dirty file and commit; @done runs when all is durable. */
void fs_sync(struct fs *fs, fs_done_fn *done, void *arg);
void fs_free(struct fs *fs);
/* Jobs of this fs still running on the worker pool: the loop must run until none are left before fs_free(). */
bool fs_busy(const struct fs *fs);

/*
 * Chunks that are not stored here: @fn asks the network and returns 0 (then
 * @cb runs once, later, as cs_read would call it) or a negative errno (no
 * callback). @urgent: a reader waits for it, else read-ahead. @file: the
 * content id of the file it belongs to (where to look for holders), or NULL.
 */
typedef int fs_fetch_fn(void *arg, const uint8_t id[static CS_ID_LEN], const uint8_t *file,
			bool urgent, cs_read_fn *cb, void *cb_arg);
void fs_set_fetch(struct fs *fs, fs_fetch_fn *fn, void *arg);

/* After a flush stored a file version here: its content id (@file) and
 * its @n chunk ids (CS_ID_LEN bytes each, back to back), the manifest's
 * root included. */
typedef void fs_stored_fn(void *arg, const uint8_t *file, const uint8_t *ids, size_t n);
void fs_set_stored_cb(struct fs *fs, fs_stored_fn *fn, void *arg);

/* How many other members are known to hold all of @n chunk ids. */
typedef unsigned fs_holders_fn(void *arg, const uint8_t *ids, size_t n);
void fs_set_holders_cb(struct fs *fs, fs_holders_fn *fn, void *arg);
/*
 * fs_file_presence() - of file @ino: bytes whose chunks are stored here,
 * its size, and other members known to hold all of it. Uses the store
 * only, never the network. -EISDIR for a non-file.
 */
P2P_MUST_CHECK int fs_file_presence(struct fs *fs, uint64_t ino, uint64_t *ret_local,
				    uint64_t *ret_total, unsigned *ret_holders);

/*
 * fs_apply_record() - merge a namespace record from a peer (ns_apply) and
 * bring the kernel's caches and open files up to date with what changed.
 * Returns ns_apply's result.
 */
P2P_MUST_CHECK int fs_apply_record(struct fs *fs, const uint8_t *rec, size_t len);

struct fs_stats {
	uint64_t requests;
	uint64_t reads, read_bytes;
	uint64_t writes, write_bytes;
	uint64_t flushes, flush_bytes_hashed, chunks_new, chunks_dedup;
	uint64_t commits, fsyncs;
	uint64_t open_files, dirty_files;
	uint64_t staged_mem_bytes; /* written bytes waiting in memory to be chunked */
	uint64_t write_waits;	   /* writes that waited for chunking to catch up */
	uint64_t unchunked_bytes;  /* written and not yet chunked (bounded: writes wait) */
	uint64_t read_errors;
	uint64_t read_waits;	 /* chunk pieces a read had to wait for (not in memory) */
	uint64_t remote_changes; /* names and entries changed by records from peers */
	uint64_t fetches;	 /* chunks asked of the network */
};

void fs_get_stats(struct fs *fs, struct fs_stats *ret_stats);

#endif
