// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_cs_pack.c - the pack header decoder, the record header
 * decoder and the pack scanner (what open replays after a crash) on
 * untrusted disk bytes.
 *
 * The input is a pack image. It is scanned twice: as it is, and after
 * "repair", which writes valid magics and checksums over every place a
 * record could start, so the fuzzer reaches the field checks and the
 * record walking behind the checksums instead of stopping at them.
 */
#include "chunkstore/cs_format.h"
#include "common/rbuf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tally {
	uint64_t last;
	unsigned n;
};

static int on_rec(void *arg, uint64_t loc, const struct cs_rec *r)
{
	struct tally *t = arg;

	/* Records come in offset order, each within limits. */
	assert(t->n == 0 || loc > t->last);
	assert(r->len <= CS_CHUNK_MAX_LIMIT);
	assert(r->type >= CS_REC_CHUNK && r->type <= CS_REC_UNPIN);
	t->last = loc;
	t->n++;
	return 0;
}

static void scan(const uint8_t *img, size_t size, uint64_t salt)
{
	struct tally t = { 0 };
	uint64_t end, nread;
	int fd;

	if (size < CS_PACK_HDR_LEN)
		return;
	if ((fd = memfd_create("pack", MFD_CLOEXEC)) < 0)
		return;
	if (write(fd, img, size) == (ssize_t)size &&
	    cs__pack_scan(fd, 1, salt, CS_PACK_HDR_LEN, size, on_rec, &t, &end, &nread) == 0) {
		assert(end >= CS_PACK_HDR_LEN && end <= size && end % 8 == 0);
		assert(nread <= size);
	}
	close(fd);
}

/* Make every 8-aligned record start carry a valid magic and checksums. */
static void repair(uint8_t *img, size_t size, uint64_t salt)
{
	size_t pos = CS_PACK_HDR_LEN;

	while (pos + CS_REC_HDR_LEN <= size) {
		uint32_t len = be32_get(img + pos + 8) % 4096;
		uint8_t type = img[pos + 4];

		be32_put(img + pos, CS_REC_MAGIC);
		if (type == CS_REC_CHUNK) {
			len = (uint32_t)P2P_MIN((size_t)len, size - pos - CS_REC_HDR_LEN);
			be32_put(img + pos + 8, len);
			be64_put(img + pos + 56, cs__xxh(img + pos + CS_REC_HDR_LEN, len, 0));
		} else {
			len = 0;
		}
		be64_put(img + pos + 64,
			 XXH3_64bits_withSeed(img + pos, 64, cs__rec_seed(salt, cs__loc(1, pos))));
		pos += (size_t)cs__rec_size(len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cs_pack_hdr h;
	struct cs_rec r;
	uint8_t *copy;
	uint64_t salt = 0;

	if (cs__pack_hdr_decode(data, size, &h) == 0)
		salt = h.salt;
	else if (size >= 24)
		salt = be64_get(data + 16);
	for (size_t off = 0; off + CS_REC_HDR_LEN <= size && off < 4096; off += 8)
		if (cs__rec_decode(data + off, size - off, salt, &r) == 0)
			assert(r.len <= CS_CHUNK_MAX_LIMIT);
	scan(data, size, salt);
	if (size > (1U << 20) || !(copy = malloc(size ? size : 1)))
		return 0;
	memcpy(copy, data, size);
	repair(copy, size, salt);
	scan(copy, size, salt);
	free(copy);
	return 0;
}
