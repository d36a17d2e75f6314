/* SPDX-License-Identifier: MIT */
/*
 * fs/fs_ext.h - a set of byte ranges (the dirty parts of a file being written).
 *
 * Kept as a sorted array of disjoint, non-adjacent [start, end) ranges:
 * sequential writes stay one range; random writes merge with neighbours.
 */
#ifndef P2P_FS_EXT_H
#define P2P_FS_EXT_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

struct fs_range {
	uint64_t start, end;
};

struct fs_ext {
	struct fs_range *r;
	size_t n, cap;
};

void fs_ext_init(struct fs_ext *e);
void fs_ext_done(struct fs_ext *e);
void fs_ext_clear(struct fs_ext *e);
/* Add [start, end); merges overlapping and adjacent ranges. 0 or -ENOMEM. */
P2P_MUST_CHECK int fs_ext_add(struct fs_ext *e, uint64_t start, uint64_t end);
/* Remove everything at or beyond @off (truncate). */
void fs_ext_truncate(struct fs_ext *e, uint64_t off);
/* Union of @src into @dst. */
P2P_MUST_CHECK int fs_ext_merge(struct fs_ext *dst, const struct fs_ext *src);
P2P_MUST_CHECK int fs_ext_copy(struct fs_ext *dst, const struct fs_ext *src);
/* Index of the first range with end > @off, or n. */
size_t fs_ext_first_after(const struct fs_ext *e, uint64_t off);
uint64_t fs_ext_bytes(const struct fs_ext *e);

#endif
