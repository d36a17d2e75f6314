// SPDX-License-Identifier: MIT
/*
 * tools/bench/bench_tp.c - the encrypted transport beside its baselines,
 * all measured in one run:
 *
 *   one connection over loopback, 1 MiB frames   beside iperf3 -c, one stream
 *                                                (rounds alternate; medians;
 *                                                target >= 50 %)
 *   handshakes per second: engine, and whole     beside TLS 1.3 with mutual
 *   TCP connections through tp_conn              authentication (OpenSSL, the
 *                                                same X25519 and Ed25519), and
 *                                                the primitives they are made of
 *   frame seal and open, 1 MiB / 64 KiB / 1 KiB  beside memcpy and bare
 *                                                EVP AES-256-GCM
 *
 *   bench_tp [--quick] [--seconds S] [--rounds N] [--frame-kib K]
 *            [--sendq-kib K] [--no-iperf] [--only stream|handshake|frames]
 *
 * Sender and receiver of the throughput test run on two threads with a
 * loop each, as two nodes would; the machine's other work shares the
 * cores, so only ratios measured in the same run mean much.
 */
#include "common/ev.h"
#include "common/tm.h"
#include "net/tp_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef BENCH_TP_TLS
#include <openssl/ssl.h>
#include <openssl/x509.h>
#endif

extern char **environ;

static double seconds = 2, short_s = 0.5;
static int rounds = 3;
static size_t frame_len = 1 << 20; /* a chunk piece per frame, as chunk transfers send */
static size_t sendq;		   /* 0: the transport's default */
static bool use_iperf = true;
static const char *only; /* "stream", "handshake" or "frames": just that part */
static struct peer_ident *ida, *idb;

static void die(const char *what)
{
	fprintf(stderr, "bench_tp: %s\n", what);
	exit(1);
}

static double now_s(void)
{
	return (double)tm_mono_ns() / 1e9;
}

/* CPU seconds (user + system) of the calling thread so far. */
static double thread_cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) < 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* One throughput run: rate, and CPU nanoseconds per byte on each side. */
struct run {
	double gbits, tx_ns_b, rx_ns_b;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the engine alone ---- */

static void engine_pair(struct tp **i, struct tp **r)
{
	struct tp_opts oi = { .ident = ida, .initiator = true }, or = { .ident = idb };
	uint8_t m1[TP_HS_WIRE_MAX], m2[TP_HS_WIRE_MAX], m3[TP_HS_WIRE_MAX], out[TP_HS_WIRE_MAX];
	size_t l1, l2, l3, lo;

	if (tp_new(&oi, i) < 0 || tp_new(& or, r) < 0 || tp_hs_start(*i, m1, &l1) < 0 ||
	    tp_hs_input(*r, m1, l1, m2, &l2) != 0 || tp_hs_input(*i, m2, l2, m3, &l3) != 1 ||
	    tp_hs_input(*r, m3, l3, out, &lo) != 1)
		die("handshake failed");
}

static double engine_handshakes(void)
{
	double t0 = now_s(), t;
	uint64_t n = 0;

	while ((t = now_s()) - t0 < short_s) {
		struct tp *i, *r;

		engine_pair(&i, &r);
		tp_free(i);
		tp_free(r);
		n++;
	}
	return (double)n / (t - t0);
}

/* Microseconds per call of @fn. */
static double per_op_us(void (*fn)(void))
{
	double t0 = now_s(), t;
	uint64_t n = 0;

	while ((t = now_s()) - t0 < short_s / 4) {
		for (int k = 0; k < 16; k++)
			fn();
		n += 16;
	}
	return (t - t0) * 1e6 / (double)n;
}

static uint8_t prim_pk[32], prim_sk[32], prim_sig[64], prim_out[32], prim_epk[32];

static void op_x25519_keygen(void)
{
	crypto_box_keypair(prim_pk, prim_sk);
}

static void op_x25519_dh(void)
{
	if (crypto_scalarmult(prim_out, prim_sk, prim_epk) != 0)
		die("x25519");
}

static void op_ed25519_sign(void)
{
	peer_ident_sign(ida, prim_out, 32, prim_sig);
}

static void op_ed25519_verify(void)
{
	if (!peer_sig_verify(peer_ident_pk(ida), prim_out, 32, prim_sig))
		die("verify");
}

#ifdef BENCH_TP_TLS
/*
 * The baseline: a full TLS 1.3 handshake in memory between two OpenSSL
 * endpoints that authenticate each other with self-signed Ed25519
 * certificates over an X25519 exchange (no resumption, no tickets), which
 * is what the transport's handshake gives, done the standard way.
 */
static X509 *tls_cert(EVP_PKEY *k)
{
	X509 *x = X509_new();
	X509_NAME *n;

	if (!x || X509_set_version(x, 2) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 3600) || X509_set_pubkey(x, k) != 1 ||
	    !(n = X509_get_subject_name(x)) ||
	    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"bench", -1,
				       -1, 0) != 1 ||
	    X509_set_issuer_name(x, n) != 1 || X509_sign(x, k, NULL) <= 0)
		die("TLS: certificate");
	return x;
}

static int tls_accept_any(int ok, X509_STORE_CTX *ctx)
{
	(void)ok;
	(void)ctx;
	return 1; /* self-signed: identity is the key, as in p2pfs */
}

static SSL_CTX *tls_ctx(bool server, EVP_PKEY *k, X509 *x)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!c || SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set1_groups_list(c, "X25519") != 1 ||
	    SSL_CTX_set_ciphersuites(c, "TLS_AES_256_GCM_SHA384") != 1 ||
	    SSL_CTX_use_certificate(c, x) != 1 || SSL_CTX_use_PrivateKey(c, k) != 1)
		die("TLS: context");
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_accept_any);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	return c;
}

static double tls_handshakes(void)
{
	EVP_PKEY *ka = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *kb = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	X509 *xa, *xb;
	SSL_CTX *cc, *sc;
	uint64_t n = 0;
	double t0, t;

	if (!ka || !kb)
		die("TLS: keys");
	xa = tls_cert(ka);
	xb = tls_cert(kb);
	cc = tls_ctx(false, ka, xa);
	sc = tls_ctx(true, kb, xb);
	for (t0 = now_s(); (t = now_s()) - t0 < short_s; n++) {
		SSL *c = SSL_new(cc), *s = SSL_new(sc);
		BIO *bc, *bs;
		int rc = 0, rs = 0;

		if (!c || !s || BIO_new_bio_pair(&bc, 0, &bs, 0) != 1)
			die("TLS: session");
		SSL_set_bio(c, bc, bc);
		SSL_set_bio(s, bs, bs);
		SSL_set_connect_state(c);
		SSL_set_accept_state(s);
		for (int k = 0; k < 16 && (rc != 1 || rs != 1); k++) {
			rc = SSL_do_handshake(c);
			rs = SSL_do_handshake(s);
		}
		if (rc != 1 || rs != 1 || !SSL_get0_peer_certificate(s))
			die("TLS: handshake failed");
		SSL_free(c);
		SSL_free(s);
	}
	SSL_CTX_free(cc);
	SSL_CTX_free(sc);
	X509_free(xa);
	X509_free(xb);
	EVP_PKEY_free(ka);
	EVP_PKEY_free(kb);
	return (double)n / (t - t0);
}
#endif

/* ---- frames: seal and open beside memcpy and bare EVP ---- */

struct frame_fig {
	double memcpy_gbs, evp_gbs, seal_gbs, open_gbs;
};

static double rate_gbs(uint64_t bytes, double t0)
{
	return (double)bytes / (now_s() - t0) / 1e9;
}

/*
 * Each figure from batches of frames spread over 4 MiB (or more), so that
 * neither the clock nor a single hot buffer flatters small frames.
 */
static void frame_speeds(size_t len, struct frame_fig *f)
{
	size_t nb = P2P_MAX((size_t)4, (4u << 20) / len), stride = len + TP_OVERHEAD;
	uint8_t *pt = malloc(len), *ring = malloc(nb * stride), *m = malloc(nb * len);
	uint8_t key[32] = { 1 }, iv[12] = { 0 }, tag[16];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	double t0, seal_t = 0, open_t = 0;
	struct tp *i, *r;
	uint64_t n;
	int outl;

	if (!pt || !ring || !m || !ctx)
		die("out of memory");
	randombytes_buf(pt, len);
	engine_pair(&i, &r);
	for (n = 0, t0 = now_s(); now_s() - t0 < short_s / 4; n += nb * len)
		for (size_t k = 0; k < nb; k++)
			memcpy(m + k * len, pt, len);
	f->memcpy_gbs = rate_gbs(n, t0);
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) != 1)
		die("EVP");
	for (n = 0, t0 = now_s(); now_s() - t0 < short_s / 4; n += nb * len) {
		for (size_t k = 0; k < nb; k++) {
			iv[11]++;
			if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
			    EVP_EncryptUpdate(ctx, ring + k * stride, &outl, pt, (int)len) != 1 ||
			    EVP_EncryptFinal_ex(ctx, ring + k * stride + len, &outl) != 1 ||
			    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
				die("EVP");
		}
	}
	f->evp_gbs = rate_gbs(n, t0);
	/* A batch sealed, then the same batch opened: each timed on its own. */
	for (n = 0, t0 = now_s(); now_s() - t0 < short_s / 2; n += nb * len) {
		double a = now_s(), b;

		for (size_t k = 0; k < nb; k++)
			if (tp_seal(i, pt, len, ring + k * stride) < 0)
				die("seal");
		b = now_s();
		for (size_t k = 0; k < nb; k++)
			if (tp_open(r, ring + k * stride, stride) != (long)len)
				die("open");
		seal_t += b - a;
		open_t += now_s() - b;
	}
	f->seal_gbs = (double)n / seal_t / 1e9;
	f->open_gbs = (double)n / open_t / 1e9;
	tp_free(i);
	tp_free(r);
	EVP_CIPHER_CTX_free(ctx);
	free(pt);
	free(ring);
	free(m);
}

/* ---- whole connections per second through tp_conn ---- */

/*
 * A few clients at once connect, handshake and close; a connection counts
 * when the server's end is up (both identities verified both ways).
 */
struct hs_run {
	struct ev_loop *l;
	struct sockaddr_in addr;
	struct tp_conn_opts co;
	int inflight, srv_ups, failed;
	bool stop;
};

static void start_one(struct hs_run *h);

static void hs_up(void *arg, struct tp_conn *c)
{
	tp_conn_close(c); /* message 3 goes out first */
	(void)arg;
}

static void hs_down(void *arg, struct tp_conn *c, int reason)
{
	struct hs_run *h = arg;

	(void)c;
	(void)reason;
	h->failed++;
	h->inflight--;
	if (!h->stop)
		start_one(h);
}

static const struct tp_conn_cbs hs_cbs = { .up = hs_up, .down = hs_down };

static void srv_up(void *arg, struct tp_conn *c)
{
	struct hs_run *h = arg;

	h->srv_ups++;
	h->inflight--;
	tp_conn_abort(c);
	if (!h->stop)
		start_one(h);
}

static void srv_down(void *arg, struct tp_conn *c, int reason)
{
	struct hs_run *h = arg;

	(void)c;
	(void)reason;
	h->failed++;
	h->inflight--;
	if (!h->stop)
		start_one(h);
}

static const struct tp_conn_cbs srv_cbs = { .up = srv_up, .down = srv_down };

static void start_one(struct hs_run *h)
{
	struct tp_conn *c;

	if (tp_connect(h->l, (struct sockaddr *)&h->addr, sizeof(h->addr), peer_ident_id(idb),
		       &h->co, &hs_cbs, h, &c) < 0) {
		h->failed++;
		return;
	}
	h->inflight++;
}

static double tcp_handshakes(int *ret_failed)
{
	struct tp_conn_opts so = { .ident = idb };
	struct hs_run h = { .co = { .ident = ida } };
	struct tp_listener *ls;
	double t0, t;

	h.addr.sin_family = AF_INET;
	h.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ev_loop_new(256, &h.l) < 0 ||
	    tp_listen(h.l, (struct sockaddr *)&h.addr, sizeof(h.addr), &so, &srv_cbs, &h, &ls) < 0)
		die("listen");
	h.addr.sin_port = htons(tp_listener_port(ls));
	t0 = now_s();
	for (int k = 0; k < 4; k++) /* a few at once, so neither side waits on the other */
		start_one(&h);
	while ((t = now_s()) - t0 < short_s)
		if (ev_loop_run_once(h.l, 10) < 0)
			die("loop");
	h.stop = true;
	for (int k = 0; k < 300 && (h.inflight > 0 || ev_loop_inflight(h.l) > 0); k++)
		if (ev_loop_run_once(h.l, 10) < 0)
			die("loop");
	tp_listener_free(ls);
	for (int k = 0; k < 300 && ev_loop_inflight(h.l) > 0; k++)
		if (ev_loop_run_once(h.l, 10) < 0)
			die("loop");
	ev_loop_free(h.l);
	*ret_failed = h.failed;
	return (double)h.srv_ups / (t - t0);
}

/* ---- one connection over loopback: receiver and sender on their own threads ---- */

struct rx {
	struct ev_loop *loop;
	struct tp_listener *ls;
	uint16_t port;
	uint64_t bytes, t_first, t_last;
	double cpu0, cpu;
	volatile bool ready, done;
};

static void rx_frame(void *arg, struct tp_conn *c, uint8_t *data, size_t len)
{
	struct rx *r = arg;

	(void)c;
	(void)data;
	if (!r->bytes) {
		r->t_first = tm_mono_ns();
		r->cpu0 = thread_cpu_s();
	}
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
	struct tp_conn_cbs cbs = { .frame = rx_frame, .down = rx_down };
	struct sockaddr_in a = { .sin_family = AF_INET };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ev_loop_new(256, &r->loop) < 0 ||
	    tp_listen(r->loop, (struct sockaddr *)&a, sizeof(a), &o, &cbs, r, &r->ls) < 0)
		die("listen");
	r->port = tp_listener_port(r->ls);
	r->ready = true;
	while (!r->done)
		if (ev_loop_run_once(r->loop, 50) < 0)
			die("loop");
	r->cpu = thread_cpu_s() - r->cpu0;
	tp_listener_free(r->ls);
	for (int i = 0; i < 100 && ev_loop_inflight(r->loop) > 0; i++)
		if (ev_loop_run_once(r->loop, 10) < 0)
			break;
	ev_loop_free(r->loop);
	return NULL;
}

struct tx {
	uint8_t *frame;
	bool up, down;
};

/* Keep the queue full: called when up and whenever it has room again. */
static void tx_pump(void *arg, struct tp_conn *c)
{
	struct tx *t = arg;

	t->up = true;
	while (tp_conn_send(c, t->frame, frame_len) == 0)
		;
}

static void tx_down(void *arg, struct tp_conn *c, int reason)
{
	(void)c;
	fprintf(stderr, "bench_tp: sender: connection down: %s\n", strerror(-reason));
	((struct tx *)arg)->down = true;
}

static struct run tp_run(void)
{
	struct rx r = { 0 };
	struct tx t = { 0 };
	struct tp_conn_opts o = { .ident = ida, .sendq_max = sendq };
	struct tp_conn_cbs cbs = { .up = tx_pump, .writable = tx_pump, .down = tx_down };
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct ev_loop *l;
	struct tp_conn *c;
	struct run res = { 0 };
	pthread_t th;
	double t0, cpu0 = 0, cpu = 0;
	uint64_t sent0 = 0;

	if (!(t.frame = malloc(frame_len)))
		die("out of memory");
	randombytes_buf(t.frame, frame_len);
	if (pthread_create(&th, NULL, rx_main, &r) != 0)
		die("thread");
	for (int i = 0; i < 5000 && !r.ready; i++)
		usleep(1000);
	if (!r.ready)
		die("receiver did not start");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(r.port);
	if (ev_loop_new(256, &l) < 0 || tp_connect(l, (struct sockaddr *)&a, sizeof(a),
						   peer_ident_id(idb), &o, &cbs, &t, &c) < 0)
		die("connect");
	t0 = now_s();
	while (!t.down && !t.up && now_s() - t0 < 5)
		if (ev_loop_run_once(l, 50) < 0)
			break;
	t0 = now_s();
	cpu0 = thread_cpu_s();
	while (!t.down && now_s() - t0 < seconds)
		if (ev_loop_run_once(l, 50) < 0)
			break;
	if (!t.down) {
		struct tp_stats st;

		tp_conn_stats(c, &st);
		sent0 = st.bytes_out;
		cpu = thread_cpu_s() - cpu0;
		tp_conn_close(c);
	}
	for (int i = 0; i < 100 && ev_loop_inflight(l) > 0; i++)
		if (ev_loop_run_once(l, 10) < 0)
			break;
	ev_loop_free(l);
	pthread_join(th, NULL);
	free(t.frame);
	if (r.t_last <= r.t_first || !sent0)
		return res;
	res.gbits = (double)r.bytes * 8 / ((double)(r.t_last - r.t_first) / 1e9) / 1e9;
	res.tx_ns_b = cpu * 1e9 / (double)sent0;
	res.rx_ns_b = r.cpu * 1e9 / (double)r.bytes;
	return res;
}

/* ---- iperf3, one stream, the same run ---- */

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t sl = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &sl) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* The number after "@key": in @json, from @from on; 0 if absent. */
static double json_num(const char *from, const char *key)
{
	const char *at = strstr(from, key);

	return at && (at = strchr(at, ':')) ? atof(at + 1) : 0;
}

/* One iperf3 run (server -1 and client -J): rate and CPU per byte, or zeros. */
static struct run iperf3_run(void)
{
	char port[16], secs[16], cmd[160], *buf, *at;
	char *sargv[] = { "iperf3", "-s", "-1", "-p", port, NULL };
	posix_spawn_file_actions_t fa;
	size_t n = 0, cap = 1 << 20;
	struct run res = { 0 };
	double gbits = 0;
	pid_t srv;
	int p = free_port(), status;

	if (p < 0 || !(buf = malloc(cap)))
		return res;
	snprintf(port, sizeof(port), "%d", p);
	snprintf(secs, sizeof(secs), "%d", seconds < 1 ? 1 : (int)(seconds + 0.5));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&srv, "iperf3", &fa, NULL, sargv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		free(buf);
		return res;
	}
	posix_spawn_file_actions_destroy(&fa);
	/* The server needs a moment to listen; the client retries until it does
	 * (probing the port ourselves would use up the server's one client). */
	for (int tries = 0; tries < 20 && gbits == 0; tries++) {
		FILE *f;

		usleep(100 * 1000);
		snprintf(cmd, sizeof(cmd), "iperf3 -c 127.0.0.1 -p %s -t %s -J 2>/dev/null", port,
			 secs);
		if (!(f = popen(cmd, "r")))
			break;
		n = fread(buf, 1, cap - 1, f);
		pclose(f);
		buf[n] = '\0';
		if (strstr(buf, "unable to connect"))
			continue;
		if ((at = strstr(buf, "\"sum_received\""))) {
			double secs_rx = json_num(at, "\"seconds\""),
			       bytes = json_num(at, "\"bytes\"");

			gbits = json_num(at, "\"bits_per_second\"") / 1e9;
			if (bytes > 0 && (at = strstr(buf, "\"cpu_utilization_percent\""))) {
				res.tx_ns_b =
				    json_num(at, "\"host_total\"") / 100 * secs_rx * 1e9 / bytes;
				res.rx_ns_b =
				    json_num(at, "\"remote_total\"") / 100 * secs_rx * 1e9 / bytes;
			}
		}
		break;
	}
	for (int k = 0; k < 50 && waitpid(srv, &status, WNOHANG) == 0; k++)
		usleep(100 * 1000);
	if (waitpid(srv, &status, WNOHANG) == 0) {
		kill(srv, SIGKILL);
		waitpid(srv, &status, 0);
	}
	free(buf);
	res.gbits = gbits;
	return res;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_tp [--quick] [--seconds S] [--rounds N] [--frame-kib K]\n"
		"                [--sendq-kib K] [--no-iperf] [--only stream|handshake|frames]\n");
	exit(2);
}

static bool want(const char *part)
{
	return !only || !strcmp(only, part);
}

static void part_stream(void)
{
	struct run ip[16], tp[16];
	double v[5][16], m[5];

	/* Rounds alternate, so both see the same share of the machine. */
	for (int k = 0; k < rounds; k++) {
		ip[k] = use_iperf ? iperf3_run() : (struct run){ 0 };
		tp[k] = tp_run();
		fprintf(stderr,
			"round %d: iperf3 %.1f Gbit/s (CPU %.0f + %.0f ms/GB), "
			"p2pfs %.1f Gbit/s (CPU %.0f + %.0f ms/GB)\n",
			k + 1, ip[k].gbits, ip[k].tx_ns_b * 1e3, ip[k].rx_ns_b * 1e3, tp[k].gbits,
			tp[k].tx_ns_b * 1e3, tp[k].rx_ns_b * 1e3);
		v[0][k] = ip[k].gbits;
		v[1][k] = tp[k].gbits;
		v[2][k] = ip[k].gbits > 0 ? tp[k].gbits / ip[k].gbits : 0;
		v[3][k] = ip[k].tx_ns_b + ip[k].rx_ns_b;
		v[4][k] = tp[k].tx_ns_b + tp[k].rx_ns_b;
	}
	for (int j = 0; j < 5; j++)
		m[j] = median(v[j], rounds);
	if (use_iperf && m[0] > 0) {
		printf("| one connection, loopback, %zu KiB frames (median of %d) | iperf3 %.1f "
		       "Gbit/s | %.1f Gbit/s | %.2f (target >= 0.50: %s) |\n",
		       frame_len >> 10, rounds, m[0], m[1], m[2], m[2] >= 0.5 ? "met" : "NOT met");
		printf(
		    "| CPU per GB moved, sender + receiver (median) | iperf3 %.0f ms | %.0f ms | "
		    "%.2f |\n",
		    m[3] * 1e3, m[4] * 1e3, m[3] > 0 ? m[4] / m[3] : 0);
	} else {
		printf("| one connection, loopback, %zu KiB frames (median of %d) | iperf3 not run "
		       "| %.1f Gbit/s | - |\n",
		       frame_len >> 10, rounds, m[1]);
		printf("| CPU per GB moved, sender + receiver (median) | - | %.0f ms | - |\n",
		       m[4] * 1e3);
	}
}

static bool part_handshake(void)
{
	double hs_engine, hs_tcp, us[4], sum;
	int failed;

	hs_engine = engine_handshakes();
#ifdef BENCH_TP_TLS
	{
		double tls = tls_handshakes();

		printf("| handshakes/s, both ends on one core | TLS 1.3, mutual Ed25519 + X25519 "
		       "(OpenSSL) %.0f /s | %.0f /s | %.2f |\n",
		       tls, hs_engine, hs_engine / tls);
	}
#endif
	crypto_box_keypair(prim_epk, prim_sk);
	us[0] = per_op_us(op_x25519_keygen);
	us[1] = per_op_us(op_x25519_dh);
	us[2] = per_op_us(op_ed25519_sign);
	us[3] = per_op_us(op_ed25519_verify);
	sum = 2 * (us[0] + us[1] + us[2] + us[3]);
	hs_tcp = tcp_handshakes(&failed);
	printf("| time per handshake, both ends | its primitives alone: %.0f us | %.0f us | "
	       "%.2f |\n",
	       sum, 1e6 / hs_engine, (1e6 / hs_engine) / sum);
	printf("| TCP connections/s through tp_conn, both ends on one core | engine alone %.0f "
	       "/s | %.0f /s%s | %.2f |\n",
	       hs_engine, hs_tcp, failed ? " (some FAILED)" : "", hs_tcp / hs_engine);
	printf("| primitives (libsodium), us | X25519 keygen %.0f, DH %.0f; Ed25519 sign %.0f, "
	       "verify %.0f | - | - |\n",
	       us[0], us[1], us[2], us[3]);
	return failed == 0;
}

static void part_frames(void)
{
	static const size_t sizes[] = { 1 << 20, 64 << 10, 1 << 10 };

	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		const char *unit = sizes[k] >= (1 << 20) ? "MiB" : "KiB";
		size_t n = sizes[k] >= (1 << 20) ? sizes[k] >> 20 : sizes[k] >> 10;
		struct frame_fig f;

		frame_speeds(sizes[k], &f);
		printf(
		    "| seal, %zu %s frames | EVP AES-256-GCM %.2f GB/s (memcpy %.1f) | %.2f GB/s "
		    "| %.2f |\n",
		    n, unit, f.evp_gbs, f.memcpy_gbs, f.seal_gbs, f.seal_gbs / f.evp_gbs);
		printf("| open, %zu %s frames | EVP AES-256-GCM %.2f GB/s | %.2f GB/s | %.2f |\n",
		       n, unit, f.evp_gbs, f.open_gbs, f.open_gbs / f.evp_gbs);
	}
}

int main(int argc, char **argv)
{
	bool ok = true;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			seconds = 1;
			short_s = 0.25;
			rounds = 1;
		} else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			seconds = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			rounds = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--frame-kib") && i + 1 < argc) {
			frame_len = (size_t)atoi(argv[++i]) << 10;
		} else if (!strcmp(argv[i], "--sendq-kib") && i + 1 < argc) {
			sendq = (size_t)atoi(argv[++i]) << 10;
		} else if (!strcmp(argv[i], "--no-iperf")) {
			use_iperf = false;
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			only = argv[++i];
		} else {
			usage();
		}
	}
	if (rounds < 1 || rounds > 16 || seconds <= 0 || frame_len < 1 ||
	    frame_len > TP_FRAME_MAX ||
	    (only && strcmp(only, "stream") && strcmp(only, "handshake") && strcmp(only, "frames")))
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0 || peer_ident_generate(0, &ida) < 0 ||
	    peer_ident_generate(0, &idb) < 0)
		die("identities");
	printf("\np2pfs transport beside its baselines (%s)\n\n", only ? only : "all");
	printf("| measure | baseline | p2pfs | ratio |\n|---|---|---|---|\n");
	fflush(stdout);
	if (want("stream"))
		part_stream();
	if (want("handshake"))
		ok = part_handshake();
	if (want("frames"))
		part_frames();
	peer_ident_free(ida);
	peer_ident_free(idb);
	return ok ? 0 : 1;
}
