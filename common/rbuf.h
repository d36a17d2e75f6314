/* SPDX-License-Identifier: MIT */
/*
 * common/rbuf.h - bounds-checked byte cursors for untrusted input (rbuf) and
 * for building messages (wbuf).
 *
 * Invariants:
 *  1. An rbuf never reads past its end: every getter checks the length first
 *     and returns -EPROTO on a short buffer, leaving the cursor unchanged.
 *  2. Integers on disk and on the wire are big-endian; no struct is ever cast
 *     onto bytes.
 *  3. A wbuf that runs out of room latches an error (-EMSGSIZE) and ignores
 *     later writes; wbuf_done() reports it once, so builders need not check
 *     each call.
 */
#ifndef P2P_COMMON_RBUF_H
#define P2P_COMMON_RBUF_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/util.h"

struct rbuf {
	const uint8_t *p;
	size_t left;
};

static inline void rbuf_init(struct rbuf *r, const void *buf, size_t len)
{
	r->p = buf;
	r->left = len;
}

static inline size_t rbuf_left(const struct rbuf *r)
{
	return r->left;
}

P2P_MUST_CHECK static inline int rbuf_u8(struct rbuf *r, uint8_t *v)
{
	if (r->left < 1)
		return -EPROTO;
	*v = r->p[0];
	r->p++;
	r->left--;
	return 0;
}

P2P_MUST_CHECK static inline int rbuf_u16(struct rbuf *r, uint16_t *v)
{
	if (r->left < 2)
		return -EPROTO;
	*v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	r->left -= 2;
	return 0;
}

P2P_MUST_CHECK static inline int rbuf_u32(struct rbuf *r, uint32_t *v)
{
	if (r->left < 4)
		return -EPROTO;
	*v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 |
	     (uint32_t)r->p[3];
	r->p += 4;
	r->left -= 4;
	return 0;
}

P2P_MUST_CHECK static inline int rbuf_u64(struct rbuf *r, uint64_t *v)
{
	uint64_t x = 0;

	if (r->left < 8)
		return -EPROTO;
	for (int i = 0; i < 8; i++)
		x = x << 8 | r->p[i];
	*v = x;
	r->p += 8;
	r->left -= 8;
	return 0;
}

/* Borrow @n bytes: *ret_p stays valid as long as the underlying buffer. */
P2P_MUST_CHECK static inline int rbuf_ref(struct rbuf *r, size_t n, const uint8_t **ret_p)
{
	if (n > r->left)
		return -EPROTO;
	*ret_p = r->p;
	r->p += n;
	r->left -= n;
	return 0;
}

P2P_MUST_CHECK static inline int rbuf_copy(struct rbuf *r, void *dst, size_t n)
{
	if (n > r->left)
		return -EPROTO;
	memcpy(dst, r->p, n);
	r->p += n;
	r->left -= n;
	return 0;
}

P2P_MUST_CHECK static inline int rbuf_skip(struct rbuf *r, size_t n)
{
	if (n > r->left)
		return -EPROTO;
	r->p += n;
	r->left -= n;
	return 0;
}

/* Trailing bytes are an error. */
P2P_MUST_CHECK static inline int rbuf_end(const struct rbuf *r)
{
	return r->left ? -EPROTO : 0;
}

struct wbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
	int err;
};

static inline void wbuf_init(struct wbuf *w, void *buf, size_t cap)
{
	w->p = buf;
	w->len = 0;
	w->cap = cap;
	w->err = 0;
}

/* Reserve @n bytes and return where to write them, or NULL (error latched). */
static inline uint8_t *wbuf_reserve(struct wbuf *w, size_t n)
{
	uint8_t *at;

	if (w->err || n > w->cap - w->len) {
		w->err = -EMSGSIZE;
		return NULL;
	}
	at = w->p + w->len;
	w->len += n;
	return at;
}

static inline void wbuf_u8(struct wbuf *w, uint8_t v)
{
	uint8_t *p = wbuf_reserve(w, 1);

	if (p)
		p[0] = v;
}

static inline void wbuf_u16(struct wbuf *w, uint16_t v)
{
	uint8_t *p = wbuf_reserve(w, 2);

	if (p) {
		p[0] = (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
	}
}

static inline void wbuf_u32(struct wbuf *w, uint32_t v)
{
	uint8_t *p = wbuf_reserve(w, 4);

	if (p)
		for (int i = 0; i < 4; i++)
			p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static inline void wbuf_u64(struct wbuf *w, uint64_t v)
{
	uint8_t *p = wbuf_reserve(w, 8);

	if (p)
		for (int i = 0; i < 8; i++)
			p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline void wbuf_bytes(struct wbuf *w, const void *src, size_t n)
{
	uint8_t *p = wbuf_reserve(w, n);

	if (p && n)
		memcpy(p, src, n);
}

/* Returns the length written, or the latched -EMSGSIZE. */
P2P_MUST_CHECK static inline long wbuf_done(const struct wbuf *w)
{
	return w->err ? w->err : (long)w->len;
}

/* Big-endian helpers for fixed layouts (headers built in place). */
static inline void be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t be64_get(const uint8_t *p)
{
	uint64_t x = 0;

	for (int i = 0; i < 8; i++)
		x = x << 8 | p[i];
	return x;
}

#endif
