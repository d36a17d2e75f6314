// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_bigbuf.c - the pool of chunk-sized buffers: sizes and
 * alignment, reuse by length, the bound on what it keeps, the idle trim.
 */
#include "common/bigbuf.h"
#include "common/tm.h"
#include "tests/lib/t.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

static void buffers_are_aligned_and_whole(void)
{
	static const size_t lens[] = { 1,
				       4096,
				       65536,
				       65537,
				       (1u << 20) - 1,
				       1u << 20,
				       (1u << 20) + 72,
				       (5u << 20) + 3,
				       32u << 20,
				       (32u << 20) + 1 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *p = p2p_bigbuf_get(lens[i]);

		T_ASSERT(p);
		T_ASSERT_EQ((uintptr_t)p % P2P_BIGBUF_ALIGN, 0);
		memset(p, 0xa5, lens[i]); /* every byte asked for is there (ASan) */
		p2p_bigbuf_put(p, lens[i]);
	}
	p2p_bigbuf_put(NULL, 123);
}

static void a_returned_buffer_is_taken_again(void)
{
	struct p2p_bigbuf_stats st0, st;
	uint8_t *a = p2p_bigbuf_get((1u << 20) + 100), *b, *c;

	T_ASSERT(a);
	p2p_bigbuf_stats(&st0);
	p2p_bigbuf_put(a, (1u << 20) + 100);
	/* Another length of the same step gets it back... */
	b = p2p_bigbuf_get((1u << 20) + 200000);
	T_ASSERT(b == a);
	/* ... one of another step does not. */
	c = p2p_bigbuf_get(3u << 20);
	T_ASSERT(c && c != b);
	p2p_bigbuf_stats(&st);
	T_ASSERT_EQ(st.gets - st0.gets, 2);
	T_ASSERT_EQ(st.reused - st0.reused, 1);
	p2p_bigbuf_put(b, (1u << 20) + 200000);
	p2p_bigbuf_put(c, 3u << 20);
	/* Small buffers come from malloc: not counted, not kept. */
	a = p2p_bigbuf_get(4096);
	p2p_bigbuf_put(a, 4096);
	p2p_bigbuf_stats(&st0);
	T_ASSERT_EQ(st0.gets, st.gets);
}

static void the_pool_keeps_a_bounded_amount(void)
{
	enum { N = 40 };
	uint8_t *p[N];
	struct p2p_bigbuf_stats st;

	for (int i = 0; i < N; i++)
		T_ASSERT(p[i] = p2p_bigbuf_get(4u << 20));
	for (int i = 0; i < N; i++)
		p2p_bigbuf_put(p[i], 4u << 20);
	p2p_bigbuf_stats(&st);
	T_ASSERT(st.pooled_bytes > 0);
	T_ASSERT(st.pooled_bytes <= 64u << 20); /* 160 MiB given back, 64 kept */
	/* Taken lately: a trim keeps them. */
	p2p_bigbuf_trim();
	p2p_bigbuf_stats(&st);
	T_ASSERT(st.pooled_bytes > 0);
	/* Nobody took one for a while: a trim frees them all. */
	sleep(4);
	p2p_bigbuf_trim();
	p2p_bigbuf_stats(&st);
	T_ASSERT_EQ(st.pooled_bytes, 0);
}

T_MAIN(T_CASE(buffers_are_aligned_and_whole), T_CASE(a_returned_buffer_is_taken_again),
       T_CASE(the_pool_keeps_a_bounded_amount))
