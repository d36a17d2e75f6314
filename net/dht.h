/* SPDX-License-Identifier: MIT */
/*
 * net/dht.h - Kademlia over UDP, as a protocol engine with no I/O.
 *
 * Like jech/dht, the caller owns the socket, the clock and the timers:
 * dht_input() consumes a datagram, the engine sends through a callback, and
 * dht_tick() does periodic work and says when it wants to run next. Times
 * are milliseconds on any monotonic clock the caller chooses, so tests and
 * the simulator (tools/dhtsim.c) run thousands of nodes in virtual time.
 *
 * Protocol: 256-bit ids, XOR distance, k = 20 contacts per bucket with a
 * replacement cache, iterative lookups with alpha = 3 requests in flight and
 * the standard termination rule (the k closest nodes seen have answered).
 * Timeouts follow each contact's measured round-trip time (SRTT + 4 RTTVAR,
 * as TCP), and a request slower than its contact usually is stops counting
 * against alpha, so lookups route around silent nodes instead of waiting
 * for them. Provider records (key -> peers holding it) expire and are
 * republished by their owner; storing one needs a token that only the
 * requester's address can have obtained. Messages: see dht_msg.c.
 */
#ifndef P2P_NET_DHT_H
#define P2P_NET_DHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define DHT_ID_LEN 32
#define DHT_K 20
#define DHT_ALPHA 3
#define DHT_MSG_MAX 1400     /* bytes per datagram, both ways */
#define DHT_PROVIDERS_MAX 16 /* providers returned per reply */
#define DHT_PROVIDER_TTL_MS (24 * 3600 * 1000ULL)

/* A UDP address: IPv4 (family 4) or IPv6 (family 6), port in host order. */
struct dht_addr {
	uint8_t family;
	uint16_t port;
	uint8_t ip[16];
};

struct dht_contact {
	uint8_t id[DHT_ID_LEN];
	struct dht_addr addr;
};

/*
 * A signed mutable record (after BEP 44): a small value published under
 * SHA-256(public key || salt), replaced only by a higher sequence number
 * signed by the same key. Nodes keep records for DHT_RECORD_TTL_MS; the
 * owner puts again to keep one alive.
 */
#define DHT_VALUE_MAX 1000
#define DHT_SALT_MAX 64
#define DHT_RECORD_TTL_MS (2 * 3600 * 1000ULL)

struct dht_record {
	uint8_t pk[32];
	uint8_t salt[DHT_SALT_MAX];
	uint8_t salt_len;
	uint64_t seq;
	uint16_t value_len;
	uint8_t value[DHT_VALUE_MAX];
	uint8_t sig[64];
};

/* The key a record lives under: SHA-256(pk || salt). */
void dht_record_target(const struct dht_record *r, uint8_t ret_target[static DHT_ID_LEN]);
/* Sign @r (pk must match @sk, libsodium's 64-byte Ed25519 secret key). */
void dht_record_sign(struct dht_record *r, const uint8_t sk[static 64]);
/* The bytes a record's signature covers, for signers that keep their key
 * elsewhere (the node identity); returns their length. */
#define DHT_RECORD_SIGNED_MAX (16 + 1 + DHT_SALT_MAX + 8 + 2 + DHT_VALUE_MAX)
size_t dht_record_signed_bytes(const struct dht_record *r,
			       uint8_t buf[static DHT_RECORD_SIGNED_MAX]);
P2P_MUST_CHECK bool dht_record_verify(const struct dht_record *r);

struct dht;

typedef void dht_send_fn(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len);
/* Fill @buf with @len random bytes (tests and the simulator pass a seeded one). */
typedef void dht_random_fn(void *arg, void *buf, size_t len);

struct dht_opts {
	const uint8_t *id; /* DHT_ID_LEN bytes */
	dht_send_fn *send;
	void *send_arg;
	dht_random_fn *random; /* NULL: libsodium */
	void *random_arg;
	uint64_t provider_ttl_ms; /* 0: DHT_PROVIDER_TTL_MS */
	uint32_t rate_per_s;	  /* datagrams accepted per source per second; 0: 50 */
	size_t max_provider_keys; /* keys stored for others; 0: 65536 */
	size_t rate_slots;	  /* sources tracked by the rate limiter; 0: 1024 */
};

P2P_MUST_CHECK int dht_new(const struct dht_opts *opts, uint64_t now, struct dht **ret_dht);
void dht_free(struct dht *d); /* NULL is a no-op; pending lookups are dropped without callbacks */

/* A datagram from @from. Malformed or unwanted input is dropped (and counted). */
void dht_input(struct dht *d, uint64_t now, const struct dht_addr *from, const uint8_t *buf,
	       size_t len);
/* Timers: retransmission-free timeouts, bucket refresh, pings, expiry,
 * republish. Returns the time it next wants to run. */
uint64_t dht_tick(struct dht *d, uint64_t now);

/* Ping @addr; a node that answers enters the routing table (bootstrap). */
void dht_ping(struct dht *d, uint64_t now, const struct dht_addr *addr);

struct dht_result {
	int rc; /* 0, -ETIMEDOUT (nobody answered), -ENOENT (no providers found) */
	struct dht_contact closest[DHT_K];
	size_t nclosest;
	struct dht_contact providers[DHT_PROVIDERS_MAX];
	size_t nproviders;
	bool has_record; /* dht_get: the newest valid record found */
	struct dht_record record;
	unsigned stored;  /* dht_put / dht_add_provider: nodes asked to store */
	unsigned hops;	  /* rounds of the iterative lookup until the result settled */
	unsigned queries; /* requests sent */
	unsigned answers; /* replies received */
	uint64_t elapsed_ms;
};

typedef void dht_done_fn(void *arg, const struct dht_result *res);

/* Lookups. Each calls @done exactly once (unless dht_free comes first).
 * Return 0, or -ENOMEM / -EAGAIN (too many lookups running). */
P2P_MUST_CHECK int dht_find_node(struct dht *d, uint64_t now,
				 const uint8_t target[static DHT_ID_LEN], dht_done_fn *done,
				 void *arg);
P2P_MUST_CHECK int dht_get_providers(struct dht *d, uint64_t now,
				     const uint8_t key[static DHT_ID_LEN], dht_done_fn *done,
				     void *arg);
/* Announce that we hold @key, reachable at @port (0: the port we send from),
 * on the k closest nodes, and again before the record expires. */
P2P_MUST_CHECK int dht_add_provider(struct dht *d, uint64_t now,
				    const uint8_t key[static DHT_ID_LEN], uint16_t port,
				    dht_done_fn *done, void *arg);
void dht_remove_provider(struct dht *d, const uint8_t key[static DHT_ID_LEN]);
/* Store @rec (signed) on the k closest nodes to its target. With @cas > 0,
 * nodes holding another sequence number than @cas refuse it. */
P2P_MUST_CHECK int dht_put(struct dht *d, uint64_t now, const struct dht_record *rec, uint64_t cas,
			   dht_done_fn *done, void *arg);
/* Find the newest record under @target (-ENOENT in rc if none). */
P2P_MUST_CHECK int dht_get(struct dht *d, uint64_t now, const uint8_t target[static DHT_ID_LEN],
			   dht_done_fn *done, void *arg);

/* ---- state and statistics ---- */

struct dht_stats {
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
	uint64_t dropped_malformed, dropped_rate, dropped_token;
	uint64_t timeouts;
	size_t contacts, replacements, buckets;
	size_t provider_keys, provider_records, records;
	size_t lookups_running;
	size_t mem_bytes, contact_bytes; /* memory, and memory per routing-table contact */
};
void dht_get_stats(const struct dht *d, struct dht_stats *ret_stats);

/* Contacts in the bucket covering distances with @prefix leading bits in
 * common with our id (0..255). */
size_t dht_bucket_size(const struct dht *d, unsigned prefix);

/* The routing table as bytes (for a file), and back: a restarted node pings
 * these to rejoin without a bootstrap node. Returns the length, or -ENOSPC. */
P2P_MUST_CHECK long dht_save(const struct dht *d, uint8_t *buf, size_t cap);
/* Pings every contact in @buf; returns how many, or -EPROTO. */
P2P_MUST_CHECK int dht_load(struct dht *d, uint64_t now, const uint8_t *buf, size_t len);

/* XOR distance helpers, exposed for tests and the simulator. */
int dht_id_cmp_dist(const uint8_t target[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
		    const uint8_t b[static DHT_ID_LEN]);
unsigned dht_common_prefix(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN]);

#endif
