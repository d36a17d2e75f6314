// SPDX-License-Identifier: MIT
/*
 * net/tp.c - handshake and frames of the peer transport (formats in tp.h).
 *
 * Owns the key schedule and the AEAD state of one session; knows nothing of
 * sockets or time. Key exchange, signatures, handshake seals and key
 * derivation are libsodium's; frames are AES-256-GCM through libcrypto,
 * which is more than twice as fast here (see DESIGN.md).
 *
 * Invariants (beyond those in tp.h):
 *  1. The ephemeral secret and the DH result are wiped as soon as prk is
 *     derived; prk and the handshake key are wiped once the traffic keys
 *     exist; everything is wiped by tp_free().
 *  2. Each direction's EVP context is made once, at the end of the
 *     handshake; per frame only its IV (and at a rekey its key) changes.
 *  3. A direction's frame counter never reaches its rekey limit: the key is
 *     replaced (and the counter restarted) when it would, so a (key, nonce)
 *     pair is never used twice.
 */
#include "net/tp_int.h"
#include "common/rbuf.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 32
#define HASH_LEN 32
#define E_LEN crypto_scalarmult_curve25519_BYTES
#define IV_LEN 12
#define ID_PT_LEN (PEER_PK_LEN + PEER_SIG_LEN)
#define SEALED_ID_LEN (ID_PT_LEN + crypto_aead_chacha20poly1305_ietf_ABYTES)
#define BODY1_LEN (1 + TP_NETWORK_LEN + E_LEN)
#define BODY2_LEN (E_LEN + SEALED_ID_LEN)
#define BODY3_LEN SEALED_ID_LEN

_Static_assert(E_LEN == 32 && KEY_LEN == crypto_auth_hmacsha256_BYTES, "key sizes");
_Static_assert(BODY2_LEN <= TP_HS_MAX && BODY1_LEN <= TP_HS_MAX, "handshake sizes");
_Static_assert(TP_FRAME_MAX < (1U << 31), "EVP takes int lengths");

static const char DOMAIN[] = "p2pfs-tp-1";
static const char SIG_RESP[] = "p2pfs-tp-1 resp";
static const char SIG_INIT[] = "p2pfs-tp-1 init";

enum hs_state { HS_START, HS_WAIT1, HS_WAIT2, HS_WAIT3, HS_DONE, HS_FAILED };

struct dir {
	EVP_CIPHER_CTX *ctx;
	uint8_t key[KEY_LEN];
	uint64_t ctr;	    /* frames under the current key (the nonce) */
	uint64_t key_bytes; /* plaintext bytes under the current key */
	uint64_t frames, bytes, rekeys;
};

struct tp {
	const struct peer_ident *ident;
	enum hs_state st;
	bool initiator, has_expect;
	unsigned pow_bits;
	uint8_t network[TP_NETWORK_LEN];
	uint8_t expect[PEER_ID_LEN];

	uint8_t e_sk[E_LEN], e_pk[E_LEN];
	uint8_t body1[BODY1_LEN]; /* initiator: message 1 as sent, for h0 */
	uint8_t prk[KEY_LEN], k_hs[KEY_LEN];
	uint8_t h[HASH_LEN]; /* transcript hash so far; h2 once established */

	uint8_t peer_id[PEER_ID_LEN], peer_pk[PEER_PK_LEN];

	struct dir out, in;
	uint64_t rekey_frames, rekey_bytes;
	bool opening;		    /* between tp_open_begin() and tp_open_final() */
	size_t open_len, open_done; /* of the frame being opened */
};

void tp_default_network(uint8_t out[static TP_NETWORK_LEN])
{
	static const char name[] = "p2pfs network 1";
	uint8_t h[HASH_LEN];

	crypto_hash_sha256(h, (const uint8_t *)name, sizeof(name) - 1);
	memcpy(out, h, TP_NETWORK_LEN);
}

/* HKDF-Expand (RFC 5869) for one 32-byte block: HMAC(prk, label || ctx || 0x01). */
static void expand(uint8_t out[KEY_LEN], const uint8_t prk[KEY_LEN], const char *label,
		   const uint8_t *ctx, size_t ctx_len)
{
	crypto_auth_hmacsha256_state st;
	const uint8_t one = 1;

	crypto_auth_hmacsha256_init(&st, prk, KEY_LEN);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
	if (ctx_len)
		crypto_auth_hmacsha256_update(&st, ctx, ctx_len);
	crypto_auth_hmacsha256_update(&st, &one, 1);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

/* h = SHA-256(h || data) */
static void mix(uint8_t h[HASH_LEN], const uint8_t *data, size_t len)
{
	crypto_hash_sha256_state st;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, h, HASH_LEN);
	crypto_hash_sha256_update(&st, data, len);
	crypto_hash_sha256_final(&st, h);
}

int tp_new(const struct tp_opts *o, struct tp **ret_tp)
{
	struct tp *t;

	if (!o || !o->ident || o->pow_bits > PEER_POW_MAX)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	if (!(t = calloc(1, sizeof(*t))))
		return -ENOMEM;
	t->ident = o->ident;
	t->initiator = o->initiator;
	t->st = o->initiator ? HS_START : HS_WAIT1;
	t->pow_bits = o->pow_bits;
	if (o->network)
		memcpy(t->network, o->network, TP_NETWORK_LEN);
	else
		tp_default_network(t->network);
	if (o->expect_id) {
		memcpy(t->expect, o->expect_id, PEER_ID_LEN);
		t->has_expect = true;
	}
	t->rekey_frames = TP_REKEY_FRAMES;
	t->rekey_bytes = TP_REKEY_BYTES;
	crypto_box_keypair(t->e_pk, t->e_sk); /* an X25519 key pair */
	*ret_tp = t;
	return 0;
}

void tp_free(struct tp *t)
{
	if (!t)
		return;
	EVP_CIPHER_CTX_free(t->out.ctx); /* OpenSSL wipes the key schedule */
	EVP_CIPHER_CTX_free(t->in.ctx);
	sodium_memzero(t, sizeof(*t));
	free(t);
}

void tp__set_rekey_limits(struct tp *t, uint64_t frames, uint64_t bytes)
{
	t->rekey_frames = frames ? frames : TP_REKEY_FRAMES;
	t->rekey_bytes = bytes ? bytes : TP_REKEY_BYTES;
}

bool tp_established(const struct tp *t)
{
	return t->st == HS_DONE;
}

const uint8_t *tp_peer_id(const struct tp *t)
{
	return t->st == HS_DONE ? t->peer_id : NULL;
}

const uint8_t *tp_peer_pk(const struct tp *t)
{
	return t->st == HS_DONE ? t->peer_pk : NULL;
}

const uint8_t *tp_session_id(const struct tp *t)
{
	return t->st == HS_DONE ? t->h : NULL;
}

void tp_stats(const struct tp *t, struct tp_stats *ret)
{
	*ret = (struct tp_stats){
		.frames_out = t->out.frames,
		.frames_in = t->in.frames,
		.bytes_out = t->out.bytes,
		.bytes_in = t->in.bytes,
		.rekeys_out = t->out.rekeys,
		.rekeys_in = t->in.rekeys,
	};
}

static int fail(struct tp *t, int rc)
{
	t->st = HS_FAILED;
	t->opening = false;
	/* Nothing of a failed session is needed again. */
	sodium_memzero(t->e_sk, sizeof(t->e_sk));
	sodium_memzero(t->prk, sizeof(t->prk));
	sodium_memzero(t->k_hs, sizeof(t->k_hs));
	return rc;
}

/* ---- handshake ---- */

/*
 * Both ephemerals known: h0, then prk and the handshake key from the DH.
 * The ephemeral secret is gone afterwards (invariant 1).
 */
static int derive_hs(struct tp *t, const uint8_t *body1, const uint8_t e_r[E_LEN],
		     const uint8_t peer_e[E_LEN])
{
	crypto_hash_sha256_state st;
	uint8_t dh[E_LEN];
	int rc;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)DOMAIN, sizeof(DOMAIN) - 1);
	crypto_hash_sha256_update(&st, body1, BODY1_LEN);
	crypto_hash_sha256_update(&st, e_r, E_LEN);
	crypto_hash_sha256_final(&st, t->h);
	/* libsodium refuses a low-order point (the result would be all zero). */
	rc = crypto_scalarmult(dh, t->e_sk, peer_e);
	sodium_memzero(t->e_sk, sizeof(t->e_sk));
	if (rc != 0)
		return -EBADMSG;
	crypto_auth_hmacsha256(t->prk, dh, sizeof(dh), t->h); /* HKDF-Extract, salt = h0 */
	sodium_memzero(dh, sizeof(dh));
	expand(t->k_hs, t->prk, "hs", t->h, HASH_LEN);
	return 0;
}

/* seal_hs(pk || Ed25519 signature over @label || h), AD = h. */
static void seal_id(struct tp *t, uint8_t out[SEALED_ID_LEN], uint8_t nonce_last, const char *label)
{
	uint8_t pt[ID_PT_LEN], msg[32 + HASH_LEN],
	    nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	size_t ll = strlen(label);

	memset(nonce, 0, sizeof(nonce));
	nonce[sizeof(nonce) - 1] = nonce_last;
	memcpy(msg, label, ll);
	memcpy(msg + ll, t->h, HASH_LEN);
	memcpy(pt, peer_ident_pk(t->ident), PEER_PK_LEN);
	peer_ident_sign(t->ident, msg, ll + HASH_LEN, pt + PEER_PK_LEN);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, sizeof(pt), t->h, HASH_LEN, NULL,
						  nonce, t->k_hs);
}

/* Open the peer's sealed identity, check its signature and its id. */
static int open_id(struct tp *t, const uint8_t in[SEALED_ID_LEN], uint8_t nonce_last,
		   const char *label)
{
	uint8_t pt[ID_PT_LEN], msg[32 + HASH_LEN],
	    nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	size_t ll = strlen(label);

	memset(nonce, 0, sizeof(nonce));
	nonce[sizeof(nonce) - 1] = nonce_last;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(pt, NULL, NULL, in, SEALED_ID_LEN, t->h,
						      HASH_LEN, nonce, t->k_hs) != 0)
		return -EBADMSG;
	memcpy(msg, label, ll);
	memcpy(msg + ll, t->h, HASH_LEN);
	if (!peer_sig_verify(pt, msg, ll + HASH_LEN, pt + PEER_PK_LEN))
		return -EBADMSG;
	memcpy(t->peer_pk, pt, PEER_PK_LEN);
	peer_id_from_pk(t->peer_pk, t->peer_id);
	if (t->has_expect && sodium_memcmp(t->peer_id, t->expect, PEER_ID_LEN) != 0)
		return -EACCES;
	if (!memcmp(t->peer_id, peer_ident_id(t->ident), PEER_ID_LEN))
		return -EACCES; /* a connection to ourselves */
	if (!peer_id_pow_ok(t->peer_id, t->pow_bits))
		return -EKEYREJECTED;
	return 0;
}

static int dir_init(struct dir *d, bool enc)
{
	if (!(d->ctx = EVP_CIPHER_CTX_new()))
		return -ENOMEM;
	if ((enc ? EVP_EncryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL)
		 : EVP_DecryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL)) != 1 ||
	    EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) != 1 ||
	    (enc ? EVP_EncryptInit_ex(d->ctx, NULL, NULL, d->key, NULL)
		 : EVP_DecryptInit_ex(d->ctx, NULL, NULL, d->key, NULL)) != 1)
		return -EIO;
	return 0;
}

/* h2 is final: traffic keys, one EVP context per direction (invariant 2). */
static int finish(struct tp *t)
{
	uint8_t k_i2r[KEY_LEN], k_r2i[KEY_LEN];
	int rc;

	expand(k_i2r, t->prk, "i2r", t->h, HASH_LEN);
	expand(k_r2i, t->prk, "r2i", t->h, HASH_LEN);
	memcpy(t->out.key, t->initiator ? k_i2r : k_r2i, KEY_LEN);
	memcpy(t->in.key, t->initiator ? k_r2i : k_i2r, KEY_LEN);
	sodium_memzero(k_i2r, sizeof(k_i2r));
	sodium_memzero(k_r2i, sizeof(k_r2i));
	sodium_memzero(t->prk, sizeof(t->prk));
	sodium_memzero(t->k_hs, sizeof(t->k_hs));
	if ((rc = dir_init(&t->out, true)) < 0 || (rc = dir_init(&t->in, false)) < 0)
		return rc;
	t->st = HS_DONE;
	return 1;
}

int tp_hs_msg_len(const uint8_t hdr[static TP_HS_LEN_HDR], size_t *ret_len)
{
	size_t len = (size_t)hdr[0] << 8 | hdr[1];

	if (len > TP_HS_MAX)
		return -EMSGSIZE;
	*ret_len = TP_HS_LEN_HDR + len;
	return 0;
}

int tp_hs_start(struct tp *t, uint8_t out[static TP_HS_WIRE_MAX], size_t *ret_out_len)
{
	struct wbuf w;
	long n;

	if (t->st != HS_START)
		return t->st == HS_FAILED ? -EPIPE : -EPROTO;
	wbuf_init(&w, t->body1, sizeof(t->body1));
	wbuf_u8(&w, TP_VERSION);
	wbuf_bytes(&w, t->network, TP_NETWORK_LEN);
	wbuf_bytes(&w, t->e_pk, E_LEN);
	if ((n = wbuf_done(&w)) != BODY1_LEN)
		return fail(t, -EPROTO);
	wbuf_init(&w, out, TP_HS_WIRE_MAX);
	wbuf_u16(&w, BODY1_LEN);
	wbuf_bytes(&w, t->body1, BODY1_LEN);
	if ((n = wbuf_done(&w)) < 0)
		return fail(t, (int)n);
	t->st = HS_WAIT2;
	*ret_out_len = (size_t)n;
	return 0;
}

/* Responder: message 1 in, message 2 out. */
static int on_msg1(struct tp *t, struct rbuf *r, uint8_t *out, size_t *ret_out_len)
{
	const uint8_t *body = r->p, *net, *e_i;
	uint8_t version, sealed[SEALED_ID_LEN];
	struct wbuf w;
	long n;
	int rc;

	if ((rc = rbuf_u8(r, &version)) < 0)
		return rc;
	if (version != TP_VERSION)
		return -EPROTONOSUPPORT;
	if ((rc = rbuf_ref(r, TP_NETWORK_LEN, &net)) < 0 || (rc = rbuf_ref(r, E_LEN, &e_i)) < 0 ||
	    (rc = rbuf_end(r)) < 0)
		return rc;
	if (memcmp(net, t->network, TP_NETWORK_LEN) != 0)
		return -EACCES;
	if ((rc = derive_hs(t, body, t->e_pk, e_i)) < 0)
		return rc;
	seal_id(t, sealed, 0, SIG_RESP);
	wbuf_init(&w, out, TP_HS_WIRE_MAX);
	wbuf_u16(&w, BODY2_LEN);
	wbuf_bytes(&w, t->e_pk, E_LEN);
	wbuf_bytes(&w, sealed, sizeof(sealed));
	if ((n = wbuf_done(&w)) < 0)
		return (int)n;
	mix(t->h, sealed, sizeof(sealed)); /* h1 */
	t->st = HS_WAIT3;
	*ret_out_len = (size_t)n;
	return 0;
}

/* Initiator: message 2 in, message 3 out, established. */
static int on_msg2(struct tp *t, struct rbuf *r, uint8_t *out, size_t *ret_out_len)
{
	const uint8_t *e_r, *sealed_r;
	uint8_t sealed[SEALED_ID_LEN];
	struct wbuf w;
	long n;
	int rc;

	if ((rc = rbuf_ref(r, E_LEN, &e_r)) < 0 ||
	    (rc = rbuf_ref(r, SEALED_ID_LEN, &sealed_r)) < 0 || (rc = rbuf_end(r)) < 0)
		return rc;
	if ((rc = derive_hs(t, t->body1, e_r, e_r)) < 0 ||
	    (rc = open_id(t, sealed_r, 0, SIG_RESP)) < 0)
		return rc;
	mix(t->h, sealed_r, SEALED_ID_LEN); /* h1 */
	seal_id(t, sealed, 1, SIG_INIT);
	wbuf_init(&w, out, TP_HS_WIRE_MAX);
	wbuf_u16(&w, BODY3_LEN);
	wbuf_bytes(&w, sealed, sizeof(sealed));
	if ((n = wbuf_done(&w)) < 0)
		return (int)n;
	mix(t->h, sealed, sizeof(sealed)); /* h2 */
	if ((rc = finish(t)) < 0)
		return rc;
	*ret_out_len = (size_t)n;
	return 1;
}

/* Responder: message 3 in, established. */
static int on_msg3(struct tp *t, struct rbuf *r)
{
	const uint8_t *sealed;
	int rc;

	if ((rc = rbuf_ref(r, SEALED_ID_LEN, &sealed)) < 0 || (rc = rbuf_end(r)) < 0)
		return rc;
	if ((rc = open_id(t, sealed, 1, SIG_INIT)) < 0)
		return rc;
	mix(t->h, sealed, SEALED_ID_LEN); /* h2 */
	return finish(t);
}

int tp_hs_input(struct tp *t, const uint8_t *in, size_t len, uint8_t out[static TP_HS_WIRE_MAX],
		size_t *ret_out_len)
{
	struct rbuf r;
	uint16_t blen;
	size_t olen = 0;
	int rc;

	if (t->st == HS_FAILED)
		return -EPIPE;
	rbuf_init(&r, in, len);
	if ((rc = rbuf_u16(&r, &blen)) < 0)
		return fail(t, rc);
	if (blen > TP_HS_MAX)
		return fail(t, -EMSGSIZE);
	if (blen != rbuf_left(&r))
		return fail(t, -EPROTO); /* cut wrongly, truncated or padded */
	switch (t->st) {
	case HS_WAIT1:
		rc = on_msg1(t, &r, out, &olen);
		break;
	case HS_WAIT2:
		rc = on_msg2(t, &r, out, &olen);
		break;
	case HS_WAIT3:
		rc = on_msg3(t, &r);
		break;
	default:
		rc = -EPROTO; /* out of turn */
		break;
	}
	if (rc < 0)
		return fail(t, rc);
	*ret_out_len = olen;
	return rc;
}

/* ---- frames ---- */

static void iv_of(uint64_t ctr, uint8_t iv[IV_LEN])
{
	memset(iv, 0, IV_LEN - 8);
	be64_put(iv + IV_LEN - 8, ctr);
}

/* Count one frame; replace the key when a limit is reached (invariant 3). */
static int advance(struct tp *t, struct dir *d, size_t len, bool enc)
{
	uint8_t next[KEY_LEN];
	int ok;

	d->frames++;
	d->bytes += len;
	d->ctr++;
	d->key_bytes += len;
	if (d->ctr < t->rekey_frames && d->key_bytes < t->rekey_bytes)
		return 0;
	expand(next, d->key, "rekey", NULL, 0);
	memcpy(d->key, next, KEY_LEN);
	sodium_memzero(next, sizeof(next));
	ok = enc ? EVP_EncryptInit_ex(d->ctx, NULL, NULL, d->key, NULL)
		 : EVP_DecryptInit_ex(d->ctx, NULL, NULL, d->key, NULL);
	d->ctr = 0;
	d->key_bytes = 0;
	d->rekeys++;
	return ok == 1 ? 0 : -EIO;
}

static int state_rc(const struct tp *t)
{
	return t->st == HS_FAILED ? -EPIPE : -EPROTO;
}

long tp_sealv(struct tp *t, const struct iovec *iov, unsigned n, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = t->out.ctx;
	uint8_t iv[IV_LEN], *at;
	size_t len = 0;
	int outl;

	if (t->st != HS_DONE)
		return state_rc(t);
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].iov_len > TP_FRAME_MAX - len)
			return -EMSGSIZE;
		len += iov[i].iov_len;
	}
	be32_put(out, (uint32_t)len);
	iv_of(t->out.ctr, iv);
	at = out + TP_HDR_LEN;
	/* GCM is a stream mode: every update writes exactly its input length. */
	if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &outl, out, TP_HDR_LEN) != 1)
		return fail(t, -EIO);
	for (unsigned i = 0; i < n; i++) {
		if (!iov[i].iov_len)
			continue;
		if (EVP_EncryptUpdate(ctx, at, &outl, iov[i].iov_base, (int)iov[i].iov_len) != 1)
			return fail(t, -EIO);
		at += iov[i].iov_len;
	}
	if (EVP_EncryptFinal_ex(ctx, at, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TP_TAG_LEN, at) != 1 ||
	    advance(t, &t->out, len, true) < 0)
		return fail(t, -EIO);
	return (long)(len + TP_OVERHEAD);
}

long tp_seal(struct tp *t, const void *pt, size_t len, uint8_t *out)
{
	struct iovec iov = { .iov_base = (void *)pt, .iov_len = len };

	return tp_sealv(t, &iov, 1, out);
}

int tp_frame_len(const uint8_t hdr[static TP_HDR_LEN], size_t *ret_len)
{
	struct rbuf r;
	uint32_t len;

	rbuf_init(&r, hdr, TP_HDR_LEN);
	if (rbuf_u32(&r, &len) < 0)
		return -EPROTO;
	if (len > TP_FRAME_MAX)
		return -EMSGSIZE;
	*ret_len = (size_t)len + TP_OVERHEAD;
	return 0;
}

int tp_open_begin(struct tp *t, const uint8_t hdr[static TP_HDR_LEN], size_t *ret_len)
{
	uint8_t iv[IV_LEN];
	size_t flen;
	int rc, outl;

	if (t->st != HS_DONE)
		return state_rc(t);
	if (t->opening)
		return fail(t, -EPROTO);
	if ((rc = tp_frame_len(hdr, &flen)) < 0)
		return fail(t, rc);
	iv_of(t->in.ctr, iv);
	if (EVP_DecryptInit_ex(t->in.ctx, NULL, NULL, NULL, iv) != 1 ||
	    EVP_DecryptUpdate(t->in.ctx, NULL, &outl, hdr, TP_HDR_LEN) != 1)
		return fail(t, -EIO);
	t->opening = true;
	t->open_len = flen - TP_OVERHEAD;
	t->open_done = 0;
	*ret_len = t->open_len;
	return 0;
}

int tp_open_update(struct tp *t, uint8_t *buf, size_t n)
{
	int outl;

	if (t->st != HS_DONE)
		return state_rc(t);
	if (!t->opening || n > t->open_len - t->open_done)
		return fail(t, -EPROTO);
	if (n && EVP_DecryptUpdate(t->in.ctx, buf, &outl, buf, (int)n) != 1)
		return fail(t, -EIO);
	t->open_done += n;
	return 0;
}

int tp_open_final(struct tp *t, const uint8_t tag[static TP_TAG_LEN])
{
	uint8_t scratch[16];
	int outl;

	if (t->st != HS_DONE)
		return state_rc(t);
	if (!t->opening || t->open_done != t->open_len)
		return fail(t, -EPROTO);
	/* EVP takes the expected tag through a non-const pointer; it only reads it. */
	if (EVP_CIPHER_CTX_ctrl(t->in.ctx, EVP_CTRL_GCM_SET_TAG, TP_TAG_LEN, (void *)tag) != 1 ||
	    EVP_DecryptFinal_ex(t->in.ctx, scratch, &outl) != 1)
		return fail(t, -EBADMSG);
	t->opening = false;
	if (advance(t, &t->in, t->open_len, false) < 0)
		return fail(t, -EIO);
	return 0;
}

long tp_open(struct tp *t, uint8_t *frame, size_t len)
{
	size_t pl;
	int rc;

	if (t->st != HS_DONE)
		return state_rc(t);
	if (len < TP_OVERHEAD)
		return fail(t, -EPROTO);
	if ((rc = tp_open_begin(t, frame, &pl)) < 0)
		return rc;
	if (pl + TP_OVERHEAD != len)
		return fail(t, -EPROTO);
	if ((rc = tp_open_update(t, frame + TP_HDR_LEN, pl)) < 0 ||
	    (rc = tp_open_final(t, frame + TP_HDR_LEN + pl)) < 0)
		return rc;
	return (long)pl;
}
