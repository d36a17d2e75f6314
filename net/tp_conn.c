// SPDX-License-Identifier: MIT
/*
 * net/tp_conn.c - transport connections on the event loop (see tp_conn.h).
 *
 * Wire: handshake messages as u16 length + message, then frames (tp.h).
 * Sending uses two buffers: frames are sealed into the fill buffer while
 * the wire buffer is being sent; when a send completes the buffers swap.
 * Receiving reads into one buffer that holds at least one whole frame;
 * frames are authenticated and decrypted in place.
 *
 * Invariant: a struct tp_conn is freed only when no operation of it is in
 * flight (nops == 0) and it is closing.
 */
#define LOG_SUBSYS "tp"
#include "net/tp_conn.h"
#include "common/log.h"
#include "common/rbuf.h"
#include "common/tm.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RBUF_CAP (2 * (TP_FRAME_MAX + TP_OVERHEAD) + 256 * 1024)
#define SBUF_MIN (256 * 1024)

enum conn_state { C_CONNECTING, C_HANDSHAKE, C_UP, C_CLOSING };

struct sbuf {
	uint8_t *p;
	size_t len, cap, sent;
};

struct tp_conn {
	struct ev_loop *loop;
	struct tp *tp;
	struct tp_conn_cbs cbs;
	void *arg;
	struct tp_conn_opts o;
	int fd;
	enum conn_state st;
	unsigned nops;
	bool down_called;

	struct ev_op conn_op, rx_op, tx_op;
	struct ev_timer timer;
	bool rx_busy, tx_busy;

	uint8_t *rbuf;
	size_t rstart, rlen; /* unconsumed bytes are rbuf[rstart, rlen) */
	struct sbuf fill, wire;
	size_t sendq_max;
	uint64_t last_rx, last_tx;
};

struct tp_listener {
	struct ev_loop *loop;
	int fd;
	struct tp_conn_opts o;
	struct tp_conn_cbs cbs;
	void *arg;
	struct ev_op op;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	bool closing, busy;
	uint16_t port;
};

static void conn_fail(struct tp_conn *c, int reason);
static void arm_rx(struct tp_conn *c);
static void kick_tx(struct tp_conn *c);

static void maybe_free(struct tp_conn *c)
{
	if (c->st != C_CLOSING || c->nops)
		return;
	ev_timer_stop(c->loop, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	tp_free(c->tp);
	free(c->rbuf);
	free(c->fill.p);
	free(c->wire.p);
	free(c);
}

static void op_done(struct tp_conn *c)
{
	c->nops--;
	maybe_free(c);
}

static int sbuf_reserve(struct sbuf *b, size_t need, size_t max);

/* ---- timers ---- */

static void set_deadline(struct tp_conn *c, uint32_t ms)
{
	ev_timer_stop(c->loop, &c->timer);
	if (ev_timer_start(c->loop, &c->timer, ms) < 0)
		log_warn("cannot arm a connection timer (out of memory)");
}

static void on_timer(struct ev_timer *t)
{
	struct tp_conn *c = container_of(t, struct tp_conn, timer);
	uint64_t now = tm_mono_ms();

	switch (c->st) {
	case C_CONNECTING:
		log_info("connection timed out after %u ms", c->o.connect_ms);
		conn_fail(c, -ETIMEDOUT);
		return;
	case C_HANDSHAKE:
		log_info("handshake timed out after %u ms", c->o.handshake_ms);
		conn_fail(c, -ETIMEDOUT);
		return;
	case C_UP:
		if (now - c->last_rx >= c->o.idle_ms) {
			log_info("peer silent for %u ms: closing", c->o.idle_ms);
			conn_fail(c, -ETIMEDOUT);
			return;
		}
		if (now - c->last_tx >= c->o.keepalive_ms &&
		    sbuf_reserve(&c->fill, TP_OVERHEAD, c->sendq_max) == 0) {
			c->fill.len += tp_seal(c->tp, NULL, 0, c->fill.p + c->fill.len);
			kick_tx(c);
		}
		set_deadline(c, P2P_MIN(c->o.keepalive_ms, c->o.idle_ms) / 2 + 1);
		return;
	default:
		return;
	}
}

/* ---- closing ---- */

static void shut(struct tp_conn *c)
{
	if (c->st == C_CLOSING)
		return;
	c->st = C_CLOSING;
	ev_timer_stop(c->loop, &c->timer);
	/* Wake what is in flight; each completion drops its reference. */
	if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_RDWR);
	if (c->rx_busy && ev_cancel(c->loop, &c->rx_op) < 0)
		log_debug("cancel receive: ring full");
}

static void conn_fail(struct tp_conn *c, int reason)
{
	if (c->st == C_CLOSING)
		return;
	shut(c);
	if (!c->down_called && c->cbs.down) {
		c->down_called = true;
		c->cbs.down(c->arg, c, reason);
	}
	maybe_free(c);
}

void tp_conn_close(struct tp_conn *c)
{
	if (!c)
		return;
	c->down_called = true;
	shut(c);
	maybe_free(c);
}

/* ---- sending ---- */

static int sbuf_reserve(struct sbuf *b, size_t need, size_t max)
{
	size_t cap;
	uint8_t *p;

	if (b->len + need <= b->cap)
		return 0;
	if (b->len + need > max)
		return -ENOBUFS;
	cap = P2P_MAX(b->cap * 2, (size_t)SBUF_MIN);
	while (cap < b->len + need)
		cap *= 2;
	if (cap > max)
		cap = max;
	if (!(p = realloc(b->p, cap)))
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void on_tx(struct ev_op *op, int32_t res)
{
	struct tp_conn *c = container_of(op, struct tp_conn, tx_op);

	c->tx_busy = false;
	if (c->st == C_CLOSING) {
		op_done(c);
		return;
	}
	if (res <= 0) {
		op_done(c);
		conn_fail(c, res < 0 ? res : -ECONNRESET);
		return;
	}
	c->wire.sent += (size_t)res;
	c->last_tx = tm_mono_ms();
	op_done(c);
	kick_tx(c);
}

static void kick_tx(struct tp_conn *c)
{
	if (c->tx_busy || c->st == C_CLOSING)
		return;
	if (c->wire.sent == c->wire.len) {
		struct sbuf t;

		c->wire.len = c->wire.sent = 0;
		if (!c->fill.len)
			return;
		/* Swap: what was filled goes on the wire, the emptied buffer fills. */
		t = c->wire;
		c->wire = c->fill;
		c->fill = t;
	}
	ev_op_init(&c->tx_op, on_tx);
	if (ev_send(c->loop, &c->tx_op, c->fd, c->wire.p + c->wire.sent, c->wire.len - c->wire.sent,
		    MSG_NOSIGNAL) < 0) {
		conn_fail(c, -EBUSY);
		return;
	}
	c->tx_busy = true;
	c->nops++;
}

static int queue_hs(struct tp_conn *c, const uint8_t *msg, size_t len)
{
	int rc;

	if ((rc = sbuf_reserve(&c->fill, len + 2, c->sendq_max)) < 0)
		return rc;
	c->fill.p[c->fill.len] = (uint8_t)(len >> 8);
	c->fill.p[c->fill.len + 1] = (uint8_t)len;
	memcpy(c->fill.p + c->fill.len + 2, msg, len);
	c->fill.len += len + 2;
	kick_tx(c);
	return 0;
}

int tp_conn_send(struct tp_conn *c, const void *data, size_t len)
{
	int rc;

	if (c->st != C_UP)
		return -ENOTCONN;
	if (len > TP_FRAME_MAX)
		return -EMSGSIZE;
	if ((rc = sbuf_reserve(&c->fill, len + TP_OVERHEAD, c->sendq_max / 2)) < 0)
		return rc;
	c->fill.len += tp_seal(c->tp, data, len, c->fill.p + c->fill.len);
	kick_tx(c);
	return 0;
}

size_t tp_conn_queued(const struct tp_conn *c)
{
	return c->fill.len + (c->wire.len - c->wire.sent);
}

const uint8_t *tp_conn_peer_id(const struct tp_conn *c)
{
	return tp_peer_id(c->tp);
}

/* ---- receiving ---- */

/* Handle what is in rbuf; returns false if the connection ended. */
static bool consume(struct tp_conn *c)
{
	size_t off = c->rstart;

	while (c->st != C_CLOSING) {
		size_t left = c->rlen - off;

		if (c->st == C_HANDSHAKE) {
			uint8_t out[TP_HS_MAX];
			size_t mlen, olen;
			int rc;

			if (left < 2)
				break;
			mlen = (size_t)c->rbuf[off] << 8 | c->rbuf[off + 1];
			if (mlen > TP_HS_MAX) {
				conn_fail(c, -EPROTO);
				return false;
			}
			if (left < 2 + mlen)
				break;
			rc = tp_hs_input(c->tp, c->rbuf + off + 2, mlen, out, &olen);
			off += 2 + mlen;
			if (rc < 0) {
				log_info("handshake failed: %s", strerror(-rc));
				conn_fail(c, rc);
				return false;
			}
			if (olen && queue_hs(c, out, olen) < 0) {
				conn_fail(c, -ENOMEM);
				return false;
			}
			if (rc == 1) {
				c->st = C_UP;
				c->last_rx = c->last_tx = tm_mono_ms();
				set_deadline(c, P2P_MIN(c->o.keepalive_ms, c->o.idle_ms) / 2 + 1);
				if (c->cbs.up)
					c->cbs.up(c->arg, c);
			}
			continue;
		}
		size_t flen;
		long pl;

		if (left < TP_HDR_LEN)
			break;
		if (tp_frame_len(c->rbuf + off, &flen) < 0) {
			log_info("peer sent a frame over the maximum size: closing");
			conn_fail(c, -EMSGSIZE);
			return false;
		}
		if (left < flen)
			break;
		if ((pl = tp_open(c->tp, c->rbuf + off, flen)) < 0) {
			log_info("a frame failed authentication: closing");
			conn_fail(c, (int)pl);
			return false;
		}
		off += flen;
		if (pl && c->cbs.frame)
			c->cbs.frame(c->arg, c, c->rbuf + off - flen + TP_HDR_LEN, (size_t)pl);
	}
	if (c->st == C_CLOSING)
		return false;
	c->rstart = off;
	if (c->rstart == c->rlen) {
		c->rstart = c->rlen = 0;
	} else if (RBUF_CAP - c->rlen < TP_FRAME_MAX + TP_OVERHEAD) {
		/* Too little room after the partial frame for a whole one: move it
		 * to the front (rarely: only once the buffer is mostly used). */
		memmove(c->rbuf, c->rbuf + c->rstart, c->rlen - c->rstart);
		c->rlen -= c->rstart;
		c->rstart = 0;
	}
	return true;
}

static void on_rx(struct ev_op *op, int32_t res)
{
	struct tp_conn *c = container_of(op, struct tp_conn, rx_op);

	c->rx_busy = false;
	if (c->st == C_CLOSING) {
		op_done(c);
		return;
	}
	if (res <= 0) {
		op_done(c);
		conn_fail(c, res < 0 ? res : -ECONNRESET);
		return;
	}
	c->rlen += (size_t)res;
	c->last_rx = tm_mono_ms();
	/* The receive's reference keeps @c alive through the callbacks in consume(). */
	if (consume(c))
		arm_rx(c);
	op_done(c);
}

static void arm_rx(struct tp_conn *c)
{
	if (c->rx_busy || c->st == C_CLOSING)
		return;
	ev_op_init(&c->rx_op, on_rx);
	if (ev_recv(c->loop, &c->rx_op, c->fd, c->rbuf + c->rlen, RBUF_CAP - c->rlen, 0) < 0) {
		conn_fail(c, -EBUSY);
		return;
	}
	c->rx_busy = true;
	c->nops++;
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
	if (!o->sendq_max)
		o->sendq_max = 4 * MiB; /* two buffers of 2 MiB: sealing overlaps sending */
	if (o->sendq_max < 2 * (TP_FRAME_MAX + TP_OVERHEAD))
		o->sendq_max = 2 * (TP_FRAME_MAX + TP_OVERHEAD);
}

static struct tp_conn *conn_new(struct ev_loop *loop, int fd, bool initiator, const uint8_t *expect,
				const struct tp_conn_opts *o, const struct tp_conn_cbs *cbs,
				void *arg)
{
	struct tp_opts to = { .ident = o->ident,
			      .network = o->network,
			      .expect_id = expect,
			      .pow_bits = o->pow_bits,
			      .initiator = initiator };
	struct tp_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (!c)
		return NULL;
	c->o = *o;
	defaults(&c->o);
	c->loop = loop;
	c->fd = fd;
	c->cbs = *cbs;
	c->arg = arg;
	c->sendq_max = c->o.sendq_max;
	ev_timer_init(&c->timer, on_timer);
	if (!(c->rbuf = malloc(RBUF_CAP)) || tp_new(&to, &c->tp) < 0) {
		free(c->rbuf);
		free(c);
		return NULL;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return c;
}

static void start_handshake(struct tp_conn *c, bool initiator)
{
	c->st = C_HANDSHAKE;
	set_deadline(c, c->o.handshake_ms);
	if (initiator) {
		uint8_t out[TP_HS_MAX];
		size_t olen;

		if (tp_hs_start(c->tp, out, &olen) < 0 || queue_hs(c, out, olen) < 0) {
			conn_fail(c, -ENOMEM);
			return;
		}
	}
	arm_rx(c);
}

static void on_connected(struct ev_op *op, int32_t res)
{
	struct tp_conn *c = container_of(op, struct tp_conn, conn_op);

	if (c->st == C_CLOSING) {
		op_done(c);
		return;
	}
	op_done(c);
	if (res < 0) {
		log_info("connect failed: %s", strerror(-res));
		conn_fail(c, res);
		return;
	}
	start_handshake(c, true);
}

int tp_connect(struct ev_loop *loop, const struct sockaddr *addr, socklen_t len,
	       const uint8_t *expect_id, const struct tp_conn_opts *o,
	       const struct tp_conn_cbs *cbs, void *arg, struct tp_conn **ret)
{
	struct tp_conn *c;
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (!(c = conn_new(loop, fd, true, expect_id, o, cbs, arg))) {
		close(fd);
		return -ENOMEM;
	}
	c->st = C_CONNECTING;
	set_deadline(c, c->o.connect_ms);
	ev_op_init(&c->conn_op, on_connected);
	if (ev_connect(loop, &c->conn_op, fd, addr, len) < 0) {
		c->st = C_CLOSING;
		maybe_free(c);
		return -EBUSY;
	}
	c->nops++;
	*ret = c;
	return 0;
}

static void arm_accept(struct tp_listener *l);

static void on_accept(struct ev_op *op, int32_t res)
{
	struct tp_listener *l = container_of(op, struct tp_listener, op);
	struct tp_conn *c;

	l->busy = false;
	if (l->closing) {
		if (res >= 0)
			close(res);
		close(l->fd);
		free(l);
		return;
	}
	if (res >= 0) {
		if ((c = conn_new(l->loop, res, false, NULL, &l->o, &l->cbs, l->arg)))
			start_handshake(c, false);
		else
			close(res);
	} else if (res != -ECANCELED) {
		log_warn("accept: %s", strerror(-res));
	}
	arm_accept(l);
}

static void arm_accept(struct tp_listener *l)
{
	l->peer_len = sizeof(l->peer);
	ev_op_init(&l->op, on_accept);
	if (ev_accept(l->loop, &l->op, l->fd, (struct sockaddr *)&l->peer, &l->peer_len) < 0) {
		log_error("cannot accept connections (ring full)");
		return;
	}
	l->busy = true;
}

int tp_listen(struct ev_loop *loop, const struct sockaddr *addr, socklen_t len,
	      const struct tp_conn_opts *o, const struct tp_conn_cbs *cbs, void *arg,
	      struct tp_listener **ret)
{
	struct tp_listener *l = calloc(1, sizeof(*l));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1, rc;

	if (!l)
		return -ENOMEM;
	if ((l->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		rc = -errno;
		free(l);
		return rc;
	}
	(void)setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, addr, len) < 0 || listen(l->fd, 128) < 0 ||
	    getsockname(l->fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		close(l->fd);
		free(l);
		return rc;
	}
	l->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						: ((struct sockaddr_in6 *)&ss)->sin6_port);
	l->loop = loop;
	l->o = *o;
	l->cbs = *cbs;
	l->arg = arg;
	arm_accept(l);
	*ret = l;
	return 0;
}

uint16_t tp_listener_port(const struct tp_listener *l)
{
	return l->port;
}

void tp_listener_free(struct tp_listener *l)
{
	if (!l)
		return;
	if (!l->busy) {
		close(l->fd);
		free(l);
		return;
	}
	l->closing = true;
	(void)shutdown(l->fd, SHUT_RDWR);
	if (ev_cancel(l->loop, &l->op) < 0)
		log_debug("cancel accept: ring full");
}
