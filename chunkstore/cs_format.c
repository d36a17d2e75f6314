// SPDX-License-Identifier: MIT
/*
 * chunkstore/cs_format.c - encoders and decoders of the on-disk formats
 * (tables in cs_format.h), the checkpoint reader and the pack scanner.
 *
 * Everything here treats disk bytes as untrusted: lengths are checked before
 * use, every field against its limit, and nothing is allocated from a length
 * read from disk except the scan window, which is capped by the largest
 * record the store accepts.
 *
 * Bulk checksums call libxxhash's runtime-dispatched XXH3 on x86-64 (it
 * picks AVX2 or AVX-512): ~35 GB/s on 1 MiB here, against ~18 GB/s for the
 * library's plain entry point (an SSE2 build) and ~20 GB/s for XXH3 compiled
 * inline with our portable flags (bench_crypto prints all three). Short keys
 * are another matter: index.c inlines XXH3 for its 32-byte ids, where the
 * call costs more than the hash. The result is the same XXH3-64 everywhere.
 */
#include "chunkstore/cs_format.h"
#include "common/rbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#if defined(__x86_64__)
/* Not the header: it would also redirect the short, inline-friendly calls. */
uint64_t XXH3_64bits_dispatch(const void *data, size_t len);
uint64_t XXH3_64bits_withSeed_dispatch(const void *data, size_t len, uint64_t seed);
XXH_errorcode XXH3_64bits_update_dispatch(XXH3_state_t *state, const void *input, size_t len);
#define XXH_BULK0 XXH3_64bits_dispatch
#define XXH_BULK XXH3_64bits_withSeed_dispatch
#define XXH_UPDATE XXH3_64bits_update_dispatch
#else
#define XXH_BULK0 XXH3_64bits
#define XXH_BULK XXH3_64bits_withSeed
#define XXH_UPDATE XXH3_64bits_update
#endif

static const uint8_t pack_magic[8] = { 'p', '2', 'p', 'f', 's', 'P', 'K', 1 };
static const uint8_t ckpt_magic[8] = { 'p', '2', 'p', 'f', 's', 'I', 'X', 1 };

#define CKPT_ENT_PINNED (1U << 31)
#define CKPT_ENT_LEN_MASK ((1U << 25) - 1)

_Static_assert(CS_CHUNK_MAX_LIMIT <= CKPT_ENT_LEN_MASK, "chunk length must fit 25 bits");
_Static_assert(CS_REC_HDR_LEN % 8 == 0, "records stay 8-aligned");

uint64_t cs__xxh(const void *data, size_t len, uint64_t seed)
{
	/* Seed 0 (every data checksum) is XXH3_64bits by definition, without the seeded path's setup. */
	return seed ? XXH_BULK(data, len, seed) : XXH_BULK0(data, len);
}

/* ---- records ---- */

void cs__rec_encode(uint8_t out[static CS_REC_HDR_LEN], const struct cs_rec *r, uint64_t seed)
{
	struct wbuf w;

	wbuf_init(&w, out, CS_REC_HDR_LEN);
	wbuf_u32(&w, CS_REC_MAGIC);
	wbuf_u8(&w, r->type);
	wbuf_u8(&w, r->flags);
	wbuf_u16(&w, 0);
	wbuf_u32(&w, r->len);
	wbuf_u32(&w, 0);
	wbuf_u64(&w, r->ref);
	wbuf_bytes(&w, r->id, CS_ID_LEN);
	wbuf_u64(&w, r->data_hash);
	wbuf_u64(&w, XXH3_64bits_withSeed(out, 64, seed));
	if (wbuf_done(&w) < 0)
		abort(); /* fixed layout: cannot overflow */
}

static bool loc_valid(uint64_t loc)
{
	uint64_t off = cs__loc_off(loc);

	return cs__loc_pack(loc) >= 1 && off >= CS_PACK_HDR_LEN && off % 8 == 0;
}

int cs__rec_decode(const uint8_t *p, size_t n, uint64_t seed, struct cs_rec *ret)
{
	struct cs_rec r;
	struct rbuf rb;
	uint32_t magic, zero32;
	uint16_t zero16;
	uint64_t sum;

	if (n < CS_REC_HDR_LEN)
		return -EPROTO;
	/* The magic first: the scanner calls this at every 8th byte of garbage. */
	if (be32_get(p) != CS_REC_MAGIC)
		return -EPROTO;
	if (be64_get(p + 64) != XXH3_64bits_withSeed(p, 64, seed))
		return -EBADMSG;
	rbuf_init(&rb, p, CS_REC_HDR_LEN);
	if (rbuf_u32(&rb, &magic) < 0 || rbuf_u8(&rb, &r.type) < 0 || rbuf_u8(&rb, &r.flags) < 0 ||
	    rbuf_u16(&rb, &zero16) < 0 || rbuf_u32(&rb, &r.len) < 0 || rbuf_u32(&rb, &zero32) < 0 ||
	    rbuf_u64(&rb, &r.ref) < 0 || rbuf_copy(&rb, r.id, CS_ID_LEN) < 0 ||
	    rbuf_u64(&rb, &r.data_hash) < 0 || rbuf_u64(&rb, &sum) < 0 || rbuf_end(&rb) < 0)
		return -EPROTO;
	if (zero16 || zero32)
		return -EPROTO;
	switch (r.type) {
	case CS_REC_CHUNK:
		if (r.flags & ~CS_REC_F_PINNED || r.len > CS_CHUNK_MAX_LIMIT || r.ref)
			return -EPROTO;
		break;
	case CS_REC_DELETE:
	case CS_REC_PIN:
	case CS_REC_UNPIN:
		if (r.flags || r.len || r.data_hash || !loc_valid(r.ref))
			return -EPROTO;
		break;
	default:
		return -EPROTO;
	}
	*ret = r;
	return 0;
}

/* ---- pack header ---- */

void cs__pack_hdr_encode(uint8_t out[static CS_PACK_HDR_LEN], const struct cs_pack_hdr *h)
{
	struct wbuf w;

	memset(out, 0, CS_PACK_HDR_LEN);
	wbuf_init(&w, out, CS_PACK_HDR_LEN);
	wbuf_bytes(&w, pack_magic, sizeof(pack_magic));
	wbuf_u32(&w, CS_FORMAT_VERSION);
	wbuf_u32(&w, h->no);
	wbuf_u64(&w, h->salt);
	wbuf_u64(&w, h->created_ns);
	(void)wbuf_reserve(&w, 24);
	wbuf_u64(&w, XXH3_64bits_withSeed(out, 56, 0));
	if (wbuf_done(&w) < 0)
		abort(); /* fixed layout: cannot overflow */
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int cs__pack_hdr_decode(const uint8_t *p, size_t n, struct cs_pack_hdr *ret)
{
	struct cs_pack_hdr h;
	struct rbuf rb;
	const uint8_t *magic, *zero;
	uint32_t version;
	uint64_t sum;

	if (n < CS_PACK_HDR_LEN)
		return -EPROTO;
	rbuf_init(&rb, p, CS_PACK_HDR_LEN);
	if (rbuf_ref(&rb, sizeof(pack_magic), &magic) < 0 || rbuf_u32(&rb, &version) < 0 ||
	    rbuf_u32(&rb, &h.no) < 0 || rbuf_u64(&rb, &h.salt) < 0 ||
	    rbuf_u64(&rb, &h.created_ns) < 0 || rbuf_ref(&rb, 24, &zero) < 0 ||
	    rbuf_u64(&rb, &sum) < 0 || rbuf_end(&rb) < 0)
		return -EPROTO;
	if (memcmp(magic, pack_magic, sizeof(pack_magic)) != 0 || version != CS_FORMAT_VERSION)
		return -EPROTO;
	if (sum != XXH3_64bits_withSeed(p, 56, 0))
		return -EBADMSG;
	if (!all_zero(zero, 24) || h.no == 0 || h.no > CS_PACK_NO_MAX)
		return -EPROTO;
	*ret = h;
	return 0;
}

/* ---- checkpoint ---- */

void cs__ckpt_hdr_encode(uint8_t out[static CS_CKPT_HDR_LEN], const struct cs_ckpt_hdr *h)
{
	struct wbuf w;

	memset(out, 0, CS_CKPT_HDR_LEN);
	wbuf_init(&w, out, CS_CKPT_HDR_LEN);
	wbuf_bytes(&w, ckpt_magic, sizeof(ckpt_magic));
	wbuf_u32(&w, CS_FORMAT_VERSION);
	wbuf_u32(&w, CS_CKPT_ENT_LEN);
	wbuf_u64(&w, h->count);
	wbuf_u64(&w, h->cover);
	wbuf_u32(&w, h->clock);
	wbuf_u32(&w, 0);
	wbuf_u64(&w, h->entries_hash);
	wbuf_u64(&w, 0);
	wbuf_u64(&w, XXH3_64bits_withSeed(out, 56, 0));
	if (wbuf_done(&w) < 0)
		abort(); /* fixed layout: cannot overflow */
}

int cs__ckpt_hdr_decode(const uint8_t *p, size_t n, struct cs_ckpt_hdr *ret)
{
	struct cs_ckpt_hdr h;
	struct rbuf rb;
	const uint8_t *magic;
	uint32_t version, entlen, zero32;
	uint64_t zero64, sum;

	if (n < CS_CKPT_HDR_LEN)
		return -EPROTO;
	rbuf_init(&rb, p, CS_CKPT_HDR_LEN);
	if (rbuf_ref(&rb, sizeof(ckpt_magic), &magic) < 0 || rbuf_u32(&rb, &version) < 0 ||
	    rbuf_u32(&rb, &entlen) < 0 || rbuf_u64(&rb, &h.count) < 0 ||
	    rbuf_u64(&rb, &h.cover) < 0 || rbuf_u32(&rb, &h.clock) < 0 ||
	    rbuf_u32(&rb, &zero32) < 0 || rbuf_u64(&rb, &h.entries_hash) < 0 ||
	    rbuf_u64(&rb, &zero64) < 0 || rbuf_u64(&rb, &sum) < 0 || rbuf_end(&rb) < 0)
		return -EPROTO;
	if (memcmp(magic, ckpt_magic, sizeof(ckpt_magic)) != 0 || version != CS_FORMAT_VERSION)
		return -EPROTO;
	if (sum != XXH3_64bits_withSeed(p, 56, 0))
		return -EBADMSG;
	if (entlen != CS_CKPT_ENT_LEN || zero32 || zero64 || !loc_valid(h.cover))
		return -EPROTO;
	*ret = h;
	return 0;
}

void cs__ckpt_ent_encode(uint8_t out[static CS_CKPT_ENT_LEN], const struct cs_ckpt_ent *e)
{
	memcpy(out, e->id, CS_ID_LEN);
	be64_put(out + 32, e->loc);
	be32_put(out + 40, e->len | (e->pinned ? CKPT_ENT_PINNED : 0));
	be32_put(out + 44, e->atime);
}

int cs__ckpt_ent_decode(const uint8_t *p, size_t n, struct cs_ckpt_ent *ret)
{
	struct cs_ckpt_ent e;
	struct rbuf rb;
	uint32_t lf;

	rbuf_init(&rb, p, n);
	if (rbuf_copy(&rb, e.id, CS_ID_LEN) < 0 || rbuf_u64(&rb, &e.loc) < 0 ||
	    rbuf_u32(&rb, &lf) < 0 || rbuf_u32(&rb, &e.atime) < 0 || rbuf_end(&rb) < 0)
		return -EPROTO;
	if (lf & ~(CKPT_ENT_PINNED | CKPT_ENT_LEN_MASK))
		return -EPROTO;
	e.len = lf & CKPT_ENT_LEN_MASK;
	e.pinned = lf & CKPT_ENT_PINNED;
	if (e.len > CS_CHUNK_MAX_LIMIT || !loc_valid(e.loc))
		return -EPROTO;
	*ret = e;
	return 0;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off, size_t *ret_got)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*ret_got = got;
	return 0;
}

/* 21845 entries: just under 1 MiB per read. */
#define CKPT_READ_ENTS 21845U

/* How far ahead of @fn the @ahead hint runs: enough misses in flight to hide DRAM latency. */
#define AHEAD 8U

int cs__ckpt_load(int fd, struct cs_ckpt_hdr *ret_hdr, cs_ckpt_ent_fn *fn, cs_ckpt_ahead_fn *ahead,
		  void *arg)
{
	uint8_t hb[CS_CKPT_HDR_LEN], *buf;
	struct cs_ckpt_hdr h;
	XXH3_state_t *st;
	struct stat sb;
	uint64_t done = 0, off = CS_CKPT_HDR_LEN;
	size_t got;
	int rc;

	if (fstat(fd, &sb) < 0)
		return -errno;
	if ((rc = pread_full(fd, hb, sizeof(hb), 0, &got)) < 0)
		return rc;
	if ((rc = cs__ckpt_hdr_decode(hb, got, &h)) < 0)
		return rc;
	/* The count must match the file exactly: nothing is sized from it alone. */
	if ((uint64_t)sb.st_size < CS_CKPT_HDR_LEN ||
	    ((uint64_t)sb.st_size - CS_CKPT_HDR_LEN) % CS_CKPT_ENT_LEN != 0 ||
	    ((uint64_t)sb.st_size - CS_CKPT_HDR_LEN) / CS_CKPT_ENT_LEN != h.count)
		return -EPROTO;
	if (!(buf = malloc((size_t)CKPT_READ_ENTS * CS_CKPT_ENT_LEN)))
		return -ENOMEM;
	if (!(st = XXH3_createState())) {
		free(buf);
		return -ENOMEM;
	}
	(void)XXH3_64bits_reset(st);
	while (done < h.count) {
		uint64_t n = P2P_MIN(h.count - done, (uint64_t)CKPT_READ_ENTS);
		size_t len = (size_t)n * CS_CKPT_ENT_LEN;

		if ((rc = pread_full(fd, buf, len, off, &got)) < 0)
			goto out;
		if (got != len) {
			rc = -EPROTO;
			goto out;
		}
		(void)XXH_UPDATE(st, buf, len);
		for (size_t i = 0; ahead && i < P2P_MIN((size_t)n, (size_t)AHEAD); i++)
			ahead(arg, buf + i * CS_CKPT_ENT_LEN);
		for (size_t i = 0; i < n; i++) {
			struct cs_ckpt_ent e;

			if (ahead && i + AHEAD < n)
				ahead(arg, buf + (i + AHEAD) * CS_CKPT_ENT_LEN);

			if ((rc = cs__ckpt_ent_decode(buf + i * CS_CKPT_ENT_LEN, CS_CKPT_ENT_LEN,
						      &e)) < 0)
				goto out;
			if ((rc = fn(arg, &e)) < 0)
				goto out;
		}
		done += n;
		off += len;
	}
	rc = XXH3_64bits_digest(st) == h.entries_hash ? 0 : -EBADMSG;
	if (rc == 0)
		*ret_hdr = h;
out:
	XXH3_freeState(st);
	free(buf);
	return rc;
}

/* ---- pack scanner ---- */

/*
 * A sliding window over the file: the bytes [base, base + len) are in buf.
 * Reads are large (WIN_READ) so a tail of small records costs few syscalls;
 * the window grows only to hold the largest record the store accepts.
 */
#define WIN_READ (8U << 20)

struct win {
	int fd;
	uint8_t *buf;
	size_t cap;
	uint64_t base;
	size_t len;
	uint64_t end;
	uint64_t nread;
};

/* Make [off, off + n) (within end) readable; returns a pointer or NULL with *rc. */
static const uint8_t *win_get(struct win *w, uint64_t off, size_t n, int *rc)
{
	size_t want, got;

	if (off >= w->base && off + n <= w->base + w->len)
		return w->buf + (off - w->base);
	want = (size_t)P2P_MIN((uint64_t)P2P_MAX(n, (size_t)WIN_READ), w->end - off);
	if (want < n) {
		*rc = -ENODATA;
		return NULL;
	}
	if (want > w->cap) {
		uint8_t *nb = malloc(want);

		if (!nb) {
			*rc = -ENOMEM;
			return NULL;
		}
		if (off >= w->base && off < w->base + w->len)
			memcpy(nb, w->buf + (off - w->base), (size_t)(w->base + w->len - off));
		free(w->buf);
		w->buf = nb;
		w->cap = want;
	} else if (off >= w->base && off < w->base + w->len) {
		memmove(w->buf, w->buf + (off - w->base), (size_t)(w->base + w->len - off));
	}
	if (off >= w->base && off < w->base + w->len)
		w->len = (size_t)(w->base + w->len - off);
	else
		w->len = 0;
	w->base = off;
	if ((*rc = pread_full(w->fd, w->buf + w->len, want - w->len, off + w->len, &got)) < 0)
		return NULL;
	w->nread += got;
	w->len += got;
	if (w->len < n) {
		*rc = -ENODATA; /* the file shrank under us */
		return NULL;
	}
	return w->buf;
}

int cs__pack_scan(int fd, uint32_t no, uint64_t salt, uint64_t start, uint64_t end, cs_scan_fn *fn,
		  void *arg, uint64_t *ret_valid_end, uint64_t *ret_read)
{
	struct win w = { .fd = fd, .end = end };
	uint64_t pos = start, valid_end = start;
	int rc = 0;

	if (start % 8 || start < CS_PACK_HDR_LEN || no == 0 || no > CS_PACK_NO_MAX) {
		rc = -EINVAL;
		goto out;
	}
	while (pos < end && end - pos >= CS_REC_HDR_LEN && pos < CS_PACK_SIZE_MAX) {
		uint64_t loc = cs__loc(no, pos), size;
		const uint8_t *p;
		struct cs_rec r;

		if (!(p = win_get(&w, pos, CS_REC_HDR_LEN, &rc)))
			break;
		if (cs__rec_decode(p, CS_REC_HDR_LEN, cs__rec_seed(salt, loc), &r) < 0) {
			pos += 8;
			continue;
		}
		size = cs__rec_size(r.len);
		if (size > end - pos)
			break; /* torn at the end: nothing complete can follow */
		if (r.type == CS_REC_CHUNK) {
			if (!(p = win_get(&w, pos + CS_REC_HDR_LEN, r.len, &rc)))
				break;
			if (cs__xxh(p, r.len, 0) != r.data_hash) {
				pos += size; /* torn data under a whole header */
				continue;
			}
		}
		if ((rc = fn(arg, loc, &r)) < 0)
			goto out;
		pos += size;
		valid_end = pos;
	}
	if (rc == -ENODATA)
		rc = 0;
out:
	*ret_valid_end = valid_end;
	*ret_read = w.nread;
	free(w.buf);
	return rc;
}
