// SPDX-License-Identifier: MIT
/*
 * chunkstore/cdc.c - FastCDC content-defined chunking and SHA-256 chunk ids
 * (see cdc.h).
 *
 * The gear hash h = (h << 1) + GEAR[byte] forgets a byte after 64 steps, so
 * h at byte i is a function of bytes i-63..i alone. A cut is tested on the
 * top bits of h (the bits that depend on the whole 64-byte window): chunk
 * length n is a cut when the top bits of h at byte n-1 are zero, with
 * log2(avg)+2 bits for n < avg and log2(avg)-2 bits from avg on
 * (normalized chunking, level 2: sizes cluster around the average).
 *
 * Speed: one gear step is a byte load, a table load and an add that depends
 * on the previous step, so a plain loop runs at ~1.4 GB/s. Because h depends
 * only on the last 64 bytes, a region can be split into 4 lanes that each
 * start 63 bytes early and run interleaved (4 independent dependency
 * chains); the first lane with a hit is re-scanned serially to find the
 * exact first cut, which is therefore the same as the serial scan's. Bytes
 * before min_size - 63 are never hashed. Measured ~3.2 GB/s for the lanes
 * (bench_store prints the figure).
 *
 * Invariants:
 *  1. The cut depends only on the bytes from the chunk start to the cut and
 *     63 before it; feeding the same stream in any pieces gives the same
 *     cuts (cs_cdc_cut() returns 0 until it can decide).
 *  2. GEAR is part of the chunk format: changing it changes every chunk id
 *     and defeats dedup between versions. It is splitmix64 from the seed
 *     0x70327066735f6364 ("p2pfs_cd"), written out so that it cannot drift.
 *  3. Every chunk is 1..max_size bytes; only the last chunk of a stream
 *     (eof) may be shorter than min_size.
 */
#include "chunkstore/cdc.h"
#include "chunkstore/cs_int.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

const struct cs_cdc_params cs_cdc_default = {
	.min_size = 256U * 1024U,
	.avg_size = 1024U * 1024U,
	.max_size = 4U * 1024U * 1024U,
};

static const uint64_t GEAR[256] = {
	0x6a285694f0b19b9cULL, 0x84020380947a3ad6ULL, 0xcf777ee531102a2dULL, 0x80b88b79012290b7ULL,
	0x64506f31ff1d86f2ULL, 0xcc7cb23592eb064fULL, 0x81513e08a58a368eULL, 0xc7a6423d348cafc5ULL,
	0x2a9fcf2a1f1d79e9ULL, 0x36ee963776939b09ULL, 0xadcf120acbc0f9fcULL, 0x011cd8f3017a68ffULL,
	0xdb20ba7bf9a70415ULL, 0x2801453ed5b01763ULL, 0x440509022dc58803ULL, 0xe92cea042785d51cULL,
	0xeff180a54203ae13ULL, 0x91cbc351ac3202d0ULL, 0xc0e244cbcc36c6c0ULL, 0x2f381129d5969a97ULL,
	0x2c7c6fc4809fcc02ULL, 0xae75ee38a1ffc0c2ULL, 0x169290258e385258ULL, 0xdb370ae420fc18d0ULL,
	0x229b535f63891007ULL, 0xfc53f4e65c4e4324ULL, 0x0208e10a0c30b395ULL, 0x436125bf6bc7733fULL,
	0x73e845a8dcbad8a8ULL, 0x01dcd39516bda2a8ULL, 0x163dc5c7a99af2deULL, 0x11e886534440ae96ULL,
	0x0b29e4401bf3cd14ULL, 0x5108d329a8ca9df6ULL, 0x080a0180416f6530ULL, 0x714542bf342c111eULL,
	0x0832af0d105328b1ULL, 0x95e225996ba65c71ULL, 0xccad57549fd49206ULL, 0x1ac6e9e4a22aa4ceULL,
	0xda1a04ede558dfb6ULL, 0x963a1b41fa4beac3ULL, 0x594282bb92df2b8dULL, 0xa22d65155da8acedULL,
	0xce8801b7bed5e0e0ULL, 0xf8ae6b316fdcd993ULL, 0x2bded8c8f61846b2ULL, 0x3fa30d74505c2144ULL,
	0xc5bb7011df1911a5ULL, 0xe2442ad877ecd339ULL, 0xe212b8c96e6e4cbdULL, 0x4a3db44646a6a5d1ULL,
	0xe6297c1f69c2cb80ULL, 0x2d747070ed93fcafULL, 0x2169289dab5cc10dULL, 0xaae1d3858488aae0ULL,
	0x7b5b6f86a8502d62ULL, 0xfa96986fb8d0773aULL, 0x0f956c736cfcbc3aULL, 0xf8c584bc2d1d7f7eULL,
	0x268f58068f9b5c8bULL, 0x65757197f7791992ULL, 0x650548105dfdd0a8ULL, 0xe90a927cacbd754dULL,
	0x2a87c33d25c44e7dULL, 0x0b95709c24a69c4eULL, 0x6b02651cd9cae91cULL, 0xc137ed195dded563ULL,
	0xd2f95c5162bcf63fULL, 0xabc20337cd2a3e64ULL, 0x49a690391e473d0bULL, 0xc516d0694c438ae1ULL,
	0xfa7babe0e8c288d6ULL, 0x8b3379f306d02c0cULL, 0x1ab77ba70109aac4ULL, 0x1950ea60a2a69f95ULL,
	0x427ff6f796e7a062ULL, 0x6023db41081fe9e9ULL, 0x914fb56115140de7ULL, 0x6136e3c4415e07c8ULL,
	0xe6852bac1713592fULL, 0xfdbff4ab70cac2afULL, 0xdf8df0a0cde300e8ULL, 0x5251ae96a21aabefULL,
	0x8cbfc31952952369ULL, 0xe72160406bcb067bULL, 0x78430c41b295ea64ULL, 0xe38c9f413fe071e0ULL,
	0xafdf1ec91010d0c2ULL, 0x638498c3b94d11fdULL, 0xbeb1ee83fb81ea7eULL, 0x785a17ebbf86067fULL,
	0x439404f14ef98f9aULL, 0x92ea8f949488c4bfULL, 0x0d4e8f7eb3515477ULL, 0xd813c1eabaa4304dULL,
	0x64aa20a92f5cc229ULL, 0xa12226175c275f3fULL, 0x503cb97f100e22abULL, 0x79ee9983b907fd9cULL,
	0x0e16442191084a61ULL, 0xd4119dbda8c415f3ULL, 0x8fe646bdcb012b8dULL, 0x76dd659fed19465eULL,
	0x98db984f2f5d93d1ULL, 0xcb3b116064548337ULL, 0xa2cb6db9ae40c7b9ULL, 0xc8974d3b28cfd0f3ULL,
	0x2894bbafa62c161bULL, 0x77e21e21a1efb7efULL, 0x0fb1409a24c16d36ULL, 0xff8e286013c265caULL,
	0xe6bff66906a5c020ULL, 0x8fb9dbea076f0593ULL, 0x746c6568aef1c58cULL, 0x94b1d92ccafa4838ULL,
	0xbce5cff0c7a2b74aULL, 0xc43a3c62c3d3f936ULL, 0x1dcceb7bea756968ULL, 0x163702cf9309702aULL,
	0xa77ec8f9f92d8ec3ULL, 0x3891eceec7b2878fULL, 0xf95994eb213b787cULL, 0xe6df4706087f79c5ULL,
	0xb82fcfbe6b1d1d18ULL, 0xe0e39363bed1d2aaULL, 0x80fc7abb6e378315ULL, 0x53f97b77897b9e91ULL,
	0x6e93851977f24585ULL, 0xf24179cce522b1feULL, 0xbf1555f8349025d2ULL, 0x568ade43948c1746ULL,
	0xba39c1381d01da96ULL, 0x5bfc53b1e8857aa1ULL, 0x2472c968df41c9beULL, 0xd85f2f466b5c3a06ULL,
	0x047c6887483a31fbULL, 0x54d9d69061b9ae7bULL, 0x2eba0d2bb54cfea6ULL, 0x8e2666a6eef84250ULL,
	0x5c4b99f272ffe0acULL, 0x3c9555cf1d99f10aULL, 0x0570760bc582323dULL, 0x46f13afce327c8d9ULL,
	0xd98ed94c35652adfULL, 0x6a5ac391ad344886ULL, 0x726627df4dd8d052ULL, 0xdd1ca7f13da0ae72ULL,
	0x4afc0da691745137ULL, 0x444734079bef5c87ULL, 0x2cedcaf15b4d5d9fULL, 0x8b120b1edb621789ULL,
	0x0e9d18eb8d2b9890ULL, 0xc4e1c2a0c3e5bc03ULL, 0x2b3648ed49a4262dULL, 0xf45999447810b191ULL,
	0x656bf86a884cbf4eULL, 0x2956b06590451568ULL, 0x0f69df00230e8eefULL, 0x4a4d39fd98ffac70ULL,
	0xc85f74653c4816caULL, 0x6d01b7a20ecf793eULL, 0xd16c8025b2fecc76ULL, 0xe8264ccf6f4a218dULL,
	0x0d5d6993fbba5b96ULL, 0x0292ad195d346f9fULL, 0x7049f3bcd18bc768ULL, 0x544d16291485fcf6ULL,
	0xd2b6ba16be090ed4ULL, 0x3cbdd82503f51141ULL, 0x222035590fdb9231ULL, 0x13d0a8a3a3872f75ULL,
	0xf427b38d252e4d7cULL, 0x39166421c28c1bf4ULL, 0x62c4ad939d9d9f8bULL, 0x0ad4db6865c39cddULL,
	0x7d818e8343800b34ULL, 0x3a6a8adffc3ee608ULL, 0x0ce9b571c244ae98ULL, 0x2e0322761ec8662bULL,
	0xf3fb4ceded826734ULL, 0xc9d013ff91181ef3ULL, 0xb52291001de0133dULL, 0x307f76f0574f26e6ULL,
	0xf8272871c82a0e06ULL, 0x41c0e23ca08891d4ULL, 0x2d71eb77a7f1855cULL, 0x73e4ac55f185780aULL,
	0x14179c297db9464bULL, 0x66feef1183d76d0eULL, 0xcb8a95cc74b37cdbULL, 0x114df173a78801d6ULL,
	0x687d5a9a4e577cc8ULL, 0x7e0aa4e2333872d0ULL, 0x15b253d7d5b2ad91ULL, 0x8bfa9fac6ba0a710ULL,
	0xfb0c174250393984ULL, 0xcb656fb879e00c1cULL, 0xfe7652a74f9fcd6bULL, 0x3781ff407180cba7ULL,
	0x34e221e327055fb2ULL, 0xdde3a1d621def7ccULL, 0x0b020c7715639a7fULL, 0x33f400323dcdfc8aULL,
	0x18e349839a4fdd04ULL, 0x7c48983be9b9a438ULL, 0x2da9e42b63f97437ULL, 0xfc15f1ed9a4df83fULL,
	0xd37061a65b850fefULL, 0x4d3f2664d4178104ULL, 0x66c3acf515743531ULL, 0x46fdb973bc51e96dULL,
	0x5a5c27df61e8bf68ULL, 0xf2358ceba13247ddULL, 0x87660c6320ccc37cULL, 0x7a9a6c05fa0a86ceULL,
	0x9f38abdb54573be8ULL, 0xcd3bc8191b56f036ULL, 0x344d30173a8ebfb7ULL, 0x0d854357fae13cb1ULL,
	0xfd17a8c376b32c87ULL, 0xeecd3b157439377cULL, 0x451c86d303081a2bULL, 0x015ece054b6f05ccULL,
	0xb1feb928f25277a3ULL, 0x2594f421ea682267ULL, 0x89fce074a266fffdULL, 0x5be34188684c3fd6ULL,
	0xf07d7ed65c7ed2b5ULL, 0x04a2018e7c3ffd46ULL, 0x578d429e07f0c689ULL, 0x6b7ca634e19aec4eULL,
	0x69a4e99a8ccc261cULL, 0x65fddde54bfc5f5bULL, 0xe29f407b22bdf0e4ULL, 0x5514d6d6681d833bULL,
	0x6ee7a7d13aa0170bULL, 0x44f536e9c2ce9270ULL, 0x554a40531a8f2cd3ULL, 0x20fa863c2bb5122dULL,
	0x28a654a660e07e17ULL, 0xcd8011f9049289eeULL, 0x8ce8288b2dd71b4cULL, 0x8944b46b50560e89ULL,
	0xe1d8657dfbe9f812ULL, 0x25098cec667a844bULL, 0x7ff7bc6eb764a4f8ULL, 0x12afecc29d52de74ULL,
	0x73d24d258e63292eULL, 0x1cca7531676774aeULL, 0x9bda8bb1e73b0d03ULL, 0x6c9bdeea57930fc7ULL,
	0xae07279a996e51f3ULL, 0xcd26e8f30cba26d9ULL, 0x37031efe93c92b4bULL, 0x592229e5a21c813cULL,
};

int cs_cdc_params_check(const struct cs_cdc_params *p)
{
	if (p->min_size < CS_CHUNK_MIN_LIMIT || p->max_size > CS_CHUNK_MAX_LIMIT)
		return -EINVAL;
	if (!(p->min_size < p->avg_size && p->avg_size < p->max_size))
		return -EINVAL;
	if (p->avg_size & (p->avg_size - 1))
		return -EINVAL;
	return 0;
}

/* Threshold t such that "top @bits bits of h are zero" is h < t. */
static inline uint64_t thresh(unsigned bits)
{
	return 1ULL << (64 - bits);
}

/* First i in [from, to) with h(i) < t, or @to. Needs from >= 63. */
static size_t scan_serial(const uint8_t *b, size_t from, size_t to, uint64_t t)
{
	uint64_t h = 0;

	for (size_t i = from - 63; i < from; i++)
		h = (h << 1) + GEAR[b[i]];
	for (size_t i = from; i < to; i++) {
		h = (h << 1) + GEAR[b[i]];
		if (h < t)
			return i;
	}
	return to;
}

/*
 * Lane length: 4 lanes of 4 KiB per round. Shorter lanes waste more on the
 * 63-byte warm-up, longer ones on the serial re-scan of the round with the
 * hit (at most 16 KiB per chunk).
 */
#define LANE 4096U

static size_t scan(const uint8_t *b, size_t from, size_t to, uint64_t t)
{
	size_t base = from;

	while (to - base >= 4 * LANE) {
		const uint8_t *p = b + base - 63, *warm = b + base, *end = b + base + LANE;
		uint64_t h0 = 0, h1 = 0, h2 = 0, h3 = 0;

		for (; p < warm; p++) {
			h0 = (h0 << 1) + GEAR[p[0]];
			h1 = (h1 << 1) + GEAR[p[LANE]];
			h2 = (h2 << 1) + GEAR[p[2 * LANE]];
			h3 = (h3 << 1) + GEAR[p[3 * LANE]];
		}
		for (; p < end; p++) {
			h0 = (h0 << 1) + GEAR[p[0]];
			h1 = (h1 << 1) + GEAR[p[LANE]];
			h2 = (h2 << 1) + GEAR[p[2 * LANE]];
			h3 = (h3 << 1) + GEAR[p[3 * LANE]];
			if (__builtin_expect((h0 < t) | (h1 < t) | (h2 < t) | (h3 < t), 0))
				return scan_serial(b, base, base + 4 * LANE, t);
		}
		base += 4 * LANE;
	}
	return scan_serial(b, base, to, t);
}

size_t cs_cdc_cut(const struct cs_cdc_params *p, const uint8_t *buf, size_t len, bool eof)
{
	unsigned bits;
	size_t end, i, avg_i;

	assert(cs_cdc_params_check(p) == 0);
	if (len == 0)
		return 0;
	if (len <= p->min_size)
		return eof ? len : 0; /* len <= min < max */
	end = P2P_MIN(len, (size_t)p->max_size);
	bits = (unsigned)__builtin_ctz(p->avg_size);
	/* Byte i decides chunk length i + 1: lengths [min, avg) strict, [avg, end] loose. */
	avg_i = P2P_MIN((size_t)p->avg_size - 1, end);
	i = scan(buf, p->min_size - 1, avg_i, thresh(bits + 2));
	if (i == avg_i && avg_i < end)
		i = scan(buf, avg_i, end, thresh(bits - 2));
	if (i < end)
		return i + 1;
	if (end == p->max_size || eof)
		return end;
	return 0;
}

size_t cs__cdc_cut_serial(const struct cs_cdc_params *p, const uint8_t *buf, size_t len, bool eof)
{
	unsigned bits;
	size_t end, i, avg_i;

	if (len == 0)
		return 0;
	if (len <= p->min_size)
		return eof ? len : 0;
	end = P2P_MIN(len, (size_t)p->max_size);
	bits = (unsigned)__builtin_ctz(p->avg_size);
	avg_i = P2P_MIN((size_t)p->avg_size - 1, end);
	i = scan_serial(buf, p->min_size - 1, avg_i, thresh(bits + 2));
	if (i == avg_i && avg_i < end)
		i = scan_serial(buf, avg_i, end, thresh(bits - 2));
	if (i < end)
		return i + 1;
	if (end == p->max_size || eof)
		return end;
	return 0;
}

/* ---- chunk ids ---- */

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;
static EVP_MD *sha256;

static void ctx_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void md_init(void)
{
	/* Fetched once: EVP_sha256()'s implicit fetch per digest costs a lock and a lookup. */
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (pthread_key_create(&ctx_key, ctx_free) != 0)
		abort();
}

void cs_id_compute(const void *data, size_t len, uint8_t id[static CS_ID_LEN])
{
	EVP_MD_CTX *ctx;
	unsigned n = 0;

	(void)pthread_once(&md_once, md_init);
	if (!sha256)
		abort(); /* libcrypto without SHA-256: nothing can work */
	/* One context per thread, reused: allocating one per chunk is measurable on small chunks. */
	if (!(ctx = pthread_getspecific(ctx_key))) {
		if (!(ctx = EVP_MD_CTX_new()) || pthread_setspecific(ctx_key, ctx) != 0)
			abort();
	}
	if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 || EVP_DigestUpdate(ctx, data, len) != 1 ||
	    EVP_DigestFinal_ex(ctx, id, &n) != 1 || n != CS_ID_LEN)
		abort();
}

struct cs_id_ctx *cs_id_begin(void)
{
	EVP_MD_CTX *ctx;

	(void)pthread_once(&md_once, md_init);
	if (!sha256)
		abort();
	if (!(ctx = EVP_MD_CTX_new()))
		return NULL;
	if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1)
		abort();
	return (struct cs_id_ctx *)ctx;
}

void cs_id_update(struct cs_id_ctx *c, const void *data, size_t len)
{
	if (EVP_DigestUpdate((EVP_MD_CTX *)c, data, len) != 1)
		abort();
}

void cs_id_end(struct cs_id_ctx *c, uint8_t id[static CS_ID_LEN])
{
	unsigned n = 0;

	if (EVP_DigestFinal_ex((EVP_MD_CTX *)c, id, &n) != 1 || n != CS_ID_LEN)
		abort();
	EVP_MD_CTX_free((EVP_MD_CTX *)c);
}

void cs_id_drop(struct cs_id_ctx *c)
{
	EVP_MD_CTX_free((EVP_MD_CTX *)c);
}
