/* SPDX-License-Identifier: MIT */
/*
 * fs/mf.h - file manifests: the ordered chunk list of one file version.
 *
 * A manifest is stored as one or more blocks in the chunk store; the id of
 * the root block is the manifest id. A block lists either chunks (level 0) or
 * child blocks (level 1..MF_LEVEL_MAX), so a file of any size up to hundreds
 * of TiB has a manifest of bounded blocks.
 *
 * Block layout (big-endian):
 *
 *   offset  size  field
 *   0       4     magic "P2MF"
 *   4       1     format version (1)
 *   5       1     level: 0 = children are chunks, n > 0 = children are blocks
 *   6       2     reserved, 0
 *   8       8     bytes covered by this block (sum of the children's lengths)
 *   16      4     child count, 1..MF_BLOCK_ENTRIES
 *   20      40·n  children: id (32 bytes), length (u64: a chunk's length at
 *                 level 0, 1..CS_CHUNK_MAX_LIMIT; bytes covered by the child
 *                 block above it)
 *
 * The encoding is canonical (one manifest has one encoding), so two nodes
 * that chunk the same bytes store the same manifest id.
 *
 * In memory a manifest is flattened into struct mf: an array of (offset,
 * length, id) sorted by offset.
 */
#ifndef P2P_FS_MF_H
#define P2P_FS_MF_H

#include <stddef.h>
#include <stdint.h>

#include "chunkstore/cdc.h"
#include "common/util.h"

#define MF_MAGIC 0x50324d46U /* "P2MF" */
#define MF_VERSION 1
#define MF_HDR_LEN 20
#define MF_ENTRY_LEN 40
#define MF_BLOCK_ENTRIES 16384 /* 640 KiB blocks: 16 GiB of file per leaf at 1 MiB chunks */
#define MF_LEVEL_MAX 3
#define MF_BLOCK_MAX (MF_HDR_LEN + MF_ENTRY_LEN * MF_BLOCK_ENTRIES)

struct mf_chunk {
	uint64_t off;
	uint32_t len;
	uint8_t id[CS_ID_LEN];
};

struct mf {
	uint64_t size;
	size_t n;
	size_t cap;
	struct mf_chunk *c; /* sorted by off, contiguous: c[i+1].off == c[i].off + c[i].len */
};

/* An empty manifest. */
void mf_init(struct mf *m);
void mf_done(struct mf *m);
/* Append a chunk at the end. Returns 0 or -ENOMEM. */
P2P_MUST_CHECK int mf_append(struct mf *m, const uint8_t id[static CS_ID_LEN], uint32_t len);
/* Deep copy. */
P2P_MUST_CHECK int mf_copy(struct mf *dst, const struct mf *src);
/* Index of the chunk holding byte @off (off < size), by binary search. */
size_t mf_find(const struct mf *m, uint64_t off);

/* One encoded block ready to be stored. */
struct mf_block {
	uint8_t id[CS_ID_LEN];
	size_t len;
	uint8_t *data; /* owned */
};

/*
 * mf_encode() - encode @m (n >= 1) into blocks, leaves first, the root last.
 * Sets *ret_blocks (caller frees with mf_blocks_free) and *ret_n; the root id
 * is (*ret_blocks)[*ret_n - 1].id.
 */
P2P_MUST_CHECK int mf_encode(const struct mf *m, struct mf_block **ret_blocks, size_t *ret_n);
void mf_blocks_free(struct mf_block *b, size_t n);

/*
 * mf_parse_block() - validate one block (untrusted bytes). Sets *ret_level and
 * *ret_count; entries are then read with mf_block_entry(). Returns 0,
 * -EPROTO (malformed), -EMSGSIZE (too many entries).
 */
P2P_MUST_CHECK int mf_parse_block(const uint8_t *buf, size_t len, unsigned *ret_level,
				  uint32_t *ret_count, uint64_t *ret_total);
/* Entry @i of a block that mf_parse_block() accepted. */
void mf_block_entry(const uint8_t *buf, uint32_t i, uint8_t ret_id[static CS_ID_LEN],
		    uint64_t *ret_len);

/*
 * Loading a manifest tree through a block reader, synchronously (worker
 * threads and tools). @get returns a new buffer (caller frees) or a negative
 * errno.
 */
typedef int mf_get_fn(void *arg, const uint8_t id[static CS_ID_LEN], uint8_t **ret_buf,
		      size_t *ret_len);
P2P_MUST_CHECK int mf_load(const uint8_t root[static CS_ID_LEN], mf_get_fn *get, void *arg,
			   struct mf *ret_m);

/*
 * Incremental loading for the event loop: feed blocks as they arrive.
 * mf_loader_init() with the root id; mf_loader_next() names the next block
 * needed (returns 1), or returns 0 when the manifest is complete; feed that
 * block with mf_loader_feed(). Blocks are requested depth-first in file order.
 */
struct mf_frame {
	uint8_t *buf; /* owned copy of an inner block */
	uint32_t count, next;
	uint64_t total;
	unsigned level;
};

struct mf_loader {
	struct mf m;
	unsigned depth;
	struct mf_frame stack[MF_LEVEL_MAX + 1];
	uint8_t want[CS_ID_LEN];
	uint64_t want_len;   /* bytes the wanted block must cover, 0 for the root */
	unsigned want_level; /* level the wanted block must have; MF_LEVEL_MAX + 1: any */
	int started;
};

void mf_loader_init(struct mf_loader *ld, const uint8_t root[static CS_ID_LEN]);
void mf_loader_done(struct mf_loader *ld);
int mf_loader_next(struct mf_loader *ld, uint8_t ret_id[static CS_ID_LEN]);
P2P_MUST_CHECK int mf_loader_feed(struct mf_loader *ld, const uint8_t *buf, size_t len);
/* Move the finished manifest out of the loader. */
void mf_loader_take(struct mf_loader *ld, struct mf *ret_m);

#endif
