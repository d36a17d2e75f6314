// SPDX-License-Identifier: MIT
/*
 * fs/fs_ext.c - sorted disjoint byte ranges (see fs_ext.h).
 *
 * Invariant: r[i].start < r[i].end < r[i+1].start for every i (disjoint and
 * not even touching: touching ranges are merged).
 */
#include "fs/fs_ext.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fs_ext_init(struct fs_ext *e)
{
	memset(e, 0, sizeof(*e));
}

void fs_ext_done(struct fs_ext *e)
{
	free(e->r);
	fs_ext_init(e);
}

void fs_ext_clear(struct fs_ext *e)
{
	e->n = 0;
}

size_t fs_ext_first_after(const struct fs_ext *e, uint64_t off)
{
	size_t lo = 0, hi = e->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (e->r[mid].end > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

int fs_ext_add(struct fs_ext *e, uint64_t start, uint64_t end)
{
	size_t i, j;

	if (start >= end)
		return 0;
	/* First range that ends at or after start (touching counts). */
	i = start ? fs_ext_first_after(e, start - 1) : 0;
	if (i < e->n && e->r[i].end < start)
		i++;
	/* Ranges i..j-1 overlap or touch [start, end). */
	for (j = i; j < e->n && e->r[j].start <= end; j++) {
		if (e->r[j].start < start)
			start = e->r[j].start;
		if (e->r[j].end > end)
			end = e->r[j].end;
	}
	if (j == i) {
		if (e->n == e->cap) {
			size_t cap = e->cap ? 2 * e->cap : 4;
			struct fs_range *r = realloc(e->r, cap * sizeof(*r));

			if (!r)
				return -ENOMEM;
			e->r = r;
			e->cap = cap;
		}
		memmove(&e->r[i + 1], &e->r[i], (e->n - i) * sizeof(*e->r));
		e->n++;
	} else if (j - i > 1) {
		memmove(&e->r[i + 1], &e->r[j], (e->n - j) * sizeof(*e->r));
		e->n -= j - i - 1;
	}
	e->r[i].start = start;
	e->r[i].end = end;
	return 0;
}

void fs_ext_truncate(struct fs_ext *e, uint64_t off)
{
	size_t i = fs_ext_first_after(e, off);

	if (i < e->n && e->r[i].start < off) {
		e->r[i].end = off;
		i++;
	}
	e->n = i;
}

int fs_ext_merge(struct fs_ext *dst, const struct fs_ext *src)
{
	int rc;

	for (size_t i = 0; i < src->n; i++)
		if ((rc = fs_ext_add(dst, src->r[i].start, src->r[i].end)) < 0)
			return rc;
	return 0;
}

int fs_ext_copy(struct fs_ext *dst, const struct fs_ext *src)
{
	fs_ext_init(dst);
	if (!src->n)
		return 0;
	if (!(dst->r = malloc(src->n * sizeof(*dst->r))))
		return -ENOMEM;
	memcpy(dst->r, src->r, src->n * sizeof(*dst->r));
	dst->n = dst->cap = src->n;
	return 0;
}

uint64_t fs_ext_bytes(const struct fs_ext *e)
{
	uint64_t b = 0;

	for (size_t i = 0; i < e->n; i++)
		b += e->r[i].end - e->r[i].start;
	return b;
}
