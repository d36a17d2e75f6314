// SPDX-License-Identifier: MIT
/*
 * net/tp.c - handshake and frames of the peer transport (see tp.h).
 *
 * Keys live in sodium_malloc'd memory and are wiped on free. Each
 * direction keeps one EVP_CIPHER_CTX, set up once: sealing or opening a
 * frame allocates nothing.
 */
#include "net/tp.h"
#include "common/rbuf.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

#define E_LEN 32
#define SEALED_ID_LEN (PEER_PK_LEN + PEER_SIG_LEN + crypto_aead_chacha20poly1305_ietf_ABYTES)
#define MSG1_LEN (1 + TP_NETWORK_LEN + E_LEN)
#define MSG2_LEN (E_LEN + SEALED_ID_LEN)
#define MSG3_LEN (SEALED_ID_LEN)

enum hs_state { HS_START, HS_WAIT2, HS_WAIT1, HS_WAIT3, HS_DONE, HS_FAILED };

struct dir {
	EVP_CIPHER_CTX *ctx;
	uint64_t ctr;
};

struct secrets {
	uint8_t e_sk[32], prk[32], k_hs[32], key_out[32], key_in[32];
};

struct tp {
	const struct peer_ident *ident;
	uint8_t network[TP_NETWORK_LEN];
	uint8_t expect[PEER_ID_LEN];
	bool has_expect, initiator;
	unsigned pow_bits;
	enum hs_state st;
	uint8_t e_pk[32], peer_e[32];
	uint8_t h[32]; /* transcript hash so far */
	uint8_t peer_id[PEER_ID_LEN];
	struct secrets *sec;
	struct dir out, in;
};

void tp_default_network(uint8_t out[static TP_NETWORK_LEN])
{
	static const char name[] = "p2pfs network 1";
	uint8_t h[32];

	crypto_hash_sha256(h, (const uint8_t *)name, sizeof(name) - 1);
	memcpy(out, h, TP_NETWORK_LEN);
}

/* HKDF-SHA-256 expand of one block: HMAC(prk, info || 0x01). */
static void hkdf_expand(uint8_t out[32], const uint8_t prk[32], const void *info, size_t ilen,
			const uint8_t *ctx, size_t clen)
{
	crypto_auth_hmacsha256_state st;
	uint8_t one = 1;

	crypto_auth_hmacsha256_init(&st, prk, 32);
	crypto_auth_hmacsha256_update(&st, info, ilen);
	if (clen)
		crypto_auth_hmacsha256_update(&st, ctx, clen);
	crypto_auth_hmacsha256_update(&st, &one, 1);
	crypto_auth_hmacsha256_final(&st, out);
}

static void hash2(uint8_t out[32], const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	crypto_hash_sha256_state st;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, a, alen);
	crypto_hash_sha256_update(&st, b, blen);
	crypto_hash_sha256_final(&st, out);
}

static int dir_init(struct dir *d, const uint8_t key[32], bool enc)
{
	if (!(d->ctx = EVP_CIPHER_CTX_new()))
		return -ENOMEM;
	if ((enc ? EVP_EncryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL)
		 : EVP_DecryptInit_ex(d->ctx, EVP_aes_256_gcm(), NULL, NULL, NULL)) != 1 ||
	    EVP_CIPHER_CTX_ctrl(d->ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
	    (enc ? EVP_EncryptInit_ex(d->ctx, NULL, NULL, key, NULL)
		 : EVP_DecryptInit_ex(d->ctx, NULL, NULL, key, NULL)) != 1)
		return -EIO;
	d->ctr = 0;
	return 0;
}

int tp_new(const struct tp_opts *o, struct tp **ret)
{
	struct tp *t;

	if (!o->ident)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	if (!(t = calloc(1, sizeof(*t))))
		return -ENOMEM;
	if (!(t->sec = sodium_malloc(sizeof(*t->sec)))) {
		free(t);
		return -ENOMEM;
	}
	memset(t->sec, 0, sizeof(*t->sec));
	t->ident = o->ident;
	if (o->network)
		memcpy(t->network, o->network, TP_NETWORK_LEN);
	else
		tp_default_network(t->network);
	if (o->expect_id) {
		memcpy(t->expect, o->expect_id, PEER_ID_LEN);
		t->has_expect = true;
	}
	t->pow_bits = o->pow_bits;
	t->initiator = o->initiator;
	t->st = o->initiator ? HS_START : HS_WAIT1;
	randombytes_buf(t->sec->e_sk, 32);
	crypto_scalarmult_base(t->e_pk, t->sec->e_sk);
	*ret = t;
	return 0;
}

void tp_free(struct tp *t)
{
	if (!t)
		return;
	EVP_CIPHER_CTX_free(t->out.ctx);
	EVP_CIPHER_CTX_free(t->in.ctx);
	sodium_free(t->sec);
	sodium_memzero(t, sizeof(*t));
	free(t);
}

bool tp_established(const struct tp *t)
{
	return t->st == HS_DONE;
}

const uint8_t *tp_peer_id(const struct tp *t)
{
	return t->st == HS_DONE ? t->peer_id : NULL;
}

/* After both ephemerals are known: h = H(domain, network, e_I, e_R), keys from DH. */
static int derive_hs(struct tp *t)
{
	static const char dom[] = "p2pfs-tp-1";
	const uint8_t *ei = t->initiator ? t->e_pk : t->peer_e;
	const uint8_t *er = t->initiator ? t->peer_e : t->e_pk;
	crypto_hash_sha256_state st;
	uint8_t dh[32];

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)dom, sizeof(dom) - 1);
	crypto_hash_sha256_update(&st, t->network, TP_NETWORK_LEN);
	crypto_hash_sha256_update(&st, ei, 32);
	crypto_hash_sha256_update(&st, er, 32);
	crypto_hash_sha256_final(&st, t->h);
	if (crypto_scalarmult(dh, t->sec->e_sk, t->peer_e) != 0)
		return -EBADMSG; /* a low-order point: no shared secret */
	crypto_auth_hmacsha256(t->sec->prk, dh, sizeof(dh), t->h); /* HKDF-extract, salt = h */
	sodium_memzero(dh, sizeof(dh));
	sodium_memzero(t->sec->e_sk, sizeof(t->sec->e_sk)); /* forward secrecy from here on */
	hkdf_expand(t->sec->k_hs, t->sec->prk, "hs", 2, NULL, 0);
	return 0;
}

/* Seal our identity: pk || Ed25519 signature over (role tag || h). */
static void seal_id(struct tp *t, uint8_t *out, uint8_t nonce_byte, const char *role)
{
	uint8_t pt[PEER_PK_LEN + PEER_SIG_LEN], msg[16 + 32], nonce[12] = { 0 };
	size_t rl = strlen(role);

	memcpy(msg, role, rl);
	memcpy(msg + rl, t->h, 32);
	memcpy(pt, peer_ident_pk(t->ident), PEER_PK_LEN);
	peer_ident_sign(t->ident, msg, rl + 32, pt + PEER_PK_LEN);
	nonce[11] = nonce_byte;
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, sizeof(pt), t->h, 32, NULL, nonce,
						  t->sec->k_hs);
}

static int open_id(struct tp *t, const uint8_t *in, uint8_t nonce_byte, const char *role)
{
	uint8_t pt[PEER_PK_LEN + PEER_SIG_LEN], msg[16 + 32], nonce[12] = { 0 };
	size_t rl = strlen(role);

	nonce[11] = nonce_byte;
	if (crypto_aead_chacha20poly1305_ietf_decrypt(pt, NULL, NULL, in, SEALED_ID_LEN, t->h, 32,
						      nonce, t->sec->k_hs) != 0)
		return -EBADMSG;
	memcpy(msg, role, rl);
	memcpy(msg + rl, t->h, 32);
	if (!peer_sig_verify(pt, msg, rl + 32, pt + PEER_PK_LEN))
		return -EBADMSG;
	peer_id_from_pk(pt, t->peer_id);
	if (!peer_id_pow_ok(t->peer_id, t->pow_bits))
		return -EKEYREJECTED;
	if (t->has_expect && sodium_memcmp(t->peer_id, t->expect, PEER_ID_LEN) != 0)
		return -EACCES;
	if (!memcmp(t->peer_id, peer_ident_id(t->ident), PEER_ID_LEN))
		return -EACCES; /* ourselves */
	return 0;
}

static int finish(struct tp *t)
{
	uint8_t k_i2r[32], k_r2i[32];
	int rc;

	hkdf_expand(k_i2r, t->sec->prk, "i2r", 3, t->h, 32);
	hkdf_expand(k_r2i, t->sec->prk, "r2i", 3, t->h, 32);
	memcpy(t->sec->key_out, t->initiator ? k_i2r : k_r2i, 32);
	memcpy(t->sec->key_in, t->initiator ? k_r2i : k_i2r, 32);
	sodium_memzero(k_i2r, 32);
	sodium_memzero(k_r2i, 32);
	if ((rc = dir_init(&t->out, t->sec->key_out, true)) < 0 ||
	    (rc = dir_init(&t->in, t->sec->key_in, false)) < 0)
		return rc;
	sodium_memzero(t->sec->k_hs, 32);
	t->st = HS_DONE;
	return 1;
}

int tp_hs_start(struct tp *t, uint8_t out[static TP_HS_MAX], size_t *ret_len)
{
	if (t->st != HS_START)
		return -EPROTO;
	out[0] = TP_VERSION;
	memcpy(out + 1, t->network, TP_NETWORK_LEN);
	memcpy(out + 1 + TP_NETWORK_LEN, t->e_pk, E_LEN);
	*ret_len = MSG1_LEN;
	t->st = HS_WAIT2;
	return 0;
}

int tp_hs_input(struct tp *t, const uint8_t *in, size_t len, uint8_t out[static TP_HS_MAX],
		size_t *ret_len)
{
	uint8_t h[32];
	int rc = -EPROTO;

	*ret_len = 0;
	switch (t->st) {
	case HS_WAIT1: /* responder: message 1 -> message 2 */
		if (len != MSG1_LEN || in[0] != TP_VERSION)
			break;
		if (memcmp(in + 1, t->network, TP_NETWORK_LEN)) {
			rc = -EACCES;
			break;
		}
		memcpy(t->peer_e, in + 1 + TP_NETWORK_LEN, E_LEN);
		if ((rc = derive_hs(t)) < 0)
			break;
		memcpy(out, t->e_pk, E_LEN);
		seal_id(t, out + E_LEN, 0, "p2pfs-tp-1 R");
		hash2(h, t->h, 32, out + E_LEN, SEALED_ID_LEN);
		memcpy(t->h, h, 32);
		*ret_len = MSG2_LEN;
		t->st = HS_WAIT3;
		return 0;
	case HS_WAIT2: /* initiator: message 2 -> message 3, done */
		if (len != MSG2_LEN)
			break;
		memcpy(t->peer_e, in, E_LEN);
		if ((rc = derive_hs(t)) < 0 || (rc = open_id(t, in + E_LEN, 0, "p2pfs-tp-1 R")) < 0)
			break;
		hash2(h, t->h, 32, in + E_LEN, SEALED_ID_LEN);
		memcpy(t->h, h, 32);
		seal_id(t, out, 1, "p2pfs-tp-1 I");
		hash2(h, t->h, 32, out, SEALED_ID_LEN);
		memcpy(t->h, h, 32);
		*ret_len = MSG3_LEN;
		return finish(t);
	case HS_WAIT3: /* responder: message 3, done */
		if (len != MSG3_LEN)
			break;
		if ((rc = open_id(t, in, 1, "p2pfs-tp-1 I")) < 0)
			break;
		hash2(h, t->h, 32, in, SEALED_ID_LEN);
		memcpy(t->h, h, 32);
		return finish(t);
	default:
		break;
	}
	t->st = HS_FAILED;
	return rc;
}

/* ---- frames ---- */

static void nonce_of(uint64_t ctr, uint8_t iv[12])
{
	memset(iv, 0, 4);
	be64_put(iv + 4, ctr);
}

static void ratchet(struct dir *d, uint8_t key[32], bool enc)
{
	uint8_t next[32];

	hkdf_expand(next, key, "rekey", 5, NULL, 0);
	memcpy(key, next, 32);
	sodium_memzero(next, 32);
	if (enc)
		(void)EVP_EncryptInit_ex(d->ctx, NULL, NULL, key, NULL);
	else
		(void)EVP_DecryptInit_ex(d->ctx, NULL, NULL, key, NULL);
}

size_t tp_seal(struct tp *t, const uint8_t *pt, size_t len, uint8_t *out)
{
	uint8_t iv[12];
	int n;

	be32_put(out, (uint32_t)len);
	nonce_of(t->out.ctr, iv);
	(void)EVP_EncryptInit_ex(t->out.ctx, NULL, NULL, NULL, iv);
	(void)EVP_EncryptUpdate(t->out.ctx, NULL, &n, out, TP_HDR_LEN);
	if (len)
		(void)EVP_EncryptUpdate(t->out.ctx, out + TP_HDR_LEN, &n, pt, (int)len);
	(void)EVP_EncryptFinal_ex(t->out.ctx, out + TP_HDR_LEN + len, &n);
	(void)EVP_CIPHER_CTX_ctrl(t->out.ctx, EVP_CTRL_GCM_GET_TAG, TP_TAG_LEN,
				  out + TP_HDR_LEN + len);
	if (++t->out.ctr % TP_REKEY_FRAMES == 0)
		ratchet(&t->out, t->sec->key_out, true);
	return len + TP_OVERHEAD;
}

int tp_frame_len(const uint8_t hdr[static TP_HDR_LEN], size_t *ret)
{
	uint32_t len = be32_get(hdr);

	if (len > TP_FRAME_MAX)
		return -EMSGSIZE;
	*ret = (size_t)len + TP_OVERHEAD;
	return 0;
}

long tp_open(struct tp *t, uint8_t *frame, size_t len)
{
	size_t want;
	uint8_t iv[12];
	uint32_t pl;
	int n, rc;

	if (t->st != HS_DONE)
		return -EPROTO;
	if (len < TP_OVERHEAD)
		return -EPROTO;
	if ((rc = tp_frame_len(frame, &want)) < 0)
		return rc;
	if (want != len)
		return -EPROTO;
	pl = be32_get(frame);
	nonce_of(t->in.ctr, iv);
	if (EVP_DecryptInit_ex(t->in.ctx, NULL, NULL, NULL, iv) != 1 ||
	    EVP_DecryptUpdate(t->in.ctx, NULL, &n, frame, TP_HDR_LEN) != 1 ||
	    (pl && EVP_DecryptUpdate(t->in.ctx, frame + TP_HDR_LEN, &n, frame + TP_HDR_LEN,
				     (int)pl) != 1) ||
	    EVP_CIPHER_CTX_ctrl(t->in.ctx, EVP_CTRL_GCM_SET_TAG, TP_TAG_LEN,
				frame + TP_HDR_LEN + pl) != 1 ||
	    EVP_DecryptFinal_ex(t->in.ctx, frame + TP_HDR_LEN + pl, &n) != 1) {
		t->st = HS_FAILED; /* a forged frame ends the connection */
		return -EBADMSG;
	}
	if (++t->in.ctr % TP_REKEY_FRAMES == 0)
		ratchet(&t->in, t->sec->key_in, false);
	return (long)pl;
}
