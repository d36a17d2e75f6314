// SPDX-License-Identifier: MIT
/*
 * chunkstore/read.c - cs_read(): verified asynchronous reads on the event
 * loop, the memory cache of verified chunks, and struct cs_buf.
 *
 * A read looks in the memory cache (an LRU of verified chunks, mem_cache
 * bytes), then in the table of reads in flight (a second reader of the same
 * chunk waits on the first one's disk read), and otherwise issues one
 * io_uring read of the whole record through the loop. The record's header
 * and data checksums are checked before any reader sees a byte; a record
 * that fails is dropped from the index (cs__read_failed) and every waiter
 * gets -EBADMSG.
 *
 * How a record is read is decided per record: if the page cache holds all
 * of it (a small record just written: large ones are written around the
 * page cache, see cs_put; or one read by someone else), a buffered read copies it
 * from memory; otherwise an O_DIRECT read of the aligned range around it
 * puts the data straight into the buffer that becomes the cs_buf, without
 * a second copy through the page cache, and with the read in flight on the
 * device instead of in the kernel's worker threads. Measured here (2 GiB
 * file through the mount, page cache dropped, 16 MiB of read-ahead):
 * buffered 0.6-1.4 GB/s, direct 1.7-2.1 GB/s; a hot record read buffered
 * runs at memory speed (4.7 GB/s against 1.9 direct, bench_store). The
 * page cache is asked with cachestat(2) (Linux 6.5); without it every read
 * is direct. Scrub always reads direct, since it must check the disk, not
 * a cached copy. If a filesystem refuses O_DIRECT (tmpfs) or a direct read
 * fails with EINVAL, reads fall back to buffered.
 *
 * Invariants:
 *  1. Everything here but cs_buf_ref/unref/data/len runs on the loop thread
 *     (ev.h invariant 1); cs_buf reference counts are atomic so buffers may
 *     travel to other threads.
 *  2. A read's callback list runs exactly once, after the read left the
 *     pending table, so a callback may call cs_read() again.
 *  3. A cached cs_buf holds one reference for the cache.
 */
#define LOG_SUBSYS "cs"
#include "chunkstore/cs_int.h"
#include "common/bigbuf.h"
#include "common/log.h"
#include "common/tm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct cs_buf {
	atomic_uint refs;
	uint32_t len;
	const uint8_t *data;
	void *mem; /* the read buffer the data lies in (p2p_bigbuf) */
	size_t mem_len;
	/* memory cache (loop thread) */
	struct cs_buf *hnext, *lprev, *lnext;
	uint8_t id[CS_ID_LEN];
};

struct cs_waiter {
	cs_read_fn *cb;
	void *arg;
	struct cs_waiter *next;
};

struct cs_rd {
	struct ev_op op;
	struct cs_store *s;
	struct cs_rd *hnext; /* pending table chain */
	struct cs_rd *rnext; /* retry list (ring was full) */
	uint8_t id[CS_ID_LEN];
	uint64_t loc;
	uint32_t len;
	struct cs_pack *pack;
	int fd;
	bool direct;
	uint8_t *mem;
	uint64_t foff; /* file offset of mem[0] */
	size_t want;   /* bytes to read into mem */
	size_t got;
	size_t skip; /* offset of the record in mem */
	struct cs_waiter first, *wtail;
};

#define RD_BUCKETS 256U

struct cs_mem {
	struct cs_buf **bt; /* cache table, chained */
	uint32_t bt_mask, nbuf;
	struct cs_buf *lru_head, *lru_tail; /* head: most recent */
	uint64_t bytes;
	struct cs_rd *rt[RD_BUCKETS];
	unsigned inflight;
	struct cs_rd *retry_head, *retry_tail;
	struct ev_timer retry_timer;
	pthread_t owner;
	bool owner_set;
	bool direct_ok;
	bool no_cachestat; /* the kernel has no cachestat(2) */
	uint64_t page_size;
	struct cs_store *s;
};

/* ---- cs_buf ---- */

const uint8_t *cs_buf_data(const struct cs_buf *b)
{
	return b->data;
}

size_t cs_buf_len(const struct cs_buf *b)
{
	return b->len;
}

struct cs_buf *cs_buf_ref(struct cs_buf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void cs_buf_unref(struct cs_buf *b)
{
	if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
		p2p_bigbuf_put(b->mem, b->mem_len);
		free(b);
	}
}

/* ---- the memory cache ---- */

static uint32_t bucket(const struct cs_store *s, const uint8_t *id, uint32_t mask)
{
	return (uint32_t)cs__id_hash(&s->ix, id) & mask;
}

static struct cs_buf *cache_find(struct cs_mem *m, const uint8_t *id)
{
	struct cs_buf *b;

	if (!m->bt)
		return NULL;
	for (b = m->bt[bucket(m->s, id, m->bt_mask)]; b; b = b->hnext)
		if (memcmp(b->id, id, CS_ID_LEN) == 0)
			return b;
	return NULL;
}

static void lru_unlink(struct cs_mem *m, struct cs_buf *b)
{
	if (b->lprev)
		b->lprev->lnext = b->lnext;
	else
		m->lru_head = b->lnext;
	if (b->lnext)
		b->lnext->lprev = b->lprev;
	else
		m->lru_tail = b->lprev;
	b->lprev = b->lnext = NULL;
}

static void lru_push(struct cs_mem *m, struct cs_buf *b)
{
	b->lprev = NULL;
	b->lnext = m->lru_head;
	if (m->lru_head)
		m->lru_head->lprev = b;
	else
		m->lru_tail = b;
	m->lru_head = b;
}

static void cache_remove(struct cs_mem *m, struct cs_buf *b)
{
	struct cs_buf **pp = &m->bt[bucket(m->s, b->id, m->bt_mask)];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	lru_unlink(m, b);
	m->nbuf--;
	m->bytes -= b->len;
	atomic_store(&m->s->mem_bytes, m->bytes);
	cs_buf_unref(b);
}

static void cache_grow(struct cs_mem *m)
{
	uint32_t size = m->bt ? (m->bt_mask + 1) * 2 : 256;
	struct cs_buf **bt = calloc(size, sizeof(*bt));

	if (!bt)
		return; /* longer chains; still correct */
	for (struct cs_buf *b = m->lru_head; b; b = b->lnext) {
		uint32_t i = bucket(m->s, b->id, size - 1);

		b->hnext = bt[i];
		bt[i] = b;
	}
	free(m->bt);
	m->bt = bt;
	m->bt_mask = size - 1;
}

static void cache_insert(struct cs_mem *m, struct cs_buf *b)
{
	uint64_t limit = m->s->opts.mem_cache;
	uint32_t i;

	if (b->len > limit / 4)
		return; /* one chunk must not flush the whole cache */
	if (!m->bt || m->nbuf >= m->bt_mask + 1)
		cache_grow(m);
	if (!m->bt)
		return;
	i = bucket(m->s, b->id, m->bt_mask);
	b->hnext = m->bt[i];
	m->bt[i] = cs_buf_ref(b);
	lru_push(m, b);
	m->nbuf++;
	m->bytes += b->len;
	while (m->bytes > limit && m->lru_tail)
		cache_remove(m, m->lru_tail);
	atomic_store(&m->s->mem_bytes, m->bytes);
}

static struct cs_mem *mem_get(struct cs_store *s);

struct cs_buf *cs_cache_put(struct cs_store *s, const uint8_t id[static CS_ID_LEN], void *mem,
			    size_t len)
{
	struct cs_mem *m = s->loop ? mem_get(s) : NULL;
	struct cs_buf *b = calloc(1, sizeof(*b));

	if (!b) {
		p2p_bigbuf_put(mem, len);
		return NULL;
	}
	atomic_init(&b->refs, 1);
	b->len = (uint32_t)len;
	b->data = mem;
	b->mem = mem;
	b->mem_len = len;
	memcpy(b->id, id, CS_ID_LEN);
	if (m && !cache_find(m, id)) {
		if (!m->owner_set) {
			m->owner = pthread_self();
			m->owner_set = true;
		}
		cache_insert(m, b);
	}
	return b;
}

/* ---- reads ---- */

static void on_read(struct ev_op *op, int32_t res);
static void retry_fire(struct ev_timer *t);

static struct cs_mem *mem_get(struct cs_store *s)
{
	struct cs_mem *m = s->mem;

	if (m)
		return m;
	if (!(m = calloc(1, sizeof(*m))))
		return NULL;
	m->s = s;
	m->direct_ok = s->read_mode != CS_READ_BUFFERED;
	m->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	ev_timer_init(&m->retry_timer, retry_fire);
	s->mem = m;
	return m;
}

void cs__set_read_mode(struct cs_store *s, enum cs_read_mode mode)
{
	s->read_mode = mode;
	if (s->mem)
		s->mem->direct_ok = mode != CS_READ_BUFFERED;
}

void cs_store_set_loop(struct cs_store *s, struct ev_loop *loop)
{
	s->loop = loop;
}

static struct cs_rd **pending_slot(struct cs_mem *m, const uint8_t *id)
{
	struct cs_rd **pp = &m->rt[bucket(m->s, id, RD_BUCKETS - 1)];

	while (*pp && memcmp((*pp)->id, id, CS_ID_LEN) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static int submit(struct cs_rd *rd)
{
	struct cs_mem *m = rd->s->mem;
	int rc;

	rc = ev_read(rd->s->loop, &rd->op, rd->fd, rd->mem + rd->got, rd->want - rd->got,
		     rd->foff + rd->got);
	if (rc == -EBUSY) {
		/* The ring is full: try again in a millisecond. */
		rd->rnext = NULL;
		if (m->retry_tail)
			m->retry_tail->rnext = rd;
		else
			m->retry_head = rd;
		m->retry_tail = rd;
		if (!ev_timer_armed(&m->retry_timer) &&
		    ev_timer_start(rd->s->loop, &m->retry_timer, 1) < 0)
			return -ENOMEM;
		return 0;
	}
	return rc;
}

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same on every architecture */
#endif

struct cs_cachestat_range {
	uint64_t off, len;
};

struct cs_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* Does the page cache hold every page of [off, end) of @fd? False when the
 * kernel cannot say (before 6.5): the read then goes direct. */
static bool range_cached(struct cs_mem *m, int fd, uint64_t off, uint64_t end)
{
	uint64_t pg = m->page_size, first = off / pg, last = (end + pg - 1) / pg;
	struct cs_cachestat_range r = { first * pg, (last - first) * pg };
	struct cs_cachestat cs;

	if (m->no_cachestat)
		return false;
	if (syscall(__NR_cachestat, fd, &r, &cs, 0) < 0) {
		if (errno == ENOSYS)
			m->no_cachestat = true;
		return false;
	}
	return cs.nr_cache >= last - first;
}

/* Lay out the read: the aligned range around the record (direct) or the record itself. */
static int rd_setup(struct cs_rd *rd)
{
	uint64_t off = cs__loc_off(rd->loc), end = off + CS_REC_HDR_LEN + rd->len;
	struct cs_mem *m = rd->s->mem;
	bool direct = m->direct_ok && (rd->s->read_mode == CS_READ_DIRECT ||
				       !range_cached(m, rd->pack->fd, off, end));
	int dfd = direct ? cs__pack_dfd(rd->s, rd->pack) : -1;

	p2p_bigbuf_put(rd->mem, rd->want);
	rd->mem = NULL;
	rd->got = 0;
	rd->direct = dfd >= 0;
	if (rd->direct) {
		rd->fd = dfd;
		rd->foff = P2P_ALIGN_DOWN(off, (uint64_t)CS_DIO_ALIGN);
		rd->want = (size_t)(P2P_ALIGN_UP(end, (uint64_t)CS_DIO_ALIGN) - rd->foff);
		rd->skip = (size_t)(off - rd->foff);
		rd->mem = p2p_bigbuf_get(rd->want);
	} else {
		rd->fd = rd->pack->fd;
		rd->foff = off;
		rd->want = (size_t)(end - off);
		rd->skip = 0;
		rd->mem = p2p_bigbuf_get(rd->want ? rd->want : 1);
	}
	return rd->mem ? 0 : -ENOMEM;
}

static void rd_finish(struct cs_rd *rd, int rc)
{
	struct cs_store *s = rd->s;
	struct cs_mem *m = s->mem;
	struct cs_waiter *w, *next;
	struct cs_buf *b = NULL;
	struct cs_rd **pp = pending_slot(m, rd->id);

	*pp = rd->hnext;
	m->inflight--;
	pthread_mutex_lock(&s->lock);
	cs__pack_unref(s, rd->pack);
	if (rc == 0) {
		s->st.gets++;
		s->st.get_bytes += rd->len;
		s->st.direct_gets += rd->direct;
	}
	pthread_mutex_unlock(&s->lock);
	if (rc == -EBADMSG)
		rc = cs__read_failed(s, rd->id, rd->loc);
	if (rc == 0 && !(b = calloc(1, sizeof(*b))))
		rc = -ENOMEM;
	if (rc == 0) {
		atomic_init(&b->refs, 1);
		b->len = rd->len;
		b->mem = rd->mem;
		b->mem_len = rd->want ? rd->want : 1;
		b->data = rd->mem + rd->skip + CS_REC_HDR_LEN;
		memcpy(b->id, rd->id, CS_ID_LEN);
		rd->mem = NULL;
		cache_insert(m, b);
	}
	for (w = &rd->first; w; w = next) {
		next = w->next;
		w->cb(w->arg, rc, b);
		if (w != &rd->first)
			free(w);
	}
	cs_buf_unref(b);
	p2p_bigbuf_put(rd->mem, rd->want);
	free(rd);
}

static void on_read(struct ev_op *op, int32_t res)
{
	struct cs_rd *rd = container_of(op, struct cs_rd, op);
	size_t need = rd->skip + CS_REC_HDR_LEN + rd->len;
	int rc;

	if (res == -EINTR || res == -EAGAIN) {
		if ((rc = submit(rd)) < 0)
			rd_finish(rd, rc);
		return;
	}
	if (res == -EINVAL && rd->direct) {
		/* The filesystem or device refuses this direct read: buffered from now on. */
		rd->s->mem->direct_ok = false;
		if ((rc = rd_setup(rd)) < 0 || (rc = submit(rd)) < 0)
			rd_finish(rd, rc);
		return;
	}
	if (res < 0) {
		log_debug("reading pack %08x: %s", rd->pack->no, strerror(-res));
		rd_finish(rd, -EIO);
		return;
	}
	rd->got += (size_t)res;
	if (res > 0 && rd->got < need) {
		if ((rc = submit(rd)) < 0)
			rd_finish(rd, rc);
		return;
	}
	/* Complete, or the file ended inside the record (cs__verify says -EBADMSG). */
	rd_finish(rd, cs__verify(rd->pack, rd->loc, rd->id, rd->len, rd->mem + rd->skip,
				 rd->mem + rd->skip + CS_REC_HDR_LEN,
				 rd->got > rd->skip ? rd->got - rd->skip : 0));
}

static void retry_fire(struct ev_timer *t)
{
	struct cs_mem *m = container_of(t, struct cs_mem, retry_timer);
	struct cs_rd *list = m->retry_head;

	m->retry_head = m->retry_tail = NULL;
	while (list) {
		struct cs_rd *rd = list;
		int rc;

		list = rd->rnext;
		if ((rc = submit(rd)) < 0)
			rd_finish(rd, rc);
	}
}

int cs_read(struct cs_store *s, const uint8_t id[static CS_ID_LEN], cs_read_fn *cb, void *arg,
	    struct cs_buf **ret_buf)
{
	struct cs_mem *m;
	struct cs_buf *b;
	struct cs_rd *rd, **pp;
	int rc;

	if (!s->loop)
		return -EINVAL;
	if (!(m = mem_get(s)))
		return -ENOMEM;
	if (!m->owner_set) {
		m->owner = pthread_self();
		m->owner_set = true;
	}
	if ((b = cache_find(m, id))) {
		lru_unlink(m, b);
		lru_push(m, b);
		cs__touch(s, id);
		*ret_buf = cs_buf_ref(b);
		return 1;
	}
	pp = pending_slot(m, id);
	if ((rd = *pp)) {
		struct cs_waiter *w = malloc(sizeof(*w));

		if (!w)
			return -ENOMEM;
		w->cb = cb;
		w->arg = arg;
		w->next = NULL;
		rd->wtail->next = w;
		rd->wtail = w;
		return 0;
	}
	if (!(rd = calloc(1, sizeof(*rd))))
		return -ENOMEM;
	rd->s = s;
	memcpy(rd->id, id, CS_ID_LEN);
	rd->first.cb = cb;
	rd->first.arg = arg;
	rd->wtail = &rd->first;
	ev_op_init(&rd->op, on_read);
	if ((rc = cs__lookup_for_read(s, id, &rd->loc, &rd->len, &rd->pack)) < 0) {
		free(rd);
		return rc;
	}
	if ((rc = rd_setup(rd)) < 0 || (rc = submit(rd)) < 0) {
		pthread_mutex_lock(&s->lock);
		cs__pack_unref(s, rd->pack);
		pthread_mutex_unlock(&s->lock);
		p2p_bigbuf_put(rd->mem, rd->want);
		free(rd);
		return rc;
	}
	*pp = rd;
	m->inflight++;
	return 0;
}

void cs__mem_free(struct cs_store *s)
{
	struct cs_mem *m = s->mem;

	if (!m)
		return;
	if (m->inflight && m->owner_set && pthread_equal(m->owner, pthread_self())) {
		/* Closing with reads in flight: let them finish (their callbacks run). */
		uint64_t until = tm_mono_ms() + 10000;

		while (m->inflight && tm_mono_ms() < until)
			if (ev_loop_run_once(s->loop, 100) < 0)
				break;
	}
	if (m->inflight) {
		/* The kernel may still write into their buffers: leak them rather than corrupt. */
		log_debug("closing with %u chunk reads in flight", m->inflight);
		s->mem = NULL;
		return;
	}
	if (ev_timer_armed(&m->retry_timer))
		ev_timer_stop(s->loop, &m->retry_timer);
	while (m->lru_tail)
		cache_remove(m, m->lru_tail);
	free(m->bt);
	free(m);
	s->mem = NULL;
}
