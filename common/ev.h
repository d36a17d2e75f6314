/* SPDX-License-Identifier: MIT */
/*
 * common/ev.h - the event loop: one io_uring per thread, timers, cross-thread
 * posts and a worker pool.
 *
 * Only ev.c knows the loop is io_uring; callers see operations that complete
 * through a callback. An operation in flight is a struct ev_op embedded in its
 * owner; the callback recovers the owner with container_of().
 *
 * Invariants:
 *  1. Every ev_* call on a loop is made on the thread that runs that loop,
 *     except ev_post() and ev_work_submit(), which any thread may call.
 *  2. An ev_op's memory (and every buffer it references) stays valid until
 *     its callback has run. To stop early, call ev_cancel() and wait for the
 *     callback (res = -ECANCELED); free the owner only when its in-flight
 *     count reaches zero.
 *  3. Completions are gathered in a batch and the CQ is advanced before any
 *     callback runs, so a callback may queue new operations freely.
 *  4. Nothing blocks the loop: slow work goes to a struct ev_pool and comes
 *     back through ev_post().
 */
#ifndef P2P_COMMON_EV_H
#define P2P_COMMON_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/util.h"

struct ev_loop;
struct ev_op;

/* @res is the syscall result: >= 0 on success, -errno on failure. */
typedef void ev_op_fn(struct ev_op *op, int32_t res);

struct ev_op {
	ev_op_fn *cb;
	uint32_t cqe_flags; /* flags of the completion being delivered */
};

static inline void ev_op_init(struct ev_op *op, ev_op_fn *cb)
{
	op->cb = cb;
	op->cqe_flags = 0;
}

/* Create a loop with a ring of @depth entries (rounded up by the kernel). */
P2P_MUST_CHECK int ev_loop_new(unsigned depth, struct ev_loop **ret_loop);
/* Frees the loop; callers must have no operations in flight. NULL is a no-op. */
void ev_loop_free(struct ev_loop *l);
/* Run until ev_loop_stop(). Returns 0, or -errno if the ring failed. */
P2P_MUST_CHECK int ev_loop_run(struct ev_loop *l);
/*
 * Run one iteration: wait up to @timeout_ms (-1: until the next timer or
 * completion) and dispatch what completed. For tools and tests that drive a
 * loop by hand.
 */
P2P_MUST_CHECK int ev_loop_run_once(struct ev_loop *l, int64_t timeout_ms);
void ev_loop_stop(struct ev_loop *l);
bool ev_loop_stopped(const struct ev_loop *l);
/* Monotonic milliseconds, refreshed once per iteration. */
uint64_t ev_now(const struct ev_loop *l);
/* Number of operations submitted and not yet completed. */
unsigned ev_loop_inflight(const struct ev_loop *l);

/*
 * Operations. Each queues one request; @op->cb runs once with its result.
 * They return 0, or -EBUSY if the ring cannot take another request.
 * Requests are submitted at the end of the current iteration (or at once
 * when the ring is full).
 */
P2P_MUST_CHECK int ev_read(struct ev_loop *l, struct ev_op *op, int fd, void *buf, size_t len,
			   uint64_t off);
P2P_MUST_CHECK int ev_write(struct ev_loop *l, struct ev_op *op, int fd, const void *buf,
			    size_t len, uint64_t off);
P2P_MUST_CHECK int ev_readv(struct ev_loop *l, struct ev_op *op, int fd, const struct iovec *iov,
			    unsigned n, uint64_t off);
P2P_MUST_CHECK int ev_writev(struct ev_loop *l, struct ev_op *op, int fd, const struct iovec *iov,
			     unsigned n, uint64_t off);
P2P_MUST_CHECK int ev_fsync(struct ev_loop *l, struct ev_op *op, int fd, bool datasync);
P2P_MUST_CHECK int ev_fallocate(struct ev_loop *l, struct ev_op *op, int fd, int mode, uint64_t off,
				uint64_t len);
P2P_MUST_CHECK int ev_recv(struct ev_loop *l, struct ev_op *op, int fd, void *buf, size_t len,
			   int flags);
P2P_MUST_CHECK int ev_send(struct ev_loop *l, struct ev_op *op, int fd, const void *buf, size_t len,
			   int flags);
P2P_MUST_CHECK int ev_recvmsg(struct ev_loop *l, struct ev_op *op, int fd, struct msghdr *msg,
			      int flags);
P2P_MUST_CHECK int ev_sendmsg(struct ev_loop *l, struct ev_op *op, int fd, const struct msghdr *msg,
			      int flags);
P2P_MUST_CHECK int ev_accept(struct ev_loop *l, struct ev_op *op, int fd, struct sockaddr *addr,
			     socklen_t *addrlen);
P2P_MUST_CHECK int ev_connect(struct ev_loop *l, struct ev_op *op, int fd,
			      const struct sockaddr *addr, socklen_t addrlen);
/* One-shot readiness: res is the poll mask that fired. */
P2P_MUST_CHECK int ev_poll(struct ev_loop *l, struct ev_op *op, int fd, unsigned mask);
/* Ask the kernel to cancel @target; @target's callback still runs exactly once. */
P2P_MUST_CHECK int ev_cancel(struct ev_loop *l, struct ev_op *target);
/* Submit what is queued now instead of at the end of the iteration. */
void ev_flush(struct ev_loop *l);

/* Timers: a min-heap; the loop's wait ends at the nearest deadline. */
struct ev_timer;
typedef void ev_timer_fn(struct ev_timer *t);

struct ev_timer {
	uint64_t deadline; /* monotonic ms */
	ev_timer_fn *cb;
	uint32_t slot; /* heap index + 1; 0 when not armed */
};

static inline void ev_timer_init(struct ev_timer *t, ev_timer_fn *cb)
{
	t->deadline = 0;
	t->cb = cb;
	t->slot = 0;
}

static inline bool ev_timer_armed(const struct ev_timer *t)
{
	return t->slot != 0;
}

/* (Re)arm @t to fire once, @after_ms from now. Returns 0 or -ENOMEM. */
P2P_MUST_CHECK int ev_timer_start(struct ev_loop *l, struct ev_timer *t, uint64_t after_ms);
void ev_timer_stop(struct ev_loop *l, struct ev_timer *t);

/*
 * Cross-thread: any thread hands @job to the loop, whose thread runs
 * job->fn(job) on its next iteration. The job memory belongs to the caller
 * until fn runs.
 */
struct ev_job {
	struct ev_job *next;
	void (*fn)(struct ev_job *job);
};

void ev_post(struct ev_loop *l, struct ev_job *job);

/*
 * Worker pool: run() on a pool thread, then done() on @loop's thread.
 * For CPU-heavy or blocking work (hashing, chunking, signing, fsync batches).
 */
struct ev_pool;
struct ev_work;
typedef void ev_work_fn(struct ev_work *w);

struct ev_work {
	struct ev_job job;    /* internal */
	struct ev_work *next; /* internal */
	struct ev_loop *loop;
	ev_work_fn *run;
	ev_work_fn *done;
};

P2P_MUST_CHECK int ev_pool_new(unsigned nthreads, struct ev_pool **ret_pool);
/* Waits for queued work to finish, then frees. NULL is a no-op. */
void ev_pool_free(struct ev_pool *p);
/* @done may be NULL (then @run may free @w). @loop may be NULL only if @done is. */
void ev_work_submit(struct ev_pool *p, struct ev_loop *loop, struct ev_work *w, ev_work_fn *run,
		    ev_work_fn *done);

#endif
