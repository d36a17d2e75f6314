// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_tp_frame.c - peer bytes at every stage of the transport
 * engine (net/tp.h). The first byte picks the stage, the rest is the input:
 *
 *   0  as handshake message 1, to a responder
 *   1  as message 2, to an initiator that sent a genuine message 1
 *   2  as message 3, to a responder that answered a genuine message 1
 *   3  as a stream of frames on an established session, each cut by its
 *      length header and decrypted in pieces whose sizes the input picks
 *   4  edits (offset, xor) to a genuine frame sealed from the input
 *   5  edits to one genuine handshake message of a whole handshake
 *
 * Besides memory errors, it checks the properties: nobody without a key
 * forges a message 2 or 3 or a frame; an edited frame or handshake message
 * fails unless the edits changed nothing; a genuine one always passes.
 */
#include "net/tp.h"
#include "common/rbuf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PT_MAX 4096 /* plaintext of the frames that mode 4 edits */

static struct peer_ident *ida, *idb;

#define CHECK(e)                 \
	do {                     \
		if (!(e))        \
			abort(); \
	} while (0)

static void pair(struct tp **i, struct tp **r)
{
	struct tp_opts oi = { .ident = ida, .initiator = true }, or = { .ident = idb };

	CHECK(tp_new(&oi, i) == 0 && tp_new(& or, r) == 0);
}

static void session(struct tp **i, struct tp **r)
{
	uint8_t m1[TP_HS_WIRE_MAX], m2[TP_HS_WIRE_MAX], m3[TP_HS_WIRE_MAX], out[TP_HS_WIRE_MAX];
	size_t l1, l2, l3, lo;

	pair(i, r);
	CHECK(tp_hs_start(*i, m1, &l1) == 0 && tp_hs_input(*r, m1, l1, m2, &l2) == 0 &&
	      tp_hs_input(*i, m2, l2, m3, &l3) == 1 && tp_hs_input(*r, m3, l3, out, &lo) == 1);
}

/* Apply (u16 offset, u8 xor) edits from @r to @buf; true if any byte ends up changed. */
static bool edit(struct rbuf *r, uint8_t *buf, size_t len)
{
	static uint8_t orig[PT_MAX + TP_OVERHEAD];
	uint16_t off;
	uint8_t x;

	if (!len || len > sizeof(orig))
		return false;
	memcpy(orig, buf, len);
	while (rbuf_u16(r, &off) == 0 && rbuf_u8(r, &x) == 0)
		buf[off % len] ^= x; /* edits may cancel out: compare at the end */
	return memcmp(orig, buf, len) != 0;
}

static void frames_stream(const uint8_t *in, size_t size)
{
	static uint8_t buf[TP_WIRE_MAX];
	struct tp *i, *r;
	size_t off = 0, step = in && size ? (size_t)in[0] * 97 + 1 : 1;

	session(&i, &r);
	while (size - off >= TP_HDR_LEN) {
		size_t flen, pl, done = 0;

		if (tp_frame_len(in + off, &flen) < 0) {
			CHECK(tp_open_begin(r, in + off, &pl) < 0);
			break;
		}
		if (flen > size - off)
			break;
		memcpy(buf, in + off, flen);
		CHECK(tp_open_begin(r, buf, &pl) == 0 && pl + TP_OVERHEAD == flen);
		while (done < pl) {
			size_t n = P2P_MIN(step, pl - done);

			CHECK(tp_open_update(r, buf + TP_HDR_LEN + done, n) == 0);
			done += n;
		}
		CHECK(tp_open_final(r, buf + TP_HDR_LEN + pl) < 0); /* nobody forges a frame */
		CHECK(tp_open(r, buf, flen) == -EPIPE);
		break;
	}
	tp_free(i);
	tp_free(r);
}

static void edited_frame(const uint8_t *in, size_t size)
{
	static uint8_t pt[PT_MAX], f[PT_MAX + TP_OVERHEAD];
	struct tp *i, *r;
	struct rbuf rb;
	uint16_t len;
	bool changed;
	long n;

	rbuf_init(&rb, in, size);
	if (rbuf_u16(&rb, &len) < 0)
		return;
	len %= sizeof(pt);
	for (size_t k = 0; k < len; k++)
		pt[k] = (uint8_t)(k * 31 + size);
	session(&i, &r);
	CHECK(tp_seal(i, pt, len, f) == (long)(len + TP_OVERHEAD));
	changed = edit(&rb, f, len + TP_OVERHEAD);
	n = tp_open(r, f, len + TP_OVERHEAD);
	if (changed) {
		CHECK(n < 0);
	} else {
		CHECK(n == len && !memcmp(f + TP_HDR_LEN, pt, len));
		/* And the next frame opens too: counters stayed in step. */
		CHECK(tp_seal(i, pt, 1, f) == 1 + TP_OVERHEAD);
		CHECK(tp_open(r, f, 1 + TP_OVERHEAD) == 1);
	}
	tp_free(i);
	tp_free(r);
}

static void edited_handshake(const uint8_t *in, size_t size)
{
	uint8_t m[3][TP_HS_WIRE_MAX], out[TP_HS_WIRE_MAX];
	size_t l[3], lo;
	struct tp *i, *r;
	struct rbuf rb;
	uint8_t which;
	bool changed = false;
	int rc;

	rbuf_init(&rb, in, size);
	if (rbuf_u8(&rb, &which) < 0)
		return;
	which %= 3;
	pair(&i, &r);
	CHECK(tp_hs_start(i, m[0], &l[0]) == 0);
	if (which == 0)
		changed = edit(&rb, m[0], l[0]);
	if ((rc = tp_hs_input(r, m[0], l[0], m[1], &l[1])) < 0)
		goto out;
	if (which == 1)
		changed = edit(&rb, m[1], l[1]);
	if ((rc = tp_hs_input(i, m[1], l[1], m[2], &l[2])) < 0)
		goto out;
	if (which == 2)
		changed = edit(&rb, m[2], l[2]);
	rc = tp_hs_input(r, m[2], l[2], out, &lo);
out:
	CHECK(changed ? rc < 0 : rc == 1);
	if (!changed)
		CHECK(!memcmp(tp_session_id(i), tp_session_id(r), TP_SESSION_ID_LEN));
	tp_free(i);
	tp_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[TP_HS_WIRE_MAX], m1[TP_HS_WIRE_MAX];
	struct tp *i = NULL, *r = NULL, *x = NULL;
	size_t olen, l1;
	int rc;

	if (!ida) {
		CHECK(peer_ident_generate(0, &ida) == 0);
		CHECK(peer_ident_generate(0, &idb) == 0);
	}
	if (size < 1)
		return 0;
	data++;
	size--;
	switch (data[-1] % 6) {
	case 0:
		pair(&x, &r);
		rc = tp_hs_input(r, data, size, out, &olen);
		CHECK(rc < 0 || (rc == 0 && olen == 2 + 144));
		break;
	case 1:
		pair(&i, &r);
		CHECK(tp_hs_start(i, m1, &l1) == 0);
		CHECK(tp_hs_input(i, data, size, out, &olen) < 0);
		break;
	case 2:
		pair(&x, &r);
		CHECK(tp_hs_start(x, m1, &l1) == 0 && tp_hs_input(r, m1, l1, out, &olen) == 0);
		CHECK(tp_hs_input(r, data, size, out, &olen) < 0);
		break;
	case 3:
		frames_stream(data, size);
		break;
	case 4:
		edited_frame(data, size);
		break;
	default:
		edited_handshake(data, size);
		break;
	}
	tp_free(i);
	tp_free(r);
	tp_free(x);
	return 0;
}
