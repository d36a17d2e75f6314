// SPDX-License-Identifier: MIT
/*
 * tools/dhtsim.c - the real Kademlia code (net/dht.c) for thousands of nodes
 * in one process, over a simulated network in virtual time.
 *
 * Every node is a struct dht; datagrams are events delivered after a
 * one-way latency (each node sits at a random distance from the core,
 * log-normal, median 20 ms, plus jitter) or dropped with the loss rate.
 * Nodes join in waves (ping three known nodes, look up their own id), then
 * the run measures FIND_NODE (success: the closest live node to a random
 * target is found) and GET_PROVIDERS (success: a provider of a key stored
 * from another node is found), before and after a share of the nodes
 * leaves without notice.
 *
 *   dhtsim [--nodes N] [--lookups M] [--loss P] [--churn F] [--seed S] *   dhtsim --scale          hops at 1,000 / 10,000 / 100,000 nodes
 *   dhtsim --idle [--nodes N]  maintenance traffic of idle nodes over two virtual hours
 *   dhtsim --quick          a small run for CI
 *
 * Hops: rounds of the iterative lookup until its result settled (the hop
 * at which the closest answering node, or the first provider, was reached:
 * nodes from our own table are hop 1, nodes they name hop 2, and so on).
 */
#include "net/dht.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
	struct dht *d;
	uint8_t id[DHT_ID_LEN];
	uint32_t lat;	  /* one-way ms to the core */
	uint64_t tick_at; /* when dht_tick wants to run */
	bool alive;
};

struct ev {
	uint64_t t;
	uint32_t seq;
	int32_t dst; /* node index; -1 - i: a tick of node i */
	uint32_t src;
	uint16_t len;
	uint8_t *buf;
};

static struct node *nodes;
static size_t nnodes;
static struct ev *heap;
static size_t nheap, capheap;
static uint64_t now_ms;
static uint32_t seq;
static double loss;
static uint64_t rng = 88172645463325252ULL;
static size_t cur_src; /* the node whose code is running (sender of datagrams) */

static uint64_t xr(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
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

static bool ev_less(const struct ev *a, const struct ev *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(struct ev e)
{
	size_t i;

	if (nheap == capheap) {
		capheap = capheap ? capheap * 2 : 4096;
		heap = realloc(heap, capheap * sizeof(*heap));
		if (!heap)
			abort();
	}
	e.seq = seq++;
	i = nheap++;
	while (i > 0 && ev_less(&e, &heap[(i - 1) / 2])) {
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = e;
}

static struct ev pop(void)
{
	struct ev top = heap[0], last = heap[--nheap];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= nheap)
			break;
		if (c + 1 < nheap && ev_less(&heap[c + 1], &heap[c]))
			c++;
		if (!ev_less(&heap[c], &last))
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (nheap)
		heap[i] = last;
	return top;
}

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
	return (size_t)a->ip[1] << 16 | (size_t)a->ip[2] << 8 | a->ip[3];
}

static void schedule_tick(size_t i, uint64_t at)
{
	if (nodes[i].tick_at && nodes[i].tick_at <= at && nodes[i].tick_at > now_ms)
		return;
	nodes[i].tick_at = at;
	push((struct ev){ .t = at, .dst = -1 - (int32_t)i });
}

static void sim_send(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len)
{
	size_t dst = index_of(to);
	struct ev e;

	(void)arg;
	if (dst >= nnodes || unif() < loss)
		return;
	e.t = now_ms + nodes[cur_src].lat + nodes[dst].lat + (xr() % 5);
	e.dst = (int32_t)dst;
	e.src = (uint32_t)cur_src;
	e.len = (uint16_t)len;
	e.buf = malloc(len);
	if (!e.buf)
		abort();
	memcpy(e.buf, buf, len);
	push(e);
}

static void run_node(size_t i, struct ev *e)
{
	uint64_t next;

	cur_src = i;
	if (e && e->dst >= 0) {
		struct dht_addr from = addr_of(e->src);

		dht_input(nodes[i].d, now_ms, &from, e->buf, e->len);
	}
	next = dht_tick(nodes[i].d, now_ms);
	schedule_tick(i, next);
}

/* Run until @stop() or no event is left before @until. */
static void run(uint64_t until, bool (*stop)(void))
{
	while (nheap && heap[0].t <= until && !(stop && stop())) {
		struct ev e = pop();

		now_ms = e.t;
		if (e.dst >= 0) {
			if (nodes[e.dst].alive)
				run_node((size_t)e.dst, &e);
			free(e.buf);
		} else {
			size_t i = (size_t)(-1 - e.dst);

			if (nodes[i].alive && nodes[i].tick_at == e.t)
				run_node(i, NULL);
		}
	}
	if (now_ms < until && !(stop && stop()))
		now_ms = until;
}

/* ---- lookups and their results ---- */

struct probe {
	bool done, ok;
	unsigned hops, queries;
	uint64_t ms;
	uint8_t want[DHT_ID_LEN]; /* FIND_NODE: the closest live node */
	bool providers;
};

static size_t pending;

static bool none_pending(void)
{
	return pending == 0;
}

static void on_done(void *arg, const struct dht_result *r)
{
	struct probe *p = arg;

	p->done = true;
	p->hops = r->hops;
	p->queries = r->queries;
	p->ms = r->elapsed_ms;
	if (p->providers)
		p->ok = r->nproviders > 0;
	else
		p->ok = r->nclosest > 0 && !memcmp(r->closest[0].id, p->want, DHT_ID_LEN);
	pending--;
}

static size_t random_alive(void)
{
	for (;;) {
		size_t i = xr() % nnodes;

		if (nodes[i].alive)
			return i;
	}
}

/* The closest live node to @t other than @self (a lookup never returns its origin). */
static void closest_alive(const uint8_t *t, size_t self, uint8_t *out)
{
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < nnodes; i++)
		if (nodes[i].alive && i != self &&
		    (best == SIZE_MAX || dht_id_cmp_dist(t, nodes[i].id, nodes[best].id) < 0))
			best = i;
	memcpy(out, nodes[best].id, DHT_ID_LEN);
}

static int cmp_u(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct summary {
	double success;
	unsigned hops_med, hops_p99;
	double msgs;
	uint64_t ms_med, ms_p99;
};

static struct summary summarize(struct probe *p, size_t n)
{
	struct summary s = { 0 };
	unsigned *hops = calloc(n, sizeof(*hops));
	uint64_t *ms = calloc(n, sizeof(*ms));
	size_t ok = 0;
	double msgs = 0;

	if (!hops || !ms)
		abort();
	for (size_t i = 0; i < n; i++) {
		ok += p[i].ok;
		hops[i] = p[i].hops;
		ms[i] = p[i].ms;
		msgs += p[i].queries;
	}
	qsort(hops, n, sizeof(*hops), cmp_u);
	qsort(ms, n, sizeof(*ms), cmp_u64);
	s.success = 100.0 * (double)ok / (double)n;
	s.hops_med = hops[n / 2];
	s.hops_p99 = hops[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	s.msgs = msgs / (double)n;
	s.ms_med = ms[n / 2];
	s.ms_p99 = ms[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	free(hops);
	free(ms);
	return s;
}

static struct summary find_nodes(size_t m)
{
	struct probe *p = calloc(m, sizeof(*p));
	struct summary s;

	if (!p)
		abort();
	for (size_t i = 0; i < m; i++) {
		uint8_t t[DHT_ID_LEN];
		size_t from = random_alive();

		sim_random(NULL, t, sizeof(t));
		closest_alive(t, from, p[i].want);
		cur_src = from;
		if (dht_find_node(nodes[from].d, now_ms, t, on_done, &p[i]) == 0)
			pending++;
		else
			p[i].done = true;
		schedule_tick(from, now_ms + 1);
	}
	run(now_ms + 120000, none_pending);
	s = summarize(p, m);
	free(p);
	return s;
}

static uint8_t (*keys)[DHT_ID_LEN];
static size_t nkeys;

static void provide_keys(size_t m)
{
	keys = calloc(m, DHT_ID_LEN);
	nkeys = m;
	if (!keys)
		abort();
	for (size_t i = 0; i < m; i++) {
		size_t from = random_alive();

		sim_random(NULL, keys[i], DHT_ID_LEN);
		cur_src = from;
		if (dht_add_provider(nodes[from].d, now_ms, keys[i], 0, NULL, NULL) != 0)
			fprintf(stderr, "dhtsim: add_provider failed\n");
		schedule_tick(from, now_ms + 1);
	}
	run(now_ms + 30000, NULL); /* lookups, then the stores */
}

static struct summary get_providers(size_t m)
{
	struct probe *p = calloc(m, sizeof(*p));
	struct summary s;

	if (!p)
		abort();
	for (size_t i = 0; i < m; i++) {
		size_t from = random_alive();

		p[i].providers = true;
		cur_src = from;
		if (dht_get_providers(nodes[from].d, now_ms, keys[i % nkeys], on_done, &p[i]) == 0)
			pending++;
		else
			p[i].done = true;
		schedule_tick(from, now_ms + 1);
	}
	run(now_ms + 120000, none_pending);
	s = summarize(p, m);
	free(p);
	return s;
}

/* ---- building the network ---- */

static void build(size_t n)
{
	nnodes = n;
	nodes = calloc(n, sizeof(*nodes));
	if (!nodes)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct dht_opts o = { .send = sim_send, .random = sim_random, .rate_slots = 64 };
		double z = sqrt(-2.0 * log(unif() + 1e-12)) * cos(2 * M_PI * unif());

		sim_random(NULL, nodes[i].id, DHT_ID_LEN);
		o.id = nodes[i].id;
		nodes[i].lat = (uint32_t)fmin(300.0, fmax(1.0, 20.0 * exp(0.5 * z)));
		if (dht_new(&o, now_ms, &nodes[i].d) < 0)
			abort();
		nodes[i].alive = true;
	}
	/* Join in waves: each new node knows three earlier ones and looks itself up. */
	for (size_t start = 0; start < n;) {
		size_t wave = start < 64 ? 8 : start / 4, end = start + wave < n ? start + wave : n;

		for (size_t i = start; i < end; i++) {
			cur_src = i;
			for (int k = 0; k < 3 && i > 0; k++) {
				struct dht_addr a =
				    addr_of(xr() % (i > start ? start ? start : i : i));

				dht_ping(nodes[i].d, now_ms, &a);
			}
			schedule_tick(i, now_ms + 1);
		}
		run(now_ms + 2000, NULL);
		for (size_t i = start; i < end; i++) {
			cur_src = i;
			if (dht_find_node(nodes[i].d, now_ms, nodes[i].id, NULL, NULL) < 0)
				abort();
			schedule_tick(i, now_ms + 1);
		}
		run(now_ms + 15000, NULL);
		start = end;
	}
	/* What bucket refreshes do over a node's first minutes: look up a few
	 * random ids, so tables reflect the whole network. */
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < n; i++) {
			uint8_t t[DHT_ID_LEN];

			sim_random(NULL, t, sizeof(t));
			cur_src = i;
			if (dht_find_node(nodes[i].d, now_ms, t, NULL, NULL) < 0)
				abort();
			schedule_tick(i, now_ms + 1 + xr() % 1000);
		}
		run(now_ms + 20000, NULL);
	}
}

static void destroy(void)
{
	for (size_t i = 0; i < nnodes; i++)
		dht_free(nodes[i].d);
	while (nheap)
		free(pop().buf);
	free(nodes);
	free(keys);
	nodes = NULL;
	keys = NULL;
	nnodes = nkeys = 0;
}

static double bytes_per_contact(void)
{
	size_t contacts = 0, bytes = 0;

	for (size_t i = 0; i < nnodes; i++) {
		struct dht_stats st;

		dht_get_stats(nodes[i].d, &st);
		contacts += st.contacts + st.replacements;
		bytes += st.contact_bytes * (st.contacts + st.replacements);
	}
	return contacts ? (double)bytes / (double)contacts : 0;
}

static double contacts_per_node(void)
{
	size_t contacts = 0;

	for (size_t i = 0; i < nnodes; i++) {
		struct dht_stats st;

		dht_get_stats(nodes[i].d, &st);
		contacts += st.contacts;
	}
	return (double)contacts / (double)nnodes;
}

static void print_row(const char *what, const char *op, struct summary s, double median_rtt)
{
	printf("| %-34s | %-13s | %7.2f %% | %4u | %4u | %6.1f | %6llu | %6llu | %5.1f |\n", what,
	       op, s.success, s.hops_med, s.hops_p99, s.msgs, (unsigned long long)s.ms_med,
	       (unsigned long long)s.ms_p99, (double)s.ms_med / median_rtt);
}

static int full_run(size_t n, size_t m, double churn, double lossrate)
{
	struct summary f0, p0, f1, p1;
	double rtt = 4 * 20.0; /* median round trip: two hops of two median latencies */
	int fail = 0;

	loss = 0;
	build(n);
	printf("\n%zu nodes: %.0f contacts per node, %.0f bytes per routing-table contact\n\n", n,
	       contacts_per_node(), bytes_per_contact());
	provide_keys(m < 100 ? m : 100);
	printf("| %-34s | %-13s | success   | hops | p99  | msgs   | ms med | ms p99 | RTTs  |\n",
	       "scenario", "lookup");
	printf(
	    "|------------------------------------|---------------|-----------|------|------|--------|--------|--------|-------|\n");
	f0 = find_nodes(m);
	p0 = get_providers(m);
	print_row("no churn, no loss", "FIND_NODE", f0, rtt);
	print_row("no churn, no loss", "GET_PROVIDERS", p0, rtt);
	/* Leave without notice, and lose packets. */
	for (size_t i = 0, killed = 0; killed < (size_t)(churn * (double)n) && i < 10 * n; i++) {
		size_t k = xr() % n;

		if (nodes[k].alive) {
			nodes[k].alive = false;
			killed++;
		}
	}
	loss = lossrate;
	f1 = find_nodes(m);
	p1 = get_providers(m);
	{
		char what[64];

		snprintf(what, sizeof(what), "%.0f %% left, %.0f %% loss", churn * 100,
			 lossrate * 100);
		print_row(what, "FIND_NODE", f1, rtt);
		print_row(what, "GET_PROVIDERS", p1, rtt);
	}
	if (f0.success < 100 || p0.success < 100 || f1.success < 99 || p1.success < 99 ||
	    f0.hops_med > 3 || f0.hops_p99 > 6)
		fail = 1;
	printf("\ntargets (100 %% / >= 99 %% after churn, hops median <= 3, p99 <= 6): %s\n",
	       fail ? "NOT met" : "met");
	destroy();
	return fail;
}

/* Bytes an idle node sends and receives for maintenance (refreshes, pings). */
static void idle_run(size_t n)
{
	uint64_t in0 = 0, out0 = 0, in1 = 0, out1 = 0, t0;
	double hours = 2;

	loss = 0;
	build(n);
	for (size_t i = 0; i < n; i++) {
		struct dht_stats st;

		dht_get_stats(nodes[i].d, &st);
		in0 += st.bytes_in;
		out0 += st.bytes_out;
	}
	t0 = now_ms;
	run(now_ms + (uint64_t)(hours * 3600 * 1000), NULL);
	for (size_t i = 0; i < n; i++) {
		struct dht_stats st;

		dht_get_stats(nodes[i].d, &st);
		in1 += st.bytes_in;
		out1 += st.bytes_out;
	}
	printf("\nidle maintenance over %.0f virtual hours, %zu nodes: %.1f B/s sent and %.1f B/s "
	       "received per node\n",
	       hours, n, (double)(out1 - out0) / (double)n / ((double)(now_ms - t0) / 1000),
	       (double)(in1 - in0) / (double)n / ((double)(now_ms - t0) / 1000));
	destroy();
}

static void scale_run(void)
{
	static const size_t sizes[] = { 1000, 10000, 100000 };

	printf("\nhops of FIND_NODE as the network grows (no churn, no loss)\n\n");
	printf("| nodes   | success   | hops median | hops p99 | msgs/lookup | contacts/node |\n");
	printf("|---------|-----------|-------------|----------|-------------|---------------|\n");
	for (size_t i = 0; i < 3; i++) {
		struct summary s;
		double cpn;

		loss = 0;
		build(sizes[i]);
		cpn = contacts_per_node();
		s = find_nodes(300);
		printf("| %7zu | %7.2f %% | %11u | %8u | %11.1f | %13.0f |\n", sizes[i], s.success,
		       s.hops_med, s.hops_p99, s.msgs, cpn);
		fflush(stdout);
		destroy();
	}
}

int main(int argc, char **argv)
{
	size_t n = 10000, m = 1000;
	double churn = 0.30, lossrate = 0.02;
	bool scale = false, quick = false, idle = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--nodes") && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--lookups") && i + 1 < argc)
			m = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--churn") && i + 1 < argc)
			churn = atof(argv[++i]);
		else if (!strcmp(argv[i], "--loss") && i + 1 < argc)
			lossrate = atof(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			rng = strtoull(argv[++i], NULL, 10) * 2654435761ULL + 88172645463325252ULL;
		else if (!strcmp(argv[i], "--scale"))
			scale = true;
		else if (!strcmp(argv[i], "--idle"))
			idle = true;
		else if (!strcmp(argv[i], "--quick")) {
			quick = true;
			n = 1000;
			m = 200;
		} else {
			fprintf(stderr, "usage: dhtsim [--nodes N] [--lookups M] [--churn F] "
					"[--loss P] [--seed S] [--scale] [--idle] [--quick]\n");
			return 2;
		}
	}
	if (n < 50 || n > (1u << 24)) {
		fprintf(stderr, "dhtsim: --nodes must be between 50 and 16 million\n");
		return 2;
	}
	if (scale) {
		scale_run();
		return 0;
	}
	if (idle) {
		idle_run(n);
		return 0;
	}
	/* A smoke run checks that it runs; the figures are judged on full runs. */
	return full_run(n, m, churn, lossrate) && !quick ? 1 : 0;
}
