/* SPDX-License-Identifier: MIT */
/*
 * net/tp.h - the encrypted peer transport as a protocol engine with no I/O:
 * a mutually authenticated handshake, then AEAD frames. The caller moves the
 * bytes (net/tp_conn.h does it over TCP); tests, the fuzzer and benchmarks
 * drive two engines against each other in memory.
 *
 * Handshake: three messages, in the spirit of Noise XX, built from libsodium.
 * Each travels as u16 length (big-endian) + body:
 *
 *   msg  dir     body                                              bytes
 *   1    I -> R  version (1), network id (8), e_I (32)                41
 *   2    R -> I  e_R (32), seal_hs(pk_R (32) || sig_R (64)) (+16)     144
 *   3    I -> R  seal_hs(pk_I (32) || sig_I (64)) (+16)               112
 *
 *   e_*      fresh X25519 key pairs; the secret is wiped as soon as the DH
 *            is computed, so later theft of a node key reveals no traffic
 *   h0       SHA-256("p2pfs-tp-1" || body 1 || e_R): binds version, network
 *            and both ephemerals (a replayed message meets fresh ephemerals)
 *   prk      HKDF-Extract(salt = h0, DH(e_I, e_R)); every key below is an
 *            HKDF-Expand of prk (HMAC-SHA-256 from libsodium)
 *   seal_hs  ChaCha20-Poly1305 under Expand(prk, "hs" || h0), AD = the
 *            transcript hash so far, nonce 0 for msg 2 and 1 for msg 3
 *   sig_R    Ed25519 by R over "p2pfs-tp-1 resp" || h0
 *   h1       SHA-256(h0 || sealed part of msg 2)
 *   sig_I    Ed25519 by I over "p2pfs-tp-1 init" || h1
 *   h2       SHA-256(h1 || msg 3): the session id
 *   keys     Expand(prk, "i2r" || h2) and Expand(prk, "r2i" || h2)
 *
 * Each side derives the peer's node id = SHA-256(pk) (net/ident.h) and
 * checks the network's proof-of-work bits; the initiator may insist on one
 * peer id. The responder reveals its identity only to a holder of e_I, the
 * initiator its own only after it has verified the responder.
 *
 * Frames, after the handshake, per direction:
 *
 *   offset  size  field
 *   0       4     L = plaintext length, big-endian, L <= TP_FRAME_MAX;
 *                 authenticated as the AEAD's associated data
 *   4       L     ciphertext
 *   4+L     16    tag
 *
 * AES-256-GCM (libcrypto EVP, one context per direction set up once: sealing
 * and opening allocate nothing). Nonce = 32 zero bits || 64-bit frame counter
 * of the current key, so frames are bound to their order: a replayed,
 * reordered, dropped or truncated frame fails. Each direction replaces its key
 * by Expand(key, "rekey") after TP_REKEY_FRAMES frames or TP_REKEY_BYTES bytes
 * under it, whichever comes first, and restarts its counter; both ends count
 * the same, so no message is needed. An empty frame (L = 0) is a keepalive.
 *
 * Invariants:
 *  1. No byte of a frame's plaintext is handed out before its tag checked.
 *  2. A failed handshake message or frame puts the engine in a failed state
 *     for good: every later call returns -EPIPE.
 *  3. A peer-sent length is checked against its maximum before anything is
 *     sized from it.
 *
 * A struct tp is used by one thread at a time.
 */
#ifndef P2P_NET_TP_H
#define P2P_NET_TP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/util.h"
#include "net/ident.h"

#define TP_VERSION 1
#define TP_NETWORK_LEN 8
#define TP_SESSION_ID_LEN 32
#define TP_HS_LEN_HDR 2 /* the u16 before each handshake message */
#define TP_HS_MAX 256	/* the largest handshake message body we accept */
#define TP_HS_WIRE_MAX (TP_HS_LEN_HDR + TP_HS_MAX)
#define TP_FRAME_MAX (1048576 + 256) /* plaintext: a 1 MiB chunk piece + its header */
#define TP_HDR_LEN 4
#define TP_TAG_LEN 16
#define TP_OVERHEAD (TP_HDR_LEN + TP_TAG_LEN)
#define TP_WIRE_MAX (TP_FRAME_MAX + TP_OVERHEAD) /* the largest frame on the wire */
#define TP_REKEY_FRAMES (1ULL << 20)
#define TP_REKEY_BYTES (1ULL << 30)

struct tp;

struct tp_opts {
	const struct peer_ident *ident; /* ours, required; must outlive the engine */
	const uint8_t *network;		/* TP_NETWORK_LEN bytes; NULL: tp_default_network() */
	const uint8_t *expect_id;	/* initiator: the only peer id accepted, or NULL */
	unsigned pow_bits;		/* proof of work required of the peer's id */
	bool initiator;
};

struct tp_stats {
	uint64_t frames_out, frames_in; /* since the handshake, keepalives included */
	uint64_t bytes_out, bytes_in;	/* plaintext */
	uint64_t rekeys_out, rekeys_in;
};

/* A new engine with a fresh ephemeral key. Returns 0, -EINVAL, -ENOMEM or -EIO. */
P2P_MUST_CHECK int tp_new(const struct tp_opts *opts, struct tp **ret_tp);
/* Wipes every key. NULL is a no-op. */
void tp_free(struct tp *t);

/* The default network id: the first 8 bytes of SHA-256("p2pfs network 1"). */
void tp_default_network(uint8_t out[static TP_NETWORK_LEN]);

/*
 * tp_hs_start() - the initiator's message 1, length prefix included, into
 * @out; sets *ret_out_len. Returns 0, or -EPROTO if called out of turn.
 */
P2P_MUST_CHECK int tp_hs_start(struct tp *t, uint8_t out[static TP_HS_WIRE_MAX],
			       size_t *ret_out_len);
/*
 * tp_hs_msg_len() - from the first TP_HS_LEN_HDR bytes of a handshake
 * message, its whole length (prefix included). 0, or -EMSGSIZE over
 * TP_HS_MAX.
 */
P2P_MUST_CHECK int tp_hs_msg_len(const uint8_t hdr[static TP_HS_LEN_HDR], size_t *ret_len);
/*
 * tp_hs_input() - consume one whole handshake message (prefix included, as
 * cut by tp_hs_msg_len()). A reply to send, if any, goes to @out with
 * *ret_out_len > 0 (else 0). Returns 0 (more to come), 1 (established:
 * frames may flow once @out is sent), or a failure:
 *   -EPROTO           malformed: wrong length, trailing bytes, out of turn
 *   -EMSGSIZE         a length prefix over TP_HS_MAX
 *   -EPROTONOSUPPORT  another protocol version
 *   -EACCES           another network, a peer other than the one expected,
 *                     or ourselves
 *   -EBADMSG          a seal or signature that fails, a degenerate key
 *   -EKEYREJECTED     a peer id without the required proof of work
 *   -EPIPE            the engine failed before
 */
P2P_MUST_CHECK int tp_hs_input(struct tp *t, const uint8_t *in, size_t len,
			       uint8_t out[static TP_HS_WIRE_MAX], size_t *ret_out_len);
bool tp_established(const struct tp *t);
/* Once established (else NULL): the peer's node id, its Ed25519 public key,
 * and the session id (h2), which both ends share. Valid while @t lives. */
const uint8_t *tp_peer_id(const struct tp *t);
const uint8_t *tp_peer_pk(const struct tp *t);
const uint8_t *tp_session_id(const struct tp *t);

/*
 * tp_seal() - one frame of @len plaintext bytes into @out (len + TP_OVERHEAD
 * bytes). @pt may equal @out + TP_HDR_LEN (encrypt in place). Returns the
 * frame length, -EMSGSIZE over TP_FRAME_MAX, -EPROTO before the handshake
 * ends, -EPIPE after a failure.
 */
P2P_MUST_CHECK long tp_seal(struct tp *t, const void *pt, size_t len, uint8_t *out);
/* The same, gathering the plaintext from @n pieces (none may overlap @out). */
P2P_MUST_CHECK long tp_sealv(struct tp *t, const struct iovec *iov, unsigned n, uint8_t *out);

/*
 * tp_frame_len() - from a frame's first TP_HDR_LEN bytes, its whole length
 * on the wire. 0, or -EMSGSIZE over TP_FRAME_MAX.
 */
P2P_MUST_CHECK int tp_frame_len(const uint8_t hdr[static TP_HDR_LEN], size_t *ret_len);
/*
 * tp_open() - authenticate and decrypt one whole frame of @len bytes in
 * place. Returns the plaintext length (the plaintext is at @frame +
 * TP_HDR_LEN), or -EPROTO (@len is not the frame's length), -EMSGSIZE,
 * -EBADMSG (forged, replayed, reordered: the engine is failed), -EPIPE.
 */
P2P_MUST_CHECK long tp_open(struct tp *t, uint8_t *frame, size_t len);

/*
 * The same in steps, for a receiver that decrypts each piece of a large
 * frame while it is still in cache: tp_open_begin() takes the header and
 * sets *ret_len to the plaintext length; tp_open_update() decrypts the next
 * @n ciphertext bytes in place (in any number of calls, @n in total equal to
 * that length); tp_open_final() checks the tag. Until tp_open_final()
 * returns 0 the decrypted bytes are unauthenticated: use none of them
 * (invariant 1). Errors as for tp_open(); -EPROTO when called out of order.
 */
P2P_MUST_CHECK int tp_open_begin(struct tp *t, const uint8_t hdr[static TP_HDR_LEN],
				 size_t *ret_len);
P2P_MUST_CHECK int tp_open_update(struct tp *t, uint8_t *buf, size_t n);
P2P_MUST_CHECK int tp_open_final(struct tp *t, const uint8_t tag[static TP_TAG_LEN]);

void tp_stats(const struct tp *t, struct tp_stats *ret_stats);

#endif
