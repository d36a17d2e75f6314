/* SPDX-License-Identifier: MIT */
/*
 * net/tp.h - the encrypted peer transport, as a protocol engine with no I/O:
 * a mutually authenticated handshake, then AEAD frames.
 *
 * Handshake (three messages, in the spirit of Noise XX, built from
 * libsodium; both sides end with forward-secret keys and each other's
 * verified node id):
 *
 *   1  I -> R   version, network id, ephemeral X25519 key e_I
 *   2  R -> I   e_R, then sealed with a key from DH(e_I, e_R):
 *               R's Ed25519 public key, R's signature over the transcript
 *   3  I -> R   sealed: I's Ed25519 public key, I's signature over the
 *               transcript (which now includes message 2)
 *
 * The transcript hash covers the network id and both ephemeral keys, so a
 * signature cannot be replayed into another session, and a replayed message
 * meets fresh ephemeral keys and fails. Node id = SHA-256(public key) is
 * checked on both sides (with the network's proof-of-work bits), and the
 * initiator may insist on a given peer id. Keys come from HKDF-SHA-256
 * (HMAC-SHA-256 from libsodium) over the DH secret and the transcript.
 *
 * Frames: u32 plaintext length (big-endian, authenticated as associated
 * data), ciphertext, 16-byte tag; AES-256-GCM via libcrypto with a 96-bit
 * nonce of a per-direction frame counter; the key of each direction is
 * replaced (HKDF ratchet) every TP_REKEY_FRAMES frames, so no key ever
 * protects more than that. A frame longer than TP_FRAME_MAX, or that fails
 * authentication, ends the connection.
 */
#ifndef P2P_NET_TP_H
#define P2P_NET_TP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "net/ident.h"

#define TP_VERSION 1
#define TP_NETWORK_LEN 8
#define TP_FRAME_MAX (1024 * 1024 + 256) /* a chunk piece of 1 MiB plus its header */
#define TP_HDR_LEN 4
#define TP_TAG_LEN 16
#define TP_OVERHEAD (TP_HDR_LEN + TP_TAG_LEN)
#define TP_HS_MAX 256 /* the largest handshake message */
#define TP_REKEY_FRAMES (1ULL << 20)

struct tp;

struct tp_opts {
	const struct peer_ident *ident; /* our identity; required */
	const uint8_t *network;		/* TP_NETWORK_LEN bytes; NULL: the default network */
	const uint8_t *expect_id;	/* initiator: the peer we mean to reach, or NULL */
	unsigned pow_bits;		/* ids must carry this much proof of work */
	bool initiator;
};

P2P_MUST_CHECK int tp_new(const struct tp_opts *opts, struct tp **ret_tp);
void tp_free(struct tp *t); /* wipes keys; NULL is a no-op */

/*
 * Handshake. The initiator calls tp_hs_start() for message 1. Each side
 * passes every message it receives to tp_hs_input(), which may produce a
 * reply in @out (*ret_out_len > 0). Returns 0 (continue), 1 (established:
 * frames may flow; a final message may still be in @out to send), or
 * -EPROTO (malformed), -EBADMSG (bad signature or seal), -EACCES (wrong
 * network, or a peer other than the one expected), -EKEYREJECTED (id
 * without the required proof of work).
 */
P2P_MUST_CHECK int tp_hs_start(struct tp *t, uint8_t out[static TP_HS_MAX], size_t *ret_out_len);
P2P_MUST_CHECK int tp_hs_input(struct tp *t, const uint8_t *in, size_t len,
			       uint8_t out[static TP_HS_MAX], size_t *ret_out_len);
bool tp_established(const struct tp *t);
/* The peer's node id (PEER_ID_LEN bytes), once established. */
const uint8_t *tp_peer_id(const struct tp *t);

/*
 * Frames. tp_seal() writes header, ciphertext and tag for @len bytes of
 * @pt (len <= TP_FRAME_MAX) to @out (len + TP_OVERHEAD bytes; @out may be
 * @pt - TP_HDR_LEN to encrypt in place). Returns the frame length.
 */
size_t tp_seal(struct tp *t, const uint8_t *pt, size_t len, uint8_t *out);
/* The length of the frame whose header is @hdr: 0 and *ret_len, or -EMSGSIZE. */
P2P_MUST_CHECK int tp_frame_len(const uint8_t hdr[static TP_HDR_LEN], size_t *ret_frame_len);
/*
 * Authenticate and decrypt, in place, one whole frame of @len bytes (header
 * included). Returns the plaintext length (at frame + TP_HDR_LEN), or
 * -EBADMSG / -EPROTO / -EMSGSIZE.
 */
P2P_MUST_CHECK long tp_open(struct tp *t, uint8_t *frame, size_t len);

/* The default network id: the first bytes of SHA-256("p2pfs network 1"). */
void tp_default_network(uint8_t out[static TP_NETWORK_LEN]);

#endif
