// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_cs_ckpt.c - the index checkpoint loader (read at every
 * open from the disk) feeding the real index: entries are added, looked up
 * and some deleted again, which also exercises the table's backward-shift
 * deletion.
 *
 * Each input is loaded as it is and after "repair" (valid magic, count,
 * checksums), so that the entry decoder and the index are reached.
 */
#include "chunkstore/cs_int.h"
#include "common/rbuf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_ent(void *arg, const struct cs_ckpt_ent *e)
{
	struct cs_index *ix = arg;
	uint32_t slot;

	assert(e->len <= CS_CHUNK_MAX_LIMIT);
	if (cs__index_find(ix, e->id) != CS_NO_SLOT) {
		/* A duplicate: delete it (the store keeps the first; here the table is exercised). */
		cs__index_del(ix, cs__index_find(ix, e->id));
		return 0;
	}
	if (cs__index_add(ix, e->id, &slot) < 0)
		return -1;
	cs__index_at(ix, slot)->loc = e->loc;
	assert(cs__index_find(ix, e->id) == slot);
	return 0;
}

static void ahead(void *arg, const uint8_t id[static CS_ID_LEN])
{
	cs__index_prefetch(arg, id);
}

static void load(const uint8_t *img, size_t size)
{
	struct cs_ckpt_hdr h;
	struct cs_index ix;
	int fd;

	if ((fd = memfd_create("ckpt", MFD_CLOEXEC)) < 0)
		return;
	if (write(fd, img, size) == (ssize_t)size && cs__index_init(&ix, size, 0) == 0) {
		if (cs__ckpt_load(fd, &h, on_ent, size % 2 ? ahead : NULL, &ix) == 0)
			assert(h.count * CS_CKPT_ENT_LEN + CS_CKPT_HDR_LEN == size);
		/* Every entry still indexed is found again. */
		for (uint32_t i = 0; i < ix.nslots; i++) {
			struct cs_entry *e = cs__index_at(&ix, i);

			if (e->lenf & CS_E_LIVE)
				assert(cs__index_find(&ix, e->id) == i);
		}
		cs__index_done(&ix);
	}
	close(fd);
}

static void repair(uint8_t *img, size_t size)
{
	static const uint8_t magic[8] = { 'p', '2', 'p', 'f', 's', 'I', 'X', 1 };
	size_t n = (size - CS_CKPT_HDR_LEN) / CS_CKPT_ENT_LEN;

	memcpy(img, magic, 8);
	be32_put(img + 8, CS_FORMAT_VERSION);
	be32_put(img + 12, CS_CKPT_ENT_LEN);
	be64_put(img + 16, n);
	if (cs__loc_pack(be64_get(img + 24)) == 0 || cs__loc_off(be64_get(img + 24)) < 64 ||
	    be64_get(img + 24) % 8)
		be64_put(img + 24, cs__loc(1, CS_PACK_HDR_LEN));
	memset(img + 36, 0, 4);
	memset(img + 48, 0, 8);
	be64_put(img + 40, XXH3_64bits(img + CS_CKPT_HDR_LEN, n * CS_CKPT_ENT_LEN));
	be64_put(img + 56, XXH3_64bits(img, 56));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	size_t fixed;

	load(data, size);
	if (size < CS_CKPT_HDR_LEN || size > (4U << 20))
		return 0;
	/* Repair a copy cut to a whole number of entries. */
	fixed = CS_CKPT_HDR_LEN + (size - CS_CKPT_HDR_LEN) / CS_CKPT_ENT_LEN * CS_CKPT_ENT_LEN;
	if (!(copy = malloc(fixed)))
		return 0;
	memcpy(copy, data, fixed);
	repair(copy, fixed);
	load(copy, fixed);
	free(copy);
	return 0;
}
