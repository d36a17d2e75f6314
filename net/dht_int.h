/* SPDX-License-Identifier: MIT */
/*
 * net/dht_int.h - what the DHT's files share: the message codec
 * (dht_msg.c), the routing table (dht_rt.c), the record stores
 * (dht_store.c), requests and the engine (dht.c), lookups (dht_lookup.c).
 * Included only by net/dht_*.c, the unit tests and the fuzz target.
 */
#ifndef P2P_NET_DHT_INT_H
#define P2P_NET_DHT_INT_H

#include "net/dht.h"

#include <sodium.h>
#include <string.h>

/* ==== messages (dht_msg.c) ==== */

#define DHT_VERSION 2
#define DHT_HDR_LEN (1 + 1 + 8 + DHT_ID_LEN)

enum dht_type {
	DHT_PING = 1,	       /* - */
	DHT_PONG = 2,	       /* observed address */
	DHT_FIND_NODE = 3,     /* target */
	DHT_NODES = 4,	       /* token, nodes */
	DHT_GET_PROVIDERS = 5, /* key (in target) */
	DHT_PROVIDERS = 6,     /* token, providers, nodes */
	DHT_ADD_PROVIDER = 7,  /* key, token, port */
	DHT_ACK = 8,	       /* - */
	DHT_ERROR = 9,	       /* code, seq */
	DHT_GET = 10,	       /* target, seq (send the record only if newer) */
	DHT_VALUE = 11,	       /* token, [record], nodes */
	DHT_PUT = 12,	       /* token, cas, record */
	DHT_TYPE_END
};
_Static_assert(DHT_TYPE_END <= DHT_MSG_TYPES, "type codes fit the statistics");

enum dht_err {
	DHT_ERR_TOKEN = 1, /* missing, wrong or expired write token */
	DHT_ERR_SEQ = 2,   /* not newer than the record stored (seq says which) */
	DHT_ERR_CAS = 3,   /* compare-and-swap failed (seq: the one stored) */
	DHT_ERR_SIG = 4,   /* the record does not verify */
	DHT_ERR_FULL = 5,  /* no room for another key or record */
};

/* A decoded message; which fields mean something depends on the type. */
struct dht_msg {
	uint8_t type;
	uint64_t txid;
	uint8_t sender[DHT_ID_LEN];
	uint8_t target[DHT_ID_LEN]; /* FIND_NODE, GET_PROVIDERS, ADD_PROVIDER, GET */
	uint64_t token;		    /* NODES, PROVIDERS, VALUE, ADD_PROVIDER, PUT */
	uint16_t port;		    /* ADD_PROVIDER: 0 = the source port */
	uint8_t error;		    /* ERROR: enum dht_err */
	uint64_t seq;		    /* ERROR, GET */
	uint64_t cas;		    /* PUT: 0 = none */
	struct dht_addr observed;   /* PONG: the requester's address as seen by the responder */
	size_t nnodes, nproviders;
	struct dht_contact nodes[DHT_K];
	uint8_t node_rtt[DHT_K]; /* per node: the sender's round trip to it (dht__rtt_code) */
	struct dht_contact providers[DHT_PROVIDERS_MAX];
	bool has_record;	  /* VALUE; always for PUT */
	struct dht_record record; /* VALUE, PUT */
};

/* Start a message to send: the header, empty lists, zero scalars; the
 * caller sets the fields of its type (target, nodes, record, ...). */
static inline void dht__msg_init(struct dht_msg *m, uint8_t type, uint64_t txid)
{
	m->type = type;
	m->txid = txid;
	m->nnodes = m->nproviders = 0;
	memset(m->node_rtt, 0, sizeof(m->node_rtt));
	m->has_record = false;
	m->token = m->seq = m->cas = 0;
	m->port = 0;
	m->error = 0;
}

/* 0; -EMSGSIZE over DHT_MSG_MAX, -EPROTONOSUPPORT for another version,
 * -EPROTO for anything else malformed (every form: tests/unit/test_dht_msg.c).
 * Only the fields of the decoded type are set (the rest of the 3 KiB struct
 * is left alone: clearing it would cost more than parsing a small datagram);
 * counts, has_record and the scalars are always set. */
P2P_MUST_CHECK int dht__msg_decode(const uint8_t *buf, size_t len, struct dht_msg *ret_msg);
/* Encodes into @buf, dropping trailing list entries (nodes, then providers)
 * that would not fit. Returns the length, or 0 for a message that cannot be
 * encoded (unknown type, invalid address, record over its limits). */
size_t dht__msg_encode(const struct dht_msg *m, uint8_t buf[static DHT_MSG_MAX]);
/* Family 4 or 6, port not 0, address not all zero. */
bool dht__addr_valid(const struct dht_addr *a);
/* Bytes @c takes on the wire. */
size_t dht__contact_wire_len(const struct dht_contact *c);

/* ==== the routing table (dht_rt.c) ==== */

#define DHT_REPL_MAX 8	/* replacement cache per bucket */
#define DHT_FAILS_MAX 2 /* requests in a row a contact may miss before it is replaced */
#define DHT_BUCKETS_MAX 256

enum {
	DHT__C_PINGING = 1U << 0,  /* a liveness ping is out */
	DHT__C_VERIFIED = 1U << 1, /* it has answered one of our requests */
};

struct dht__contact {
	uint8_t id[DHT_ID_LEN];
	struct dht_addr addr;
	uint32_t seen_s;       /* last answer or request from it, s; 0: never (loaded) */
	uint16_t srtt, rttvar; /* ms; srtt 0: never measured */
	uint8_t fails;	       /* requests in a row it did not answer */
	uint8_t flags;	       /* DHT__C_* */
};
_Static_assert(sizeof(struct dht__contact) <= 64, "a contact stays within a cache line");

struct dht__bucket {
	struct dht__contact *c;	   /* least recently seen first */
	struct dht__contact *repl; /* most recently heard last */
	uint8_t n, cap, nrepl, caprepl;
	uint32_t heard_s;     /* last time a contact joined it or answered us, s */
	uint32_t refreshed_s; /* last refresh lookup in its range, s */
};

/*
 * Buckets by common prefix length L with our id: bucket i < nb - 1 holds
 * L == i, the last bucket L >= nb - 1 (our own id's range: the only one that
 * splits, standard Kademlia).
 */
struct dht__rt {
	uint8_t self[DHT_ID_LEN];
	struct dht__bucket *b;
	uint16_t nb, capb;
	size_t ncontacts, nrepl;
	unsigned pow_bits;
};

enum dht__rt_heard_rc {
	DHT__RT_REFUSED, /* our own id, an invalid address, or no proof of work */
	DHT__RT_UPDATED, /* already a contact: refreshed */
	DHT__RT_ADDED,	 /* new contact */
	DHT__RT_CACHED,	 /* in the replacement cache (bucket full) */
	DHT__RT_UNKNOWN, /* a request from a node we could add: ping it first */
	DHT__RT_MOVED,	 /* a request from a known id at another address: ignored */
	DHT__RT_NOMEM,
};

P2P_MUST_CHECK int dht__rt_init(struct dht__rt *rt, const uint8_t self[static DHT_ID_LEN],
				unsigned pow_bits);
void dht__rt_done(struct dht__rt *rt);
/* The bucket @id falls in (id != self). */
unsigned dht__rt_bucket_of(const struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN]);
/* A contact in the table (not the cache); valid until the next dht__rt_* call
 * that changes the table. */
struct dht__contact *dht__rt_find(const struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN]);
/*
 * @id was heard from @addr at @now: an answer to our request when @replied
 * (with its round-trip time @rtt_ms, or -1 if unmeasured), else a request.
 * When a full bucket has a contact worth checking (not heard from in
 * @stale_s seconds and not already being pinged), *ret_probe points at it:
 * the caller pings it and reports the outcome. Returns enum dht__rt_heard_rc.
 */
int dht__rt_heard(struct dht__rt *rt, uint64_t now, const uint8_t id[static DHT_ID_LEN],
		  const struct dht_addr *addr, bool replied, int rtt_ms, uint32_t stale_s,
		  struct dht__contact **ret_probe);
/* @id did not answer. After DHT_FAILS_MAX misses in a row the most recently
 * heard cached contact takes its place; returns that one (unverified ones
 * deserve a ping), or NULL. */
struct dht__contact *dht__rt_failed(struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN]);
/* Remove @id from bucket or cache (tests, a node that moved). */
bool dht__rt_remove(struct dht__rt *rt, const uint8_t id[static DHT_ID_LEN]);
/* Put @c in the table unverified, as if loaded from a file. */
int dht__rt_add_unverified(struct dht__rt *rt, const struct dht_contact *c);
/* The @max (<= 2 * DHT_K + 1) closest contacts to @target that are not
 * failing, closest first, leaving out @exclude (may be NULL); with
 * @ret_srtt, their round-trip estimates too (ms, 0 if unmeasured). */
size_t dht__rt_closest(const struct dht__rt *rt, const uint8_t target[static DHT_ID_LEN],
		       const uint8_t *exclude, struct dht_contact *out, uint16_t *ret_srtt,
		       size_t max);
/* A random id in bucket @i's range, from @rnd (DHT_ID_LEN random bytes). */
void dht__rt_random_id(const struct dht__rt *rt, unsigned i, const uint8_t *rnd,
		       uint8_t ret_id[static DHT_ID_LEN]);
/* Bytes allocated by the table. */
size_t dht__rt_mem(const struct dht__rt *rt);
/* Serialise the live contacts (layout in dht_rt.c); length or -ENOSPC. */
long dht__rt_save(const struct dht__rt *rt, uint8_t *buf, size_t cap);
/* Check all of @buf, then add its contacts unverified. Returns how many were
 * taken, -EPROTO for a damaged buffer (nothing taken), or -ENOMEM. */
int dht__rt_load(struct dht__rt *rt, const uint8_t *buf, size_t len);
/* The RTT estimator, shared with the engine's all-contacts estimate. */
void dht__rtt_update(uint32_t *srtt, uint32_t *rttvar, uint32_t rtt);
/* Round trips in one byte, four steps per doubling: 0 unknown, 1 under a
 * millisecond, and so on; and back to the most ms a code stands for. */
uint8_t dht__rtt_code(uint32_t ms);
uint32_t dht__rtt_ms(uint8_t code);

/* ==== records stored for others (dht_store.c) ==== */

/* An open-addressing table of entries that start with a 32-byte key, hashed
 * with a secret SipHash key (peers choose the keys, so they must not be able
 * to choose collisions). */
struct dht__htab {
	void **slot;
	size_t cap, n; /* cap a power of two (or 0), n <= cap / 2 */
	size_t sweep;  /* expiry resumes at this slot */
	uint8_t sipkey[16];
};

struct dht__provider {
	struct dht_contact c;
	uint64_t expires;
};

struct dht__pkey {
	uint8_t key[DHT_ID_LEN];
	uint16_t n, cap;
	struct dht__provider *p;
};

struct dht__stored {
	uint8_t target[DHT_ID_LEN];
	uint64_t expires;
	struct dht_record r;
};

struct dht__store {
	struct dht__htab prov, recs;
	size_t max_keys, per_key, max_records, mem_max;
	uint64_t provider_ttl, record_ttl;
	size_t nprov; /* provider records over all keys */
	size_t mem;   /* bytes of entries (the tables' slot arrays excluded) */
};

P2P_MUST_CHECK int dht__store_init(struct dht__store *s, const struct dht_opts *o,
				   const uint8_t sipkey[static 16]);
void dht__store_done(struct dht__store *s);
/* Store or refresh @c as a provider of @key. 0, or -ENOSPC (caps), -ENOMEM. */
P2P_MUST_CHECK int dht__prov_add(struct dht__store *s, uint64_t now,
				 const uint8_t key[static DHT_ID_LEN], const struct dht_contact *c);
/* Up to @max live providers of @key, starting at a rotating offset @start. */
size_t dht__prov_get(const struct dht__store *s, uint64_t now, const uint8_t key[static DHT_ID_LEN],
		     size_t start, struct dht_contact *out, size_t max);
/* A put: 0 or enum dht_err (with the stored seq in *ret_seq for SEQ and CAS). */
int dht__rec_put(struct dht__store *s, uint64_t now, const struct dht_record *r, uint64_t cas,
		 uint64_t *ret_seq);
/* The live record under @target, or NULL; valid until the next store call. */
const struct dht_record *dht__rec_get(const struct dht__store *s, uint64_t now,
				      const uint8_t target[static DHT_ID_LEN]);
/* Drop expired entries, visiting at most @budget slots; returns slots visited. */
size_t dht__store_expire(struct dht__store *s, uint64_t now, size_t budget);
size_t dht__store_mem(const struct dht__store *s);

/* ==== the engine (dht.c, dht_lookup.c) ==== */

#define DHT_LOOKUPS_MAX 64
#define DHT_RPC_MAX 1024   /* requests in flight per engine */
#define DHT_CANDS 64	   /* candidates a lookup remembers */
#define DHT_RTT_BUCKETS 72 /* four per doubling, up to 2^18 ms */

struct dht__rpc {
	uint64_t txid; /* 0: free; low 16 bits = slot index */
	struct dht_addr to;
	uint8_t id[DHT_ID_LEN]; /* the node we expect (when id_known) */
	uint8_t type;		/* the request's type */
	bool id_known, slow, retx;
	int16_t lookup;	     /* lookup slot, or -1 */
	uint8_t cand;	     /* candidate slot in that lookup */
	uint32_t lookup_gen; /* ... as long as the lookup is this generation */
	uint64_t sent, soft, retx_at,
	    hard; /* sent; slow (the lookup moves on); sent again; failed */
};

struct dht_lookup;

struct dht {
	uint8_t id[DHT_ID_LEN];
	dht_send_fn *send;
	void *send_arg;
	dht_random_fn *random;
	void *random_arg;
	uint64_t refresh_ms;
	uint32_t rate_per_s;

	struct dht__rt rt;
	struct dht__store store;

	struct dht__rpc *rpc; /* grows up to DHT_RPC_MAX */
	uint16_t *rpc_free;   /* stack of free slots */
	size_t nrpc, caprpc, nfree;
	uint64_t rpc_next; /* no request deadline comes before this */

	struct dht_lookup *look[DHT_LOOKUPS_MAX];
	uint32_t look_gen;
	size_t nlook;
	bool look_due; /* a lookup has something to do at the next tick */

	struct dht__own *own; /* keys we provide (republished) */
	size_t nown, capown;

	uint8_t secret[2][32];		     /* write tokens: current and previous */
	crypto_auth_hmacsha256_state mac[2]; /* ... keyed once per rotation */
	uint64_t secret_at;
	struct dht__rate *rate; /* nrate slots by address and port, then nrate by host */
	size_t nrate;
	uint8_t ratekey[16];

	uint64_t next_maint;
	uint64_t next_join;  /* self-lookup again (see dht_tick) */
	uint64_t join_retry; /* ms, after a self-lookup that found < k nodes */
	bool join_due, join_running, joined;
	uint32_t srtt_all, rttvar_all;	    /* over every reply, ms */
	uint32_t rtt_hist[DHT_RTT_BUCKETS]; /* recent round trips, log scale (dht.c) */
	uint32_t rtt_samples;		    /* in rtt_hist */
	uint32_t rtt_q90, rtt_q99;	    /* ms, from rtt_hist */
	uint32_t prov_rot;		    /* rotates which providers a reply lists */

	struct dht_stats st;
};

/* 0.0.0.0 or :: */
static inline bool dht__ip_unspecified(const struct dht_addr *a)
{
	static const uint8_t zero[16];

	return !memcmp(a->ip, zero, a->family == 4 ? 4 : 16);
}

struct dht__own {
	uint8_t key[DHT_ID_LEN];
	uint16_t port;
	uint64_t next; /* republish at */
};

struct dht__rate {
	uint32_t key;	 /* the source's keyed hash, high half (the slot holds the rest) */
	uint32_t last;	 /* ms, modulo 2^32: only differences are used */
	uint32_t tokens; /* thousandths of a request */
};

/* dht.c */
/* A self-lookup (DHT__L_JOIN) ended with @found nodes. */
void dht__joined(struct dht *d, uint64_t now, size_t found);
void dht__rnd(struct dht *d, void *buf, size_t len);
void dht__send_msg(struct dht *d, const struct dht_addr *to, struct dht_msg *m);
/* A new request slot, or NULL when DHT_RPC_MAX are in flight. @id may be
 * NULL; @bound_ms, if not 0, bounds the round trip to a node we never
 * measured (from what another node measured: see dht_lookup.c). */
struct dht__rpc *dht__rpc_new(struct dht *d, uint64_t now, uint8_t type, const struct dht_addr *to,
			      const uint8_t *id, uint32_t bound_ms);

/* dht_lookup.c */
enum dht__lookup_kind {
	DHT__L_FIND_NODE,
	DHT__L_GET_PROVIDERS,
	DHT__L_ADD_PROVIDER,
	DHT__L_GET,
	DHT__L_PUT,
	DHT__L_JOIN
};
P2P_MUST_CHECK int dht__lookup_start(struct dht *d, uint64_t now, enum dht__lookup_kind kind,
				     const uint8_t target[static DHT_ID_LEN], uint16_t port,
				     const struct dht_record *rec, uint64_t cas, dht_done_fn *done,
				     void *arg);
/* A reply (NODES, PROVIDERS, VALUE, ACK, ERROR) to a request of a lookup. */
void dht__lookup_reply(struct dht *d, uint64_t now, const struct dht__rpc *r,
		       const struct dht_msg *m);
/* A lookup's request became slow (@hard false: retransmitted) or failed. */
void dht__lookup_timeout(struct dht *d, uint64_t now, const struct dht__rpc *r, bool hard);
/* Build the request @r stands for (first sending or retransmission; counted
 * in the lookup's queries); false if the lookup is gone. */
bool dht__lookup_request(struct dht *d, const struct dht__rpc *r, struct dht_msg *m);
/* Lookups with work due (finishing, or sends held back by a full request table). */
void dht__lookup_run_due(struct dht *d, uint64_t now);
void dht__lookup_free_all(struct dht *d);
size_t dht__lookup_mem(const struct dht *d);

#endif
