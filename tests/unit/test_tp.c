// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_tp.c - the transport: handshake (success, wrong key,
 * wrong network, replay, truncation), frames (tampering anywhere,
 * truncation, oversize, rekeying), and real TCP connections on the loop
 * (exchange, large frames, a silent server, a peer that is not who we
 * expected).
 */
#include "net/tp_conn.h"
#include "common/rbuf.h"
#include "tests/lib/t.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct peer_ident *ida, *idb;

static void idents(void)
{
	if (!ida) {
		T_ASSERT_OK(peer_ident_generate(0, &ida));
		T_ASSERT_OK(peer_ident_generate(0, &idb));
	}
}

/* Run the three messages; returns the rc of the first failure or 1. */
static int handshake(struct tp *i, struct tp *r, uint8_t msgs[3][TP_HS_MAX], size_t lens[3])
{
	uint8_t out[TP_HS_MAX];
	size_t olen;
	int rc;

	if ((rc = tp_hs_start(i, msgs[0], &lens[0])) < 0)
		return rc;
	if ((rc = tp_hs_input(r, msgs[0], lens[0], msgs[1], &lens[1])) < 0)
		return rc;
	if ((rc = tp_hs_input(i, msgs[1], lens[1], msgs[2], &lens[2])) != 1)
		return rc;
	rc = tp_hs_input(r, msgs[2], lens[2], out, &olen);
	return rc;
}

static void pair(struct tp **i, struct tp **r, const uint8_t *expect)
{
	struct tp_opts oi = { .ident = ida, .initiator = true, .expect_id = expect };
	struct tp_opts or = { .ident = idb };

	T_ASSERT_OK(tp_new(&oi, i));
	T_ASSERT_OK(tp_new(& or, r));
}

static void handshake_authenticates_both_sides(void)
{
	uint8_t msgs[3][TP_HS_MAX], buf[64 + TP_OVERHEAD];
	size_t lens[3];
	struct tp *i, *r;
	long n;

	idents();
	pair(&i, &r, peer_ident_id(idb));
	T_ASSERT_EQ(handshake(i, r, msgs, lens), 1);
	T_ASSERT(tp_established(i) && tp_established(r));
	T_ASSERT_MEM_EQ(tp_peer_id(i), peer_ident_id(idb), PEER_ID_LEN);
	T_ASSERT_MEM_EQ(tp_peer_id(r), peer_ident_id(ida), PEER_ID_LEN);
	/* Frames both ways. */
	T_ASSERT_EQ(tp_seal(i, (const uint8_t *)"hello", 5, buf), 5 + TP_OVERHEAD);
	n = tp_open(r, buf, 5 + TP_OVERHEAD);
	T_ASSERT_EQ(n, 5);
	T_ASSERT(!memcmp(buf + TP_HDR_LEN, "hello", 5));
	T_ASSERT_EQ(tp_seal(r, (const uint8_t *)"back", 4, buf), 4 + TP_OVERHEAD);
	T_ASSERT_EQ(tp_open(i, buf, 4 + TP_OVERHEAD), 4);
	tp_free(i);
	tp_free(r);
}

static void wrong_peer_or_network_refused(void)
{
	uint8_t msgs[3][TP_HS_MAX], other[PEER_ID_LEN], net2[TP_NETWORK_LEN] = { 9 };
	size_t lens[3];
	struct tp *i, *r;
	struct tp_opts oi = { .ident = ida, .initiator = true, .network = net2 };
	struct tp_opts or = { .ident = idb };

	idents();
	memset(other, 7, sizeof(other));
	pair(&i, &r, other);
	T_ASSERT_EQ(handshake(i, r, msgs, lens), -EACCES);
	tp_free(i);
	tp_free(r);
	T_ASSERT_OK(tp_new(&oi, &i));
	T_ASSERT_OK(tp_new(& or, &r));
	T_ASSERT_EQ(handshake(i, r, msgs, lens), -EACCES);
	tp_free(i);
	tp_free(r);
	/* An id without the proof of work the network asks for. */
	oi.network = NULL;
	oi.pow_bits = 20;
	T_ASSERT_OK(tp_new(&oi, &i));
	or.pow_bits = 0;
	T_ASSERT_OK(tp_new(& or, &r));
	T_ASSERT_EQ(handshake(i, r, msgs, lens), -EKEYREJECTED);
	tp_free(i);
	tp_free(r);
}

static void replayed_and_damaged_messages_fail(void)
{
	uint8_t msgs[3][TP_HS_MAX], m2[3][TP_HS_MAX], out[TP_HS_MAX];
	size_t lens[3], l2[3], olen;
	struct tp *i, *r, *i2, *r2;

	idents();
	pair(&i, &r, NULL);
	T_ASSERT_EQ(handshake(i, r, msgs, lens), 1);
	/* Replay message 1 to a fresh responder, then message 3 of the old session. */
	pair(&i2, &r2, NULL);
	T_ASSERT_OK(tp_hs_input(r2, msgs[0], lens[0], out, &olen));
	T_ASSERT_EQ(tp_hs_input(r2, msgs[2], lens[2], out, &olen), -EBADMSG);
	tp_free(r2);
	/* Replay message 2 of the old session to a fresh initiator. */
	T_ASSERT_OK(tp_hs_start(i2, m2[0], &l2[0]));
	T_ASSERT_EQ(tp_hs_input(i2, msgs[1], lens[1], out, &olen), -EBADMSG);
	tp_free(i2);
	/* Every truncation and every flipped bit of every message. */
	for (int k = 0; k < 3; k++) {
		for (size_t cut = 0; cut < lens[k]; cut++) {
			struct tp *a, *b;
			uint8_t m[3][TP_HS_MAX];
			size_t l[3];
			int rc;

			pair(&a, &b, NULL);
			T_ASSERT_OK(tp_hs_start(a, m[0], &l[0]));
			if (k == 0) {
				rc = tp_hs_input(b, m[0], cut, m[1], &l[1]);
			} else {
				T_ASSERT_OK(tp_hs_input(b, m[0], l[0], m[1], &l[1]));
				if (k == 1) {
					rc = tp_hs_input(a, m[1], cut, m[2], &l[2]);
				} else {
					T_ASSERT_EQ(tp_hs_input(a, m[1], l[1], m[2], &l[2]), 1);
					rc = tp_hs_input(b, m[2], cut, out, &olen);
				}
			}
			T_ASSERT(rc < 0);
			tp_free(a);
			tp_free(b);
		}
		for (size_t bit = 0; bit < lens[k] * 8; bit += 7) {
			struct tp *a, *b;
			uint8_t m[3][TP_HS_MAX];
			size_t l[3];
			int rc;

			pair(&a, &b, NULL);
			T_ASSERT_OK(tp_hs_start(a, m[0], &l[0]));
			if (k == 0)
				m[0][bit / 8] ^= (uint8_t)(1 << (bit % 8));
			rc = tp_hs_input(b, m[0], l[0], m[1], &l[1]);
			if (rc == 0) {
				if (k == 1)
					m[1][bit / 8] ^= (uint8_t)(1 << (bit % 8));
				rc = tp_hs_input(a, m[1], l[1], m[2], &l[2]);
				if (rc == 1) {
					if (k == 2)
						m[2][bit / 8] ^= (uint8_t)(1 << (bit % 8));
					rc = tp_hs_input(b, m[2], l[2], out, &olen);
				}
			}
			/* A flipped bit in an ephemeral key may still agree on a
			 * (different) key only if nothing checks it: every one must fail. */
			T_ASSERT(rc < 0);
			tp_free(a);
			tp_free(b);
		}
	}
	tp_free(i);
	tp_free(r);
}

static void tampered_truncated_and_oversize_frames_rejected(void)
{
	uint8_t msgs[3][TP_HS_MAX], buf[1000 + TP_OVERHEAD], pt[1000];
	size_t lens[3], flen;
	struct tp *i, *r;

	idents();
	t_rand_fill(pt, sizeof(pt));
	for (size_t pos = 0; pos < sizeof(buf); pos += 37) {
		pair(&i, &r, NULL);
		T_ASSERT_EQ(handshake(i, r, msgs, lens), 1);
		tp_seal(i, pt, sizeof(pt), buf);
		buf[pos] ^= 0x01;
		T_ASSERT(tp_open(r, buf, sizeof(buf)) < 0);
		tp_free(i);
		tp_free(r);
	}
	pair(&i, &r, NULL);
	T_ASSERT_EQ(handshake(i, r, msgs, lens), 1);
	tp_seal(i, pt, sizeof(pt), buf);
	T_ASSERT_EQ(tp_open(r, buf, sizeof(buf) - 1), -EPROTO);
	T_ASSERT_EQ(tp_open(r, buf, 3), -EPROTO);
	be32_put(buf, TP_FRAME_MAX + 1);
	T_ASSERT_EQ(tp_frame_len(buf, &flen), -EMSGSIZE);
	tp_free(i);
	tp_free(r);
	/* Frames are bound to their order: a replayed or reordered frame fails. */
	pair(&i, &r, NULL);
	T_ASSERT_EQ(handshake(i, r, msgs, lens), 1);
	{
		uint8_t f1[8 + TP_OVERHEAD], f2[8 + TP_OVERHEAD];

		tp_seal(i, (const uint8_t *)"frame-01", 8, f1);
		tp_seal(i, (const uint8_t *)"frame-02", 8, f2);
		T_ASSERT_EQ(tp_open(r, f2, sizeof(f2)), -EBADMSG);
	}
	tp_free(i);
	tp_free(r);
}

static void keys_ratchet_at_the_rekey_boundary(void)
{
	uint8_t msgs[3][TP_HS_MAX], buf[16 + TP_OVERHEAD], first[16 + TP_OVERHEAD];
	size_t lens[3];
	struct tp *i, *r;

	idents();
	pair(&i, &r, NULL);
	T_ASSERT_EQ(handshake(i, r, msgs, lens), 1);
	tp_seal(i, (const uint8_t *)"0123456789abcdef", 16, first);
	T_ASSERT_EQ(tp_open(r, first, sizeof(first)), 16);
	for (uint64_t k = 1; k < TP_REKEY_FRAMES + 3; k++) {
		tp_seal(i, (const uint8_t *)"0123456789abcdef", 16, buf);
		T_ASSERT_EQ(tp_open(r, buf, sizeof(buf)), 16);
		T_ASSERT(!memcmp(buf + TP_HDR_LEN, "0123456789abcdef", 16));
	}
	tp_free(i);
	tp_free(r);
}

/* ---- real connections ---- */

struct side {
	struct tp_conn *c;
	bool up, down;
	int reason;
	size_t frames, bytes;
	uint8_t last[64];
	uint64_t sum;
};

static void on_up(void *arg, struct tp_conn *c)
{
	struct side *s = arg;

	s->c = c;
	s->up = true;
}

static void on_frame(void *arg, struct tp_conn *c, uint8_t *data, size_t len)
{
	struct side *s = arg;

	(void)c;
	s->frames++;
	s->bytes += len;
	for (size_t i = 0; i < len; i += 4096)
		s->sum += data[i];
	memcpy(s->last, data, P2P_MIN(len, sizeof(s->last)));
	if (len == 4 && !memcmp(data, "ping", 4))
		T_ASSERT_OK(tp_conn_send(c, "pong", 4));
}

static void on_down(void *arg, struct tp_conn *c, int reason)
{
	struct side *s = arg;

	(void)c;
	s->down = true;
	s->reason = reason;
	s->c = NULL;
}

static const struct tp_conn_cbs cbs = { on_up, on_frame, on_down };

static void run_until(struct ev_loop *l, bool *flag, int ms)
{
	for (int i = 0; i < ms / 5 && !*flag; i++)
		T_ASSERT(ev_loop_run_once(l, 5) >= 0);
}

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static void tcp_exchange_and_large_frames(void)
{
	struct ev_loop *l;
	struct tp_listener *ls;
	struct side srv = { 0 }, cli = { 0 };
	struct tp_conn_opts oa = { .ident = ida }, ob = { .ident = idb };
	struct sockaddr_in a = loopback(0);
	uint8_t *big = malloc(TP_FRAME_MAX);
	uint64_t want = 0;

	idents();
	T_ASSERT(big);
	T_ASSERT_OK(ev_loop_new(256, &l));
	T_ASSERT_OK(tp_listen(l, (struct sockaddr *)&a, sizeof(a), &ob, &cbs, &srv, &ls));
	a = loopback(tp_listener_port(ls));
	T_ASSERT_OK(tp_connect(l, (struct sockaddr *)&a, sizeof(a), peer_ident_id(idb), &oa, &cbs,
			       &cli, &cli.c));
	run_until(l, &srv.up, 3000);
	run_until(l, &cli.up, 3000);
	T_ASSERT(srv.up && cli.up);
	T_ASSERT_MEM_EQ(tp_conn_peer_id(srv.c), peer_ident_id(ida), PEER_ID_LEN);
	T_ASSERT_OK(tp_conn_send(cli.c, "ping", 4));
	run_until(l, &(bool){ false }, 100);
	T_ASSERT_EQ(cli.frames, 1);
	T_ASSERT(!memcmp(cli.last, "pong", 4));
	/* 64 frames of the maximum size, content checked by a sum. */
	t_rand_fill(big, TP_FRAME_MAX);
	for (size_t i = 0; i < TP_FRAME_MAX; i += 4096)
		want += big[i];
	for (int k = 0; k < 64; k++) {
		int rc;

		while ((rc = tp_conn_send(cli.c, big, TP_FRAME_MAX)) == -ENOBUFS)
			T_ASSERT(ev_loop_run_once(l, 5) >= 0);
		T_ASSERT_OK(rc);
	}
	T_ASSERT_EQ(tp_conn_send(cli.c, big, TP_FRAME_MAX + 1), -EMSGSIZE);
	for (int i = 0; i < 2000 && srv.frames < 65; i++)
		T_ASSERT(ev_loop_run_once(l, 5) >= 0);
	T_ASSERT_EQ(srv.frames, 65);
	T_ASSERT_EQ(srv.sum, 64 * want + 'p');
	/* The client goes: the server hears it. */
	tp_conn_close(cli.c);
	run_until(l, &srv.down, 3000);
	T_ASSERT(srv.down);
	tp_listener_free(ls);
	for (int i = 0; i < 20; i++)
		T_ASSERT(ev_loop_run_once(l, 5) >= 0);
	ev_loop_free(l);
	free(big);
}

static void unexpected_peer_and_silent_server_end_cleanly(void)
{
	struct ev_loop *l;
	struct tp_listener *ls;
	struct side srv = { 0 }, cli = { 0 }, cli2 = { 0 };
	struct tp_conn_opts oa = { .ident = ida, .handshake_ms = 300 }, ob = { .ident = idb };
	struct sockaddr_in a = loopback(0);
	uint8_t other[PEER_ID_LEN];
	int silent;
	socklen_t sl = sizeof(a);

	idents();
	memset(other, 3, sizeof(other));
	T_ASSERT_OK(ev_loop_new(256, &l));
	T_ASSERT_OK(tp_listen(l, (struct sockaddr *)&a, sizeof(a), &ob, &cbs, &srv, &ls));
	a = loopback(tp_listener_port(ls));
	T_ASSERT_OK(
	    tp_connect(l, (struct sockaddr *)&a, sizeof(a), other, &oa, &cbs, &cli, &cli.c));
	run_until(l, &cli.down, 3000);
	T_ASSERT(cli.down && !cli.up);
	T_ASSERT_EQ(cli.reason, -EACCES);
	/* A server that accepts and never answers: the handshake times out. */
	silent = socket(AF_INET, SOCK_STREAM, 0);
	a = loopback(0);
	T_ASSERT_OK(bind(silent, (struct sockaddr *)&a, sizeof(a)));
	T_ASSERT_OK(listen(silent, 4));
	T_ASSERT_OK(getsockname(silent, (struct sockaddr *)&a, &sl));
	T_ASSERT_OK(
	    tp_connect(l, (struct sockaddr *)&a, sizeof(a), NULL, &oa, &cbs, &cli2, &cli2.c));
	run_until(l, &cli2.down, 3000);
	T_ASSERT(cli2.down);
	T_ASSERT_EQ(cli2.reason, -ETIMEDOUT);
	close(silent);
	tp_listener_free(ls);
	for (int i = 0; i < 20; i++)
		T_ASSERT(ev_loop_run_once(l, 5) >= 0);
	ev_loop_free(l);
}

T_MAIN(T_CASE(handshake_authenticates_both_sides), T_CASE(wrong_peer_or_network_refused),
       T_CASE(replayed_and_damaged_messages_fail),
       T_CASE(tampered_truncated_and_oversize_frames_rejected),
       T_CASE(keys_ratchet_at_the_rekey_boundary), T_CASE(tcp_exchange_and_large_frames),
       T_CASE(unexpected_peer_and_silent_server_end_cleanly))
