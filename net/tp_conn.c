// SPDX-License-Identifier: MIT
/*
 * net/tp_conn.c - transport connections on the event loop (see tp_conn.h).
 *
 * Owns the sockets, buffers, deadlines and callbacks of connections; all
 * cryptography and wire formats are the engine's (tp.c). Never blocks, never
 * allocates once a connection is up.
 *
 * Receiving: one buffer of RX_CAP bytes, read RX_READ_MAX at most at a time.
 * Each piece of a frame is decrypted in place as soon as it arrives, while
 * it is still in cache; the frame is handed out only after its tag checked.
 * A read never runs past the end of a large frame, so in bulk transfer every
 * frame starts at the front of the buffer and nothing is ever moved; small
 * frames are read many at a time, and only the partial one at the end is
 * moved to the front when room runs out.
 *
 * Sending: frames are sealed straight into a bip buffer (a ring whose
 * writes never wrap: a frame that does not fit at the end starts a second
 * region at the front), so every frame is contiguous and the kernel is
 * given the longest contiguous run in one send. One send is in flight at a
 * time, which keeps the stream in order. A send of 64 KiB or more is
 * submitted at once, so the kernel copies the frame while it is still in
 * cache; smaller ones wait for the end of the loop iteration and go out
 * together.
 *
 * Invariants:
 *  1. A connection is freed only in state C_DEAD with no operation in
 *     flight (nops == 0); each completion handler drops its reference last,
 *     so callbacks may close or abort the connection freely.
 *  2. cbs.down runs at most once, never after tp_conn_close/abort, and never
 *     from inside a call the application made (such failures are deferred
 *     to the timer).
 *  3. rb[r_start, r_end) is unconsumed input; f_len is the wire length of
 *     the message or frame at r_start once its header has been read (else
 *     0), and then r_start + f_len <= RX_CAP.
 */
#define LOG_SUBSYS "tp"
#include "net/tp_conn.h"
#include "common/log.h"
#include "common/rbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define RX_READ_MAX (256 * 1024)
#define RX_CAP P2P_ALIGN_UP((size_t)TP_WIRE_MAX + RX_READ_MAX, PAGE)
#define TX_FLUSH_AT (64 * 1024)
#define NAME_LEN (INET6_ADDRSTRLEN + 8)
#define ACCEPT_RETRY_MS 100

enum conn_state {
	C_CONNECTING,
	C_HANDSHAKE,
	C_UP,
	C_FLUSHING, /* closed by the application: sending what is queued */
	C_LINGER,   /* all sent, FIN sent: reading until the peer's FIN */
	C_DEAD,	    /* waiting for in-flight operations, then freed */
};

/* The send queue: region A [a_start, a_end) goes out first; region B
 * [0, b_end) exists once writing wrapped, and becomes A when A is sent. */
struct txq {
	uint8_t *p;
	size_t cap;
	size_t a_start, a_end, b_end;
	bool b_used;
};

struct tp_conn {
	struct ev_loop *loop;
	struct tp *tp;
	struct tp_listener *from;	/* responder: its listener until the handshake ends */
	struct tp_conn *pnext, **pprev; /* ... and in its list of handshakes */
	struct tp_conn_cbs cbs;
	void *arg;
	struct tp_conn_opts o;
	uint8_t network[TP_NETWORK_LEN];
	int fd;
	enum conn_state st;
	unsigned nops; /* operations in flight (invariant 1) */
	int fail_rc;   /* a failure to report from the timer (invariant 2) */
	bool want_writable;
	size_t writable_below; /* 0: half the queue */

	struct ev_op conn_op, rx_op, tx_op;
	bool conn_busy, rx_busy, tx_busy;
	struct ev_timer timer;
	uint64_t last_rx, last_tx; /* ev_now() of the last bytes in / out */

	uint8_t *rb;			     /* RX_CAP bytes (invariant 3) */
	size_t r_start, r_end, f_len, f_dec; /* f_dec: ciphertext bytes decrypted */
	struct txq q;

	struct sockaddr_storage peer;
	socklen_t peer_len;
	char name[NAME_LEN];
};

struct tp_listener {
	struct ev_loop *loop;
	int fd;
	struct tp_conn_opts o;
	uint8_t network[TP_NETWORK_LEN];
	struct tp_conn_cbs cbs;
	void *arg;
	struct ev_op op;
	struct ev_timer retry;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	unsigned refs;		    /* 1 until tp_listener_free(), + 1 per handshaking connection */
	unsigned pending;	    /* connections in their handshake */
	struct tp_conn *handshakes; /* those connections */
	bool busy, closed;
	uint16_t port;
};

/* Lines a peer can cause are rate-limited per loop thread. */
static __thread struct log_rl peer_rl;

#define peer_log(...)                                  \
	do {                                           \
		if (log_rl_allow(&peer_rl, 20, 10000)) \
			log_info(__VA_ARGS__);         \
	} while (0)

static void die(struct tp_conn *c, int reason);
static int kick_tx(struct tp_conn *c);
static int arm_rx(struct tp_conn *c);

static const char *reason_str(int rc)
{
	switch (rc) {
	case 0:
		return "closed by the peer";
	case -EBADMSG:
		return "authentication failed";
	case -EACCES:
		return "refused (another network, not the peer expected, or ourselves)";
	case -EKEYREJECTED:
		return "peer id without the required proof of work";
	case -EPROTONOSUPPORT:
		return "another protocol version";
	case -EMSGSIZE:
		return "message over the size limit";
	case -EPROTO:
		return "malformed or truncated input";
	default:
		return strerror(-rc);
	}
}

static void name_addr(char out[NAME_LEN], const struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(out, NAME_LEN, "%s:%u", host, ntohs(a->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(out, NAME_LEN, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		snprintf(out, NAME_LEN, "(family %u)", ss->ss_family);
	}
}

/* ---- the send queue ---- */

static size_t txq_len(const struct txq *q)
{
	return q->a_end - q->a_start + (q->b_used ? q->b_end : 0);
}

/* Where @n contiguous bytes can be written, or NULL. */
static uint8_t *txq_reserve(struct txq *q, size_t n, bool sending)
{
	if (q->b_used)
		return q->a_start - q->b_end >= n ? q->p + q->b_end : NULL;
	if (q->a_start == q->a_end && !sending)
		q->a_start = q->a_end = 0; /* empty: back to the front, whose pages are warm */
	if (q->cap - q->a_end >= n)
		return q->p + q->a_end;
	if (q->a_start >= n)
		return q->p; /* wrap: region B starts */
	return NULL;
}

static void txq_commit(struct txq *q, const uint8_t *at, size_t n)
{
	if (!q->b_used && at == q->p + q->a_end) {
		q->a_end += n;
	} else {
		q->b_used = true;
		q->b_end += n;
	}
}

/* @n bytes of region A went out. */
static void txq_consume(struct txq *q, size_t n)
{
	q->a_start += n;
	if (q->a_start < q->a_end)
		return;
	if (q->b_used) {
		q->a_start = 0;
		q->a_end = q->b_end;
		q->b_end = 0;
		q->b_used = false;
	} else {
		q->a_start = q->a_end = 0;
	}
}

/* ---- lifetime ---- */

static void listener_unref(struct tp_listener *l)
{
	if (--l->refs == 0 && !l->busy)
		free(l);
}

/* The handshake is over (either way): the listener no longer counts us. */
static void release_from(struct tp_conn *c)
{
	if (!c->from)
		return;
	if ((*c->pprev = c->pnext))
		c->pnext->pprev = c->pprev;
	c->from->pending--;
	listener_unref(c->from);
	c->from = NULL;
}

static void maybe_free(struct tp_conn *c)
{
	if (c->st != C_DEAD || c->nops)
		return;
	if (c->fd >= 0)
		close(c->fd);
	tp_free(c->tp);
	if (c->rb)
		munmap(c->rb, RX_CAP);
	if (c->q.p)
		munmap(c->q.p, c->q.cap);
	free(c);
}

static void op_end(struct tp_conn *c)
{
	c->nops--;
	maybe_free(c);
}

/* Stop everything, no callback; freed once the last operation completes. */
static void kill(struct tp_conn *c)
{
	if (c->st == C_DEAD)
		return;
	c->st = C_DEAD;
	ev_timer_stop(c->loop, &c->timer);
	release_from(c);
	/* Wake what is in flight: each completion then drops its reference. */
	(void)shutdown(c->fd, SHUT_RDWR);
	if (c->conn_busy && ev_cancel(c->loop, &c->conn_op) < 0)
		log_debug("%s: cannot cancel a connect (ring full)", c->name);
	if (c->rx_busy && ev_cancel(c->loop, &c->rx_op) < 0)
		log_debug("%s: cannot cancel a receive (ring full)", c->name);
	if (c->tx_busy && ev_cancel(c->loop, &c->tx_op) < 0)
		log_debug("%s: cannot cancel a send (ring full)", c->name);
	maybe_free(c);
}

/* The connection failed: kill it, and tell the application unless it closed it. */
static void die(struct tp_conn *c, int reason)
{
	bool tell = c->st < C_FLUSHING;

	if (c->st == C_DEAD)
		return;
	c->nops++; /* keep @c through the callback */
	kill(c);
	if (tell && c->cbs.down)
		c->cbs.down(c->arg, c, reason);
	op_end(c);
}

/* Report @rc from the loop rather than from inside the caller's call. */
static void fail_later(struct tp_conn *c, int rc)
{
	if (!c->fail_rc)
		c->fail_rc = rc;
	ev_timer_stop(c->loop, &c->timer);
	/* The heap slot of this timer was just freed, so this cannot fail. */
	if (ev_timer_start(c->loop, &c->timer, 0) < 0)
		log_error("%s: cannot arm a timer: the failure will show at the next deadline",
			  c->name);
}

/* ---- deadlines ---- */

static void set_timer(struct tp_conn *c, uint64_t ms)
{
	if (c->fail_rc)
		return; /* a deferred failure is due first */
	ev_timer_stop(c->loop, &c->timer);
	if (ev_timer_start(c->loop, &c->timer, ms) < 0)
		log_warn("%s: cannot arm a deadline (out of memory)", c->name);
}

static int queue_frame(struct tp_conn *c, const struct iovec *iov, unsigned n, size_t len);

/* Up: check both deadlines, send a keepalive when we have been quiet. */
static void up_tick(struct tp_conn *c)
{
	uint64_t now = ev_now(c->loop), next;
	size_t queued = txq_len(&c->q);

	if (now - c->last_rx >= c->o.idle_ms) {
		peer_log("%s: peer silent for %u ms, closing", c->name, c->o.idle_ms);
		die(c, -ETIMEDOUT);
		return;
	}
	if (queued && now - c->last_tx >= c->o.idle_ms) {
		peer_log("%s: peer took none of our %zu queued bytes for %u ms, closing", c->name,
			 queued, c->o.idle_ms);
		die(c, -ETIMEDOUT);
		return;
	}
	if (!queued && now - c->last_tx >= c->o.keepalive_ms) {
		if (queue_frame(c, NULL, 0, 0) < 0) {
			die(c, -EIO);
			return;
		}
		queued = txq_len(&c->q);
	}
	/* The next check: the earliest deadline, and at least every keepalive
	 * period while frames are queued (their progress moves last_tx). */
	next = P2P_MIN(c->last_rx + c->o.idle_ms,
		       queued ? P2P_MIN(c->last_tx + c->o.idle_ms, now + c->o.keepalive_ms)
			      : c->last_tx + c->o.keepalive_ms);
	set_timer(c, next > now ? next - now : 1);
}

static void on_timer(struct ev_timer *t)
{
	struct tp_conn *c = container_of(t, struct tp_conn, timer);

	if (c->fail_rc) {
		die(c, c->fail_rc);
		return;
	}
	switch (c->st) {
	case C_CONNECTING:
		peer_log("%s: connect timed out after %u ms", c->name, c->o.connect_ms);
		die(c, -ETIMEDOUT);
		break;
	case C_HANDSHAKE:
		peer_log("%s: handshake timed out after %u ms", c->name, c->o.handshake_ms);
		die(c, -ETIMEDOUT);
		break;
	case C_UP:
		up_tick(c);
		break;
	case C_FLUSHING:
	case C_LINGER:
		peer_log("%s: close: peer did not finish within %u ms (%zu bytes unsent)", c->name,
			 c->o.linger_ms, txq_len(&c->q));
		kill(c);
		break;
	case C_DEAD:
		break;
	}
}

/* ---- sending ---- */

static void on_tx(struct ev_op *op, int32_t res)
{
	struct tp_conn *c = container_of(op, struct tp_conn, tx_op);
	int rc;

	c->tx_busy = false;
	if (c->st == C_DEAD) {
		op_end(c);
		return;
	}
	if (res <= 0) {
		if (c->st >= C_FLUSHING)
			kill(c);
		else
			die(c, res < 0 ? res : -EPIPE);
		op_end(c);
		return;
	}
	txq_consume(&c->q, (size_t)res);
	c->last_tx = ev_now(c->loop);
	if ((rc = kick_tx(c)) < 0) {
		die(c, rc);
		op_end(c);
		return;
	}
	if (c->st == C_FLUSHING && !c->tx_busy) {
		/* Everything went out: FIN, then read until the peer's FIN. */
		(void)shutdown(c->fd, SHUT_WR);
		c->st = C_LINGER;
	}
	if (c->want_writable && c->st == C_UP &&
	    txq_len(&c->q) <= (c->writable_below ? c->writable_below : c->q.cap / 2)) {
		c->want_writable = false;
		if (c->cbs.writable)
			c->cbs.writable(c->arg, c);
	}
	op_end(c);
}

/* Put the oldest queued bytes on the wire if nothing is in flight. */
static int kick_tx(struct tp_conn *c)
{
	size_t len;
	int rc;

	if (c->tx_busy || c->st == C_CONNECTING || c->st >= C_LINGER)
		return 0;
	txq_consume(&c->q, 0); /* region B moves up if A is empty */
	if (!(len = c->q.a_end - c->q.a_start))
		return 0;
	ev_op_init(&c->tx_op, on_tx);
	if ((rc = ev_send(c->loop, &c->tx_op, c->fd, c->q.p + c->q.a_start, len, MSG_NOSIGNAL)) < 0)
		return rc;
	c->tx_busy = true;
	c->nops++;
	if (len >= TX_FLUSH_AT)
		ev_flush(c->loop); /* let the kernel copy it while it is in cache */
	return 0;
}

/* Handshake bytes, as they are. */
static int queue_raw(struct tp_conn *c, const uint8_t *msg, size_t len)
{
	uint8_t *at = txq_reserve(&c->q, len, c->tx_busy);

	if (!at)
		return -ENOBUFS; /* cannot happen: the queue holds two whole frames */
	memcpy(at, msg, len);
	txq_commit(&c->q, at, len);
	return kick_tx(c);
}

/* Seal one frame into the queue and start sending it. */
static int queue_frame(struct tp_conn *c, const struct iovec *iov, unsigned n, size_t len)
{
	uint8_t *at = txq_reserve(&c->q, len + TP_OVERHEAD, c->tx_busy);
	long flen;

	if (!at) {
		c->want_writable = true;
		c->writable_below = 0;
		return -ENOBUFS;
	}
	if (!txq_len(&c->q))
		c->last_tx = ev_now(c->loop); /* the stall deadline counts from now */
	if ((flen = tp_sealv(c->tp, iov, n, at)) < 0)
		return (int)flen;
	txq_commit(&c->q, at, (size_t)flen);
	return kick_tx(c);
}

int tp_conn_sendv(struct tp_conn *c, const struct iovec *iov, unsigned n)
{
	size_t len = 0;
	int rc;

	if (c->st != C_UP || c->fail_rc)
		return -ENOTCONN;
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].iov_len > TP_FRAME_MAX - len)
			return -EMSGSIZE;
		len += iov[i].iov_len;
	}
	if (!len)
		return -EINVAL;
	if ((rc = queue_frame(c, iov, n, len)) == -ENOBUFS)
		return rc;
	if (rc < 0) {
		fail_later(c, rc);
		return -ENOTCONN;
	}
	return 0;
}

int tp_conn_send(struct tp_conn *c, const void *data, size_t len)
{
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };

	return tp_conn_sendv(c, &iov, 1);
}

size_t tp_conn_queued(const struct tp_conn *c)
{
	return txq_len(&c->q);
}

size_t tp_conn_wire_queued(const struct tp_conn *c)
{
	int n = 0;

	if (c->fd < 0 || ioctl(c->fd, SIOCOUTQ, &n) < 0 || n < 0)
		return 0;
	return (size_t)n;
}

/* ---- receiving ---- */

static void compact(struct tp_conn *c)
{
	memmove(c->rb, c->rb + c->r_start, c->r_end - c->r_start);
	c->r_end -= c->r_start;
	c->r_start = 0;
}

static void become_up(struct tp_conn *c)
{
	char hex[9];

	c->st = C_UP;
	release_from(c);
	c->last_rx = c->last_tx = ev_now(c->loop);
	p2p_hex8(hex, tp_peer_id(c->tp));
	log_debug("%s: up, peer %s", c->name, hex);
	set_timer(c, P2P_MIN(c->o.keepalive_ms, c->o.idle_ms));
	if (c->cbs.up)
		c->cbs.up(c->arg, c);
}

/* One handshake message if it is all here; false when more bytes are needed or it failed. */
static bool hs_step(struct tp_conn *c, const uint8_t *p, size_t have)
{
	uint8_t out[TP_HS_WIRE_MAX];
	size_t olen;
	int rc, qrc;

	if (!c->f_len) {
		if (have < TP_HS_LEN_HDR)
			return false;
		if ((rc = tp_hs_msg_len(p, &c->f_len)) < 0)
			goto fail;
	}
	if (have < c->f_len)
		return false;
	rc = tp_hs_input(c->tp, p, c->f_len, out, &olen);
	c->r_start += c->f_len;
	c->f_len = 0;
	if (rc < 0)
		goto fail;
	if (olen && (qrc = queue_raw(c, out, olen)) < 0) {
		die(c, qrc);
		return false;
	}
	if (rc == 1)
		become_up(c);
	return true;
fail:
	peer_log("%s: handshake failed: %s", c->name, reason_str(rc));
	die(c, rc);
	return false;
}

/* Frames and handshake messages in rb; stops when more bytes are needed or the state changes. */
static void consume(struct tp_conn *c)
{
	while (c->st == C_HANDSHAKE || c->st == C_UP) {
		uint8_t *p = c->rb + c->r_start;
		size_t have = c->r_end - c->r_start, pl, ct;
		int rc;

		if (c->st == C_HANDSHAKE) {
			if (!hs_step(c, p, have))
				break;
			continue;
		}
		if (!c->f_len) {
			if (have < TP_HDR_LEN)
				break;
			if ((rc = tp_open_begin(c->tp, p, &pl)) < 0) {
				peer_log("%s: frame of %u bytes over the limit of %u, closing",
					 c->name, be32_get(p), TP_FRAME_MAX);
				die(c, rc);
				return;
			}
			c->f_len = pl + TP_OVERHEAD;
			c->f_dec = 0;
			if (c->r_start + c->f_len > RX_CAP) {
				compact(c);
				p = c->rb;
			}
		}
		pl = c->f_len - TP_OVERHEAD;
		ct = P2P_MIN(have - TP_HDR_LEN, pl);
		if (ct > c->f_dec) {
			/* Decrypt what arrived while it is in cache; unused until the tag checks. */
			if ((rc = tp_open_update(c->tp, p + TP_HDR_LEN + c->f_dec, ct - c->f_dec)) <
			    0) {
				die(c, rc);
				return;
			}
			c->f_dec = ct;
		}
		if (have < c->f_len)
			break;
		if ((rc = tp_open_final(c->tp, p + TP_HDR_LEN + pl)) < 0) {
			peer_log("%s: a frame failed authentication, closing", c->name);
			die(c, rc);
			return;
		}
		c->r_start += c->f_len;
		c->f_len = 0;
		if (pl && c->cbs.frame)
			c->cbs.frame(c->arg, c, p + TP_HDR_LEN, pl);
	}
	if (c->st == C_FLUSHING || c->st == C_LINGER)
		c->r_start = c->r_end = c->f_len = 0; /* closed by us: input is dropped */
	if (c->r_start == c->r_end)
		c->r_start = c->r_end = 0;
}

static void on_rx(struct ev_op *op, int32_t res)
{
	struct tp_conn *c = container_of(op, struct tp_conn, rx_op);
	int rc;

	c->rx_busy = false;
	if (c->st == C_DEAD) {
		op_end(c);
		return;
	}
	if (res <= 0) {
		if (c->st >= C_FLUSHING) {
			kill(c); /* the peer's FIN after ours, or an error: done either way */
		} else if (res < 0) {
			peer_log("%s: receive: %s", c->name, strerror(-res));
			die(c, res);
		} else if (c->st == C_UP && c->r_start == c->r_end) {
			log_debug("%s: closed by the peer", c->name);
			die(c, 0);
		} else {
			peer_log("%s: peer closed the connection %s", c->name,
				 c->st == C_UP ? "inside a frame" : "during the handshake");
			die(c, c->st == C_UP ? -EPROTO : -ECONNRESET);
		}
		op_end(c);
		return;
	}
	c->r_end += (size_t)res;
	c->last_rx = ev_now(c->loop);
	consume(c);
	if (c->st != C_DEAD && (rc = arm_rx(c)) < 0)
		die(c, rc);
	op_end(c);
}

static int arm_rx(struct tp_conn *c)
{
	size_t len;
	int rc;

	if (c->rx_busy)
		return 0;
	if (c->f_len >= RX_READ_MAX) {
		/* Inside a large frame: read no further than its end (invariant 3). */
		len = P2P_MIN(c->r_start + c->f_len - c->r_end, (size_t)RX_READ_MAX);
	} else {
		if (RX_CAP - c->r_end < RX_READ_MAX && c->r_start > 0)
			compact(c); /* moves less than one small frame */
		len = P2P_MIN(RX_CAP - c->r_end, (size_t)RX_READ_MAX);
	}
	ev_op_init(&c->rx_op, on_rx);
	if ((rc = ev_recv(c->loop, &c->rx_op, c->fd, c->rb + c->r_end, len, 0)) < 0)
		return rc;
	c->rx_busy = true;
	c->nops++;
	return 0;
}

/* ---- the public calls ---- */

const uint8_t *tp_conn_peer_id(const struct tp_conn *c)
{
	return tp_peer_id(c->tp);
}

void tp_conn_want_writable(struct tp_conn *c, size_t below)
{
	c->want_writable = true;
	c->writable_below = below;
}

void tp_conn_set_unsent_max(struct tp_conn *c, size_t bytes)
{
	int v = (int)P2P_MIN(bytes, (size_t)INT_MAX);

	/* Bytes in flight do not count: this does not cap throughput. */
	if (c->fd >= 0 && setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v)) < 0)
		log_debug("%s: TCP_NOTSENT_LOWAT: %s", c->name, strerror(errno));
}

const uint8_t *tp_conn_session_id(const struct tp_conn *c)
{
	return tp_session_id(c->tp);
}

const struct sockaddr *tp_conn_peer_addr(const struct tp_conn *c, socklen_t *ret_len)
{
	*ret_len = c->peer_len;
	return (const struct sockaddr *)&c->peer;
}

const char *tp_conn_name(const struct tp_conn *c)
{
	return c->name;
}

void tp_conn_stats(const struct tp_conn *c, struct tp_stats *ret)
{
	tp_stats(c->tp, ret);
}

void tp_conn_set_arg(struct tp_conn *c, void *arg)
{
	c->arg = arg;
}

void tp_conn_close(struct tp_conn *c)
{
	if (!c || c->st >= C_FLUSHING)
		return;
	if (c->st != C_UP || c->fail_rc) {
		kill(c);
		return;
	}
	c->st = C_FLUSHING;
	set_timer(c, c->o.linger_ms);
	if (!c->tx_busy) {
		(void)shutdown(c->fd, SHUT_WR);
		c->st = C_LINGER;
	}
}

void tp_conn_abort(struct tp_conn *c)
{
	if (c)
		kill(c);
}

/* ---- set-up ---- */

static void defaults(struct tp_conn_opts *o)
{
	if (!o->connect_ms)
		o->connect_ms = 5000;
	if (!o->handshake_ms)
		o->handshake_ms = 5000;
	if (!o->idle_ms)
		o->idle_ms = 60000;
	if (!o->keepalive_ms)
		o->keepalive_ms = 15000;
	if (!o->linger_ms)
		o->linger_ms = 5000;
	if (!o->sendq_max)
		o->sendq_max = 4 * MiB;
	o->sendq_max = P2P_ALIGN_UP(P2P_MAX(o->sendq_max, 2 * (size_t)TP_WIRE_MAX), (size_t)PAGE);
	if (!o->max_pending)
		o->max_pending = 256;
}

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int conn_new(struct ev_loop *loop, int fd, bool initiator, const uint8_t *expect,
		    const struct tp_conn_opts *o, const uint8_t *network,
		    const struct tp_conn_cbs *cbs, void *arg, struct tp_conn **ret)
{
	struct tp_opts to = { .ident = o->ident,
			      .expect_id = expect,
			      .pow_bits = o->pow_bits,
			      .initiator = initiator };
	struct tp_conn *c;
	int one = 1, rc;

	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->o = *o;
	defaults(&c->o);
	memcpy(c->network, network, TP_NETWORK_LEN);
	c->o.network = to.network = c->network;
	c->loop = loop;
	c->fd = fd;
	c->cbs = *cbs;
	c->arg = arg;
	ev_timer_init(&c->timer, on_timer);
	c->q.cap = c->o.sendq_max;
	rc = -ENOMEM;
	if (!(c->rb = map(RX_CAP)) || !(c->q.p = map(c->q.cap)))
		goto err;
	if ((rc = tp_new(&to, &c->tp)) < 0)
		goto err;
	/* Frames are whole messages, batched by us: no Nagle delay. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*ret = c;
	return 0;
err:
	if (c->rb)
		munmap(c->rb, RX_CAP);
	if (c->q.p)
		munmap(c->q.p, c->q.cap);
	free(c);
	return rc;
}

static void start_handshake(struct tp_conn *c, bool initiator)
{
	uint8_t out[TP_HS_WIRE_MAX];
	size_t olen;
	int rc;

	c->st = C_HANDSHAKE;
	set_timer(c, c->o.handshake_ms);
	if (initiator &&
	    ((rc = tp_hs_start(c->tp, out, &olen)) < 0 || (rc = queue_raw(c, out, olen)) < 0)) {
		die(c, rc);
		return;
	}
	if ((rc = arm_rx(c)) < 0)
		die(c, rc);
}

static void on_connected(struct ev_op *op, int32_t res)
{
	struct tp_conn *c = container_of(op, struct tp_conn, conn_op);

	c->conn_busy = false;
	if (c->st == C_DEAD) {
		op_end(c);
		return;
	}
	if (res < 0) {
		peer_log("%s: connect: %s", c->name, strerror(-res));
		die(c, res);
	} else {
		start_handshake(c, true);
	}
	op_end(c);
}

int tp_connect(struct ev_loop *loop, const struct sockaddr *addr, socklen_t addr_len,
	       const uint8_t *expect_id, const struct tp_conn_opts *o,
	       const struct tp_conn_cbs *cbs, void *arg, struct tp_conn **ret_conn)
{
	uint8_t net[TP_NETWORK_LEN];
	struct tp_conn *c;
	int fd, rc;

	if (!o || !o->ident || !cbs || addr_len > sizeof(c->peer))
		return -EINVAL;
	if ((fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	if (o->network)
		memcpy(net, o->network, TP_NETWORK_LEN);
	else
		tp_default_network(net);
	if ((rc = conn_new(loop, fd, true, expect_id, o, net, cbs, arg, &c)) < 0) {
		close(fd);
		return rc;
	}
	memcpy(&c->peer, addr, addr_len);
	c->peer_len = addr_len;
	name_addr(c->name, &c->peer);
	c->st = C_CONNECTING;
	ev_op_init(&c->conn_op, on_connected);
	if ((rc = ev_connect(loop, &c->conn_op, fd, (const struct sockaddr *)&c->peer, addr_len)) <
	    0) {
		c->st = C_DEAD;
		maybe_free(c);
		return rc;
	}
	c->conn_busy = true;
	c->nops++;
	set_timer(c, c->o.connect_ms);
	*ret_conn = c;
	return 0;
}

static void arm_accept(struct tp_listener *l);

static void on_accept_retry(struct ev_timer *t)
{
	arm_accept(container_of(t, struct tp_listener, retry));
}

static void accepted(struct tp_listener *l, int fd)
{
	struct tp_conn *c;
	char name[NAME_LEN];
	int rc;

	if (l->pending >= l->o.max_pending) {
		name_addr(name, &l->peer);
		peer_log("%s: %u handshakes already in progress, refusing", name, l->pending);
		close(fd);
		return;
	}
	if ((rc = conn_new(l->loop, fd, false, NULL, &l->o, l->network, &l->cbs, l->arg, &c)) < 0) {
		log_warn("cannot take a connection: %s", strerror(-rc));
		close(fd);
		return;
	}
	memcpy(&c->peer, &l->peer, sizeof(c->peer));
	c->peer_len = l->peer_len;
	name_addr(c->name, &c->peer);
	c->from = l;
	if ((c->pnext = l->handshakes))
		c->pnext->pprev = &c->pnext;
	c->pprev = &l->handshakes;
	l->handshakes = c;
	l->refs++;
	l->pending++;
	start_handshake(c, false);
}

static void on_accept(struct ev_op *op, int32_t res)
{
	struct tp_listener *l = container_of(op, struct tp_listener, op);

	l->busy = false;
	if (l->closed) {
		if (res >= 0)
			close(res);
		close(l->fd);
		if (l->refs == 0)
			free(l);
		return;
	}
	if (res >= 0) {
		accepted(l, res);
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
		/* Out of descriptors or memory: pause instead of spinning on the error. */
		peer_log("accept: %s; pausing %u ms", strerror(-res), ACCEPT_RETRY_MS);
		if (ev_timer_start(l->loop, &l->retry, ACCEPT_RETRY_MS) == 0)
			return;
	} else if (res != -ECANCELED && res != -EINTR && res != -ECONNABORTED) {
		log_warn("accept: %s", strerror(-res));
	}
	arm_accept(l);
}

static void arm_accept(struct tp_listener *l)
{
	l->peer_len = sizeof(l->peer);
	ev_op_init(&l->op, on_accept);
	if (ev_accept(l->loop, &l->op, l->fd, (struct sockaddr *)&l->peer, &l->peer_len) < 0) {
		log_warn("accept: ring full; retrying in %u ms", ACCEPT_RETRY_MS);
		if (ev_timer_start(l->loop, &l->retry, ACCEPT_RETRY_MS) < 0)
			log_error("accept: cannot retry (out of memory); no longer listening");
		return;
	}
	l->busy = true;
}

int tp_listen(struct ev_loop *loop, const struct sockaddr *addr, socklen_t addr_len,
	      const struct tp_conn_opts *o, const struct tp_conn_cbs *cbs, void *arg,
	      struct tp_listener **ret_listener)
{
	struct tp_listener *l;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1, rc;

	if (!o || !o->ident || !cbs)
		return -EINVAL;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	if ((l->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		rc = -errno;
		goto err_free;
	}
	(void)setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, addr, addr_len) < 0 || listen(l->fd, 512) < 0 ||
	    getsockname(l->fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		goto err_close;
	}
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	l->loop = loop;
	l->o = *o;
	defaults(&l->o);
	if (o->network)
		memcpy(l->network, o->network, TP_NETWORK_LEN);
	else
		tp_default_network(l->network);
	l->cbs = *cbs;
	l->arg = arg;
	l->refs = 1;
	ev_timer_init(&l->retry, on_accept_retry);
	arm_accept(l);
	*ret_listener = l;
	return 0;
err_close:
	close(l->fd);
err_free:
	free(l);
	return rc;
}

uint16_t tp_listener_port(const struct tp_listener *l)
{
	return l->port;
}

void tp_listener_free(struct tp_listener *l)
{
	if (!l || l->closed)
		return;
	l->closed = true;
	ev_timer_stop(l->loop, &l->retry);
	/* Handshakes in progress end too, silently: their callbacks name an
	 * owner that may be going away with the listener. */
	while (l->handshakes) {
		struct tp_conn *c = l->handshakes;

		kill(c);
		if (l->handshakes == c) /* already dead, still listed */
			release_from(c);
	}
	if (l->busy) {
		/* on_accept() closes the socket when the accept comes back. */
		(void)shutdown(l->fd, SHUT_RDWR);
		if (ev_cancel(l->loop, &l->op) < 0)
			log_debug("cannot cancel an accept (ring full)");
	} else {
		close(l->fd);
	}
	listener_unref(l);
}
