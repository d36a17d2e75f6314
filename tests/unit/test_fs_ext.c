// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_fs_ext.c - the dirty-range set against a bitmap model.
 */
#include "fs/fs_ext.h"
#include "tests/lib/t.h"

#define SPACE 4096

static void check(const struct fs_ext *e, const uint8_t *bits)
{
	uint8_t got[SPACE] = { 0 };

	for (size_t i = 0; i < e->n; i++) {
		T_ASSERT(e->r[i].start < e->r[i].end);
		if (i)
			T_ASSERT(e->r[i - 1].end < e->r[i].start); /* disjoint, not touching */
		for (uint64_t x = e->r[i].start; x < e->r[i].end; x++)
			got[x] = 1;
	}
	T_ASSERT_MEM_EQ(got, bits, SPACE);
}

static void random_adds_and_truncates_match_a_bitmap(void)
{
	for (int round = 0; round < 200; round++) {
		struct fs_ext e;
		uint8_t bits[SPACE] = { 0 };

		fs_ext_init(&e);
		for (int op = 0; op < 60; op++) {
			uint64_t a = t_rand() % SPACE, len = t_rand() % 200;
			uint64_t b = a + len > SPACE ? SPACE : a + len;

			if (t_rand() % 10 == 0) {
				fs_ext_truncate(&e, a);
				memset(bits + a, 0, SPACE - a);
			} else {
				T_ASSERT_OK(fs_ext_add(&e, a, b));
				memset(bits + a, 1, b - a);
			}
			check(&e, bits);
		}
		{
			struct fs_ext copy;
			uint64_t n = 0;

			T_ASSERT_OK(fs_ext_copy(&copy, &e));
			check(&copy, bits);
			for (int i = 0; i < SPACE; i++)
				n += bits[i];
			T_ASSERT_EQ(fs_ext_bytes(&copy), n);
			fs_ext_done(&copy);
		}
		fs_ext_done(&e);
	}
}

static void first_after(void)
{
	struct fs_ext e;

	fs_ext_init(&e);
	T_ASSERT_OK(fs_ext_add(&e, 10, 20));
	T_ASSERT_OK(fs_ext_add(&e, 30, 40));
	T_ASSERT_EQ(fs_ext_first_after(&e, 0), 0);
	T_ASSERT_EQ(fs_ext_first_after(&e, 19), 0);
	T_ASSERT_EQ(fs_ext_first_after(&e, 20), 1);
	T_ASSERT_EQ(fs_ext_first_after(&e, 40), 2);
	T_ASSERT_OK(fs_ext_add(&e, 20, 30)); /* touching on both sides: one range */
	T_ASSERT_EQ(e.n, 1);
	T_ASSERT_EQ(e.r[0].start, 10);
	T_ASSERT_EQ(e.r[0].end, 40);
	fs_ext_done(&e);
}

T_MAIN(T_CASE(random_adds_and_truncates_match_a_bitmap), T_CASE(first_after))
