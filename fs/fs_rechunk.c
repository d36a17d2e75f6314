// SPDX-License-Identifier: MIT
/*
 * fs/fs_rechunk.c - incremental re-chunking of a written file (see
 * fs_rechunk.h).
 *
 * Two modes alternate while walking the new file from offset 0:
 *  - copy: at an old chunk boundary, an old chunk is kept as it is when it
 *    ends before the next dirty byte and before the new end of file, and is
 *    not the old last chunk of a file that grew (that one was cut by the old
 *    end of file, not by its content);
 *  - chunk: otherwise bytes are read (dirty ranges from the staging file, the
 *    rest from old chunks, zeros past the old end), cut with FastCDC, hashed
 *    and stored; after each cut that falls on an old boundary we return to
 *    copy mode.
 *
 * Invariants:
 *  1. Chunk mode starts only at an old boundary or at/after the old end, so
 *     every cut made equals the cut a whole-file chunking would make.
 *  2. The output covers exactly [0, size) with contiguous chunks.
 */
#include "fs/fs_rechunk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct src {
	const struct fs_rechunk_in *in;
	size_t cached; /* base chunk index held in buf, or SIZE_MAX */
	uint8_t *buf;
};

static int base_chunk(struct src *s, size_t k, const uint8_t **ret)
{
	const struct mf_chunk *c = &s->in->base->c[k];
	size_t len;
	int rc;

	if (s->cached != k) {
		free(s->buf);
		s->buf = NULL;
		s->cached = SIZE_MAX;
		if (s->in->get)
			rc = s->in->get(s->in->get_arg, c->id, &s->buf, &len);
		else
			rc = cs_get(s->in->cs, c->id, &s->buf, &len);
		if (rc < 0)
			return rc;
		if (len != c->len) {
			free(s->buf);
			s->buf = NULL;
			return -EIO;
		}
		s->cached = k;
	}
	*ret = s->buf;
	return 0;
}

static int pread_full(int fd, uint8_t *dst, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, dst, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) { /* staging shorter than the range: a hole past its end */
			memset(dst, 0, len);
			return 0;
		}
		dst += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* The new file's bytes [off, off + len). */
static int read_new(struct src *s, uint64_t off, uint8_t *dst, size_t len)
{
	const struct fs_ext *d = s->in->dirty;
	const struct mf *base = s->in->base;
	int rc;

	while (len) {
		size_t i = fs_ext_first_after(d, off);
		size_t n;

		if (i < d->n && d->r[i].start <= off) {
			n = (size_t)P2P_MIN((uint64_t)len, d->r[i].end - off);
			if ((rc = pread_full(s->in->staging_fd, dst, n, off)) < 0)
				return rc;
		} else {
			uint64_t lim = i < d->n ? d->r[i].start : UINT64_MAX;

			if (off >= base->size) {
				n = (size_t)P2P_MIN((uint64_t)len, lim - off);
				memset(dst, 0, n);
			} else {
				size_t k = mf_find(base, off);
				const struct mf_chunk *c = &base->c[k];
				const uint8_t *p;

				if ((rc = base_chunk(s, k, &p)) < 0)
					return rc;
				n = (size_t)P2P_MIN((uint64_t)len,
						    P2P_MIN(c->off + c->len, lim) - off);
				memcpy(dst, p + (off - c->off), n);
			}
		}
		off += n;
		dst += n;
		len -= n;
	}
	return 0;
}

static bool is_base_boundary(const struct mf *base, uint64_t pos, size_t *ret_k)
{
	size_t k;

	if (pos >= base->size)
		return false;
	k = mf_find(base, pos);
	if (base->c[k].off != pos)
		return false;
	*ret_k = k;
	return true;
}

int fs_rechunk(const struct fs_rechunk_in *in, struct mf *ret_mf, struct fs_rechunk_stats *ret_st)
{
	const struct mf *base = in->base;
	const uint32_t max = in->cdc->max_size;
	const size_t cap = 4 * (size_t)max;
	struct fs_rechunk_stats st = { 0 };
	struct src s = { .in = in, .cached = SIZE_MAX };
	struct mf out;
	uint64_t pos = 0;
	size_t k = 0;
	uint8_t *buf;
	int rc = 0;

	mf_init(&out);
	if (!(buf = malloc(cap)))
		return -ENOMEM;
	while (pos < in->size) {
		size_t di = fs_ext_first_after(in->dirty, pos);
		uint64_t next_dirty = di < in->dirty->n ? in->dirty->r[di].start : UINT64_MAX;
		size_t start = 0, have = 0;

		/* Copy mode. */
		while (pos < in->size && k < base->n && base->c[k].off == pos) {
			const struct mf_chunk *c = &base->c[k];
			uint64_t end = c->off + c->len;
			bool last = k + 1 == base->n;

			if (end > next_dirty || end > in->size || (last && in->size > base->size))
				break;
			if ((rc = mf_append(&out, c->id, c->len)) < 0)
				goto out;
			st.chunks_kept++;
			pos = end;
			k++;
		}
		if (pos >= in->size)
			break;
		/* Chunk mode (invariant 1: pos is an old boundary or past the old end). */
		for (;;) {
			size_t want = (size_t)P2P_MIN((uint64_t)max, in->size - pos);
			uint8_t id[CS_ID_LEN];
			size_t cut;

			if (have < want) {
				size_t fill;

				if (start + want > cap) {
					memmove(buf, buf + start, have);
					start = 0;
				}
				/* One maximum chunk's worth: what the next cut can
				 * need, so a small edit reads (or fetches) little. */
				fill = (size_t)P2P_MIN((uint64_t)(cap - start - have),
						       in->size - pos - have);
				fill = P2P_MIN(fill, (size_t)max - have);
				if ((rc = read_new(&s, pos + have, buf + start + have, fill)) < 0)
					goto out;
				have += fill;
			}
			cut = cs_cdc_cut(in->cdc, buf + start, want, pos + want == in->size);
			cs_id_compute(buf + start, cut, id);
			rc = cs_put(in->cs, id, buf + start, cut, in->put_flags);
			if (rc < 0)
				goto out;
			if (rc == 1)
				st.chunks_new++;
			else
				st.chunks_dedup++;
			if ((rc = mf_append(&out, id, (uint32_t)cut)) < 0)
				goto out;
			st.bytes_hashed += cut;
			pos += cut;
			start += cut;
			have -= cut;
			if (pos >= in->size || is_base_boundary(base, pos, &k))
				break;
		}
	}
	rc = 0;
out:
	free(buf);
	free(s.buf);
	if (rc < 0) {
		mf_done(&out);
		return rc;
	}
	*ret_mf = out;
	if (ret_st)
		*ret_st = st;
	return 0;
}
