/* SPDX-License-Identifier: MIT */
/*
 * fs/fs_seg.h - a staged run: writes kept in memory, in the buffers they
 * arrived in, instead of being copied into the staging file.
 *
 * A run is a sorted array of segments that follow each other without gaps,
 * [run[0].off, end of the last). Its bytes are newer than the staging file's
 * for that range. fs_io.c owns the rules (what may join a run, when a run is
 * written out to the staging file); this header only lets the re-chunker
 * read one.
 */
#ifndef P2P_FS_SEG_H
#define P2P_FS_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fs_buf;

/* A write kept in its request buffer instead of the staging file. */
struct fs_seg {
	uint64_t off;
	size_t len;
	const uint8_t *data;
	struct fs_buf *buf;
};

static inline uint64_t fs_run_start(const struct fs_seg *run, size_t n)
{
	return n ? run[0].off : 0;
}

static inline uint64_t fs_run_end(const struct fs_seg *run, size_t n)
{
	return n ? run[n - 1].off + run[n - 1].len : 0;
}

/* Where a staged read from @pos must end (at most @lim) so it lies wholly in
 * the run or wholly outside it; *in_run says which. */
static inline uint64_t fs_run_piece_end(const struct fs_seg *run, size_t n, uint64_t pos,
					uint64_t lim, bool *in_run)
{
	uint64_t rs = fs_run_start(run, n), re = fs_run_end(run, n);

	*in_run = n && pos >= rs && pos < re;
	if (*in_run)
		return re < lim ? re : lim;
	if (n && pos < rs)
		return rs < lim ? rs : lim;
	return lim;
}

/* Copy [off, off + len) out of @run; the range must lie inside it. */
static inline void fs_run_copy(const struct fs_seg *run, size_t n, uint64_t off, uint8_t *dst,
			       size_t len)
{
	size_t lo = 0, hi = n;

	while (hi - lo > 1) { /* the last segment starting at or before off */
		size_t mid = lo + (hi - lo) / 2;

		if (run[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	for (size_t i = lo; len && i < n; i++) {
		size_t skip = (size_t)(off - run[i].off);
		size_t k = run[i].len - skip < len ? run[i].len - skip : len;

		memcpy(dst, run[i].data + skip, k);
		dst += k;
		off += k;
		len -= k;
	}
}

#endif
