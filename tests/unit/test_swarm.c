// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_swarm.c - the members of a share (net/swarm.h), two or
 * three swarms in one process on one event loop over loopback TCP, each with
 * its own identity and chunk store: members see each other once, outsiders
 * (another share, a wrong member key) are refused, chunks of 1 byte to
 * several pieces are fetched verified and cached, missing chunks fail at the
 * fetch deadline (or at once with nobody to ask), many fetches at once stay
 * within each member's window, fetches survive a member that goes away, a
 * member serving damaged chunks is dropped and banned, the caller's messages
 * arrive byte-exact, HAVE tells who holds what, and freeing the swarm cancels
 * every waiting fetch exactly once.
 *
 * Every wait has a deadline; every temporary directory is removed at exit,
 * also when an assertion fails.
 */
#include "net/swarm.h"
#include "net/swarm_msg.h"
#include "chunkstore/store.h"
#include "common/ev.h"
#include "common/tm.h"
#include "net/tp.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_UP 16   /* peer_up calls remembered per node */
#define MAX_RX 16   /* caller's messages remembered per node */
#define MAX_INFO 8  /* swarm_peers() entries looked at */
#define MAX_DIRS 16 /* temporary directories alive at once */

static struct ev_loop *loop;
static uint8_t member_key[SWARM_KEY_LEN], share_tag[SWARM_KEY_LEN];

/* ---- temporary directories, removed even when a test fails ---- */

static char *dirs[MAX_DIRS];

static void dirs_remove(void)
{
	for (unsigned i = 0; i < MAX_DIRS; i++)
		if (dirs[i]) {
			t_tmpdir_remove(dirs[i]);
			free(dirs[i]);
			dirs[i] = NULL;
		}
}

static char *dir_new(const char *tag)
{
	for (unsigned i = 0; i < MAX_DIRS; i++)
		if (!dirs[i])
			return dirs[i] = t_tmpdir(tag);
	T_FAIL("more than %d temporary directories", MAX_DIRS);
}

static void dir_remove(char *d)
{
	for (unsigned i = 0; i < MAX_DIRS; i++)
		if (dirs[i] == d)
			dirs[i] = NULL;
	t_tmpdir_remove(d);
	free(d);
}

__attribute__((constructor)) static void setup(void)
{
	uint8_t read_key[32];

	for (size_t i = 0; i < sizeof(read_key); i++)
		read_key[i] = (uint8_t)(i * 7 + 1);
	swarm_share_keys(read_key, member_key, share_tag);
	atexit(dirs_remove);
}

/* ---- a node: identity, store, swarm, and what its callbacks saw ---- */

struct rx {
	struct swarm_peer *p;
	uint8_t from[PEER_ID_LEN];
	uint8_t type;
	uint8_t *body;
	size_t len;
};

struct node {
	char *dir;
	struct peer_ident *ident;
	struct cs_store *cs;
	struct swarm *s;
	int ups, downs;
	uint8_t up_ids[MAX_UP][PEER_ID_LEN]; /* every peer_up, in order */
	struct swarm_peer *live[MAX_UP];     /* announced by peer_up, not yet by peer_down */
	unsigned nlive;
	struct rx rx[MAX_RX];
	unsigned nrx;
};

struct node_cfg {
	const uint8_t *member_key, *share_tag; /* NULL: the test share's */
	bool writable;
	uint32_t fetch_timeout_ms;
	uint64_t max_upload;
	unsigned max_peers;
	struct ev_pool *pool; /* NULL: chunks are stored on the loop */
};

static void on_peer_up(void *arg, struct swarm_peer *p)
{
	struct node *n = arg;

	T_ASSERT(p && swarm_peer_id(p));
	T_ASSERT(n->ups < MAX_UP && n->nlive < MAX_UP);
	memcpy(n->up_ids[n->ups++], swarm_peer_id(p), PEER_ID_LEN);
	n->live[n->nlive++] = p;
}

static void on_peer_down(void *arg, struct swarm_peer *p)
{
	struct node *n = arg;

	for (unsigned i = 0; i < n->nlive; i++)
		if (n->live[i] == p) {
			n->live[i] = n->live[--n->nlive];
			n->downs++;
			return;
		}
	T_FAIL("peer_down for a member that peer_up did not announce");
}

static void on_msg(void *arg, struct swarm_peer *p, uint8_t type, const uint8_t *body, size_t len)
{
	struct node *n = arg;
	struct rx *r;

	T_ASSERT(type >= SWARM_MSG_APP);
	T_ASSERT(n->nrx < MAX_RX);
	r = &n->rx[n->nrx++];
	r->p = p;
	memcpy(r->from, swarm_peer_id(p), PEER_ID_LEN);
	r->type = type;
	r->len = len;
	T_ASSERT(r->body = malloc(len ? len : 1));
	if (len)
		memcpy(r->body, body, len);
}

static void node_start(struct node *n, const char *tag, const struct node_cfg *cfg)
{
	static const struct node_cfg dflt;
	struct cs_store_opts so = { 0 };
	struct swarm_opts o;
	char path[512];

	if (!cfg)
		cfg = &dflt;
	memset(n, 0, sizeof(*n));
	n->dir = dir_new(tag);
	T_ASSERT_OK(peer_ident_load(n->dir, 0, &n->ident));
	snprintf(path, sizeof(path), "%s/store", n->dir);
	T_ASSERT_OK(cs_store_open(path, &so, &n->cs));
	cs_store_set_loop(n->cs, loop);
	o = (struct swarm_opts){
		.loop = loop,
		.ident = n->ident,
		.cs = n->cs,
		.pool = cfg->pool,
		.dht = NULL,
		.member_key = cfg->member_key ? cfg->member_key : member_key,
		.share_tag = cfg->share_tag ? cfg->share_tag : share_tag,
		.writable = cfg->writable,
		.listen = "127.0.0.1:0",
		.fetch_timeout_ms = cfg->fetch_timeout_ms,
		.max_upload = cfg->max_upload,
		.max_peers = cfg->max_peers,
		.msg = on_msg,
		.peer_up = on_peer_up,
		.peer_down = on_peer_down,
		.arg = n,
	};
	T_ASSERT_OK(swarm_new(&o, &n->s));
	T_ASSERT(swarm_port(n->s) != 0);
}

/* The node leaves: its swarm goes, its store and identity stay until node_done(). */
static void node_stop(struct node *n)
{
	swarm_free(n->s);
	n->s = NULL;
}

static void node_done(struct node *n)
{
	node_stop(n);
	T_ASSERT_OK(cs_store_close(n->cs));
	peer_ident_free(n->ident);
	for (unsigned i = 0; i < n->nrx; i++)
		free(n->rx[i].body);
	dir_remove(n->dir);
	memset(n, 0, sizeof(*n));
}

static const uint8_t *node_id(const struct node *n)
{
	return peer_ident_id(n->ident);
}

/* @from keeps @to connected (by its address only, as a configured peer). */
static void node_link(struct node *from, const struct node *to)
{
	char addr[32];

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)swarm_port(to->s));
	T_ASSERT_OK(swarm_add_addr(from->s, addr));
}

static struct swarm_stats stats(struct node *n)
{
	struct swarm_stats st;

	swarm_get_stats(n->s, &st);
	return st;
}

static unsigned members(struct node *n)
{
	return stats(n).members;
}

/* How many times @n announced @other with peer_up. */
static int ups_from(const struct node *n, const struct node *other)
{
	int k = 0;

	for (int i = 0; i < n->ups; i++)
		k += !memcmp(n->up_ids[i], node_id(other), PEER_ID_LEN);
	return k;
}

/* @n's handle for member @other (from peer_up), or NULL. */
static struct swarm_peer *peer_of(const struct node *n, const struct node *other)
{
	for (unsigned i = 0; i < n->nlive; i++)
		if (!memcmp(swarm_peer_id(n->live[i]), node_id(other), PEER_ID_LEN))
			return n->live[i];
	return NULL;
}

/* @n's swarm_peers() entry for @other: false if it is not a member. */
static bool peer_info(struct node *n, const struct node *other, struct swarm_peer_info *ret)
{
	struct swarm_peer_info info[MAX_INFO];
	size_t k = swarm_peers(n->s, info, MAX_INFO);

	T_ASSERT(k <= MAX_INFO);
	for (size_t i = 0; i < k; i++)
		if (!memcmp(info[i].id, node_id(other), PEER_ID_LEN)) {
			*ret = info[i];
			return true;
		}
	return false;
}

/* ---- the loop ---- */

static void run_once(void)
{
	T_ASSERT(ev_loop_run_once(loop, 10) >= 0);
}

/* Run the loop until @cond holds; fail after @ms. */
#define WAIT_FOR(cond, ms)                                                      \
	do {                                                                    \
		uint64_t t_end_ = tm_mono_ms() + (ms);                          \
		while (!(cond)) {                                               \
			if (tm_mono_ms() >= t_end_)                             \
				T_FAIL("no %s within %d ms", #cond, (int)(ms)); \
			run_once();                                             \
		}                                                               \
	} while (0)

static void run_for(int ms)
{
	uint64_t end = tm_mono_ms() + (uint64_t)ms;

	while (tm_mono_ms() < end)
		run_once();
}

static void net_begin(void)
{
	T_ASSERT_OK(ev_loop_new(512, &loop));
}

/* No running swarm has a connection on its way up (an outgoing one not yet a
 * member: the other end may still be in its handshake). */
static bool quiet(struct node *const *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (nodes[i]->s && stats(nodes[i]).connecting)
			return false;
	return true;
}

/*
 * Every swarm goes, the connections wind down, then stores and the loop.
 * The swarms are freed at a moment when no dial is under way, as
 * swarm_free() while a connection to the swarm is still in its transport
 * handshake is not safe: that connection's callback later gets the freed
 * swarm (net/swarm.c on_up / on_down).
 */
static void net_end(struct node *const *nodes, size_t n)
{
	WAIT_FOR(quiet(nodes, n), 3000);
	for (size_t i = 0; i < n; i++)
		node_stop(nodes[i]);
	WAIT_FOR(ev_loop_inflight(loop) == 0, 8000);
	for (size_t i = 0; i < n; i++)
		node_done(nodes[i]);
	ev_loop_free(loop);
	loop = NULL;
}

#define NET_END(...)                                                       \
	do {                                                               \
		struct node *const t_nodes_[] = { __VA_ARGS__ };           \
		net_end(t_nodes_, sizeof(t_nodes_) / sizeof(t_nodes_[0])); \
	} while (0)

/* ---- chunks and fetches ---- */

struct chunk {
	uint8_t id[CS_ID_LEN];
	uint8_t *data;
	size_t len;
};

static void chunk_make(struct chunk *c, size_t len)
{
	c->len = len;
	T_ASSERT(c->data = malloc(len ? len : 1));
	t_rand_fill(c->data, len);
	cs_id_compute(c->data, len, c->id);
}

static void chunk_put(struct node *n, const struct chunk *c)
{
	T_ASSERT_EQ(cs_put(n->cs, c->id, c->data, c->len, CS_PUT_PIN), 1);
}

/* The ids of @n chunks back to back, as swarm_holders() takes them. */
static uint8_t *chunk_ids(const struct chunk *c, size_t n)
{
	uint8_t *ids = malloc(n * CS_ID_LEN);

	T_ASSERT(ids);
	for (size_t i = 0; i < n; i++)
		memcpy(ids + i * CS_ID_LEN, c[i].id, CS_ID_LEN);
	return ids;
}

/* One swarm_fetch() callback's record. */
struct got {
	const struct chunk *want; /* NULL: an id nobody holds */
	int calls, rc;
	bool same; /* the bytes were want's */
	uint64_t at;
};

static void on_got(void *arg, int rc, struct cs_buf *b)
{
	struct got *g = arg;

	g->calls++;
	g->rc = rc;
	g->at = tm_mono_ms();
	if (rc < 0)
		T_ASSERT(b == NULL);
	else
		g->same = g->want && b && cs_buf_len(b) == g->want->len &&
			  !memcmp(cs_buf_data(b), g->want->data, g->want->len);
}

/* Fetch @id for @g (no file named: holders are looked for among the members only). */
static int fetch(struct node *n, const uint8_t *id, bool urgent, struct got *g)
{
	return swarm_fetch(n->s, id, NULL, urgent ? SWARM_FETCH_URGENT : 0, on_got, g);
}

static bool all_called(const struct got *g, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!g[i].calls)
			return false;
	return true;
}

static void assert_all_fetched(const struct got *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (g[i].calls != 1 || g[i].rc != 0 || !g[i].same)
			T_FAIL("fetch %zu: %d calls, rc %d, bytes %s", i, g[i].calls, g[i].rc,
			       g[i].same ? "right" : "wrong");
	}
}

/* ---- cases ---- */

static void two_members_see_each_other(void)
{
	struct node a, b;
	struct swarm_peer_info ia, ib, info[2];
	struct swarm_stats st;
	char want_addr[32];

	net_begin();
	node_start(&a, "swarm-a", &(struct node_cfg){ .writable = true });
	node_start(&b, "swarm-b", NULL);
	T_ASSERT(swarm_port(a.s) != swarm_port(b.s));
	node_link(&b, &a);
	WAIT_FOR(members(&a) == 1 && members(&b) == 1 && a.ups == 1 && b.ups == 1, 3000);
	/* A while later: still one member each way, announced once. */
	run_for(700);
	T_ASSERT(a.ups == 1 && b.ups == 1 && a.downs == 0 && b.downs == 0);
	T_ASSERT_EQ(ups_from(&a, &b), 1);
	T_ASSERT_EQ(ups_from(&b, &a), 1);
	swarm_get_stats(a.s, &st);
	T_ASSERT(st.members == 1 && st.connecting == 0 && st.fetches == 0);
	T_ASSERT_EQ(st.known_addrs, 1); /* b's, from its HELLO */
	swarm_get_stats(b.s, &st);
	T_ASSERT(st.members == 1 && st.connecting == 0 && st.known_addrs == 1);
	/* The handles peer_up gave. */
	T_ASSERT(peer_of(&a, &b) && peer_of(&b, &a));
	T_ASSERT(!swarm_peer_writable(peer_of(&a, &b)));
	T_ASSERT(swarm_peer_writable(peer_of(&b, &a)));
	T_ASSERT(!strncmp(swarm_peer_name(peer_of(&a, &b)), "127.0.0.1:", 10));
	/* swarm_peers(): who, which way, where, and the round trip. */
	T_ASSERT_EQ(swarm_peers(a.s, NULL, 0), 1);
	T_ASSERT_EQ(swarm_peers(a.s, info, 2), 1);
	T_ASSERT_MEM_EQ(info[0].id, node_id(&b), PEER_ID_LEN);
	WAIT_FOR(peer_info(&a, &b, &ib) && ib.rtt_us > 0 && peer_info(&b, &a, &ia) && ia.rtt_us > 0,
		 3000);
	T_ASSERT(!ib.outgoing && !ib.writable);
	T_ASSERT(ia.outgoing && ia.writable);
	T_ASSERT(!strncmp(ib.addr, "127.0.0.1:", 10));
	snprintf(want_addr, sizeof(want_addr), "127.0.0.1:%u", (unsigned)swarm_port(a.s));
	T_ASSERT(!strcmp(ia.addr, want_addr));
	T_ASSERT(ia.bytes_in > 0 && ia.bytes_out > 0 && ib.bytes_in > 0 && ib.bytes_out > 0);
	T_ASSERT(ia.chunks_in == 0 && ia.chunks_out == 0 && ia.inflight == 0 && ia.queued == 0);
	T_ASSERT(ia.connected_ms < 5000 && ib.connected_ms < 5000);
	T_ASSERT(ia.rtt_us < 1000000 && ib.rtt_us < 1000000);
	/* B leaves: A hears it once. */
	node_stop(&b);
	WAIT_FOR(a.downs == 1 && members(&a) == 0, 3000);
	T_ASSERT_EQ(a.nlive, 0);
	NET_END(&a, &b);
}

static void both_dialing_keeps_one_connection(void)
{
	struct node a, b;

	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	node_link(&a, &b);
	node_link(&b, &a);
	WAIT_FOR(members(&a) == 1 && members(&b) == 1, 3000);
	run_for(1200);
	T_ASSERT(members(&a) == 1 && members(&b) == 1);
	T_ASSERT(stats(&a).connecting == 0 && stats(&b).connecting == 0);
	/* A duplicate announced and dropped is announced gone. */
	T_ASSERT(a.nlive == 1 && b.nlive == 1);
	T_ASSERT_EQ(a.ups - a.downs, 1);
	T_ASSERT_EQ(b.ups - b.downs, 1);
	NET_END(&a, &b);
}

static void outsiders_are_refused(void)
{
	uint8_t other_tag[SWARM_KEY_LEN], other_key[SWARM_KEY_LEN];
	struct node a, c, d;
	struct got g = { 0 };
	bool c_tried = false, d_tried = false;
	uint64_t end;

	/* c: another share; d: this share's tag without its member key. */
	memcpy(other_tag, share_tag, sizeof(other_tag));
	other_tag[5] ^= 1;
	memcpy(other_key, member_key, sizeof(other_key));
	other_key[9] ^= 1;
	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&c, "swarm-c", &(struct node_cfg){ .share_tag = other_tag });
	node_start(&d, "swarm-d", &(struct node_cfg){ .member_key = other_key });
	node_link(&c, &a);
	node_link(&d, &a);
	/* Each dials, is refused, and every connection is closed (before the
	 * first retry, two seconds after the dial). */
	end = tm_mono_ms() + 1800;
	while (!(c_tried && d_tried && stats(&c).connecting == 0 && stats(&d).connecting == 0 &&
		 stats(&a).connecting == 0)) {
		T_ASSERT(tm_mono_ms() < end);
		run_once();
		c_tried |= stats(&c).connecting > 0;
		d_tried |= stats(&d).connecting > 0;
	}
	run_for(200);
	T_ASSERT(a.ups == 0 && c.ups == 0 && d.ups == 0);
	T_ASSERT(members(&a) == 0 && members(&c) == 0 && members(&d) == 0);
	/* Nothing to fetch from: an outsider has no member. */
	T_ASSERT_EQ(fetch(&c, share_tag, true, &g), -ENOENT);
	T_ASSERT_EQ(fetch(&d, share_tag, true, &g), -ENOENT);
	run_for(50);
	T_ASSERT_EQ(g.calls, 0);
	T_ASSERT_EQ(stats(&a).served, 0);
	NET_END(&a, &c, &d);
}

static void fetch_copies_a_verified_chunk(void)
{
	static const size_t lens[] = { 1, 65536, 4u << 20, (3u << 20) + 12345 };
	enum { N = ARRAY_SIZE(lens) };
	struct chunk ch[N];
	struct got g[N] = { 0 }, g2 = { 0 };
	struct node a, b;
	struct swarm_stats sa, sb;
	struct cs_stats cst;
	uint64_t total = 0;

	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	for (size_t i = 0; i < N; i++) {
		chunk_make(&ch[i], lens[i]);
		chunk_put(&a, &ch[i]);
		total += lens[i];
	}
	node_link(&b, &a);
	WAIT_FOR(members(&b) == 1, 3000);
	for (size_t i = 0; i < N; i++) {
		uint32_t len;

		T_ASSERT_EQ(cs_has(b.cs, ch[i].id, &len), -ENOENT);
		g[i].want = &ch[i];
		T_ASSERT_OK(fetch(&b, ch[i].id, true, &g[i]));
		if (i == 2) {
			/* A second reader of the same chunk shares its request. */
			g2.want = &ch[i];
			T_ASSERT_OK(fetch(&b, ch[i].id, false, &g2));
		}
		WAIT_FOR(g[i].calls && (i != 2 || g2.calls), 5000);
		T_ASSERT_OK(cs_has(b.cs, ch[i].id, &len));
		T_ASSERT_EQ(len, lens[i]);
	}
	run_for(100);
	assert_all_fetched(g, N);
	assert_all_fetched(&g2, 1);
	/* In B's store as cache (evictable), not pinned. */
	cs_store_stats(b.cs, &cst);
	T_ASSERT_EQ(cst.chunks, N);
	T_ASSERT_EQ(cst.pinned_chunks, 0);
	T_ASSERT_EQ(cst.cache_bytes, total);
	swarm_get_stats(a.s, &sa);
	swarm_get_stats(b.s, &sb);
	T_ASSERT(sb.fetched == N && sb.fetched_bytes == total && sb.fetch_failed == 0);
	T_ASSERT(sb.fetches == 0 && sb.bad_chunks == 0);
	T_ASSERT(sa.served == N && sa.served_bytes == total);
	for (size_t i = 0; i < N; i++)
		free(ch[i].data);
	NET_END(&a, &b);
}

static void missing_chunk_fails_at_the_fetch_deadline(void)
{
	struct node a, b, lone;
	uint8_t id[CS_ID_LEN];
	struct got g = { 0 }, g2 = { 0 };
	uint64_t t0, took;

	t_rand_fill(id, sizeof(id));
	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", &(struct node_cfg){ .fetch_timeout_ms = 600 });
	node_start(&lone, "swarm-lone", NULL);
	node_link(&b, &a);
	WAIT_FOR(members(&b) == 1, 3000);
	t0 = tm_mono_ms();
	T_ASSERT_OK(fetch(&b, id, true, &g));
	WAIT_FOR(g.calls, 3000);
	took = g.at - t0;
	T_ASSERT_EQ(g.rc, -ETIMEDOUT);
	if (took < 550 || took > 1500)
		T_FAIL("the fetch failed after %llu ms, its deadline is 600 ms",
		       (unsigned long long)took);
	run_for(100);
	T_ASSERT_EQ(g.calls, 1);
	T_ASSERT(stats(&b).fetch_failed == 1 && stats(&b).fetches == 0);
	T_ASSERT(stats(&a).notfound >= 1);
	/* Nobody to ask: -ENOENT at once, and no callback. */
	T_ASSERT_EQ(fetch(&lone, id, true, &g2), -ENOENT);
	run_for(100);
	T_ASSERT_EQ(g2.calls, 0);
	NET_END(&a, &b, &lone);
}

static void fetch_fails_when_the_last_member_leaves(void)
{
	struct node a, b;
	uint8_t id[CS_ID_LEN];
	struct got g = { 0 }, g2 = { 0 };

	t_rand_fill(id, sizeof(id));
	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL); /* the deadline is 30 s */
	node_link(&b, &a);
	WAIT_FOR(members(&b) == 1, 3000);
	T_ASSERT_OK(fetch(&b, id, true, &g));
	WAIT_FOR(stats(&a).notfound == 1, 2000);
	node_stop(&a);
	WAIT_FOR(g.calls, 3000);
	T_ASSERT_EQ(g.rc, -EIO);
	T_ASSERT_EQ(members(&b), 0);
	T_ASSERT_EQ(fetch(&b, id, true, &g2), -ENOENT);
	run_for(100);
	T_ASSERT(g.calls == 1 && g2.calls == 0);
	NET_END(&a, &b);
}

static void many_fetches_stay_within_the_window(void)
{
	enum { N = 64 };
	struct chunk ch[N];
	struct got g[N] = { 0 };
	struct node a, b, c;
	struct swarm_peer_info info[MAX_INFO];
	struct swarm_stats sa, sb, sc;
	uint8_t *ids;
	unsigned max_inflight = 0;
	uint64_t end;
	size_t k;

	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	node_start(&c, "swarm-c", NULL);
	for (size_t i = 0; i < N; i++) {
		chunk_make(&ch[i], 65536);
		chunk_put(&a, &ch[i]);
		chunk_put(&b, &ch[i]);
	}
	ids = chunk_ids(ch, N);
	node_link(&c, &a);
	node_link(&c, &b);
	WAIT_FOR(members(&c) == 2 && swarm_holders(c.s, ids, N) == 2, 3000);
	for (size_t i = 0; i < N; i++) {
		g[i].want = &ch[i];
		T_ASSERT_OK(fetch(&c, ch[i].id, i % 2 == 0, &g[i]));
	}
	/* Each member has a full window at once; the rest wait. */
	T_ASSERT_EQ(stats(&c).fetches, N);
	k = swarm_peers(c.s, info, MAX_INFO);
	T_ASSERT_EQ(k, 2);
	T_ASSERT(info[0].inflight == SWARM_WINDOW && info[1].inflight == SWARM_WINDOW);
	end = tm_mono_ms() + 10000;
	while (!all_called(g, N)) {
		T_ASSERT(tm_mono_ms() < end);
		run_once();
		k = swarm_peers(c.s, info, MAX_INFO);
		for (size_t i = 0; i < k && i < MAX_INFO; i++) {
			if (info[i].inflight > SWARM_WINDOW)
				T_FAIL("%u requests in flight at one member", info[i].inflight);
			max_inflight = P2P_MAX(max_inflight, info[i].inflight);
		}
	}
	T_ASSERT_EQ(max_inflight, SWARM_WINDOW);
	assert_all_fetched(g, N);
	swarm_get_stats(a.s, &sa);
	swarm_get_stats(b.s, &sb);
	swarm_get_stats(c.s, &sc);
	T_ASSERT(sc.fetched == N && sc.fetch_failed == 0 && sc.fetches == 0);
	T_ASSERT(sa.served + sb.served >= N);	  /* more if a slow request moved */
	T_ASSERT(sa.served > 0 && sb.served > 0); /* both were asked */
	for (size_t i = 0; i < N; i++) {
		uint32_t len;

		T_ASSERT_OK(cs_has(c.cs, ch[i].id, &len));
		T_ASSERT_EQ(len, ch[i].len);
		free(ch[i].data);
	}
	free(ids);
	NET_END(&a, &b, &c);
}

static void fetches_survive_a_member_that_leaves(void)
{
	enum { N = 16 };
	struct chunk ch[N];
	struct got g[N] = { 0 };
	struct node a, b, c;
	struct swarm_peer_info ia;
	struct swarm_stats sa, sb, sc;
	uint64_t base;
	uint8_t *ids;

	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	node_start(&c, "swarm-c", NULL);
	for (size_t i = 0; i < N; i++) {
		chunk_make(&ch[i], 2u << 20);
		chunk_put(&a, &ch[i]);
		chunk_put(&c, &ch[i]);
	}
	ids = chunk_ids(ch, N);
	node_link(&b, &a);
	node_link(&b, &c);
	/* a and c find each other through b; a goes only once nobody is
	 * still connecting to it (see net_end). */
	WAIT_FOR(members(&b) == 2 && swarm_holders(b.s, ids, N) == 2 && members(&a) == 2 &&
		     members(&c) == 2 && quiet((struct node *const[]){ &a, &b, &c }, 3),
		 3000);
	T_ASSERT(peer_info(&b, &a, &ia));
	base = ia.bytes_in;
	for (size_t i = 0; i < N; i++) {
		g[i].want = &ch[i];
		T_ASSERT_OK(fetch(&b, ch[i].id, true, &g[i]));
	}
	/* A goes once it is part-way through what B asked of it. */
	WAIT_FOR(peer_info(&b, &a, &ia) && ia.bytes_in >= base + (1u << 20), 5000);
	T_ASSERT(ia.inflight > 0);
	swarm_get_stats(a.s, &sa);
	T_ASSERT(sa.served < N);
	node_stop(&a);
	WAIT_FOR(all_called(g, N), 10000);
	assert_all_fetched(g, N);
	WAIT_FOR(members(&b) == 1, 3000);
	swarm_get_stats(b.s, &sb);
	swarm_get_stats(c.s, &sc);
	T_ASSERT(sb.fetched == N && sb.fetch_failed == 0 && sb.bad_chunks == 0);
	/* What A had not sent came from C. */
	T_ASSERT(sc.served + sa.served >= N);
	for (size_t i = 0; i < N; i++)
		free(ch[i].data);
	free(ids);
	NET_END(&a, &b, &c);
}

static void member_serving_damaged_chunks_is_banned(void)
{
	enum { N = 4 };
	struct chunk ch[N];
	struct got g[N] = { 0 };
	struct node a, b, e;
	struct swarm_peer_info info;
	struct swarm_stats sb;
	uint8_t *ids;
	uint64_t end;

	net_begin();
	/* e damages every chunk it serves. */
	T_ASSERT_OK(setenv("P2PFS_TEST_CORRUPT_SERVE", "1", 1));
	node_start(&e, "swarm-e", NULL);
	T_ASSERT_OK(unsetenv("P2PFS_TEST_CORRUPT_SERVE"));
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	for (size_t i = 0; i < N; i++) {
		chunk_make(&ch[i], 65536);
		chunk_put(&a, &ch[i]);
		chunk_put(&e, &ch[i]);
	}
	ids = chunk_ids(ch, N);
	node_link(&b, &a);
	node_link(&b, &e);
	WAIT_FOR(members(&b) == 2 && swarm_holders(b.s, ids, N) == 2, 3000);
	/* Both hold them all and neither is busy: the requests are shared out,
	 * so e is asked for some. */
	for (size_t i = 0; i < N; i++) {
		g[i].want = &ch[i];
		T_ASSERT_OK(fetch(&b, ch[i].id, true, &g[i]));
	}
	T_ASSERT(peer_info(&b, &e, &info) && info.inflight > 0);
	WAIT_FOR(all_called(g, N), 5000);
	assert_all_fetched(g, N);
	WAIT_FOR(members(&b) == 1 && !peer_of(&e, &b), 3000);
	swarm_get_stats(b.s, &sb);
	T_ASSERT(sb.bad_chunks >= 1 && sb.fetch_failed == 0 && sb.fetched == N);
	T_ASSERT(peer_info(&b, &a, &info) && !peer_info(&b, &e, &info));
	T_ASSERT_EQ(b.downs, 1);
	/* Banned: b knows e's address (told again here), e now dials b too,
	 * and still b never takes e back, past the first retry's back-off.
	 * (e may well join a, whose address b told it.) */
	T_ASSERT(sb.known_addrs >= 2);
	node_link(&b, &e);
	node_link(&e, &b);
	end = tm_mono_ms() + 2600;
	while (tm_mono_ms() < end) {
		run_once();
		T_ASSERT(!peer_info(&b, &e, &info) && !peer_info(&e, &b, &info));
	}
	T_ASSERT(ups_from(&b, &e) == 1 && ups_from(&e, &b) == 1 && members(&b) == 1);
	for (size_t i = 0; i < N; i++)
		free(ch[i].data);
	free(ids);
	NET_END(&a, &b, &e);
}

static void app_messages_arrive_byte_exact(void)
{
	struct node a, b, c;
	struct swarm_peer *pb, *pc, *pa;
	uint8_t *big, small[1000];
	const size_t big_len = TP_FRAME_MAX - 1;
	static const uint8_t reserved[] = {
		0, SWARM_M_HELLO, SWARM_M_GET, SWARM_M_DATA, SWARM_M_HAVE, SWARM_MSG_APP - 1
	};

	T_ASSERT(big = malloc(TP_FRAME_MAX));
	t_rand_fill(big, TP_FRAME_MAX);
	t_rand_fill(small, sizeof(small));
	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	node_start(&c, "swarm-c", NULL);
	node_link(&b, &a);
	node_link(&c, &a);
	WAIT_FOR(members(&a) == 2 && peer_of(&b, &a) && peer_of(&c, &a), 3000);
	T_ASSERT((pb = peer_of(&a, &b)) && (pc = peer_of(&a, &c)) && (pa = peer_of(&b, &a)));
	/* The swarm's own types, and over a frame, are refused. */
	for (size_t i = 0; i < sizeof(reserved); i++)
		T_ASSERT_EQ(swarm_send(pb, reserved[i], "x", 1), -EINVAL);
	T_ASSERT_EQ(swarm_send(pb, SWARM_MSG_APP, big, TP_FRAME_MAX), -EMSGSIZE);
	/* One member: empty, small, the largest, in order. */
	T_ASSERT_OK(swarm_send(pb, SWARM_MSG_APP, NULL, 0));
	T_ASSERT_OK(swarm_send(pb, 77, small, sizeof(small)));
	T_ASSERT_OK(swarm_send(pb, 255, big, big_len));
	T_ASSERT_OK(swarm_send(pb, SWARM_MSG_APP, "hello", 5));
	WAIT_FOR(b.nrx == 4, 3000);
	T_ASSERT(b.rx[0].type == SWARM_MSG_APP && b.rx[0].len == 0);
	T_ASSERT(b.rx[1].type == 77 && b.rx[1].len == sizeof(small));
	T_ASSERT_MEM_EQ(b.rx[1].body, small, sizeof(small));
	T_ASSERT(b.rx[2].type == 255 && b.rx[2].len == big_len);
	T_ASSERT_MEM_EQ(b.rx[2].body, big, big_len);
	T_ASSERT(b.rx[3].type == SWARM_MSG_APP && b.rx[3].len == 5);
	T_ASSERT_MEM_EQ(b.rx[3].body, "hello", 5);
	for (unsigned i = 0; i < b.nrx; i++) {
		T_ASSERT(b.rx[i].p == pa);
		T_ASSERT_MEM_EQ(b.rx[i].from, node_id(&a), PEER_ID_LEN);
	}
	WAIT_FOR(swarm_queued(pb) == 0, 3000);
	/* The other way: the callback names the sender. */
	T_ASSERT_OK(swarm_send(pa, 100, "back", 4));
	WAIT_FOR(a.nrx == 1, 3000);
	T_ASSERT(a.rx[0].p == pb && a.rx[0].type == 100 && a.rx[0].len == 4);
	T_ASSERT_MEM_EQ(a.rx[0].body, "back", 4);
	/* Broadcast: to every member, or to all but one. */
	swarm_broadcast(a.s, NULL, 50, "all", 3);
	swarm_broadcast(a.s, pb, 51, "not b", 5);
	WAIT_FOR(b.nrx == 5 && c.nrx == 2, 3000);
	run_for(200);
	T_ASSERT(b.nrx == 5 && c.nrx == 2 && a.nrx == 1);
	T_ASSERT(b.rx[4].type == 50 && b.rx[4].len == 3);
	T_ASSERT_MEM_EQ(b.rx[4].body, "all", 3);
	T_ASSERT(c.rx[0].type == 50 && c.rx[0].len == 3);
	T_ASSERT_MEM_EQ(c.rx[0].body, "all", 3);
	T_ASSERT(c.rx[1].type == 51 && c.rx[1].len == 5);
	T_ASSERT_MEM_EQ(c.rx[1].body, "not b", 5);
	T_ASSERT_MEM_EQ(c.rx[1].from, node_id(&a), PEER_ID_LEN);
	free(big);
	NET_END(&a, &b, &c);
}

static void have_tells_who_holds_what(void)
{
	struct chunk x, y, w;
	uint8_t nobody[CS_ID_LEN], ids[3 * CS_ID_LEN];
	struct got g = { 0 }, gy = { 0 }, gw = { 0 };
	struct node a, b, c;

	t_rand_fill(nobody, sizeof(nobody));
	chunk_make(&x, 100000);
	chunk_make(&y, 5000);
	chunk_make(&w, 7777);
	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	chunk_put(&a, &x);
	chunk_put(&a, &y);
	node_link(&b, &a);
	WAIT_FOR(members(&b) == 1 && swarm_availability(b.s, x.id) == 1, 3000);
	T_ASSERT_EQ(swarm_availability(b.s, nobody), 0);
	g.want = &x;
	T_ASSERT_OK(fetch(&b, x.id, true, &g));
	WAIT_FOR(g.calls, 3000);
	assert_all_fetched(&g, 1);
	/* C joins later and learns from B's inventory that B holds X too. */
	node_start(&c, "swarm-c", NULL);
	node_link(&c, &a);
	node_link(&c, &b);
	WAIT_FOR(members(&c) == 2 && swarm_availability(c.s, x.id) == 2, 3000);
	T_ASSERT_EQ(swarm_availability(c.s, y.id), 1);
	T_ASSERT_EQ(swarm_availability(c.s, nobody), 0);
	memcpy(ids, x.id, CS_ID_LEN);
	memcpy(ids + CS_ID_LEN, y.id, CS_ID_LEN);
	memcpy(ids + 2 * CS_ID_LEN, nobody, CS_ID_LEN);
	T_ASSERT_EQ(swarm_holders(c.s, ids, 1), 2);
	T_ASSERT_EQ(swarm_holders(c.s, ids, 2), 1); /* only A holds X and Y */
	T_ASSERT_EQ(swarm_holders(c.s, ids, 3), 0);
	T_ASSERT_EQ(swarm_holders(c.s, ids + CS_ID_LEN, 1), 1);
	/* A chunk fetched while connected is announced to the members. */
	gy.want = &y;
	T_ASSERT_OK(fetch(&c, y.id, true, &gy));
	WAIT_FOR(gy.calls, 3000);
	assert_all_fetched(&gy, 1);
	WAIT_FOR(swarm_availability(b.s, y.id) == 2, 2000);
	T_ASSERT_EQ(swarm_holders(b.s, ids + CS_ID_LEN, 1), 2); /* Y: A and C */
	T_ASSERT_EQ(swarm_holders(b.s, ids, 2), 1);		/* X and Y: A only */
	/* So is one the caller announces; and it is asked of its holder. */
	chunk_put(&b, &w);
	swarm_announce(b.s, w.id, 1);
	WAIT_FOR(swarm_availability(c.s, w.id) == 1 && swarm_availability(a.s, w.id) == 1, 2000);
	gw.want = &w;
	T_ASSERT_OK(fetch(&c, w.id, true, &gw));
	WAIT_FOR(gw.calls, 3000);
	assert_all_fetched(&gw, 1);
	T_ASSERT_EQ(stats(&b).served, 1);
	T_ASSERT_EQ(stats(&c).notfound + stats(&a).notfound, 0);
	free(x.data);
	free(y.data);
	free(w.data);
	NET_END(&a, &b, &c);
}

static void free_cancels_waiting_fetches_once(void)
{
	enum { N = 5 };
	struct chunk big;
	uint8_t m1[CS_ID_LEN], m2[CS_ID_LEN];
	struct got g[N] = { 0 };
	struct swarm_peer_info ia;
	struct node a, b;
	uint64_t base;
	bool big_done;

	t_rand_fill(m1, sizeof(m1));
	t_rand_fill(m2, sizeof(m2));
	chunk_make(&big, 12u << 20);
	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", NULL);
	chunk_put(&a, &big);
	node_link(&b, &a);
	WAIT_FOR(members(&b) == 1 && swarm_availability(b.s, big.id) == 1, 3000);
	T_ASSERT(peer_info(&b, &a, &ia));
	base = ia.bytes_in;
	/* Two readers of one missing chunk, another missing chunk, and a big
	 * chunk that is on its way when the swarm goes. */
	T_ASSERT_OK(fetch(&b, m1, true, &g[0]));
	T_ASSERT_OK(fetch(&b, m1, false, &g[1]));
	T_ASSERT_OK(fetch(&b, m2, false, &g[2]));
	g[3].want = &big;
	T_ASSERT_OK(fetch(&b, big.id, true, &g[3]));
	g[4].want = &big;
	T_ASSERT_OK(fetch(&b, big.id, false, &g[4]));
	WAIT_FOR(stats(&a).notfound == 2 && peer_info(&b, &a, &ia) &&
		     ia.bytes_in >= base + (1u << 20),
		 5000);
	T_ASSERT(g[0].calls == 0 && g[1].calls == 0 && g[2].calls == 0);
	big_done = g[3].calls;
	node_stop(&b);
	/* Each callback ran once, in swarm_free(), with -ECANCELED. */
	for (size_t i = 0; i < N; i++) {
		if (i >= 3 && big_done)
			continue;
		T_ASSERT_EQ(g[i].calls, 1);
		T_ASSERT_EQ(g[i].rc, -ECANCELED);
	}
	run_for(200);
	for (size_t i = 0; i < N; i++)
		T_ASSERT_EQ(g[i].calls, 1);
	if (big_done)
		fprintf(stderr, "# the big chunk arrived before the swarm went\n");
	free(big.data);
	NET_END(&a, &b);
}

/*
 * A holder whose upload is the limit sends each chunk about once while two
 * members fetch the same chunks at once: a request for a chunk it is
 * sending (or has sent) to the other is answered "busy", and the members
 * trade it between themselves over their unlimited link.
 */
static void a_slow_holder_sends_each_chunk_about_once(void)
{
	enum { N = 24, LEN = 256 << 10 };
	const struct node_cfg slow = { .max_upload = 4u << 20 };
	struct chunk ch[N];
	struct got gb[N] = { 0 }, gc[N] = { 0 };
	struct node a, b, c;
	struct swarm_stats sa, sb, sc;
	uint8_t *ids;
	uint64_t end;

	net_begin();
	node_start(&a, "swarm-a", &slow);
	node_start(&b, "swarm-b", NULL);
	node_start(&c, "swarm-c", NULL);
	for (size_t i = 0; i < N; i++) {
		chunk_make(&ch[i], LEN);
		chunk_put(&a, &ch[i]);
	}
	ids = chunk_ids(ch, N);
	node_link(&b, &a);
	node_link(&c, &a);
	node_link(&c, &b);
	WAIT_FOR(members(&b) == 2 && members(&c) == 2 && swarm_holders(b.s, ids, N) == 1 &&
		     swarm_holders(c.s, ids, N) == 1,
		 3000);
	for (size_t i = 0; i < N; i++) {
		gb[i].want = gc[i].want = &ch[i];
		T_ASSERT_OK(fetch(&b, ch[i].id, false, &gb[i]));
		T_ASSERT_OK(fetch(&c, ch[i].id, false, &gc[i]));
	}
	end = tm_mono_ms() + 20000;
	while (!all_called(gb, N) || !all_called(gc, N)) {
		T_ASSERT(tm_mono_ms() < end);
		run_once();
	}
	assert_all_fetched(gb, N);
	assert_all_fetched(gc, N);
	swarm_get_stats(a.s, &sa);
	swarm_get_stats(b.s, &sb);
	swarm_get_stats(c.s, &sc);
	fprintf(stderr, "# holder sent %.2f times the bytes, %llu refusals; b sent %llu, c %llu\n",
		(double)sa.served_bytes / (N * LEN), (unsigned long long)sa.redirects,
		(unsigned long long)sb.served_bytes, (unsigned long long)sc.served_bytes);
	/* Without refusals both would be sent everything: twice the bytes. */
	T_ASSERT(sa.served_bytes <= (uint64_t)N * LEN * 13 / 10);
	T_ASSERT(sa.redirects > 0 &&
		 sb.served_bytes + sc.served_bytes >= (uint64_t)N * LEN * 7 / 10);
	T_ASSERT(sb.fetch_failed == 0 && sc.fetch_failed == 0);
	for (size_t i = 0; i < N; i++)
		free(ch[i].data);
	free(ids);
	NET_END(&a, &b, &c);
}

/*
 * b fetches a chunk from a slow holder a; c, linked to b alone, asks b for
 * it while it is still arriving there. With @corrupt, a damages it.
 */
static void relay_case(bool corrupt, struct swarm_stats *ret_b, struct swarm_stats *ret_c,
		       struct got *ret_gb, struct got *ret_gc)
{
	enum { LEN = 1 << 20 };
	/* a and c dial nobody: c learns a's address from b, and must not
	 * reach it (a and b are not limited) */
	const struct node_cfg slow = { .max_upload = 1u << 20,
				       .fetch_timeout_ms = 2500,
				       .max_peers = 1 };
	const struct node_cfg quick = { .fetch_timeout_ms = 2500 };
	const struct node_cfg lone = { .fetch_timeout_ms = 2500, .max_peers = 1 };
	struct chunk ch;
	struct got gb = { .want = &ch }, gc = { .want = &ch };
	struct node a, b, c;

	net_begin();
	if (corrupt)
		T_ASSERT_OK(setenv("P2PFS_TEST_CORRUPT_SERVE", "1", 1));
	node_start(&a, "swarm-a", &slow);
	T_ASSERT_OK(unsetenv("P2PFS_TEST_CORRUPT_SERVE"));
	node_start(&b, "swarm-b", &quick);
	node_start(&c, "swarm-c", &lone);
	chunk_make(&ch, LEN);
	chunk_put(&a, &ch);
	node_link(&b, &a);
	node_link(&c, &b);
	WAIT_FOR(members(&b) == 2 && members(&c) == 1 && swarm_holders(b.s, ch.id, 1) == 1, 3000);
	T_ASSERT_OK(fetch(&b, ch.id, true, &gb));
	/* A quarter of it has left a (at 1 MiB/s): b is receiving it. */
	WAIT_FOR(stats(&a).served_bytes >= LEN / 4, 3000);
	T_ASSERT(!gb.calls);
	T_ASSERT_OK(fetch(&c, ch.id, true, &gc));
	WAIT_FOR(gb.calls && gc.calls, 6000);
	*ret_b = stats(&b);
	*ret_c = stats(&c);
	*ret_gb = gb;
	*ret_gc = gc;
	/* c kept b. (Once b drops a damaging a, a has room to dial c, whose
	 * address it learnt from b: then c may get, and ban, a's bytes too.) */
	T_ASSERT(peer_of(&c, &b));
	if (!corrupt)
		T_ASSERT(members(&c) == 1);
	free(ch.data);
	NET_END(&a, &b, &c);
}

/* A chunk still arriving is passed on as it comes, and its last bytes as
 * soon as it is verified: c has it right after b, not a transfer later. */
static void a_chunk_is_relayed_while_it_arrives(void)
{
	struct swarm_stats sb, sc;
	struct got gb, gc;

	relay_case(false, &sb, &sc, &gb, &gc);
	assert_all_fetched(&gb, 1);
	assert_all_fetched(&gc, 1);
	fprintf(stderr, "# c had the chunk %llu ms after b\n", (unsigned long long)(gc.at - gb.at));
	T_ASSERT_EQ(sb.relayed, 1);
	T_ASSERT(gc.at >= gb.at && gc.at - gb.at < 300);
	T_ASSERT(sb.bad_chunks == 0 && sc.bad_chunks == 0 && sc.fetch_failed == 0);
}

/* A relayed chunk that fails b's check never reaches c whole: c is told
 * NOTFOUND and keeps b (it was a's fault, and b bans a). */
static void a_damaged_chunk_is_not_relayed_whole(void)
{
	struct swarm_stats sb, sc;
	struct got gb, gc;

	relay_case(true, &sb, &sc, &gb, &gc);
	T_ASSERT(gb.calls == 1 && gb.rc < 0 && gc.calls == 1 && gc.rc < 0);
	T_ASSERT(sb.relayed == 1 && sb.bad_chunks == 1);
	T_ASSERT(sc.bad_chunks <= 1); /* from a, if a reached c (see relay_case) */
}

/* A job that holds a pool's only thread until the test lets it go. */
struct plug {
	struct ev_work w;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
};

static void plug_run(struct ev_work *w)
{
	struct plug *pl = container_of(w, struct plug, w);

	pthread_mutex_lock(&pl->lock);
	while (!pl->open)
		pthread_cond_wait(&pl->cond, &pl->lock);
	pthread_mutex_unlock(&pl->lock);
}

static void plug_open(struct plug *pl)
{
	pthread_mutex_lock(&pl->lock);
	pl->open = true;
	pthread_cond_broadcast(&pl->cond);
	pthread_mutex_unlock(&pl->lock);
}

/*
 * A reader that needs only the bytes (SWARM_FETCH_EARLY) gets a chunk once
 * it is verified, while the store is still busy; one that needs the stored
 * copy (pin) waits for the write; and no more than SWARM_STORE_AHEAD bytes
 * are handed out ahead of the disk.
 */
static void early_readers_do_not_wait_for_the_store(void)
{
	enum { N = SWARM_STORE_AHEAD / (16u << 20) + 1 };
	struct chunk big[N], small;
	struct got gb[N] = { 0 }, ge = { 0 }, gs = { 0 };
	struct plug pl = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct ev_pool *pool;
	struct node a, b;
	uint32_t len;

	T_ASSERT_OK(ev_pool_new(1, &pool));
	net_begin();
	node_start(&a, "swarm-a", NULL);
	node_start(&b, "swarm-b", &(struct node_cfg){ .pool = pool });
	chunk_make(&small, (1u << 20) + 7);
	chunk_put(&a, &small);
	for (size_t i = 0; i < N; i++) {
		chunk_make(&big[i], 16u << 20);
		chunk_put(&a, &big[i]);
	}
	node_link(&b, &a);
	WAIT_FOR(members(&b) == 1, 3000);
	ev_work_submit(pool, loop, &pl.w, plug_run, NULL);

	ge.want = gs.want = &small;
	T_ASSERT_OK(swarm_fetch(b.s, small.id, NULL, SWARM_FETCH_EARLY, on_got, &ge));
	T_ASSERT_OK(swarm_fetch(b.s, small.id, NULL, 0, on_got, &gs));
	WAIT_FOR(ge.calls, 5000);
	T_ASSERT(ge.rc == 0 && ge.same);
	run_for(100);
	T_ASSERT_EQ(gs.calls, 0);
	T_ASSERT_EQ(cs_has(b.cs, small.id, &len), -ENOENT);

	/* 16 MiB chunks until SWARM_STORE_AHEAD bytes wait for the store
	 * (the small one counts too): the last one waits with them. */
	for (size_t i = 0; i < N; i++) {
		gb[i].want = &big[i];
		T_ASSERT_OK(swarm_fetch(b.s, big[i].id, NULL, SWARM_FETCH_EARLY, on_got, &gb[i]));
		if (i < N - 1)
			WAIT_FOR(gb[i].calls, 10000);
	}
	run_for(300);
	T_ASSERT_EQ(gb[N - 1].calls, 0);
	T_ASSERT(stats(&b).storing >= SWARM_STORE_AHEAD);

	plug_open(&pl);
	WAIT_FOR(gs.calls && gb[N - 1].calls, 10000);
	T_ASSERT(gs.rc == 0 && gs.same);
	T_ASSERT_OK(cs_has(b.cs, small.id, &len));
	assert_all_fetched(gb, N);
	for (size_t i = 0; i < N; i++) {
		WAIT_FOR(cs_has(b.cs, big[i].id, &len) == 0, 10000);
		free(big[i].data);
	}
	WAIT_FOR(stats(&b).storing == 0, 5000);
	free(small.data);
	NET_END(&a, &b);
	ev_pool_free(pool);
}

T_MAIN(T_CASE(two_members_see_each_other), T_CASE(both_dialing_keeps_one_connection),
       T_CASE(outsiders_are_refused), T_CASE(fetch_copies_a_verified_chunk),
       T_CASE(missing_chunk_fails_at_the_fetch_deadline),
       T_CASE(fetch_fails_when_the_last_member_leaves), T_CASE(many_fetches_stay_within_the_window),
       T_CASE(fetches_survive_a_member_that_leaves),
       T_CASE(member_serving_damaged_chunks_is_banned), T_CASE(app_messages_arrive_byte_exact),
       T_CASE(have_tells_who_holds_what), T_CASE(free_cancels_waiting_fetches_once),
       T_CASE(a_slow_holder_sends_each_chunk_about_once),
       T_CASE(a_chunk_is_relayed_while_it_arrives), T_CASE(a_damaged_chunk_is_not_relayed_whole),
       T_CASE(early_readers_do_not_wait_for_the_store))
