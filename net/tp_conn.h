/* SPDX-License-Identifier: MIT */
/*
 * net/tp_conn.h - encrypted peer connections (the engine of net/tp.h) over
 * TCP on the io_uring event loop of common/ev.h: listen, connect, handshake,
 * frames out and in, a deadline for every phase, keepalives, and a close
 * that delivers what was queued.
 *
 * Phases and their deadlines (tp_conn_opts; a missed one ends the
 * connection with -ETIMEDOUT and one log line saying which):
 *   connect    TCP connect (initiator)                        connect_ms
 *   handshake  from TCP up to both identities verified        handshake_ms
 *   up         nothing heard from the peer for idle_ms, or queued frames
 *              that make no progress for idle_ms; an empty keepalive
 *              frame goes out after keepalive_ms of our own silence
 *   closing    tp_conn_close(): queued frames go out, then the TCP
 *              stream is shut; at most linger_ms
 *
 * Memory: each connection maps a receive buffer (TP_WIRE_MAX + 256 KiB) and
 * a send queue (sendq_max) once, when it is made; pages are touched only as
 * traffic needs them. Sending seals straight into the queue, receiving
 * decrypts in place, so the data path allocates nothing and copies nothing
 * beyond the kernel's own copy and the cipher.
 *
 * Threading: everything runs on the loop's thread, callbacks included; none
 * of these functions may be called from another thread.
 */
#ifndef P2P_NET_TP_CONN_H
#define P2P_NET_TP_CONN_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/ev.h"
#include "net/tp.h"

struct tp_conn;
struct tp_listener;

struct tp_conn_cbs {
	/* Handshake done: tp_conn_peer_id() says who the peer is. */
	void (*up)(void *arg, struct tp_conn *c);
	/* One authenticated frame; @data (writable) is valid until return.
	 * Keepalives (empty frames) are not delivered. */
	void (*frame)(void *arg, struct tp_conn *c, uint8_t *data, size_t len);
	/* Optional: after tp_conn_send() said -ENOBUFS, the queue is at most
	 * half full again. */
	void (*writable)(void *arg, struct tp_conn *c);
	/*
	 * The connection ended (not called after tp_conn_close/abort). @reason:
	 * 0 the peer closed it between frames; -ETIMEDOUT a deadline passed;
	 * -EBADMSG a frame or handshake seal failed authentication; -EACCES
	 * another network or an unexpected peer; -EKEYREJECTED a peer id
	 * without the required proof of work; -EPROTO, -EMSGSIZE,
	 * -EPROTONOSUPPORT malformed, oversized or foreign peer input; or the
	 * socket's error (-ECONNREFUSED, -ECONNRESET...). @c is freed when
	 * this returns.
	 */
	void (*down)(void *arg, struct tp_conn *c, int reason);
};

struct tp_conn_opts {
	const struct peer_ident *ident; /* required; must outlive the connections */
	const uint8_t *network;		/* TP_NETWORK_LEN bytes (copied); NULL: the default */
	unsigned pow_bits;		/* proof of work required of peer ids */
	uint32_t connect_ms;		/* 0: 5000 */
	uint32_t handshake_ms;		/* 0: 5000 */
	uint32_t idle_ms;		/* 0: 60000 */
	uint32_t keepalive_ms;		/* 0: 15000 */
	uint32_t linger_ms;		/* 0: 5000 */
	size_t sendq_max; /* bytes of sealed frames queued; 0: 4 MiB; at least 2 * TP_WIRE_MAX */
	unsigned max_pending; /* listener: handshakes in progress at once; 0: 256 */
};

/*
 * tp_listen() - accept connections on @addr (port 0: any free port) and
 * handshake as responder. Callbacks get @arg until tp_conn_set_arg().
 * @opts and @cbs are copied. Returns 0 or -errno.
 */
P2P_MUST_CHECK int tp_listen(struct ev_loop *loop, const struct sockaddr *addr, socklen_t addr_len,
			     const struct tp_conn_opts *opts, const struct tp_conn_cbs *cbs,
			     void *arg, struct tp_listener **ret_listener);
/* The bound port (host order). */
uint16_t tp_listener_port(const struct tp_listener *l);
/* Stop accepting. Connections whose handshake is still running are aborted
 * (no callback); established ones go on. NULL is a no-op. */
void tp_listener_free(struct tp_listener *l);

/*
 * tp_connect() - connect to @addr and handshake as initiator. With
 * @expect_id (PEER_ID_LEN bytes, copied), any other peer is refused with
 * -EACCES. Failures after this returns come through cbs->down. Returns 0
 * (*ret_conn set; valid until down, close or abort) or -errno.
 */
P2P_MUST_CHECK int tp_connect(struct ev_loop *loop, const struct sockaddr *addr, socklen_t addr_len,
			      const uint8_t *expect_id, const struct tp_conn_opts *opts,
			      const struct tp_conn_cbs *cbs, void *arg, struct tp_conn **ret_conn);

/*
 * tp_conn_send() - seal one frame of @len bytes (1..TP_FRAME_MAX) into the
 * send queue; it goes out in order. Returns 0, -EINVAL (empty), -EMSGSIZE,
 * -ENOTCONN (not up, or closing), -ENOBUFS (queue full: wait for
 * cbs->writable). Callable from any callback of @c.
 */
P2P_MUST_CHECK int tp_conn_send(struct tp_conn *c, const void *data, size_t len);
/* The same, one frame gathered from @n pieces. */
P2P_MUST_CHECK int tp_conn_sendv(struct tp_conn *c, const struct iovec *iov, unsigned n);
/* Bytes queued and not yet taken by the kernel. */
size_t tp_conn_queued(const struct tp_conn *c);
/* Bytes the kernel holds for the socket: not yet sent, or sent and not yet
 * acknowledged (SIOCOUTQ); 0 if it cannot say. */
size_t tp_conn_wire_queued(const struct tp_conn *c);
/* Call cbs->writable once the queue holds at most @below bytes (0: half of
 * it), for senders that keep less queued than the queue could take. Only
 * useful while more than @below is queued. */
void tp_conn_want_writable(struct tp_conn *c, size_t below);
/* Let the kernel hold at most about @bytes of @c's data it has not sent yet
 * (TCP_NOTSENT_LOWAT; 0: no limit but the socket buffer). A small limit
 * keeps what is queued behind close to the wire on a slow link, at some CPU
 * cost on a fast one. */
void tp_conn_set_unsent_max(struct tp_conn *c, size_t bytes);

/* Once up: the peer's node id (PEER_ID_LEN bytes), else NULL. */
const uint8_t *tp_conn_peer_id(const struct tp_conn *c);
/* Once up: the session id both ends share (TP_SESSION_ID_LEN bytes), else NULL. */
const uint8_t *tp_conn_session_id(const struct tp_conn *c);
/* The peer's address as the socket sees it. */
const struct sockaddr *tp_conn_peer_addr(const struct tp_conn *c, socklen_t *ret_len);
/* "host:port", for log lines. */
const char *tp_conn_name(const struct tp_conn *c);
/* Frame and rekey counters of the session (zero before up). */
void tp_conn_stats(const struct tp_conn *c, struct tp_stats *ret_stats);
/* Later callbacks of @c get @arg. */
void tp_conn_set_arg(struct tp_conn *c, void *arg);

/*
 * tp_conn_close() - no more frames in or out: queued frames are sent (for
 * at most linger_ms), then the connection is shut and freed. No callback
 * runs for @c afterwards. NULL is a no-op.
 */
void tp_conn_close(struct tp_conn *c);
/* The same at once, dropping what is queued. NULL is a no-op. */
void tp_conn_abort(struct tp_conn *c);

#endif
