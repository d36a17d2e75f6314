/* SPDX-License-Identifier: MIT */
/*
 * net/swarm.h - the members of one share: finding them (DHT provider records
 * under the share's keyed id, configured addresses, peer exchange),
 * encrypted connections to a bounded set of them (net/tp_conn.h), proof of
 * membership, and the chunk exchange: serving chunks from the local store
 * and fetching missing ones from several members at once, verified against
 * their ids before anything sees them.
 *
 * Wire protocol: one message per transport frame; byte 0 is the type, all
 * integers big-endian.
 *
 *   type  name      body
 *   1     HELLO     version (1), share tag (32), proof (32), TCP port (2),
 *                   flags (1: bit 0 = may write)
 *   2     GET       request id (4), chunk id (32) [, flags (1): 1 = a reader waits]
 *   3     DATA      request id (4), chunk length (4), offset (4), bytes
 *   4     NOTFOUND  request id (4) [, reason (1): 1 = busy, ask others first;
 *                   absent: not stored here]
 *   5     PEX       count (1, <= SWARM_PEX_MAX), then per member: node id
 *                   (32), family (1: 4 or 6), address (16), TCP port (2),
 *                   age (2: seconds since the sender last heard from it)
 *   6     HAVE      count (2, <= 16384), then per chunk the first 8 bytes
 *                   of its id: chunks the sender holds (all of them after
 *                   HELLO if it holds at most 4 Mi chunks, then each new one,
 *                   as soon as its first bytes arrive: see relaying)
 *   7     PING      8 opaque bytes, echoed by
 *   8     PONG      the same 8 bytes (round-trip time, every 5 s)
 *   >=32  the caller's (swarm_opts.msg): namespace replication
 *
 * HELLO is the first message each way; anything else before both HELLOs is
 * a protocol error. The proof is HMAC-SHA-256 under the share's member key
 * (derived from its read key) of "p2pfs member 1" || the transport session
 * id || the sender's node id: it cannot be replayed on another session or
 * by another node, and a node without the read key cannot make one, so it
 * is never served a chunk nor a namespace record.
 *
 * Fetching: each wanted chunk is asked of one member at a time: one that
 * said (HAVE) it holds it if any, else one not yet asked; the one with the
 * fewest requests in flight (SWARM_WINDOW per member); chunks a reader waits for go before
 * read-ahead. NOTFOUND moves the request to the next member; in the
 * endgame (nothing waiting) a request slow for a second moves to an idle
 * member that holds the chunk; a member that
 * stops sending for stall_ms loses the request to another; a member whose
 * chunk fails verification is disconnected and refused for the life of the
 * process. With no member connected a fetch fails at once; otherwise it
 * fails after fetch_timeout_ms with one log line naming the chunk and why.
 *
 * A member asked for more than it can send (16 requests queued) answers
 * NOTFOUND for chunks another member holds, so its upload goes to chunks
 * only it has and members trade the rest (like a seed that sends each
 * piece once).
 *
 * Relaying: a member asked for a chunk it is still receiving passes it on
 * as it arrives, so a chunk crosses several hops in about the time of one.
 * The last 64 KiB go only once the relaying member has verified the whole
 * chunk, so nobody gets a whole chunk that its sender did not check; if the
 * check fails (or the sender's own source goes), the asker gets NOTFOUND
 * mid-chunk, drops what it has, and asks elsewhere - without blaming the
 * relay, which disconnects its own source.
 *
 * Liveness: members trade PEX every 30 s, each entry with how long ago the
 * sender last heard from that member (directly, or by gossip); an address
 * nobody has heard of for SWARM_LIVENESS_MS is no longer dialled (unless
 * given with --peer), so a member that failed drops out of every address
 * book without anyone having to reach it.
 *
 * Upload: pieces go out one at a time to whoever should have them next:
 * peers that upload to us ("contributors": at least 64 KiB/s, smoothed over
 * the last seconds), the fastest first; one piece in 8 to an "optimistic"
 * peer chosen at random among the rest, so a newcomer can start to
 * contribute (both re-decided every 2 s); the others in turn. So when upload bandwidth is short, free
 * riders cannot starve contributors. --max-upload and --max-download are
 * token buckets on chunk bytes (download: no new request while over, so up to
 * a window of requests per member may arrive beyond the bucket).
 *
 * Everything runs on the loop's thread.
 */
#ifndef P2P_NET_SWARM_H
#define P2P_NET_SWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "chunkstore/store.h"
#include "common/ev.h"
#include "net/dht_node.h"
#include "net/ident.h"

#define SWARM_KEY_LEN 32
#define SWARM_MSG_APP 32		   /* message types from here up are the caller's */
#define SWARM_WINDOW 8			   /* chunk requests in flight per member */
#define SWARM_SERVE_MAX 64		   /* requests a member may have queued with us */
#define SWARM_PEX_MAX 16		   /* members per PEX message */
#define SWARM_PIECE (1 << 20)		   /* bytes of a chunk per DATA message */
#define SWARM_LIVENESS_MS (10 * 60 * 1000) /* unheard of this long: failed */

struct swarm;
struct swarm_peer;

/* A message of the caller's (type >= SWARM_MSG_APP) from a member. */
typedef void swarm_msg_fn(void *arg, struct swarm_peer *p, uint8_t type, const uint8_t *body,
			  size_t len);
/* A member connected (its HELLO verified). */
typedef void swarm_peer_fn(void *arg, struct swarm_peer *p);

struct swarm_opts {
	struct ev_loop *loop;
	const struct peer_ident *ident;
	struct cs_store *cs;
	struct ev_pool
	    *pool; /* received chunks are stored here (one thread is enough); NULL: on the loop */
	struct dht_node *dht;	   /* members are announced and found here; may be NULL */
	const uint8_t *member_key; /* SWARM_KEY_LEN: proves membership */
	const uint8_t *share_tag;  /* SWARM_KEY_LEN: the share's keyed id (also the DHT key) */
	bool writable;		   /* we hold the write capability (told to members) */
	const char *listen;	   /* TCP "ADDR:PORT"; NULL: 0.0.0.0 on the DHT's port */
	uint32_t fetch_timeout_ms; /* 0: 30000 */
	uint32_t stall_ms;	   /* 0: 5000 */
	unsigned max_peers;	   /* 0: 32 */
	uint64_t max_upload;	   /* bytes per second of chunk data sent; 0: no limit */
	uint64_t max_download;	   /* bytes per second of chunk data asked for; 0: no limit */
	swarm_msg_fn *msg;
	swarm_peer_fn *peer_up;
	swarm_peer_fn *peer_down; /* a member that peer_up announced is gone */
	void *arg;
};

P2P_MUST_CHECK int swarm_new(const struct swarm_opts *opts, struct swarm **ret_swarm);
/* Closes every connection; waiting fetches fail with -ECANCELED; runs the
 * loop until chunks being checked on the pool are back. Call after the DHT
 * node is freed (its lookups may name the swarm), from outside any callback
 * of the loop, with the pool still running. NULL is a no-op. */
void swarm_free(struct swarm *s);
uint16_t swarm_port(const struct swarm *s);

/* A member's address to keep connected ("HOST:PORT", numeric or a name). */
P2P_MUST_CHECK int swarm_add_addr(struct swarm *s, const char *hostport);

#define SWARM_FETCH_URGENT 1u /* a reader waits for it (else read-ahead) */
/* @cb may run as soon as the chunk is verified, before it is stored (up to
 * SWARM_STORE_AHEAD bytes being written at once): for readers that need
 * the bytes, not the copy on disk (pin does). */
#define SWARM_FETCH_EARLY 2u
#define SWARM_STORE_AHEAD (64u << 20)

/*
 * swarm_fetch() - get chunk @id from the members. @cb runs exactly once,
 * later, as cs_read() would call it: with the chunk (verified and now in the
 * store as an evictable cached chunk; see SWARM_FETCH_EARLY) or -EIO /
 * -ETIMEDOUT / -ECANCELED. @flags: SWARM_FETCH_*. Returns 0, or -ENOENT
 * with no callback when no member is connected.
 */
P2P_MUST_CHECK int swarm_fetch(struct swarm *s, const uint8_t id[static CS_ID_LEN],
			       const uint8_t *file, unsigned flags, cs_read_fn *cb, void *arg);

/*
 * Content location in the DHT. swarm_provide() announces that we hold the
 * whole file with content id @file: a provider record under
 * HMAC(member key, "p2pfs content 1" || @file), so the DHT learns nothing
 * of a private share's content; republished by the DHT before it expires.
 * The most recent SWARM_PROVIDE_MAX files are announced. A fetch given the
 * @file it belongs to that no connected member can supply looks up that
 * key (at most once per file every 30 s) and connects to the holders found,
 * up to SWARM_EXTRA_PEERS beyond max_peers.
 */
#define SWARM_PROVIDE_MAX 4096
#define SWARM_EXTRA_PEERS 8
void swarm_provide(struct swarm *s, const uint8_t file[static CS_ID_LEN]);

/* Tell members we now hold these chunks (@n ids of CS_ID_LEN bytes, back to
 * back); sent in batches. Fetched chunks are announced by the swarm itself. */
void swarm_announce(struct swarm *s, const uint8_t *ids, size_t n);
/* Connected members known to hold @id. */
unsigned swarm_availability(struct swarm *s, const uint8_t id[static CS_ID_LEN]);
/* Connected members known to hold every one of @n ids. */
unsigned swarm_holders(struct swarm *s, const uint8_t *ids, size_t n);

/* A message of the caller's to one member: 0, -ENOBUFS (its queue is full),
 * -EMSGSIZE, -ENOTCONN. */
P2P_MUST_CHECK int swarm_send(struct swarm_peer *p, uint8_t type, const void *body, size_t len);
/* Bytes queued to @p and not yet sent. */
size_t swarm_queued(const struct swarm_peer *p);
/* To every member but @except (may be NULL). */
void swarm_broadcast(struct swarm *s, struct swarm_peer *except, uint8_t type, const void *body,
		     size_t len);
/* The member's node id and whether it holds the write capability. */
const uint8_t *swarm_peer_id(const struct swarm_peer *p);
bool swarm_peer_writable(const struct swarm_peer *p);
const char *swarm_peer_name(const struct swarm_peer *p);

struct swarm_peer_info {
	uint8_t id[32];
	char addr[64];
	bool outgoing, writable;
	uint64_t bytes_in, bytes_out; /* transport plaintext */
	uint64_t chunks_in, chunks_out;
	unsigned inflight, queued;
	uint64_t connected_ms;
	uint64_t rtt_us; /* smoothed, from PING/PONG every 5 s; 0 before the first */
};
/* Up to @max connected members into @out; returns how many there are. */
size_t swarm_peers(struct swarm *s, struct swarm_peer_info *out, size_t max);

struct swarm_stats {
	unsigned members, connecting, known_addrs;
	unsigned fetches;		 /* chunks being fetched now */
	uint64_t fetched, fetched_bytes; /* chunks received and verified */
	uint64_t served, served_bytes;
	uint64_t fetch_failed, bad_chunks, stalls, notfound, endgame, redirects;
	uint64_t relayed; /* requests served from a chunk still arriving here */
	uint64_t storing; /* bytes fetched and verified, being written to the store */
	uint64_t dht_lookups, dht_announces;
	double rate_in, rate_out; /* chunk bytes per second, smoothed over seconds */
};
void swarm_get_stats(struct swarm *s, struct swarm_stats *ret_stats);

/* The keys of a share's swarm from its read key: the member key and the tag. */
void swarm_share_keys(const uint8_t read_key[static 32], uint8_t member_key[static SWARM_KEY_LEN],
		      uint8_t share_tag[static SWARM_KEY_LEN]);

#endif
