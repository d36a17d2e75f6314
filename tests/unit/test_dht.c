// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_dht.c - the Kademlia engine among in-process nodes over
 * an in-memory network: routing table rules, lookups, provider records,
 * tokens, spoofing, rate limits, persistence.
 */
#include "net/dht_int.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 256

struct pkt {
	uint64_t t;
	size_t src, dst;
	struct dht_addr from;
	size_t len;
	uint8_t buf[DHT_MSG_MAX];
};

static struct dht *nd[MAXN];
static uint8_t ids[MAXN][DHT_ID_LEN];
static bool dead[MAXN];
static size_t n;
static struct pkt *q;
static size_t nq, capq;
static uint64_t now;
static size_t cur;

static struct dht_addr addr_of(size_t i)
{
	struct dht_addr a = { .family = 4, .port = 5000 };

	a.ip[0] = 127;
	a.ip[2] = (uint8_t)(i >> 8);
	a.ip[3] = (uint8_t)i;
	return a;
}

static void net_send(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len)
{
	size_t dst = (size_t)to->ip[2] << 8 | to->ip[3];

	(void)arg;
	if (dst >= n)
		return;
	if (nq == capq) {
		capq = capq ? capq * 2 : 1024;
		q = realloc(q, capq * sizeof(*q));
		T_ASSERT(q);
	}
	q[nq].t = now + 1 + t_rand() % 3;
	q[nq].src = cur;
	q[nq].dst = dst;
	q[nq].from = addr_of(cur);
	q[nq].len = len;
	memcpy(q[nq].buf, buf, len);
	nq++;
}

static void rnd_fn(void *arg, void *buf, size_t len)
{
	(void)arg;
	t_rand_fill(buf, len);
}

static void make_nodes(size_t count)
{
	n = count;
	nq = 0;
	now = 1000;
	for (size_t i = 0; i < n; i++) {
		struct dht_opts o = {
			.send = net_send, .random = rnd_fn, .rate_slots = 64, .rate_per_s = 1000
		};

		t_rand_fill(ids[i], DHT_ID_LEN);
		o.id = ids[i];
		dead[i] = false;
		T_ASSERT_OK(dht_new(&o, now, &nd[i]));
	}
}

static void free_nodes(void)
{
	for (size_t i = 0; i < n; i++)
		dht_free(nd[i]);
	n = 0;
	nq = 0;
}

/* Advance virtual time by @ms, delivering datagrams and running timers. */
static void run_for(uint64_t ms)
{
	uint64_t end = now + ms;

	while (now < end) {
		now++;
		for (size_t k = 0; k < nq;) {
			if (q[k].t > now) {
				k++;
				continue;
			}
			struct pkt p = q[k];

			q[k] = q[--nq];
			if (!dead[p.dst]) {
				cur = p.dst;
				dht_input(nd[p.dst], now, &p.from, p.buf, p.len);
			}
		}
		if (now % 10 == 0)
			for (size_t i = 0; i < n; i++)
				if (!dead[i]) {
					cur = i;
					(void)dht_tick(nd[i], now);
				}
	}
}

static void join_all(void)
{
	for (size_t i = 1; i < n; i++) {
		struct dht_addr a = addr_of(t_rand() % i);

		cur = i;
		dht_ping(nd[i], now, &a);
	}
	run_for(50);
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < n; i++) {
			cur = i;
			T_ASSERT_OK(dht_find_node(nd[i], now, ids[i], NULL, NULL));
		}
		run_for(3000);
	}
}

struct res {
	bool done;
	struct dht_result r;
};

static void on_done(void *arg, const struct dht_result *r)
{
	struct res *x = arg;

	x->done = true;
	x->r = *r;
}

/* The closest live node to @t other than @self (a lookup never returns its origin). */
static size_t closest_live(const uint8_t *t, size_t self)
{
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < n; i++)
		if (!dead[i] && i != self &&
		    (best == SIZE_MAX || dht_id_cmp_dist(t, ids[i], ids[best]) < 0))
			best = i;
	return best;
}

static void lookups_find_the_closest_node(void)
{
	make_nodes(200);
	join_all();
	for (int k = 0; k < 100; k++) {
		uint8_t t[DHT_ID_LEN];
		struct res x = { 0 };
		size_t from = t_rand() % n;

		t_rand_fill(t, sizeof(t));
		cur = from;
		T_ASSERT_OK(dht_find_node(nd[from], now, t, on_done, &x));
		run_for(2000);
		T_ASSERT(x.done);
		T_ASSERT_OK(x.r.rc);
		T_ASSERT(x.r.nclosest == DHT_K);
		T_ASSERT_MEM_EQ(x.r.closest[0].id, ids[closest_live(t, from)], DHT_ID_LEN);
		/* Sorted by distance. */
		for (size_t i = 1; i < x.r.nclosest; i++)
			T_ASSERT(dht_id_cmp_dist(t, x.r.closest[i - 1].id, x.r.closest[i].id) < 0);
		T_ASSERT(x.r.hops >= 1 && x.r.hops <= 6);
	}
	free_nodes();
}

static void providers_are_found_and_survive_churn(void)
{
	uint8_t keys[30][DHT_ID_LEN];

	make_nodes(200);
	join_all();
	for (int k = 0; k < 30; k++) {
		t_rand_fill(keys[k], DHT_ID_LEN);
		cur = t_rand() % n;
		T_ASSERT_OK(dht_add_provider(nd[cur], now, keys[k], 7777, NULL, NULL));
	}
	run_for(3000);
	/* A third of the nodes die without notice. */
	for (size_t i = 0; i < n / 3; i++)
		dead[t_rand() % n] = true;
	for (int k = 0; k < 30; k++) {
		struct res x = { 0 };
		size_t from;

		do
			from = t_rand() % n;
		while (dead[from]);
		cur = from;
		T_ASSERT_OK(dht_get_providers(nd[from], now, keys[k], on_done, &x));
		run_for(5000);
		T_ASSERT(x.done);
		T_ASSERT_OK(x.r.rc);
		T_ASSERT(x.r.nproviders >= 1);
		T_ASSERT_EQ(x.r.providers[0].addr.port, 7777);
	}
	free_nodes();
}

static void stores_need_a_token_from_the_same_address(void)
{
	struct dht_msg m = { .type = DHT_ADD_PROVIDER };
	struct dht_stats st;
	uint8_t buf[DHT_MSG_MAX];
	struct dht_addr spoof = addr_of(1);
	size_t len;

	make_nodes(2);
	t_rand_fill(m.sender, DHT_ID_LEN);
	t_rand_fill(m.target, DHT_ID_LEN);
	m.token = 12345; /* a guess */
	len = dht__msg_encode(&m, buf);
	cur = 1;
	dht_input(nd[0], now, &spoof, buf, len);
	dht_get_stats(nd[0], &st);
	T_ASSERT_EQ(st.dropped_token, 1);
	T_ASSERT_EQ(st.provider_keys, 0);
	free_nodes();
}

static void replies_only_from_the_address_asked(void)
{
	struct dht_msg m = { .type = DHT_NODES };
	struct dht_stats before, after;
	uint8_t buf[DHT_MSG_MAX];
	struct dht_addr a1 = addr_of(1), a2 = addr_of(2);
	size_t len;

	make_nodes(3);
	cur = 0;
	dht_ping(nd[0], now, &a1);
	T_ASSERT_EQ(nq, 1);
	/* A reply with a guessed transaction id, from another address. */
	memcpy(m.sender, ids[2], DHT_ID_LEN);
	m.txid = 42;
	len = dht__msg_encode(&m, buf);
	dht_get_stats(nd[0], &before);
	dht_input(nd[0], now, &a2, buf, len);
	dht_get_stats(nd[0], &after);
	T_ASSERT_EQ(after.dropped_malformed, before.dropped_malformed + 1);
	T_ASSERT_EQ(after.contacts, 0);
	run_for(20); /* the genuine pong arrives */
	dht_get_stats(nd[0], &after);
	T_ASSERT_EQ(after.contacts, 1);
	free_nodes();
}

static void floods_are_rate_limited(void)
{
	struct dht_msg m = { .type = DHT_PING };
	struct dht_stats st;
	uint8_t buf[DHT_MSG_MAX];
	struct dht_addr a = addr_of(1);
	struct dht_opts o = { .send = net_send, .random = rnd_fn, .rate_per_s = 10 };
	struct dht *d;
	size_t len;

	make_nodes(2);
	o.id = ids[0];
	T_ASSERT_OK(dht_new(&o, now, &d));
	memcpy(m.sender, ids[1], DHT_ID_LEN);
	len = dht__msg_encode(&m, buf);
	cur = 0;
	for (int i = 0; i < 1000; i++)
		dht_input(d, now, &a, buf, len);
	dht_get_stats(d, &st);
	T_ASSERT(st.dropped_rate >= 970);
	dht_free(d);
	free_nodes();
}

static void full_bucket_keeps_live_contacts_and_replaces_dead_ones(void)
{
	struct dht_stats st;
	unsigned far;

	make_nodes(120);
	join_all();
	/* Node 0's bucket 0 (ids differing in the first bit) holds at most k. */
	far = 0;
	T_ASSERT(dht_bucket_size(nd[0], far) <= DHT_K);
	dht_get_stats(nd[0], &st);
	T_ASSERT(st.contacts > DHT_K);
	/* Kill every contact; pings and lookups time them out and evict them,
	 * or mark them so lookups skip them. */
	for (size_t i = 1; i < n; i++)
		dead[i] = true;
	for (int k = 0; k < 5; k++) {
		uint8_t t[DHT_ID_LEN];
		struct res x = { 0 };

		t_rand_fill(t, sizeof(t));
		cur = 0;
		T_ASSERT_OK(dht_find_node(nd[0], now, t, on_done, &x));
		run_for(6000);
		T_ASSERT(x.done); /* a lookup among the dead still ends */
		T_ASSERT_EQ(x.r.rc, -ETIMEDOUT);
	}
	dht_get_stats(nd[0], &st);
	T_ASSERT(st.timeouts > 0);
	free_nodes();
}

static void signed_records_put_get_replace_and_refuse(void)
{
	uint8_t pk[32], sk[64], target[DHT_ID_LEN];
	struct dht_record rec = { 0 }, old;
	struct res x = { 0 };

	make_nodes(80);
	join_all();
	crypto_sign_keypair(pk, sk);
	memcpy(rec.pk, pk, 32);
	rec.salt_len = 4;
	memcpy(rec.salt, "head", 4);
	rec.seq = 1;
	rec.value_len = 5;
	memcpy(rec.value, "first", 5);
	dht_record_sign(&rec, sk);
	T_ASSERT(dht_record_verify(&rec));
	dht_record_target(&rec, target);
	cur = 3;
	T_ASSERT_OK(dht_put(nd[3], now, &rec, 0, on_done, &x));
	run_for(2000);
	T_ASSERT(x.done && x.r.stored > 0);
	/* Found from elsewhere. */
	memset(&x, 0, sizeof(x));
	cur = 50;
	T_ASSERT_OK(dht_get(nd[50], now, target, on_done, &x));
	run_for(2000);
	T_ASSERT(x.done && x.r.has_record);
	T_ASSERT_EQ(x.r.record.seq, 1);
	T_ASSERT(!memcmp(x.r.record.value, "first", 5));
	/* A newer version replaces it; an older one does not come back. */
	old = rec;
	rec.seq = 2;
	memcpy(rec.value, "newer", 5);
	dht_record_sign(&rec, sk);
	memset(&x, 0, sizeof(x));
	cur = 7;
	T_ASSERT_OK(dht_put(nd[7], now, &rec, 1, on_done, &x));
	run_for(2000);
	memset(&x, 0, sizeof(x));
	cur = 9;
	T_ASSERT_OK(dht_put(nd[9], now, &old, 0, on_done, &x));
	run_for(2000);
	memset(&x, 0, sizeof(x));
	cur = 60;
	T_ASSERT_OK(dht_get(nd[60], now, target, on_done, &x));
	run_for(2000);
	T_ASSERT(x.r.has_record && x.r.record.seq == 2);
	T_ASSERT(!memcmp(x.r.record.value, "newer", 5));
	/* A forged record is refused at the source. */
	rec.value[0] ^= 1;
	T_ASSERT_EQ(dht_put(nd[1], now, &rec, 0, on_done, &x), -EBADMSG);
	/* Nothing under a key nobody wrote. */
	memset(&x, 0, sizeof(x));
	target[0] ^= 0x55;
	T_ASSERT_OK(dht_get(nd[61], now, target, on_done, &x));
	run_for(2000);
	T_ASSERT(x.done && x.r.rc == -ENOENT && !x.r.has_record);
	free_nodes();
}

static void table_saved_and_reloaded(void)
{
	uint8_t buf[64 * 1024];
	struct dht_opts o = { .send = net_send, .random = rnd_fn };
	struct dht *fresh;
	struct dht_stats st;
	long len;

	make_nodes(60);
	join_all();
	len = dht_save(nd[5], buf, sizeof(buf));
	T_ASSERT(len > 8);
	o.id = ids[5];
	T_ASSERT_OK(dht_new(&o, now, &fresh));
	dht_free(nd[5]);
	nd[5] = fresh;
	cur = 5;
	T_ASSERT(dht_load(fresh, now, buf, (size_t)len) > 0);
	run_for(100);
	dht_get_stats(fresh, &st);
	T_ASSERT(st.contacts > 10);
	T_ASSERT_EQ(dht_load(fresh, now, buf, (size_t)len - 1), -EPROTO);
	free_nodes();
}

T_MAIN(T_CASE(lookups_find_the_closest_node), T_CASE(providers_are_found_and_survive_churn),
       T_CASE(stores_need_a_token_from_the_same_address),
       T_CASE(replies_only_from_the_address_asked), T_CASE(floods_are_rate_limited),
       T_CASE(full_bucket_keeps_live_contacts_and_replaces_dead_ones),
       T_CASE(signed_records_put_get_replace_and_refuse), T_CASE(table_saved_and_reloaded))
