// SPDX-License-Identifier: MIT
/*
 * net/swarm.c - the members of one share: discovery, connections, proof of
 * membership, serving and fetching chunks. Protocol and rules: swarm.h.
 *
 * Structures:
 *   peers      every connection, from the TCP connect (or accept) to its
 *              end; a member once both HELLOs are through
 *   addrs      addresses to keep trying (configured, from the DHT, from
 *              peer exchange), with a back-off per address
 *   fetches    chunks wanted; each is at one member at a time (its request
 *              in that member's window), waiting for a member, or verified
 *              and being written to the store (f->storing)
 *
 * Invariants:
 *  1. A fetch with f->peer set is in f->peer->req[] under f->reqid, and
 *     nowhere else; a peer's inflight counts those entries.
 *  2. No chunk byte reaches a caller or the store before the whole chunk
 *     hashed to its id. Bytes passed on to members before then (relays)
 *     never include the chunk's last RELAY_HOLD bytes, so a member never
 *     has a whole chunk from us that we did not verify.
 *  3. Nothing is sent to, or accepted from, a peer before its HELLO proved
 *     membership (except our own HELLO).
 *  4. A serve relaying a fetch (q->relay) is on that fetch's relays list,
 *     and only while the fetch holds received bytes in f->buf.
 */
#define LOG_SUBSYS "swarm"
#include "net/swarm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunkstore/cdc.h"
#include "common/bigbuf.h"
#include "common/log.h"
#include "common/rbuf.h"
#include "common/tm.h"
#include "net/swarm_msg.h"
#include "net/tp_conn.h"

#define M_HELLO SWARM_M_HELLO
#define M_GET SWARM_M_GET
#define M_DATA SWARM_M_DATA
#define M_NOTFOUND SWARM_M_NOTFOUND
#define M_PEX SWARM_M_PEX
#define M_HAVE SWARM_M_HAVE
#define M_PING SWARM_M_PING
#define M_PONG SWARM_M_PONG
#define DATA_HDR SWARM_DATA_HDR
#define MAX_ADDRS 256
#define MAX_BANNED 64
#define TRIED_MAX 8
#define TICK_MS 500
#define HELLO_TIMEOUT_MS 10000
#define RETRY_ROUND_MS 1000   /* a fetch every member lacked is asked again after this */
#define DHT_FAST_MS 2000      /* member lookups while we have none */
#define DHT_SLOW_MS 30000     /* ... and once we have some */
#define ANNOUNCE_FAST_MS 5000 /* announcing ourselves in the first minute */
#define ANNOUNCE_SLOW_MS 600000
#define HAVE_MAX SWARM_HAVE_LIMIT /* prefixes per HAVE message */
#define HAVE_SET_MAX (1u << 20)	  /* prefixes remembered per member */
#define INVENTORY_MAX (4u << 20)  /* a store larger than this is not listed on connect */
#define HAVE_FLUSH_MS 50
#define ENDGAME_MS 1000
#define PEX_EVERY_MS 30000
#define REDIRECT_QUEUE 4      /* requests waiting in our queues: more asked than we send */
#define RECENT_SENT 256	      /* chunks we started sending lately */
#define PUMP_QUEUE (2u << 20) /* bytes queued per member before we wait, at most */
#define PUMP_MIN (256u << 10) /* ... at least */
#define PUMP_MS 50	      /* ... or what it takes in this long */
#define PIECE_MIN (64u << 10)
#define SERVE_PARALLEL 2 /* chunks we send at once: each arrives sooner, to be passed on */
#define SERVE_STUCK_MS 1000
/* A chunk we pass on while we still receive it keeps this much back until
 * it has been verified here (invariant 2). */
#define RELAY_HOLD (64u << 10)
#define RECENT_MS 8000
#define BUSY_RETRY_MS 200
#define BUSY_SEEN_MS 300	  /* a member that said busy this recently counts as busy */
#define CHOKE_MS 2000		  /* contribution rates and the optimistic peer */
#define UNCHOKE_EVERY 8		  /* the optimistic peer gets one piece in this many */
#define CONTRIB_MIN (64.0 * 1024) /* bytes/s a peer sends us to count as contributing */

enum obj_kind { K_SWARM = 1, K_PEER = 2 };

_Static_assert(SWARM_PEX_MAX <= SWARM_PEX_LIMIT, "PEX over the codec's limit");
_Static_assert(SWARM_PIECE <= SWARM_PIECE_LIMIT, "pieces over the codec's limit");
_Static_assert(SWARM_PIECE + SWARM_DATA_HDR <= TP_FRAME_MAX, "a DATA message must fit a frame");
_Static_assert(CS_CHUNK_MAX_LIMIT <= SWARM_CHUNK_LIMIT, "chunks over the codec's limit");

struct swarm_addr {
	struct dht_addr a;
	uint8_t id[32];
	bool has_id;
	bool configured;   /* --peer: dialled whatever gossip says */
	uint64_t heard_at; /* ms: when it was last heard from, by us or (gossip) others */
	unsigned fails;
	uint64_t next_try;
};

struct waiter {
	struct waiter *next;
	cs_read_fn *cb;
	void *arg;
	bool early; /* SWARM_FETCH_EARLY */
};

struct fetch {
	struct fetch *next, *prev;
	uint8_t id[CS_ID_LEN];
	uint8_t file[CS_ID_LEN]; /* the file it belongs to (where to look), if has_file */
	bool has_file;
	struct waiter *waiters;
	bool urgent;
	struct swarm_peer *peer; /* asked now, or NULL */
	uint32_t reqid;
	uint8_t *buf;
	uint32_t total, got;
	struct cs_id_ctx *hash; /* SHA-256 of buf[0, got), taken as pieces arrive */
	uint64_t started, progress_at, round_at, sent_at;
	uint8_t tried[TRIED_MAX][32];
	unsigned ntried, nasked, nnotfound;
	uint8_t busy_id[32]; /* the member that said busy, at busy_at */
	uint64_t busy_at;
	bool storing;	      /* verified, being written on o.pool (store_work) */
	struct serve *relays; /* passing it on as it arrives (invariant 4) */
};

struct serve {
	struct serve *next;
	bool busy;   /* failed: held, but we are busy and others hold it */
	bool urgent; /* a reader waits for it */
	uint32_t reqid;
	uint8_t id[CS_ID_LEN];
	struct cs_buf *buf; /* NULL while the store reads it */
	uint32_t off;
	bool failed; /* answered NOTFOUND: not stored here, or its relay ended */
	struct swarm_peer *p;
	bool reading;	     /* the store reads it: on_serve_read() comes */
	bool orphan;	     /* dropped while the store read: on_serve_read() frees it */
	struct fetch *relay; /* not stored yet: sent from this fetch as it arrives */
	struct serve *relay_next;
};

/* The chunks a member holds, as the first 8 bytes of their ids (open
 * addressing; 0 marks a free slot, so a prefix of 0 is stored as 1). */
struct idset {
	uint64_t *v;
	size_t cap, n;
};

static uint64_t prefix_of(const uint8_t *id)
{
	uint64_t x = be64_get(id);

	return x ? x : 1;
}

static bool idset_has(const struct idset *set, uint64_t x)
{
	if (!set->cap)
		return false;
	for (size_t i = (size_t)(x * 0x9e3779b97f4a7c15ULL) & (set->cap - 1);;
	     i = (i + 1) & (set->cap - 1)) {
		if (set->v[i] == x)
			return true;
		if (!set->v[i])
			return false;
	}
}

static void idset_add(struct idset *set, uint64_t x)
{
	if (set->n >= HAVE_SET_MAX)
		return; /* unknown chunks are asked for anyway */
	if ((set->n + 1) * 4 > set->cap * 3) {
		size_t cap = set->cap ? set->cap * 2 : 1024;
		uint64_t *v = calloc(cap, sizeof(*v));

		if (!v)
			return;
		for (size_t j = 0; j < set->cap; j++)
			if (set->v[j])
				for (size_t i =
					 (size_t)(set->v[j] * 0x9e3779b97f4a7c15ULL) & (cap - 1);
				     ; i = (i + 1) & (cap - 1))
					if (!v[i]) {
						v[i] = set->v[j];
						break;
					}
		free(set->v);
		set->v = v;
		set->cap = cap;
	}
	for (size_t i = (size_t)(x * 0x9e3779b97f4a7c15ULL) & (set->cap - 1);;
	     i = (i + 1) & (set->cap - 1)) {
		if (set->v[i] == x)
			return;
		if (!set->v[i]) {
			set->v[i] = x;
			set->n++;
			return;
		}
	}
}

struct swarm_peer {
	int kind;
	struct swarm *s;
	struct swarm_peer *next;
	struct tp_conn *c;
	bool outgoing, up, member, writable, closing, announced;
	uint8_t id[32];
	struct dht_addr listen; /* where it accepts connections (from HELLO) */
	uint64_t since;
	struct fetch *req[SWARM_WINDOW];
	unsigned inflight;
	uint32_t next_reqid;
	struct serve *sq, **sq_tail;
	unsigned nsq;
	uint64_t chunks_in, chunks_out;
	struct idset has;
	uint64_t ping_at_us; /* when the unanswered PING went, 0 if none */
	uint64_t srtt_us;
	bool blocked;	   /* its send queue is full: wait for writable() */
	uint64_t heard_at; /* ms: the last frame from it */
	uint64_t pex_at;   /* ms: our last PEX to it */
	uint64_t *have_q;  /* HAVE prefixes waiting for room in the queue */
	size_t have_n, have_cap;
	uint64_t served_seq;   /* pieces_out when it last got one (turns) */
	uint64_t rx_window;    /* chunk bytes it sent us since the last rechoke */
	double rx_rate;	       /* ... bytes per second, smoothed */
	uint64_t busy_seen_at; /* ms: it last answered us NOTFOUND(busy) */
	uint64_t piece_at;     /* ms: we last queued a piece of a chunk for it */
	uint64_t out_base;     /* bytes sent to it at the last rate update */
	double out_rate;       /* ... bytes per second, smoothed */
	size_t unsent_max;     /* what the kernel may hold unsent for it (0: no limit) */
};

struct swarm {
	int kind;
	struct swarm_opts o;
	uint8_t member_key[SWARM_KEY_LEN], tag[SWARM_KEY_LEN], self[32];
	struct tp_conn_opts topts;
	struct tp_listener *lis;
	uint16_t port;
	struct swarm_peer *peers;
	struct swarm_addr addrs[MAX_ADDRS];
	unsigned naddrs;
	uint8_t banned[MAX_BANNED][32];
	unsigned nbanned;
	struct fetch *fetches;
	unsigned nfetches;
	struct ev_timer tick;
	uint64_t start, next_lookup, next_announce;
	bool lookup_running;
	bool fault_corrupt;	/* P2PFS_TEST_CORRUPT_SERVE=1: serve damaged chunks (tests) */
	unsigned nstoring;	/* chunks being written on o.pool */
	uint64_t storing_bytes; /* ... and their bytes */
	bool dying;		/* swarm_free ran: the last store_done frees */
	uint64_t *announce;	/* prefixes to tell every member about */
	size_t nannounce, capannounce;
	struct ev_timer announce_timer;
	/* Rate limits (token buckets, bytes) and tit-for-tat. */
	double up_tokens, down_tokens;
	uint64_t tokens_at; /* us */
	struct ev_timer up_timer, down_timer;
	bool pumping, pump_again;
	uint64_t pieces_out;
	struct swarm_peer *optimistic;
	uint64_t rechoke_at;
	struct {
		uint64_t x;	/* id prefix */
		uint64_t at;	/* ms */
		const void *to; /* the member it went to */
	} sent[RECENT_SENT];
	unsigned sent_next;
	uint64_t rate_at, rate_in_base, rate_out_base; /* for the smoothed rates */
	uint64_t bytes_in;			       /* chunk bytes received in all */
	double rate_in, rate_out;
	/* Content location: files announced (a ring), files looked up lately. */
	uint8_t (*provided)[32];
	size_t nprovided, provided_head;
	struct {
		uint8_t key[32];
		uint64_t at;
	} looked[64];
	unsigned nlooked_next;
	unsigned extra_ok; /* connections allowed beyond max_peers for holders found */
	struct swarm_stats st;
};

static const struct tp_conn_cbs peer_cbs;
static void refill(struct swarm *s);
static void dispatch(struct swarm *s);
static void upload_pump(struct swarm *s);
static bool held_elsewhere(const struct swarm *s, const struct swarm_peer *asker, uint64_t x);

/* ---- keys ---- */

static void hmac(const uint8_t key[static 32], const char *label, const void *a, size_t alen,
		 const void *b, size_t blen, uint8_t out[static 32])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, 32);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label) + 1);
	if (alen)
		crypto_auth_hmacsha256_update(&st, a, alen);
	if (blen)
		crypto_auth_hmacsha256_update(&st, b, blen);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

void swarm_share_keys(const uint8_t read_key[static 32], uint8_t member_key[static SWARM_KEY_LEN],
		      uint8_t share_tag[static SWARM_KEY_LEN])
{
	hmac(read_key, "p2pfs member key 1", NULL, 0, NULL, 0, member_key);
	hmac(read_key, "p2pfs share tag 1", NULL, 0, NULL, 0, share_tag);
}

static void proof(const struct swarm *s, const struct tp_conn *c, const uint8_t *node_id,
		  uint8_t out[static 32])
{
	hmac(s->member_key, "p2pfs member 1", tp_conn_session_id(c), TP_SESSION_ID_LEN, node_id, 32,
	     out);
}

/* ---- helpers ---- */

static bool banned(const struct swarm *s, const uint8_t *id)
{
	for (unsigned i = 0; i < s->nbanned; i++)
		if (!memcmp(s->banned[i], id, 32))
			return true;
	return false;
}

static void ban(struct swarm *s, const uint8_t *id)
{
	if (banned(s, id))
		return;
	if (s->nbanned == MAX_BANNED)
		memmove(s->banned[0], s->banned[1], (MAX_BANNED - 1) * 32u), s->nbanned--;
	memcpy(s->banned[s->nbanned++], id, 32);
}

static struct swarm_peer *member_by_id(struct swarm *s, const uint8_t *id, struct swarm_peer * not )
{
	for (struct swarm_peer *p = s->peers; p; p = p->next)
		if (p != not &&!p->closing && p->up && !memcmp(p->id, id, 32))
			return p;
	return NULL;
}

static int send_msg(struct swarm_peer *p, uint8_t type, const void *body, size_t len)
{
	struct iovec iov[2] = { { &type, 1 }, { (void *)body, len } };

	if (!p->c || p->closing)
		return -ENOTCONN;
	return tp_conn_sendv(p->c, iov, len ? 2 : 1);
}

/* ---- fetches ---- */

static void fetch_unlink(struct swarm *s, struct fetch *f)
{
	if (f->prev)
		f->prev->next = f->next;
	else
		s->fetches = f->next;
	if (f->next)
		f->next->prev = f->prev;
	s->nfetches--;
}

/*
 * Relays of @f end: they go on from @b, the verified chunk, or (NULL) are
 * answered NOTFOUND - not blamed on us, as a chunk with a bad byte would be
 * (the member asks elsewhere).
 */
static void relays_end(struct swarm *s, struct fetch *f, struct cs_buf *b)
{
	if (!f->relays)
		return;
	while (f->relays) {
		struct serve *q = f->relays;

		f->relays = q->relay_next;
		q->relay = NULL;
		q->relay_next = NULL;
		if (b)
			q->buf = cs_buf_ref(b);
		else
			q->failed = true;
	}
	if (!s->dying) /* swarm_free: nothing is sent any more */
		upload_pump(s);
}

/* Drop what arrived of @f's chunk. */
static void fetch_drop_bytes(struct fetch *f)
{
	p2p_bigbuf_put(f->buf, f->total);
	f->buf = NULL;
	f->got = f->total = 0;
	cs_id_drop(f->hash);
	f->hash = NULL;
}

/* Take @f off its member's window (the member may still send: ignored). */
static void fetch_detach(struct fetch *f)
{
	struct swarm_peer *p = f->peer;

	if (!p)
		return;
	if (f->buf)
		relays_end(p->s, f, NULL);
	for (unsigned i = 0; i < SWARM_WINDOW; i++)
		if (p->req[i] == f) {
			p->req[i] = NULL;
			p->inflight--;
			break;
		}
	f->peer = NULL;
	fetch_drop_bytes(f);
}

/* Hand the chunk (@b, or @rc) to every waiter and free @f. */
static void fetch_finish_buf(struct swarm *s, struct fetch *f, int rc, struct cs_buf *b)
{
	struct waiter *w = f->waiters;

	fetch_detach(f);
	relays_end(s, f, b);
	fetch_unlink(s, f);
	while (w) {
		struct waiter *next = w->next;
		struct cs_buf *rb = NULL;
		int r = rc;

		if (r == 0 && b) {
			w->cb(w->arg, 0, b);
		} else if (r == 0) {
			r = cs_read(s->o.cs, f->id, w->cb, w->arg, &rb);
			if (r == 1) {
				w->cb(w->arg, 0, rb);
				cs_buf_unref(rb);
			} else if (r < 0) {
				w->cb(w->arg, r == -ENOENT ? -EIO : r, NULL);
			}
		} else {
			w->cb(w->arg, r, NULL);
		}
		free(w);
		w = next;
	}
	fetch_drop_bytes(f);
	free(f);
}

static void fetch_finish(struct swarm *s, struct fetch *f, int rc)
{
	fetch_finish_buf(s, f, rc, NULL);
}

static bool tried(const struct fetch *f, const uint8_t *id)
{
	for (unsigned i = 0; i < f->ntried; i++)
		if (!memcmp(f->tried[i], id, 32))
			return true;
	return false;
}

static void mark_tried(struct fetch *f, const uint8_t *id)
{
	if (tried(f, id))
		return;
	if (f->ntried == TRIED_MAX)
		f->ntried = 0; /* more members than we remember: start over */
	memcpy(f->tried[f->ntried++], id, 32);
}

static void untry(struct fetch *f, const uint8_t *id)
{
	for (unsigned i = 0; i < f->ntried; i++)
		if (!memcmp(f->tried[i], id, 32)) {
			memmove(f->tried[i], f->tried[i + 1], (size_t)(f->ntried - i - 1) * 32);
			f->ntried--;
			return;
		}
}

static unsigned count_members(const struct swarm *s)
{
	unsigned n = 0;

	for (const struct swarm_peer *p = s->peers; p; p = p->next)
		n += p->member && !p->closing;
	return n;
}

/* Did @p turn one of our requests away as busy lately? Such a member is no
 * place to send others to, and the last one to ask. */
static bool seen_busy(const struct swarm_peer *p, uint64_t now)
{
	return p->busy_seen_at && now - p->busy_seen_at < BUSY_SEEN_MS;
}

/* Ask @p for @f. */
static int fetch_ask(struct swarm *s, struct fetch *f, struct swarm_peer *p)
{
	struct swarm_msg m = { .type = M_GET };
	uint8_t out[1 + 4 + CS_ID_LEN + 1];
	unsigned slot;
	long len;

	for (slot = 0; slot < SWARM_WINDOW && p->req[slot]; slot++)
		;
	if (slot == SWARM_WINDOW)
		return -EBUSY;
	f->reqid = ++p->next_reqid;
	m.u.get.reqid = f->reqid;
	m.u.get.id = f->id;
	m.u.get.flags = f->urgent ? SWARM_GET_URGENT : 0;
	if ((len = swarm_msg_encode(&m, out, sizeof(out))) < 0 || !p->c ||
	    tp_conn_send(p->c, out, (size_t)len) < 0)
		return -EBUSY;
	p->req[slot] = f;
	p->inflight++;
	f->peer = p;
	f->progress_at = f->sent_at = ev_now(s->o.loop);
	f->nasked++;
	mark_tried(f, p->id);
	return 0;
}

/*
 * The member to ask for @f, among those not yet tried: one that said it
 * holds the chunk and has not turned us away as busy lately, then one that
 * holds it, then any; the fewest requests in flight among equals.
 */
static struct swarm_peer *pick(struct swarm *s, struct fetch *f, bool *ret_any_untried)
{
	struct swarm_peer *best = NULL;
	uint64_t x = prefix_of(f->id), now = ev_now(s->o.loop);
	int best_rank = -1;

	*ret_any_untried = false;
	for (struct swarm_peer *p = s->peers; p; p = p->next) {
		int rank;

		if (!p->member || p->closing || tried(f, p->id))
			continue;
		*ret_any_untried = true;
		if (p->inflight >= SWARM_WINDOW)
			continue;
		rank = idset_has(&p->has, x) ? (seen_busy(p, now) ? 1 : 2) : 0;
		if (rank > best_rank || (rank == best_rank && p->inflight < best->inflight)) {
			best = p;
			best_rank = rank;
		}
	}
	return best;
}

/* Give waiting fetches to members with room: those a reader waits for
 * first, then read-ahead and background work in a random order, so members
 * fetching the same file ask a holder for different chunks at once and
 * then trade them. */
static void dispatch(struct swarm *s)
{
	struct fetch *later[256];
	unsigned n = 0;

	if (s->o.max_download) {
		refill(s);
		if (s->down_tokens < 0) {
			uint64_t ms =
			    (uint64_t)(-s->down_tokens * 1000.0 / (double)s->o.max_download) + 1;

			if (!ev_timer_armed(&s->down_timer) &&
			    ev_timer_start(s->o.loop, &s->down_timer, ms) < 0)
				log_warn("cannot arm the download timer");
			return;
		}
	}
	for (struct fetch *f = s->fetches; f; f = f->next) {
		struct swarm_peer *p;
		bool any;

		if (f->peer || f->storing)
			continue;
		if (!f->urgent) {
			if (n < ARRAY_SIZE(later))
				later[n++] = f;
			continue;
		}
		if ((p = pick(s, f, &any)))
			(void)fetch_ask(s, f, p);
	}
	for (unsigned i = n; i > 1; i--) {
		unsigned k = randombytes_uniform(i);
		struct fetch *t = later[i - 1];

		later[i - 1] = later[k];
		later[k] = t;
	}
	for (unsigned i = 0; i < n; i++) {
		struct swarm_peer *p;
		bool any;

		if ((p = pick(s, later[i], &any)))
			(void)fetch_ask(s, later[i], p);
	}
}

static void fetch_fail_log(struct swarm *s, struct fetch *f, int rc)
{
	char h[9];

	p2p_hex8(h, f->id);
	s->st.fetch_failed++;
	if (rc == -ETIMEDOUT)
		log_error("chunk %s: no member supplied it within %u s (%u connected, asked %u "
			  "times, %u said they do not hold it)",
			  h, s->o.fetch_timeout_ms / 1000, count_members(s), f->nasked,
			  f->nnotfound);
	else
		log_error("chunk %s: cannot fetch it: %s", h, strerror(-rc));
}

/* The fetch of chunk @id under way, or NULL. */
static struct fetch *fetch_find(const struct swarm *s, const uint8_t *id)
{
	struct fetch *f;

	for (f = s->fetches; f; f = f->next)
		if (!memcmp(f->id, id, CS_ID_LEN))
			break;
	return f;
}

int swarm_fetch(struct swarm *s, const uint8_t id[static CS_ID_LEN], const uint8_t *file,
		unsigned flags, cs_read_fn *cb, void *arg)
{
	struct fetch *f = fetch_find(s, id);
	struct waiter *w;

	if (!f) {
		if (!count_members(s)) {
			char h[9];

			p2p_hex8(h, id);
			log_info("chunk %s is not stored here and no member is connected", h);
			return -ENOENT;
		}
		if (!(f = calloc(1, sizeof(*f))))
			return -ENOMEM;
		memcpy(f->id, id, CS_ID_LEN);
		if (file) {
			memcpy(f->file, file, CS_ID_LEN);
			f->has_file = true;
		}
		f->started = f->round_at = ev_now(s->o.loop);
		f->next = s->fetches;
		if (s->fetches)
			s->fetches->prev = f;
		s->fetches = f;
		s->nfetches++;
	}
	if (!(w = malloc(sizeof(*w)))) {
		if (!f->waiters)
			fetch_finish(s, f, -ENOMEM);
		return -ENOMEM;
	}
	w->cb = cb;
	w->arg = arg;
	w->early = flags & SWARM_FETCH_EARLY;
	w->next = f->waiters;
	f->waiters = w;
	f->urgent |= (flags & SWARM_FETCH_URGENT) != 0;
	if (!f->peer && !f->storing) {
		struct swarm_peer *p;
		bool any;

		if ((p = pick(s, f, &any)))
			(void)fetch_ask(s, f, p);
	}
	return 0;
}

/* @f's chunk from @from did not hash to its id (its bytes are dropped
 * already): @from is disconnected and not asked again. Loop thread. */
static void fetch_bad(struct swarm *s, struct fetch *f, const uint8_t *from)
{
	struct swarm_peer *p = member_by_id(s, from, NULL);
	char h[9];

	p2p_hex8(h, f->id);
	s->st.bad_chunks++;
	log_error("member %s sent chunk %s with bytes that do not hash to its id: "
		  "disconnecting it and not asking it again",
		  p ? tp_conn_name(p->c) : "(gone)", h);
	ban(s, from);
	if (p)
		p->closing = true; /* aborted by the frame handler or the tick */
	dispatch(s);
}

/* Chunk @b of @f, from @from, verified and stored (@rc >= 0) or not: the
 * readers get it (and @b's reference), and @f goes. Loop thread. */
static void fetch_verified(struct swarm *s, struct fetch *f, const uint8_t *from, int rc,
			   struct cs_buf *b)
{
	struct swarm_peer *p = member_by_id(s, from, NULL);
	char h[9];

	if (rc >= 0)
		swarm_announce(s, f->id, 1);
	if (p) {
		idset_add(&p->has, prefix_of(f->id));
		p->chunks_in++;
	}
	s->st.fetched++;
	s->st.fetched_bytes += cs_buf_len(b);
	if (rc < 0) {
		/* Not stored (the disk is full?): the readers still get it. */
		p2p_hex8(h, f->id);
		log_error("chunk %s arrived but cannot be stored: %s", h, strerror(-rc));
	}
	fetch_finish_buf(s, f, 0, b);
	cs_buf_unref(b);
}

/*
 * A chunk is hashed piece by piece as it arrives (on_data), on the loop,
 * right after the piece was copied into the fetch buffer: the bytes are
 * still in the CPU's cache, which made SHA-256 ~40 % cheaper than hashing
 * the whole chunk afterwards on a worker, where it also waited behind
 * other chunks. A verified chunk goes to the memory cache, to the readers
 * that asked for the bytes only (early waiters, while less than
 * SWARM_STORE_AHEAD bytes are being written), and to the store on o.pool:
 * a read is paced by the network and the hashing, and by the disk only
 * when it falls that far behind. The others get it once stored.
 */
struct store_work {
	struct ev_work w;
	struct swarm *s;
	struct fetch *f;
	uint8_t from[32];
	int rc;
	struct cs_buf *b; /* the verified chunk */
};

static void store_run(struct ev_work *w)
{
	struct store_work *sw = container_of(w, struct store_work, w);

	sw->rc = cs_put(sw->s->o.cs, sw->f->id, cs_buf_data(sw->b), cs_buf_len(sw->b), 0);
}

static void store_done(struct ev_work *w)
{
	struct store_work *sw = container_of(w, struct store_work, w);
	struct swarm *s = sw->s;
	struct fetch *f = sw->f;

	s->storing_bytes -= cs_buf_len(sw->b);
	s->nstoring--;
	f->storing = false;
	if (s->dying) {
		/* swarm_free ran meanwhile and answered the readers. */
		fetch_unlink(s, f);
		cs_buf_unref(sw->b);
		free(f);
	} else {
		fetch_verified(s, f, sw->from, sw->rc, sw->b);
	}
	free(sw);
}

/* A whole chunk arrived from @p: check it, hand it out, store it. */
static void fetch_complete(struct swarm *s, struct swarm_peer *p, struct fetch *f)
{
	struct waiter *early = NULL, **pp = &f->waiters, *w;
	struct store_work *sw;
	uint8_t id[CS_ID_LEN];
	struct cs_buf *b;
	int rc = 0;

	cs_id_end(f->hash, id);
	f->hash = NULL;
	if (sodium_memcmp(id, f->id, CS_ID_LEN)) {
		fetch_detach(f);
		fetch_bad(s, f, p->id);
		return;
	}
	if (!s->o.pool)
		rc = cs_put(s->o.cs, f->id, f->buf, f->total, 0); /* on the loop */
	/* The verified bytes go to the readers as they are (and to the memory
	 * cache), not read back from the disk. */
	b = cs_cache_put(s->o.cs, f->id, f->buf, f->total);
	f->buf = NULL; /* @b's now, or freed */
	f->got = f->total = 0;
	relays_end(s, f, b); /* verified: they may send the last bytes */
	fetch_detach(f);     /* its slot at @p is free for the next request */
	if (!b) {
		fetch_finish(s, f, -ENOMEM);
		return;
	}
	if (!s->o.pool || !(sw = calloc(1, sizeof(*sw)))) {
		fetch_verified(s, f, p->id, s->o.pool ? -ENOMEM : rc, b);
		return;
	}
	if (s->storing_bytes < SWARM_STORE_AHEAD) {
		while ((w = *pp)) {
			if (w->early) {
				*pp = w->next;
				w->next = early;
				early = w;
			} else {
				pp = &w->next;
			}
		}
	}
	sw->s = s;
	sw->f = f;
	sw->b = b;
	memcpy(sw->from, p->id, 32);
	f->storing = true;
	s->nstoring++;
	s->storing_bytes += cs_buf_len(b);
	ev_work_submit(s->o.pool, s->o.loop, &sw->w, store_run, store_done);
	while ((w = early)) {
		early = w->next;
		w->cb(w->arg, 0, b);
		free(w);
	}
}

/* ---- serving ---- */

static void serve_free(struct serve *q)
{
	if (q->relay) {
		struct serve **pp = &q->relay->relays;

		while (*pp != q)
			pp = &(*pp)->relay_next;
		*pp = q->relay_next;
	}
	cs_buf_unref(q->buf);
	free(q);
}

/* Out of its queue: freed now, or by on_serve_read() if the store still reads it. */
static void serve_drop(struct serve *q)
{
	if (q->reading)
		q->orphan = true;
	else
		serve_free(q);
}

/* ---- upload: rate limit and tit-for-tat ---- */

/* Refill the token buckets for the time passed. */
static void refill(struct swarm *s)
{
	uint64_t now = tm_mono_ns() / 1000;
	double dt = s->tokens_at ? (double)(now - s->tokens_at) / 1e6 : 0;

	s->tokens_at = now;
	if (s->o.max_upload) {
		double burst = P2P_MAX((double)s->o.max_upload / 10, (double)(2 * SWARM_PIECE));

		s->up_tokens = P2P_MIN(burst, s->up_tokens + dt * (double)s->o.max_upload);
	}
	if (s->o.max_download) {
		double burst = P2P_MAX((double)s->o.max_download / 10, (double)(2 * SWARM_PIECE));

		s->down_tokens = P2P_MIN(burst, s->down_tokens + dt * (double)s->o.max_download);
	}
}

/* Bytes of @q's chunk that may go now while it is relayed (invariant 2). */
static size_t relay_avail(const struct serve *q)
{
	const struct fetch *f = q->relay;
	uint32_t lim = f->total - P2P_MIN(f->total, RELAY_HOLD);

	lim = P2P_MIN(lim, f->got);
	return lim > q->off ? lim - q->off : 0;
}

static bool head_ready(const struct swarm_peer *p)
{
	return p->sq && (p->sq->failed || p->sq->buf || (p->sq->relay && relay_avail(p->sq)));
}

/*
 * Who gets the next piece: NOTFOUND answers first (they are tiny); then,
 * one piece in UNCHOKE_EVERY, the optimistic peer; then contributors (peers
 * that upload to us) before the rest, and within each, chunks under way,
 * then a chunk a reader waits for, then read-ahead; among equals, in turn.
 * No more than SERVE_PARALLEL chunks are under way at once: a chunk sent
 * alone arrives whole sooner than one of five sharing the uplink, and its
 * last bytes, which a member relaying it holds back until it has checked
 * the chunk, come sooner too.
 */
static struct swarm_peer *next_to_serve(struct swarm *s)
{
	struct swarm_peer *best = NULL;
	int best_rank = -1;
	uint64_t now = ev_now(s->o.loop);
	unsigned started = 0;

	/* A member that takes nothing for a while (gone quiet, or not
	 * reading) does not hold up the others. */
	for (struct swarm_peer *p = s->peers; p; p = p->next)
		started += p->member && !p->closing && p->sq && p->sq->off && head_ready(p) &&
			   now - p->piece_at < SERVE_STUCK_MS;
	for (struct swarm_peer *p = s->peers; p; p = p->next) {
		int rank;

		if (!p->member || p->closing || p->blocked || !head_ready(p))
			continue;
		if (p->sq->failed)
			return p;
		if (started >= SERVE_PARALLEL && !p->sq->off)
			continue;
		if (p == s->optimistic && s->pieces_out % UNCHOKE_EVERY == 0)
			return p;
		rank = (p->rx_rate >= CONTRIB_MIN ? 4 : 0) + (p->sq->off ? 2 : 0) +
		       (p->sq->urgent ? 1 : 0);
		if (rank > best_rank || (rank == best_rank && p->served_seq < best->served_seq)) {
			best = p;
			best_rank = rank;
		}
	}
	return best;
}

static bool busy(const struct swarm *s)
{
	unsigned queued = 0;
	size_t bytes = 0;

	for (const struct swarm_peer *p = s->peers; p; p = p->next) {
		queued += p->nsq;
		if (p->c && p->member)
			bytes += tp_conn_queued(p->c);
	}
	/* Requests waiting, or our send queues not draining (ours, or the
	 * socket's, which can hold a second or more of a slow uplink): the
	 * wire, not the asking, limits what we send. The sockets are asked
	 * (a system call each) only when our own queues do not already say. */
	if (queued >= REDIRECT_QUEUE || bytes >= SWARM_PIECE)
		return true;
	for (const struct swarm_peer *p = s->peers; p && bytes < SWARM_PIECE; p = p->next)
		if (p->c && p->member)
			bytes += tp_conn_wire_queued(p->c);
	return bytes >= SWARM_PIECE;
}

/* Did we start sending this chunk to another member in the last RECENT_MS? */
static bool sent_to_other(const struct swarm *s, const struct swarm_peer *p, uint64_t x,
			  uint64_t now)
{
	for (unsigned i = 0; i < RECENT_SENT; i++)
		if (s->sent[i].x == x && s->sent[i].to != p && now - s->sent[i].at < RECENT_MS)
			return true;
	return false;
}

static void note_sent(struct swarm *s, const struct swarm_peer *p, uint64_t x)
{
	unsigned i = s->sent_next++ % RECENT_SENT;

	s->sent[i].x = x;
	s->sent[i].at = ev_now(s->o.loop);
	s->sent[i].to = p;
}

/*
 * Bytes we keep queued for @p: what it takes in PUMP_MS at the rate it has
 * been taking them, within [PUMP_MIN, PUMP_QUEUE]. A slow link gets a short
 * queue, so what we send next is chosen close to the wire and a small
 * message to it (a refusal, HAVE) does not wait behind seconds of data; a
 * fast one gets room to stay busy between two turns of the loop.
 */
static size_t pump_limit(const struct swarm_peer *p)
{
	double want = p->out_rate * PUMP_MS / 1000.0;

	return (size_t)P2P_MAX((double)PUMP_MIN, P2P_MIN(want, (double)PUMP_QUEUE));
}

/*
 * What the kernel may hold unsent for @p: the same measure as our own queue
 * (a slow link keeps a request or a refusal to it close to the wire), and
 * no limit once the link is fast enough for the limit to cost more CPU
 * (wakeups) than it saves in waiting.
 */
static void set_unsent_max(struct swarm_peer *p)
{
	size_t limit = pump_limit(p), want = limit >= PUMP_QUEUE ? 0 : limit / 2;

	/* 0 is also what a new socket has: no call until it differs. */
	if (want != p->unsent_max) {
		tp_conn_set_unsent_max(p->c, want);
		p->unsent_max = want;
	}
}

/* Take @q out of @p's queue and drop it. */
static void serve_unlink(struct swarm_peer *p, struct serve *q)
{
	struct serve **pp = &p->sq;

	while (*pp != q)
		pp = &(*pp)->next;
	*pp = q->next;
	if (!*pp)
		p->sq_tail = pp;
	p->nsq--;
	serve_drop(q);
}

/* Answer @q, queued at @p and not started, NOTFOUND now (also when it is
 * not at the head: rather than behind what is queued before it), and drop
 * it. On an error (-ENOBUFS: no room) @q stays. */
static int serve_refuse_now(struct swarm_peer *p, struct serve *q)
{
	struct swarm_msg m = { .type = M_NOTFOUND };
	uint8_t out[6];
	long len;
	int rc;

	m.u.notfound.reqid = q->reqid;
	m.u.notfound.reason = q->busy ? SWARM_NF_BUSY : SWARM_NF_MISSING;
	if ((len = swarm_msg_encode(&m, out, sizeof(out))) <= 0)
		return -EINVAL;
	if (!p->c)
		return -ENOTCONN;
	if ((rc = tp_conn_send(p->c, out, (size_t)len)) < 0)
		return rc;
	serve_unlink(p, q);
	return 0;
}

/*
 * We start sending @q's chunk to @p while busy: other members that asked
 * for it and wait in our queues are told now to get it elsewhere (from @p
 * in a moment), so they ask us for something else meanwhile instead of
 * holding a request here that would be turned away when its turn came.
 */
static void redirect_queued(struct swarm *s, const struct swarm_peer *p, const struct serve *q)
{
	for (struct swarm_peer *o = s->peers; o; o = o->next) {
		struct serve *r, *rn;

		if (o == p || !o->member || o->closing || !o->c)
			continue;
		for (r = o->sq; r; r = rn) {
			rn = r->next;
			if (r->off || r->failed || memcmp(r->id, q->id, CS_ID_LEN))
				continue;
			r->failed = r->busy = true;
			s->st.redirects++;
			(void)serve_refuse_now(o, r);
		}
	}
}

/* One step of @p's queue: a NOTFOUND or one DATA piece. 1 sent, 0 nothing
 * (the head moved back), -ENOBUFS full. */
static int serve_one(struct swarm *s, struct swarm_peer *p)
{
	struct serve *q = p->sq;
	uint8_t hdr[DATA_HDR];
	int rc;

	if (!q->failed && q->off == 0 && busy(s)) {
		uint64_t x = prefix_of(q->id);

		if (held_elsewhere(s, p, x) || sent_to_other(s, p, x, ev_now(s->o.loop))) {
			/* Another member has it, or will in a moment: our
			 * upload goes to what only we have. */
			q->failed = q->busy = true;
			s->st.redirects++;
		}
	}
	if (!q->failed && q->off == 0) {
		note_sent(s, p, prefix_of(q->id));
		if (busy(s))
			redirect_queued(s, p, q);
	}
	if (q->failed) {
		rc = serve_refuse_now(p, q);
		return rc < 0 ? rc : 1;
	}
	{
		const uint8_t *data = q->buf ? cs_buf_data(q->buf) : q->relay->buf;
		size_t len = q->buf ? cs_buf_len(q->buf) : q->relay->total;
		/* Pieces of half the queue: it holds about two. */
		size_t piece =
		    P2P_MIN(P2P_MAX(pump_limit(p) / 2, (size_t)PIECE_MIN), (size_t)SWARM_PIECE);
		size_t n = P2P_MIN(piece, len - q->off);
		struct swarm_msg m = { .type = M_DATA };
		struct iovec iov[2];
		uint8_t *bad = NULL;

		m.u.data.reqid = q->reqid;
		m.u.data.total = (uint32_t)len;
		m.u.data.off = q->off;
		if (swarm_msg_encode(&m, hdr, sizeof(hdr)) != DATA_HDR)
			return -EINVAL;
		iov[0] = (struct iovec){ hdr, DATA_HDR };
		if (!q->buf)
			n = P2P_MIN(n, relay_avail(q));
		iov[1] = (struct iovec){ (void *)(data + q->off), n };
		if (s->fault_corrupt && q->off == 0 && (bad = malloc(n))) {
			/* Fault injection for tests: a member that serves damaged bytes. */
			memcpy(bad, iov[1].iov_base, n);
			bad[n / 2] ^= 0x40;
			iov[1].iov_base = bad;
		}
		rc = tp_conn_sendv(p->c, iov, 2);
		free(bad);
		if (rc < 0)
			return rc;
		q->off += (uint32_t)n;
		s->st.served_bytes += n;
		s->up_tokens -= (double)(n + DATA_HDR);
		s->pieces_out++;
		p->served_seq = s->pieces_out;
		p->piece_at = ev_now(s->o.loop);
		if (q->off < len)
			return 1;
		s->st.served++;
		p->chunks_out++;
	}
	serve_unlink(p, q);
	return 1;
}

/* Send queued pieces to whoever should have them, within the upload limit. */
static void upload_pump(struct swarm *s)
{
	if (s->pumping) {
		s->pump_again = true;
		return;
	}
	s->pumping = true;
	do {
		s->pump_again = false;
		refill(s);
		for (;;) {
			struct swarm_peer *p;
			int rc;

			if (s->o.max_upload && s->up_tokens < 0) {
				uint64_t ms =
				    (uint64_t)(-s->up_tokens * 1000.0 / (double)s->o.max_upload) +
				    1;

				if (!ev_timer_armed(&s->up_timer) &&
				    ev_timer_start(s->o.loop, &s->up_timer, ms) < 0)
					log_warn("cannot arm the upload timer");
				break;
			}
			if (!(p = next_to_serve(s)))
				break;
			if (tp_conn_queued(p->c) >= pump_limit(p)) {
				/* Keep little queued per member, so the choice of
				 * what goes next is made close to the wire. */
				p->blocked = true;
				tp_conn_want_writable(p->c, pump_limit(p) / 2);
				continue;
			}
			rc = serve_one(s, p);
			if (rc == -ENOBUFS)
				p->blocked = true; /* writable() unblocks it */
			else if (rc < 0)
				p->closing = true;
		}
	} while (s->pump_again);
	s->pumping = false;
}

static void on_up_timer(struct ev_timer *t)
{
	upload_pump(container_of(t, struct swarm, up_timer));
}

static void on_down_timer(struct ev_timer *t)
{
	dispatch(container_of(t, struct swarm, down_timer));
}

/* Every CHOKE_MS: contribution rates and the optimistic peer. */
static void rechoke(struct swarm *s, uint64_t elapsed_ms)
{
	unsigned n = 0, pick;

	for (struct swarm_peer *p = s->peers; p; p = p->next) {
		double inst = elapsed_ms ? (double)p->rx_window * 1000.0 / (double)elapsed_ms : 0;

		p->rx_rate = 0.5 * p->rx_rate + 0.5 * inst;
		p->rx_window = 0;
		if (p->member && !p->closing && p->rx_rate < CONTRIB_MIN)
			n++;
	}
	s->optimistic = NULL;
	if (!n)
		return;
	pick = randombytes_uniform(n);
	for (struct swarm_peer *p = s->peers; p; p = p->next)
		if (p->member && !p->closing && p->rx_rate < CONTRIB_MIN && pick-- == 0) {
			s->optimistic = p;
			break;
		}
}

static void on_serve_read(void *arg, int rc, struct cs_buf *b)
{
	struct serve *q = arg;

	q->reading = false;
	if (q->orphan) {
		free(q);
		return;
	}
	if (rc < 0)
		q->failed = true;
	else
		q->buf = cs_buf_ref(b);
	upload_pump(q->p->s);
}

/*
 * Redirect: while more is asked of us than we can send (busy()), a chunk
 * another member holds is answered NOTFOUND(busy), so the asker gets it
 * there and our upload goes to chunks only we have: each leaves us about
 * once, and members trade the rest among themselves.
 */
static bool held_elsewhere(const struct swarm *s, const struct swarm_peer *asker, uint64_t x)
{
	uint64_t now = ev_now(s->o.loop);

	for (const struct swarm_peer *p = s->peers; p; p = p->next)
		if (p != asker && p->member && !p->closing && idset_has(&p->has, x) &&
		    !seen_busy(p, now))
			return true;
	return false;
}

/*
 * Relay: a chunk we are receiving (not yet stored) is passed on to @q's
 * asker as it arrives, rather than only once it is whole and verified
 * here: each hop then costs a piece's transfer, not a chunk's. We tell
 * members we have a chunk as soon as its first bytes come (on_data), so
 * they ask us. The last bytes wait for our verification (invariant 2); if
 * it fails, or our source goes, the asker gets NOTFOUND and asks elsewhere.
 */
static bool relay_attach(struct swarm_peer *p, struct serve *q)
{
	struct fetch *f = fetch_find(p->s, q->id);

	if (!f || !f->buf || !f->got || f->peer == p)
		return false;
	q->relay = f;
	q->relay_next = f->relays;
	f->relays = q;
	return true;
}

static int on_get(struct swarm_peer *p, const struct swarm_msg *m)
{
	struct serve *q;
	const uint8_t *id = m->u.get.id;
	uint32_t reqid = m->u.get.reqid;
	struct cs_buf *b = NULL;
	int rc;

	if (p->nsq >= SWARM_SERVE_MAX)
		return -ENOBUFS;
	if (!(q = calloc(1, sizeof(*q))))
		return -ENOMEM;
	q->reqid = reqid;
	q->p = p;
	q->urgent = m->u.get.flags & SWARM_GET_URGENT;
	memcpy(q->id, id, CS_ID_LEN);
	*p->sq_tail = q;
	p->sq_tail = &q->next;
	p->nsq++;
	if (busy(p->s) && (held_elsewhere(p->s, p, prefix_of(id)) ||
			   sent_to_other(p->s, p, prefix_of(id), ev_now(p->s->o.loop)))) {
		q->failed = q->busy = true;
		p->s->st.redirects++;
	} else {
		rc = cs_read(p->s->o.cs, id, on_serve_read, q, &b);
		if (rc == 1)
			q->buf = b;
		else if (rc == -ENOENT && relay_attach(p, q))
			p->s->st.relayed++;
		else if (rc < 0)
			q->failed = true;
		else
			q->reading = true;
		if (q->failed)
			p->s->st.notfound++;
	}
	/* Say so at once rather than behind the chunks queued before it. */
	if (q->failed && p->sq != q && serve_refuse_now(p, q) == 0)
		return 0;
	upload_pump(p->s);
	return 0;
}

/* ---- fetch replies ---- */

static struct fetch *req_find(struct swarm_peer *p, uint32_t reqid)
{
	for (unsigned i = 0; i < SWARM_WINDOW; i++)
		if (p->req[i] && p->req[i]->reqid == reqid)
			return p->req[i];
	return NULL;
}

static int on_data(struct swarm_peer *p, const struct swarm_msg *m)
{
	struct swarm *s = p->s;
	uint32_t total = m->u.data.total, off = m->u.data.off;
	const uint8_t *bytes = m->u.data.bytes;
	size_t n = m->u.data.len;
	struct fetch *f;

	if (!(f = req_find(p, m->u.data.reqid)))
		return 0; /* given up on it */
	/* In order, whole pieces, one length: anything else is a broken peer. */
	if ((f->total && total != f->total) || off != f->got)
		return -EPROTO;
	if (!f->buf) {
		if (!(f->buf = p2p_bigbuf_get(total)))
			return -ENOMEM;
		f->total = total;
		if (!(f->hash = cs_id_begin())) {
			fetch_drop_bytes(f);
			return -ENOMEM;
		}
		swarm_announce(s, f->id, 1); /* it can be relayed from now on */
	}
	memcpy(f->buf + off, bytes, n);
	cs_id_update(f->hash, f->buf + off, n); /* while the bytes are in cache */
	f->got += (uint32_t)n;
	if (f->relays)
		upload_pump(s);
	p->rx_window += n;
	s->bytes_in += n;
	s->down_tokens -= (double)n;
	f->progress_at = ev_now(s->o.loop);
	if (f->got == f->total) {
		fetch_complete(s, p, f);
		dispatch(s); /* its slot is free */
	}
	return 0;
}

static int on_notfound(struct swarm_peer *p, const struct swarm_msg *m)
{
	struct fetch *f;

	if (!(f = req_find(p, m->u.notfound.reqid)))
		return 0;
	if (m->u.notfound.reason == SWARM_NF_BUSY) {
		/* It has it but is busy: others first, and back to it soon. */
		f->busy_at = p->busy_seen_at = ev_now(p->s->o.loop);
		memcpy(f->busy_id, p->id, 32);
	} else {
		f->nnotfound++;
	}
	fetch_detach(f);
	dispatch(p->s);
	return 0;
}

/* ---- peer exchange ---- */

static struct swarm_addr *addr_add(struct swarm *s, const struct dht_addr *a, const uint8_t *id)
{
	struct swarm_addr *x = NULL;

	if (id && (!memcmp(id, s->self, 32) || banned(s, id)))
		return NULL;
	for (unsigned i = 0; i < s->naddrs; i++)
		if (dht_addr_eq(&s->addrs[i].a, a)) {
			x = &s->addrs[i];
			break;
		}
	if (!x) {
		if (s->naddrs == MAX_ADDRS) {
			/* Forget the address that failed most. */
			unsigned worst = 0;

			for (unsigned i = 1; i < s->naddrs; i++)
				if (s->addrs[i].fails > s->addrs[worst].fails)
					worst = i;
			if (!s->addrs[worst].fails)
				return NULL;
			x = &s->addrs[worst];
		} else {
			x = &s->addrs[s->naddrs++];
		}
		memset(x, 0, sizeof(*x));
		x->a = *a;
		x->heard_at = ev_now(s->o.loop); /* news of it just came */
	}
	if (id) {
		memcpy(x->id, id, 32);
		x->has_id = true;
	}
	return x;
}

static void pex_put(uint8_t *e, const uint8_t *id, const struct dht_addr *a, uint64_t age_ms)
{
	uint64_t age = P2P_MIN(age_ms / 1000, 0xffffULL);

	memcpy(e, id, 32);
	e[32] = a->family;
	memcpy(e + 33, a->ip, 16);
	e[49] = (uint8_t)(a->port >> 8);
	e[50] = (uint8_t)a->port;
	e[51] = (uint8_t)(age >> 8);
	e[52] = (uint8_t)age;
}

/* Up to SWARM_PEX_MAX members we know alive: connected ones first. */
static void send_pex(struct swarm *s, struct swarm_peer *to)
{
	uint8_t entries[SWARM_PEX_MAX * SWARM_PEX_ENTRY], out[1 + 1 + sizeof(entries)];
	struct swarm_msg m = { .type = M_PEX };
	uint64_t now = ev_now(s->o.loop);
	unsigned n = 0;
	long len;

	for (struct swarm_peer *p = s->peers; p && n < SWARM_PEX_MAX; p = p->next) {
		if (p == to || !p->member || p->closing || !p->listen.port)
			continue;
		pex_put(entries + (size_t)n++ * SWARM_PEX_ENTRY, p->id, &p->listen,
			now - P2P_MIN(now, p->heard_at));
	}
	for (unsigned i = 0; i < s->naddrs && n < SWARM_PEX_MAX; i++) {
		struct swarm_addr *x = &s->addrs[i];
		bool dup = false;

		if (!x->has_id || now - x->heard_at >= SWARM_LIVENESS_MS ||
		    !memcmp(x->id, to->id, 32))
			continue;
		for (unsigned k = 0; k < n && !dup; k++)
			dup = !memcmp(entries + (size_t)k * SWARM_PEX_ENTRY, x->id, 32);
		if (!dup)
			pex_put(entries + (size_t)n++ * SWARM_PEX_ENTRY, x->id, &x->a,
				now - x->heard_at);
	}
	to->pex_at = now;
	if (!n)
		return;
	m.u.pex.n = n;
	m.u.pex.entries = entries;
	if ((len = swarm_msg_encode(&m, out, sizeof(out))) > 0 && to->c)
		(void)!tp_conn_send(to->c, out, (size_t)len); /* lost: PEX is a hint */
}

static int on_pex(struct swarm_peer *p, const struct swarm_msg *m)
{
	uint64_t now = ev_now(p->s->o.loop);

	for (unsigned i = 0; i < m->u.pex.n; i++) {
		uint8_t id[32];
		struct dht_addr a;
		struct swarm_addr *x;
		uint16_t age;

		if (!swarm_msg_pex_entry(m, i, id, &a, &age))
			continue;
		if ((x = addr_add(p->s, &a, id))) {
			uint64_t heard = now - P2P_MIN(now, (uint64_t)age * 1000);

			x->heard_at = P2P_MAX(x->heard_at, heard);
		}
	}
	return 0;
}

/* ---- who holds what ---- */

static int on_have(struct swarm_peer *p, const struct swarm_msg *m)
{
	for (unsigned i = 0; i < m->u.have.n; i++) {
		uint64_t x = swarm_msg_have_prefix(m, i);

		idset_add(&p->has, x ? x : 1);
	}
	/* A member asked before it had a chunk may be asked again now. */
	for (struct fetch *f = p->s->fetches; f; f = f->next)
		if (!f->peer && tried(f, p->id) && idset_has(&p->has, prefix_of(f->id)))
			untry(f, p->id);
	dispatch(p->s);
	return 0;
}

/* Keep prefixes a full send queue refused, to send on writable(). */
static void have_keep(struct swarm_peer *p, const uint64_t *v, size_t n)
{
	if (p->have_n + n > p->have_cap) {
		size_t cap = p->have_cap ? p->have_cap : 1024;
		uint64_t *nv;

		while (cap < p->have_n + n)
			cap *= 2;
		if (cap > HAVE_SET_MAX || !(nv = realloc(p->have_q, cap * sizeof(*nv))))
			return; /* lost: the member asks us anyway */
		p->have_q = nv;
		p->have_cap = cap;
	}
	memcpy(p->have_q + p->have_n, v, n * sizeof(*v));
	p->have_n += n;
}

static void send_have(struct swarm_peer *p, const uint64_t *v, size_t n)
{
	uint8_t *body;

	if (p->have_n) { /* keep the order: behind what waits already */
		have_keep(p, v, n);
		return;
	}
	if (!(body = malloc(2 + HAVE_MAX * 8)))
		return;
	while (n) {
		size_t k = P2P_MIN(n, (size_t)HAVE_MAX);
		int rc;

		body[0] = (uint8_t)(k >> 8);
		body[1] = (uint8_t)k;
		for (size_t i = 0; i < k; i++)
			be64_put(body + 2 + 8 * i, v[i]);
		if ((rc = send_msg(p, M_HAVE, body, 2 + 8 * k)) < 0) {
			if (rc == -ENOBUFS)
				have_keep(p, v, n);
			break;
		}
		v += k;
		n -= k;
	}
	free(body);
}

/* writable(): what a full queue refused. */
static void have_flush(struct swarm_peer *p)
{
	uint64_t *v = p->have_q;
	size_t n = p->have_n;

	if (!n)
		return;
	p->have_q = NULL;
	p->have_n = p->have_cap = 0;
	send_have(p, v, n);
	free(v);
}

struct inventory {
	uint64_t *v;
	size_t n, cap;
};

static void inventory_add(void *arg, const uint8_t id[static CS_ID_LEN], uint32_t len, bool pinned)
{
	struct inventory *inv = arg;

	(void)len;
	(void)pinned;
	if (inv->n < inv->cap)
		inv->v[inv->n++] = prefix_of(id);
}

/* Tell a new member every chunk we hold (unless the store is huge). */
static void send_inventory(struct swarm *s, struct swarm_peer *p)
{
	struct cs_stats cst;
	struct inventory inv = { 0 };

	cs_store_stats(s->o.cs, &cst);
	if (!cst.chunks || cst.chunks > INVENTORY_MAX)
		return;
	inv.cap = (size_t)cst.chunks + 1024;
	if (!(inv.v = malloc(inv.cap * sizeof(*inv.v))))
		return;
	if (cs_foreach(s->o.cs, inventory_add, &inv) == 0)
		send_have(p, inv.v, inv.n);
	free(inv.v);
}

static void on_announce_timer(struct ev_timer *t)
{
	struct swarm *s = container_of(t, struct swarm, announce_timer);

	for (struct swarm_peer *p = s->peers; p; p = p->next)
		if (p->member && !p->closing)
			send_have(p, s->announce, s->nannounce);
	s->nannounce = 0;
}

void swarm_announce(struct swarm *s, const uint8_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s->nannounce == s->capannounce) {
			size_t cap = s->capannounce ? s->capannounce * 2 : 1024;
			uint64_t *v = realloc(s->announce, cap * sizeof(*v));

			if (!v)
				return;
			s->announce = v;
			s->capannounce = cap;
		}
		s->announce[s->nannounce++] = prefix_of(ids + (size_t)i * CS_ID_LEN);
	}
	if (s->nannounce && !ev_timer_armed(&s->announce_timer) &&
	    ev_timer_start(s->o.loop, &s->announce_timer, HAVE_FLUSH_MS) < 0)
		s->nannounce = 0;
}

unsigned swarm_availability(struct swarm *s, const uint8_t id[static CS_ID_LEN])
{
	uint64_t x = prefix_of(id);
	unsigned n = 0;

	for (struct swarm_peer *p = s->peers; p; p = p->next)
		n += p->member && !p->closing && idset_has(&p->has, x);
	return n;
}

unsigned swarm_holders(struct swarm *s, const uint8_t *ids, size_t n)
{
	unsigned count = 0;

	for (struct swarm_peer *p = s->peers; p; p = p->next) {
		size_t i;

		if (!p->member || p->closing)
			continue;
		for (i = 0; i < n && idset_has(&p->has, prefix_of(ids + i * CS_ID_LEN)); i++)
			;
		count += i == n;
	}
	return count;
}

/* ---- round trips ---- */

static void send_ping(struct swarm_peer *p)
{
	uint8_t body[8];
	uint64_t now = (tm_mono_ns() / 1000);

	be64_put(body, now);
	if (send_msg(p, M_PING, body, 8) == 0)
		p->ping_at_us = now;
}

static int on_ping(struct swarm_peer *p, const struct swarm_msg *m)
{
	uint64_t sent, now = tm_mono_ns() / 1000;

	if (m->type == M_PING)
		return (void)send_msg(p, M_PONG, m->u.ping.nonce, 8), 0;
	sent = be64_get(m->u.ping.nonce);
	if (!p->ping_at_us || sent != p->ping_at_us || now < sent)
		return 0; /* not ours, or an old one */
	p->ping_at_us = 0;
	p->srtt_us = p->srtt_us ? (7 * p->srtt_us + (now - sent)) / 8 : now - sent;
	return 0;
}

/* ---- connections ---- */

static void peer_drop_state(struct swarm_peer *p)
{
	struct swarm *s = p->s;

	for (unsigned i = 0; i < SWARM_WINDOW; i++)
		if (p->req[i])
			fetch_detach(p->req[i]);
	while (p->sq) {
		struct serve *q = p->sq;

		p->sq = q->next;
		serve_drop(q);
	}
	p->sq_tail = &p->sq;
	p->nsq = 0;
	(void)s;
}

static void peer_unlink_free(struct swarm_peer *p)
{
	struct swarm *s = p->s;

	if (p->announced && s->o.peer_down)
		s->o.peer_down(s->o.arg, p);
	if (s->optimistic == p)
		s->optimistic = NULL;

	for (struct swarm_peer **pp = &s->peers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	peer_drop_state(p);
	free(p->has.v);
	free(p->have_q);
	free(p);
	dispatch(s);
}

/* End @p now (from a callback of its own or not). */
static void peer_abort(struct swarm_peer *p, const char *why)
{
	if (why && p->member)
		log_notice("member %s: %s", p->c ? tp_conn_name(p->c) : "?", why);
	if (p->c)
		tp_conn_abort(p->c);
	p->c = NULL;
	peer_unlink_free(p);
}

static void send_hello(struct swarm *s, struct swarm_peer *p)
{
	uint8_t pr[32], out[SWARM_HELLO_LEN];
	struct swarm_msg m = { .type = M_HELLO };
	long len;

	proof(s, p->c, s->self, pr);
	m.u.hello.version = SWARM_HELLO_VERSION;
	m.u.hello.tag = s->tag;
	m.u.hello.proof = pr;
	m.u.hello.port = s->port;
	m.u.hello.flags = s->o.writable ? 1 : 0;
	/* Right after the handshake the queue is empty; should this fail anyway,
	 * the HELLO deadline ends the connection. */
	if ((len = swarm_msg_encode(&m, out, sizeof(out))) > 0)
		(void)!tp_conn_send(p->c, out, (size_t)len);
}

static int on_hello(struct swarm_peer *p, const struct swarm_msg *m)
{
	struct swarm *s = p->s;
	uint8_t want[32], flags = m->u.hello.flags;
	uint16_t port = m->u.hello.port;
	struct swarm_peer *old;
	socklen_t sl;
	const struct sockaddr *sa;

	if (m->u.hello.version != SWARM_HELLO_VERSION)
		return -EPROTONOSUPPORT;
	if (sodium_memcmp(m->u.hello.tag, s->tag, 32))
		return -EACCES; /* another share */
	proof(s, p->c, p->id, want);
	if (sodium_memcmp(m->u.hello.proof, want, 32))
		return -EKEYREJECTED;
	p->member = true;
	p->writable = flags & 1;
	set_unsent_max(p);
	p->since = ev_now(s->o.loop);
	sa = tp_conn_peer_addr(p->c, &sl);
	if (sa) {
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, sa, P2P_MIN((size_t)sl, sizeof(ss)));
		if (dht_addr_from_sockaddr(&ss, &p->listen)) {
			struct swarm_addr *x;

			p->listen.port = port;
			if (port && (x = addr_add(s, &p->listen, p->id)))
				x->heard_at = ev_now(s->o.loop);
		}
	}
	/* Two connections between the same nodes (both dialled): keep the one
	 * dialled by the lower node id; both ends decide alike. */
	if ((old = member_by_id(s, p->id, p)) && old->member) {
		const uint8_t *lo = memcmp(s->self, p->id, 32) < 0 ? s->self : p->id;
		bool p_by_lo = (p->outgoing ? s->self : p->id) == lo;

		if (p_by_lo) {
			peer_abort(old, NULL);
		} else {
			p->member = false;
			tp_conn_close(p->c);
			p->c = NULL;
			peer_unlink_free(p);
			return 1;
		}
	}
	log_info("member %s connected (%s%s)", tp_conn_name(p->c),
		 p->outgoing ? "outgoing" : "incoming", p->writable ? ", writer" : ", reader");
	send_pex(s, p);
	send_ping(p);
	send_inventory(s, p);
	p->announced = true;
	if (s->o.peer_up)
		s->o.peer_up(s->o.arg, p);
	dispatch(s);
	return 0;
}

static void on_up(void *arg, struct tp_conn *c)
{
	struct swarm_peer *p;
	struct swarm *s;

	if (*(int *)arg == K_SWARM) {
		s = arg;
		if (!(p = calloc(1, sizeof(*p)))) {
			tp_conn_abort(c);
			return;
		}
		p->kind = K_PEER;
		p->s = s;
		p->c = c;
		p->sq_tail = &p->sq;
		p->next = s->peers;
		s->peers = p;
		tp_conn_set_arg(c, p);
	} else {
		p = arg;
		s = p->s;
	}
	p->up = true;
	p->since = ev_now(s->o.loop);
	memcpy(p->id, tp_conn_peer_id(c), 32);
	if (banned(s, p->id)) {
		peer_abort(p, NULL);
		return;
	}
	send_hello(s, p);
}

static void on_frame(void *arg, struct tp_conn *c, uint8_t *data, size_t len)
{
	struct swarm_peer *p = arg;
	struct swarm *s = p->s;
	struct swarm_msg m;
	int rc;

	(void)c;
	if (*(int *)arg != K_PEER || p->closing)
		return;
	p->heard_at = ev_now(s->o.loop);
	rc = swarm_msg_decode(data, len, &m);
	if (rc < 0) {
		/* reported below */
	} else if (!p->member && m.type != M_HELLO) {
		rc = -EPROTO;
	} else if (m.type == M_HELLO) {
		rc = p->member ? -EPROTO : on_hello(p, &m);
		if (rc == 1)
			return; /* p is gone: a duplicate */
	} else if (m.type == M_GET) {
		rc = on_get(p, &m);
	} else if (m.type == M_DATA) {
		rc = on_data(p, &m);
	} else if (m.type == M_NOTFOUND) {
		rc = on_notfound(p, &m);
	} else if (m.type == M_PEX) {
		rc = on_pex(p, &m);
	} else if (m.type == M_HAVE) {
		rc = on_have(p, &m);
	} else if (m.type == M_PING || m.type == M_PONG) {
		rc = on_ping(p, &m);
	} else if (m.type >= SWARM_MSG_APP) {
		if (s->o.msg)
			s->o.msg(s->o.arg, p, m.type, m.u.app.body, m.u.app.len);
	} /* other types: from a newer version, ignored */
	if (rc < 0) {
		const char *why = rc == -EKEYREJECTED ? "does not hold this share's key"
				  : rc == -EACCES     ? "is a member of another share"
				  : rc == -ENOBUFS    ? "asked for too many chunks at once"
						      : "sent a malformed message";

		log_warn("peer %s %s (%s): disconnecting", tp_conn_name(p->c), why, strerror(-rc));
		peer_abort(p, NULL);
		return;
	}
	if (p->closing) /* sent a bad chunk */
		peer_abort(p, NULL);
}

static void on_writable(void *arg, struct tp_conn *c)
{
	struct swarm_peer *p = arg;

	(void)c;
	if (*(int *)arg == K_PEER) {
		p->blocked = false;
		have_flush(p);
		upload_pump(p->s);
	}
}

static void on_down(void *arg, struct tp_conn *c, int reason)
{
	struct swarm_peer *p = arg;

	(void)c;
	if (*(int *)arg != K_PEER)
		return; /* an incoming connection that failed its handshake */
	if (p->member)
		log_notice("member %s left: %s", tp_conn_name(c),
			   reason ? strerror(-reason) : "closed");
	else if (p->outgoing)
		log_debug("cannot connect to %s: %s", tp_conn_name(c), strerror(-reason));
	p->c = NULL;
	peer_unlink_free(p);
}

static const struct tp_conn_cbs peer_cbs = {
	.up = on_up,
	.frame = on_frame,
	.writable = on_writable,
	.down = on_down,
};

static bool connected_to(struct swarm *s, const struct swarm_addr *x)
{
	for (struct swarm_peer *p = s->peers; p; p = p->next) {
		if (x->has_id && p->up && !memcmp(p->id, x->id, 32))
			return true;
		if (p->listen.port && dht_addr_eq(&p->listen, &x->a))
			return true;
	}
	return false;
}

static void dial(struct swarm *s, struct swarm_addr *x)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct swarm_peer *p;
	uint64_t now = ev_now(s->o.loop);
	int rc;

	x->next_try = now + P2P_MIN(300000ULL, 2000ULL << P2P_MIN(x->fails, 8u));
	x->fails++; /* until it proves a member */
	if (!(p = calloc(1, sizeof(*p))))
		return;
	p->kind = K_PEER;
	p->s = s;
	p->outgoing = true;
	p->sq_tail = &p->sq;
	p->listen = x->a;
	p->since = now;
	dht_addr_to_sockaddr(&x->a, &ss, &sl);
	rc = tp_connect(s->o.loop, (struct sockaddr *)&ss, sl, x->has_id ? x->id : NULL, &s->topts,
			&peer_cbs, p, &p->c);
	if (rc < 0) {
		free(p);
		return;
	}
	p->next = s->peers;
	s->peers = p;
}

static void maintain_connections(struct swarm *s)
{
	uint64_t now = ev_now(s->o.loop);
	unsigned n = 0;

	for (struct swarm_peer *p = s->peers; p; p = p->next)
		n++;
	for (unsigned i = 0; i < s->naddrs && n < s->o.max_peers + s->extra_ok; i++) {
		struct swarm_addr *x = &s->addrs[i];

		if (x->next_try > now || connected_to(s, x) || (x->has_id && banned(s, x->id)))
			continue;
		if (!x->configured && now - x->heard_at >= SWARM_LIVENESS_MS)
			continue; /* nobody has heard of it for long: failed */
		dial(s, x);
		n++;
	}
	/* A member that answers earns its address a clean record. */
	for (struct swarm_peer *p = s->peers; p; p = p->next)
		if (p->member && p->outgoing)
			for (unsigned i = 0; i < s->naddrs; i++)
				if (dht_addr_eq(&s->addrs[i].a, &p->listen))
					s->addrs[i].fails = 0;
}

/* ---- the DHT: announce ourselves, find the others ---- */

static void on_members_found(void *arg, const struct dht_result *r)
{
	struct swarm *s = arg;

	s->lookup_running = false;
	for (size_t i = 0; i < r->nproviders; i++) {
		struct swarm_addr *x = addr_add(s, &r->providers[i].addr, r->providers[i].id);

		if (x) /* its record is alive in the DHT */
			x->heard_at = P2P_MAX(x->heard_at, ev_now(s->o.loop));
	}
	maintain_connections(s);
}

static void dht_work(struct swarm *s)
{
	struct dht *d;
	uint64_t now = ev_now(s->o.loop);
	bool any = count_members(s) > 0;

	if (!s->o.dht)
		return;
	d = dht_node_dht(s->o.dht);
	if (now >= s->next_announce) {
		if (dht_add_provider(d, dht_node_now(s->o.dht), s->tag, s->port, NULL, NULL) == 0)
			s->st.dht_announces++;
		s->next_announce =
		    now + (now - s->start < 60000 ? ANNOUNCE_FAST_MS : ANNOUNCE_SLOW_MS);
		dht_node_kick(s->o.dht);
	}
	if (!s->lookup_running && now >= s->next_lookup) {
		if (dht_get_providers(d, dht_node_now(s->o.dht), s->tag, on_members_found, s) ==
		    0) {
			s->lookup_running = true;
			s->st.dht_lookups++;
		}
		s->next_lookup = now + (any ? DHT_SLOW_MS : DHT_FAST_MS);
		dht_node_kick(s->o.dht);
	}
}

/* ---- content location ---- */

static void content_key(const struct swarm *s, const uint8_t file[static CS_ID_LEN],
			uint8_t key[static DHT_ID_LEN])
{
	hmac(s->member_key, "p2pfs content 1", file, CS_ID_LEN, NULL, 0, key);
}

void swarm_provide(struct swarm *s, const uint8_t file[static CS_ID_LEN])
{
	uint8_t key[DHT_ID_LEN];

	if (!s->o.dht)
		return;
	for (size_t i = 0; i < s->nprovided; i++)
		if (!memcmp(s->provided[i], file, CS_ID_LEN))
			return;
	if (!s->provided && !(s->provided = malloc(SWARM_PROVIDE_MAX * sizeof(*s->provided))))
		return;
	if (s->nprovided == SWARM_PROVIDE_MAX) {
		/* Forget the oldest: its record expires in the DHT by itself. */
		content_key(s, s->provided[s->provided_head], key);
		dht_remove_provider(dht_node_dht(s->o.dht), key);
		memcpy(s->provided[s->provided_head], file, CS_ID_LEN);
		s->provided_head = (s->provided_head + 1) % SWARM_PROVIDE_MAX;
	} else {
		memcpy(s->provided[s->nprovided++], file, CS_ID_LEN);
	}
	content_key(s, file, key);
	if (dht_add_provider(dht_node_dht(s->o.dht), dht_node_now(s->o.dht), key, s->port, NULL,
			     NULL) == 0) {
		s->st.dht_announces++;
		dht_node_kick(s->o.dht);
	}
}

static void on_holders_found(void *arg, const struct dht_result *r)
{
	struct swarm *s = arg;

	for (size_t i = 0; i < r->nproviders; i++) {
		struct dht_addr a = r->providers[i].addr;

		if (!memcmp(r->providers[i].id, s->self, 32))
			continue;
		addr_add(s, &a, r->providers[i].id);
		s->extra_ok = SWARM_EXTRA_PEERS;
		/* Try it now, whatever its back-off said. */
		for (unsigned k = 0; k < s->naddrs; k++)
			if (dht_addr_eq(&s->addrs[k].a, &a))
				s->addrs[k].next_try = 0;
	}
	maintain_connections(s);
}

static void find_holders(struct swarm *s, const uint8_t file[static CS_ID_LEN])
{
	uint64_t now = ev_now(s->o.loop);
	uint8_t key[DHT_ID_LEN];
	unsigned i;

	if (!s->o.dht)
		return;
	content_key(s, file, key);
	for (i = 0; i < ARRAY_SIZE(s->looked); i++)
		if (!memcmp(s->looked[i].key, key, DHT_ID_LEN) && s->looked[i].at &&
		    now - s->looked[i].at < 30000)
			return;
	i = s->nlooked_next++ % ARRAY_SIZE(s->looked);
	memcpy(s->looked[i].key, key, DHT_ID_LEN);
	s->looked[i].at = now;
	if (dht_get_providers(dht_node_dht(s->o.dht), dht_node_now(s->o.dht), key, on_holders_found,
			      s) == 0) {
		s->st.dht_lookups++;
		dht_node_kick(s->o.dht);
	}
}

/*
 * Endgame: with nothing left to hand out, a request that is slow (in flight
 * over ENDGAME_MS and not half done) moves to a member that holds the chunk
 * and has nothing in flight, so the last chunks of a transfer do not wait
 * on the slowest member.
 */
static bool endgame_move(struct swarm *s, struct fetch *f, uint64_t now)
{
	struct swarm_peer *idle = NULL;
	uint64_t x = prefix_of(f->id);

	if (now - f->sent_at < ENDGAME_MS || (f->total && f->got >= f->total / 2))
		return false;
	for (struct fetch *g = s->fetches; g; g = g->next)
		if (!g->peer && !g->storing)
			return false; /* not the endgame: work is waiting */
	for (struct swarm_peer *p = s->peers; p && !idle; p = p->next)
		if (p != f->peer && p->member && !p->closing && !p->inflight &&
		    idset_has(&p->has, x) && !tried(f, p->id))
			idle = p;
	if (!idle)
		return false;
	s->st.endgame++;
	fetch_detach(f);
	return fetch_ask(s, f, idle) == 0;
}

/* ---- the tick: deadlines, stalls, retries, discovery ---- */

static void on_tick(struct ev_timer *t)
{
	struct swarm *s = container_of(t, struct swarm, tick);
	uint64_t now = ev_now(s->o.loop);
	struct swarm_peer *p, *pn;
	struct fetch *f, *fn;

	for (p = s->peers; p; p = pn) {
		pn = p->next;
		if (p->up && !p->member && now - p->since > HELLO_TIMEOUT_MS)
			peer_abort(p, NULL);
		else if (p->closing && p->c)
			peer_abort(p, NULL); /* why was logged when it was marked */
		else if (p->member && !p->closing && now - p->pex_at >= PEX_EVERY_MS)
			send_pex(s, p);
		else if (p->member && !p->closing &&
			 (!p->ping_at_us || (tm_mono_ns() / 1000) - p->ping_at_us > 5000000ULL) &&
			 (now / TICK_MS) % 10 == 0)
			send_ping(p);
	}
	for (f = s->fetches; f; f = fn) {
		fn = f->next;
		if (f->storing)
			continue; /* here already: the store's worker writes it */
		if (now - f->started >= s->o.fetch_timeout_ms || !count_members(s)) {
			int rc = count_members(s) ? -ETIMEDOUT : -EIO;

			if (rc == -EIO) {
				char h[9];

				p2p_hex8(h, f->id);
				log_error("chunk %s: every member holding it has gone", h);
				s->st.fetch_failed++;
			} else {
				fetch_fail_log(s, f, rc);
			}
			fetch_finish(s, f, rc);
			continue;
		}
		if (f->busy_at && now - f->busy_at >= BUSY_RETRY_MS) {
			untry(f, f->busy_id); /* the busy member may have time now */
			f->busy_at = 0;
		}
		if (f->peer && endgame_move(s, f, now))
			continue;
		if (f->peer && now - f->progress_at >= s->o.stall_ms) {
			char h[9];

			p2p_hex8(h, f->id);
			log_warn("member %s stalled on chunk %s for %u ms: asking another",
				 tp_conn_name(f->peer->c), h, s->o.stall_ms);
			s->st.stalls++;
			fetch_detach(f);
		}
		if (!f->peer) {
			bool any;

			if (!pick(s, f, &any) && !any && now - f->round_at >= RETRY_ROUND_MS) {
				/* Every member was asked: look for the file's holders
				 * in the DHT, and ask again, one may have it now. */
				if (f->has_file)
					find_holders(s, f->file);
				f->ntried = 0;
				f->round_at = now;
			}
		}
	}
	if (now - s->rate_at >= 1000) {
		double dt = (double)(now - s->rate_at) / 1000.0;

		s->rate_in = 0.6 * s->rate_in + 0.4 * (double)(s->bytes_in - s->rate_in_base) / dt;
		s->rate_out =
		    0.6 * s->rate_out + 0.4 * (double)(s->st.served_bytes - s->rate_out_base) / dt;
		s->rate_in_base = s->bytes_in;
		for (p = s->peers; p; p = p->next) {
			struct tp_stats ts;

			if (!p->c || !p->member)
				continue;
			tp_conn_stats(p->c, &ts);
			p->out_rate =
			    0.5 * p->out_rate + 0.5 * (double)(ts.bytes_out - p->out_base) / dt;
			p->out_base = ts.bytes_out;
			set_unsent_max(p);
		}
		s->rate_out_base = s->st.served_bytes;
		s->rate_at = now;
		p2p_bigbuf_trim(); /* chunk buffers nobody took lately */
	}
	if (now - s->rechoke_at >= CHOKE_MS) {
		rechoke(s, now - s->rechoke_at);
		s->rechoke_at = now;
	}
	dispatch(s);
	upload_pump(s);
	dht_work(s);
	maintain_connections(s);
	if (ev_timer_start(s->o.loop, &s->tick, TICK_MS) < 0)
		log_error("cannot re-arm the swarm timer");
}

/* ---- set-up ---- */

int swarm_new(const struct swarm_opts *opts, struct swarm **ret_swarm)
{
	struct swarm *s;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct dht_addr a;
	int rc;

	if (!opts->loop || !opts->ident || !opts->cs || !opts->member_key || !opts->share_tag)
		return -EINVAL;
	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	s->kind = K_SWARM;
	s->o = *opts;
	if (!s->o.fetch_timeout_ms)
		s->o.fetch_timeout_ms = 30000;
	if (!s->o.stall_ms)
		s->o.stall_ms = 5000;
	if (!s->o.max_peers)
		s->o.max_peers = 32;
	memcpy(s->member_key, opts->member_key, SWARM_KEY_LEN);
	memcpy(s->tag, opts->share_tag, SWARM_KEY_LEN);
	memcpy(s->self, peer_ident_id(opts->ident), 32);
	{
		const char *fc = getenv("P2PFS_TEST_CORRUPT_SERVE");

		s->fault_corrupt = fc && !strcmp(fc, "1");
		if (s->fault_corrupt)
			log_warn("P2PFS_TEST_CORRUPT_SERVE=1: serving damaged chunks on purpose");
	}
	s->topts.ident = opts->ident;
	s->topts.keepalive_ms = 3000;
	s->topts.idle_ms = 15000;
	s->topts.sendq_max = 8u << 20;
	if (opts->listen) {
		if ((rc = dht_addr_parse(opts->listen, &a)) < 0)
			goto fail;
	} else {
		memset(&a, 0, sizeof(a));
		a.family = 4;
		a.port = opts->dht ? dht_node_port(opts->dht) : 0;
	}
	dht_addr_to_sockaddr(&a, &ss, &sl);
	rc = tp_listen(opts->loop, (struct sockaddr *)&ss, sl, &s->topts, &peer_cbs, s, &s->lis);
	if (rc == -EADDRINUSE && !opts->listen) {
		a.port = 0;
		dht_addr_to_sockaddr(&a, &ss, &sl);
		rc = tp_listen(opts->loop, (struct sockaddr *)&ss, sl, &s->topts, &peer_cbs, s,
			       &s->lis);
	}
	if (rc < 0)
		goto fail;
	s->port = tp_listener_port(s->lis);
	s->start = ev_now(opts->loop);
	s->next_announce = s->next_lookup = s->start + 200;
	ev_timer_init(&s->tick, on_tick);
	ev_timer_init(&s->announce_timer, on_announce_timer);
	ev_timer_init(&s->up_timer, on_up_timer);
	ev_timer_init(&s->down_timer, on_down_timer);
	s->rechoke_at = ev_now(opts->loop);
	if ((rc = ev_timer_start(opts->loop, &s->tick, 200)) < 0)
		goto fail;
	*ret_swarm = s;
	return 0;
fail:
	tp_listener_free(s->lis);
	free(s);
	return rc;
}

void swarm_free(struct swarm *s)
{
	if (!s)
		return;
	s->dying = true;
	ev_timer_stop(s->o.loop, &s->tick);
	ev_timer_stop(s->o.loop, &s->announce_timer);
	ev_timer_stop(s->o.loop, &s->up_timer);
	ev_timer_stop(s->o.loop, &s->down_timer);
	tp_listener_free(s->lis);
	for (struct fetch *f = s->fetches, *fn; f; f = fn) {
		fn = f->next;
		if (!f->storing) {
			fetch_finish(s, f, -ECANCELED);
			continue;
		}
		/* The store's worker holds it: answer its readers now, free it later. */
		while (f->waiters) {
			struct waiter *w = f->waiters;

			f->waiters = w->next;
			w->cb(w->arg, -ECANCELED, NULL);
			free(w);
		}
	}
	while (s->peers) {
		struct swarm_peer *p = s->peers;

		s->peers = p->next;
		if (p->c)
			tp_conn_close(p->c);
		peer_drop_state(p);
		free(p->has.v);
		free(p->have_q);
		free(p);
	}
	/* Chunks still on the workers come back through the loop. */
	for (int i = 0; s->nstoring && i < 1000; i++)
		if (ev_loop_run_once(s->o.loop, 10) < 0)
			break;
	if (s->nstoring) {
		log_error("%u chunks being stored did not come back from the worker", s->nstoring);
		return; /* kept: their completions still name it */
	}
	free(s->announce);
	free(s->provided);
	sodium_memzero(s->member_key, sizeof(s->member_key));
	free(s);
}

uint16_t swarm_port(const struct swarm *s)
{
	return s->port;
}

int swarm_add_addr(struct swarm *s, const char *hostport)
{
	struct dht_addr a[8];
	size_t n;
	int rc;

	if ((rc = dht_addr_resolve(hostport, a, ARRAY_SIZE(a), &n)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct swarm_addr *x = addr_add(s, &a[i], NULL);

		if (x)
			x->configured = true;
	}
	return 0;
}

/* ---- messages of the caller's ---- */

int swarm_send(struct swarm_peer *p, uint8_t type, const void *body, size_t len)
{
	if (!p->member || p->closing)
		return -ENOTCONN;
	if (type < SWARM_MSG_APP)
		return -EINVAL;
	if (len + 1 > TP_FRAME_MAX)
		return -EMSGSIZE;
	return send_msg(p, type, body, len);
}

size_t swarm_queued(const struct swarm_peer *p)
{
	return p->c ? tp_conn_queued(p->c) : 0;
}

void swarm_broadcast(struct swarm *s, struct swarm_peer *except, uint8_t type, const void *body,
		     size_t len)
{
	for (struct swarm_peer *p = s->peers; p; p = p->next)
		if (p != except && p->member && !p->closing) {
			int rc = swarm_send(p, type, body, len);

			if (rc < 0)
				log_debug("message to %s dropped: %s", tp_conn_name(p->c),
					  strerror(-rc));
		}
}

const uint8_t *swarm_peer_id(const struct swarm_peer *p)
{
	return p->id;
}

bool swarm_peer_writable(const struct swarm_peer *p)
{
	return p->writable;
}

const char *swarm_peer_name(const struct swarm_peer *p)
{
	return p->c ? tp_conn_name(p->c) : "?";
}

size_t swarm_peers(struct swarm *s, struct swarm_peer_info *out, size_t max)
{
	size_t n = 0;
	uint64_t now = ev_now(s->o.loop);

	for (struct swarm_peer *p = s->peers; p; p = p->next) {
		struct tp_stats ts;

		if (!p->member || p->closing)
			continue;
		if (n < max) {
			struct swarm_peer_info *i = &out[n];

			memset(i, 0, sizeof(*i));
			memcpy(i->id, p->id, 32);
			snprintf(i->addr, sizeof(i->addr), "%s", tp_conn_name(p->c));
			i->outgoing = p->outgoing;
			i->writable = p->writable;
			tp_conn_stats(p->c, &ts);
			i->bytes_in = ts.bytes_in;
			i->bytes_out = ts.bytes_out;
			i->chunks_in = p->chunks_in;
			i->chunks_out = p->chunks_out;
			i->inflight = p->inflight;
			i->queued = p->nsq;
			i->connected_ms = now - p->since;
			i->rtt_us = p->srtt_us;
		}
		n++;
	}
	return n;
}

void swarm_get_stats(struct swarm *s, struct swarm_stats *ret)
{
	*ret = s->st;
	ret->members = 0;
	ret->connecting = 0;
	for (struct swarm_peer *p = s->peers; p; p = p->next) {
		if (p->member && !p->closing)
			ret->members++;
		else
			ret->connecting++;
	}
	ret->known_addrs = s->naddrs;
	ret->fetches = s->nfetches;
	ret->storing = s->storing_bytes;
	ret->rate_in = s->rate_in;
	ret->rate_out = s->rate_out;
}
