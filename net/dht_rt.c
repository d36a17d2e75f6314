// SPDX-License-Identifier: MIT
/*
 * net/dht_rt.c - the routing table: k-buckets with replacement caches, split
 * only in our own id's range, failure counts, closest-k queries, save/load.
 * No I/O and no timers: the engine (dht.c) decides whom to ping and reports
 * answers and silences here.
 *
 * Bucket i < nb - 1 holds contacts sharing exactly i leading bits with our
 * id; the last bucket holds all the longer prefixes and is the only one that
 * splits when full (standard Kademlia: the tree only grows along our id).
 *
 * Invariants:
 *  1. The table never holds our own id, an invalid address, an id twice
 *     (bucket and cache together), or an id without the required proof of
 *     work; a contact is in the bucket dht__rt_bucket_of() names.
 *  2. A bucket holds at most DHT_K contacts, least recently seen first; its
 *     cache at most DHT_REPL_MAX, most recently heard last.
 *  3. A node enters a bucket only by answering one of our requests (or from
 *     a saved table, unverified until it answers); a request from an unknown
 *     node only earns it a ping, so a spoofed source cannot place contacts.
 *  4. A contact is replaced only after DHT_FAILS_MAX missed requests in a
 *     row, and only by a cached contact (or a verified newcomer): a table
 *     whose contacts all went silent (our own network down) is kept.
 *
 * Saved table layout (big-endian):
 *   u32 magic "P2RT", u8 version (1), u32 n (<= 256 * DHT_K),
 *   n x { 32 id, u8 family (4|6), 4|16 address, u16 port, u16 srtt ms }
 */
#include "net/dht_int.h"
#include "common/rbuf.h"
#include "net/ident.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SAVE_MAGIC 0x50325254U /* "P2RT" */
#define SAVE_VERSION 1

/* Ids as four big-endian 64-bit words: XOR distance compares as integers. */
static inline uint64_t word(const uint8_t *id, unsigned i)
{
	uint64_t v;

	memcpy(&v, id + 8 * i, 8);
	return __builtin_bswap64(v);
}

unsigned dht_common_prefix(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN])
{
	for (unsigned i = 0; i < DHT_ID_LEN / 8; i++) {
		uint64_t x = word(a, i) ^ word(b, i);

		if (x)
			return i * 64 + (unsigned)__builtin_clzll(x);
	}
	return DHT_ID_LEN * 8;
}

int dht_id_cmp_dist(const uint8_t t[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
		    const uint8_t b[static DHT_ID_LEN])
{
	for (unsigned i = 0; i < DHT_ID_LEN / 8; i++) {
		uint64_t tw = word(t, i), x = word(a, i) ^ tw, y = word(b, i) ^ tw;

		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

void dht__rtt_update(uint32_t *srtt, uint32_t *rttvar, uint32_t rtt)
{
	uint32_t err;

	if (!*srtt) {
		*srtt = P2P_MAX(rtt, 1u);
		*rttvar = rtt / 2;
		return;
	}
	/* RFC 6298: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|; SRTT = 7/8 SRTT + 1/8 R. */
	err = rtt > *srtt ? rtt - *srtt : *srtt - rtt;
	*rttvar = (3 * *rttvar + err) / 4;
	*srtt = P2P_MAX((7 * *srtt + rtt) / 8, 1u);
}

uint8_t dht__rtt_code(uint32_t ms)
{
	unsigned lg, frac;

	if (ms < 1)
		return 1;
	lg = 31u - (unsigned)__builtin_clz(ms);
	frac = lg >= 2 ? (ms >> (lg - 2)) & 3 : (ms << (2 - lg)) & 3;
	return (uint8_t)P2P_MIN(2 + 4 * lg + frac, 255u);
}

uint32_t dht__rtt_ms(uint8_t code)
{
	unsigned lg, frac;

	if (code <= 1)
		return code; /* unknown; under 1 ms */
	lg = (code - 2u) / 4;
	frac = (code - 2u) % 4;
	return lg > 24 ? UINT32_MAX : (uint32_t)(((4u + frac + 1) << lg) >> 2);
}

int dht__rt_init(struct dht__rt *rt, const uint8_t self[static DHT_ID_LEN], unsigned pow_bits)
{
	memset(rt, 0, sizeof(*rt));
	memcpy(rt->self, self, DHT_ID_LEN);
	rt->pow_bits = pow_bits;
	if (!(rt->b = calloc(8, sizeof(*rt->b))))
		return -ENOMEM;
	rt->capb = 8;
	rt->nb = 1;
	return 0;
}

void dht__rt_done(struct dht__rt *rt)
{
	for (unsigned i = 0; i < rt->nb; i++) {
		free(rt->b[i].c);
		free(rt->b[i].repl);
	}
	free(rt->b);
	memset(rt, 0, sizeof(*rt));
}

unsigned dht__rt_bucket_of(const struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN])
{
	unsigned l = dht_common_prefix(rt->self, id);

	return l < rt->nb - 1u ? l : rt->nb - 1u;
}

static struct dht__contact *find_in(struct dht__contact *v, size_t n,
				    const uint8_t id[static DHT_ID_LEN])
{
	uint64_t w0 = word(id, 0);

	/* The first word tells ids apart almost always; memcmp confirms. */
	for (size_t i = 0; i < n; i++)
		if (word(v[i].id, 0) == w0 && !memcmp(v[i].id, id, DHT_ID_LEN))
			return &v[i];
	return NULL;
}

struct dht__contact *dht__rt_find(const struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN])
{
	const struct dht__bucket *b = &rt->b[dht__rt_bucket_of(rt, id)];

	return find_in(b->c, b->n, id);
}

/* Room for one more in @v (capacity doubles from 2 up to @max). */
static int reserve(struct dht__contact **v, uint8_t n, uint8_t *cap, unsigned max)
{
	unsigned ncap;
	struct dht__contact *nv;

	if (n < *cap)
		return 0;
	if (*cap >= max)
		return -ENOSPC;
	ncap = P2P_MIN(*cap ? 2u * *cap : 2u, max);
	if (!(nv = realloc(*v, ncap * sizeof(*nv))))
		return -ENOMEM;
	*v = nv;
	*cap = (uint8_t)ncap;
	return 0;
}

static bool splittable(const struct dht__rt *rt, unsigned i)
{
	return i == rt->nb - 1u && rt->nb < DHT_BUCKETS_MAX;
}

/* Split the last bucket: contacts with longer prefixes move to a new last one. */
static int split_last(struct dht__rt *rt)
{
	unsigned last = rt->nb - 1u, moving = 0, ncap = 2;
	struct dht__bucket *old, *nw;

	if (rt->nb == rt->capb) {
		unsigned cap = P2P_MIN(2u * rt->capb, (unsigned)DHT_BUCKETS_MAX);
		struct dht__bucket *nb = realloc(rt->b, cap * sizeof(*nb));

		if (!nb)
			return -ENOMEM;
		rt->b = nb;
		rt->capb = (uint16_t)cap;
	}
	old = &rt->b[last];
	nw = &rt->b[last + 1];
	memset(nw, 0, sizeof(*nw));
	for (uint8_t i = 0; i < old->n; i++)
		moving += dht_common_prefix(rt->self, old->c[i].id) > last;
	/* Allocate first, so nothing can fail half-way through the move. */
	while (ncap < moving)
		ncap *= 2;
	ncap = P2P_MIN(ncap, (unsigned)DHT_K);
	if (moving && !(nw->c = malloc(ncap * sizeof(*nw->c))))
		return -ENOMEM;
	nw->cap = moving ? (uint8_t)ncap : 0;
	nw->refreshed_s = 0; /* a new range: refresh it soon (how a joining node fills its table) */
	nw->heard_s = old->heard_s;
	rt->nb++;
	/* Move in order, so both keep their least-recently-seen-first order. */
	for (uint8_t i = 0, keep = 0, n = old->n; i < n; i++) {
		struct dht__contact c = old->c[i];

		if (dht_common_prefix(rt->self, c.id) > last)
			nw->c[nw->n++] = c;
		else
			old->c[keep++] = c;
	}
	old->n = (uint8_t)(old->n - nw->n);
	for (uint8_t i = 0, keep = 0, n = old->nrepl; i < n; i++) {
		struct dht__contact c = old->repl[i];

		if (dht_common_prefix(rt->self, c.id) <= last) {
			old->repl[keep++] = c;
			continue;
		}
		old->nrepl--;
		if (reserve(&nw->repl, nw->nrepl, &nw->caprepl, DHT_REPL_MAX) < 0)
			rt->nrepl--; /* a cached contact may be lost, never a live one */
		else
			nw->repl[nw->nrepl++] = c;
	}
	return 0;
}

static void cache_put(struct dht__rt *rt, struct dht__bucket *b, const struct dht__contact *nc)
{
	if (reserve(&b->repl, b->nrepl, &b->caprepl, DHT_REPL_MAX) == 0) {
		b->repl[b->nrepl++] = *nc;
		rt->nrepl++;
		return;
	}
	if (!b->nrepl)
		return;
	/* Full: the contact heard from longest ago gives way. */
	memmove(&b->repl[0], &b->repl[1], (b->nrepl - 1u) * sizeof(*nc));
	b->repl[b->nrepl - 1] = *nc;
}

static void touch(struct dht__contact *c, uint32_t now_s, const struct dht_addr *addr, bool replied,
		  int rtt_ms)
{
	c->addr = *addr;
	c->seen_s = now_s;
	c->fails = 0;
	if (replied) {
		c->flags |= DHT__C_VERIFIED;
		c->flags &= (uint8_t)~DHT__C_PINGING;
	}
	if (rtt_ms >= 0) {
		uint32_t srtt = c->srtt, rttvar = c->rttvar;

		dht__rtt_update(&srtt, &rttvar, (uint32_t)P2P_MIN(rtt_ms, 60000));
		c->srtt = (uint16_t)P2P_MIN(srtt, 65535u);
		c->rttvar = (uint16_t)P2P_MIN(rttvar, 65535u);
	}
}

/* Move v[i] to the end of v[0..n). */
static struct dht__contact *to_tail(struct dht__contact *v, size_t n, size_t i)
{
	struct dht__contact tmp = v[i];

	memmove(&v[i], &v[i + 1], (n - i - 1) * sizeof(tmp));
	v[n - 1] = tmp;
	return &v[n - 1];
}

/* Insert @nc where its seen_s keeps b->c in order (room is reserved). */
static struct dht__contact *insert_by_seen(struct dht__bucket *b, const struct dht__contact *nc)
{
	size_t pos = b->n;

	while (pos > 0 && b->c[pos - 1].seen_s > nc->seen_s)
		pos--;
	memmove(&b->c[pos + 1], &b->c[pos], (b->n - pos) * sizeof(*nc));
	b->c[pos] = *nc;
	b->n++;
	return &b->c[pos];
}

static int failing_slot(const struct dht__bucket *b)
{
	for (int i = 0; i < b->n; i++)
		if (b->c[i].fails >= DHT_FAILS_MAX)
			return i;
	return -1;
}

static uint32_t seconds(uint64_t now)
{
	return (uint32_t)P2P_MAX(now / 1000, (uint64_t)1); /* 0 means "never" */
}

int dht__rt_heard(struct dht__rt *rt, uint64_t now, const uint8_t id[static DHT_ID_LEN],
		  const struct dht_addr *addr, bool replied, int rtt_ms, uint32_t stale_s,
		  struct dht__contact **ret_probe)
{
	uint32_t now_s = seconds(now);
	struct dht__contact nc, *c;
	struct dht__bucket *b;
	unsigned i;
	int slot;

	*ret_probe = NULL;
	if (!memcmp(id, rt->self, DHT_ID_LEN) || !dht__addr_valid(addr))
		return DHT__RT_REFUSED;
	i = dht__rt_bucket_of(rt, id);
	b = &rt->b[i];
	if ((c = find_in(b->c, b->n, id))) {
		/* A request from elsewhere may be spoofed: only an answer to a
		 * request we sent moves a contact (invariant 3). */
		if (!replied && !dht_addr_eq(&c->addr, addr))
			return DHT__RT_MOVED;
		touch(c, now_s, addr, replied, rtt_ms);
		if (replied)
			b->heard_s = now_s;
		to_tail(b->c, b->n, (size_t)(c - b->c));
		return DHT__RT_UPDATED;
	}
	if ((c = find_in(b->repl, b->nrepl, id))) {
		if (!replied && !dht_addr_eq(&c->addr, addr))
			return DHT__RT_MOVED;
		touch(c, now_s, addr, replied, rtt_ms);
		to_tail(b->repl, b->nrepl, (size_t)(c - b->repl));
		return DHT__RT_CACHED;
	}
	if (rt->pow_bits && !peer_id_pow_ok(id, rt->pow_bits))
		return DHT__RT_REFUSED;
	memset(&nc, 0, sizeof(nc));
	memcpy(nc.id, id, DHT_ID_LEN);
	touch(&nc, now_s, addr, replied, rtt_ms);
	if (!replied) {
		if (b->n < DHT_K || splittable(rt, i) || failing_slot(b) >= 0)
			return DHT__RT_UNKNOWN;
		cache_put(rt, b, &nc);
		goto probe;
	}
	for (;;) {
		if (b->n < DHT_K) {
			if (reserve(&b->c, b->n, &b->cap, DHT_K) < 0)
				return DHT__RT_NOMEM;
			b->c[b->n++] = nc;
			b->heard_s = now_s;
			rt->ncontacts++;
			return DHT__RT_ADDED;
		}
		if ((slot = failing_slot(b)) >= 0) {
			b->c[slot] = nc;
			to_tail(b->c, b->n, (size_t)slot);
			b->heard_s = now_s;
			return DHT__RT_ADDED;
		}
		if (!splittable(rt, i) || split_last(rt) < 0)
			break;
		i = dht__rt_bucket_of(rt, id);
		b = &rt->b[i];
	}
	cache_put(rt, b, &nc);
probe:
	/* Kademlia's rule: a full bucket keeps its old contacts while they
	 * answer; the least recently seen one is asked when it has been quiet
	 * for a while, and the newcomer waits in the cache meanwhile. */
	if (!(b->c[0].flags & DHT__C_PINGING) && now_s - b->c[0].seen_s >= stale_s)
		*ret_probe = &b->c[0];
	return DHT__RT_CACHED;
}

struct dht__contact *dht__rt_failed(struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN])
{
	struct dht__bucket *b = &rt->b[dht__rt_bucket_of(rt, id)];
	struct dht__contact *c;
	size_t i;

	if (!(c = find_in(b->c, b->n, id))) {
		/* A cached contact that does not answer is simply dropped. */
		if ((c = find_in(b->repl, b->nrepl, id))) {
			i = (size_t)(c - b->repl);
			memmove(&b->repl[i], &b->repl[i + 1], (b->nrepl - i - 1) * sizeof(*c));
			b->nrepl--;
			rt->nrepl--;
		}
		return NULL;
	}
	c->flags &= (uint8_t)~DHT__C_PINGING;
	if (c->fails < UINT8_MAX)
		c->fails++;
	if (c->fails < DHT_FAILS_MAX || !b->nrepl)
		return NULL;
	/* Replace it with the most recently heard cached contact. */
	i = (size_t)(c - b->c);
	memmove(&b->c[i], &b->c[i + 1], (b->n - i - 1) * sizeof(*c));
	b->n--;
	c = insert_by_seen(b, &b->repl[--b->nrepl]);
	rt->nrepl--;
	c->fails = 0;
	c->flags &= (uint8_t)~DHT__C_PINGING;
	return c;
}

bool dht__rt_remove(struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN])
{
	struct dht__bucket *b = &rt->b[dht__rt_bucket_of(rt, id)];
	struct dht__contact *c;
	size_t i;

	if ((c = find_in(b->c, b->n, id))) {
		i = (size_t)(c - b->c);
		memmove(&b->c[i], &b->c[i + 1], (b->n - i - 1) * sizeof(*c));
		b->n--;
		rt->ncontacts--;
		return true;
	}
	if ((c = find_in(b->repl, b->nrepl, id))) {
		i = (size_t)(c - b->repl);
		memmove(&b->repl[i], &b->repl[i + 1], (b->nrepl - i - 1) * sizeof(*c));
		b->nrepl--;
		rt->nrepl--;
		return true;
	}
	return false;
}

static int add_unverified(struct dht__rt *rt, const struct dht_contact *c, uint16_t srtt)
{
	struct dht__contact nc;
	struct dht__bucket *b;
	unsigned i;

	if (!memcmp(c->id, rt->self, DHT_ID_LEN) || !dht__addr_valid(&c->addr) ||
	    (rt->pow_bits && !peer_id_pow_ok(c->id, rt->pow_bits)))
		return 0;
	i = dht__rt_bucket_of(rt, c->id);
	b = &rt->b[i];
	if (find_in(b->c, b->n, c->id) || find_in(b->repl, b->nrepl, c->id))
		return 0;
	memset(&nc, 0, sizeof(nc));
	memcpy(nc.id, c->id, DHT_ID_LEN);
	nc.addr = c->addr;
	nc.srtt = srtt;
	nc.rttvar = srtt / 2;
	/* seen_s 0: the oldest possible, so liveness checks reach it first. */
	while (b->n >= DHT_K && splittable(rt, i) && split_last(rt) == 0) {
		i = dht__rt_bucket_of(rt, c->id);
		b = &rt->b[i];
	}
	if (b->n >= DHT_K) {
		cache_put(rt, b, &nc);
		return 1;
	}
	if (reserve(&b->c, b->n, &b->cap, DHT_K) < 0)
		return -ENOMEM;
	insert_by_seen(b, &nc); /* never seen: first in line for a liveness check */
	rt->ncontacts++;
	return 1;
}

int dht__rt_add_unverified(struct dht__rt *rt, const struct dht_contact *c)
{
	return add_unverified(rt, c, 0);
}

/* Insert @c into out[0..*n) (sorted by distance to @t, at most @max);
 * far[] holds the first word of each entry's distance, for a quick reject. */
static void insert_sorted(const uint8_t t[static DHT_ID_LEN], uint64_t t0,
			  const struct dht__contact *c, struct dht_contact *out, uint64_t *far,
			  uint16_t *srtt, size_t *n, size_t max)
{
	uint64_t d0 = word(c->id, 0) ^ t0;
	size_t pos;

	if (*n == max && (d0 > far[max - 1] ||
			  (d0 == far[max - 1] && dht_id_cmp_dist(t, c->id, out[max - 1].id) >= 0)))
		return;
	pos = *n < max ? (*n)++ : max - 1;
	while (pos > 0 && (d0 < far[pos - 1] || (d0 == far[pos - 1] &&
						 dht_id_cmp_dist(t, c->id, out[pos - 1].id) < 0))) {
		out[pos] = out[pos - 1];
		far[pos] = far[pos - 1];
		srtt[pos] = srtt[pos - 1];
		pos--;
	}
	memcpy(out[pos].id, c->id, DHT_ID_LEN);
	out[pos].addr = c->addr;
	far[pos] = d0;
	srtt[pos] = c->srtt;
}

static void collect(const struct dht__rt *rt, unsigned i, const uint8_t t[static DHT_ID_LEN],
		    const uint8_t *exclude, struct dht_contact *out, uint64_t *far, uint16_t *srtt,
		    size_t *n, size_t max)
{
	const struct dht__bucket *b = &rt->b[i];
	uint64_t t0 = word(t, 0);

	for (size_t j = 0; j < b->n; j++)
		if (b->c[j].fails < DHT_FAILS_MAX &&
		    !(exclude && !memcmp(b->c[j].id, exclude, DHT_ID_LEN)))
			insert_sorted(t, t0, &b->c[j], out, far, srtt, n, max);
}

size_t dht__rt_closest(const struct dht__rt *rt, const uint8_t t[static DHT_ID_LEN],
		       const uint8_t *exclude, struct dht_contact *out, uint16_t *ret_srtt,
		       size_t max)
{
	unsigned p = dht_common_prefix(rt->self, t), last = rt->nb - 1u, first;
	uint64_t far[2 * DHT_K + 1];
	uint16_t srtt[2 * DHT_K + 1];
	size_t n = 0;

	if (!max)
		return 0;
	max = P2P_MIN(max, ARRAY_SIZE(far));
	/*
	 * Let p be the prefix @t shares with us. Bucket p (or the last one, if
	 * p reaches it) holds the contacts that share more than p bits with
	 * @t; all buckets above p are at distance 2^(255-p)..; bucket p-1 is
	 * farther than all of those, p-2 farther still. So: bucket p, the
	 * buckets above it, then downwards, stopping once @max are found.
	 */
	first = p < last ? p : last;
	collect(rt, first, t, exclude, out, far, srtt, &n, max);
	/* Each group is entirely closer than the next: stop when full. */
	for (unsigned i = first + 1; i <= last && n < max; i++)
		for (; i <= last; i++)
			collect(rt, i, t, exclude, out, far, srtt, &n, max);
	for (unsigned i = first; i-- > 0 && n < max;)
		collect(rt, i, t, exclude, out, far, srtt, &n, max);
	if (ret_srtt)
		memcpy(ret_srtt, srtt, n * sizeof(*srtt));
	return n;
}

void dht__rt_random_id(const struct dht__rt *rt, unsigned i, const uint8_t *rnd,
		       uint8_t ret_id[static DHT_ID_LEN])
{
	memcpy(ret_id, rnd, DHT_ID_LEN);
	/* Our first i bits; then, below the last bucket, bit i flipped. */
	for (unsigned bit = 0; bit < i && bit < 256; bit++) {
		uint8_t mask = (uint8_t)(0x80 >> (bit % 8));

		ret_id[bit / 8] = (uint8_t)((ret_id[bit / 8] & ~mask) | (rt->self[bit / 8] & mask));
	}
	if (i < rt->nb - 1u) {
		uint8_t mask = (uint8_t)(0x80 >> (i % 8));

		ret_id[i / 8] = (uint8_t)((ret_id[i / 8] & ~mask) | (~rt->self[i / 8] & mask));
	}
}

size_t dht__rt_mem(const struct dht__rt *rt)
{
	size_t m = rt->capb * sizeof(*rt->b);

	for (unsigned i = 0; i < rt->nb; i++)
		m += ((size_t)rt->b[i].cap + rt->b[i].caprepl) * sizeof(struct dht__contact);
	return m;
}

long dht__rt_save(const struct dht__rt *rt, uint8_t *buf, size_t cap)
{
	struct wbuf w;
	uint32_t n = 0;

	for (unsigned i = 0; i < rt->nb; i++)
		for (size_t j = 0; j < rt->b[i].n; j++)
			n += rt->b[i].c[j].fails < DHT_FAILS_MAX;
	wbuf_init(&w, buf, cap);
	wbuf_u32(&w, SAVE_MAGIC);
	wbuf_u8(&w, SAVE_VERSION);
	wbuf_u32(&w, n);
	/* Closest buckets first: they matter most to a rejoining node. */
	for (unsigned i = rt->nb; i-- > 0;)
		for (size_t j = 0; j < rt->b[i].n; j++) {
			const struct dht__contact *c = &rt->b[i].c[j];

			if (c->fails >= DHT_FAILS_MAX)
				continue;
			wbuf_bytes(&w, c->id, DHT_ID_LEN);
			wbuf_u8(&w, c->addr.family);
			wbuf_bytes(&w, c->addr.ip, c->addr.family == 4 ? 4 : 16);
			wbuf_u16(&w, c->addr.port);
			wbuf_u16(&w, c->srtt);
		}
	return w.err ? -ENOSPC : (long)w.len;
}

static int parse_saved(struct rbuf *r, struct dht_contact *c, uint16_t *srtt)
{
	memset(&c->addr, 0, sizeof(c->addr));
	if (rbuf_copy(r, c->id, DHT_ID_LEN) < 0 || rbuf_u8(r, &c->addr.family) < 0)
		return -EPROTO;
	if (c->addr.family != 4 && c->addr.family != 6)
		return -EPROTO;
	if (rbuf_copy(r, c->addr.ip, c->addr.family == 4 ? 4 : 16) < 0 ||
	    rbuf_u16(r, &c->addr.port) < 0 || rbuf_u16(r, srtt) < 0)
		return -EPROTO;
	return dht__addr_valid(&c->addr) ? 0 : -EPROTO;
}

int dht__rt_load(struct dht__rt *rt, const uint8_t *buf, size_t len)
{
	struct dht_contact c;
	struct rbuf r;
	uint32_t magic, n;
	uint16_t srtt;
	uint8_t ver;
	int taken = 0, rc;

	/* Check everything first, so a damaged file adds nothing. */
	for (int pass = 0; pass < 2; pass++) {
		rbuf_init(&r, buf, len);
		if (rbuf_u32(&r, &magic) < 0 || rbuf_u8(&r, &ver) < 0 || rbuf_u32(&r, &n) < 0 ||
		    magic != SAVE_MAGIC || ver != SAVE_VERSION || n > DHT_BUCKETS_MAX * DHT_K)
			return -EPROTO;
		for (uint32_t i = 0; i < n; i++) {
			if (parse_saved(&r, &c, &srtt) < 0)
				return -EPROTO;
			if (pass == 1) {
				if ((rc = add_unverified(rt, &c, srtt)) < 0)
					return rc;
				taken += rc;
			}
		}
		if (rbuf_end(&r) < 0)
			return -EPROTO;
	}
	return taken;
}
