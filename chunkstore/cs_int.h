/* SPDX-License-Identifier: MIT */
/*
 * chunkstore/cs_int.h - what the chunk store's files share: the index, the
 * pack table and struct cs_store. Never included from outside chunkstore/
 * (the fuzz targets excepted).
 *
 * Locking: one mutex, s->lock, guards the index, the pack table, the write
 * queue, the counters and the eviction state. It is held only for memory
 * work and never across disk I/O, except when a new pack file is created
 * (once per pack_size bytes). The memory cache and the pending cs_read
 * table belong to the loop thread and take no lock.
 */
#ifndef P2P_CHUNKSTORE_CS_INT_H
#define P2P_CHUNKSTORE_CS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "chunkstore/cs_format.h"
#include "chunkstore/store.h"
#include "common/ev.h"

/* ---- the index (index.c) ---- */

/*
 * One entry per chunk: 48 bytes. The table holds u32 cells: the top
 * CS_TAG_BITS bits are a tag taken from the hash (so most probes that miss
 * never touch an entry) and the low bits are slot + 1 (0 = empty cell).
 */
struct cs_entry {
	uint8_t id[CS_ID_LEN];
	uint64_t loc;	/* location of the chunk record; next free slot + 1 when free */
	uint32_t lenf;	/* CS_E_LEN_MASK bits of length, then CS_E_* flags */
	uint32_t atime; /* LRU clock at the last use */
};
_Static_assert(sizeof(struct cs_entry) == 48, "48 bytes per chunk");

#define CS_E_LEN_MASK ((1U << 25) - 1)
#define CS_E_LIVE (1U << 25)	/* slot in use */
#define CS_E_PINNED (1U << 26)	/* never evicted */
#define CS_E_WRITING (1U << 27) /* record being written: not readable yet */
#define CS_E_MARK (1U << 28)	/* GC mark, compared with s->mark_val */

#define CS_SLOT_BITS 28
#define CS_TAG_BITS (32 - CS_SLOT_BITS)
#define CS_INDEX_MAX ((1U << CS_SLOT_BITS) - 2) /* 268 M chunks */
#define CS_BLOCK_SHIFT 12			/* 4096 entries (192 KiB) per block */
#define CS_NO_SLOT UINT32_MAX

struct cs_index {
	struct cs_entry **blocks;
	uint32_t nblocks, blocks_cap;
	uint32_t nslots;    /* slots ever handed out (high-water mark) */
	uint32_t free_head; /* slot + 1 of the first free slot, 0 if none */
	uint32_t count;	    /* live entries */
	uint32_t *tab;
	uint32_t tab_mask; /* table size - 1 (a power of two) */
	uint64_t seed;	   /* XXH3 seed: random per process */
};

P2P_MUST_CHECK int cs__index_init(struct cs_index *ix, uint64_t seed, uint64_t expect);
void cs__index_done(struct cs_index *ix);
/* Start loading the table cell where @id's probe begins (bulk loads call it ahead). */
void cs__index_prefetch(const struct cs_index *ix, const uint8_t id[static CS_ID_LEN]);
/* Slot of @id, or CS_NO_SLOT. */
uint32_t cs__index_find(const struct cs_index *ix, const uint8_t id[static CS_ID_LEN]);
/* New live entry for @id: zeroed but for id and CS_E_LIVE. -EEXIST, -ENOMEM, -ENOSPC (full). */
P2P_MUST_CHECK int cs__index_add(struct cs_index *ix, const uint8_t id[static CS_ID_LEN],
				 uint32_t *ret_slot);
void cs__index_del(struct cs_index *ix, uint32_t slot);
/* Bytes of memory the index holds. */
uint64_t cs__index_mem(const struct cs_index *ix);
/* The keyed hash of @id the table uses (for other id-keyed tables of the store). */
uint64_t cs__id_hash(const struct cs_index *ix, const uint8_t id[static CS_ID_LEN]);

static inline struct cs_entry *cs__index_at(const struct cs_index *ix, uint32_t slot)
{
	return &ix->blocks[slot >> CS_BLOCK_SHIFT][slot & ((1U << CS_BLOCK_SHIFT) - 1)];
}

/* ---- the store ---- */

struct cs_pack {
	uint32_t no;
	int fd;		    /* O_RDWR (O_RDONLY when read-only) */
	int dfd;	    /* O_DIRECT reader; -1 not opened yet, -2 not supported */
	uint64_t salt;	    /* from the pack header */
	uint64_t size;	    /* bytes written or reserved (the append offset) */
	uint64_t live;	    /* bytes of live chunk records */
	uint64_t alloc;	    /* estimate of the bytes allocated on disk */
	uint64_t dirty_gen; /* bumped when a write to the pack completes */
	uint64_t synced_gen;
	uint32_t refs; /* users of fd/dfd outside the lock */
	bool dead;     /* unlinked: close when refs reaches 0 */
};

/* A reserved write in flight, on the writer's stack, in ticket order. */
struct cs_wr {
	uint64_t ticket;
	uint64_t loc;
	struct cs_wr *prev, *next;
};

/* A record whose data is punched out once its delete record is durable. */
struct cs_punch {
	uint64_t ticket; /* of the write that holds the delete record */
	uint64_t loc;
	uint32_t len; /* data length of the evicted chunk */
};

/* A chunk dropped from the index whose delete record is still to be written. */
struct cs_victim {
	uint8_t id[CS_ID_LEN];
	uint64_t loc;
	uint32_t len;
};

struct cs_mem; /* the memory cache and pending reads (read.c) */

enum cs_read_mode {
	CS_READ_AUTO,	  /* buffered if the page cache holds the record, else O_DIRECT */
	CS_READ_DIRECT,	  /* always O_DIRECT */
	CS_READ_BUFFERED, /* always through the page cache */
};

struct cs_store {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a write finished or an entry left CS_E_WRITING */
	/* Held around the copy of a record into a pack: two threads writing one
	 * file serialize on its inode lock anyway, and in the kernel the
	 * waiter spins (6 % of a long write's CPU here); here it sleeps. */
	pthread_mutex_t wlock;
	atomic_bool direct_writes; /* large records with O_DIRECT (store.c cs_put) */

	char *dir;
	int dirfd; /* holds the flock */
	struct cs_store_opts opts;

	struct cs_index ix;
	struct cs_pack **packs; /* sorted by number */
	uint32_t npacks, packs_cap;
	struct cs_pack *cur; /* the pack appended to */

	/* writes */
	uint64_t seq;	     /* last ticket handed out */
	uint64_t synced_seq; /* every write with a ticket <= this is durable */
	struct cs_wr *wr_head, *wr_tail;
	int io_err; /* latched: a failed fdatasync leaves the page cache unknowable */

	/* eviction */
	struct cs_punch *punch;
	size_t npunch, punch_cap;
	uint64_t punch_since_ms;   /* when the oldest queued punch was queued */
	struct cs_victim *dropped; /* corrupt records dropped by readers: deletes to write */
	size_t ndropped, dropped_cap;
	struct {
		uint32_t slot, atime;
	} pool[16]; /* best eviction candidates, oldest first */
	unsigned npool;
	uint64_t rng;

	/* checkpoints */
	pthread_mutex_t ckpt_lock; /* one checkpoint at a time */
	uint64_t ckpt_cover;	   /* cover of the last durable checkpoint */
	uint64_t since_ckpt;	   /* bytes appended since the last checkpoint began */
	bool ckpt_wanted;
	uint64_t ckpt_last_ms; /* when the maintenance thread last wrote one */
	uint64_t ckpt_min;     /* least bytes between checkpoints (CKPT_MIN_INTERVAL) */

	/* disk space */
	uint64_t fs_free;    /* from statvfs */
	uint64_t fs_written; /* bytes appended since fs_free was measured */
	uint64_t fs_stat_ms; /* when */
	uint64_t min_free;

	/* GC marking */
	bool marking;
	uint32_t mark_val;
	uint32_t clock; /* LRU clock */

	/* counters (under lock) */
	struct cs_stats st;

	/* maintenance thread */
	pthread_t maint;
	bool maint_running, maint_stop;
	pthread_cond_t maint_cond;

	/* cs_read (loop thread) */
	struct ev_loop *loop;
	struct cs_mem *mem;
	atomic_uint_fast64_t mem_bytes;
	enum cs_read_mode read_mode; /* how cs_read reads records (read.c) */
};

/* Pack table, under s->lock. */
struct cs_pack *cs__pack_find(struct cs_store *s, uint32_t no);
void cs__pack_unref(struct cs_store *s, struct cs_pack *p);
/* Open the O_DIRECT reader of @p if possible; returns it or -1. Lock not held; p ref'd. */
int cs__pack_dfd(struct cs_store *s, struct cs_pack *p);

/* Look up @id for reading: copies its location and length, refs its pack, touches it. */
P2P_MUST_CHECK int cs__lookup_for_read(struct cs_store *s, const uint8_t id[static CS_ID_LEN],
				       uint64_t *ret_loc, uint32_t *ret_len,
				       struct cs_pack **ret_pack);
/*
 * A read of @id at @loc failed verification: drop it from the index if it
 * still points there and count it. Returns -EBADMSG, or -ENOENT when the
 * entry had already gone or moved (evicted meanwhile: not corruption).
 */
int cs__read_failed(struct cs_store *s, const uint8_t id[static CS_ID_LEN], uint64_t loc);
/*
 * Check a record read into @rec (CS_REC_HDR_LEN + len bytes, as read, @got
 * of them valid) against its location, id and checksums. 0 or -EBADMSG.
 */
P2P_MUST_CHECK int cs__verify(const struct cs_pack *p, uint64_t loc,
			      const uint8_t id[static CS_ID_LEN], uint32_t len, const uint8_t *hdr,
			      const uint8_t *data, size_t got);

/* Pin or unpin @e in memory, keeping the counters. Lock held. */
void cs__set_pinned(struct cs_store *s, struct cs_entry *e, bool pinned);
/* Mark @id used (LRU) if present. */
void cs__touch(struct cs_store *s, const uint8_t id[static CS_ID_LEN]);

/* Memory cache (read.c). Frees it; runs the loop until pending reads end if on its thread. */
void cs__mem_free(struct cs_store *s);
/* Checkpoint after @bytes of appends at least (256 MiB by default): for tests. */
void cs__set_ckpt_interval(struct cs_store *s, uint64_t bytes);
/* How cs_read reads records (CS_READ_AUTO by default, see read.c): for tests
 * and benchmarks. */
void cs__set_read_mode(struct cs_store *s, enum cs_read_mode mode);

/* Unlink packs emptied before @cover (a durable checkpoint's). Lock not held. */
void cs__packs_retire(struct cs_store *s, uint64_t cover);
/* Reset the index and its counters to empty (a checkpoint failed half-loaded). Lock held. */
P2P_MUST_CHECK int cs__index_reset(struct cs_store *s);
/* Add an entry as loaded from a checkpoint or found by replay, with its accounting. Lock held. */
P2P_MUST_CHECK int cs__entry_load(struct cs_store *s, const uint8_t id[static CS_ID_LEN],
				  uint64_t loc, uint32_t len, bool pinned, uint32_t atime);

/* Checkpoints (ckpt.c). */
P2P_MUST_CHECK int cs__ckpt_write(struct cs_store *s);
/* Load the checkpoint into the empty index; sets *ret_cover. -ENOENT if none. */
P2P_MUST_CHECK int cs__ckpt_read(struct cs_store *s, uint64_t *ret_cover);

/* Internal sync: waits for every write with a ticket <= @snap, then fdatasyncs. */
P2P_MUST_CHECK int cs__sync_upto(struct cs_store *s, uint64_t snap);

/* cs_cdc_cut() computed with the plain serial gear loop: the reference the tests check the lanes against. */
size_t cs__cdc_cut_serial(const struct cs_cdc_params *p, const uint8_t *buf, size_t len, bool eof);

/* Alignment of O_DIRECT reads. */
#define CS_DIO_ALIGN 4096U

#endif
