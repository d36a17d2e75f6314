// SPDX-License-Identifier: MIT
/*
 * net/dht.c - the Kademlia engine: routing table, RPCs, iterative lookups,
 * provider records, tokens and rate limits. No I/O (see dht.h).
 *
 * Invariants:
 *  1. The routing table never holds our own id, and a contact is in the
 *     bucket of its common prefix length with our id.
 *  2. A reply is accepted only from the address its request went to and
 *     only with the transaction id we chose (random), so a spoofer cannot
 *     answer for someone else; stores need a token bound to the address.
 *  3. Every request has a deadline; nothing waits for ever.
 */
#define LOG_SUBSYS "dht"
#include "net/dht.h"
#include "common/log.h"
#include "common/rbuf.h"
#include "net/dht_int.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 256
#define LOOKUP_CANDS (3 * DHT_K)
#define LOOKUPS_MAX 64
#define RPC_MAX 256
#define RTO_MIN 60
#define RTO_MAX 2000
#define RTO_UNKNOWN 1000
#define SOFT_UNKNOWN 300
#define FAILS_EVICT 2
#define REFRESH_MS (15 * 60 * 1000)
#define STALE_MS (15 * 60 * 1000)
#define TOKEN_ROTATE_MS (5 * 60 * 1000)
#define RATE_SLOTS 1024
#define PROVIDERS_PER_KEY 64

struct contact {
	uint8_t id[DHT_ID_LEN];
	struct dht_addr addr;
	uint32_t last_seen_s;
	uint16_t srtt, rttvar; /* ms; srtt 0: never measured */
	uint8_t fails;
	uint8_t pinging;
};

struct bucket {
	struct contact *c; /* live contacts, least recently seen first */
	struct contact *repl;
	uint8_t n, cap, nrepl, caprepl;
	uint64_t changed;
};

enum cand_state { C_NEW, C_INFLIGHT, C_SLOW, C_DONE, C_FAILED };

struct cand {
	uint8_t id[DHT_ID_LEN];
	struct dht_addr addr;
	uint64_t token;
	uint8_t state, hop, has_token, retried;
};

enum lookup_kind { L_FIND_NODE, L_GET_PROVIDERS, L_ADD_PROVIDER, L_GET, L_PUT };

struct lookup {
	uint8_t kind;
	int slot; /* index in d->look */
	uint8_t target[DHT_ID_LEN];
	uint16_t port;
	struct cand c[LOOKUP_CANDS];
	size_t n;
	unsigned inflight, queries, answers, prov_hop;
	unsigned stalled; /* replies in a row that brought nothing closer */
	uint8_t best[DHT_ID_LEN];
	bool has_best;
	uint64_t start;
	struct dht_contact prov[DHT_PROVIDERS_MAX];
	bool has_rec;
	struct dht_record rec; /* L_GET: the newest found; L_PUT: what to store */
	uint64_t cas;
	size_t nprov;
	dht_done_fn *done;
	void *arg;
};

struct rpc {
	bool used, slow;
	uint8_t type;
	uint64_t txid;
	struct dht_addr to;
	uint8_t id[DHT_ID_LEN]; /* whom we expect (zero for a ping to an address) */
	bool id_known;
	uint64_t sent, soft, hard;
	int lookup; /* index, or -1 */
	size_t cand;
};

struct provider {
	struct dht_contact c;
	uint64_t expires;
};

struct pkey {
	uint8_t key[DHT_ID_LEN];
	struct provider *p;
	uint16_t n, cap;
};

struct own {
	uint8_t key[DHT_ID_LEN];
	uint16_t port;
	uint64_t next;
};

struct stored {
	uint8_t target[DHT_ID_LEN];
	uint64_t expires;
	struct dht_record r;
};

struct rate {
	uint64_t key;
	uint64_t last;
	uint32_t tokens; /* milli-datagrams */
};

struct dht {
	uint8_t id[DHT_ID_LEN];
	dht_send_fn *send;
	void *send_arg;
	dht_random_fn *random;
	void *random_arg;
	uint64_t ttl;
	uint32_t rate_per_s;
	size_t max_keys;

	struct bucket *b[NBUCKETS];
	struct lookup *look[LOOKUPS_MAX]; /* allocated while running */
	struct rpc *rpc;		  /* grows up to RPC_MAX */
	unsigned nrpc, caprpc;

	struct pkey *keys;
	size_t nkeys, capkeys;
	struct own *own;
	struct stored *recs;
	size_t nrecs, caprecs;
	size_t nown, capown;

	uint8_t secret[2][32];
	uint64_t secret_at;
	struct rate *rate;
	size_t nrate;
	uint64_t next_maint;
	uint64_t next_join; /* self-lookup to (re)join while the table is small */
	bool join_due;
	uint32_t srtt_all, rttvar_all; /* over every reply, ms */

	struct dht_stats st;
};

/* ---- helpers ---- */

static void rnd(struct dht *d, void *buf, size_t len)
{
	if (d->random)
		d->random(d->random_arg, buf, len);
	else
		randombytes_buf(buf, len);
}

unsigned dht_common_prefix(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN])
{
	for (unsigned i = 0; i < DHT_ID_LEN; i++) {
		uint8_t x = a[i] ^ b[i];

		if (x)
			return i * 8 + (unsigned)__builtin_clz(x) - 24;
	}
	return DHT_ID_LEN * 8;
}

int dht_id_cmp_dist(const uint8_t t[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
		    const uint8_t b[static DHT_ID_LEN])
{
	for (unsigned i = 0; i < DHT_ID_LEN; i++) {
		uint8_t x = a[i] ^ t[i], y = b[i] ^ t[i];

		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

static bool addr_eq(const struct dht_addr *a, const struct dht_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->ip, b->ip, a->family == 4 ? 4 : 16);
}

static void send_msg(struct dht *d, const struct dht_addr *to, struct dht_msg *m)
{
	uint8_t buf[DHT_MSG_MAX];
	size_t len;

	memcpy(m->sender, d->id, DHT_ID_LEN);
	if (!(len = dht__msg_encode(m, buf)))
		return;
	d->st.msgs_out++;
	d->st.bytes_out += len;
	d->send(d->send_arg, to, buf, len);
}

/* ---- routing table ---- */

static struct bucket *bucket_get(struct dht *d, unsigned i, bool create)
{
	if (!d->b[i] && create) {
		d->b[i] = calloc(1, sizeof(*d->b[i]));
		if (d->b[i])
			d->st.buckets++;
	}
	return d->b[i];
}

static int grow(void **v, uint8_t *cap, size_t elem)
{
	unsigned ncap = *cap ? (unsigned)*cap * 2 : 4;
	void *nv;

	if (ncap > DHT_K)
		ncap = DHT_K;
	if (!(nv = realloc(*v, ncap * elem)))
		return -ENOMEM;
	*v = nv;
	*cap = (uint8_t)ncap;
	return 0;
}

static struct contact *find_contact(struct dht *d, const uint8_t id[static DHT_ID_LEN],
				    struct bucket **ret_b, size_t *ret_i)
{
	unsigned bi = dht_common_prefix(d->id, id);
	struct bucket *b;

	if (bi >= NBUCKETS || !(b = d->b[bi]))
		return NULL;
	for (size_t i = 0; i < b->n; i++)
		if (!memcmp(b->c[i].id, id, DHT_ID_LEN)) {
			if (ret_b)
				*ret_b = b;
			if (ret_i)
				*ret_i = i;
			return &b->c[i];
		}
	return NULL;
}

static void ping_contact(struct dht *d, uint64_t now, struct contact *c);

/* A node spoke to us (or answered): the table learns or refreshes it. */
static void seen(struct dht *d, uint64_t now, const uint8_t id[static DHT_ID_LEN],
		 const struct dht_addr *addr, int rtt)
{
	unsigned bi = dht_common_prefix(d->id, id);
	struct bucket *b;
	struct contact *c;
	size_t i;

	if (bi >= NBUCKETS || !dht__addr_valid(addr))
		return;
	if ((c = find_contact(d, id, &b, &i))) {
		struct contact tmp = *c;

		tmp.addr = *addr;
		tmp.last_seen_s = (uint32_t)(now / 1000);
		tmp.fails = 0;
		tmp.pinging = 0;
		if (rtt >= 0) {
			if (!tmp.srtt) {
				tmp.srtt = (uint16_t)P2P_MAX(rtt, 1);
				tmp.rttvar = (uint16_t)(rtt / 2);
			} else {
				int err = rtt - tmp.srtt;

				tmp.rttvar =
				    (uint16_t)((3 * tmp.rttvar + (err < 0 ? -err : err)) / 4);
				tmp.srtt = (uint16_t)P2P_MAX((7 * tmp.srtt + rtt) / 8, 1);
			}
		}
		/* Most recently seen goes last. */
		memmove(&b->c[i], &b->c[i + 1], (b->n - i - 1) * sizeof(*c));
		b->c[b->n - 1] = tmp;
		return;
	}
	if (!(b = bucket_get(d, bi, true)))
		return;
	struct contact nc = { .addr = *addr, .last_seen_s = (uint32_t)(now / 1000) };

	memcpy(nc.id, id, DHT_ID_LEN);
	if (rtt >= 0) {
		nc.srtt = (uint16_t)P2P_MAX(rtt, 1);
		nc.rttvar = (uint16_t)(rtt / 2);
	}
	if (b->n < DHT_K) {
		if (b->n == b->cap && grow((void **)&b->c, &b->cap, sizeof(*b->c)) < 0)
			return;
		b->c[b->n++] = nc;
		b->changed = now;
		if (d->st.contacts++ == 0)
			d->join_due = true; /* our first contact: join through it now */
		return;
	}
	/* Full: a failing contact makes room at once; else the newcomer waits
	 * in the replacement cache while the stalest contact is pinged. */
	for (i = 0; i < b->n; i++)
		if (b->c[i].fails >= FAILS_EVICT) {
			memmove(&b->c[i], &b->c[i + 1], (b->n - i - 1) * sizeof(nc));
			b->c[b->n - 1] = nc;
			b->changed = now;
			return;
		}
	for (i = 0; i < b->nrepl; i++)
		if (!memcmp(b->repl[i].id, id, DHT_ID_LEN)) {
			b->repl[i] = nc;
			goto ping;
		}
	if (b->nrepl == b->caprepl && b->caprepl < DHT_K &&
	    grow((void **)&b->repl, &b->caprepl, sizeof(*b->repl)) < 0)
		return;
	if (b->nrepl < b->caprepl) {
		b->repl[b->nrepl++] = nc;
		d->st.replacements++;
	} else {
		memmove(&b->repl[0], &b->repl[1], (b->nrepl - 1) * sizeof(nc));
		b->repl[b->nrepl - 1] = nc;
	}
ping:
	if (!b->c[0].pinging)
		ping_contact(d, now, &b->c[0]);
}

/* @id failed to answer in time. */
static void failed(struct dht *d, const uint8_t id[static DHT_ID_LEN])
{
	struct bucket *b;
	struct contact *c;
	size_t i;

	if (!(c = find_contact(d, id, &b, &i)))
		return;
	c->pinging = 0;
	if (++c->fails < FAILS_EVICT || !b->nrepl)
		return;
	/* Replace it with the most recently seen waiting contact. */
	memmove(&b->c[i], &b->c[i + 1], (b->n - i - 1) * sizeof(*c));
	b->c[b->n - 1] = b->repl[--b->nrepl];
	b->c[b->n - 1].fails = 0;
	b->c[b->n - 1].pinging = 0;
	d->st.replacements--;
}

size_t dht_bucket_size(const struct dht *d, unsigned prefix)
{
	return prefix < NBUCKETS && d->b[prefix] ? d->b[prefix]->n : 0;
}

/* The @max closest good contacts to @t, closest first. */
static size_t closest(struct dht *d, const uint8_t t[static DHT_ID_LEN], struct dht_contact *out,
		      size_t max)
{
	size_t n = 0;

	for (unsigned bi = 0; bi < NBUCKETS; bi++) {
		struct bucket *b = d->b[bi];

		if (!b)
			continue;
		for (size_t i = 0; i < b->n; i++) {
			const struct contact *c = &b->c[i];
			size_t pos;

			if (c->fails >= FAILS_EVICT)
				continue;
			if (n == max && dht_id_cmp_dist(t, c->id, out[n - 1].id) >= 0)
				continue;
			pos = n < max ? n++ : n - 1;
			while (pos > 0 && dht_id_cmp_dist(t, c->id, out[pos - 1].id) < 0) {
				out[pos] = out[pos - 1];
				pos--;
			}
			memcpy(out[pos].id, c->id, DHT_ID_LEN);
			out[pos].addr = c->addr;
		}
	}
	return n;
}

/* ---- RPCs ---- */

/* For a node never measured: what round trips to everyone else take. */
static uint64_t rto_guess(const struct dht *d)
{
	uint64_t r;

	if (!d->srtt_all)
		return RTO_UNKNOWN;
	r = 2u * d->srtt_all + 4u * d->rttvar_all + 20;
	return P2P_MIN(P2P_MAX(r, (uint64_t)RTO_MIN), (uint64_t)RTO_MAX);
}

static uint64_t rto_of(const struct dht *d, const struct contact *c)
{
	uint64_t r;

	if (!c || !c->srtt)
		return rto_guess(d);
	r = (uint64_t)c->srtt + 4u * c->rttvar + 20;
	return P2P_MIN(P2P_MAX(r, (uint64_t)RTO_MIN), (uint64_t)RTO_MAX);
}

/* When a request stops holding up its lookup (it may still be answered). */
static uint64_t soft_of(const struct dht *d, const struct contact *c)
{
	uint64_t s;

	if (!c || !c->srtt) {
		if (!d->srtt_all)
			return SOFT_UNKNOWN;
		s = (uint64_t)d->srtt_all + 2u * d->rttvar_all + 10;
	} else {
		s = 2u * c->srtt + 2u * c->rttvar + 10;
	}
	return P2P_MIN(P2P_MAX(s, (uint64_t)30), rto_of(d, c));
}

static struct rpc *rpc_new(struct dht *d, uint64_t now, uint8_t type, const struct dht_addr *to,
			   const uint8_t *id, int lookup, size_t cand)
{
	struct contact *c = id ? find_contact(d, id, NULL, NULL) : NULL;
	struct rpc *r = NULL;

	if (d->nrpc == d->caprpc) {
		unsigned cap = d->caprpc ? d->caprpc * 2 : 8;
		struct rpc *nr;

		if (d->caprpc >= RPC_MAX || !(nr = realloc(d->rpc, cap * sizeof(*nr))))
			return NULL;
		memset(nr + d->caprpc, 0, (cap - d->caprpc) * sizeof(*nr));
		d->rpc = nr;
		d->caprpc = cap;
	}
	for (size_t i = 0; i < d->caprpc; i++)
		if (!d->rpc[i].used) {
			r = &d->rpc[i];
			break;
		}
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->used = true;
	r->type = type;
	rnd(d, &r->txid, sizeof(r->txid));
	r->to = *to;
	if (id) {
		memcpy(r->id, id, DHT_ID_LEN);
		r->id_known = true;
	}
	r->sent = now;
	r->soft = now + soft_of(d, c);
	r->hard = now + rto_of(d, c);
	r->lookup = lookup;
	r->cand = cand;
	d->nrpc++;
	return r;
}

static void rpc_end(struct dht *d, struct rpc *r)
{
	r->used = false;
	d->nrpc--;
}

static void ping_contact(struct dht *d, uint64_t now, struct contact *c)
{
	struct dht_msg m = { .type = DHT_PING };
	struct rpc *r = rpc_new(d, now, DHT_PING, &c->addr, c->id, -1, 0);

	if (!r)
		return;
	c->pinging = 1;
	m.txid = r->txid;
	send_msg(d, &c->addr, &m);
}

void dht_ping(struct dht *d, uint64_t now, const struct dht_addr *addr)
{
	struct dht_msg m = { .type = DHT_PING };
	struct rpc *r;

	if (!dht__addr_valid(addr) || !(r = rpc_new(d, now, DHT_PING, addr, NULL, -1, 0)))
		return;
	m.txid = r->txid;
	send_msg(d, addr, &m);
}

/* ---- tokens and rate limits ---- */

static uint64_t token_for(const struct dht *d, int which, const struct dht_addr *a)
{
	uint8_t h[8], in[1 + 16];
	uint64_t t;

	/* Bound to the IP only: a NATed node's port may change between the
	 * GET_PROVIDERS and the ADD_PROVIDER. */
	in[0] = a->family;
	memcpy(in + 1, a->ip, 16);
	crypto_generichash(h, sizeof(h), in, sizeof(in), d->secret[which], 32);
	memcpy(&t, h, sizeof(t));
	return t;
}

static bool token_ok(const struct dht *d, const struct dht_addr *a, uint64_t t)
{
	return t == token_for(d, 0, a) || t == token_for(d, 1, a);
}

static bool rate_ok(struct dht *d, uint64_t now, const struct dht_addr *a)
{
	uint64_t key = 1469598103934665603ULL;
	struct rate *r;

	for (size_t i = 0; i < 16; i++)
		key = (key ^ a->ip[i]) * 1099511628211ULL;
	key = (key ^ a->port ^ ((uint64_t)a->family << 20)) * 1099511628211ULL;
	r = &d->rate[key % d->nrate];
	if (r->key != key) {
		/* A new source takes the slot: a flood cannot grow the table. */
		r->key = key;
		r->last = now;
		r->tokens = 2000 * d->rate_per_s;
	} else {
		uint64_t add = (now - r->last) * d->rate_per_s;

		r->tokens = (uint32_t)P2P_MIN((uint64_t)r->tokens + add, 2000ULL * d->rate_per_s);
		r->last = now;
	}
	if (r->tokens < 1000)
		return false;
	r->tokens -= 1000;
	return true;
}

/* ---- provider records ---- */

static struct pkey *pkey_find(struct dht *d, const uint8_t key[static DHT_ID_LEN])
{
	for (size_t i = 0; i < d->nkeys; i++)
		if (!memcmp(d->keys[i].key, key, DHT_ID_LEN))
			return &d->keys[i];
	return NULL;
}

static void provider_store(struct dht *d, uint64_t now, const uint8_t key[static DHT_ID_LEN],
			   const struct dht_contact *c)
{
	struct pkey *k = pkey_find(d, key);
	struct provider *p;

	if (!k) {
		if (d->nkeys >= d->max_keys)
			return;
		if (d->nkeys == d->capkeys) {
			size_t cap = d->capkeys ? d->capkeys * 2 : 16;
			struct pkey *nk = realloc(d->keys, cap * sizeof(*nk));

			if (!nk)
				return;
			d->keys = nk;
			d->capkeys = cap;
		}
		k = &d->keys[d->nkeys++];
		memset(k, 0, sizeof(*k));
		memcpy(k->key, key, DHT_ID_LEN);
	}
	for (size_t i = 0; i < k->n; i++)
		if (!memcmp(k->p[i].c.id, c->id, DHT_ID_LEN)) {
			k->p[i].c = *c;
			k->p[i].expires = now + d->ttl;
			return;
		}
	if (k->n == k->cap) {
		uint16_t cap = k->cap ? (uint16_t)(k->cap * 2) : 2;

		if (cap > PROVIDERS_PER_KEY) {
			/* Full: the record closest to expiry gives way. */
			size_t old = 0;

			for (size_t i = 1; i < k->n; i++)
				if (k->p[i].expires < k->p[old].expires)
					old = i;
			k->p[old].c = *c;
			k->p[old].expires = now + d->ttl;
			return;
		}
		if (!(p = realloc(k->p, cap * sizeof(*p))))
			return;
		k->p = p;
		k->cap = cap;
	}
	k->p[k->n].c = *c;
	k->p[k->n++].expires = now + d->ttl;
}

static void providers_expire(struct dht *d, uint64_t now)
{
	for (size_t i = 0; i < d->nkeys;) {
		struct pkey *k = &d->keys[i];

		for (size_t j = 0; j < k->n;)
			if (k->p[j].expires <= now)
				k->p[j] = k->p[--k->n];
			else
				j++;
		if (k->n == 0) {
			free(k->p);
			d->keys[i] = d->keys[--d->nkeys];
		} else {
			i++;
		}
	}
}

/* ---- signed mutable records ---- */

static const char rec_domain[] = "p2pfs-dht-put-1";

void dht_record_target(const struct dht_record *r, uint8_t ret_target[static DHT_ID_LEN])
{
	crypto_hash_sha256_state st;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, r->pk, 32);
	crypto_hash_sha256_update(&st, r->salt, r->salt_len);
	crypto_hash_sha256_final(&st, ret_target);
}

/* What the signature covers: domain, salt, seq, value. */
static size_t rec_msg(const struct dht_record *r, uint8_t *buf)
{
	size_t n = 0;

	memcpy(buf, rec_domain, sizeof(rec_domain) - 1);
	n += sizeof(rec_domain) - 1;
	buf[n++] = r->salt_len;
	memcpy(buf + n, r->salt, r->salt_len);
	n += r->salt_len;
	be64_put(buf + n, r->seq);
	n += 8;
	buf[n++] = (uint8_t)(r->value_len >> 8);
	buf[n++] = (uint8_t)r->value_len;
	memcpy(buf + n, r->value, r->value_len);
	return n + r->value_len;
}

size_t dht_record_signed_bytes(const struct dht_record *r,
			       uint8_t buf[static DHT_RECORD_SIGNED_MAX])
{
	return rec_msg(r, buf);
}

void dht_record_sign(struct dht_record *r, const uint8_t sk[static 64])
{
	uint8_t buf[sizeof(rec_domain) + 1 + DHT_SALT_MAX + 8 + 2 + DHT_VALUE_MAX];
	size_t n = rec_msg(r, buf);

	crypto_sign_detached(r->sig, NULL, buf, n, sk);
}

bool dht_record_verify(const struct dht_record *r)
{
	uint8_t buf[sizeof(rec_domain) + 1 + DHT_SALT_MAX + 8 + 2 + DHT_VALUE_MAX];
	size_t n;

	if (r->salt_len > DHT_SALT_MAX || r->value_len > DHT_VALUE_MAX)
		return false;
	n = rec_msg(r, buf);
	return crypto_sign_verify_detached(r->sig, buf, n, r->pk) == 0;
}

static struct stored *rec_find(struct dht *d, const uint8_t target[static DHT_ID_LEN])
{
	for (size_t i = 0; i < d->nrecs; i++)
		if (!memcmp(d->recs[i].target, target, DHT_ID_LEN))
			return &d->recs[i];
	return NULL;
}

/* Store a put: 0, or a DHT_ERR_* code. */
static int rec_store(struct dht *d, uint64_t now, const struct dht_record *r, uint64_t cas)
{
	uint8_t target[DHT_ID_LEN];
	struct stored *s;

	if (!dht_record_verify(r))
		return DHT_ERR_SIG;
	dht_record_target(r, target);
	if ((s = rec_find(d, target))) {
		if (cas && s->r.seq != cas)
			return DHT_ERR_CAS;
		if (r->seq < s->r.seq ||
		    (r->seq == s->r.seq && (r->value_len != s->r.value_len ||
					    memcmp(r->value, s->r.value, r->value_len))))
			return DHT_ERR_SEQ;
	} else {
		if (d->nrecs >= d->max_keys)
			return DHT_ERR_SEQ;
		if (d->nrecs == d->caprecs) {
			size_t cap = d->caprecs ? d->caprecs * 2 : 8;
			struct stored *nr = realloc(d->recs, cap * sizeof(*nr));

			if (!nr)
				return DHT_ERR_SEQ;
			d->recs = nr;
			d->caprecs = cap;
		}
		s = &d->recs[d->nrecs++];
		memcpy(s->target, target, DHT_ID_LEN);
	}
	s->r = *r;
	s->expires = now + DHT_RECORD_TTL_MS;
	return 0;
}

static void recs_expire(struct dht *d, uint64_t now)
{
	for (size_t i = 0; i < d->nrecs;)
		if (d->recs[i].expires <= now)
			d->recs[i] = d->recs[--d->nrecs];
		else
			i++;
}

/* ---- serving requests ---- */

static void serve(struct dht *d, uint64_t now, const struct dht_addr *from, const struct dht_msg *q)
{
	struct dht_msg r;

	memset(&r, 0, sizeof(r));
	r.txid = q->txid;
	switch (q->type) {
	case DHT_PING:
		r.type = DHT_PONG;
		r.observed = *from;
		break;
	case DHT_FIND_NODE:
		r.type = DHT_NODES;
		r.nnodes = closest(d, q->target, r.nodes, DHT_K);
		break;
	case DHT_GET_PROVIDERS: {
		struct pkey *k = pkey_find(d, q->target);

		r.type = DHT_PROVIDERS;
		r.token = token_for(d, 0, from);
		if (k)
			for (size_t i = 0; i < k->n && r.nproviders < DHT_PROVIDERS_MAX; i++)
				if (k->p[i].expires > now)
					r.providers[r.nproviders++] = k->p[i].c;
		r.nnodes = closest(d, q->target, r.nodes, DHT_K);
		break;
	}
	case DHT_GET: {
		struct stored *s = rec_find(d, q->target);

		r.type = DHT_VALUE;
		r.token = token_for(d, 0, from);
		if (s && s->expires > now) {
			r.has_record = true;
			r.record = s->r;
		}
		r.nnodes = closest(d, q->target, r.nodes, DHT_K);
		break;
	}
	case DHT_PUT: {
		int err;

		if (!token_ok(d, from, q->token)) {
			d->st.dropped_token++;
			r.type = DHT_ERROR;
			r.error = DHT_ERR_TOKEN;
			break;
		}
		err = rec_store(d, now, &q->record, q->cas);
		r.type = err ? DHT_ERROR : DHT_ACK;
		r.error = (uint8_t)err;
		break;
	}
	case DHT_ADD_PROVIDER: {
		struct dht_contact c;

		if (!token_ok(d, from, q->token)) {
			d->st.dropped_token++;
			r.type = DHT_ERROR;
			r.error = 1;
			break;
		}
		memcpy(c.id, q->sender, DHT_ID_LEN);
		c.addr = *from;
		if (q->port)
			c.addr.port = q->port;
		provider_store(d, now, q->target, &c);
		r.type = DHT_ACK;
		break;
	}
	default:
		return;
	}
	send_msg(d, from, &r);
}

/* ---- lookups ---- */

static void lookup_add(struct dht *d, struct lookup *l, const struct dht_contact *c, uint8_t hop)
{
	size_t pos;

	if (!memcmp(c->id, d->id, DHT_ID_LEN) || !dht__addr_valid(&c->addr))
		return;
	for (size_t i = 0; i < l->n; i++)
		if (!memcmp(l->c[i].id, c->id, DHT_ID_LEN)) {
			if (hop < l->c[i].hop)
				l->c[i].hop = hop;
			return;
		}
	if (l->n == LOOKUP_CANDS) {
		/* Full: a closer candidate pushes the farthest out. */
		if (dht_id_cmp_dist(l->target, c->id, l->c[l->n - 1].id) >= 0)
			return;
		if (l->c[l->n - 1].state == C_INFLIGHT)
			l->inflight--;
		l->n--;
	}
	pos = l->n++;
	while (pos > 0 && dht_id_cmp_dist(l->target, c->id, l->c[pos - 1].id) < 0) {
		l->c[pos] = l->c[pos - 1];
		pos--;
	}
	memset(&l->c[pos], 0, sizeof(l->c[pos]));
	memcpy(l->c[pos].id, c->id, DHT_ID_LEN);
	l->c[pos].addr = c->addr;
	l->c[pos].hop = hop;
	l->c[pos].state = C_NEW;
}

static void lookup_finish(struct dht *d, struct lookup *l, uint64_t now)
{
	struct dht_result res;
	unsigned hops = 0;

	memset(&res, 0, sizeof(res));
	for (size_t i = 0; i < l->n && res.nclosest < DHT_K; i++)
		if (l->c[i].state == C_DONE) {
			if (!res.nclosest)
				hops = l->c[i].hop;
			memcpy(res.closest[res.nclosest].id, l->c[i].id, DHT_ID_LEN);
			res.closest[res.nclosest++].addr = l->c[i].addr;
		}
	if (l->kind == L_ADD_PROVIDER || l->kind == L_PUT) {
		/* Store on the k closest that gave us a token. */
		for (size_t i = 0; i < l->n && res.stored < DHT_K; i++) {
			struct dht_msg m = { .type =
						 l->kind == L_PUT ? DHT_PUT : DHT_ADD_PROVIDER };
			struct rpc *r;

			if (l->c[i].state != C_DONE || !l->c[i].has_token)
				continue;
			if (!(r = rpc_new(d, now, m.type, &l->c[i].addr, l->c[i].id, -1, 0)))
				break;
			m.txid = r->txid;
			memcpy(m.target, l->target, DHT_ID_LEN);
			m.token = l->c[i].token;
			m.port = l->port;
			if (l->kind == L_PUT) {
				m.record = l->rec;
				m.cas = l->cas;
			}
			send_msg(d, &l->c[i].addr, &m);
			res.stored++;
		}
	}
	if (l->kind == L_GET && l->has_rec) {
		res.has_record = true;
		res.record = l->rec;
	}
	memcpy(res.providers, l->prov, l->nprov * sizeof(l->prov[0]));
	res.nproviders = l->nprov;
	res.hops = l->kind == L_GET_PROVIDERS && l->nprov ? l->prov_hop : hops;
	res.queries = l->queries;
	res.answers = l->answers;
	res.elapsed_ms = now - l->start;
	res.rc = !res.nclosest && !res.nproviders && !res.has_record ? -ETIMEDOUT
		 : l->kind == L_GET_PROVIDERS && !l->nprov	     ? -ENOENT
		 : l->kind == L_GET && !res.has_record		     ? -ENOENT
								     : 0;
	/* Requests still out for it are answered into nothing. */
	for (size_t i = 0; i < d->caprpc; i++)
		if (d->rpc[i].used && d->rpc[i].lookup == l->slot)
			d->rpc[i].lookup = -1;
	d->look[l->slot] = NULL;
	d->st.lookups_running--;
	if (l->done)
		l->done(l->arg, &res);
	free(l);
}

static void lookup_step(struct dht *d, struct lookup *l, uint64_t now)
{
	size_t count = 0;
	bool pending = false;

	if (l->kind == L_GET_PROVIDERS && l->nprov) {
		lookup_finish(d, l, now);
		return;
	}
	for (size_t i = 0; i < l->n && count < DHT_K; i++) {
		struct cand *c = &l->c[i];

		if (c->state == C_FAILED)
			continue;
		count++;
		/* Kademlia's rule: when a round brings nothing closer, ask all of
		 * the k closest not asked yet at once. */
		if (c->state == C_NEW &&
		    l->inflight < (l->stalled >= DHT_ALPHA ? DHT_K : DHT_ALPHA)) {
			struct dht_msg m = { 0 };
			struct rpc *r;
			m.type = l->kind == L_FIND_NODE			? DHT_FIND_NODE
				 : l->kind == L_GET || l->kind == L_PUT ? DHT_GET
									: DHT_GET_PROVIDERS;
			if (!(r = rpc_new(d, now, m.type, &c->addr, c->id, l->slot, i))) {
				pending = true;
				break;
			}
			m.txid = r->txid;
			memcpy(m.target, l->target, DHT_ID_LEN);
			send_msg(d, &c->addr, &m);
			c->state = C_INFLIGHT;
			l->inflight++;
			l->queries++;
		}
		if (c->state == C_NEW || c->state == C_INFLIGHT || c->state == C_SLOW)
			pending = true;
	}
	if (!pending)
		lookup_finish(d, l, now);
}

static int lookup_start_rec(struct dht *d, uint64_t now, uint8_t kind,
			    const uint8_t target[static DHT_ID_LEN], uint16_t port,
			    const struct dht_record *rec, uint64_t cas, dht_done_fn *done,
			    void *arg)
{
	struct dht_contact seed[DHT_K];
	struct lookup *l = NULL;
	size_t n;
	for (size_t i = 0; i < LOOKUPS_MAX && !l; i++)
		if (!d->look[i]) {
			if (!(l = calloc(1, sizeof(*l))))
				return -ENOMEM;
			l->slot = (int)i;
			d->look[i] = l;
		}
	if (!l)
		return -EAGAIN;
	l->kind = kind;
	l->port = port;
	memcpy(l->target, target, DHT_ID_LEN);
	l->start = now;
	l->done = done;
	l->arg = arg;
	if (rec) {
		l->rec = *rec;
		l->cas = cas;
	}
	d->st.lookups_running++;
	n = closest(d, target, seed, DHT_K);
	for (size_t i = 0; i < n; i++)
		lookup_add(
		    d, l, &seed[i],
		    1); /* The candidates may be reordered by the step; rpcs refer to them by id. */
	lookup_step(d, l, now);
	return 0;
}

static int lookup_start(struct dht *d, uint64_t now, uint8_t kind,
			const uint8_t target[static DHT_ID_LEN], uint16_t port, dht_done_fn *done,
			void *arg)
{
	return lookup_start_rec(d, now, kind, target, port, NULL, 0, done, arg);
}

int dht_find_node(struct dht *d, uint64_t now, const uint8_t target[static DHT_ID_LEN],
		  dht_done_fn *done, void *arg)
{
	return lookup_start(d, now, L_FIND_NODE, target, 0, done, arg);
}

int dht_get_providers(struct dht *d, uint64_t now, const uint8_t key[static DHT_ID_LEN],
		      dht_done_fn *done, void *arg)
{
	return lookup_start(d, now, L_GET_PROVIDERS, key, 0, done, arg);
}

int dht_add_provider(struct dht *d, uint64_t now, const uint8_t key[static DHT_ID_LEN],
		     uint16_t port, dht_done_fn *done, void *arg)
{
	struct own *o = NULL;

	for (size_t i = 0; i < d->nown; i++)
		if (!memcmp(d->own[i].key, key, DHT_ID_LEN))
			o = &d->own[i];
	if (!o) {
		if (d->nown == d->capown) {
			size_t cap = d->capown ? d->capown * 2 : 8;
			struct own *no = realloc(d->own, cap * sizeof(*no));

			if (!no)
				return -ENOMEM;
			d->own = no;
			d->capown = cap;
		}
		o = &d->own[d->nown++];
		memcpy(o->key, key, DHT_ID_LEN);
	}
	o->port = port;
	o->next = now + d->ttl / 2;
	return lookup_start(d, now, L_ADD_PROVIDER, key, port, done, arg);
}

int dht_put(struct dht *d, uint64_t now, const struct dht_record *rec, uint64_t cas,
	    dht_done_fn *done, void *arg)
{
	uint8_t target[DHT_ID_LEN];
	int rc;

	if (!dht_record_verify(rec))
		return -EBADMSG;
	dht_record_target(rec, target);
	/* Keep our own copy too: we may be among the closest. */
	(void)rec_store(d, now, rec, 0);
	if ((rc = lookup_start_rec(d, now, L_PUT, target, 0, rec, cas, done, arg)) < 0)
		return rc;
	return 0;
}

int dht_get(struct dht *d, uint64_t now, const uint8_t target[static DHT_ID_LEN], dht_done_fn *done,
	    void *arg)
{
	return lookup_start(d, now, L_GET, target, 0, done, arg);
}

void dht_remove_provider(struct dht *d, const uint8_t key[static DHT_ID_LEN])
{
	for (size_t i = 0; i < d->nown; i++)
		if (!memcmp(d->own[i].key, key, DHT_ID_LEN)) {
			d->own[i] = d->own[--d->nown];
			return;
		}
}

/* A lookup's candidate, found again by id (the list shifts as it grows). */
static struct cand *cand_of(struct lookup *l, const uint8_t id[static DHT_ID_LEN])
{
	for (size_t i = 0; i < l->n; i++)
		if (!memcmp(l->c[i].id, id, DHT_ID_LEN))
			return &l->c[i];
	return NULL;
}

static void lookup_reply(struct dht *d, uint64_t now, struct rpc *r, const struct dht_msg *m)
{
	struct lookup *l = d->look[r->lookup];
	struct cand *c = l ? cand_of(l, r->id) : NULL;

	if (!c)
		return;
	if (c->state == C_INFLIGHT)
		l->inflight--;
	c->state = C_DONE;
	l->answers++;
	if (m->type == DHT_VALUE) {
		uint8_t target[DHT_ID_LEN];

		c->token = m->token;
		c->has_token = 1;
		/* Only a record that is signed and lives under the key we asked for. */
		if (l->kind == L_GET && m->has_record) {
			dht_record_target(&m->record, target);
			if (!memcmp(target, l->target, DHT_ID_LEN) &&
			    (!l->has_rec || m->record.seq > l->rec.seq) &&
			    dht_record_verify(&m->record)) {
				l->rec = m->record;
				l->has_rec = true;
			}
		}
	}
	if (m->type == DHT_PROVIDERS) {
		c->token = m->token;
		c->has_token = 1;
		for (size_t i = 0; i < m->nproviders && l->nprov < DHT_PROVIDERS_MAX; i++) {
			bool dup = false;

			for (size_t j = 0; j < l->nprov && !dup; j++)
				dup = !memcmp(l->prov[j].id, m->providers[i].id, DHT_ID_LEN);
			if (!dup) {
				if (!l->nprov)
					l->prov_hop = c->hop;
				l->prov[l->nprov++] = m->providers[i];
			}
		}
	}
	uint8_t hop = (uint8_t)(c->hop + 1);

	for (size_t i = 0; i < m->nnodes; i++)
		lookup_add(d, l, &m->nodes[i], hop);
	if (l->n && (!l->has_best || dht_id_cmp_dist(l->target, l->c[0].id, l->best) < 0)) {
		memcpy(l->best, l->c[0].id, DHT_ID_LEN);
		l->has_best = true;
		l->stalled = 0;
	} else {
		l->stalled++;
	}
	lookup_step(d, l, now);
}

static void lookup_timeout(struct dht *d, uint64_t now, struct rpc *r, bool hard)
{
	struct lookup *l = d->look[r->lookup];
	struct cand *c = l ? cand_of(l, r->id) : NULL;

	if (!c)
		return;
	if (c->state == C_INFLIGHT)
		l->inflight--;
	if (hard) {
		/* One lost datagram should not hide a node: ask once more. */
		c->state = c->retried ? C_FAILED : C_NEW;
		c->retried = 1;
	} else if (c->state == C_INFLIGHT) {
		c->state = C_SLOW;
	}
	lookup_step(d, l, now);
}

/* ---- input ---- */

void dht_input(struct dht *d, uint64_t now, const struct dht_addr *from, const uint8_t *buf,
	       size_t len)
{
	struct dht_msg m;

	d->st.msgs_in++;
	d->st.bytes_in += len;
	if (!dht__addr_valid(from) || dht__msg_decode(buf, len, &m) < 0 ||
	    !memcmp(m.sender, d->id, DHT_ID_LEN)) {
		d->st.dropped_malformed++;
		return;
	}
	if (!rate_ok(d, now, from)) {
		d->st.dropped_rate++;
		return;
	}
	if (m.type == DHT_PING || m.type == DHT_FIND_NODE || m.type == DHT_GET_PROVIDERS ||
	    m.type == DHT_ADD_PROVIDER || m.type == DHT_GET || m.type == DHT_PUT) {
		seen(d, now, m.sender, from, -1);
		serve(d, now, from, &m);
		return;
	}
	/* A reply: it must match a request to that address (and that node). */
	for (size_t i = 0; i < d->caprpc; i++) {
		struct rpc *r = &d->rpc[i];

		struct rpc copy;

		if (!r->used || r->txid != m.txid || !addr_eq(&r->to, from))
			continue;
		/* End it first: what follows may send (and grow the request table). */
		copy = *r;
		rpc_end(d, r);
		if (copy.id_known && memcmp(copy.id, m.sender, DHT_ID_LEN)) {
			/* Another node lives at that address now. */
			failed(d, copy.id);
		}
		{
			uint32_t rtt = (uint32_t)P2P_MIN(now - copy.sent, (uint64_t)60000);

			if (!d->srtt_all) {
				d->srtt_all = P2P_MAX(rtt, 1u);
				d->rttvar_all = rtt / 2;
			} else {
				uint32_t err =
				    rtt > d->srtt_all ? rtt - d->srtt_all : d->srtt_all - rtt;

				d->rttvar_all = (3 * d->rttvar_all + err) / 4;
				d->srtt_all = P2P_MAX((7 * d->srtt_all + rtt) / 8, 1u);
			}
			seen(d, now, m.sender, from, (int)rtt);
		}
		if (copy.lookup >= 0 &&
		    (m.type == DHT_NODES || m.type == DHT_PROVIDERS || m.type == DHT_VALUE) &&
		    copy.id_known && !memcmp(copy.id, m.sender, DHT_ID_LEN))
			lookup_reply(d, now, &copy, &m);
		return;
	}
	d->st.dropped_malformed++; /* unsolicited or late */
}

/* ---- timers ---- */

static void refresh_buckets(struct dht *d, uint64_t now)
{
	for (unsigned bi = 0; bi < NBUCKETS; bi++) {
		struct bucket *b = d->b[bi];
		uint8_t target[DHT_ID_LEN];

		if (!b || !b->n || now - b->changed < REFRESH_MS)
			continue;
		/* A random id at this distance: same first bi bits, bit bi flipped. */
		rnd(d, target, sizeof(target));
		for (unsigned i = 0; i < bi; i++) {
			uint8_t mask = (uint8_t)(0x80 >> (i % 8));

			target[i / 8] = (uint8_t)((target[i / 8] & ~mask) | (d->id[i / 8] & mask));
		}
		target[bi / 8] ^= (uint8_t)((target[bi / 8] ^ ~d->id[bi / 8]) & (0x80 >> (bi % 8)));
		b->changed = now;
		if (dht_find_node(d, now, target, NULL, NULL) < 0)
			return;
		/* Contacts not heard from in a while are asked if they are still there. */
		for (size_t i = 0; i < b->n; i++)
			if (!b->c[i].pinging && now / 1000 - b->c[i].last_seen_s > STALE_MS / 1000)
				ping_contact(d, now, &b->c[i]);
	}
}

uint64_t dht_tick(struct dht *d, uint64_t now)
{
	uint64_t next = now + 1000;

	for (size_t i = 0; i < d->caprpc; i++) {
		struct rpc *r = &d->rpc[i];

		if (!r->used)
			continue;
		if (now >= r->hard) {
			struct rpc copy = *r;

			d->st.timeouts++;
			rpc_end(d, r);
			if (copy.id_known)
				failed(d, copy.id);
			if (copy.lookup >= 0)
				lookup_timeout(d, now, &copy, true);
			continue;
		}
		if (!r->slow && now >= r->soft) {
			struct rpc copy;

			r->slow = true;
			copy = *r;
			if (copy.lookup >= 0)
				lookup_timeout(d, now, &copy, false); /* may grow d->rpc */
			r = &d->rpc[i];
		}
		if (r->used)
			next = P2P_MIN(next, r->slow ? r->hard : r->soft);
	}
	/* Joining: look ourselves up, which fills the table around our id and
	 * tells our neighbours about us; again while the table stays small. */
	if (d->st.contacts && (d->join_due || (d->st.contacts < DHT_K && now >= d->next_join))) {
		d->join_due = false;
		d->next_join = now + 30000;
		if (lookup_start(d, now, L_FIND_NODE, d->id, 0, NULL, NULL) < 0)
			d->next_join = now + 1000;
	}
	/* A lookup that could not send (request table full) tries again. */
	for (size_t i = 0; i < LOOKUPS_MAX; i++)
		if (d->look[i])
			lookup_step(d, d->look[i], now);
	if (now >= d->next_maint) {
		d->next_maint = now + 1000;
		if (now - d->secret_at >= TOKEN_ROTATE_MS) {
			memcpy(d->secret[1], d->secret[0], 32);
			rnd(d, d->secret[0], 32);
			d->secret_at = now;
		}
		providers_expire(d, now);
		recs_expire(d, now);
		for (size_t i = 0; i < d->nown; i++)
			if (now >= d->own[i].next) {
				d->own[i].next = now + d->ttl / 2;
				if (lookup_start(d, now, L_ADD_PROVIDER, d->own[i].key,
						 d->own[i].port, NULL, NULL) < 0)
					d->own[i].next = now + 1000;
			}
		refresh_buckets(d, now);
	}
	return P2P_MIN(next, d->next_maint);
}

/* ---- life cycle, stats, persistence ---- */

int dht_new(const struct dht_opts *o, uint64_t now, struct dht **ret_dht)
{
	struct dht *d;

	if (!o->id || !o->send)
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
	d->ttl = o->provider_ttl_ms ? o->provider_ttl_ms : DHT_PROVIDER_TTL_MS;
	d->rate_per_s = o->rate_per_s ? o->rate_per_s : 50;
	d->max_keys = o->max_provider_keys ? o->max_provider_keys : 65536;
	d->nrate = o->rate_slots ? o->rate_slots : RATE_SLOTS;
	if (!(d->rate = calloc(d->nrate, sizeof(*d->rate)))) {
		free(d);
		return -ENOMEM;
	}
	rnd(d, d->secret[0], 32);
	rnd(d, d->secret[1], 32);
	d->secret_at = now;
	d->next_maint = now + 1000;
	*ret_dht = d;
	return 0;
}

void dht_free(struct dht *d)
{
	if (!d)
		return;
	for (unsigned i = 0; i < NBUCKETS; i++)
		if (d->b[i]) {
			free(d->b[i]->c);
			free(d->b[i]->repl);
			free(d->b[i]);
		}
	for (size_t i = 0; i < d->nkeys; i++)
		free(d->keys[i].p);
	for (size_t i = 0; i < LOOKUPS_MAX; i++)
		free(d->look[i]);
	free(d->keys);
	free(d->recs);
	free(d->own);
	free(d->rpc);
	free(d->rate);
	free(d);
}

void dht_get_stats(const struct dht *d, struct dht_stats *s)
{
	size_t mem = sizeof(*d) + d->caprpc * sizeof(struct rpc) + d->nrate * sizeof(struct rate),
	       table = 0;

	*s = d->st;
	for (unsigned i = 0; i < NBUCKETS; i++)
		if (d->b[i])
			table += sizeof(*d->b[i]) +
				 ((size_t)d->b[i]->cap + d->b[i]->caprepl) * sizeof(struct contact);
	mem += table + d->capkeys * sizeof(struct pkey) + d->capown * sizeof(struct own);
	for (size_t i = 0; i < LOOKUPS_MAX; i++)
		if (d->look[i])
			mem += sizeof(struct lookup);
	for (size_t i = 0; i < d->nkeys; i++) {
		mem += d->keys[i].cap * sizeof(struct provider);
		s->provider_records += d->keys[i].n;
	}
	s->provider_keys = d->nkeys;
	s->records = d->nrecs;
	mem += d->caprecs * sizeof(struct stored);
	s->mem_bytes = mem;
	s->contact_bytes = d->st.contacts ? table / (d->st.contacts + d->st.replacements) : 0;
}

#define SAVE_MAGIC 0x50324454U /* "P2DT" */

long dht_save(const struct dht *d, uint8_t *buf, size_t cap)
{
	struct wbuf w;
	uint32_t n = 0;

	for (unsigned i = 0; i < NBUCKETS; i++)
		if (d->b[i])
			n += d->b[i]->n;
	wbuf_init(&w, buf, cap);
	wbuf_u32(&w, SAVE_MAGIC);
	wbuf_u32(&w, n);
	for (unsigned i = 0; i < NBUCKETS; i++)
		for (size_t j = 0; d->b[i] && j < d->b[i]->n; j++) {
			const struct contact *c = &d->b[i]->c[j];

			wbuf_bytes(&w, c->id, DHT_ID_LEN);
			wbuf_u8(&w, c->addr.family);
			wbuf_bytes(&w, c->addr.ip, 16);
			wbuf_u16(&w, c->addr.port);
		}
	return w.err ? -ENOSPC : (long)w.len;
}

int dht_load(struct dht *d, uint64_t now, const uint8_t *buf, size_t len)
{
	struct rbuf r;
	uint32_t magic, n;
	int count = 0;

	rbuf_init(&r, buf, len);
	if (rbuf_u32(&r, &magic) < 0 || rbuf_u32(&r, &n) < 0 || magic != SAVE_MAGIC ||
	    n > NBUCKETS * DHT_K || (size_t)n * (DHT_ID_LEN + 19) != rbuf_left(&r))
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++) {
		struct dht_addr a;
		uint8_t id[DHT_ID_LEN];

		memset(&a, 0, sizeof(a));
		if (rbuf_copy(&r, id, DHT_ID_LEN) < 0 || rbuf_u8(&r, &a.family) < 0 ||
		    rbuf_copy(&r, a.ip, 16) < 0 || rbuf_u16(&r, &a.port) < 0)
			return -EPROTO;
		if (!dht__addr_valid(&a) || !memcmp(id, d->id, DHT_ID_LEN))
			continue;
		dht_ping(d, now, &a);
		count++;
	}
	return count;
}
