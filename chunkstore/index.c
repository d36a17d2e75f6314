// SPDX-License-Identifier: MIT
/*
 * chunkstore/index.c - the in-memory chunk index: id -> entry.
 *
 * Entries (48 bytes: id, location, length and flags, last access) live in a
 * dense array of fixed blocks and never move while live, so a slot number
 * names an entry for as long as it exists. Lookup is an open-addressing
 * table of u32 cells with linear probing (load <= 3/4) and backward-shift
 * deletion (no tombstones). That is ~53-59 bytes per chunk in all; a
 * pointer-based map would need twice that.
 *
 * The table is keyed by XXH3-64 of the id with a seed drawn at random per
 * process: ids are SHA-256 of data that peers choose, and with a known
 * mapping a peer could send chunks whose ids all land in one probe run.
 * XXH3 is compiled inline here (XXH_INLINE_ALL): for 32-byte keys the call
 * into libxxhash costs more than the hash.
 *
 * Invariants:
 *  1. Every live entry has exactly one table cell, reachable from its home
 *     position without crossing an empty cell.
 *  2. A cell's tag equals the top CS_TAG_BITS of its entry's hash.
 *  3. tab_mask + 1 >= count * 4 / 3 after every add.
 *  Not thread-safe: the store's lock covers every call.
 */
#include "chunkstore/cs_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define SLOT_MASK ((1U << CS_SLOT_BITS) - 1)
#define BLOCK_ENTS (1U << CS_BLOCK_SHIFT)
#define TAB_MIN 1024U

static inline uint64_t key_hash(const struct cs_index *ix, const uint8_t *id)
{
	return XXH3_64bits_withSeed(id, CS_ID_LEN, ix->seed);
}

static inline uint32_t cell_of(uint64_t h, uint32_t slot)
{
	return (uint32_t)(h >> (64 - CS_TAG_BITS)) << CS_SLOT_BITS | (slot + 1);
}

static inline uint32_t cell_slot(uint32_t c)
{
	return (c & SLOT_MASK) - 1;
}

static uint32_t tab_size_for(uint64_t n)
{
	uint64_t want = n + n / 3 + 1, size = TAB_MIN;

	while (size < want && size < (1ULL << 31))
		size <<= 1;
	return (uint32_t)size;
}

int cs__index_init(struct cs_index *ix, uint64_t seed, uint64_t expect)
{
	uint32_t size;

	memset(ix, 0, sizeof(*ix));
	ix->seed = seed;
	size = tab_size_for(P2P_MIN(expect, (uint64_t)CS_INDEX_MAX));
	if (!(ix->tab = calloc(size, sizeof(*ix->tab))))
		return -ENOMEM;
	ix->tab_mask = size - 1;
	return 0;
}

void cs__index_done(struct cs_index *ix)
{
	for (uint32_t i = 0; i < ix->nblocks; i++)
		free(ix->blocks[i]);
	free(ix->blocks);
	free(ix->tab);
	memset(ix, 0, sizeof(*ix));
}

void cs__index_prefetch(const struct cs_index *ix, const uint8_t id[static CS_ID_LEN])
{
	__builtin_prefetch(&ix->tab[(uint32_t)key_hash(ix, id) & ix->tab_mask], 1);
}

uint32_t cs__index_find(const struct cs_index *ix, const uint8_t id[static CS_ID_LEN])
{
	uint64_t h = key_hash(ix, id);
	uint32_t tag = (uint32_t)(h >> (64 - CS_TAG_BITS)), i = (uint32_t)h & ix->tab_mask;

	for (;;) {
		uint32_t c = ix->tab[i];

		if (!c)
			return CS_NO_SLOT;
		if (c >> CS_SLOT_BITS == tag &&
		    memcmp(cs__index_at(ix, cell_slot(c))->id, id, CS_ID_LEN) == 0)
			return cell_slot(c);
		i = (i + 1) & ix->tab_mask;
	}
}

static void tab_put(uint32_t *tab, uint32_t mask, uint64_t h, uint32_t cell)
{
	uint32_t i = (uint32_t)h & mask;

	while (tab[i])
		i = (i + 1) & mask;
	tab[i] = cell;
}

static int grow_table(struct cs_index *ix)
{
	uint32_t size = (ix->tab_mask + 1) * 2, *tab;

	if (!(tab = calloc(size, sizeof(*tab))))
		return -ENOMEM;
	for (uint32_t i = 0; i <= ix->tab_mask; i++) {
		uint32_t c = ix->tab[i];

		if (c)
			tab_put(tab, size - 1, key_hash(ix, cs__index_at(ix, cell_slot(c))->id), c);
	}
	free(ix->tab);
	ix->tab = tab;
	ix->tab_mask = size - 1;
	return 0;
}

static int alloc_slot(struct cs_index *ix, uint32_t *ret_slot)
{
	uint32_t slot;

	if (ix->free_head) {
		slot = ix->free_head - 1;
		ix->free_head = (uint32_t)cs__index_at(ix, slot)->loc;
		*ret_slot = slot;
		return 0;
	}
	if (ix->nslots > CS_INDEX_MAX)
		return -ENOSPC;
	if ((ix->nslots >> CS_BLOCK_SHIFT) == ix->nblocks) {
		struct cs_entry *b;

		if (ix->nblocks == ix->blocks_cap) {
			uint32_t cap = ix->blocks_cap ? ix->blocks_cap * 2 : 16;
			struct cs_entry **nb = realloc(ix->blocks, cap * sizeof(*nb));

			if (!nb)
				return -ENOMEM;
			ix->blocks = nb;
			ix->blocks_cap = cap;
		}
		if (!(b = malloc(BLOCK_ENTS * sizeof(*b))))
			return -ENOMEM;
		ix->blocks[ix->nblocks++] = b;
	}
	*ret_slot = ix->nslots++;
	return 0;
}

int cs__index_add(struct cs_index *ix, const uint8_t id[static CS_ID_LEN], uint32_t *ret_slot)
{
	uint64_t h = key_hash(ix, id);
	uint32_t tag = (uint32_t)(h >> (64 - CS_TAG_BITS)), i, slot;
	struct cs_entry *e;
	int rc;

	if (ix->count >= CS_INDEX_MAX)
		return -ENOSPC;
	if ((uint64_t)(ix->count + 1) * 4 > (uint64_t)(ix->tab_mask + 1) * 3 &&
	    (rc = grow_table(ix)) < 0)
		return rc;
	/* One probe run: it finds a duplicate or ends at the cell to fill. */
	for (i = (uint32_t)h & ix->tab_mask; ix->tab[i]; i = (i + 1) & ix->tab_mask) {
		uint32_t c = ix->tab[i];

		if (c >> CS_SLOT_BITS == tag &&
		    memcmp(cs__index_at(ix, cell_slot(c))->id, id, CS_ID_LEN) == 0)
			return -EEXIST;
	}
	if ((rc = alloc_slot(ix, &slot)) < 0)
		return rc;
	e = cs__index_at(ix, slot);
	memcpy(e->id, id, CS_ID_LEN);
	e->loc = 0;
	e->lenf = CS_E_LIVE;
	e->atime = 0;
	ix->tab[i] = cell_of(h, slot);
	ix->count++;
	*ret_slot = slot;
	return 0;
}

void cs__index_del(struct cs_index *ix, uint32_t slot)
{
	struct cs_entry *e = cs__index_at(ix, slot);
	uint32_t mask = ix->tab_mask, i = (uint32_t)key_hash(ix, e->id) & mask, j;

	assert(e->lenf & CS_E_LIVE);
	while (cell_slot(ix->tab[i]) != slot) {
		assert(ix->tab[i] != 0);
		i = (i + 1) & mask;
	}
	/* Backward shift: pull later cells of the run into the gap if their home allows. */
	for (j = i;;) {
		uint32_t c, home;

		j = (j + 1) & mask;
		if (!(c = ix->tab[j]))
			break;
		home = (uint32_t)key_hash(ix, cs__index_at(ix, cell_slot(c))->id) & mask;
		/* The cell at j may move to i unless its home lies cyclically in (i, j]. */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			ix->tab[i] = c;
			i = j;
		}
	}
	ix->tab[i] = 0;
	e->lenf = 0;
	e->loc = ix->free_head;
	ix->free_head = slot + 1;
	ix->count--;
}

uint64_t cs__index_mem(const struct cs_index *ix)
{
	return (uint64_t)ix->nblocks * BLOCK_ENTS * sizeof(struct cs_entry) +
	       (uint64_t)ix->blocks_cap * sizeof(*ix->blocks) +
	       (uint64_t)(ix->tab_mask + 1) * sizeof(*ix->tab);
}

uint64_t cs__id_hash(const struct cs_index *ix, const uint8_t id[static CS_ID_LEN])
{
	return key_hash(ix, id);
}
