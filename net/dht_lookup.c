// SPDX-License-Identifier: MIT
/*
 * net/dht_lookup.c - iterative lookups: FIND_NODE, GET_PROVIDERS, GET, and
 * the lookup-then-store of ADD_PROVIDER and PUT. No I/O: requests go out
 * through dht.c's request table, answers and timeouts come back from there.
 *
 * A lookup keeps up to DHT_CANDS candidates sorted by distance to the
 * target. It keeps alpha = 3 requests in flight among the k closest
 * candidates that have not failed; when alpha answers in a row bring nothing
 * closer it asks all of those k at once (Kademlia's last round). A request
 * slower than its contact's usual round trip (dht.c: soft deadline) is sent
 * again and stops counting against alpha, so the lookup asks the next
 * candidate instead of waiting; at its hard deadline it fails. The lookup
 * has converged when the k closest candidates that have not failed have all
 * answered (the standard rule); GET_PROVIDERS stops at the first answer
 * that names providers.
 *
 * Hops: candidates from our own table are hop 1, nodes named by a hop-h
 * node are hop h + 1 (the smallest, if several name it); a lookup's hops is
 * the hop of the closest node that answered (for GET_PROVIDERS, of the node
 * that named the providers).
 *
 * Invariants:
 *  1. A candidate is asked at most once per lookup (plus one retransmission
 *     of the same request), and a lookup never asks or returns our own id.
 *  2. inflight counts exactly the candidates in state INFLIGHT.
 *  3. @done runs once, never from inside the call that started the lookup
 *     (the caller may not have finished its own bookkeeping yet).
 *  4. A request outlives its lookup harmlessly: it names the lookup by slot
 *     and generation, and the candidate by slot and id.
 */
#define LOG_SUBSYS "dht"
#include "net/dht_int.h"
#include "net/ident.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum cand_state { C_NEW, C_INFLIGHT, C_SLOW, C_DONE, C_FAILED };
enum store_state { S_NONE, S_SENT, S_ACKED, S_REFUSED, S_LOST };

struct cand {
	uint8_t id[DHT_ID_LEN];
	struct dht_addr addr;
	uint64_t token;
	uint16_t bound; /* ms: our round trip to it is likely under this; 0 unknown */
	uint8_t state, sstate, hop;
	bool has_token;
};

struct dht_lookup {
	uint8_t kind;
	int16_t slot;
	uint32_t gen;
	uint8_t target[DHT_ID_LEN];
	uint16_t port;
	bool starting, due, blocked, storing;
	uint8_t n;
	uint8_t ord[DHT_CANDS]; /* candidate slots, closest first */
	struct cand c[DHT_CANDS];
	unsigned inflight, queries, answers, stalled;
	unsigned store_pending, stored, refused, stale;
	uint8_t best[DHT_ID_LEN];
	bool has_best;
	uint64_t start;
	struct dht_contact prov[DHT_PROVIDERS_MAX];
	size_t nprov;
	unsigned prov_hop;
	bool has_rec, conflict;
	struct dht_record rec; /* GET: the newest found; PUT: what to store, or the newer
				  record that stopped it (conflict) */
	uint64_t cas;
	dht_done_fn *done;
	void *arg;
};

static bool is_store(uint8_t kind)
{
	return kind == DHT__L_ADD_PROVIDER || kind == DHT__L_PUT;
}

/* The request a lookup of @kind sends to collect nodes (and tokens). */
static uint8_t query_type(uint8_t kind)
{
	switch (kind) {
	case DHT__L_GET_PROVIDERS:
	case DHT__L_ADD_PROVIDER:
		return DHT_GET_PROVIDERS;
	case DHT__L_GET:
	case DHT__L_PUT:
		return DHT_GET;
	default:
		return DHT_FIND_NODE;
	}
}

static struct dht_lookup *lookup_of(const struct dht *d, const struct dht__rpc *r,
				    struct cand **ret_c)
{
	struct dht_lookup *l;

	if (r->lookup < 0 || r->lookup >= DHT_LOOKUPS_MAX || !(l = d->look[r->lookup]) ||
	    l->gen != r->lookup_gen || r->cand >= DHT_CANDS ||
	    memcmp(l->c[r->cand].id, r->id, DHT_ID_LEN))
		return NULL;
	*ret_c = &l->c[r->cand];
	return l;
}

bool dht__lookup_request(struct dht *d, const struct dht__rpc *r, struct dht_msg *m)
{
	struct dht_lookup *l;
	struct cand *c;

	if (!(l = lookup_of(d, r, &c)))
		return false;
	l->queries++;
	dht__msg_init(m, r->type, r->txid);
	memcpy(m->target, l->target, DHT_ID_LEN);
	switch (r->type) {
	case DHT_GET:
		/* Only records newer than the best we have; for a put, newer
		 * than the one a compare-and-swap expects, or than ours. */
		if (l->kind == DHT__L_PUT)
			m->seq = l->cas ? l->cas : l->rec.seq;
		else
			m->seq = l->has_rec ? l->rec.seq : 0;
		break;
	case DHT_ADD_PROVIDER:
		m->token = c->token;
		m->port = l->port;
		break;
	case DHT_PUT:
		m->token = c->token;
		m->cas = l->cas;
		m->has_record = true;
		m->record = l->rec;
		break;
	default:
		break;
	}
	return true;
}

static bool send_request(struct dht *d, struct dht_lookup *l, uint8_t ci, uint8_t type,
			 uint64_t now)
{
	struct cand *c = &l->c[ci];
	struct dht__rpc *r;
	struct dht_msg m;

	if (!(r = dht__rpc_new(d, now, type, &c->addr, c->id, c->bound)))
		return false;
	r->lookup = l->slot;
	r->lookup_gen = l->gen;
	r->cand = ci;
	if (!dht__lookup_request(d, r, &m))
		return false; /* cannot happen: the lookup is alive */
	dht__send_msg(d, &c->addr, &m);
	return true;
}

/* ---- candidates ---- */

static void add_cand(struct dht *d, struct dht_lookup *l, const struct dht_contact *nc, uint8_t hop,
		     uint32_t bound)
{
	const struct dht__contact *known;
	size_t pos;
	uint8_t ci;

	if (!memcmp(nc->id, d->id, DHT_ID_LEN) || !dht__addr_valid(&nc->addr))
		return;
	if (d->rt.pow_bits && !peer_id_pow_ok(nc->id, d->rt.pow_bits))
		return;
	/* Binary search would need the distance of every probe; the list is
	 * short and a linear pass also finds duplicates. */
	for (size_t i = 0; i < l->n; i++) {
		struct cand *c = &l->c[l->ord[i]];

		if (!memcmp(c->id, nc->id, DHT_ID_LEN)) {
			if (hop < c->hop)
				c->hop = hop;
			if (bound && (!c->bound || bound < c->bound))
				c->bound = (uint16_t)P2P_MIN(bound, 65535u);
			return;
		}
	}
	if (l->n == DHT_CANDS) {
		/* Full: a closer candidate pushes the farthest out. */
		struct cand *far = &l->c[l->ord[l->n - 1]];

		if (dht_id_cmp_dist(l->target, nc->id, far->id) >= 0)
			return;
		if (far->state == C_INFLIGHT)
			l->inflight--;
		ci = l->ord[--l->n];
	} else {
		ci = l->n;
	}
	pos = l->n++;
	while (pos > 0 && dht_id_cmp_dist(l->target, nc->id, l->c[l->ord[pos - 1]].id) < 0) {
		l->ord[pos] = l->ord[pos - 1];
		pos--;
	}
	l->ord[pos] = ci;
	memset(&l->c[ci], 0, sizeof(l->c[ci]));
	memcpy(l->c[ci].id, nc->id, DHT_ID_LEN);
	l->c[ci].addr = nc->addr;
	l->c[ci].hop = hop;
	l->c[ci].bound = (uint16_t)P2P_MIN(bound, 65535u);
	/* A node our table knows to be failing is not worth a timeout. */
	if ((known = dht__rt_find(&d->rt, nc->id)) && known->fails >= DHT_FAILS_MAX)
		l->c[ci].state = C_FAILED;
}

/* ---- progress ---- */

static void step(struct dht *d, struct dht_lookup *l, uint64_t now);

static void finish(struct dht *d, struct dht_lookup *l, uint64_t now)
{
	struct dht_result res;
	dht_done_fn *done = l->done;
	void *arg = l->arg;

	if (l->starting) {
		/* Invariant 3: report from the next dht_tick instead. */
		l->due = true;
		d->look_due = true;
		return;
	}
	memset(&res, 0, sizeof(res));
	for (size_t i = 0; i < l->n && res.nclosest < DHT_K; i++) {
		const struct cand *c = &l->c[l->ord[i]];

		if (c->state != C_DONE)
			continue;
		if (!res.nclosest)
			res.hops = c->hop;
		memcpy(res.closest[res.nclosest].id, c->id, DHT_ID_LEN);
		res.closest[res.nclosest++].addr = c->addr;
	}
	memcpy(res.providers, l->prov, l->nprov * sizeof(l->prov[0]));
	res.nproviders = l->nprov;
	if (l->kind == DHT__L_GET_PROVIDERS && l->nprov)
		res.hops = l->prov_hop;
	if ((l->kind == DHT__L_GET && l->has_rec) || l->conflict) {
		res.has_record = true;
		res.record = l->rec;
	}
	res.stored = l->stored;
	res.refused = l->refused;
	res.queries = l->queries;
	res.answers = l->answers;
	res.elapsed_ms = now - l->start;
	if (!res.nclosest && !res.nproviders)
		res.rc = -ETIMEDOUT;
	else if (l->kind == DHT__L_GET_PROVIDERS && !l->nprov)
		res.rc = -ENOENT;
	else if (l->kind == DHT__L_GET && !l->has_rec)
		res.rc = -ENOENT;
	else if (l->conflict || l->stale)
		res.rc = -ESTALE; /* the writer must know, even if some nodes stored it */
	else if (is_store(l->kind) && !l->stored)
		res.rc = -ETIMEDOUT;
	/* Out of the table before the callback, which may start lookups. */
	d->look[l->slot] = NULL;
	d->nlook--;
	d->st.lookups_done++;
	if (l->kind == DHT__L_JOIN)
		dht__joined(d, now, res.nclosest);
	free(l);
	if (done)
		done(arg, &res);
}

/* The k closest answered: store on them (ADD_PROVIDER, PUT) or finish. */
static void converged(struct dht *d, struct dht_lookup *l, uint64_t now)
{
	unsigned asked = 0;

	if (!is_store(l->kind) || l->storing) {
		finish(d, l, now);
		return;
	}
	l->storing = true;
	for (size_t i = 0; i < l->n && asked < DHT_K; i++) {
		uint8_t ci = l->ord[i];
		struct cand *c = &l->c[ci];

		if (c->state != C_DONE || !c->has_token)
			continue;
		asked++;
		if (!send_request(d, l, ci, l->kind == DHT__L_PUT ? DHT_PUT : DHT_ADD_PROVIDER,
				  now))
			break; /* request table full: store on fewer nodes */
		c->sstate = S_SENT;
		l->store_pending++;
	}
	if (!l->store_pending)
		finish(d, l, now);
}

static void step(struct dht *d, struct dht_lookup *l, uint64_t now)
{
	unsigned alpha = l->stalled >= DHT_ALPHA ? DHT_K : DHT_ALPHA;
	size_t window = 0, closest = 0;
	bool pending = false;

	if (l->storing) {
		if (!l->store_pending)
			finish(d, l, now);
		return;
	}
	if ((l->kind == DHT__L_GET_PROVIDERS && l->nprov) || l->conflict) {
		finish(d, l, now);
		return;
	}
	l->blocked = false;
	/*
	 * Two windows over the candidates that have not failed, closest first:
	 * the lookup is done when the k closest have answered; requests go to
	 * the k closest that are not slow. A slow request keeps its node among
	 * the k closest until it answers or fails, but the candidate after the
	 * window is asked meanwhile, so a dead node costs one timeout, not a
	 * timeout and then a round trip to its successor.
	 */
	for (size_t i = 0; i < l->n && (closest < DHT_K || window < DHT_K); i++) {
		uint8_t ci = l->ord[i];
		struct cand *c = &l->c[ci];

		if (c->state == C_FAILED)
			continue;
		if (closest < DHT_K) {
			closest++;
			pending |= c->state != C_DONE;
		}
		if (c->state == C_SLOW || window >= DHT_K)
			continue;
		window++;
		if (c->state == C_NEW && l->inflight < alpha && !l->blocked) {
			if (send_request(d, l, ci, query_type(l->kind), now)) {
				c->state = C_INFLIGHT;
				l->inflight++;
			} else {
				/* Request table full: try again at the next tick. */
				l->blocked = true;
				d->look_due = true;
			}
		}
	}
	if (!pending)
		converged(d, l, now);
}

void dht__lookup_reply(struct dht *d, uint64_t now, const struct dht__rpc *r,
		       const struct dht_msg *m)
{
	const struct dht__contact *known;
	uint32_t via = 0;
	struct dht_lookup *l;
	struct cand *c;
	uint8_t hop;

	if (!(l = lookup_of(d, r, &c)))
		return;
	if (r->type == DHT_ADD_PROVIDER || r->type == DHT_PUT) {
		if (c->sstate != S_SENT)
			return;
		if (m->type == DHT_ACK) {
			c->sstate = S_ACKED;
			l->stored++;
		} else {
			c->sstate = S_REFUSED;
			l->refused++;
			l->stale += m->error == DHT_ERR_SEQ || m->error == DHT_ERR_CAS;
		}
		l->answers++;
		l->store_pending--;
		step(d, l, now);
		return;
	}
	if (c->state == C_DONE || c->state == C_FAILED)
		return; /* a late answer from a node already given up */
	if (c->state == C_INFLIGHT)
		l->inflight--;
	c->state = C_DONE;
	l->answers++;
	if (l->storing)
		return; /* too late to matter for where we store */
	c->token = m->token;
	c->has_token = true;
	for (size_t i = 0; i < m->nproviders && l->nprov < DHT_PROVIDERS_MAX; i++) {
		bool dup = false;

		for (size_t j = 0; j < l->nprov && !dup; j++)
			dup = !memcmp(l->prov[j].id, m->providers[i].id, DHT_ID_LEN);
		if (dup)
			continue;
		if (!l->nprov)
			l->prov_hop = c->hop;
		l->prov[l->nprov] = m->providers[i];
		/* A node naming itself gives no address (it may not know the one
		 * we reach it at): it is the one that answered. */
		if (!memcmp(m->providers[i].id, c->id, DHT_ID_LEN) &&
		    dht__ip_unspecified(&m->providers[i].addr)) {
			uint16_t port = m->providers[i].addr.port;

			l->prov[l->nprov].addr = c->addr;
			l->prov[l->nprov].addr.port = port;
		} else if (dht__ip_unspecified(&m->providers[i].addr)) {
			continue; /* no address for someone else: useless */
		}
		l->nprov++;
	}
	if (l->kind == DHT__L_GET && m->has_record && (!l->has_rec || m->record.seq > l->rec.seq)) {
		uint8_t t[DHT_ID_LEN];

		/* Only a record that lives under the key we asked for, signed. */
		dht_record_target(&m->record, t);
		if (!memcmp(t, l->target, DHT_ID_LEN) && dht_record_verify(&m->record)) {
			l->rec = m->record;
			l->has_rec = true;
		}
	}
	if (l->kind == DHT__L_PUT && m->has_record &&
	    m->record.seq > (l->conflict ? l->rec.seq
			     : l->cas	 ? l->cas
					 : l->rec.seq)) {
		uint8_t t[DHT_ID_LEN];

		/* A newer record than the put expects: storing would fail or,
		 * worse, half succeed. Stop and hand it to the writer. */
		dht_record_target(&m->record, t);
		if (!memcmp(t, l->target, DHT_ID_LEN) && dht_record_verify(&m->record)) {
			l->rec = m->record;
			l->conflict = true;
		}
	}
	hop = (uint8_t)P2P_MIN(c->hop + 1, 255);
	/* Our round trip to the answering node, for the bounds of those it names. */
	if (!r->retx)
		via = (uint32_t)(now - r->sent);
	else if ((known = dht__rt_find(&d->rt, r->id)))
		via = known->srtt;
	for (size_t i = 0; i < m->nnodes; i++)
		add_cand(d, l, &m->nodes[i], hop,
			 via && m->node_rtt[i] ? via + dht__rtt_ms(m->node_rtt[i]) : 0);
	/* Progress is the closest candidate getting closer. */
	if (l->n && (!l->has_best || dht_id_cmp_dist(l->target, l->c[l->ord[0]].id, l->best) < 0)) {
		memcpy(l->best, l->c[l->ord[0]].id, DHT_ID_LEN);
		l->has_best = true;
		l->stalled = 0;
	} else {
		l->stalled++;
	}
	step(d, l, now);
}

void dht__lookup_timeout(struct dht *d, uint64_t now, const struct dht__rpc *r, bool hard)
{
	struct dht_lookup *l;
	struct cand *c;

	if (!(l = lookup_of(d, r, &c)))
		return;
	if (r->type == DHT_ADD_PROVIDER || r->type == DHT_PUT) {
		if (!hard || c->sstate != S_SENT)
			return;
		c->sstate = S_LOST;
		l->store_pending--;
		step(d, l, now);
		return;
	}
	if (c->state == C_INFLIGHT) {
		l->inflight--;
		c->state = C_SLOW;
	}
	if (hard && c->state == C_SLOW)
		c->state = C_FAILED;
	if (!l->storing)
		step(d, l, now);
}

int dht__lookup_start(struct dht *d, uint64_t now, enum dht__lookup_kind kind,
		      const uint8_t target[static DHT_ID_LEN], uint16_t port,
		      const struct dht_record *rec, uint64_t cas, dht_done_fn *done, void *arg)
{
	struct dht_contact seed[2 * DHT_K];
	struct dht_lookup *l;
	size_t n, slot;

	for (slot = 0; slot < DHT_LOOKUPS_MAX && d->look[slot]; slot++)
		;
	if (slot == DHT_LOOKUPS_MAX)
		return -EAGAIN;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	l->kind = (uint8_t)kind;
	l->slot = (int16_t)slot;
	l->gen = ++d->look_gen;
	memcpy(l->target, target, DHT_ID_LEN);
	l->port = port;
	l->start = now;
	l->done = done;
	l->arg = arg;
	if (rec) {
		l->rec = *rec;
		l->has_rec = true;
		l->cas = cas;
	}
	d->look[slot] = l;
	d->nlook++;
	/* Twice k from our table: the second half stands in for silent ones. */
	n = dht__rt_closest(&d->rt, target, NULL, seed, NULL, 2 * DHT_K);
	for (size_t i = 0; i < n; i++)
		add_cand(d, l, &seed[i], 1, 0);
	l->starting = true;
	step(d, l, now);
	l->starting = false;
	return 0;
}

void dht__lookup_run_due(struct dht *d, uint64_t now)
{
	d->look_due = false;
	for (size_t i = 0; i < DHT_LOOKUPS_MAX; i++) {
		struct dht_lookup *l = d->look[i];

		if (l && (l->due || l->blocked)) {
			l->due = false;
			step(d, l, now); /* may finish it, or set look_due again */
		}
	}
}

void dht__lookup_free_all(struct dht *d)
{
	for (size_t i = 0; i < DHT_LOOKUPS_MAX; i++) {
		free(d->look[i]);
		d->look[i] = NULL;
	}
	d->nlook = 0;
}

size_t dht__lookup_mem(const struct dht *d)
{
	return d->nlook * sizeof(struct dht_lookup);
}
