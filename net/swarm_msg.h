/* SPDX-License-Identifier: MIT */
/*
 * net/swarm_msg.h - the codec of the members' wire protocol (layout in
 * net/swarm.h): every message from a peer is decoded here, with bounds
 * checks and hard limits, before net/swarm.c acts on it.
 */
#ifndef P2P_NET_SWARM_MSG_H
#define P2P_NET_SWARM_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "net/dht.h"

enum swarm_msg_type {
	SWARM_M_HELLO = 1,
	SWARM_M_GET = 2,
	SWARM_M_DATA = 3,
	SWARM_M_NOTFOUND = 4,
	SWARM_M_PEX = 5,
	SWARM_M_HAVE = 6,
	SWARM_M_PING = 7,
	SWARM_M_PONG = 8,
};

/* Why a NOTFOUND: not stored here (no reason byte on the wire), or busy:
 * held, but others hold it too and our upload is spoken for — ask them,
 * and ask us again later. */
enum swarm_nf_reason {
	SWARM_NF_MISSING = 0,
	SWARM_NF_BUSY = 1,
};

#define SWARM_GET_URGENT 1 /* a reader waits for it */

#define SWARM_HELLO_VERSION 1
#define SWARM_HELLO_LEN (1 + 1 + 32 + 32 + 2 + 1)
#define SWARM_DATA_HDR (1 + 4 + 4 + 4)
#define SWARM_PEX_ENTRY (32 + 1 + 16 + 2 + 2)
#define SWARM_PEX_LIMIT 16
#define SWARM_HAVE_LIMIT 16384
#define SWARM_PIECE_LIMIT (1u << 20)
#define SWARM_CHUNK_LIMIT (16u << 20)
#define SWARM_APP_FIRST 32

/* A decoded message; pointers point into the buffer it was decoded from. */
struct swarm_msg {
	uint8_t type;
	union {
		struct {
			uint8_t version;
			const uint8_t *tag, *proof; /* 32 bytes each */
			uint16_t port;
			uint8_t flags;
		} hello;
		struct {
			uint32_t reqid;
			const uint8_t *id; /* 32 */
			uint8_t flags;	   /* SWARM_GET_URGENT */
		} get;
		struct {
			uint32_t reqid, total, off;
			const uint8_t *bytes;
			size_t len;
		} data;
		struct {
			uint32_t reqid;
			uint8_t reason; /* enum swarm_nf_reason */
		} notfound;
		struct {
			unsigned n;
			const uint8_t *entries; /* n * SWARM_PEX_ENTRY */
		} pex;
		struct {
			unsigned n;
			const uint8_t *prefixes; /* n * 8, big-endian */
		} have;
		struct {
			const uint8_t *nonce; /* 8 */
		} ping;
		struct {
			const uint8_t *body;
			size_t len;
		} app;
	} u;
};

/*
 * swarm_msg_decode() - one message. Returns 0, or -EPROTO for anything
 * malformed: a wrong length for its type, a count over its limit, a DATA
 * piece that is empty, over SWARM_PIECE_LIMIT or past its chunk's length,
 * a chunk length of 0 or over SWARM_CHUNK_LIMIT. Types below
 * SWARM_APP_FIRST that this version does not know decode as themselves
 * with no body (the caller ignores them); types from SWARM_APP_FIRST up
 * come back whole in u.app.
 */
P2P_MUST_CHECK int swarm_msg_decode(const uint8_t *buf, size_t len, struct swarm_msg *m);

/* Entry @i of a decoded PEX: false if its family or port is unusable.
 * @age: seconds since the sender last heard from that member. */
bool swarm_msg_pex_entry(const struct swarm_msg *m, unsigned i, uint8_t id[static 32],
			 struct dht_addr *addr, uint16_t *age);
/* Prefix @i of a decoded HAVE. */
uint64_t swarm_msg_have_prefix(const struct swarm_msg *m, unsigned i);

/*
 * swarm_msg_encode() - @m into @out (at most @cap bytes); for DATA only
 * the header (the bytes follow it), for HAVE and PEX with their entries
 * copied from u.have.prefixes / u.pex.entries. Returns the length, or
 * -EMSGSIZE (too small, or counts over their limits), -EINVAL (unknown type).
 */
P2P_MUST_CHECK long swarm_msg_encode(const struct swarm_msg *m, uint8_t *out, size_t cap);

#endif
