// SPDX-License-Identifier: MIT
/*
 * tools/dhtsim.c - the real DHT engine (net/dht*.c, unchanged) for up to
 * hundreds of thousands of nodes in one process, over a simulated network
 * in virtual time.
 *
 * Network: every node sits at a one-way distance from the core drawn from
 * a log-normal distribution (median --latency, 20 ms by default, sigma 0.5,
 * clamped to 1..300 ms); a datagram from a to b takes lat(a) + lat(b) plus
 * 0..4 ms of jitter, or is lost with probability --loss. Nodes leave without
 * notice (--churn: that share of the nodes stops at once, right before the
 * second series of lookups).
 *
 * Life of a run: nodes join in waves, each through dht_bootstrap() to one to
 * three nodes already in (the engine then looks its own id up); then the
 * network runs for a while with a short bucket-refresh interval, so the
 * engines' own refreshes fill their tables as hours of uptime would; then
 * lookups start from random nodes, spread over time:
 *   FIND_NODE      of a random id; success: the closest live node to it
 *                  (other than the origin) is the first result;
 *   GET_PROVIDERS  of keys announced with dht_add_provider() by random nodes
 *                  before the churn; success: the announcing node is named.
 *
 * Hops (net/README.md): the hop of the closest answer; nodes from the
 * origin's own table are hop 1, nodes they name hop 2, and so on.
 *
 *   dhtsim [--nodes N] [--lookups M] [--loss P] [--churn F] [--latency MS] [--seed S]
 *          [--settle S] [--threads T]
 *   dhtsim --scale [--max N]  hops as the network grows: 1,000 / 10,000 / 100,000 nodes
 *                             (settles 10 s instead of 70: joins refresh their buckets)
 *   dhtsim --idle [--nodes N] maintenance traffic of idle nodes over two virtual hours
 *   dhtsim --quick            a few seconds, for CI
 *
 * --threads (default 2) splits the nodes between threads (see "the simulated
 * network"); results are reproducible for a given seed and thread count.
 */
#include "net/dht.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the simulated network ---- */

/*
 * Parallel in the conservative way: node i belongs to worker i % nworkers,
 * which alone runs its engine. Workers advance through windows of LOOKAHEAD
 * ms of virtual time; a datagram takes at least that long (two access
 * latencies of at least 1 ms), so nothing sent during a window is due in
 * it: datagrams to another worker's nodes wait in an outbox until the
 * barrier that ends the window. Empty stretches of time are skipped. A run
 * is reproducible for a given number of workers.
 */
#define LOOKAHEAD 2
#define WORKERS_MAX 16

struct node {
	struct dht *d;
	uint8_t id[DHT_ID_LEN];
	uint64_t tick_at; /* the pending tick event, 0: none */
	uint16_t lat;	  /* one-way ms to the core, >= 1 */
	bool alive, joined;
};

enum ev_kind { EV_PKT, EV_TICK, EV_LOOKUP };

struct ev {
	uint64_t t;
	uint32_t seq; /* FIFO among equal times */
	uint32_t dst, src;
	uint8_t kind;
	uint16_t len;
	uint8_t *buf; /* EV_PKT: the datagram; EV_LOOKUP: the probe */
};

struct evq {
	struct ev *v;
	size_t n, cap;
};

struct worker {
	unsigned idx;
	struct evq heap;
	struct evq out[WORKERS_MAX]; /* to other workers, moved over at the barrier */
	uint32_t seq;
	uint64_t now, rng;
	size_t cur; /* the node whose engine runs (the sender of what it sends) */
	uint64_t pkts_sent, pkts_lost;
	pthread_t thread;
};

static struct node *nodes;
static size_t nnodes;
static struct worker workers[WORKERS_MAX];
static unsigned nworkers = 2;
static __thread struct worker *W; /* this thread's worker */
static double loss;
static uint64_t now_ms; /* the main thread's view, between runs */
static atomic_size_t pending;
static pthread_barrier_t barrier;
static uint64_t window_end;
static bool quitting;

static uint64_t xr(void)
{
	uint64_t *r = &W->rng;

	*r ^= *r << 13;
	*r ^= *r >> 7;
	*r ^= *r << 17;
	return *r;
}

static double unif(void)
{
	return (double)(xr() >> 11) / 9007199254740992.0;
}

static void sim_random(void *arg, void *buf, size_t len)
{
	(void)arg;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = xr();

		memcpy((uint8_t *)buf + i, &v, len - i < 8 ? len - i : 8);
	}
}

static void *xalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "dhtsim: out of memory\n");
		exit(1);
	}
	return p;
}

static void q_append(struct evq *q, const struct ev *e)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 4096;
		q->v = realloc(q->v, q->cap * sizeof(*q->v));
		if (!q->v) {
			fprintf(stderr, "dhtsim: out of memory\n");
			exit(1);
		}
	}
	q->v[q->n++] = *e;
}

static bool ev_less(const struct ev *a, const struct ev *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push_to(struct worker *w, struct ev e)
{
	struct evq *h = &w->heap;
	size_t i;

	e.seq = w->seq++;
	q_append(h, &e);
	for (i = h->n - 1; i > 0 && ev_less(&e, &h->v[(i - 1) / 2]); i = (i - 1) / 2)
		h->v[i] = h->v[(i - 1) / 2];
	h->v[i] = e;
}

static struct ev pop(struct worker *w)
{
	struct evq *h = &w->heap;
	struct ev top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && ev_less(&h->v[c + 1], &h->v[c]))
			c++;
		if (!ev_less(&h->v[c], &last))
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

static struct worker *owner(size_t node)
{
	return &workers[node % nworkers];
}

/* Node i is 10.x.y.z:4000 (i < 2^24). */
static struct dht_addr addr_of(size_t i)
{
	struct dht_addr a = { .family = 4, .port = 4000 };

	a.ip[0] = 10;
	a.ip[1] = (uint8_t)(i >> 16);
	a.ip[2] = (uint8_t)(i >> 8);
	a.ip[3] = (uint8_t)i;
	return a;
}

static size_t index_of(const struct dht_addr *a)
{
	if (a->family != 4 || a->ip[0] != 10 || a->port != 4000)
		return SIZE_MAX;
	return (size_t)a->ip[1] << 16 | (size_t)a->ip[2] << 8 | a->ip[3];
}

static uint64_t one_way(size_t a, size_t b)
{
	return (uint64_t)nodes[a].lat + nodes[b].lat + xr() % 5;
}

static void sim_send(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len)
{
	size_t dst = index_of(to);
	struct ev e = { .kind = EV_PKT };

	(void)arg;
	W->pkts_sent++;
	if (dst >= nnodes)
		return;
	if (loss > 0 && unif() < loss) {
		W->pkts_lost++;
		return;
	}
	e.t = W->now + one_way(W->cur, dst);
	e.dst = (uint32_t)dst;
	e.src = (uint32_t)W->cur;
	e.len = (uint16_t)len;
	e.buf = xalloc(len);
	memcpy(e.buf, buf, len);
	if (owner(dst) == W)
		push_to(W, e);
	else
		q_append(&W->out[owner(dst)->idx], &e);
}

/* Called by the node's own worker, or by the main thread between runs. */
static void schedule_tick(size_t i, uint64_t at)
{
	uint64_t now = W->now;

	if (at <= now)
		at = now + 1;
	/* One pending tick per node: an earlier one covers a later wish. */
	if (nodes[i].tick_at > now && nodes[i].tick_at <= at)
		return;
	nodes[i].tick_at = at;
	push_to(owner(i), (struct ev){ .t = at, .kind = EV_TICK, .dst = (uint32_t)i });
}

/* The main thread acts for node @i between runs (start a lookup, bootstrap). */
static void act_as(size_t i)
{
	W = owner(i);
	W->now = now_ms;
	W->cur = i;
}

static void run_node(size_t i, const struct ev *e)
{
	W->cur = i;
	if (e) {
		struct dht_addr from = addr_of(e->src);

		dht_input(nodes[i].d, W->now, &from, e->buf, e->len);
	}
	schedule_tick(i, dht_tick(nodes[i].d, W->now));
}

static void start_lookup(const struct ev *e);

static void process_window(struct worker *w)
{
	W = w;
	while (w->heap.n && w->heap.v[0].t < window_end) {
		struct ev e = pop(w);

		w->now = e.t;
		switch (e.kind) {
		case EV_PKT:
			if (nodes[e.dst].alive)
				run_node(e.dst, &e);
			free(e.buf);
			break;
		case EV_TICK:
			if (nodes[e.dst].alive && nodes[e.dst].tick_at == e.t)
				run_node(e.dst, NULL);
			break;
		case EV_LOOKUP:
			start_lookup(&e);
			break;
		}
	}
}

/* Take what the other workers sent to @w during the window, in a fixed order. */
static void merge_inbox(struct worker *w)
{
	for (unsigned s = 0; s < nworkers; s++) {
		struct evq *q = &workers[s].out[w->idx];

		for (size_t i = 0; i < q->n; i++)
			push_to(w, q->v[i]);
		q->n = 0;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		pthread_barrier_wait(&barrier); /* a window starts (or we quit) */
		if (quitting)
			return NULL;
		process_window(w);
		pthread_barrier_wait(&barrier);
		merge_inbox(w);
		pthread_barrier_wait(&barrier);
	}
}

static void workers_start(unsigned n, uint64_t seed)
{
	nworkers = n;
	for (unsigned i = 0; i < n; i++) {
		memset(&workers[i], 0, sizeof(workers[i]));
		workers[i].idx = i;
		workers[i].rng = seed + 0x9e3779b97f4a7c15ULL * (i + 1);
	}
	W = &workers[0];
	if (pthread_barrier_init(&barrier, NULL, n) != 0)
		abort();
	for (unsigned i = 1; i < n; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
			fprintf(stderr, "dhtsim: cannot start a thread\n");
			exit(1);
		}
}

static void workers_stop(void)
{
	quitting = true;
	pthread_barrier_wait(&barrier);
	for (unsigned i = 1; i < nworkers; i++)
		pthread_join(workers[i].thread, NULL);
	pthread_barrier_destroy(&barrier);
	for (unsigned i = 0; i < nworkers; i++) {
		free(workers[i].heap.v);
		for (unsigned j = 0; j < WORKERS_MAX; j++)
			free(workers[i].out[j].v);
	}
}

/* Run every worker's events up to @until, or until @stop() says so. */
static void run(uint64_t until, bool (*stop)(void))
{
	for (;;) {
		uint64_t next = UINT64_MAX;

		for (unsigned i = 0; i < nworkers; i++)
			if (workers[i].heap.n)
				next = P2P_MIN(next, workers[i].heap.v[0].t);
		if (next > until || (stop && stop()))
			break;
		window_end = P2P_MIN(next + LOOKAHEAD, until + 1);
		if (nworkers > 1)
			pthread_barrier_wait(&barrier);
		process_window(&workers[0]);
		if (nworkers > 1) {
			pthread_barrier_wait(&barrier);
			merge_inbox(&workers[0]);
			pthread_barrier_wait(&barrier);
		} else {
			merge_inbox(&workers[0]);
		}
		now_ms = window_end - 1;
	}
	W = &workers[0];
	if (now_ms < until && !(stop && stop()))
		now_ms = until;
	for (unsigned i = 0; i < nworkers; i++)
		workers[i].now = now_ms;
}

static uint64_t pkts_sent(void)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < nworkers; i++)
		n += workers[i].pkts_sent;
	return n;
}

/* ---- lookups and their results ---- */

struct probe {
	uint8_t target[DHT_ID_LEN];
	uint8_t want[DHT_ID_LEN]; /* FIND_NODE: the closest live node; else the provider */
	uint32_t from;
	bool providers, done, ok;
	uint8_t recall; /* FIND_NODE: how many of the true k closest were returned */
	unsigned hops, queries;
	uint64_t ms;
	struct probe *next_free;
};

static bool none_pending(void)
{
	return pending == 0;
}

/* The @k closest live nodes to @t other than @self, closest first. */
static size_t closest_alive(const uint8_t *t, size_t self, size_t *out, size_t k)
{
	size_t n = 0;

	for (size_t i = 0; i < nnodes; i++) {
		size_t pos;

		if (!nodes[i].alive || i == self)
			continue;
		if (n == k && dht_id_cmp_dist(t, nodes[i].id, nodes[out[n - 1]].id) >= 0)
			continue;
		pos = n < k ? n++ : k - 1;
		while (pos > 0 && dht_id_cmp_dist(t, nodes[i].id, nodes[out[pos - 1]].id) < 0) {
			out[pos] = out[pos - 1];
			pos--;
		}
		out[pos] = i;
	}
	return n;
}

static void on_done(void *arg, const struct dht_result *r)
{
	struct probe *p = arg;

	p->done = true;
	p->hops = r->hops;
	p->queries = r->queries;
	p->ms = r->elapsed_ms;
	if (p->providers) {
		for (size_t i = 0; i < r->nproviders; i++)
			p->ok |= !memcmp(r->providers[i].id, p->want, DHT_ID_LEN);
	} else {
		size_t best[DHT_K], n = closest_alive(p->target, p->from, best, DHT_K);

		p->ok = r->nclosest > 0 && !memcmp(r->closest[0].id, p->want, DHT_ID_LEN);
		for (size_t i = 0; i < r->nclosest; i++)
			for (size_t j = 0; j < n; j++)
				p->recall +=
				    !memcmp(r->closest[i].id, nodes[best[j]].id, DHT_ID_LEN);
	}
	pending--;
}

static void start_lookup(const struct ev *e)
{
	struct probe *p = (struct probe *)(void *)e->buf;
	size_t from = p->from;
	int rc;

	if (!nodes[from].alive) {
		p->done = true; /* cannot happen: origins are chosen among the living */
		pending--;
		return;
	}
	if (!p->providers) {
		size_t best;

		if (closest_alive(p->target, from, &best, 1))
			memcpy(p->want, nodes[best].id, DHT_ID_LEN);
	}
	W->cur = from;
	rc = p->providers ? dht_get_providers(nodes[from].d, W->now, p->target, on_done, p)
			  : dht_find_node(nodes[from].d, W->now, p->target, on_done, p);
	if (rc < 0) {
		p->done = true;
		pending--;
		return;
	}
	schedule_tick(from, W->now);
}

static size_t random_alive(void)
{
	for (;;) {
		size_t i = xr() % nnodes;

		if (nodes[i].alive)
			return i;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, unsigned p)
{
	size_t i = (n * p) / 100;

	qsort(v, n, sizeof(*v), cmp_u64);
	return n ? v[i < n ? i : n - 1] : 0;
}

struct summary {
	size_t n;
	double success, recall, msgs;
	uint64_t hops_med, hops_p99, ms_med, ms_p99;
};

static struct summary summarize(const struct probe *p, size_t n)
{
	struct summary s = { .n = n };
	uint64_t *hops = xalloc(n * sizeof(*hops)), *ms = xalloc(n * sizeof(*ms));
	size_t ok = 0, recall = 0;
	double msgs = 0;

	for (size_t i = 0; i < n; i++) {
		ok += p[i].ok;
		recall += p[i].recall;
		hops[i] = p[i].hops;
		ms[i] = p[i].ms;
		msgs += p[i].queries;
	}
	s.success = n ? 100.0 * (double)ok / (double)n : 0;
	s.recall = n ? 100.0 * (double)recall / (double)(n * DHT_K) : 0;
	s.msgs = n ? msgs / (double)n : 0;
	s.hops_med = pct(hops, n, 50);
	s.hops_p99 = pct(hops, n, 99);
	s.ms_med = pct(ms, n, 50);
	s.ms_p99 = pct(ms, n, 99);
	free(hops);
	free(ms);
	return s;
}

static uint8_t (*keys)[DHT_ID_LEN];
static uint32_t *key_owner;
static size_t nkeys;

/* @m lookups from random live nodes, one every @gap_ms, then wait for all. */
static struct summary lookups(size_t m, bool providers, uint64_t gap_ms)
{
	struct probe *p = calloc(m, sizeof(*p));
	struct summary s;

	if (!p) {
		fprintf(stderr, "dhtsim: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < m; i++) {
		struct ev e = { .t = now_ms + i * gap_ms, .kind = EV_LOOKUP, .buf = (void *)&p[i] };

		p[i].providers = providers;
		p[i].from = (uint32_t)random_alive();
		if (providers) {
			size_t k = i % nkeys;

			memcpy(p[i].target, keys[k], DHT_ID_LEN);
			memcpy(p[i].want, nodes[key_owner[k]].id, DHT_ID_LEN);
		} else {
			sim_random(NULL, p[i].target, DHT_ID_LEN);
		}
		push_to(owner(p[i].from), e);
		pending++;
	}
	run(now_ms + m * gap_ms + 600000, none_pending);
	s = summarize(p, m);
	free(p);
	return s;
}

static void provide_keys(size_t m)
{
	keys = xalloc(m * DHT_ID_LEN);
	key_owner = xalloc(m * sizeof(*key_owner));
	nkeys = m;
	for (size_t i = 0; i < m; i++) {
		size_t from = random_alive();

		sim_random(NULL, keys[i], DHT_ID_LEN);
		key_owner[i] = (uint32_t)from;
		act_as(from);
		if (dht_add_provider(nodes[from].d, now_ms, keys[i], 0, NULL, NULL) < 0)
			fprintf(stderr, "dhtsim: dht_add_provider failed\n");
		schedule_tick(from, now_ms);
		run(now_ms + 20, NULL);
	}
	run(now_ms + 30000, NULL); /* the lookups, then the stores */
}

/* ---- building the network ---- */

static double wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void build(size_t n, double median_lat, uint64_t refresh_ms, uint64_t settle_ms)
{
	nnodes = n;
	nodes = calloc(n, sizeof(*nodes));
	if (!nodes) {
		fprintf(stderr, "dhtsim: out of memory for %zu nodes\n", n);
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		struct dht_opts o = { .send = sim_send,
				      .random = sim_random,
				      .rate_slots = 32,
				      .refresh_ms = refresh_ms };
		double z = sqrt(-2.0 * log(unif() + 1e-12)) * cos(2 * M_PI * unif());

		sim_random(NULL, nodes[i].id, DHT_ID_LEN);
		o.id = nodes[i].id;
		nodes[i].lat = (uint16_t)fmin(300.0, fmax(1.0, median_lat * exp(0.5 * z)));
		if (dht_new(&o, now_ms, &nodes[i].d) < 0) {
			fprintf(stderr, "dhtsim: dht_new failed\n");
			exit(1);
		}
	}
	nodes[0].alive = nodes[0].joined = true;
	/* Waves that grow with the network: each newcomer bootstraps through
	 * one to three nodes already in, and the engine does the rest. */
	for (size_t start = 1; start < n;) {
		size_t wave = start < 64 ? 8 : start / 4, end = start + wave < n ? start + wave : n;

		for (size_t i = start; i < end; i++) {
			unsigned through = 1 + (unsigned)(xr() % 3);

			nodes[i].alive = true;
			act_as(i);
			for (unsigned k = 0; k < through; k++) {
				struct dht_addr a = addr_of(xr() % start);

				if (dht_bootstrap(nodes[i].d, now_ms, &a) < 0)
					abort();
			}
			schedule_tick(i, now_ms + xr() % 1000);
		}
		run(now_ms + 5000, NULL);
		for (size_t i = start; i < end; i++)
			nodes[i].joined = true;
		start = end;
	}
	/* Let the engines refresh their buckets (refresh_ms is short here), as
	 * they would over hours of uptime. */
	run(now_ms + settle_ms, NULL);
}

static void destroy(void)
{
	for (size_t i = 0; i < nnodes; i++)
		dht_free(nodes[i].d);
	for (unsigned w = 0; w < nworkers; w++) {
		while (workers[w].heap.n) {
			struct ev e = pop(&workers[w]);

			if (e.kind == EV_PKT)
				free(e.buf);
		}
		for (unsigned j = 0; j < nworkers; j++) {
			struct evq *q = &workers[w].out[j];

			for (size_t i = 0; i < q->n; i++)
				free(q->v[i].kind == EV_PKT ? q->v[i].buf : NULL);
			q->n = 0;
		}
	}
	free(nodes);
	free(keys);
	free(key_owner);
	nodes = NULL;
	keys = NULL;
	key_owner = NULL;
	nnodes = nkeys = 0;
	pending = 0;
}

struct table_fig {
	double contacts, bytes_per_contact, kib_per_node;
};

static struct table_fig table_figures(void)
{
	size_t contacts = 0, cached = 0, table = 0, mem = 0, live = 0;
	struct table_fig f;

	for (size_t i = 0; i < nnodes; i++) {
		struct dht_stats st;

		if (!nodes[i].alive)
			continue;
		dht_get_stats(nodes[i].d, &st);
		contacts += st.contacts;
		cached += st.replacements;
		table += st.contact_bytes * (st.contacts + st.replacements);
		mem += st.mem_bytes;
		live++;
	}
	f.contacts = (double)contacts / (double)live;
	f.bytes_per_contact = contacts + cached ? (double)table / (double)(contacts + cached) : 0;
	f.kib_per_node = (double)mem / (double)live / 1024.0;
	return f;
}

/* The median round trip between two random nodes of this network. */
static double median_rtt(void)
{
	uint64_t v[4001];

	for (size_t i = 0; i < 4001; i++) {
		size_t a = xr() % nnodes, b = xr() % nnodes;

		v[i] = one_way(a, b) + one_way(b, a);
	}
	return (double)pct(v, 4001, 50);
}

static void print_head(void)
{
	printf("| %-22s | %-13s | success  | k-closest | hops med | hops p99 | msgs | ms med | ms "
	       "p99 | RTTs med |\n",
	       "scenario", "lookup");
	printf("|------------------------|---------------|----------|-----------|----------|------"
	       "----|------|--------|--------|----------|\n");
}

static void print_row(const char *what, const char *op, struct summary s, double rtt)
{
	char recall[16] = "-";

	if (s.recall > 0)
		snprintf(recall, sizeof(recall), "%.1f %%", s.recall);
	printf("| %-22s | %-13s | %6.2f %% | %9s | %8llu | %8llu | %4.1f | %6llu | %6llu | %8.1f "
	       "|\n",
	       what, op, s.success, recall, (unsigned long long)s.hops_med,
	       (unsigned long long)s.hops_p99, s.msgs, (unsigned long long)s.ms_med,
	       (unsigned long long)s.ms_p99, (double)s.ms_med / rtt);
}

struct run_opts {
	size_t nodes, lookups;
	double churn, loss, latency;
	uint64_t refresh_ms, settle_ms;
};

static int full_run(const struct run_opts *o, bool quick)
{
	struct summary f0, p0, f1, p1;
	struct table_fig tf;
	double t0 = wall(), rtt;
	char what[64];
	size_t killed = 0;
	int fail;

	loss = 0;
	build(o->nodes, o->latency, o->refresh_ms, o->settle_ms);
	rtt = median_rtt();
	tf = table_figures();
	printf(
	    "\n%zu nodes (built in %.1f s of wall time, %.0f datagrams per node to join and "
	    "settle): %.0f contacts per node, %.0f bytes per routing-table contact, %.1f KiB per "
	    "engine; median round trip %.0f ms\n\n",
	    o->nodes, wall() - t0, (double)pkts_sent() / (double)o->nodes, tf.contacts,
	    tf.bytes_per_contact, tf.kib_per_node, rtt);
	provide_keys(o->lookups < 100 ? o->lookups : 100);
	print_head();
	f0 = lookups(o->lookups, false, 10);
	p0 = lookups(o->lookups, true, 10);
	print_row("no churn, no loss", "FIND_NODE", f0, rtt);
	print_row("no churn, no loss", "GET_PROVIDERS", p0, rtt);
	fflush(stdout);
	/* Leave without notice, and lose packets. */
	while (killed < (size_t)(o->churn * (double)o->nodes)) {
		size_t k = xr() % o->nodes;

		if (nodes[k].alive) {
			nodes[k].alive = false;
			killed++;
		}
	}
	loss = o->loss;
	f1 = lookups(o->lookups, false, 10);
	p1 = lookups(o->lookups, true, 10);
	snprintf(what, sizeof(what), "%.0f %% left, %.0f %% loss", o->churn * 100, o->loss * 100);
	print_row(what, "FIND_NODE", f1, rtt);
	print_row(what, "GET_PROVIDERS", p1, rtt);
	fail = f0.success < 100 || p0.success < 100 || f1.success < 99 || p1.success < 99 ||
	       f0.hops_med > 3 || f0.hops_p99 > 6;
	printf("\ntargets at 10,000 nodes (success 100 %% / >= 99 %% after churn and loss, hops "
	       "median <= 3, p99 <= 6): %s; %.1f s of wall time\n",
	       fail ? "NOT met" : "met", wall() - t0);
	printf("k-closest: share of the true k closest live nodes among the k returned. RTTs: the "
	       "median lookup time over the median round trip.\n");
	destroy();
	/* A smoke run only guards against gross breakage. */
	return quick ? f0.success < 99 || p0.success < 99 : fail;
}

/* Bytes an idle node sends and receives to keep its table (refresh, pings). */
static void idle_run(const struct run_opts *o)
{
	uint64_t in0 = 0, out0 = 0, in1 = 0, out1 = 0, t0;
	double hours = 2, secs;

	loss = 0;
	/* The default refresh interval: this is what an idle node really does. */
	build(o->nodes, o->latency, 0, 20 * 60 * 1000);
	for (size_t i = 0; i < nnodes; i++) {
		struct dht_stats st;

		dht_get_stats(nodes[i].d, &st);
		in0 += st.bytes_in;
		out0 += st.bytes_out;
	}
	t0 = now_ms;
	run(now_ms + (uint64_t)(hours * 3600 * 1000), NULL);
	for (size_t i = 0; i < nnodes; i++) {
		struct dht_stats st;

		dht_get_stats(nodes[i].d, &st);
		in1 += st.bytes_in;
		out1 += st.bytes_out;
	}
	secs = (double)(now_ms - t0) / 1000;
	printf("\nidle maintenance over %.0f virtual hours, %zu nodes: %.1f B/s sent and %.1f B/s "
	       "received per node\n",
	       hours, nnodes, (double)(out1 - out0) / (double)nnodes / secs,
	       (double)(in1 - in0) / (double)nnodes / secs);
	destroy();
}

static void scale_run(const struct run_opts *o, size_t max)
{
	static const size_t sizes[] = { 1000, 10000, 100000, 1000000 };

	printf("\nFIND_NODE and GET_PROVIDERS as the network grows (no churn, no loss; %zu "
	       "lookups each)\n\n",
	       o->lookups);
	printf(
	    "| nodes   | FIND_NODE ok | hops med | hops p99 | msgs | GET_PROVIDERS ok | hops med "
	    "| hops p99 | contacts/node | B/contact | KiB/engine | wall s |\n");
	printf("|---------|--------------|----------|----------|------|------------------|---------"
	       "-|----------|---------------|-----------|------------|--------|\n");
	for (size_t i = 0; i < ARRAY_SIZE(sizes) && sizes[i] <= max; i++) {
		struct summary f, p;
		struct table_fig tf;
		double t0 = wall();

		loss = 0;
		build(sizes[i], o->latency, o->refresh_ms, o->settle_ms);
		tf = table_figures();
		provide_keys(100);
		f = lookups(o->lookups, false, 10);
		p = lookups(o->lookups, true, 10);
		printf("| %7zu | %10.2f %% | %8llu | %8llu | %4.1f | %14.2f %% | %8llu | %8llu | "
		       "%13.0f | %9.0f | %10.1f | %6.0f |\n",
		       sizes[i], f.success, (unsigned long long)f.hops_med,
		       (unsigned long long)f.hops_p99, f.msgs, p.success,
		       (unsigned long long)p.hops_med, (unsigned long long)p.hops_p99, tf.contacts,
		       tf.bytes_per_contact, tf.kib_per_node, wall() - t0);
		fflush(stdout);
		destroy();
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: dhtsim [--nodes N] [--lookups M] [--churn F] [--loss P] [--latency MS]\n"
		"              [--seed S] [--settle S] [--threads T] [--scale [--max N]] [--idle]\n"
		"              [--quick]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct run_opts o = { .nodes = 10000,
			      .lookups = 1000,
			      .churn = 0.30,
			      .loss = 0.02,
			      .latency = 20,
			      .refresh_ms = 60000,
			      .settle_ms = 70000 };
	bool scale = false, quick = false, idle = false, lookups_set = false, settle_set = false;
	uint64_t seed = 88172645463325252ULL;
	unsigned threads = 2;
	int rc;
	size_t max = 100000;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--scale")) {
			scale = true;
		} else if (!strcmp(a, "--idle")) {
			idle = true;
		} else if (!strcmp(a, "--quick")) {
			quick = true;
		} else if (!v) {
			usage();
		} else if (!strcmp(a, "--nodes")) {
			o.nodes = strtoul(v, NULL, 10);
			i++;
		} else if (!strcmp(a, "--lookups")) {
			o.lookups = strtoul(v, NULL, 10);
			lookups_set = true;
			i++;
		} else if (!strcmp(a, "--churn")) {
			o.churn = atof(v);
			i++;
		} else if (!strcmp(a, "--loss")) {
			o.loss = atof(v);
			i++;
		} else if (!strcmp(a, "--latency")) {
			o.latency = atof(v);
			i++;
		} else if (!strcmp(a, "--settle")) {
			o.settle_ms = (uint64_t)(atof(v) * 1000);
			settle_set = true;
			i++;
		} else if (!strcmp(a, "--max")) {
			max = strtoul(v, NULL, 10);
			i++;
		} else if (!strcmp(a, "--seed")) {
			seed = strtoull(v, NULL, 10) * 2654435761ULL + 88172645463325252ULL;
			i++;
		} else if (!strcmp(a, "--threads")) {
			threads = (unsigned)strtoul(v, NULL, 10);
			i++;
		} else {
			usage();
		}
	}
	if (quick) {
		o.nodes = 1000;
		o.lookups = 200;
	}
	if (o.nodes < 50 || o.nodes > (1u << 24) || o.lookups < 1 || o.churn < 0 || o.churn > 0.9 ||
	    o.loss < 0 || o.loss > 0.5 || o.latency < 1) {
		fprintf(stderr, "dhtsim: --nodes 50..16M, --lookups >= 1, --churn 0..0.9, --loss "
				"0..0.5, --latency >= 1\n");
		return 2;
	}
	if (threads < 1 || threads > WORKERS_MAX) {
		fprintf(stderr, "dhtsim: --threads 1..%d\n", WORKERS_MAX);
		return 2;
	}
	workers_start(threads, seed);
	rc = 0;
	if (scale) {
		if (!lookups_set)
			o.lookups = 500;
		if (!settle_set)
			o.settle_ms = 10000;
		scale_run(&o, max);
	} else if (idle) {
		idle_run(&o);
	} else {
		rc = full_run(&o, quick);
	}
	workers_stop();
	return rc;
}
