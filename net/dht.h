/* SPDX-License-Identifier: MIT */
/*
 * net/dht.h - Kademlia over UDP, as a protocol engine that does no I/O.
 *
 * Like jech/dht, the caller owns the socket, the clock and the timers:
 *
 *	dht_new(&opts, now, &d);            opts: our id, a send callback, randomness
 *	on every datagram:  dht_input(d, now, &from, buf, len);
 *	whenever the time returned by the last dht_tick() (or dht_input/lookup
 *	start: call dht_tick after them) has come:  next = dht_tick(d, now);
 *	dht_bootstrap(d, now, &addr);       or dht_load() of a saved table
 *	dht_find_node / dht_get_providers / dht_add_provider / dht_put / dht_get
 *	                                    with a completion callback
 *
 * Times are milliseconds on any monotonic clock the caller chooses (tests and
 * tools/dhtsim run thousands of engines in virtual time). Callbacks (send,
 * random, done) run inside the dht_* call that triggered them; a done
 * callback may start new lookups but must not call dht_free. Single-threaded:
 * one engine is used by one thread at a time.
 *
 * Protocol: 256-bit ids, XOR distance, buckets of k = 20 contacts with
 * replacement caches, split only when they cover our own id; iterative
 * lookups with alpha = 3 requests in flight and the standard termination
 * rule (the k closest nodes seen have answered or failed). Timeouts follow
 * each contact's measured round-trip time (SRTT + 4 RTTVAR, as TCP); a slow
 * request is sent once more and stops holding up its lookup, which asks the
 * next candidate instead. Provider records (key -> peers that hold it) and
 * signed mutable records (after BEP 44) expire and are republished by their
 * owners; storing needs a token that only the requester's address can have
 * obtained. Layout of the datagrams: net/dht_msg.c. Figures: net/README.md.
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
#define DHT_PROVIDERS_MAX 16 /* providers per reply and per lookup result */
#define DHT_PROVIDER_TTL_MS (24 * 3600 * 1000ULL)
#define DHT_MSG_TYPES 16 /* message type codes are below this (statistics) */

/* A UDP address: IPv4 (family 4) or IPv6 (family 6), port in host order. */
struct dht_addr {
	uint8_t family;
	uint16_t port;
	uint8_t ip[16]; /* IPv4: the first 4 bytes, the rest zero */
};

struct dht_contact {
	uint8_t id[DHT_ID_LEN];
	struct dht_addr addr;
};

/* Same family, address and port. */
bool dht_addr_eq(const struct dht_addr *a, const struct dht_addr *b);

/*
 * A signed mutable record (after BEP 44): a small value published under
 * SHA-256(public key || salt), replaced only by a higher sequence number
 * signed by the same key. Nodes keep records for the record TTL (default
 * 2 h); the owner puts again to keep one alive.
 */
#define DHT_VALUE_MAX 1000
#define DHT_SALT_MAX 64
#define DHT_RECORD_TTL_MS (2 * 3600 * 1000ULL)

struct dht_record {
	uint8_t pk[32]; /* Ed25519 public key */
	uint8_t salt[DHT_SALT_MAX];
	uint8_t salt_len;
	uint64_t seq;
	uint16_t value_len;
	uint8_t value[DHT_VALUE_MAX];
	uint8_t sig[64];
};

/* The key a record lives under: SHA-256(pk || salt). */
void dht_record_target(const struct dht_record *r, uint8_t ret_target[static DHT_ID_LEN]);
/* Sign @r (its pk must match @sk, libsodium's 64-byte Ed25519 secret key). */
void dht_record_sign(struct dht_record *r, const uint8_t sk[static 64]);
/* The bytes a record's signature covers, for signers that keep their key
 * elsewhere (the node identity); returns their length. */
#define DHT_RECORD_SIGNED_MAX (16 + 1 + DHT_SALT_MAX + 8 + 2 + DHT_VALUE_MAX)
size_t dht_record_signed_bytes(const struct dht_record *r,
			       uint8_t buf[static DHT_RECORD_SIGNED_MAX]);
/* Lengths within limits and the signature valid. */
P2P_MUST_CHECK bool dht_record_verify(const struct dht_record *r);

struct dht;

/* Send @len bytes to @to. The engine never waits for it; a datagram that
 * cannot be sent is simply lost (timeouts cover it). */
typedef void dht_send_fn(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len);
/* Fill @buf with @len random bytes (tests and the simulator pass a seeded one). */
typedef void dht_random_fn(void *arg, void *buf, size_t len);

struct dht_opts {
	const uint8_t *id; /* DHT_ID_LEN bytes, copied */
	dht_send_fn *send;
	void *send_arg;
	dht_random_fn *random; /* NULL: libsodium's randombytes */
	void *random_arg;
	uint64_t provider_ttl_ms; /* 0: DHT_PROVIDER_TTL_MS; owners republish at half */
	uint64_t record_ttl_ms;	  /* 0: DHT_RECORD_TTL_MS */
	uint64_t refresh_ms;	  /* refresh buckets untouched this long; 0: 15 min */
	uint32_t rate_per_s;	  /* requests accepted per source address per second; 0: 50 */
	size_t rate_slots;	  /* sources tracked by the rate limiter; 0: 1024 */
	size_t max_provider_keys; /* keys stored for others; 0: 65536 */
	size_t providers_per_key; /* 0: 64 */
	size_t max_records;	  /* signed records stored for others; 0: 4096 */
	size_t store_mem_max;	  /* bytes for both kinds of records; 0: 64 MiB */
	unsigned pow_bits;	  /* contacts' ids need this proof of work (net/ident.h) */
};

/* Returns 0, -EINVAL (no id or send), -ENOMEM, or -EIO (libsodium). */
P2P_MUST_CHECK int dht_new(const struct dht_opts *opts, uint64_t now, struct dht **ret_dht);
/* NULL is a no-op; running lookups are dropped without callbacks. */
void dht_free(struct dht *d);

/* A datagram from @from. Malformed, unsolicited or over-rate input is dropped
 * and counted (dht_get_stats); @buf is only borrowed. */
void dht_input(struct dht *d, uint64_t now, const struct dht_addr *from, const uint8_t *buf,
	       size_t len);
/* Timeouts, retransmissions, lookups' next steps, bucket refresh, liveness
 * pings, expiry, republish. Returns when it next wants to run (> @now unless
 * work is already due). */
uint64_t dht_tick(struct dht *d, uint64_t now);

/* Ping @addr; a node that answers enters the routing table. */
void dht_ping(struct dht *d, uint64_t now, const struct dht_addr *addr);
/* Join through @addr: ping it, and once it answers look our own id up, which
 * fills the table around us. Returns 0, -EINVAL, or -EAGAIN (too many
 * requests in flight). */
P2P_MUST_CHECK int dht_bootstrap(struct dht *d, uint64_t now, const struct dht_addr *addr);

struct dht_result {
	/* 0; -ETIMEDOUT: nobody answered (or no store was acknowledged);
	 * -ENOENT: the lookup ended without providers (dht_get_providers) or a
	 * record (dht_get); -ESTALE (dht_put): one of the k closest holds a
	 * newer record than the put expects (nothing stored; the record is in
	 * @record), or a node refused it as stale (others may have stored it). */
	int rc;
	struct dht_contact closest[DHT_K]; /* nodes that answered, closest first */
	size_t nclosest;
	struct dht_contact providers[DHT_PROVIDERS_MAX];
	size_t nproviders;
	bool has_record; /* dht_get: the newest valid record; dht_put: the newer one (-ESTALE) */
	struct dht_record record;
	unsigned stored;  /* dht_put / dht_add_provider: nodes that acknowledged */
	unsigned refused; /* ... and nodes that refused */
	unsigned hops;	  /* see net/README.md: the hop of the closest answer */
	unsigned queries; /* requests sent, retransmissions and stores included */
	unsigned answers; /* replies received */
	uint64_t elapsed_ms;
};

typedef void dht_done_fn(void *arg, const struct dht_result *res);

/*
 * Lookups. Each calls @done (may be NULL) exactly once, from a later
 * dht_input() or dht_tick(), never from inside the start call, unless
 * dht_free comes first. @res is valid during the call only. Return 0,
 * -ENOMEM, or -EAGAIN (too many lookups running).
 */
P2P_MUST_CHECK int dht_find_node(struct dht *d, uint64_t now,
				 const uint8_t target[static DHT_ID_LEN], dht_done_fn *done,
				 void *arg);
/* Ends as soon as an answer names providers (up to DHT_PROVIDERS_MAX). */
P2P_MUST_CHECK int dht_get_providers(struct dht *d, uint64_t now,
				     const uint8_t key[static DHT_ID_LEN], dht_done_fn *done,
				     void *arg);
/* Announce that we hold @key, reachable at @port (0: the port we send from),
 * on the k closest nodes, and again every half TTL until
 * dht_remove_provider(). */
P2P_MUST_CHECK int dht_add_provider(struct dht *d, uint64_t now,
				    const uint8_t key[static DHT_ID_LEN], uint16_t port,
				    dht_done_fn *done, void *arg);
void dht_remove_provider(struct dht *d, const uint8_t key[static DHT_ID_LEN]);
/* Store @rec (signed) on the k closest nodes to its target, unless one of
 * them holds a newer record: with @cas > 0, newer than @cas (nodes also
 * refuse it if they hold a number above @cas: compare-and-swap, so sequence
 * numbers used with it start at 1); else newer than @rec. Not atomic across
 * nodes: a writer that gets -ESTALE reads again and retries. -EBADMSG if
 * @rec does not verify. The owner puts again to keep a record alive. */
P2P_MUST_CHECK int dht_put(struct dht *d, uint64_t now, const struct dht_record *rec, uint64_t cas,
			   dht_done_fn *done, void *arg);
/* Find the newest valid record under @target. */
P2P_MUST_CHECK int dht_get(struct dht *d, uint64_t now, const uint8_t target[static DHT_ID_LEN],
			   dht_done_fn *done, void *arg);

/* ---- state and statistics ---- */

struct dht_type_stats {
	uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
};

struct dht_stats {
	uint64_t msgs_in, msgs_out, bytes_in, bytes_out; /* every datagram */
	struct dht_type_stats type[DHT_MSG_TYPES];	 /* by type code (dht_msg_type_name) */
	uint64_t dropped_malformed, dropped_rate, dropped_token, dropped_unsolicited;
	uint64_t timeouts, retransmits, lookups_done;
	size_t contacts, replacements, buckets;
	size_t provider_keys, provider_records, records, own_keys;
	size_t lookups_running, requests_inflight;
	size_t mem_bytes;     /* everything the engine allocated */
	size_t table_bytes;   /* ... of which the routing table */
	size_t store_bytes;   /* ... and records stored for others */
	size_t contact_bytes; /* table bytes per contact (cached ones included) */
};
void dht_get_stats(const struct dht *d, struct dht_stats *ret_stats);
/* "PING", "FIND_NODE", ...; NULL for an unused code. */
const char *dht_msg_type_name(unsigned type);

/* One bucket: contacts whose id shares prefix_lo..prefix_hi leading bits
 * with ours (only the last bucket, which holds our own id's range, spans
 * more than one length). */
struct dht_bucket_info {
	unsigned prefix_lo, prefix_hi;
	size_t contacts, replacements;
};
/* Fills up to @max entries, closest bucket last; returns how many buckets exist. */
size_t dht_buckets(const struct dht *d, struct dht_bucket_info *out, size_t max);
/* Contacts sharing exactly @prefix leading bits with our id (0..255). */
size_t dht_bucket_size(const struct dht *d, unsigned prefix);

/* The routing table as bytes (the caller writes the file), and back: a
 * restarted node puts these contacts in its table, checks them and looks
 * itself up through them, so it rejoins without a bootstrap node.
 * dht_save returns the length, or -ENOSPC. DHT_SAVE_MAX bytes always suffice. */
#define DHT_SAVE_MAX (9 + 256 * DHT_K * (DHT_ID_LEN + 19 + 2))
P2P_MUST_CHECK long dht_save(const struct dht *d, uint8_t *buf, size_t cap);
/* Returns how many contacts were taken, or -EPROTO for a damaged buffer. */
P2P_MUST_CHECK int dht_load(struct dht *d, uint64_t now, const uint8_t *buf, size_t len);

/* XOR distance: <0 if @a is closer to @target than @b, 0 if equal, >0 otherwise. */
int dht_id_cmp_dist(const uint8_t target[static DHT_ID_LEN], const uint8_t a[static DHT_ID_LEN],
		    const uint8_t b[static DHT_ID_LEN]);
/* Leading bits @a and @b have in common (256 if equal). */
unsigned dht_common_prefix(const uint8_t a[static DHT_ID_LEN], const uint8_t b[static DHT_ID_LEN]);

#endif
