// SPDX-License-Identifier: MIT
/*
 * daemon/repl.c - the namespace among the members of a share: records
 * pushed as they are committed, and anti-entropy that sends only what
 * differs, so a member back from a week away catches up.
 *
 * Messages (net/swarm.h types of the caller's):
 *   NS_DIGEST   flags (1: bit 0 = a reply, do not answer), then
 *               REPL_BUCKETS x u64: per bucket, the sum of XXH3-64 of the
 *               committed head records whose XXH3-64 falls in it
 *   NS_RECORDS  records, each u32 length + the signed record
 *
 * A member that gets a digest compares it with its own and sends its
 * records of every bucket that differs; a digest that is not a reply is
 * answered with ours, so one exchange syncs both ways. Records merge by
 * ns_apply (signatures checked against the share key: a member without the
 * write key cannot make one); the merge is a CRDT, so order and repeats do
 * not matter. Committed records, ours and applied ones, go to every member
 * at once; anti-entropy runs on connect and every REPL_SYNC_MS.
 */
#define LOG_SUBSYS "repl"
#include "daemon/repl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/rbuf.h"

#define REPL_BUCKETS 256
#define REPL_SYNC_MS 30000
#define REPL_FRAME 262144	       /* bytes of records per message */
#define REPL_QUEUE_LOW (2u << 20)      /* keep a member's send queue under this */
#define REPL_OUTBOX_MAX (256ULL << 20) /* records waiting for one member */
#define REPL_PUMP_MS 50

struct repl_peer {
	struct repl_peer *next;
	struct swarm_peer *p;
	uint8_t *out; /* records to send: u32 length + record, ... */
	size_t len, off, cap;
	uint64_t next_sync;
	unsigned rejected;
};

struct repl {
	struct ev_loop *loop;
	struct fs *fs;
	struct ns *ns;
	struct repl_peer *peers;
	struct ev_timer timer;
	uint8_t *push; /* committed records to broadcast */
	size_t push_len, push_cap;
	struct repl_stats st;
};

/* ---- digests ---- */

struct digest {
	uint64_t sum[REPL_BUCKETS];
	uint64_t count;
};

static int digest_add(void *arg, const uint8_t *rec, size_t len)
{
	struct digest *dg = arg;
	uint64_t h = XXH3_64bits(rec, len);

	dg->sum[h >> 56] += h;
	dg->count++;
	return 0;
}

static int digest_make(struct repl *r, struct digest *dg)
{
	memset(dg, 0, sizeof(*dg));
	return ns_foreach_record(r->ns, digest_add, dg);
}

/* ---- outboxes ---- */

static int outbox_add(struct repl_peer *rp, const uint8_t *rec, size_t len)
{
	if (rp->len + 4 + len > rp->cap) {
		size_t cap = rp->cap ? rp->cap * 2 : 65536;
		uint8_t *n;

		while (cap < rp->len + 4 + len)
			cap *= 2;
		if (cap > REPL_OUTBOX_MAX)
			return -ENOBUFS;
		if (!(n = realloc(rp->out, cap)))
			return -ENOMEM;
		rp->out = n;
		rp->cap = cap;
	}
	be32_put(rp->out + rp->len, (uint32_t)len);
	memcpy(rp->out + rp->len + 4, rec, len);
	rp->len += 4 + len;
	return 0;
}

/* Send what the member's queue takes, in messages cut at record boundaries. */
static void outbox_pump(struct repl *r, struct repl_peer *rp)
{
	while (rp->off < rp->len && swarm_queued(rp->p) < REPL_QUEUE_LOW) {
		size_t end = rp->off;
		int rc;

		while (end < rp->len) {
			size_t l = 4 + be32_get(rp->out + end);

			if (end > rp->off && end + l - rp->off > REPL_FRAME)
				break;
			end += l;
		}
		rc = swarm_send(rp->p, REPL_MSG_RECORDS, rp->out + rp->off, end - rp->off);
		if (rc == -ENOBUFS)
			return;
		if (rc < 0) {
			log_warn("records to %s dropped: %s", swarm_peer_name(rp->p),
				 strerror(-rc));
			rp->off = rp->len;
			break;
		}
		r->st.msgs_out++;
		rp->off = end;
	}
	if (rp->off == rp->len) {
		rp->off = rp->len = 0;
		if (rp->cap > (1u << 20)) {
			free(rp->out);
			rp->out = NULL;
			rp->cap = 0;
		}
	}
}

struct select_ctx {
	struct repl_peer *rp;
	const struct digest *mine, *theirs;
	int rc;
	uint64_t n;
};

static int select_rec(void *arg, const uint8_t *rec, size_t len)
{
	struct select_ctx *c = arg;
	unsigned b = (unsigned)(XXH3_64bits(rec, len) >> 56);

	if (c->mine->sum[b] == c->theirs->sum[b])
		return 0;
	if ((c->rc = outbox_add(c->rp, rec, len)) < 0)
		return 1;
	c->n++;
	return 0;
}

static void send_digest(struct repl *r, struct repl_peer *rp, const struct digest *dg, bool reply)
{
	uint8_t body[1 + REPL_BUCKETS * 8];

	body[0] = reply ? 1 : 0;
	for (unsigned i = 0; i < REPL_BUCKETS; i++)
		be64_put(body + 1 + 8 * i, dg->sum[i]);
	if (swarm_send(rp->p, REPL_MSG_DIGEST, body, sizeof(body)) == 0)
		r->st.digests_out++;
	rp->next_sync = ev_now(r->loop) + REPL_SYNC_MS;
}

static void on_digest(struct repl *r, struct repl_peer *rp, const uint8_t *body, size_t len)
{
	struct digest mine, theirs;
	struct select_ctx c = { 0 };
	unsigned differ = 0;

	if (len != 1 + REPL_BUCKETS * 8) {
		log_warn("member %s sent a malformed namespace digest", swarm_peer_name(rp->p));
		return;
	}
	r->st.digests_in++;
	memset(&theirs, 0, sizeof(theirs));
	for (unsigned i = 0; i < REPL_BUCKETS; i++)
		theirs.sum[i] = be64_get(body + 1 + 8 * i);
	if (digest_make(r, &mine) < 0)
		return;
	for (unsigned i = 0; i < REPL_BUCKETS; i++)
		differ += mine.sum[i] != theirs.sum[i];
	if (!differ)
		return;
	c.rp = rp;
	c.mine = &mine;
	c.theirs = &theirs;
	if (ns_foreach_record(r->ns, select_rec, &c) < 0 || c.rc < 0)
		log_warn("anti-entropy with %s: %s; the next round sends the rest",
			 swarm_peer_name(rp->p), strerror(c.rc ? -c.rc : EIO));
	log_info("anti-entropy with %s: %u of %u buckets differ, sending %llu records",
		 swarm_peer_name(rp->p), differ, REPL_BUCKETS, (unsigned long long)c.n);
	r->st.syncs++;
	if (!(body[0] & 1))
		send_digest(r, rp, &mine, true);
	outbox_pump(r, rp);
}

static void on_records(struct repl *r, struct repl_peer *rp, const uint8_t *body, size_t len)
{
	struct rbuf b;
	unsigned bad = 0;

	r->st.msgs_in++;
	rbuf_init(&b, body, len);
	while (rbuf_left(&b)) {
		const uint8_t *rec;
		uint32_t l;
		int rc;

		if (rbuf_u32(&b, &l) < 0 || rbuf_ref(&b, l, &rec) < 0) {
			bad++;
			break;
		}
		r->st.records_in++;
		rc = fs_apply_record(r->fs, rec, l);
		if (rc > 0)
			r->st.records_applied++;
		else if (rc < 0) {
			r->st.records_rejected++;
			bad++;
		}
	}
	if (bad && rp->rejected++ < 5)
		log_warn("member %s sent %u namespace records that were refused (bad signature "
			 "or malformed)",
			 swarm_peer_name(rp->p), bad);
}

/* ---- swarm callbacks ---- */

static struct repl_peer *find(struct repl *r, struct swarm_peer *p)
{
	for (struct repl_peer *rp = r->peers; rp; rp = rp->next)
		if (rp->p == p)
			return rp;
	return NULL;
}

void repl_peer_up(void *arg, struct swarm_peer *p)
{
	struct repl *r = arg;
	struct repl_peer *rp = calloc(1, sizeof(*rp));
	struct digest dg;

	if (!rp)
		return;
	rp->p = p;
	rp->next = r->peers;
	r->peers = rp;
	if (digest_make(r, &dg) == 0)
		send_digest(r, rp, &dg, false);
}

void repl_peer_down(void *arg, struct swarm_peer *p)
{
	struct repl *r = arg;

	for (struct repl_peer **pp = &r->peers; *pp; pp = &(*pp)->next)
		if ((*pp)->p == p) {
			struct repl_peer *rp = *pp;

			*pp = rp->next;
			free(rp->out);
			free(rp);
			return;
		}
}

void repl_msg(void *arg, struct swarm_peer *p, uint8_t type, const uint8_t *body, size_t len)
{
	struct repl *r = arg;
	struct repl_peer *rp = find(r, p);

	if (!rp)
		return;
	if (type == REPL_MSG_DIGEST)
		on_digest(r, rp, body, len);
	else if (type == REPL_MSG_RECORDS)
		on_records(r, rp, body, len);
}

void repl_committed(void *arg, const uint8_t *rec, size_t len)
{
	struct repl *r = arg;

	if (!r->peers)
		return;
	if (r->push_len + 4 + len > r->push_cap) {
		size_t cap = r->push_cap ? r->push_cap * 2 : 65536;
		uint8_t *n;

		while (cap < r->push_len + 4 + len)
			cap *= 2;
		if (!(n = realloc(r->push, cap)))
			return; /* anti-entropy carries it */
		r->push = n;
		r->push_cap = cap;
	}
	be32_put(r->push + r->push_len, (uint32_t)len);
	memcpy(r->push + r->push_len + 4, rec, len);
	r->push_len += 4 + len;
	r->st.records_out++;
	if (!ev_timer_armed(&r->timer) || r->timer.deadline > ev_now(r->loop))
		if (ev_timer_start(r->loop, &r->timer, 0) < 0)
			log_warn("cannot arm the replication timer: records go with anti-entropy");
}

/* Committed records to every member; outboxes; periodic anti-entropy. */
static void on_timer(struct ev_timer *t)
{
	struct repl *r = container_of(t, struct repl, timer);
	uint64_t now = ev_now(r->loop);
	bool busy = false, have_dg = false;
	struct digest dg;

	for (struct repl_peer *rp = r->peers; rp; rp = rp->next) {
		size_t off = 0;

		while (off < r->push_len) {
			uint32_t l = be32_get(r->push + off);

			if (outbox_add(rp, r->push + off + 4, l) < 0) {
				rp->next_sync = now; /* lost: anti-entropy at once */
				break;
			}
			off += 4 + l;
		}
		outbox_pump(r, rp);
		/* One digest for all the members due (it reads every record). */
		if (now >= rp->next_sync && (have_dg || (have_dg = digest_make(r, &dg) == 0)))
			send_digest(r, rp, &dg, false);
		busy |= rp->len > rp->off;
	}
	r->push_len = 0;
	if (r->push_cap > (1u << 20)) {
		free(r->push);
		r->push = NULL;
		r->push_cap = 0;
	}
	if (ev_timer_start(r->loop, &r->timer, busy ? REPL_PUMP_MS : 1000) < 0)
		log_error("cannot re-arm the replication timer (out of memory)");
}

int repl_new(struct ev_loop *loop, struct fs *fs, struct ns *ns, struct repl **ret)
{
	struct repl *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->loop = loop;
	r->fs = fs;
	r->ns = ns;
	ev_timer_init(&r->timer, on_timer);
	if (ev_timer_start(loop, &r->timer, 1000) < 0) {
		free(r);
		return -ENOMEM;
	}
	ns_set_committed_cb(ns, repl_committed, r);
	*ret = r;
	return 0;
}

void repl_free(struct repl *r)
{
	if (!r)
		return;
	ns_set_committed_cb(r->ns, NULL, NULL);
	ev_timer_stop(r->loop, &r->timer);
	while (r->peers) {
		struct repl_peer *rp = r->peers;

		r->peers = rp->next;
		free(rp->out);
		free(rp);
	}
	free(r->push);
	free(r);
}

void repl_get_stats(const struct repl *r, struct repl_stats *ret)
{
	*ret = r->st;
	ret->members = 0;
	for (struct repl_peer *rp = r->peers; rp; rp = rp->next)
		ret->members++;
}
