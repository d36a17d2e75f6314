/* SPDX-License-Identifier: MIT */
/*
 * chunkstore/store.h - the content-addressed chunk store.
 *
 * Chunks are kept in append-only pack files with a per-record XXH3 checksum
 * that is checked on every read; an in-memory index (an xxHash-keyed table)
 * maps chunk id -> record. The store knows nothing of files, FUSE or peers.
 *
 * Pinned chunks (written by this node, or pinned by the user) are never
 * evicted. Unpinned chunks (fetched from peers) are a cache limited by the
 * quota and evicted least-recently-used.
 *
 * Durability: a put is readable at once; it is durable after the next
 * cs_store_sync() returns. Anything that refers to a chunk (a manifest, a
 * namespace log record) must be written only after a sync that covers the
 * chunk, so a crash can never leave a reference to a missing chunk. After a
 * crash the store opens from its last index checkpoint plus a scan of the
 * pack tails written since (never a rescan of all data); records torn by the
 * crash are dropped.
 *
 * Threads: cs_put, cs_get, cs_has, cs_pin, cs_unpin, cs_store_sync and
 * cs_store_stats may be called from any thread. cs_read() is asynchronous
 * and bound to the one event loop passed to cs_store_set_loop(). A writable
 * store runs one thread of its own (checkpoints, punching out evicted data).
 * Close only when no other call is running and no cs_read is in flight.
 */
#ifndef P2P_CHUNKSTORE_STORE_H
#define P2P_CHUNKSTORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunkstore/cdc.h"
#include "common/ev.h"
#include "common/util.h"

struct cs_store;

struct cs_store_opts {
	uint64_t cache_quota; /* bytes of unpinned chunks kept; 0: 10 GiB */
	uint64_t
	    min_free; /* puts fail -ENOSPC when the disk has less free; 0: 1% or 1 GiB, the smaller */
	uint64_t pack_size; /* bytes per pack file before a new one starts; 0: 4 GiB */
	uint64_t mem_cache; /* bytes of verified chunk data cs_read keeps in memory; 0: 64 MiB */
	bool read_only;	    /* open for inspection (scrub of a stopped node, tools) */
};

/* Opens (creating if needed) the store in @dir. */
P2P_MUST_CHECK int cs_store_open(const char *dir, const struct cs_store_opts *opts,
				 struct cs_store **ret_store);
/* Syncs, writes an index checkpoint and frees. Returns the first error. NULL is a no-op. */
int cs_store_close(struct cs_store *s);

#define CS_PUT_PIN (1U << 0)	/* pin the chunk (new or existing) */
#define CS_PUT_VERIFY (1U << 1) /* recompute SHA-256 and refuse a mismatch (-EBADMSG) */

/*
 * cs_put() - store @len bytes under @id. The caller has computed @id unless
 * it passes CS_PUT_VERIFY. Returns 1 if stored, 0 if already present (then
 * only CS_PUT_PIN has an effect), -ENOSPC (disk reserve reached, or an
 * unpinned chunk larger than the whole cache quota: pinned bytes do not
 * count against cache_quota, evicting unpinned ones always makes room),
 * -EMSGSIZE (len over the limit), -EBADMSG (CS_PUT_VERIFY and the data does
 * not hash to @id), -EROFS (read-only store), -EIO. @data is not retained.
 */
P2P_MUST_CHECK int cs_put(struct cs_store *s, const uint8_t id[static CS_ID_LEN], const void *data,
			  size_t len, unsigned flags);

/*
 * cs_get() - read chunk @id into a new buffer (caller frees). Returns 0,
 * -ENOENT, -EBADMSG when the stored bytes fail their checksum (the record is
 * then dropped from the index so it can be fetched again), -EIO.
 */
P2P_MUST_CHECK int cs_get(struct cs_store *s, const uint8_t id[static CS_ID_LEN], uint8_t **ret_buf,
			  size_t *ret_len);

/* 0 and the length if present, else -ENOENT. Does not touch the disk. */
P2P_MUST_CHECK int cs_has(struct cs_store *s, const uint8_t id[static CS_ID_LEN],
			  uint32_t *ret_len);

/* Pin / unpin a present chunk: 0, or -ENOENT. */
P2P_MUST_CHECK int cs_pin(struct cs_store *s, const uint8_t id[static CS_ID_LEN]);
P2P_MUST_CHECK int cs_unpin(struct cs_store *s, const uint8_t id[static CS_ID_LEN]);

/* Every cs_put that returned before this call is on stable storage when it returns. */
P2P_MUST_CHECK int cs_store_sync(struct cs_store *s);

/* Write an index checkpoint so the next open scans only what follows. */
P2P_MUST_CHECK int cs_store_checkpoint(struct cs_store *s);

struct cs_stats {
	uint64_t chunks, bytes; /* everything stored */
	uint64_t pinned_chunks, pinned_bytes;
	uint64_t cache_bytes, cache_quota; /* unpinned bytes and their limit */
	uint64_t disk_bytes;		   /* space the packs take on disk */
	/* Since open: chunks stored (cs_put returned 1) and their bytes; puts of present chunks. */
	uint64_t puts, put_bytes, dedup_hits;
	/* Since open; corrupt also counts records found lost at open. */
	uint64_t gets, get_bytes, evictions, corrupt;
	uint64_t direct_gets;	  /* of the gets by cs_read, those read with O_DIRECT */
	uint64_t index_mem;	  /* bytes of memory the index uses */
	uint64_t mem_cache_bytes; /* bytes held by the cs_read memory cache */
	/* Pack bytes read at open to replay what followed the checkpoint. */
	uint64_t open_scan_bytes;
	uint64_t open_usec;   /* how long cs_store_open() took */
	uint64_t checkpoints; /* index checkpoints written since open */
};

void cs_store_stats(struct cs_store *s, struct cs_stats *ret_stats);

/*
 * Asynchronous verified reads for the event-loop thread (FUSE reads, serving
 * peers). Data comes back in a reference-counted buffer.
 */
struct cs_buf;
const uint8_t *cs_buf_data(const struct cs_buf *b);
size_t cs_buf_len(const struct cs_buf *b);
struct cs_buf *cs_buf_ref(struct cs_buf *b);
void cs_buf_unref(struct cs_buf *b); /* NULL is a no-op */

/* Bind cs_read to @loop (the loop whose thread will call it). */
void cs_store_set_loop(struct cs_store *s, struct ev_loop *loop);

/*
 * cs_cache_put() - a buffer for chunk @id from @mem (malloc'd, @len bytes,
 * already verified against @id by the caller; ownership passes here), put
 * in the memory cache for later cs_read calls. Returns a new reference, or
 * NULL (out of memory; @mem is freed). Loop thread only.
 */
struct cs_buf *cs_cache_put(struct cs_store *s, const uint8_t id[static CS_ID_LEN], void *mem,
			    size_t len);

/* @rc is 0 with @buf (borrowed: cs_buf_ref() to keep it), or -ENOENT/-EBADMSG/-EIO with NULL. */
typedef void cs_read_fn(void *arg, int rc, struct cs_buf *buf);

/*
 * cs_read() - read chunk @id. Returns 1 with *ret_buf set (a new reference)
 * when the chunk is in the memory cache; 0 when a read was started, and @cb
 * will run exactly once later on the loop; or a negative errno (-ENOENT if
 * absent) with no callback. Concurrent reads of one chunk share one disk read.
 */
P2P_MUST_CHECK int cs_read(struct cs_store *s, const uint8_t id[static CS_ID_LEN], cs_read_fn *cb,
			   void *arg, struct cs_buf **ret_buf);

/*
 * Scrub: re-read every chunk, check the record checksum and the SHA-256 id.
 * @bad is called for each chunk that fails (it has then been dropped from the
 * index); @progress (may be NULL) every few hundred MiB. Returns the number
 * of bad chunks or a negative errno. Runs on the calling thread.
 */
typedef void cs_scrub_bad_fn(void *arg, const uint8_t id[static CS_ID_LEN], int rc);
typedef void cs_scrub_progress_fn(void *arg, uint64_t done_bytes, uint64_t total_bytes);
P2P_MUST_CHECK long cs_scrub(struct cs_store *s, cs_scrub_bad_fn *bad,
			     cs_scrub_progress_fn *progress, void *arg);

/*
 * Garbage collection of pins: between cs_mark_begin() and cs_mark_end() the
 * caller marks every chunk still referenced; cs_mark_end() unpins every
 * pinned chunk that was neither marked nor put since cs_mark_begin(), turning
 * it into evictable cache. Returns the number unpinned.
 */
void cs_mark_begin(struct cs_store *s);
void cs_mark(struct cs_store *s, const uint8_t id[static CS_ID_LEN]);
long cs_mark_end(struct cs_store *s);

/*
 * Calls @fn for every stored chunk id, no lock held during @fn (which may call
 * into the store). Each chunk present for the whole call is reported exactly
 * once; chunks put or dropped meanwhile may or may not be.
 */
typedef void cs_foreach_fn(void *arg, const uint8_t id[static CS_ID_LEN], uint32_t len,
			   bool pinned);
P2P_MUST_CHECK int cs_foreach(struct cs_store *s, cs_foreach_fn *fn, void *arg);

#endif
