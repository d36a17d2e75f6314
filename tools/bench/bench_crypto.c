// SPDX-License-Identifier: MIT
/*
 * tools/bench/bench_crypto.c - throughput of the hashing and encryption
 * primitives p2pfs chose between (DESIGN.md "Crypto and hashing"), on one
 * core, so the choice can be re-checked on other hardware.
 *
 * Each primitive processes one buffer (1 MiB; AEADs also 64 KiB, the size
 * of transport frames) over and over for a fixed time; a run's figure is
 * bytes / time, and the printed figure is the median of the runs. Each
 * group prints ratios against the primitive p2pfs uses.
 *
 * Usage: bench_crypto [--quick]   (--quick: 3 short runs, for CI smoke)
 */
#include "chunkstore/cdc.h"
#include "chunkstore/cs_format.h"
#include "common/tm.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <xxhash.h>

static int runs = 5;
static uint64_t run_ns = 250000000; /* per run */

struct prim {
	const char *group, *name;
	size_t len;
	void (*fn)(const uint8_t *in, uint8_t *out, size_t len);
	bool ours; /* what p2pfs uses: the baseline of its group */
};

static volatile uint64_t sink;
static uint8_t key[32], nonce[24];
static EVP_MD *md_sha256;
static EVP_CIPHER *ci_gcm, *ci_chacha;
static EVP_CIPHER_CTX *cctx;

static void sha256_ossl(const uint8_t *in, uint8_t *out, size_t len)
{
	unsigned n;

	EVP_Digest(in, len, out, &n, md_sha256, NULL);
}

static void sha256_cs(const uint8_t *in, uint8_t *out, size_t len)
{
	cs_id_compute(in, len, out);
}

static void sha256_sodium(const uint8_t *in, uint8_t *out, size_t len)
{
	crypto_hash_sha256(out, in, len);
}

static void blake2b_sodium(const uint8_t *in, uint8_t *out, size_t len)
{
	crypto_generichash(out, 32, in, len, NULL, 0);
}

uint64_t XXH3_64bits_dispatch(const void *data, size_t len);
uint64_t bench_xxh3_inline(const void *data, size_t len);

static void xxh3_plain(const uint8_t *in, uint8_t *out, size_t len)
{
	(void)out;
	sink += XXH3_64bits(in, len);
}

#if defined(__x86_64__)
static void xxh3_dispatch(const uint8_t *in, uint8_t *out, size_t len)
{
	(void)out;
	sink += XXH3_64bits_dispatch(in, len);
}
#endif

static void xxh3_inline(const uint8_t *in, uint8_t *out, size_t len)
{
	(void)out;
	sink += bench_xxh3_inline(in, len);
}

static void xxh3_cs(const uint8_t *in, uint8_t *out, size_t len)
{
	(void)out;
	sink += cs__xxh(in, len, 0);
}

static void evp_aead(const EVP_CIPHER *c, const uint8_t *in, uint8_t *out, size_t len)
{
	int n = 0, f = 0;
	uint8_t tag[16];

	nonce[0]++;
	if (EVP_EncryptInit_ex(cctx, c, NULL, key, nonce) != 1 ||
	    EVP_EncryptUpdate(cctx, out, &n, in, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(cctx, out + n, &f) != 1 ||
	    EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) != 1)
		abort();
	sink += tag[0];
}

static void gcm_ossl(const uint8_t *in, uint8_t *out, size_t len)
{
	evp_aead(ci_gcm, in, out, len);
}

static void chacha_ossl(const uint8_t *in, uint8_t *out, size_t len)
{
	evp_aead(ci_chacha, in, out, len);
}

static void gcm_sodium(const uint8_t *in, uint8_t *out, size_t len)
{
	uint8_t tag[16];
	unsigned long long tl;

	nonce[0]++;
	crypto_aead_aes256gcm_encrypt_detached(out, tag, &tl, in, len, NULL, 0, NULL, nonce, key);
	sink += tag[0];
}

static void xchacha_sodium(const uint8_t *in, uint8_t *out, size_t len)
{
	uint8_t tag[16];
	unsigned long long tl;

	nonce[0]++;
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out, tag, &tl, in, len, NULL, 0, NULL,
							    nonce, key);
	sink += tag[0];
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double measure(const struct prim *p, const uint8_t *in, uint8_t *out)
{
	double gbs[16];

	p->fn(in, out, p->len); /* warm up */
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = tm_mono_ns(), t, bytes = 0;

		do {
			for (int k = 0; k < 8; k++)
				p->fn(in, out, p->len);
			bytes += 8 * p->len;
			t = tm_mono_ns() - t0;
		} while (t < run_ns);
		gbs[r] = (double)bytes / (double)t;
	}
	qsort(gbs, (size_t)runs, sizeof(gbs[0]), cmp_double);
	return gbs[runs / 2];
}

int main(int argc, char **argv)
{
	const struct prim prims[] = {
		{ "hash", "SHA-256, libcrypto EVP (chunk ids)", 1 << 20, sha256_cs, true },
		{ "hash", "SHA-256, libcrypto EVP_Digest", 1 << 20, sha256_ossl, false },
		{ "hash", "SHA-256, libsodium", 1 << 20, sha256_sodium, false },
		{ "hash", "BLAKE2b-256, libsodium", 1 << 20, blake2b_sodium, false },
		{ "checksum", "XXH3-64, cs__xxh (record checksums)", 1 << 20, xxh3_cs, true },
#if defined(__x86_64__)
		{ "checksum", "XXH3-64, libxxhash dispatch entry", 1 << 20, xxh3_dispatch, false },
#endif
		{ "checksum", "XXH3-64, libxxhash plain entry", 1 << 20, xxh3_plain, false },
		{ "checksum", "XXH3-64, XXH_INLINE_ALL, our flags", 1 << 20, xxh3_inline, false },
		{ "aead 1 MiB", "AES-256-GCM, libcrypto (frames)", 1 << 20, gcm_ossl, true },
		{ "aead 1 MiB", "ChaCha20-Poly1305, libcrypto", 1 << 20, chacha_ossl, false },
		{ "aead 1 MiB", "AES-256-GCM, libsodium", 1 << 20, gcm_sodium, false },
		{ "aead 1 MiB", "XChaCha20-Poly1305, libsodium", 1 << 20, xchacha_sodium, false },
		{ "aead 64 KiB", "AES-256-GCM, libcrypto (frames)", 64 << 10, gcm_ossl, true },
		{ "aead 64 KiB", "ChaCha20-Poly1305, libcrypto", 64 << 10, chacha_ossl, false },
		{ "aead 64 KiB", "AES-256-GCM, libsodium", 64 << 10, gcm_sodium, false },
		{ "aead 64 KiB", "XChaCha20-Poly1305, libsodium", 64 << 10, xchacha_sodium, false },
	};
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	uint8_t *in = malloc(1 << 20), *out = malloc((1 << 20) + 64);
	const char *group = "";
	double base = 0;

	if (argc > 1 && !quick) {
		fprintf(stderr, "usage: bench_crypto [--quick]\n");
		return 2;
	}
	if (quick) {
		runs = 3;
		run_ns = 20000000;
	}
	if (!in || !out || sodium_init() < 0)
		return 1;
	randombytes_buf(in, 1 << 20);
	randombytes_buf(key, sizeof(key));
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	ci_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	ci_chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
	cctx = EVP_CIPHER_CTX_new();
	if (!md_sha256 || !ci_gcm || !ci_chacha || !cctx)
		return 1;
	printf("# one core, median of %d runs of %.0f ms; * = what p2pfs uses, ratio against it\n",
	       runs, (double)run_ns / 1e6);
	for (size_t i = 0; i < ARRAY_SIZE(prims); i++) {
		const struct prim *p = &prims[i];
		double g;

		if (p->fn == gcm_sodium && !crypto_aead_aes256gcm_is_available()) {
			printf("%-12s   %-40s  (no AES instructions: skipped)\n", p->group,
			       p->name);
			continue;
		}
		g = measure(p, in, out);
		if (strcmp(group, p->group) != 0) {
			group = p->group;
			base = g; /* the first of each group is the one p2pfs uses */
		}
		printf("%-12s %c %-40s %7.2f GB/s  %5.2fx\n", p->group, p->ours ? '*' : ' ',
		       p->name, g, g / base);
		fflush(stdout);
	}
	EVP_CIPHER_CTX_free(cctx);
	EVP_CIPHER_free(ci_gcm);
	EVP_CIPHER_free(ci_chacha);
	EVP_MD_free(md_sha256);
	free(in);
	free(out);
	return 0;
}
