/* SPDX-License-Identifier: MIT */
/*
 * net/dht_node.h - the DHT on a real UDP socket, driven by the io_uring
 * event loop: receive, send, timers, bootstrap by name, LAN discovery by
 * multicast, and the routing table saved to a file so a restarted node
 * rejoins without a bootstrap node. The protocol itself is net/dht.h.
 */
#ifndef P2P_NET_DHT_NODE_H
#define P2P_NET_DHT_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/ev.h"
#include "net/dht.h"

#define DHT_NODE_DEFAULT_PORT 7575
#define LAN_GROUP "239.192.80.50"
#define LAN_PORT 7576

struct dht_node_opts {
	const uint8_t *id;	/* DHT_ID_LEN bytes */
	const char *listen;	/* "ADDR:PORT", or NULL: 0.0.0.0:7575, else any free port */
	const char *table_path; /* where the routing table is kept; NULL: nowhere */
	bool lan;		/* announce and listen on the LAN multicast group */
	uint64_t provider_ttl_ms;
};

struct dht_node;

P2P_MUST_CHECK int dht_node_new(struct ev_loop *loop, const struct dht_node_opts *opts,
				struct dht_node **ret_node);
/* Saves the routing table, closes the sockets. NULL is a no-op. */
void dht_node_free(struct dht_node *n);

/* Resolve "HOST:PORT" and ping it. -EINVAL for a malformed address, or the resolver's error. */
P2P_MUST_CHECK int dht_node_bootstrap(struct dht_node *n, const char *hostport);

/* The engine, for lookups; call dht_node_kick() after starting one. */
struct dht *dht_node_dht(struct dht_node *n);
void dht_node_kick(struct dht_node *n);
uint64_t dht_node_now(const struct dht_node *n);

/* "0.0.0.0:7575" */
const char *dht_node_listen_str(const struct dht_node *n);
uint16_t dht_node_port(const struct dht_node *n);
/* LAN announcements received from other nodes. */
uint64_t dht_node_lan_heard(const struct dht_node *n);

/* "HOST:PORT" numerically or by name: up to @max addresses into @out
 * (*ret_n of them). -EINVAL malformed, -EHOSTUNREACH nothing found. */
P2P_MUST_CHECK int dht_addr_resolve(const char *hostport, struct dht_addr *out, size_t max,
				    size_t *ret_n);
/* Parse "ADDR:PORT" or "[V6]:PORT" numerically. */
P2P_MUST_CHECK int dht_addr_parse(const char *s, struct dht_addr *ret);
void dht_addr_str(const struct dht_addr *a, char *buf, size_t len);
/* Between dht_addr and socket addresses (v4-mapped IPv6 becomes IPv4);
 * from: false for another family. */
struct sockaddr_storage;
void dht_addr_to_sockaddr(const struct dht_addr *a, struct sockaddr_storage *ss, socklen_t *len);
bool dht_addr_from_sockaddr(const struct sockaddr_storage *ss, struct dht_addr *a);

#endif
