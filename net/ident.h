/* SPDX-License-Identifier: MIT */
/*
 * net/ident.h - the node identity: an Ed25519 key pair kept in the state
 * directory, and the node id derived from it.
 *
 * node id = SHA-256(public key), so an id cannot be chosen freely. A network
 * may also require a proof of work on ids (S/Kademlia's static puzzle): the
 * first @pow_bits bits of SHA-256(node id) must be zero. Making such an
 * identity costs about 2^pow_bits key generations; checking it costs one hash.
 *
 * The key file ("node.key", mode 0600) holds the 32-byte seed and the public
 * key; the public key is re-derived at load and compared, so a damaged file is
 * an error rather than a silently different identity.
 */
#ifndef P2P_NET_IDENT_H
#define P2P_NET_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define PEER_ID_LEN 32
#define PEER_PK_LEN 32
#define PEER_SIG_LEN 64
#define PEER_POW_MAX 32 /* more would take years to make */

struct peer_ident;

/*
 * Load the identity from @state_dir/node.key, creating it (atomically, 0600)
 * if absent. -EKEYREJECTED if the stored id does not meet @pow_bits (the
 * network requires a stronger id: move node.key away to make a new one),
 * -EBADMSG if the file is damaged.
 */
P2P_MUST_CHECK int peer_ident_load(const char *state_dir, unsigned pow_bits,
				   struct peer_ident **ret_ident);
/* A fresh identity in memory only (tests, the simulator). */
P2P_MUST_CHECK int peer_ident_generate(unsigned pow_bits, struct peer_ident **ret_ident);
/* Wipes the secret key. NULL is a no-op. */
void peer_ident_free(struct peer_ident *ident);

/* Borrowed; valid while @ident lives. */
const uint8_t *peer_ident_id(const struct peer_ident *ident);
const uint8_t *peer_ident_pk(const struct peer_ident *ident);
void peer_ident_sign(const struct peer_ident *ident, const void *msg, size_t len,
		     uint8_t ret_sig[static PEER_SIG_LEN]);

/* id = SHA-256(pk). */
void peer_id_from_pk(const uint8_t pk[static PEER_PK_LEN], uint8_t ret_id[static PEER_ID_LEN]);
/* The first @bits bits of SHA-256(@id) are zero. */
bool peer_id_pow_ok(const uint8_t id[static PEER_ID_LEN], unsigned bits);
/* @id belongs to @pk and meets @pow_bits. */
bool peer_id_verify(const uint8_t id[static PEER_ID_LEN], const uint8_t pk[static PEER_PK_LEN],
		    unsigned pow_bits);
/* Verify an Ed25519 signature by @pk. */
P2P_MUST_CHECK bool peer_sig_verify(const uint8_t pk[static PEER_PK_LEN], const void *msg,
				    size_t len, const uint8_t sig[static PEER_SIG_LEN]);

#endif
