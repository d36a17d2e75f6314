/* SPDX-License-Identifier: MIT */
/*
 * fs/fs_rechunk.h - turn a file's previous chunk list plus its dirty ranges
 * into the new chunk list, storing only new chunks. Runs on a worker thread.
 *
 * Only the regions around dirty ranges are re-chunked: from the start of the
 * old chunk holding the first dirty byte until a new cut point coincides with
 * an old one past the dirty bytes; everything else keeps its old chunks. As
 * FastCDC's cut decisions depend only on the bytes since the previous cut,
 * the result is exactly the chunk list that chunking the whole new file
 * would give (tests/unit/test_rechunk.c checks this), so identical content
 * always has identical chunk ids, whatever its write history.
 */
#ifndef P2P_FS_RECHUNK_H
#define P2P_FS_RECHUNK_H

#include <pthread.h>
#include <stdint.h>

#include "chunkstore/store.h"
#include "common/ev.h"
#include "fs/fs_ext.h"
#include "fs/fs_seg.h"
#include "fs/mf.h"

/* Reads base chunk @id into a new buffer (caller frees); cs_get by default. */
typedef int fs_chunk_get_fn(void *arg, const uint8_t id[static CS_ID_LEN], uint8_t **ret_buf,
			    size_t *ret_len);

/*
 * A window buffer kept between re-chunks. A long write is re-chunked every
 * 64 MiB, each time through a window of up to 32 MiB; a new window is fresh
 * memory, and faulting it in (zeroing pages, charging them to the cgroup)
 * took as long as cutting the bytes. Shared by the flush jobs of one
 * filesystem; a second job at the same time allocates its own.
 */
struct fs_rechunk_cache {
	pthread_mutex_t lock;
	uint8_t *buf;
	size_t cap;
};

void fs_rechunk_cache_init(struct fs_rechunk_cache *c);
/* Free the kept window (when nothing is being written). */
void fs_rechunk_cache_drop(struct fs_rechunk_cache *c);
void fs_rechunk_cache_done(struct fs_rechunk_cache *c);

struct fs_rechunk_in {
	const struct mf *base;	    /* the previous version's chunks */
	const struct fs_ext *dirty; /* ranges whose bytes are in the staging file */
	uint64_t size;		    /* the new size */
	int staging_fd;		    /* read with pread at file offsets */
	/* Staged bytes still in memory: one contiguous run, sorted; they take
	 * precedence over the staging file where they lie. */
	const struct fs_seg *run;
	size_t nrun;
	const struct cs_cdc_params *cdc;
	struct cs_store *cs;  /* new chunks are put here */
	unsigned put_flags;   /* e.g. CS_PUT_PIN */
	fs_chunk_get_fn *get; /* NULL: cs_get on @cs */
	void *get_arg;
	/* Where a helper may hash and store cut chunks beside the caller's
	 * thread; NULL: all on the caller's thread. */
	struct ev_pool *pool;
	struct fs_rechunk_cache *cache; /* NULL: a window of its own */
};

struct fs_rechunk_stats {
	uint64_t bytes_hashed;
	uint64_t chunks_new;   /* chunks the store did not have */
	uint64_t chunks_dedup; /* re-chunked chunks the store already had */
	uint64_t chunks_kept;  /* old chunks reused without reading */
};

P2P_MUST_CHECK int fs_rechunk(const struct fs_rechunk_in *in, struct mf *ret_mf,
			      struct fs_rechunk_stats *ret_stats);

#endif
