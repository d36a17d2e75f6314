// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_dht_rt.c - the DHT routing table (net/dht_rt.c) on its
 * own: insertion rules, splitting only in our own range, replacement
 * caches, eviction of failing contacts, closest-k order against brute
 * force, round-trip times, proof of work, save and load.
 */
#include "net/dht_int.h"
#include "net/ident.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STALE 900

static uint8_t self[DHT_ID_LEN];

static struct dht_addr addr_n(uint32_t n)
{
	struct dht_addr a = { .family = 4, .port = (uint16_t)(1000 + n % 50000) };

	a.ip[0] = 10;
	a.ip[1] = (uint8_t)(n >> 16);
	a.ip[2] = (uint8_t)(n >> 8);
	a.ip[3] = (uint8_t)(n | 1);
	return a;
}

/* A random id sharing exactly @cpl leading bits with @base. */
static void id_at(const uint8_t *base, unsigned cpl, uint8_t *out)
{
	t_rand_fill(out, DHT_ID_LEN);
	for (unsigned b = 0; b <= cpl && b < 256; b++) {
		uint8_t mask = (uint8_t)(0x80 >> (b % 8));
		uint8_t want = b < cpl ? base[b / 8] & mask : (uint8_t)(~base[b / 8] & mask);

		out[b / 8] = (uint8_t)((out[b / 8] & ~mask) | want);
	}
}

/* Every structural invariant of dht_rt.c's header comment. */
static void check(const struct dht__rt *rt)
{
	size_t contacts = 0, cached = 0;

	T_ASSERT(rt->nb >= 1 && rt->nb <= DHT_BUCKETS_MAX);
	for (unsigned i = 0; i < rt->nb; i++) {
		const struct dht__bucket *b = &rt->b[i];

		T_ASSERT(b->n <= DHT_K && b->n <= b->cap);
		T_ASSERT(b->nrepl <= DHT_REPL_MAX && b->nrepl <= b->caprepl);
		for (size_t j = 0; j < (size_t)b->n + b->nrepl; j++) {
			const struct dht__contact *c = j < b->n ? &b->c[j] : &b->repl[j - b->n];

			T_ASSERT(memcmp(c->id, self, DHT_ID_LEN) != 0);
			T_ASSERT(dht__addr_valid(&c->addr));
			T_ASSERT_EQ(dht__rt_bucket_of(rt, c->id), i);
			/* No id twice, bucket and cache together. */
			for (size_t k = j + 1; k < (size_t)b->n + b->nrepl; k++) {
				const struct dht__contact *o =
				    k < b->n ? &b->c[k] : &b->repl[k - b->n];

				T_ASSERT(memcmp(c->id, o->id, DHT_ID_LEN) != 0);
			}
		}
		/* Least recently seen first. */
		for (size_t j = 1; j < b->n; j++)
			T_ASSERT(b->c[j - 1].seen_s <= b->c[j].seen_s);
		contacts += b->n;
		cached += b->nrepl;
	}
	T_ASSERT_EQ(contacts, rt->ncontacts);
	T_ASSERT_EQ(cached, rt->nrepl);
}

static int heard(struct dht__rt *rt, uint64_t now, const uint8_t *id, const struct dht_addr *a,
		 bool replied, struct dht__contact **probe)
{
	struct dht__contact *dummy;

	return dht__rt_heard(rt, now, id, a, replied, replied ? 30 : -1, STALE,
			     probe ? probe : &dummy);
}

static void only_answers_enter_the_table(void)
{
	struct dht__rt rt;
	struct dht_addr a = addr_n(1), bad = { .family = 4, .port = 0 };
	uint8_t id[DHT_ID_LEN];

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	id_at(self, 3, id);
	/* A request from an unknown node earns it a ping, not a place. */
	T_ASSERT_EQ(heard(&rt, 1000, id, &a, false, NULL), DHT__RT_UNKNOWN);
	T_ASSERT_EQ(rt.ncontacts, 0);
	T_ASSERT_EQ(heard(&rt, 1000, id, &a, true, NULL), DHT__RT_ADDED);
	T_ASSERT_EQ(heard(&rt, 2000, id, &a, true, NULL), DHT__RT_UPDATED);
	T_ASSERT_EQ(heard(&rt, 2000, id, &a, false, NULL), DHT__RT_UPDATED);
	T_ASSERT_EQ(rt.ncontacts, 1);
	T_ASSERT(dht__rt_find(&rt, id)->flags & DHT__C_VERIFIED);
	/* Never ourselves, never a bad address. */
	T_ASSERT_EQ(heard(&rt, 2000, self, &a, true, NULL), DHT__RT_REFUSED);
	id[5] ^= 1;
	T_ASSERT_EQ(heard(&rt, 2000, id, &bad, true, NULL), DHT__RT_REFUSED);
	check(&rt);
	dht__rt_done(&rt);
}

static void a_request_from_elsewhere_does_not_move_a_contact(void)
{
	struct dht__rt rt;
	struct dht_addr a = addr_n(1), b = addr_n(2);
	uint8_t id[DHT_ID_LEN];

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	id_at(self, 0, id);
	T_ASSERT_EQ(heard(&rt, 1000, id, &a, true, NULL), DHT__RT_ADDED);
	T_ASSERT_EQ(heard(&rt, 1000, id, &b, false, NULL), DHT__RT_MOVED);
	T_ASSERT(dht_addr_eq(&dht__rt_find(&rt, id)->addr, &a));
	/* An answer from the new address (to a request we sent there) does. */
	T_ASSERT_EQ(heard(&rt, 1000, id, &b, true, NULL), DHT__RT_UPDATED);
	T_ASSERT(dht_addr_eq(&dht__rt_find(&rt, id)->addr, &b));
	dht__rt_done(&rt);
}

static void only_our_own_range_splits(void)
{
	struct dht__rt rt;
	uint8_t id[DHT_ID_LEN];
	uint32_t n = 0;

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	/* 100 nodes far away (first bit differs): one bucket of k, the rest cached. */
	for (int i = 0; i < 100; i++) {
		struct dht_addr a = addr_n(n++);

		id_at(self, 0, id);
		(void)heard(&rt, 1000 + (uint64_t)i * 1000, id, &a, true, NULL);
	}
	T_ASSERT_EQ(rt.b[0].n, DHT_K);
	T_ASSERT_EQ(rt.b[0].nrepl, DHT_REPL_MAX);
	T_ASSERT(rt.nb >= 2); /* the bucket holding our range split off */
	T_ASSERT_EQ(rt.ncontacts, DHT_K);
	check(&rt);
	/* Nodes closer and closer to us: the last bucket keeps splitting,
	 * every bucket in the table covers one prefix length but the last. */
	for (unsigned cpl = 1; cpl < 40; cpl++)
		for (int i = 0; i < 5; i++) {
			struct dht_addr a = addr_n(n++);

			id_at(self, cpl, id);
			T_ASSERT_EQ(heard(&rt, 200000, id, &a, true, NULL), DHT__RT_ADDED);
		}
	check(&rt);
	T_ASSERT_EQ(rt.ncontacts, DHT_K + 39 * 5);
	/* 5 per length: the last bucket holds the 4 deepest lengths (20). */
	T_ASSERT(rt.nb >= 36 && rt.nb <= 38);
	/* Buckets that do not cover our id never split: prefix 0 is still one
	 * bucket with k contacts and a full cache. */
	T_ASSERT_EQ(rt.b[0].n, DHT_K);
	dht__rt_done(&rt);
}

static void a_full_bucket_probes_its_stalest_contact(void)
{
	struct dht__rt rt;
	struct dht__contact *probe;
	uint8_t id[DHT_ID_LEN], first[DHT_ID_LEN];
	uint64_t t = 1000000;

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	for (int i = 0; i < DHT_K + 1; i++) {
		struct dht_addr a = addr_n((uint32_t)i);

		id_at(self, 0, id);
		if (i == 0)
			memcpy(first, id, DHT_ID_LEN);
		(void)heard(&rt, t, id, &a, true, NULL);
	}
	/* The bucket is full and everyone is fresh: a newcomer waits in the cache. */
	{
		struct dht_addr a = addr_n(100);

		id_at(self, 0, id);
		T_ASSERT_EQ(heard(&rt, t + 1000, id, &a, true, &probe), DHT__RT_CACHED);
		T_ASSERT(probe == NULL);
	}
	/* Later, the least recently seen contact is checked first. */
	{
		struct dht_addr a = addr_n(101);

		id_at(self, 0, id);
		T_ASSERT_EQ(heard(&rt, t + (STALE + 10) * 1000ULL, id, &a, true, &probe),
			    DHT__RT_CACHED);
		T_ASSERT(probe != NULL);
		T_ASSERT_MEM_EQ(probe->id, first, DHT_ID_LEN);
	}
	dht__rt_done(&rt);
}

static void failing_contacts_give_way_to_cached_ones(void)
{
	struct dht__rt rt;
	struct dht__contact *promoted;
	uint8_t ids[DHT_K + 3][DHT_ID_LEN];
	struct dht_contact out[DHT_K];

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	for (int i = 0; i < DHT_K + 3; i++) {
		struct dht_addr a = addr_n((uint32_t)i);

		id_at(self, 0, ids[i]);
		(void)heard(&rt, 1000000 + (uint64_t)i, ids[i], &a, true, NULL);
	}
	T_ASSERT_EQ(rt.b[0].n, DHT_K);
	T_ASSERT_EQ(rt.b[0].nrepl, 3);
	/* One miss is forgiven. */
	T_ASSERT(dht__rt_failed(&rt, ids[4]) == NULL);
	T_ASSERT(dht__rt_find(&rt, ids[4]) != NULL);
	/* An answer resets the count. */
	(void)heard(&rt, 2000000, ids[4], &rt.b[0].c[0].addr, true, NULL);
	T_ASSERT_EQ(dht__rt_find(&rt, ids[4])->fails, 0);
	T_ASSERT(dht__rt_failed(&rt, ids[4]) == NULL);
	/* DHT_FAILS_MAX misses in a row: the most recently heard cached one replaces it. */
	promoted = dht__rt_failed(&rt, ids[4]);
	T_ASSERT(promoted != NULL);
	T_ASSERT_MEM_EQ(promoted->id, ids[DHT_K + 2], DHT_ID_LEN);
	T_ASSERT(dht__rt_find(&rt, ids[4]) == NULL);
	T_ASSERT_EQ(rt.b[0].n, DHT_K);
	T_ASSERT_EQ(rt.b[0].nrepl, 2);
	check(&rt);
	/* With the cache empty, a failing contact stays (our own network may be
	 * down) but is no longer handed out. */
	for (int k = 0; k < 2; k++) {
		const uint8_t *victim = rt.b[0].c[k].id;
		uint8_t v[DHT_ID_LEN];

		memcpy(v, victim, DHT_ID_LEN);
		(void)dht__rt_failed(&rt, v);
		(void)dht__rt_failed(&rt, v);
	}
	T_ASSERT_EQ(rt.b[0].nrepl, 0);
	{
		uint8_t v[DHT_ID_LEN];

		memcpy(v, rt.b[0].c[5].id, DHT_ID_LEN);
		T_ASSERT(dht__rt_failed(&rt, v) == NULL);
		T_ASSERT(dht__rt_failed(&rt, v) == NULL);
		T_ASSERT(dht__rt_find(&rt, v) != NULL);
		T_ASSERT(dht__rt_closest(&rt, v, NULL, out, NULL, DHT_K) == DHT_K - 1);
		for (size_t i = 0; i < DHT_K - 1; i++)
			T_ASSERT(memcmp(out[i].id, v, DHT_ID_LEN) != 0);
		/* A verified newcomer takes the failing contact's place at once. */
		struct dht_addr a = addr_n(999);
		uint8_t nid[DHT_ID_LEN];

		id_at(self, 0, nid);
		T_ASSERT_EQ(heard(&rt, 3000000, nid, &a, true, NULL), DHT__RT_ADDED);
		T_ASSERT(dht__rt_find(&rt, v) == NULL);
	}
	check(&rt);
	dht__rt_done(&rt);
}

static void closest_matches_brute_force(void)
{
	enum { N = 600 };
	static uint8_t ids[N][DHT_ID_LEN];
	struct dht__rt rt;

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	for (int i = 0; i < N; i++) {
		struct dht_addr a = addr_n((uint32_t)i);

		/* Spread over prefix lengths, so many buckets are in play. */
		id_at(self, (unsigned)(t_rand() % 12), ids[i]);
		(void)dht__rt_heard(&rt, 1000000, ids[i], &a, true, (int)(t_rand() % 500), STALE,
				    &(struct dht__contact *){ NULL });
	}
	check(&rt);
	for (int round = 0; round < 300; round++) {
		struct dht_contact out[2 * DHT_K], all[N];
		uint16_t srtt[2 * DHT_K];
		uint8_t t[DHT_ID_LEN];
		size_t n = 0, got, want = round % 2 ? DHT_K : 2 * DHT_K;
		const uint8_t *excl = NULL;

		if (round % 3 == 0)
			t_rand_fill(t, sizeof(t));
		else
			id_at(self, (unsigned)(t_rand() % 14), t); /* near us, too */
		if (round % 5 == 0)
			excl = rt.b[0].c[0].id;
		/* Brute force: every live contact, sorted. */
		for (unsigned i = 0; i < rt.nb; i++)
			for (size_t j = 0; j < rt.b[i].n; j++) {
				if (excl && !memcmp(rt.b[i].c[j].id, excl, DHT_ID_LEN))
					continue;
				memcpy(all[n].id, rt.b[i].c[j].id, DHT_ID_LEN);
				all[n++].addr = rt.b[i].c[j].addr;
			}
		for (size_t i = 1; i < n; i++)
			for (size_t j = i;
			     j > 0 && dht_id_cmp_dist(t, all[j].id, all[j - 1].id) < 0; j--) {
				struct dht_contact tmp = all[j];

				all[j] = all[j - 1];
				all[j - 1] = tmp;
			}
		got = dht__rt_closest(&rt, t, excl, out, srtt, want);
		T_ASSERT_EQ(got, P2P_MIN(want, n));
		for (size_t i = 0; i < got; i++) {
			T_ASSERT_MEM_EQ(out[i].id, all[i].id, DHT_ID_LEN);
			T_ASSERT(dht_addr_eq(&out[i].addr, &all[i].addr));
			T_ASSERT_EQ(srtt[i], dht__rt_find(&rt, out[i].id)->srtt);
		}
	}
	dht__rt_done(&rt);
}

static void round_trip_times_follow_tcp(void)
{
	struct dht__rt rt;
	struct dht__contact *probe, *c;
	struct dht_addr a = addr_n(7);
	uint8_t id[DHT_ID_LEN];
	uint32_t srtt = 0, rttvar = 0;

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	id_at(self, 2, id);
	T_ASSERT_EQ(dht__rt_heard(&rt, 1000, id, &a, true, 100, STALE, &probe), DHT__RT_ADDED);
	c = dht__rt_find(&rt, id);
	T_ASSERT_EQ(c->srtt, 100);
	T_ASSERT_EQ(c->rttvar, 50);
	for (int i = 0; i < 50; i++)
		(void)dht__rt_heard(&rt, 2000, id, &a, true, 20, STALE, &probe);
	c = dht__rt_find(&rt, id);
	T_ASSERT(c->srtt >= 20 && c->srtt <= 22);
	T_ASSERT(c->rttvar <= 3);
	/* Unmeasured answers (-1) keep the estimate. */
	(void)dht__rt_heard(&rt, 3000, id, &a, true, -1, STALE, &probe);
	T_ASSERT(dht__rt_find(&rt, id)->srtt == c->srtt);
	/* The shared estimator, on its own. */
	dht__rtt_update(&srtt, &rttvar, 80);
	T_ASSERT_EQ(srtt, 80);
	T_ASSERT_EQ(rttvar, 40);
	dht__rtt_update(&srtt, &rttvar, 160);
	T_ASSERT_EQ(srtt, 90);
	T_ASSERT_EQ(rttvar, 50);
	dht__rt_done(&rt);
}

static void round_trip_codes_bound_what_they_code(void)
{
	T_ASSERT_EQ(dht__rtt_ms(0), 0);
	T_ASSERT_EQ(dht__rtt_code(0), 1);
	for (uint32_t ms = 1; ms < 300000; ms += 1 + ms / 50) {
		uint8_t c = dht__rtt_code(ms);

		T_ASSERT(c >= 2);
		/* The code's value is at least the time, at most a quarter more. */
		T_ASSERT(dht__rtt_ms(c) >= ms);
		T_ASSERT(dht__rtt_ms(c) <= ms + ms / 4 + 1);
		T_ASSERT(dht__rtt_code(ms + 1) >= c); /* monotonic */
	}
}

static void ids_without_proof_of_work_are_refused(void)
{
	struct dht__rt rt;
	struct dht_addr a = addr_n(3);
	struct dht_contact c = { .addr = addr_n(4) };
	uint8_t id[DHT_ID_LEN];
	int found = 0;

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 8));
	/* Random ids: about 1 in 256 meets 8 bits. */
	for (int i = 0; i < 2000; i++) {
		int rc;

		t_rand_fill(id, sizeof(id));
		rc = heard(&rt, 1000, id, &a, true, NULL);
		if (peer_id_pow_ok(id, 8)) {
			T_ASSERT(rc != DHT__RT_REFUSED);
			found++;
		} else {
			T_ASSERT_EQ(rc, DHT__RT_REFUSED);
		}
	}
	T_ASSERT(found > 0);
	do
		t_rand_fill(c.id, sizeof(c.id));
	while (peer_id_pow_ok(c.id, 8));
	T_ASSERT_EQ(dht__rt_add_unverified(&rt, &c), 0);
	check(&rt);
	dht__rt_done(&rt);
}

static void random_ids_fall_in_their_bucket(void)
{
	struct dht__rt rt;
	uint8_t id[DHT_ID_LEN], rnd[DHT_ID_LEN];

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	for (unsigned cpl = 0; cpl < 30; cpl++)
		for (int i = 0; i < 30; i++) {
			struct dht_addr a = addr_n(cpl * 100 + (uint32_t)i);

			id_at(self, cpl, id);
			(void)heard(&rt, 1000, id, &a, true, NULL);
		}
	T_ASSERT(rt.nb > 5);
	for (unsigned i = 0; i < rt.nb; i++)
		for (int k = 0; k < 20; k++) {
			t_rand_fill(rnd, sizeof(rnd));
			dht__rt_random_id(&rt, i, rnd, id);
			if (i + 1 < rt.nb)
				T_ASSERT_EQ(dht_common_prefix(self, id), i);
			else
				T_ASSERT(dht_common_prefix(self, id) >= i);
			T_ASSERT_EQ(dht__rt_bucket_of(&rt, id), i);
		}
	dht__rt_done(&rt);
}

static void saved_tables_load_back_and_damage_is_refused(void)
{
	struct dht__rt rt, back;
	static uint8_t buf[DHT_SAVE_MAX];
	uint8_t id[DHT_ID_LEN];
	long len;

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	for (int i = 0; i < 300; i++) {
		struct dht_addr a = addr_n((uint32_t)i);

		if (i % 3 == 0) { /* some IPv6 too */
			a.family = 6;
			t_rand_fill(a.ip, 16);
		}
		id_at(self, (unsigned)(t_rand() % 10), id);
		(void)dht__rt_heard(&rt, 1000, id, &a, true, 40 + i % 30, STALE,
				    &(struct dht__contact *){ NULL });
	}
	len = dht__rt_save(&rt, buf, sizeof(buf));
	T_ASSERT(len > 9);
	T_ASSERT_EQ(dht__rt_save(&rt, buf, (size_t)len - 1), -ENOSPC);
	len = dht__rt_save(&rt, buf, sizeof(buf));
	T_ASSERT_OK(dht__rt_init(&back, self, 0));
	T_ASSERT_EQ(dht__rt_load(&back, buf, (size_t)len), (int)rt.ncontacts);
	check(&back);
	/* Every contact came back, with its address and round-trip time, unverified. */
	for (unsigned i = 0; i < rt.nb; i++)
		for (size_t j = 0; j < rt.b[i].n; j++) {
			const struct dht__contact *c = &rt.b[i].c[j];
			const struct dht__contact *b = dht__rt_find(&back, c->id);

			if (!b) {
				/* Only a cached one, when buckets split differently. */
				T_ASSERT(back.nrepl > 0);
				continue;
			}
			T_ASSERT(dht_addr_eq(&b->addr, &c->addr));
			T_ASSERT_EQ(b->srtt, c->srtt);
			T_ASSERT(!(b->flags & DHT__C_VERIFIED));
			T_ASSERT_EQ(b->seen_s, 0);
		}
	dht__rt_done(&back);
	/* Every truncation, a trailing byte, a bad magic, version or count:
	 * refused, and nothing taken. */
	for (long cut = 0; cut < len; cut += (cut < 200 ? 1 : 37)) {
		T_ASSERT_OK(dht__rt_init(&back, self, 0));
		T_ASSERT_EQ(dht__rt_load(&back, buf, (size_t)cut), -EPROTO);
		T_ASSERT_EQ(back.ncontacts + back.nrepl, 0);
		dht__rt_done(&back);
	}
	T_ASSERT_OK(dht__rt_init(&back, self, 0));
	buf[len] = 0;
	T_ASSERT_EQ(dht__rt_load(&back, buf, (size_t)len + 1), -EPROTO);
	buf[0] ^= 1;
	T_ASSERT_EQ(dht__rt_load(&back, buf, (size_t)len), -EPROTO);
	buf[0] ^= 1;
	buf[4] = 9; /* version */
	T_ASSERT_EQ(dht__rt_load(&back, buf, (size_t)len), -EPROTO);
	buf[4] = 1;
	buf[5] = 0xff; /* count */
	T_ASSERT_EQ(dht__rt_load(&back, buf, (size_t)len), -EPROTO);
	buf[5] = 0;
	buf[9 + DHT_ID_LEN] = 5; /* family of the first contact */
	T_ASSERT_EQ(dht__rt_load(&back, buf, (size_t)len), -EPROTO);
	T_ASSERT_EQ(back.ncontacts + back.nrepl, 0);
	dht__rt_done(&back);
	dht__rt_done(&rt);
}

static void random_operations_keep_the_invariants(void)
{
	enum { POOL = 400 };
	static uint8_t ids[POOL][DHT_ID_LEN];
	struct dht__rt rt;
	uint64_t t = 1000000;

	t_rand_fill(self, sizeof(self));
	T_ASSERT_OK(dht__rt_init(&rt, self, 0));
	for (int i = 0; i < POOL; i++)
		id_at(self, (unsigned)(t_rand() % 16), ids[i]);
	for (int step = 0; step < 20000; step++) {
		size_t k = t_rand() % POOL;
		struct dht_addr a = addr_n((uint32_t)k);
		struct dht_contact c = { .addr = a };
		struct dht__contact *probe;

		t += t_rand() % 5000;
		switch (t_rand() % 6) {
		case 0:
		case 1:
			(void)dht__rt_heard(&rt, t, ids[k], &a, true, (int)(t_rand() % 300), STALE,
					    &probe);
			break;
		case 2:
			(void)dht__rt_heard(&rt, t, ids[k], &a, false, -1, STALE, &probe);
			break;
		case 3:
			(void)dht__rt_failed(&rt, ids[k]);
			break;
		case 4:
			memcpy(c.id, ids[k], DHT_ID_LEN);
			T_ASSERT(dht__rt_add_unverified(&rt, &c) >= 0);
			break;
		default:
			(void)dht__rt_remove(&rt, ids[k]);
			break;
		}
		if (step % 97 == 0)
			check(&rt);
	}
	check(&rt);
	T_ASSERT(dht__rt_mem(&rt) >= rt.ncontacts * sizeof(struct dht__contact));
	dht__rt_done(&rt);
}

T_MAIN(T_CASE(only_answers_enter_the_table),
       T_CASE(a_request_from_elsewhere_does_not_move_a_contact), T_CASE(only_our_own_range_splits),
       T_CASE(a_full_bucket_probes_its_stalest_contact),
       T_CASE(failing_contacts_give_way_to_cached_ones), T_CASE(closest_matches_brute_force),
       T_CASE(round_trip_times_follow_tcp), T_CASE(round_trip_codes_bound_what_they_code),
       T_CASE(ids_without_proof_of_work_are_refused), T_CASE(random_ids_fall_in_their_bucket),
       T_CASE(saved_tables_load_back_and_damage_is_refused),
       T_CASE(random_operations_keep_the_invariants))
