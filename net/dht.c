// SPDX-License-Identifier: MIT
/*
 * net/dht.c - the Kademlia engine: requests in flight and their timeouts,
 * serving other nodes' requests, write tokens, per-source rate limits,
 * liveness, bucket refresh, joining, republishing, statistics. No I/O (see
 * dht.h): datagrams leave through the caller's send callback. The table is
 * dht_rt.c, stored records dht_store.c, lookups dht_lookup.c, the wire
 * format dht_msg.c.
 *
 * Invariants:
 *  1. A reply is accepted only from the address its request went to, with
 *     the transaction id we chose (48 random bits above the 16-bit slot
 *     index), and only of the type that answers the request; so a spoofer
 *     must see our traffic to answer for someone else.
 *  2. Storing needs a write token: a truncated HMAC-SHA-256 of the
 *     requester's IP address under a secret that rotates every 5 minutes
 *     (the previous one is still accepted). Only the address a token was
 *     sent to can present it.
 *  3. Every request has a deadline; nothing waits for ever. A request is
 *     sent again once when it is slow and fails at its hard deadline.
 *  4. What a peer can make us keep is bounded: requests per source and per
 *     second, the request table, the routing table, the stores' caps.
 */
#define LOG_SUBSYS "dht"
#include "net/dht.h"
#include "common/log.h"
#include "net/dht_int.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SOFT_MIN 15 /* ms: no request is "slow" sooner */
#define SOFT_MAX 1500
#define RTO_MIN 50 /* ms: the least a request waits after being sent again */
#define RTO_MAX 3000
#define SOFT_UNKNOWN 500 /* before any round trip was measured */
#define RTO_UNKNOWN 1000
#define PING_BOUND 1000	  /* ms: the round trip assumed possible for pings nobody waits for */
#define STALE_S (15 * 60) /* a contact quiet this long is checked before it is trusted */
#define TOKEN_ROTATE_MS (5 * 60 * 1000)
#define JOIN_AGAIN_MS 30000  /* look ourselves up again while the table has < k contacts */
#define JOIN_RETRY_MIN 2000  /* ... or, while a self-lookup finds < k nodes, after this, */
#define JOIN_RETRY_MAX 60000 /* doubling up to this */
#define MAINT_MS 1000
#define PINGS_PER_MAINT 4 /* liveness pings per maintenance pass */
#define REFRESHES_PER_MAINT 2
#define SWEEP_BUDGET 1024   /* store slots visited per maintenance pass */
#define RATE_HOST_FACTOR 20 /* one IP (or IPv6 /64) may send this many times a single port's rate */

/* ---- helpers ---- */

void dht__rnd(struct dht *d, void *buf, size_t len)
{
	if (d->random)
		d->random(d->random_arg, buf, len);
	else
		randombytes_buf(buf, len);
}

void dht__send_msg(struct dht *d, const struct dht_addr *to, struct dht_msg *m)
{
	uint8_t buf[DHT_MSG_MAX];
	size_t len;

	memcpy(m->sender, d->id, DHT_ID_LEN);
	if (!(len = dht__msg_encode(m, buf)))
		return;
	d->st.msgs_out++;
	d->st.bytes_out += len;
	d->st.type[m->type].msgs_out++;
	d->st.type[m->type].bytes_out += len;
	d->send(d->send_arg, to, buf, len);
}

static bool is_request(uint8_t type)
{
	return type == DHT_PING || type == DHT_FIND_NODE || type == DHT_GET_PROVIDERS ||
	       type == DHT_ADD_PROVIDER || type == DHT_GET || type == DHT_PUT;
}

/* Does @reply answer a request of type @req? */
static bool answers(uint8_t req, uint8_t reply)
{
	switch (req) {
	case DHT_PING:
		return reply == DHT_PONG;
	case DHT_FIND_NODE:
		return reply == DHT_NODES;
	case DHT_GET_PROVIDERS:
		return reply == DHT_PROVIDERS;
	case DHT_GET:
		return reply == DHT_VALUE;
	case DHT_ADD_PROVIDER:
	case DHT_PUT:
		return reply == DHT_ACK || reply == DHT_ERROR;
	default:
		return false;
	}
}

/* ---- round-trip times ---- */

/*
 * Contacts we have measured get TCP's estimator (dht_rt.c). A node we have
 * never asked gets a timeout from the distribution of all recent round
 * trips: the SRTT/RTTVAR of a mix of nodes mostly reflects the few we talk to
 * most and understates the spread, so a far but live node would time out.
 * A histogram with four buckets per doubling, halved every 1024 samples,
 * gives its 90th and 99th percentiles.
 */
static uint32_t rtt_quantile(const struct dht *d, uint32_t total, unsigned permille)
{
	uint64_t want = ((uint64_t)total * permille + 999) / 1000, seen = 0;

	for (unsigned i = 0; i < DHT_RTT_BUCKETS; i++)
		if ((seen += d->rtt_hist[i]) >= want)
			return dht__rtt_ms((uint8_t)(i + 1));
	return dht__rtt_ms(DHT_RTT_BUCKETS);
}

static void rtt_sample(struct dht *d, uint32_t ms)
{
	uint32_t total = 0;

	dht__rtt_update(&d->srtt_all, &d->rttvar_all, ms);
	d->rtt_hist[P2P_MIN(dht__rtt_code(ms) - 1u, DHT_RTT_BUCKETS - 1u)]++;
	if (++d->rtt_samples % 1024 == 0)
		for (unsigned i = 0; i < DHT_RTT_BUCKETS; i++)
			d->rtt_hist[i] /= 2;
	if (d->rtt_samples > 16 && d->rtt_samples % 16 != 0)
		return;
	for (unsigned i = 0; i < DHT_RTT_BUCKETS; i++)
		total += d->rtt_hist[i];
	d->rtt_q90 = rtt_quantile(d, total, 900);
	d->rtt_q99 = rtt_quantile(d, total, 990);
}

/* ---- requests in flight ---- */

/*
 * A request's three deadlines, relative to when it is sent: slow (its
 * lookup stops waiting for it and asks another node), sent again (once),
 * failed. From the contact's own round-trip estimate, or, for a node never
 * measured, from the distribution of everyone's.
 */
struct deadlines {
	uint64_t slow, retx, fail;
};

static struct deadlines deadlines(const struct dht *d, const struct dht__contact *c, uint64_t bound)
{
	uint64_t slow, retx, fail;

	if (c && c->srtt) {
		/* TCP's estimator: late beyond SRTT + 2 RTTVAR is suspicious,
		 * and the copy sent then gets a full RTO (SRTT + 4 RTTVAR). */
		slow = retx = (uint64_t)c->srtt + 2u * c->rttvar + 5;
		fail = retx + P2P_MAX((uint64_t)c->srtt + 4u * c->rttvar + 10, (uint64_t)RTO_MIN);
	} else if (d->rtt_samples) {
		/* Slow once slower than 90 % of round trips (a lookup moves on);
		 * sent again past the 99th percentile (loss, not distance);
		 * failed at twice that. */
		slow = d->rtt_q90 + 5;
		retx = P2P_MAX((uint64_t)d->rtt_q99 + 5, slow);
		fail = P2P_MAX(2u * (uint64_t)d->rtt_q99 + 10, retx + RTO_MIN);
		/* A node far from us but close to the one that named it would
		 * miss a deadline made of our own percentiles: use the bound on
		 * its round trip (ours to the namer plus the namer's to it). */
		if (bound) {
			retx = P2P_MAX(retx, bound + 10);
			fail = P2P_MAX(fail, bound + bound / 2 + 20);
		}
	} else {
		slow = retx = SOFT_UNKNOWN;
		fail = SOFT_UNKNOWN + RTO_UNKNOWN;
	}
	slow = P2P_MIN(P2P_MAX(slow, (uint64_t)SOFT_MIN), (uint64_t)SOFT_MAX);
	retx = P2P_MIN(P2P_MAX(retx, slow), (uint64_t)SOFT_MAX);
	fail = P2P_MIN(P2P_MAX(fail, retx + RTO_MIN), retx + RTO_MAX);
	return (struct deadlines){ slow, retx, fail };
}

static int rpc_grow(struct dht *d)
{
	size_t ncap = d->caprpc ? 2 * d->caprpc : 16;
	struct dht__rpc *nr;
	uint16_t *nf;

	if (d->caprpc >= DHT_RPC_MAX)
		return -EAGAIN;
	ncap = P2P_MIN(ncap, (size_t)DHT_RPC_MAX);
	if (!(nr = realloc(d->rpc, ncap * sizeof(*nr))))
		return -ENOMEM;
	d->rpc = nr;
	if (!(nf = realloc(d->rpc_free, ncap * sizeof(*nf))))
		return -ENOMEM;
	d->rpc_free = nf;
	memset(nr + d->caprpc, 0, (ncap - d->caprpc) * sizeof(*nr));
	/* Highest index at the bottom of the stack: low slots are used first. */
	for (size_t i = ncap; i-- > d->caprpc;)
		d->rpc_free[d->nfree++] = (uint16_t)i;
	d->caprpc = ncap;
	return 0;
}

struct dht__rpc *dht__rpc_new(struct dht *d, uint64_t now, uint8_t type, const struct dht_addr *to,
			      const uint8_t *id, uint32_t bound_ms)
{
	struct dht__contact *c = id ? dht__rt_find(&d->rt, id) : NULL;
	struct deadlines dl = deadlines(d, c, bound_ms);
	uint64_t rnd;
	struct dht__rpc *r;
	uint16_t slot;

	if (!d->nfree && rpc_grow(d) < 0)
		return NULL;
	slot = d->rpc_free[--d->nfree];
	r = &d->rpc[slot];
	memset(r, 0, sizeof(*r));
	dht__rnd(d, &rnd, sizeof(rnd));
	rnd <<= 16;
	r->txid = (rnd ? rnd : 1ULL << 16) | slot; /* never 0: 0 marks a free slot */
	r->type = type;
	r->to = *to;
	if (id) {
		memcpy(r->id, id, DHT_ID_LEN);
		r->id_known = true;
	}
	r->lookup = -1;
	r->sent = now;
	r->soft = now + dl.slow;
	r->retx_at = now + dl.retx;
	r->hard = now + dl.fail;
	d->rpc_next = P2P_MIN(d->rpc_next, r->soft);
	d->nrpc++;
	return r;
}

static void rpc_end(struct dht *d, struct dht__rpc *r)
{
	uint16_t slot = (uint16_t)(r - d->rpc);

	r->txid = 0;
	d->rpc_free[d->nfree++] = slot;
	d->nrpc--;
}

/* @bound_ms: see dht__rpc_new. Pings nobody waits for (checking a node
 * before it enters the table, a bootstrap address) pass a generous one: a
 * live node far from us must not be missed for being slower than our usual
 * round trips. */
static void send_ping(struct dht *d, uint64_t now, const struct dht_addr *to, const uint8_t *id,
		      uint32_t bound_ms)
{
	struct dht__rpc *r;
	struct dht_msg m;

	if (!(r = dht__rpc_new(d, now, DHT_PING, to, id, bound_ms)))
		return;
	dht__msg_init(&m, DHT_PING, r->txid);
	dht__send_msg(d, to, &m);
}

static void ping_contact(struct dht *d, uint64_t now, struct dht__contact *c)
{
	uint8_t id[DHT_ID_LEN];
	struct dht_addr a = c->addr;

	c->flags |= DHT__C_PINGING;
	memcpy(id, c->id, DHT_ID_LEN);
	send_ping(d, now, &a, id, 0); /* c may move once the table changes */
}

void dht_ping(struct dht *d, uint64_t now, const struct dht_addr *addr)
{
	if (dht__addr_valid(addr))
		send_ping(d, now, addr, NULL, PING_BOUND);
}

int dht_bootstrap(struct dht *d, uint64_t now, const struct dht_addr *addr)
{
	struct dht__rpc *r;
	struct dht_msg m;

	if (!dht__addr_valid(addr))
		return -EINVAL;
	if (!(r = dht__rpc_new(d, now, DHT_PING, addr, NULL, PING_BOUND)))
		return -EAGAIN;
	dht__msg_init(&m, DHT_PING, r->txid);
	dht__send_msg(d, addr, &m);
	/* The answer adds the node; joining then looks ourselves up through it. */
	d->join_due = true;
	return 0;
}

/* ---- learning about nodes ---- */

static void learn(struct dht *d, uint64_t now, const uint8_t id[static DHT_ID_LEN],
		  const struct dht_addr *from, bool replied, int rtt)
{
	struct dht__contact *probe;
	size_t before = d->rt.ncontacts;
	int rc = dht__rt_heard(&d->rt, now, id, from, replied, rtt, STALE_S, &probe);

	if (rc == DHT__RT_UNKNOWN) {
		/* A node that asked us something: we add it once it answers us. */
		send_ping(d, now, from, id, PING_BOUND);
	} else if (rc == DHT__RT_ADDED && before == 0) {
		d->join_due = true; /* our first contact: join through it now */
	}
	if (probe)
		ping_contact(d, now, probe);
}

/* @id did not answer a request. */
static void failed(struct dht *d, uint64_t now, const uint8_t id[static DHT_ID_LEN])
{
	struct dht__contact *promoted = dht__rt_failed(&d->rt, id);

	if (promoted && !(promoted->flags & DHT__C_VERIFIED))
		ping_contact(d, now, promoted);
}

/* ---- tokens and rate limits ---- */

static void token_keys(struct dht *d)
{
	for (int w = 0; w < 2; w++)
		crypto_auth_hmacsha256_init(&d->mac[w], d->secret[w], sizeof(d->secret[w]));
}

static uint64_t token_for(const struct dht *d, int which, const struct dht_addr *a)
{
	uint8_t mac[crypto_auth_hmacsha256_BYTES], in[1 + 16];
	crypto_auth_hmacsha256_state st = d->mac[which]; /* keyed already: half the work */
	uint64_t t = 0;

	/* Bound to the IP only: a NATed node's port may change between the
	 * lookup that got the token and the store that presents it. */
	in[0] = a->family;
	memcpy(in + 1, a->ip, 16);
	crypto_auth_hmacsha256_update(&st, in, sizeof(in));
	crypto_auth_hmacsha256_final(&st, mac);
	for (int i = 0; i < 8; i++)
		t = t << 8 | mac[i];
	return t;
}

static bool token_ok(const struct dht *d, const struct dht_addr *a, uint64_t token)
{
	uint8_t got[8], want[8];
	bool ok = false;

	for (int i = 0; i < 8; i++)
		got[i] = (uint8_t)(token >> (56 - 8 * i));
	for (int w = 0; w < 2; w++) {
		uint64_t t = token_for(d, w, a);

		for (int i = 0; i < 8; i++)
			want[i] = (uint8_t)(t >> (56 - 8 * i));
		ok |= sodium_memcmp(got, want, sizeof(got)) == 0;
	}
	return ok;
}

/* Take one request from the bucket of @key in @table; false when it is empty. */
static bool bucket_take(struct dht *d, struct dht__rate *table, uint64_t now, uint64_t key,
			uint32_t per_s)
{
	struct dht__rate *r = &table[key % d->nrate];
	uint64_t full = P2P_MIN(2000ULL * per_s, (uint64_t)UINT32_MAX); /* two seconds' worth */
	uint32_t tag = (uint32_t)(key >> 32), elapsed = (uint32_t)now - r->last;

	if (r->key != tag) {
		/* A new source takes the slot: a flood of sources cannot grow the
		 * table, it only makes the limit forget (and start full). */
		r->key = tag;
		r->last = (uint32_t)now;
		r->tokens = (uint32_t)full;
	} else if (elapsed) {
		/* 12-byte entries: the clock is kept modulo 2^32 ms (49 days);
		 * a source quiet for longer than that refills partly, harmlessly. */
		r->tokens = (uint32_t)P2P_MIN(r->tokens + (uint64_t)elapsed * per_s, full);
		r->last = (uint32_t)now;
	}
	if (r->tokens < 1000)
		return false;
	r->tokens -= 1000;
	return true;
}

static uint64_t rate_key(const struct dht *d, const struct dht_addr *a, bool with_port)
{
	uint8_t in[1 + 16 + 2], h[crypto_shorthash_BYTES];
	size_t n = 0;
	uint64_t k = 0;

	in[n++] = (uint8_t)(a->family | (with_port ? 0x80 : 0));
	/* IPv6: a host usually has a whole /64, so that is one source. */
	memcpy(in + n, a->ip, a->family == 4 ? 4 : with_port ? 16 : 8);
	n += a->family == 4 ? 4 : with_port ? 16 : 8;
	if (with_port) {
		in[n++] = (uint8_t)(a->port >> 8);
		in[n++] = (uint8_t)a->port;
	}
	crypto_shorthash(h, in, n, d->ratekey);
	for (size_t i = 0; i < sizeof(h); i++)
		k = k << 8 | h[i];
	return k;
}

static bool is_loopback(const struct dht_addr *a)
{
	static const uint8_t v6lo[16] = { [15] = 1 };

	return a->family == 4 ? a->ip[0] == 127 : !memcmp(a->ip, v6lo, 16);
}

static bool rate_ok(struct dht *d, uint64_t now, const struct dht_addr *a)
{
	/* Per address and port, and per host: a host cycling through ports
	 * gets RATE_HOST_FACTOR times one port's share, no more (hosts have
	 * their own table, so its many ports cannot evict its host entry).
	 * Nodes on loopback all share one IP (tests, benchmarks): per port only. */
	if (!bucket_take(d, d->rate, now, rate_key(d, a, true), d->rate_per_s))
		return false;
	return is_loopback(a) || bucket_take(d, d->rate + d->nrate, now, rate_key(d, a, false),
					     d->rate_per_s * RATE_HOST_FACTOR);
}

/* ---- serving requests ---- */

static void serve(struct dht *d, uint64_t now, const struct dht_addr *from, const struct dht_msg *q)
{
	struct dht_msg r;
	const struct dht_record *rec;
	struct dht_contact c;
	uint64_t seq = 0;
	int rc;

	uint16_t srtt[DHT_K];

	/* Not a full clear: the 3 KiB message would cost more than the reply. */
	dht__msg_init(&r, 0, q->txid);
	switch (q->type) {
	case DHT_PING:
		r.type = DHT_PONG;
		r.observed = *from;
		break;
	case DHT_FIND_NODE:
		r.type = DHT_NODES;
		r.token = token_for(d, 0, from);
		r.nnodes = dht__rt_closest(&d->rt, q->target, q->sender, r.nodes, srtt, DHT_K);
		break;
	case DHT_GET_PROVIDERS:
		r.type = DHT_PROVIDERS;
		r.token = token_for(d, 0, from);
		r.nproviders = dht__prov_get(&d->store, now, q->target, d->prov_rot++, r.providers,
					     DHT_PROVIDERS_MAX - 1);
		/* And ourselves, if we provide it: with no address, which the
		 * asker fills in with the one it reached us at. */
		for (size_t i = 0; i < d->nown; i++)
			if (!memcmp(d->own[i].key, q->target, DHT_ID_LEN) && d->own[i].port) {
				struct dht_contact *me = &r.providers[r.nproviders++];

				memset(me, 0, sizeof(*me));
				memcpy(me->id, d->id, DHT_ID_LEN);
				me->addr.family = from->family;
				me->addr.port = d->own[i].port;
				break;
			}
		r.nnodes = dht__rt_closest(&d->rt, q->target, q->sender, r.nodes, srtt, DHT_K);
		break;
	case DHT_GET:
		r.type = DHT_VALUE;
		r.token = token_for(d, 0, from);
		if ((rec = dht__rec_get(&d->store, now, q->target)) && rec->seq > q->seq) {
			r.has_record = true;
			r.record = *rec;
		}
		r.nnodes = dht__rt_closest(&d->rt, q->target, q->sender, r.nodes, srtt, DHT_K);
		break;
	case DHT_ADD_PROVIDER:
		if (!token_ok(d, from, q->token)) {
			d->st.dropped_token++;
			r.type = DHT_ERROR;
			r.error = DHT_ERR_TOKEN;
			break;
		}
		memcpy(c.id, q->sender, DHT_ID_LEN);
		c.addr = *from;
		if (q->port)
			c.addr.port = q->port;
		rc = dht__prov_add(&d->store, now, q->target, &c);
		r.type = rc < 0 ? DHT_ERROR : DHT_ACK;
		r.error = rc < 0 ? DHT_ERR_FULL : 0;
		break;
	case DHT_PUT:
		if (!token_ok(d, from, q->token)) {
			d->st.dropped_token++;
			r.type = DHT_ERROR;
			r.error = DHT_ERR_TOKEN;
			break;
		}
		rc = dht__rec_put(&d->store, now, &q->record, q->cas, &seq);
		r.type = rc ? DHT_ERROR : DHT_ACK;
		r.error = (uint8_t)rc;
		r.seq = seq;
		break;
	default:
		return;
	}
	/* With each node, our round trip to it: the asker bounds its own. */
	for (size_t i = 0; i < r.nnodes; i++)
		r.node_rtt[i] = srtt[i] ? dht__rtt_code(srtt[i]) : 0;
	dht__send_msg(d, from, &r);
}

/* ---- input ---- */

void dht_input(struct dht *d, uint64_t now, const struct dht_addr *from, const uint8_t *buf,
	       size_t len)
{
	struct dht_msg m;
	struct dht__rpc *r, copy;
	size_t slot;
	int rtt = -1;

	d->st.msgs_in++;
	d->st.bytes_in += len;
	if (!dht__addr_valid(from) || dht__msg_decode(buf, len, &m) < 0 ||
	    !memcmp(m.sender, d->id, DHT_ID_LEN)) {
		d->st.dropped_malformed++;
		return;
	}
	d->st.type[m.type].msgs_in++;
	d->st.type[m.type].bytes_in += len;
	if (is_request(m.type)) {
		if (!rate_ok(d, now, from)) {
			d->st.dropped_rate++;
			return;
		}
		learn(d, now, m.sender, from, false, -1);
		serve(d, now, from, &m);
		return;
	}
	/* A reply: it must match a request we sent to that very address. */
	slot = (size_t)(m.txid & 0xffff);
	if (slot >= d->caprpc || !(r = &d->rpc[slot])->txid || r->txid != m.txid ||
	    !dht_addr_eq(&r->to, from) || !answers(r->type, m.type)) {
		d->st.dropped_unsolicited++;
		return;
	}
	/* End it first: what follows may send, and grow the request table. */
	copy = *r;
	rpc_end(d, r);
	if (copy.id_known && memcmp(copy.id, m.sender, DHT_ID_LEN)) {
		/* Another node lives at that address now: the one we meant is
		 * gone, and the newcomer did answer us. */
		failed(d, now, copy.id);
		learn(d, now, m.sender, from, true, -1);
		if (copy.lookup >= 0)
			dht__lookup_timeout(d, now, &copy, true);
		return;
	}
	if (!copy.retx) {
		/* Karn: a retransmitted request's reply says nothing about RTT. */
		rtt = (int)P2P_MIN(now - copy.sent, (uint64_t)60000);
		rtt_sample(d, (uint32_t)rtt);
	}
	learn(d, now, m.sender, from, true, rtt);
	if (copy.lookup >= 0)
		dht__lookup_reply(d, now, &copy, &m);
}

/* ---- timers ---- */

static void retransmit(struct dht *d, size_t i)
{
	struct dht__rpc *r = &d->rpc[i];
	struct dht_msg m;

	r->retx = true; /* done, or not worth doing: either way no RTT sample */
	if (r->lookup >= 0) {
		if (!dht__lookup_request(d, r, &m))
			return; /* its lookup is over: let it time out quietly */
	} else {
		dht__msg_init(&m, r->type, r->txid);
	}
	m.txid = r->txid;
	d->st.retransmits++;
	dht__send_msg(d, &r->to, &m);
}

static void scan_requests(struct dht *d, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	/* Requests made by the handlers below lower d->rpc_next themselves. */
	d->rpc_next = UINT64_MAX;
	for (size_t i = 0; i < d->caprpc; i++) {
		struct dht__rpc *r = &d->rpc[i], copy;

		if (!r->txid)
			continue;
		if (now >= r->hard) {
			copy = *r;
			rpc_end(d, r);
			d->st.timeouts++;
			if (copy.id_known)
				failed(d, now, copy.id);
			if (copy.lookup >= 0)
				dht__lookup_timeout(d, now, &copy, true);
			continue;
		}
		if (!r->retx && now >= r->retx_at)
			retransmit(d, i);
		if (!r->slow && now >= r->soft) {
			r->slow = true;
			copy = *r;
			if (copy.lookup >= 0)
				dht__lookup_timeout(d, now, &copy, false); /* may grow d->rpc */
			r = &d->rpc[i];
		}
		if (r->txid)
			next = P2P_MIN(next, !r->slow ? r->soft : !r->retx ? r->retx_at : r->hard);
	}
	d->rpc_next = P2P_MIN(d->rpc_next, next);
}

static void refresh_buckets(struct dht *d, uint64_t now)
{
	uint32_t now_s = (uint32_t)(now / 1000);
	unsigned started = 0, pinged = 0;

	for (unsigned i = 0; i < d->rt.nb; i++) {
		struct dht__bucket *b = &d->rt.b[i];

		/* Liveness: the least recently seen contact, once it has been
		 * quiet for a while, is asked whether it is still there. */
		if (b->n && pinged < PINGS_PER_MAINT && !(b->c[0].flags & DHT__C_PINGING) &&
		    now_s - b->c[0].seen_s >= STALE_S) {
			ping_contact(d, now, &b->c[0]);
			pinged++;
			b = &d->rt.b[i];
		}
		/* Refresh: a lookup of a random id in a bucket's range, once per
		 * refresh_ms while it has room (answers from the contacts it has
		 * would not fill it) or can split (our own range), else when none
		 * of its contacts has been heard from for that long. */
		if (started < REFRESHES_PER_MAINT && d->rt.ncontacts &&
		    (uint64_t)(now_s - b->refreshed_s) * 1000 >= d->refresh_ms &&
		    (b->n < DHT_K || i + 1 == d->rt.nb ||
		     (uint64_t)(now_s - b->heard_s) * 1000 >= d->refresh_ms)) {
			uint8_t rnd[DHT_ID_LEN], target[DHT_ID_LEN];

			dht__rnd(d, rnd, sizeof(rnd));
			dht__rt_random_id(&d->rt, i, rnd, target);
			b->refreshed_s = now_s;
			if (dht__lookup_start(d, now, DHT__L_FIND_NODE, target, 0, NULL, 0, NULL,
					      NULL) < 0)
				return;
			started++;
		}
	}
}

static void maintain(struct dht *d, uint64_t now)
{
	d->next_maint = now + MAINT_MS;
	if (now - d->secret_at >= TOKEN_ROTATE_MS) {
		memcpy(d->secret[1], d->secret[0], 32);
		dht__rnd(d, d->secret[0], 32);
		token_keys(d);
		d->secret_at = now;
	}
	(void)dht__store_expire(&d->store, now, SWEEP_BUDGET);
	for (size_t i = 0; i < d->nown; i++)
		if (now >= d->own[i].next) {
			d->own[i].next = now + d->store.provider_ttl / 2;
			if (dht__lookup_start(d, now, DHT__L_ADD_PROVIDER, d->own[i].key,
					      d->own[i].port, NULL, 0, NULL, NULL) < 0)
				d->own[i].next = now + MAINT_MS; /* busy: soon */
		}
	refresh_buckets(d, now);
}

uint64_t dht_tick(struct dht *d, uint64_t now)
{
	uint64_t next;

	if (now >= d->rpc_next)
		scan_requests(d, now);
	/* Joining: look ourselves up, which fills the table around our id and
	 * tells our neighbours about us (they ping us back); again soon if it
	 * found fewer than k nodes (the nodes we joined through may have just
	 * arrived themselves), and every JOIN_AGAIN_MS while the table is small. */
	if (d->rt.ncontacts && !d->join_running &&
	    (d->join_due || (now >= d->next_join && (!d->joined || d->rt.ncontacts < DHT_K)))) {
		d->join_due = false;
		if (dht__lookup_start(d, now, DHT__L_JOIN, d->id, 0, NULL, 0, NULL, NULL) < 0)
			d->next_join = now + MAINT_MS;
		else
			d->join_running = true;
	}
	if (now >= d->next_maint)
		maintain(d, now);
	if (d->look_due)
		dht__lookup_run_due(d, now);
	next = P2P_MIN(d->rpc_next, d->next_maint);
	if (d->look_due || (d->join_due && d->rt.ncontacts))
		next = now;
	return next;
}

/* ---- lookups (the work is in dht_lookup.c) ---- */

void dht__joined(struct dht *d, uint64_t now, size_t found)
{
	d->join_running = false;
	if (found >= DHT_K) {
		d->joined = true;
		d->join_retry = 0;
		d->next_join = now + JOIN_AGAIN_MS;
		return;
	}
	d->joined = false;
	d->join_retry =
	    d->join_retry ? P2P_MIN(2 * d->join_retry, (uint64_t)JOIN_RETRY_MAX) : JOIN_RETRY_MIN;
	d->next_join = now + d->join_retry;
}

int dht_find_node(struct dht *d, uint64_t now, const uint8_t target[static DHT_ID_LEN],
		  dht_done_fn *done, void *arg)
{
	return dht__lookup_start(d, now, DHT__L_FIND_NODE, target, 0, NULL, 0, done, arg);
}

int dht_get_providers(struct dht *d, uint64_t now, const uint8_t key[static DHT_ID_LEN],
		      dht_done_fn *done, void *arg)
{
	return dht__lookup_start(d, now, DHT__L_GET_PROVIDERS, key, 0, NULL, 0, done, arg);
}

int dht_add_provider(struct dht *d, uint64_t now, const uint8_t key[static DHT_ID_LEN],
		     uint16_t port, dht_done_fn *done, void *arg)
{
	struct dht__own *o = NULL;
	int rc;

	for (size_t i = 0; i < d->nown && !o; i++)
		if (!memcmp(d->own[i].key, key, DHT_ID_LEN))
			o = &d->own[i];
	if (!o) {
		if (d->nown == d->capown) {
			size_t cap = d->capown ? d->capown * 2 : 8;
			struct dht__own *no = realloc(d->own, cap * sizeof(*no));

			if (!no)
				return -ENOMEM;
			d->own = no;
			d->capown = cap;
		}
		o = &d->own[d->nown];
		memset(o, 0, sizeof(*o));
		memcpy(o->key, key, DHT_ID_LEN);
	}
	if ((rc = dht__lookup_start(d, now, DHT__L_ADD_PROVIDER, key, port, NULL, 0, done, arg)) <
	    0)
		return rc;
	if (o == &d->own[d->nown])
		d->nown++;
	o->port = port;
	o->next = now + d->store.provider_ttl / 2;
	return 0;
}

void dht_remove_provider(struct dht *d, const uint8_t key[static DHT_ID_LEN])
{
	for (size_t i = 0; i < d->nown; i++)
		if (!memcmp(d->own[i].key, key, DHT_ID_LEN)) {
			d->own[i] = d->own[--d->nown];
			return;
		}
}

int dht_put(struct dht *d, uint64_t now, const struct dht_record *rec, uint64_t cas,
	    dht_done_fn *done, void *arg)
{
	uint8_t target[DHT_ID_LEN];

	if (!dht_record_verify(rec))
		return -EBADMSG;
	dht_record_target(rec, target);
	return dht__lookup_start(d, now, DHT__L_PUT, target, 0, rec, cas, done, arg);
}

int dht_get(struct dht *d, uint64_t now, const uint8_t target[static DHT_ID_LEN], dht_done_fn *done,
	    void *arg)
{
	return dht__lookup_start(d, now, DHT__L_GET, target, 0, NULL, 0, done, arg);
}

/* ---- life cycle, statistics, persistence ---- */

int dht_new(const struct dht_opts *o, uint64_t now, struct dht **ret_dht)
{
	uint8_t sipkey[16];
	struct dht *d;
	int rc;

	if (!o || !o->id || !o->send)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	if (!(d = calloc(1, sizeof(*d))))
		return -ENOMEM;
	memcpy(d->id, o->id, DHT_ID_LEN);
	d->send = o->send;
	d->send_arg = o->send_arg;
	d->random = o->random;
	d->random_arg = o->random_arg;
	d->refresh_ms = o->refresh_ms ? o->refresh_ms : 15 * 60 * 1000ULL;
	d->rate_per_s = o->rate_per_s ? o->rate_per_s : 50;
	d->nrate = o->rate_slots ? o->rate_slots : 1024;
	d->rpc_next = UINT64_MAX;
	if ((rc = dht__rt_init(&d->rt, d->id, o->pow_bits)) < 0)
		goto err_free;
	dht__rnd(d, sipkey, sizeof(sipkey));
	if ((rc = dht__store_init(&d->store, o, sipkey)) < 0)
		goto err_rt;
	if (!(d->rate = calloc(2 * d->nrate, sizeof(*d->rate)))) { /* ports, then hosts */
		rc = -ENOMEM;
		goto err_store;
	}
	dht__rnd(d, d->ratekey, sizeof(d->ratekey));
	dht__rnd(d, d->secret[0], 32);
	dht__rnd(d, d->secret[1], 32);
	token_keys(d);
	d->secret_at = now;
	d->next_maint = now + MAINT_MS;
	*ret_dht = d;
	return 0;
err_store:
	dht__store_done(&d->store);
err_rt:
	dht__rt_done(&d->rt);
err_free:
	free(d);
	return rc;
}

void dht_free(struct dht *d)
{
	if (!d)
		return;
	dht__lookup_free_all(d);
	dht__rt_done(&d->rt);
	dht__store_done(&d->store);
	sodium_memzero(d->secret, sizeof(d->secret));
	sodium_memzero(d->mac, sizeof(d->mac));
	free(d->rpc);
	free(d->rpc_free);
	free(d->own);
	free(d->rate);
	free(d);
}

void dht_get_stats(const struct dht *d, struct dht_stats *s)
{
	size_t table = dht__rt_mem(&d->rt), store = dht__store_mem(&d->store);

	*s = d->st;
	s->contacts = d->rt.ncontacts;
	s->replacements = d->rt.nrepl;
	s->buckets = d->rt.nb;
	s->provider_keys = d->store.prov.n;
	s->provider_records = d->store.nprov;
	s->records = d->store.recs.n;
	s->own_keys = d->nown;
	s->lookups_running = d->nlook;
	s->requests_inflight = d->nrpc;
	s->table_bytes = table;
	s->store_bytes = store;
	s->mem_bytes = sizeof(*d) + table + store + dht__lookup_mem(d) +
		       d->caprpc * (sizeof(*d->rpc) + sizeof(*d->rpc_free)) +
		       2 * d->nrate * sizeof(*d->rate) + d->capown * sizeof(*d->own);
	s->contact_bytes = d->rt.ncontacts + d->rt.nrepl
			       ? (table + sizeof(d->rt)) / (d->rt.ncontacts + d->rt.nrepl)
			       : 0;
}

size_t dht_buckets(const struct dht *d, struct dht_bucket_info *out, size_t max)
{
	for (size_t i = 0; i < d->rt.nb && i < max; i++) {
		out[i].prefix_lo = (unsigned)i;
		out[i].prefix_hi = i + 1 == d->rt.nb ? 255 : (unsigned)i;
		out[i].contacts = d->rt.b[i].n;
		out[i].replacements = d->rt.b[i].nrepl;
	}
	return d->rt.nb;
}

size_t dht_bucket_size(const struct dht *d, unsigned prefix)
{
	const struct dht__bucket *b;
	size_t n = 0;

	if (prefix >= 256)
		return 0;
	if (prefix < d->rt.nb - 1u)
		return d->rt.b[prefix].n;
	b = &d->rt.b[d->rt.nb - 1];
	for (size_t i = 0; i < b->n; i++)
		n += dht_common_prefix(d->id, b->c[i].id) == prefix;
	return n;
}

long dht_save(const struct dht *d, uint8_t *buf, size_t cap)
{
	return dht__rt_save(&d->rt, buf, cap);
}

int dht_load(struct dht *d, uint64_t now, const uint8_t *buf, size_t len)
{
	int n = dht__rt_load(&d->rt, buf, len);

	(void)now;
	if (n > 0)
		d->join_due = true; /* look ourselves up through them at the next tick */
	return n;
}
