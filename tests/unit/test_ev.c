// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_ev.c - the io_uring loop: file and socket operations,
 * timer order, cancellation, cross-thread posts and the worker pool.
 */
#include "common/ev.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

struct io_case {
	struct ev_op op;
	int32_t res;
	int calls;
};

static void on_io(struct ev_op *op, int32_t res)
{
	struct io_case *c = container_of(op, struct io_case, op);

	c->res = res;
	c->calls++;
}

static void run_until(struct ev_loop *l, const int *flag, int want)
{
	for (int i = 0; i < 1000 && *flag < want; i++)
		T_ASSERT_OK(ev_loop_run_once(l, 100));
	T_ASSERT(*flag >= want);
}

static void file_write_read_fsync(void)
{
	struct ev_loop *l;
	struct io_case w = { 0 }, r = { 0 }, s = { 0 };
	char *dir = t_tmpdir("ev"), path[512];
	uint8_t out[8192], in[8192];
	int fd;

	T_ASSERT_OK(ev_loop_new(64, &l));
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	T_ASSERT(fd >= 0);
	t_rand_fill(out, sizeof(out));
	ev_op_init(&w.op, on_io);
	T_ASSERT_OK(ev_write(l, &w.op, fd, out, sizeof(out), 4096));
	run_until(l, &w.calls, 1);
	T_ASSERT_EQ(w.res, sizeof(out));
	ev_op_init(&s.op, on_io);
	T_ASSERT_OK(ev_fsync(l, &s.op, fd, true));
	run_until(l, &s.calls, 1);
	T_ASSERT_EQ(s.res, 0);
	ev_op_init(&r.op, on_io);
	T_ASSERT_OK(ev_read(l, &r.op, fd, in, sizeof(in), 4096));
	run_until(l, &r.calls, 1);
	T_ASSERT_EQ(r.res, sizeof(in));
	T_ASSERT_MEM_EQ(in, out, sizeof(in));
	T_ASSERT_EQ(ev_loop_inflight(l), 0);
	close(fd);
	ev_loop_free(l);
	t_tmpdir_remove(dir);
	free(dir);
}

static int fired[8], nfired;

static void on_timer(struct ev_timer *t)
{
	(void)t;
	fired[nfired++] = (int)(t->deadline & 0xff);
}

static void timers_fire_in_deadline_order(void)
{
	struct ev_loop *l;
	struct ev_timer t[5];
	static const int after[5] = { 50, 10, 30, 20, 40 };
	uint64_t start;

	T_ASSERT_OK(ev_loop_new(8, &l));
	nfired = 0;
	for (int i = 0; i < 5; i++) {
		ev_timer_init(&t[i], on_timer);
		T_ASSERT_OK(ev_timer_start(l, &t[i], (uint64_t)after[i]));
	}
	ev_timer_stop(l, &t[4]); /* the 40 ms one never fires */
	T_ASSERT(!ev_timer_armed(&t[4]));
	start = ev_now(l);
	while (nfired < 4 && ev_now(l) - start < 2000)
		T_ASSERT_OK(ev_loop_run_once(l, -1));
	T_ASSERT_EQ(nfired, 4);
	/* fired[] holds the low byte of each deadline: they must be increasing in time. */
	T_ASSERT(t[1].deadline <= t[3].deadline && t[3].deadline <= t[2].deadline &&
		 t[2].deadline <= t[0].deadline);
	ev_loop_free(l);
}

static void cancel_pending_recv(void)
{
	struct ev_loop *l;
	struct io_case rc = { 0 };
	int sv[2];
	char buf[16];

	T_ASSERT_OK(ev_loop_new(8, &l));
	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ev_op_init(&rc.op, on_io);
	T_ASSERT_OK(ev_recv(l, &rc.op, sv[0], buf, sizeof(buf), 0));
	T_ASSERT_OK(ev_loop_run_once(l, 10));
	T_ASSERT_EQ(rc.calls, 0);
	T_ASSERT_OK(ev_cancel(l, &rc.op));
	run_until(l, &rc.calls, 1);
	T_ASSERT_EQ(rc.res, -ECANCELED);
	T_ASSERT_EQ(ev_loop_inflight(l), 0);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(l);
}

static void socket_send_recv(void)
{
	struct ev_loop *l;
	struct io_case s = { 0 }, r = { 0 };
	int sv[2];
	char buf[16];

	T_ASSERT_OK(ev_loop_new(8, &l));
	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ev_op_init(&r.op, on_io);
	ev_op_init(&s.op, on_io);
	T_ASSERT_OK(ev_recv(l, &r.op, sv[1], buf, sizeof(buf), 0));
	T_ASSERT_OK(ev_send(l, &s.op, sv[0], "hello", 5, 0));
	run_until(l, &r.calls, 1);
	T_ASSERT_EQ(r.res, 5);
	T_ASSERT_MEM_EQ(buf, "hello", 5);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(l);
}

struct post_case {
	struct ev_job job;
	struct ev_loop *loop;
	int *counter;
};

static void on_post(struct ev_job *job)
{
	struct post_case *p = container_of(job, struct post_case, job);

	(*p->counter)++;
}

static void *poster(void *arg)
{
	struct post_case *p = arg;

	for (int i = 0; i < 100; i++) {
		p[i].job.fn = on_post;
		ev_post(p[i].loop, &p[i].job);
	}
	return NULL;
}

static void post_from_other_thread(void)
{
	struct ev_loop *l;
	static struct post_case p[100];
	pthread_t th;
	int counter = 0;

	T_ASSERT_OK(ev_loop_new(8, &l));
	for (int i = 0; i < 100; i++) {
		p[i].loop = l;
		p[i].counter = &counter;
	}
	T_ASSERT(pthread_create(&th, NULL, poster, p) == 0);
	run_until(l, &counter, 100);
	pthread_join(th, NULL);
	T_ASSERT_EQ(counter, 100);
	ev_loop_free(l);
}

struct work_case {
	struct ev_work w;
	uint64_t in, out;
	int *done;
};

static void work_run(struct ev_work *w)
{
	struct work_case *c = container_of(w, struct work_case, w);

	c->out = c->in * c->in;
}

static void work_done(struct ev_work *w)
{
	struct work_case *c = container_of(w, struct work_case, w);

	T_ASSERT_EQ(c->out, c->in * c->in);
	(*c->done)++;
}

static void pool_runs_work_and_returns_to_loop(void)
{
	struct ev_loop *l;
	struct ev_pool *p;
	static struct work_case c[64];
	int done = 0;

	T_ASSERT_OK(ev_loop_new(8, &l));
	T_ASSERT_OK(ev_pool_new(3, &p));
	for (int i = 0; i < 64; i++) {
		c[i].in = (uint64_t)i + 7;
		c[i].done = &done;
		ev_work_submit(p, l, &c[i].w, work_run, work_done);
	}
	run_until(l, &done, 64);
	ev_pool_free(p);
	ev_loop_free(l);
}

T_MAIN(T_CASE(file_write_read_fsync), T_CASE(timers_fire_in_deadline_order),
       T_CASE(cancel_pending_recv), T_CASE(socket_send_recv), T_CASE(post_from_other_thread),
       T_CASE(pool_runs_work_and_returns_to_loop))
