/* SPDX-License-Identifier: MIT */
/*
 * net/tp_conn.h - encrypted peer connections (net/tp.h) over TCP on the
 * io_uring event loop: listen, connect, handshake, send and receive frames,
 * with a deadline for every phase and keepalives.
 *
 * Frames are queued sealed; at most one send and one receive are in flight
 * per connection, over buffers allocated once per connection, so the data
 * path allocates nothing. Callbacks run on the loop thread.
 */
#ifndef P2P_NET_TP_CONN_H
#define P2P_NET_TP_CONN_H

#include <stdint.h>
#include <sys/socket.h>

#include "common/ev.h"
#include "net/tp.h"

struct tp_conn;
struct tp_listener;

struct tp_conn_cbs {
	/* Handshake done: tp_conn_peer_id() says who it is. */
	void (*up)(void *arg, struct tp_conn *c);
	/* One frame; @data (writable) is valid until the callback returns. */
	void (*frame)(void *arg, struct tp_conn *c, uint8_t *data, size_t len);
	/* The connection failed or the peer closed it (@reason: -ECONNRESET,
	 * -ETIMEDOUT, -EBADMSG, -EACCES...); @c is freed after this returns. */
	void (*down)(void *arg, struct tp_conn *c, int reason);
};

struct tp_conn_opts {
	const struct peer_ident *ident; /* required */
	const uint8_t *network;		/* NULL: the default network */
	unsigned pow_bits;
	uint32_t connect_ms;   /* 0: 5000 */
	uint32_t handshake_ms; /* 0: 5000 */
	uint32_t idle_ms;      /* nothing heard for this long ends it; 0: 60000 */
	uint32_t keepalive_ms; /* an empty frame when we have been quiet; 0: 15000 */
	size_t sendq_max;      /* bytes of sealed frames queued; 0: 4 MiB */
};

P2P_MUST_CHECK int tp_listen(struct ev_loop *loop, const struct sockaddr *addr, socklen_t len,
			     const struct tp_conn_opts *opts, const struct tp_conn_cbs *cbs,
			     void *arg, struct tp_listener **ret_listener);
uint16_t tp_listener_port(const struct tp_listener *l);
void tp_listener_free(struct tp_listener *l); /* open connections stay */

/* Connect to @addr; with @expect_id, any other peer is refused (-EACCES). */
P2P_MUST_CHECK int tp_connect(struct ev_loop *loop, const struct sockaddr *addr, socklen_t len,
			      const uint8_t *expect_id, const struct tp_conn_opts *opts,
			      const struct tp_conn_cbs *cbs, void *arg, struct tp_conn **ret_conn);

/* Queue one frame. -EMSGSIZE over TP_FRAME_MAX, -ENOBUFS when the queue is
 * full (wait for tp_conn_queued() to drop), -ENOTCONN before it is up. */
P2P_MUST_CHECK int tp_conn_send(struct tp_conn *c, const void *data, size_t len);
size_t tp_conn_queued(const struct tp_conn *c);
const uint8_t *tp_conn_peer_id(const struct tp_conn *c);
/* Close without a down callback; memory goes once nothing is in flight. */
void tp_conn_close(struct tp_conn *c);

#endif
