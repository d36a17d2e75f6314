// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_tp_frame.c - bytes from a peer at every stage of the
 * transport: as any of the three handshake messages, and as a stream of
 * frames on an established session.
 *
 * The first byte picks the stage; the rest is the input. For frames the
 * input is cut into frames by their own length headers, as tp_conn does.
 */
#include "net/tp.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct peer_ident *a, *b;

static void session(struct tp **i, struct tp **r)
{
	struct tp_opts oi = { .ident = a, .initiator = true }, or = { .ident = b };
	uint8_t m1[TP_HS_MAX], m2[TP_HS_MAX], m3[TP_HS_MAX], out[TP_HS_MAX];
	size_t l1, l2, l3, lo;

	if (tp_new(&oi, i) < 0 || tp_new(& or, r) < 0 || tp_hs_start(*i, m1, &l1) < 0 ||
	    tp_hs_input(*r, m1, l1, m2, &l2) < 0 || tp_hs_input(*i, m2, l2, m3, &l3) != 1 ||
	    tp_hs_input(*r, m3, l3, out, &lo) != 1)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[TP_FRAME_MAX + TP_OVERHEAD];
	uint8_t out[TP_HS_MAX], m1[TP_HS_MAX];
	struct tp *i = NULL, *r = NULL;
	struct tp_opts oi = { .initiator = true }, or = { 0 };
	size_t olen, l1;
	int rc;

	if (!a && (peer_ident_generate(0, &a) < 0 || peer_ident_generate(0, &b) < 0))
		abort();
	oi.ident = a;
	or.ident = b;
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0: /* as message 1 to a responder */
		if (tp_new(& or, &r) < 0)
			abort();
		rc = tp_hs_input(r, data + 1, size - 1, out, &olen);
		if (rc == 0 && olen > TP_HS_MAX)
			abort();
		break;
	case 1: /* as message 2 to an initiator */
		if (tp_new(&oi, &i) < 0 || tp_hs_start(i, m1, &l1) < 0)
			abort();
		if (tp_hs_input(i, data + 1, size - 1, out, &olen) >= 0)
			abort(); /* nobody can sign for b's session without b's key */
		break;
	case 2: { /* as message 3 to a responder that answered a genuine message 1 */
		struct tp *x;

		if (tp_new(&oi, &x) < 0 || tp_new(& or, &r) < 0 || tp_hs_start(x, m1, &l1) < 0 ||
		    tp_hs_input(r, m1, l1, out, &olen) < 0)
			abort();
		if (tp_hs_input(r, data + 1, size - 1, out, &olen) >= 0)
			abort();
		tp_free(x);
		break;
	}
	default: { /* as frames on an established session */
		size_t off = 1;

		session(&i, &r);
		while (size - off >= TP_HDR_LEN) {
			size_t flen;
			long n;

			if (tp_frame_len(data + off, &flen) < 0 || flen > size - off)
				break;
			memcpy(buf, data + off, flen);
			n = tp_open(r, buf, flen);
			if (n >= 0)
				abort(); /* forging a frame means breaking AES-GCM */
			off += flen;
			break; /* a failed frame ends the session */
		}
		break;
	}
	}
	tp_free(i);
	tp_free(r);
	return 0;
}
