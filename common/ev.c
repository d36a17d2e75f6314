// SPDX-License-Identifier: MIT
/*
 * common/ev.c - the io_uring backend of the event loop (see ev.h).
 *
 * The ring is created with SINGLE_ISSUER and DEFER_TASKRUN when the kernel
 * has them (completion work then runs only when this thread waits, which
 * keeps the loop cache-hot and avoids inter-processor interrupts); older
 * kernels get a plain ring.
 *
 * Cross-thread posts use an eventfd that the loop keeps a read queued on, so
 * an idle loop sleeps in one io_uring_enter with no polling.
 */
#define LOG_SUBSYS "ev"
#include "common/ev.h"
#include "common/log.h"
#include "common/tm.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EV_BATCH 128

struct ev_loop {
	struct io_uring ring;
	uint64_t now;
	bool stop;
	unsigned inflight;
	unsigned queued; /* SQEs prepared but not yet submitted */

	struct ev_timer **heap;
	uint32_t nheap;
	uint32_t heap_cap;

	int efd;
	uint64_t efd_val;
	struct ev_op efd_op;
	pthread_mutex_t post_lock;
	struct ev_job *post_head; /* LIFO under post_lock; reversed when drained */
	bool post_armed;
};

static void on_eventfd(struct ev_op *op, int32_t res);

int ev_loop_new(unsigned depth, struct ev_loop **ret_loop)
{
	struct io_uring_params p;
	struct ev_loop *l;
	int rc;

	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CLAMP;
	rc = io_uring_queue_init_params(depth, &l->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CLAMP;
		rc = io_uring_queue_init_params(depth, &l->ring, &p);
	}
	if (rc < 0)
		goto err_free;
	l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->efd < 0) {
		rc = -errno;
		goto err_ring;
	}
	pthread_mutex_init(&l->post_lock, NULL);
	l->now = tm_mono_ms();
	ev_op_init(&l->efd_op, on_eventfd);
	if ((rc = ev_read(l, &l->efd_op, l->efd, &l->efd_val, sizeof(l->efd_val), 0)) < 0)
		goto err_efd;
	*ret_loop = l;
	return 0;
err_efd:
	close(l->efd);
	pthread_mutex_destroy(&l->post_lock);
err_ring:
	io_uring_queue_exit(&l->ring);
err_free:
	free(l);
	return rc;
}

void ev_loop_free(struct ev_loop *l)
{
	if (!l)
		return;
	io_uring_queue_exit(&l->ring);
	close(l->efd);
	pthread_mutex_destroy(&l->post_lock);
	free(l->heap);
	free(l);
}

uint64_t ev_now(const struct ev_loop *l)
{
	return l->now;
}

unsigned ev_loop_inflight(const struct ev_loop *l)
{
	/* The eventfd read is the loop's own and always queued. */
	return l->inflight - 1;
}

void ev_loop_stop(struct ev_loop *l)
{
	l->stop = true;
}

bool ev_loop_stopped(const struct ev_loop *l)
{
	return l->stop;
}

void ev_flush(struct ev_loop *l)
{
	if (l->queued) {
		int rc = io_uring_submit(&l->ring);

		if (rc >= 0)
			l->queued = 0;
	}
}

static struct io_uring_sqe *get_sqe(struct ev_loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (!sqe) {
		/* Ring full: submit what is queued to make room. */
		if (io_uring_submit(&l->ring) >= 0)
			l->queued = 0;
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

static int queue(struct ev_loop *l, struct io_uring_sqe *sqe, struct ev_op *op)
{
	io_uring_sqe_set_data(sqe, op);
	l->queued++;
	if (op)
		l->inflight++;
	return 0;
}

#define PREP_OR_BUSY(l, sqe)                   \
	struct io_uring_sqe *sqe = get_sqe(l); \
	if (!sqe)                              \
	return -EBUSY

int ev_read(struct ev_loop *l, struct ev_op *op, int fd, void *buf, size_t len, uint64_t off)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	return queue(l, sqe, op);
}

int ev_write(struct ev_loop *l, struct ev_op *op, int fd, const void *buf, size_t len, uint64_t off)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
	return queue(l, sqe, op);
}

int ev_readv(struct ev_loop *l, struct ev_op *op, int fd, const struct iovec *iov, unsigned n,
	     uint64_t off)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_readv(sqe, fd, iov, n, off);
	return queue(l, sqe, op);
}

int ev_writev(struct ev_loop *l, struct ev_op *op, int fd, const struct iovec *iov, unsigned n,
	      uint64_t off)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_writev(sqe, fd, iov, n, off);
	return queue(l, sqe, op);
}

int ev_fsync(struct ev_loop *l, struct ev_op *op, int fd, bool datasync)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
	return queue(l, sqe, op);
}

int ev_fallocate(struct ev_loop *l, struct ev_op *op, int fd, int mode, uint64_t off, uint64_t len)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_fallocate(sqe, fd, mode, (off_t)off, (off_t)len);
	return queue(l, sqe, op);
}

int ev_recv(struct ev_loop *l, struct ev_op *op, int fd, void *buf, size_t len, int flags)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_recv(sqe, fd, buf, len, flags);
	return queue(l, sqe, op);
}

int ev_send(struct ev_loop *l, struct ev_op *op, int fd, const void *buf, size_t len, int flags)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_send(sqe, fd, buf, len, flags);
	return queue(l, sqe, op);
}

int ev_recvmsg(struct ev_loop *l, struct ev_op *op, int fd, struct msghdr *msg, int flags)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_recvmsg(sqe, fd, msg, (unsigned)flags);
	return queue(l, sqe, op);
}

int ev_sendmsg(struct ev_loop *l, struct ev_op *op, int fd, const struct msghdr *msg, int flags)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_sendmsg(sqe, fd, msg, (unsigned)flags);
	return queue(l, sqe, op);
}

int ev_accept(struct ev_loop *l, struct ev_op *op, int fd, struct sockaddr *addr,
	      socklen_t *addrlen)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_accept(sqe, fd, addr, addrlen, SOCK_CLOEXEC | SOCK_NONBLOCK);
	return queue(l, sqe, op);
}

int ev_connect(struct ev_loop *l, struct ev_op *op, int fd, const struct sockaddr *addr,
	       socklen_t addrlen)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_connect(sqe, fd, addr, addrlen);
	return queue(l, sqe, op);
}

int ev_poll(struct ev_loop *l, struct ev_op *op, int fd, unsigned mask)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_poll_add(sqe, fd, mask);
	return queue(l, sqe, op);
}

int ev_cancel(struct ev_loop *l, struct ev_op *target)
{
	PREP_OR_BUSY(l, sqe);
	io_uring_prep_cancel(sqe, target, 0);
	/* The cancel request's own completion carries no op (user_data NULL). */
	return queue(l, sqe, NULL);
}

/* ---- timers: binary min-heap on deadline ---- */

static void heap_set(struct ev_loop *l, uint32_t i, struct ev_timer *t)
{
	l->heap[i] = t;
	t->slot = i + 1;
}

static void heap_up(struct ev_loop *l, uint32_t i)
{
	struct ev_timer *t = l->heap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (l->heap[parent]->deadline <= t->deadline)
			break;
		heap_set(l, i, l->heap[parent]);
		i = parent;
	}
	heap_set(l, i, t);
}

static void heap_down(struct ev_loop *l, uint32_t i)
{
	struct ev_timer *t = l->heap[i];

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && l->heap[c + 1]->deadline < l->heap[c]->deadline)
			c++;
		if (t->deadline <= l->heap[c]->deadline)
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

void ev_timer_stop(struct ev_loop *l, struct ev_timer *t)
{
	uint32_t i;
	struct ev_timer *last;

	if (!t->slot)
		return;
	i = t->slot - 1;
	t->slot = 0;
	last = l->heap[--l->nheap];
	if (i == l->nheap)
		return;
	heap_set(l, i, last);
	heap_down(l, i);
	heap_up(l, last->slot - 1);
}

int ev_timer_start(struct ev_loop *l, struct ev_timer *t, uint64_t after_ms)
{
	ev_timer_stop(l, t);
	if (l->nheap == l->heap_cap) {
		uint32_t cap = l->heap_cap ? 2 * l->heap_cap : 64;
		struct ev_timer **h = realloc(l->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->heap_cap = cap;
	}
	/* Refresh "now" so a timer armed after a long callback is not early. */
	l->now = tm_mono_ms();
	t->deadline = l->now + after_ms;
	l->heap[l->nheap] = t;
	t->slot = ++l->nheap;
	heap_up(l, l->nheap - 1);
	return 0;
}

static void run_timers(struct ev_loop *l)
{
	while (l->nheap && l->heap[0]->deadline <= l->now) {
		struct ev_timer *t = l->heap[0];

		ev_timer_stop(l, t);
		t->cb(t);
	}
}

/* ---- cross-thread posts ---- */

void ev_post(struct ev_loop *l, struct ev_job *job)
{
	bool wake;
	uint64_t one = 1;

	pthread_mutex_lock(&l->post_lock);
	job->next = l->post_head;
	l->post_head = job;
	wake = !l->post_armed;
	l->post_armed = true;
	pthread_mutex_unlock(&l->post_lock);
	if (wake)
		(void)!write(l->efd, &one, sizeof(one));
}

static void run_posts(struct ev_loop *l)
{
	struct ev_job *list, *rev = NULL;

	pthread_mutex_lock(&l->post_lock);
	list = l->post_head;
	l->post_head = NULL;
	l->post_armed = false;
	pthread_mutex_unlock(&l->post_lock);
	while (list) { /* restore posting order */
		struct ev_job *next = list->next;

		list->next = rev;
		rev = list;
		list = next;
	}
	while (rev) {
		struct ev_job *next = rev->next;

		rev->fn(rev);
		rev = next;
	}
}

static void on_eventfd(struct ev_op *op, int32_t res)
{
	struct ev_loop *l = container_of(op, struct ev_loop, efd_op);

	(void)res; /* -EAGAIN on a spurious wake is harmless */
	run_posts(l);
	if (ev_read(l, &l->efd_op, l->efd, &l->efd_val, sizeof(l->efd_val), 0) < 0)
		log_error("cannot re-arm the post eventfd; cross-thread posts will stall");
}

/* ---- the loop ---- */

int ev_loop_run_once(struct ev_loop *l, int64_t timeout_ms)
{
	struct io_uring_cqe *cqes[EV_BATCH];
	struct {
		struct ev_op *op;
		int32_t res;
		uint32_t flags;
	} done[EV_BATCH];
	struct __kernel_timespec ts, *tsp = NULL;
	struct io_uring_cqe *cqe;
	unsigned n;
	int rc;

	if (l->nheap) {
		int64_t until =
		    (int64_t)(l->heap[0]->deadline - P2P_MIN(l->heap[0]->deadline, l->now));

		if (timeout_ms < 0 || until < timeout_ms)
			timeout_ms = until;
	}
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (timeout_ms % 1000) * 1000000;
		tsp = &ts;
	}
	rc = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, tsp, NULL);
	if (rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EBUSY)
		l->queued = 0;
	else if (rc < 0)
		return rc;
	l->now = tm_mono_ms();
	do {
		n = io_uring_peek_batch_cqe(&l->ring, cqes, EV_BATCH);
		for (unsigned i = 0; i < n; i++) {
			done[i].op = io_uring_cqe_get_data(cqes[i]);
			done[i].res = cqes[i]->res;
			done[i].flags = cqes[i]->flags;
		}
		io_uring_cq_advance(&l->ring, n);
		for (unsigned i = 0; i < n; i++) {
			struct ev_op *op = done[i].op;

			if (!op)
				continue;
			if (!(done[i].flags & IORING_CQE_F_MORE))
				l->inflight--;
			op->cqe_flags = done[i].flags;
			op->cb(op, done[i].res);
		}
	} while (n == EV_BATCH);
	run_timers(l);
	return 0;
}

int ev_loop_run(struct ev_loop *l)
{
	int rc;

	l->stop = false;
	while (!l->stop)
		if ((rc = ev_loop_run_once(l, -1)) < 0) {
			log_error("io_uring wait failed: %s", strerror(-rc));
			return rc;
		}
	ev_flush(l);
	return 0;
}

/* ---- worker pool ---- */

struct ev_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ev_work *head, *tail;
	bool stop;
	unsigned nthreads;
	pthread_t threads[];
};

static void work_done(struct ev_job *job)
{
	struct ev_work *w = container_of(job, struct ev_work, job);

	w->done(w);
}

static void *pool_main(void *arg)
{
	struct ev_pool *p = arg;

	for (;;) {
		struct ev_work *w;
		ev_work_fn *done;

		pthread_mutex_lock(&p->lock);
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (!p->head) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		w = p->head;
		p->head = w->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		done = w->done; /* without done, run() may free w */
		w->run(w);
		if (done) {
			w->job.fn = work_done;
			ev_post(w->loop, &w->job);
		}
	}
}

int ev_pool_new(unsigned nthreads, struct ev_pool **ret_pool)
{
	struct ev_pool *p;
	int rc;

	if (nthreads == 0)
		nthreads = 1;
	if (!(p = calloc(1, sizeof(*p) + nthreads * sizeof(pthread_t))))
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (unsigned i = 0; i < nthreads; i++) {
		if ((rc = pthread_create(&p->threads[i], NULL, pool_main, p)) != 0) {
			p->nthreads = i;
			ev_pool_free(p);
			return -rc;
		}
		p->nthreads = i + 1;
	}
	*ret_pool = p;
	return 0;
}

void ev_pool_free(struct ev_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void ev_work_submit(struct ev_pool *p, struct ev_loop *loop, struct ev_work *w, ev_work_fn *run,
		    ev_work_fn *done)
{
	w->loop = loop;
	w->run = run;
	w->done = done;
	w->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = w;
	else
		p->head = w;
	p->tail = w;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}
