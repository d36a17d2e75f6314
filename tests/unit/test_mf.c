// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_mf.c - manifests: encoding round trips at one and several
 * levels, canonical ids, and rejection of every malformed block.
 */
#include "fs/mf.h"
#include "common/rbuf.h"
#include "tests/lib/t.h"

#include <errno.h>

struct table {
	struct mf_block *b;
	size_t n;
};

static int table_get(void *arg, const uint8_t id[static CS_ID_LEN], uint8_t **ret, size_t *len)
{
	struct table *t = arg;

	for (size_t i = 0; i < t->n; i++)
		if (!memcmp(t->b[i].id, id, CS_ID_LEN)) {
			*ret = malloc(t->b[i].len);
			memcpy(*ret, t->b[i].data, t->b[i].len);
			*len = t->b[i].len;
			return 0;
		}
	return -ENOENT;
}

static void make(struct mf *m, size_t n)
{
	mf_init(m);
	for (size_t i = 0; i < n; i++) {
		uint8_t id[CS_ID_LEN];

		t_rand_fill(id, sizeof(id));
		T_ASSERT_OK(mf_append(m, id, (uint32_t)(1 + t_rand() % (4 * 1024 * 1024))));
	}
}

static void roundtrip(size_t n, size_t want_blocks)
{
	struct mf m, back;
	struct table t;

	make(&m, n);
	T_ASSERT_OK(mf_encode(&m, &t.b, &t.n));
	T_ASSERT_EQ(t.n, want_blocks);
	T_ASSERT_OK(mf_load(t.b[t.n - 1].id, table_get, &t, &back));
	T_ASSERT_EQ(back.n, m.n);
	T_ASSERT_EQ(back.size, m.size);
	for (size_t i = 0; i < n; i++) {
		T_ASSERT_EQ(back.c[i].off, m.c[i].off);
		T_ASSERT_EQ(back.c[i].len, m.c[i].len);
		T_ASSERT_MEM_EQ(back.c[i].id, m.c[i].id, CS_ID_LEN);
	}
	mf_blocks_free(t.b, t.n);
	mf_done(&m);
	mf_done(&back);
}

static void roundtrip_one_block(void)
{
	roundtrip(1, 1);
	roundtrip(1000, 1);
	roundtrip(MF_BLOCK_ENTRIES, 1);
}

static void roundtrip_two_levels(void)
{
	/* 16385 chunks: two leaves and a root. */
	roundtrip(MF_BLOCK_ENTRIES + 1, 3);
	roundtrip(3 * MF_BLOCK_ENTRIES + 7, 5);
}

static void encoding_is_canonical(void)
{
	struct mf a, b;
	struct mf_block *x, *y;
	size_t nx, ny;

	t_rand_seed(42);
	make(&a, 5000);
	t_rand_seed(42);
	make(&b, 5000);
	T_ASSERT_OK(mf_encode(&a, &x, &nx));
	T_ASSERT_OK(mf_encode(&b, &y, &ny));
	T_ASSERT_EQ(nx, ny);
	T_ASSERT_MEM_EQ(x[nx - 1].id, y[ny - 1].id, CS_ID_LEN);
	mf_blocks_free(x, nx);
	mf_blocks_free(y, ny);
	mf_done(&a);
	mf_done(&b);
}

static void find_by_offset(void)
{
	struct mf m;

	make(&m, 100);
	for (int k = 0; k < 1000; k++) {
		uint64_t off = t_rand() % m.size;
		size_t i = mf_find(&m, off);

		T_ASSERT(m.c[i].off <= off && off < m.c[i].off + m.c[i].len);
	}
	mf_done(&m);
}

static uint8_t *valid_block(size_t n, size_t *ret_len)
{
	struct mf m;
	struct mf_block *b;
	size_t nb;
	uint8_t *copy;

	make(&m, n);
	T_ASSERT_OK(mf_encode(&m, &b, &nb));
	T_ASSERT_EQ(nb, 1);
	copy = malloc(b[0].len);
	memcpy(copy, b[0].data, b[0].len);
	*ret_len = b[0].len;
	mf_blocks_free(b, nb);
	mf_done(&m);
	return copy;
}

static void rejects_malformed_blocks(void)
{
	size_t len;
	uint8_t *blk = valid_block(3, &len);
	unsigned level;
	uint32_t count;
	uint64_t total;

	T_ASSERT_OK(mf_parse_block(blk, len, &level, &count, &total));
	/* Every truncation. */
	for (size_t n = 0; n < len; n++)
		T_ASSERT(mf_parse_block(blk, n, &level, &count, &total) < 0);
	/* Trailing bytes. */
	{
		uint8_t *more = malloc(len + 1);

		memcpy(more, blk, len);
		more[len] = 0;
		T_ASSERT(mf_parse_block(more, len + 1, &level, &count, &total) < 0);
		free(more);
	}
	/* Field by field. */
	{
		struct {
			size_t off;
			uint8_t val;
		} bad[] = {
			{ 0, 'X' }, /* magic */
			{ 4, 2 },   /* version */
			{ 5, 4 },   /* level above the maximum */
			{ 6, 1 },   /* reserved */
			{ 15, 1 },  /* declared total off by one */
			{ 19, 4 },  /* count larger than the entries */
			{ 19, 0 },  /* count 0 */
		};

		for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
			uint8_t save = blk[bad[i].off];

			blk[bad[i].off] = bad[i].val;
			if (bad[i].off == 15)
				blk[15] ^= 1;
			T_ASSERT(mf_parse_block(blk, len, &level, &count, &total) < 0);
			blk[bad[i].off] = save;
		}
	}
	/* A zero-length chunk, and one over the chunk limit. */
	{
		uint8_t save[8];
		size_t e = MF_HDR_LEN + CS_ID_LEN; /* length of entry 0 */

		memcpy(save, blk + e, 8);
		be64_put(blk + e, 0);
		T_ASSERT(mf_parse_block(blk, len, &level, &count, &total) < 0);
		be64_put(blk + e, (uint64_t)CS_CHUNK_MAX_LIMIT + 1);
		T_ASSERT(mf_parse_block(blk, len, &level, &count, &total) < 0);
		memcpy(blk + e, save, 8);
	}
	T_ASSERT_OK(mf_parse_block(blk, len, &level, &count, &total));
	free(blk);
}

static void loader_rejects_inconsistent_trees(void)
{
	struct mf m, out;
	struct table t;
	uint8_t *root;

	make(&m, MF_BLOCK_ENTRIES + 1);
	T_ASSERT_OK(mf_encode(&m, &t.b, &t.n));
	/* A leaf given where the root is expected parses, but a root that names a
	 * child with the wrong covered length must not load: corrupt the root's
	 * first child length and re-hash nothing (the table is keyed by old ids). */
	root = t.b[t.n - 1].data;
	be64_put(root + MF_HDR_LEN + CS_ID_LEN, be64_get(root + MF_HDR_LEN + CS_ID_LEN) + 1);
	be64_put(root + 8, be64_get(root + 8) + 1);
	T_ASSERT(mf_load(t.b[t.n - 1].id, table_get, &t, &out) < 0);
	/* A missing block is an error, not a short manifest. */
	t.n = 1;
	T_ASSERT(mf_load(t.b[2].id, table_get, &t, &out) == -ENOENT);
	t.n = 3;
	mf_blocks_free(t.b, t.n);
	mf_done(&m);
}

T_MAIN(T_CASE(roundtrip_one_block), T_CASE(roundtrip_two_levels), T_CASE(encoding_is_canonical),
       T_CASE(find_by_offset), T_CASE(rejects_malformed_blocks),
       T_CASE(loader_rejects_inconsistent_trees))
