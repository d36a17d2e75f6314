// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_cdc.c - FastCDC cut points and SHA-256 chunk ids: the
 * interleaved scan equals the serial reference, sizes stay within bounds and
 * average near avg_size, an inserted byte disturbs at most 2 chunk ids,
 * streaming gives the same cuts as one call, and ids are right and
 * thread-safe. Prints the chunker and hash throughput.
 */
#include "chunkstore/cdc.h"
#include "chunkstore/cs_int.h"
#include "common/tm.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <pthread.h>

#define BIG (64U << 20)

static const struct cs_cdc_params small = {
	.min_size = 4096,
	.avg_size = 16384,
	.max_size = 65536,
};

struct cuts {
	size_t *len;
	size_t n, cap;
};

static void cuts_add(struct cuts *c, size_t len)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->len = realloc(c->len, c->cap * sizeof(*c->len));
		T_ASSERT(c->len);
	}
	c->len[c->n++] = len;
}

/* Chunk all of @buf in one go (eof at the end). */
static struct cuts chunk_all(const struct cs_cdc_params *p, const uint8_t *buf, size_t len)
{
	struct cuts c = { 0 };

	for (size_t pos = 0; pos < len;) {
		size_t n = cs_cdc_cut(p, buf + pos, len - pos, true);

		T_ASSERT(n >= 1 && n <= len - pos);
		cuts_add(&c, n);
		pos += n;
	}
	return c;
}

static uint8_t *rand_buf(size_t len)
{
	uint8_t *b = malloc(len);

	T_ASSERT(b);
	t_rand_fill(b, len);
	return b;
}

static void params_check_limits(void)
{
	struct cs_cdc_params p = cs_cdc_default;

	T_ASSERT_EQ(cs_cdc_params_check(&cs_cdc_default), 0);
	T_ASSERT_EQ(cs_cdc_params_check(&small), 0);
	p.avg_size = 1000000; /* not a power of two */
	T_ASSERT_EQ(cs_cdc_params_check(&p), -EINVAL);
	p = cs_cdc_default;
	p.min_size = p.avg_size;
	T_ASSERT_EQ(cs_cdc_params_check(&p), -EINVAL);
	p = cs_cdc_default;
	p.max_size = CS_CHUNK_MAX_LIMIT * 2;
	T_ASSERT_EQ(cs_cdc_params_check(&p), -EINVAL);
	p = cs_cdc_default;
	p.min_size = CS_CHUNK_MIN_LIMIT / 2;
	T_ASSERT_EQ(cs_cdc_params_check(&p), -EINVAL);
}

static void edges(void)
{
	uint8_t *b = rand_buf(small.max_size * 2);
	uint8_t *z = calloc(1, small.max_size * 3);

	T_ASSERT(z);
	T_ASSERT_EQ(cs_cdc_cut(&small, b, 0, true), 0);
	T_ASSERT_EQ(cs_cdc_cut(&small, b, 0, false), 0);
	T_ASSERT_EQ(cs_cdc_cut(&small, b, 100, false), 0);
	T_ASSERT_EQ(cs_cdc_cut(&small, b, 100, true), 100);
	T_ASSERT_EQ(cs_cdc_cut(&small, b, small.min_size, true), small.min_size);
	/* Enough data: a cut within max, whatever eof says. */
	T_ASSERT(cs_cdc_cut(&small, b, small.max_size * 2, false) <= small.max_size);
	T_ASSERT_EQ(cs_cdc_cut(&small, b, small.max_size * 2, false),
		    cs_cdc_cut(&small, b, small.max_size * 2, true));
	/* Zeros: the hash is constant, so every cut is forced (or all at min). */
	for (size_t pos = 0, n; pos < small.max_size * 3; pos += n) {
		n = cs_cdc_cut(&small, z + pos, small.max_size * 3 - pos, true);
		T_ASSERT(n == small.max_size || n == small.min_size ||
			 pos + n == small.max_size * 3);
	}
	free(b);
	free(z);
}

static void lanes_match_serial_reference(void)
{
	const struct cs_cdc_params *ps[] = { &small, &cs_cdc_default };
	uint8_t *b = rand_buf(BIG / 4);

	for (size_t k = 0; k < ARRAY_SIZE(ps); k++) {
		const struct cs_cdc_params *p = ps[k];
		size_t chunks = 0;

		for (size_t pos = 0; pos < BIG / 4; chunks++) {
			size_t left = BIG / 4 - pos;
			size_t a = cs_cdc_cut(p, b + pos, left, true);
			size_t r = cs__cdc_cut_serial(p, b + pos, left, true);

			T_ASSERT_EQ(a, r);
			/* Also at every short length around the cut, eof or not. */
			for (size_t d = 0; d < 3 && a > d; d++) {
				T_ASSERT_EQ(cs_cdc_cut(p, b + pos, a - d, false),
					    cs__cdc_cut_serial(p, b + pos, a - d, false));
				T_ASSERT_EQ(cs_cdc_cut(p, b + pos, a - d, true),
					    cs__cdc_cut_serial(p, b + pos, a - d, true));
			}
			pos += a;
		}
		T_ASSERT(chunks > 4);
	}
	free(b);
}

static void sizes_within_bounds_and_mean_near_avg(void)
{
	const struct cs_cdc_params *ps[] = { &small, &cs_cdc_default };
	uint8_t *b = rand_buf(BIG);

	for (size_t k = 0; k < ARRAY_SIZE(ps); k++) {
		const struct cs_cdc_params *p = ps[k];
		struct cuts c = chunk_all(p, b, BIG);
		double mean = (double)BIG / (double)c.n;
		size_t at_max = 0;

		for (size_t i = 0; i < c.n; i++) {
			T_ASSERT(c.len[i] <= p->max_size);
			if (i + 1 < c.n)
				T_ASSERT(c.len[i] >= p->min_size);
			at_max += c.len[i] == p->max_size;
		}
		printf("# avg %u: %zu chunks, mean %.0f (%.2f x avg), %zu forced at max\n",
		       p->avg_size, c.n, mean, mean / p->avg_size, at_max);
		/* Normalized chunking level 2 gives a mean of ~1.1x avg on random data. */
		T_ASSERT(mean > 0.8 * p->avg_size && mean < 1.4 * p->avg_size);
		T_ASSERT(at_max * 100 < c.n + 100); /* forced cuts are rare on random data */
		free(c.len);
	}
	free(b);
}

static void deterministic(void)
{
	uint8_t *b = rand_buf(BIG / 4), *copy = malloc(BIG / 4);
	struct cuts a, c;

	T_ASSERT(copy);
	memcpy(copy, b, BIG / 4);
	a = chunk_all(&cs_cdc_default, b, BIG / 4);
	c = chunk_all(&cs_cdc_default, copy, BIG / 4);
	T_ASSERT_EQ(a.n, c.n);
	T_ASSERT_MEM_EQ(a.len, c.len, a.n * sizeof(*a.len));
	free(a.len);
	free(c.len);
	free(b);
	free(copy);
}

/* Count the chunk ids of @b2 that do not occur in @b1. */
static size_t new_ids(const uint8_t *b1, size_t n1, const uint8_t *b2, size_t n2)
{
	struct cuts c1 = chunk_all(&cs_cdc_default, b1, n1),
		    c2 = chunk_all(&cs_cdc_default, b2, n2);
	uint8_t(*ids)[CS_ID_LEN] = malloc(c1.n * CS_ID_LEN);
	size_t pos = 0, fresh = 0;

	T_ASSERT(ids);
	for (size_t i = 0; i < c1.n; pos += c1.len[i++])
		cs_id_compute(b1 + pos, c1.len[i], ids[i]);
	pos = 0;
	for (size_t i = 0; i < c2.n; pos += c2.len[i++]) {
		uint8_t id[CS_ID_LEN];
		bool seen = false;

		cs_id_compute(b2 + pos, c2.len[i], id);
		for (size_t j = 0; j < c1.n && !seen; j++)
			seen = memcmp(ids[j], id, CS_ID_LEN) == 0;
		fresh += !seen;
	}
	printf("# %zu -> %zu chunks, %zu new ids\n", c1.n, c2.n, fresh);
	free(ids);
	free(c1.len);
	free(c2.len);
	return fresh;
}

static void insert_one_byte_changes_at_most_two_ids(void)
{
	uint8_t *b = rand_buf(BIG), *ins = malloc(BIG + 1), *del = malloc(BIG), *flip = malloc(BIG);
	size_t at = 1000 + t_rand() % 4096;

	T_ASSERT(ins && del && flip);
	memcpy(ins, b, at);
	ins[at] = (uint8_t)t_rand();
	memcpy(ins + at + 1, b + at, BIG - at);
	T_ASSERT(new_ids(b, BIG, ins, BIG + 1) <= 2);
	/* Deleting or overwriting one byte near the start: the same bound. */
	memcpy(del, b, at);
	memcpy(del + at, b + at + 1, BIG - at - 1);
	T_ASSERT(new_ids(b, BIG, del, BIG - 1) <= 2);
	memcpy(flip, b, BIG);
	flip[at] ^= 0x5a;
	T_ASSERT(new_ids(b, BIG, flip, BIG) <= 2);
	/* And in the middle. */
	memcpy(ins, b, BIG / 2);
	ins[BIG / 2] = 7;
	memcpy(ins + BIG / 2 + 1, b + BIG / 2, BIG / 2);
	T_ASSERT(new_ids(b, BIG, ins, BIG + 1) <= 2);
	free(b);
	free(ins);
	free(del);
	free(flip);
}

static void streaming_gives_the_same_cuts(void)
{
	const struct cs_cdc_params *ps[] = { &small, &cs_cdc_default };
	uint8_t *b = rand_buf(BIG / 2);

	for (size_t k = 0; k < ARRAY_SIZE(ps); k++) {
		const struct cs_cdc_params *p = ps[k];
		struct cuts one = chunk_all(p, b, BIG / 2), st = { 0 };
		size_t start = 0, have = 0; /* bytes [start, start + have) are fed */

		while (start < BIG / 2) {
			size_t n;
			bool eof = start + have == BIG / 2;

			n = cs_cdc_cut(p, b + start, have, eof);
			if (n) {
				T_ASSERT(n <= have);
				cuts_add(&st, n);
				start += n;
				have -= n;
				continue;
			}
			T_ASSERT(!eof);
			/* Feed a random piece: from 1 byte to 3 MiB. */
			n = 1 + t_rand() % (t_rand() % 4 ? 3U << 20 : 300);
			have += P2P_MIN(n, BIG / 2 - start - have);
		}
		T_ASSERT_EQ(st.n, one.n);
		T_ASSERT_MEM_EQ(st.len, one.len, one.n * sizeof(*one.len));
		free(st.len);
		free(one.len);
	}
	free(b);
}

static void id_known_answer(void)
{
	static const uint8_t abc[32] = { 0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
					 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
					 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
					 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
	static const uint8_t empty[32] = { 0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
					   0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
					   0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
					   0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55 };
	uint8_t id[CS_ID_LEN];

	cs_id_compute("abc", 3, id);
	T_ASSERT_MEM_EQ(id, abc, 32);
	cs_id_compute("", 0, id);
	T_ASSERT_MEM_EQ(id, empty, 32);
}

/* Hashed piece by piece (as a chunk arriving from a peer is), in pieces of
 * every size from 1 byte to the whole: the same id. */
static void id_in_pieces_is_the_same(void)
{
	enum { LEN = (3u << 20) + 77 };
	uint8_t *b = malloc(LEN), want[CS_ID_LEN], id[CS_ID_LEN];
	struct cs_id_ctx *c;

	T_ASSERT(b);
	t_rand_fill(b, LEN);
	cs_id_compute(b, LEN, want);
	for (int round = 0; round < 20; round++) {
		size_t pos = 0;

		T_ASSERT(c = cs_id_begin());
		while (pos < LEN) {
			size_t n =
			    round == 0 ? LEN : 1 + t_rand() % (t_rand() % 2 ? 1u << 20 : 100);

			n = n > LEN - pos ? LEN - pos : n;
			cs_id_update(c, b + pos, n);
			pos += n;
		}
		cs_id_end(c, id);
		T_ASSERT_MEM_EQ(id, want, CS_ID_LEN);
	}
	/* Dropped half way: nothing leaks (ASan), nothing else changes. */
	T_ASSERT(c = cs_id_begin());
	cs_id_update(c, b, 1000);
	cs_id_drop(c);
	cs_id_drop(NULL);
	free(b);
}

struct id_thread {
	const uint8_t *buf;
	uint8_t want[CS_ID_LEN];
	int bad;
};

static void *id_worker(void *arg)
{
	struct id_thread *t = arg;

	for (int i = 0; i < 200; i++) {
		uint8_t id[CS_ID_LEN];

		cs_id_compute(t->buf, 64 * 1024, id);
		t->bad += memcmp(id, t->want, CS_ID_LEN) != 0;
	}
	return NULL;
}

static void ids_from_many_threads(void)
{
	uint8_t *b = rand_buf(64 * 1024);
	struct id_thread t[4];
	pthread_t th[4];

	for (int i = 0; i < 4; i++) {
		t[i].buf = b;
		t[i].bad = 0;
		cs_id_compute(b, 64 * 1024, t[i].want);
		T_ASSERT_EQ(pthread_create(&th[i], NULL, id_worker, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		T_ASSERT_EQ(pthread_join(th[i], NULL), 0);
		T_ASSERT_EQ(t[i].bad, 0);
	}
	free(b);
}

static void throughput(void)
{
	uint8_t *b = rand_buf(BIG), id[CS_ID_LEN];
	double best_cdc = 0, best_ref = 0, best_sha = 0;

	for (int r = 0; r < 3; r++) {
		uint64_t t0 = tm_mono_ns();
		size_t n = 0;

		for (size_t pos = 0; pos < BIG; n++)
			pos += cs_cdc_cut(&cs_cdc_default, b + pos, BIG - pos, true);
		best_cdc = P2P_MAX(best_cdc, (double)BIG / (double)(tm_mono_ns() - t0));
		t0 = tm_mono_ns();
		for (size_t pos = 0; pos < BIG;)
			pos += cs__cdc_cut_serial(&cs_cdc_default, b + pos, BIG - pos, true);
		best_ref = P2P_MAX(best_ref, (double)BIG / (double)(tm_mono_ns() - t0));
		t0 = tm_mono_ns();
		cs_id_compute(b, BIG, id);
		best_sha = P2P_MAX(best_sha, (double)BIG / (double)(tm_mono_ns() - t0));
		T_ASSERT(n > 0);
	}
	printf("# chunker %.2f GB/s (serial loop %.2f GB/s), SHA-256 %.2f GB/s\n", best_cdc,
	       best_ref, best_sha);
	/* Loose floor (shared, sanitized builds): the lanes must not be slower than the loop. */
	T_ASSERT(best_cdc > 0.8 * best_ref);
	free(b);
}

T_MAIN(T_CASE(params_check_limits), T_CASE(edges), T_CASE(lanes_match_serial_reference),
       T_CASE(sizes_within_bounds_and_mean_near_avg), T_CASE(deterministic),
       T_CASE(insert_one_byte_changes_at_most_two_ids), T_CASE(streaming_gives_the_same_cuts),
       T_CASE(id_known_answer), T_CASE(id_in_pieces_is_the_same), T_CASE(ids_from_many_threads),
       T_CASE(throughput))
