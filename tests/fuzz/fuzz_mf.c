// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_mf.c - the manifest block parser and the tree loader on
 * untrusted bytes (manifests come from peers).
 *
 * The input is split into blocks at "\xffMFSEP\xff"; the first block is the
 * root and the others are offered in order to the loader, whatever id it asks.
 */
#include "fs/mf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t sep[] = "\xffMFSEP\xff";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *blk[8];
	size_t len[8], n = 0, start = 0;
	struct mf_loader ld;
	uint8_t root[CS_ID_LEN] = { 0 }, id[CS_ID_LEN];
	unsigned level;
	uint32_t count;
	uint64_t total;

	for (size_t i = 0; i + sizeof(sep) - 1 <= size && n < 7; i++)
		if (!memcmp(data + i, sep, sizeof(sep) - 1)) {
			blk[n] = data + start;
			len[n++] = i - start;
			start = i + sizeof(sep) - 1;
			i = start - 1;
		}
	blk[n] = data + start;
	len[n++] = size - start;
	for (size_t i = 0; i < n; i++)
		if (mf_parse_block(blk[i], len[i], &level, &count, &total) == 0)
			for (uint32_t k = 0; k < count; k++) {
				uint64_t l;

				mf_block_entry(blk[i], k, id, &l);
			}
	mf_loader_init(&ld, root);
	for (size_t i = 0; i < n && mf_loader_next(&ld, id) == 1; i++)
		if (mf_loader_feed(&ld, blk[i], len[i]) < 0)
			break;
	mf_loader_done(&ld);
	return 0;
}
