// SPDX-License-Identifier: MIT
/*
 * fs/mf.c - manifest encoding, validation and loading (see mf.h).
 *
 * Invariants:
 *  1. A block is accepted only if every field is in range: magic, version,
 *     level <= MF_LEVEL_MAX, 1 <= count <= MF_BLOCK_ENTRIES, chunk lengths in
 *     1..CS_CHUNK_MAX_LIMIT, the declared total equal to the sum of the
 *     children (no overflow), no trailing bytes.
 *  2. While loading a tree, a child block must have exactly the level below
 *     its parent and cover exactly the bytes its parent says, so a malformed
 *     tree cannot loop or claim more than its root.
 *  3. A manifest never holds more than MF_CHUNKS_MAX chunks, whatever a peer
 *     sends: that bounds the memory one open file can take.
 */
#include "fs/mf.h"
#include "common/rbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* 16 Mi chunks: 16 TiB at the default 1 MiB average, ~700 MiB of memory flattened. */
#define MF_CHUNKS_MAX (16U * 1024U * 1024U)

void mf_init(struct mf *m)
{
	memset(m, 0, sizeof(*m));
}

void mf_done(struct mf *m)
{
	free(m->c);
	mf_init(m);
}

static int reserve(struct mf *m, size_t n)
{
	struct mf_chunk *c;
	size_t cap;

	if (n <= m->cap)
		return 0;
	if (n > MF_CHUNKS_MAX)
		return -EMSGSIZE;
	cap = m->cap ? m->cap : 16;
	while (cap < n)
		cap *= 2;
	if (!(c = realloc(m->c, cap * sizeof(*c))))
		return -ENOMEM;
	m->c = c;
	m->cap = cap;
	return 0;
}

int mf_append(struct mf *m, const uint8_t id[static CS_ID_LEN], uint32_t len)
{
	int rc;

	if ((rc = reserve(m, m->n + 1)) < 0)
		return rc;
	m->c[m->n].off = m->size;
	m->c[m->n].len = len;
	memcpy(m->c[m->n].id, id, CS_ID_LEN);
	m->n++;
	m->size += len;
	return 0;
}

int mf_copy(struct mf *dst, const struct mf *src)
{
	mf_init(dst);
	if (!src->n) {
		dst->size = src->size;
		return 0;
	}
	if (!(dst->c = malloc(src->n * sizeof(*dst->c))))
		return -ENOMEM;
	memcpy(dst->c, src->c, src->n * sizeof(*dst->c));
	dst->n = dst->cap = src->n;
	dst->size = src->size;
	return 0;
}

size_t mf_find(const struct mf *m, uint64_t off)
{
	size_t lo = 0, hi = m->n;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->c[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int encode_block(unsigned level, const uint8_t (*ids)[CS_ID_LEN], const uint64_t *lens,
			size_t n, struct mf_block *out)
{
	struct wbuf w;
	uint64_t total = 0;
	size_t len = MF_HDR_LEN + MF_ENTRY_LEN * n;
	long rc;

	if (!(out->data = malloc(len)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		total += lens[i];
	wbuf_init(&w, out->data, len);
	wbuf_u32(&w, MF_MAGIC);
	wbuf_u8(&w, MF_VERSION);
	wbuf_u8(&w, (uint8_t)level);
	wbuf_u16(&w, 0);
	wbuf_u64(&w, total);
	wbuf_u32(&w, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		wbuf_bytes(&w, ids[i], CS_ID_LEN);
		wbuf_u64(&w, lens[i]);
	}
	if ((rc = wbuf_done(&w)) < 0) {
		free(out->data);
		return (int)rc;
	}
	out->len = (size_t)rc;
	cs_id_compute(out->data, out->len, out->id);
	return 0;
}

void mf_blocks_free(struct mf_block *b, size_t n)
{
	if (!b)
		return;
	for (size_t i = 0; i < n; i++)
		free(b[i].data);
	free(b);
}

int mf_encode(const struct mf *m, struct mf_block **ret_blocks, size_t *ret_n)
{
	struct mf_block *blocks = NULL;
	uint8_t(*ids)[CS_ID_LEN] = NULL;
	uint64_t *lens = NULL;
	size_t nblocks = 0, cap = 0, level_n = m->n;
	unsigned level = 0;
	int rc = -ENOMEM;

	if (m->n == 0)
		return -EINVAL;
	/* The current level's children: chunks first, then the blocks just made. */
	if (!(ids = malloc(m->n * sizeof(*ids))) || !(lens = malloc(m->n * sizeof(*lens))))
		goto err;
	for (size_t i = 0; i < m->n; i++) {
		memcpy(ids[i], m->c[i].id, CS_ID_LEN);
		lens[i] = m->c[i].len;
	}
	for (;;) {
		size_t made = 0, first = nblocks;

		if (level > MF_LEVEL_MAX) {
			rc = -EMSGSIZE;
			goto err;
		}
		for (size_t i = 0; i < level_n; i += MF_BLOCK_ENTRIES) {
			size_t k = P2P_MIN((size_t)MF_BLOCK_ENTRIES, level_n - i);

			if (nblocks == cap) {
				size_t ncap = cap ? 2 * cap : 4;
				struct mf_block *nb = realloc(blocks, ncap * sizeof(*nb));

				if (!nb)
					goto err;
				blocks = nb;
				cap = ncap;
			}
			if ((rc = encode_block(level, (const uint8_t(*)[CS_ID_LEN])ids + i,
					       lens + i, k, &blocks[nblocks])) < 0)
				goto err;
			nblocks++;
			made++;
		}
		if (made == 1)
			break;
		/* Next level up lists the blocks just made. */
		for (size_t i = 0; i < made; i++) {
			struct mf_block *b = &blocks[first + i];

			memcpy(ids[i], b->id, CS_ID_LEN);
			lens[i] = be64_get(b->data + 8);
		}
		level_n = made;
		level++;
	}
	free(ids);
	free(lens);
	*ret_blocks = blocks;
	*ret_n = nblocks;
	return 0;
err:
	free(ids);
	free(lens);
	mf_blocks_free(blocks, nblocks);
	return rc < 0 ? rc : -ENOMEM;
}

int mf_parse_block(const uint8_t *buf, size_t len, unsigned *ret_level, uint32_t *ret_count,
		   uint64_t *ret_total)
{
	struct rbuf r;
	uint32_t magic, count;
	uint8_t version, level;
	uint16_t reserved;
	uint64_t total, sum = 0;
	int rc;

	rbuf_init(&r, buf, len);
	if ((rc = rbuf_u32(&r, &magic)) < 0 || (rc = rbuf_u8(&r, &version)) < 0 ||
	    (rc = rbuf_u8(&r, &level)) < 0 || (rc = rbuf_u16(&r, &reserved)) < 0 ||
	    (rc = rbuf_u64(&r, &total)) < 0 || (rc = rbuf_u32(&r, &count)) < 0)
		return rc;
	if (magic != MF_MAGIC || version != MF_VERSION || reserved != 0 || level > MF_LEVEL_MAX)
		return -EPROTO;
	if (count == 0)
		return -EPROTO;
	if (count > MF_BLOCK_ENTRIES)
		return -EMSGSIZE;
	/* Compare the count with what is left before looping (STYLE.md section 4). */
	if ((uint64_t)count * MF_ENTRY_LEN != rbuf_left(&r))
		return -EPROTO;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *id;
		uint64_t l;

		if ((rc = rbuf_ref(&r, CS_ID_LEN, &id)) < 0 || (rc = rbuf_u64(&r, &l)) < 0)
			return rc;
		if (l == 0 || (level == 0 && l > CS_CHUNK_MAX_LIMIT))
			return -EPROTO;
		if (l > UINT64_MAX - sum)
			return -EPROTO;
		sum += l;
	}
	if ((rc = rbuf_end(&r)) < 0)
		return rc;
	if (sum != total)
		return -EPROTO;
	*ret_level = level;
	*ret_count = count;
	*ret_total = total;
	return 0;
}

void mf_block_entry(const uint8_t *buf, uint32_t i, uint8_t ret_id[static CS_ID_LEN],
		    uint64_t *ret_len)
{
	const uint8_t *e = buf + MF_HDR_LEN + (size_t)i * MF_ENTRY_LEN;

	memcpy(ret_id, e, CS_ID_LEN);
	*ret_len = be64_get(e + CS_ID_LEN);
}

void mf_loader_init(struct mf_loader *ld, const uint8_t root[static CS_ID_LEN])
{
	memset(ld, 0, sizeof(*ld));
	mf_init(&ld->m);
	memcpy(ld->want, root, CS_ID_LEN);
	ld->want_level = MF_LEVEL_MAX + 1;
}

void mf_loader_done(struct mf_loader *ld)
{
	for (unsigned i = 0; i < ld->depth; i++)
		free(ld->stack[i].buf);
	ld->depth = 0;
	mf_done(&ld->m);
}

int mf_loader_next(struct mf_loader *ld, uint8_t ret_id[static CS_ID_LEN])
{
	if (!ld->started) {
		memcpy(ret_id, ld->want, CS_ID_LEN);
		return 1;
	}
	while (ld->depth) {
		struct mf_frame *f = &ld->stack[ld->depth - 1];

		if (f->next < f->count) {
			mf_block_entry(f->buf, f->next, ld->want, &ld->want_len);
			ld->want_level = f->level - 1;
			memcpy(ret_id, ld->want, CS_ID_LEN);
			return 1;
		}
		free(f->buf);
		f->buf = NULL;
		ld->depth--;
	}
	return 0;
}

int mf_loader_feed(struct mf_loader *ld, const uint8_t *buf, size_t len)
{
	unsigned level;
	uint32_t count;
	uint64_t total;
	int rc;

	if ((rc = mf_parse_block(buf, len, &level, &count, &total)) < 0)
		return rc;
	if (ld->want_level <= MF_LEVEL_MAX && level != ld->want_level)
		return -EPROTO;
	if (ld->started && total != ld->want_len)
		return -EPROTO;
	if (ld->depth)
		ld->stack[ld->depth - 1].next++;
	ld->started = 1;
	if (level == 0) {
		if ((rc = reserve(&ld->m, ld->m.n + count)) < 0)
			return rc;
		for (uint32_t i = 0; i < count; i++) {
			uint8_t id[CS_ID_LEN];
			uint64_t l;

			mf_block_entry(buf, i, id, &l);
			if ((rc = mf_append(&ld->m, id, (uint32_t)l)) < 0)
				return rc;
		}
		return 0;
	}
	if (ld->depth > MF_LEVEL_MAX)
		return -EPROTO;
	if (!(ld->stack[ld->depth].buf = malloc(len)))
		return -ENOMEM;
	memcpy(ld->stack[ld->depth].buf, buf, len);
	ld->stack[ld->depth].count = count;
	ld->stack[ld->depth].next = 0;
	ld->stack[ld->depth].total = total;
	ld->stack[ld->depth].level = level;
	ld->depth++;
	return 0;
}

void mf_loader_take(struct mf_loader *ld, struct mf *ret_m)
{
	*ret_m = ld->m;
	mf_init(&ld->m);
}

int mf_load(const uint8_t root[static CS_ID_LEN], mf_get_fn *get, void *arg, struct mf *ret_m)
{
	struct mf_loader ld;
	uint8_t id[CS_ID_LEN];
	int rc;

	mf_loader_init(&ld, root);
	while ((rc = mf_loader_next(&ld, id)) == 1) {
		uint8_t *buf;
		size_t len;

		if ((rc = get(arg, id, &buf, &len)) < 0)
			break;
		rc = mf_loader_feed(&ld, buf, len);
		free(buf);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		mf_loader_take(&ld, ret_m);
	mf_loader_done(&ld);
	return rc;
}
