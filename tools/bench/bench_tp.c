// SPDX-License-Identifier: MIT
/*
 * tools/bench/bench_tp.c - the encrypted transport beside its baselines,
 * measured in one run:
 *
 *   one connection over loopback (1 MiB frames)     beside iperf3, one stream (target >= 50 %)
 *   handshakes per second (protocol work, one core)
 *   AES-256-GCM frame seal + open, same frames      beside memcpy
 *
 *   bench_tp [--quick] [--seconds S]
 */
#include "common/ev.h"
#include "common/tm.h"
#include "net/tp_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static double seconds = 3;
static size_t frame_len = 1 << 20; /* a chunk per frame, as chunk transfers send */
static size_t sendq; /* 0: the transport's default */
static struct peer_ident *ida, *idb;

/* ---- raw frames and handshakes ---- */

static void pair(struct tp **i, struct tp **r)
{
	struct tp_opts oi = { .ident = ida, .initiator = true }, or = { .ident = idb };
	uint8_t m1[TP_HS_MAX], m2[TP_HS_MAX], m3[TP_HS_MAX], out[TP_HS_MAX];
	size_t l1, l2, l3, lo;

	if (tp_new(&oi, i) < 0 || tp_new(& or, r) < 0 || tp_hs_start(*i, m1, &l1) < 0 ||
	    tp_hs_input(*r, m1, l1, m2, &l2) < 0 || tp_hs_input(*i, m2, l2, m3, &l3) != 1 ||
	    tp_hs_input(*r, m3, l3, out, &lo) != 1) {
		fprintf(stderr, "bench_tp: handshake failed\n");
		exit(1);
	}
}

static double handshakes_per_s(void)
{
	uint64_t t0 = tm_mono_ns(), n = 0;

	while (tm_mono_ns() - t0 < (uint64_t)(seconds / 3 * 1e9)) {
		struct tp *i, *r;

		pair(&i, &r);
		tp_free(i);
		tp_free(r);
		n++;
	}
	return (double)n / ((double)(tm_mono_ns() - t0) / 1e9);
}

static void raw_frames(double *seal_open_gbs, double *memcpy_gbs)
{
	size_t len = frame_len;
	uint8_t *pt = malloc(len), *f = malloc(len + TP_OVERHEAD), *m = malloc(len);
	struct tp *i, *r;
	uint64_t t0, n = 0;

	pair(&i, &r);
	memset(pt, 0x5a, len);
	t0 = tm_mono_ns();
	while (tm_mono_ns() - t0 < (uint64_t)(seconds / 3 * 1e9)) {
		tp_seal(i, pt, len, f);
		if (tp_open(r, f, len + TP_OVERHEAD) != (long)len)
			exit(1);
		n++;
	}
	*seal_open_gbs = (double)(n * len) / ((double)(tm_mono_ns() - t0));
	t0 = tm_mono_ns();
	n = 0;
	while (tm_mono_ns() - t0 < (uint64_t)(seconds / 6 * 1e9)) {
		memcpy(m, pt, len);
		memcpy(pt, m, len);
		n += 2;
	}
	*memcpy_gbs = (double)(n * len) / ((double)(tm_mono_ns() - t0));
	tp_free(i);
	tp_free(r);
	free(pt);
	free(f);
	free(m);
}

/* ---- one connection over loopback: receiver and sender on their own threads ---- */

struct rx {
	struct ev_loop *loop;
	struct tp_listener *ls;
	uint16_t port;
	uint64_t bytes, t_first, t_last;
	volatile bool ready, done;
	struct tp_conn *c;
};

static void rx_up(void *arg, struct tp_conn *c)
{
	((struct rx *)arg)->c = c;
}

static void rx_frame(void *arg, struct tp_conn *c, uint8_t *data, size_t len)
{
	struct rx *r = arg;

	(void)c;
	(void)data;
	if (!r->bytes)
		r->t_first = tm_mono_ns();
	r->bytes += len;
	r->t_last = tm_mono_ns();
}

static void rx_down(void *arg, struct tp_conn *c, int reason)
{
	(void)c;
	(void)reason;
	((struct rx *)arg)->done = true;
}

static void *rx_main(void *arg)
{
	struct rx *r = arg;
	struct tp_conn_opts o = { .ident = idb };
	struct tp_conn_cbs cbs = { rx_up, rx_frame, rx_down };
	struct sockaddr_in a = { .sin_family = AF_INET };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ev_loop_new(256, &r->loop) < 0 ||
	    tp_listen(r->loop, (struct sockaddr *)&a, sizeof(a), &o, &cbs, r, &r->ls) < 0)
		exit(1);
	r->port = tp_listener_port(r->ls);
	r->ready = true;
	while (!r->done)
		if (ev_loop_run_once(r->loop, 50) < 0)
			break;
	tp_listener_free(r->ls);
	for (int i = 0; i < 10; i++)
		if (ev_loop_run_once(r->loop, 5) < 0)
			break;
	ev_loop_free(r->loop);
	return NULL;
}

struct tx {
	bool up, down;
};

static void tx_up(void *arg, struct tp_conn *c)
{
	(void)c;
	((struct tx *)arg)->up = true;
}

static void tx_down(void *arg, struct tp_conn *c, int reason)
{
	(void)c;
	(void)reason;
	((struct tx *)arg)->down = true;
}

static double tp_throughput(void)
{
	struct rx r = { 0 };
	struct tx t = { 0 };
	struct tp_conn_opts o = { .ident = ida, .sendq_max = sendq };
	struct tp_conn_cbs cbs = { tx_up, NULL, tx_down };
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct ev_loop *l;
	struct tp_conn *c;
	pthread_t th;
	uint8_t *frame = calloc(1, frame_len);
	uint64_t t0;

	pthread_create(&th, NULL, rx_main, &r);
	while (!r.ready)
		usleep(1000);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(r.port);
	if (ev_loop_new(256, &l) < 0 ||
	    tp_connect(l, (struct sockaddr *)&a, sizeof(a), NULL, &o, &cbs, &t, &c) < 0)
		exit(1);
	while (!t.up && !t.down)
		if (ev_loop_run_once(l, 10) < 0)
			break;
	t0 = tm_mono_ns();
	while (!t.down && tm_mono_ns() - t0 < (uint64_t)(seconds * 1e9)) {
		while (tp_conn_send(c, frame, frame_len) == 0)
			;
		if (ev_loop_run_once(l, 1) < 0)
			break;
	}
	tp_conn_close(c);
	for (int i = 0; i < 20; i++)
		if (ev_loop_run_once(l, 5) < 0)
			break;
	ev_loop_free(l);
	pthread_join(th, NULL);
	free(frame);
	if (r.t_last <= r.t_first)
		return 0;
	return (double)r.bytes * 8 / ((double)(r.t_last - r.t_first) / 1e9) / 1e9;
}

/* ---- iperf3, one stream, same run ---- */

static double iperf3_gbits(void)
{
	char cmd[256], buf[65536];
	int port = 47000 + getpid() % 1000;
	pid_t srv;
	FILE *p;
	size_t n;
	char *at;

	if ((srv = fork()) == 0) {
		execlp("iperf3", "iperf3", "-s", "-1", "-p", (char[16]){ 0 }, (char *)NULL);
		_exit(127);
	}
	kill(srv, SIGKILL); /* the line above only checks that we can fork; start it for real: */
	waitpid(srv, NULL, 0);
	snprintf(
	    cmd, sizeof(cmd),
	    "iperf3 -s -1 -p %d >/dev/null 2>&1 & sleep 0.3; iperf3 -c 127.0.0.1 -p %d -t %d -J "
	    "2>/dev/null",
	    port, port, (int)(seconds + 0.5));
	if (!(p = popen(cmd, "r")))
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, p);
	pclose(p);
	buf[n] = '\0';
	if (!(at = strstr(buf, "\"sum_received\"")) || !(at = strstr(at, "\"bits_per_second\"")))
		return 0;
	return atof(strchr(at, ':') + 1) / 1e9;
}

int main(int argc, char **argv)
{
	double hs, so, mc, tp, ip;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			seconds = 0.6;
		else if (!strcmp(argv[i], "--sendq-kib") && i + 1 < argc)
			sendq = (size_t)atoi(argv[++i]) << 10;
		else if (!strcmp(argv[i], "--frame-kib") && i + 1 < argc)
			frame_len = (size_t)atoi(argv[++i]) << 10;
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else {
			fprintf(stderr,
				"usage: bench_tp [--quick] [--seconds S] [--frame-kib K]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (peer_ident_generate(0, &ida) < 0 || peer_ident_generate(0, &idb) < 0)
		return 1;
	hs = handshakes_per_s();
	raw_frames(&so, &mc);
	tp = tp_throughput();
	ip = iperf3_gbits();
	printf("\np2pfs transport benchmark (%.1f s per measure)\n\n", seconds);
	printf(
	    "| measure                                 | baseline            | p2pfs          | ratio | target     |\n");
	printf(
	    "|-----------------------------------------|---------------------|----------------|-------|------------|\n");
	if (ip > 0)
		printf(
		    "| one connection, loopback, %4zu KiB frames | iperf3 %6.1f Gbit/s | %6.1f Gbit/s  | %5.2f | >= 0.50 %s |\n",
		    frame_len >> 10, ip, tp, tp / ip, tp >= 0.5 * ip ? "yes" : "NO ");
	else
		printf(
		    "| one connection, loopback, %4zu KiB frames | iperf3 not run      | %6.1f Gbit/s  |     - | -          |\n",
		    frame_len >> 10, tp);
	printf(
	    "| AES-256-GCM seal + open, same frames    | memcpy %6.1f GB/s   | %6.2f GB/s    | %5.2f | reported   |\n",
	    mc, so, so / mc);
	printf(
	    "| handshakes per second (both sides, 1 core) | -                | %8.0f /s    |     - | reported   |\n",
	    hs);
	peer_ident_free(ida);
	peer_ident_free(idb);
	return 0;
}
