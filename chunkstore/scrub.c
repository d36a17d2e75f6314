// SPDX-License-Identifier: MIT
/*
 * chunkstore/scrub.c - whole-store walks: cs_scrub() (re-read and verify
 * every chunk), cs_foreach() and the pin garbage collection marks.
 *
 * Walks go over the index by slot in batches, taking the lock per batch, so
 * puts and reads continue meanwhile. Slots are handed out in put order, so
 * slot order is close to pack order and the reads are mostly sequential.
 *
 * Scrub reads with O_DIRECT where the filesystem allows (what is checked is
 * the disk, not a page-cache copy, and the page cache is not flushed by a
 * pass over the whole store) through a private io_uring that keeps a few
 * reads in flight while the previous chunk is hashed: SHA-256 (~2 GB/s) and
 * the disk then overlap instead of adding up.
 *
 * Invariants:
 *  1. A chunk that fails (checksum, id or read error) is dropped from the
 *     index before @bad hears of it, so a caller may fetch it again at once.
 *  2. Each chunk present for the whole walk is visited exactly once (entries
 *     never move while live).
 */
#define LOG_SUBSYS "cs"
#include "chunkstore/cs_int.h"
#include "common/log.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define SCRUB_QD 4U
#define SCRUB_BATCH 64U
#define PROGRESS_BYTES (256ULL * MiB)

struct item {
	uint8_t id[CS_ID_LEN];
	uint64_t loc;
	uint32_t len;
	struct cs_pack *p;
	uint8_t *mem;
	uint64_t foff;
	size_t want, skip;
	int fd;
	int res; /* bytes read or -errno */
	bool direct, done;
};

/* Copy up to @max readable entries from *@slot on; refs their packs. */
static size_t collect(struct cs_store *s, uint32_t *slot, struct item *it, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	for (; *slot < s->ix.nslots && n < max; (*slot)++) {
		const struct cs_entry *e = cs__index_at(&s->ix, *slot);
		struct cs_pack *p;

		if ((e->lenf & (CS_E_LIVE | CS_E_WRITING)) != CS_E_LIVE)
			continue;
		if (!(p = cs__pack_find(s, cs__loc_pack(e->loc))))
			continue;
		p->refs++;
		memset(&it[n], 0, sizeof(it[n]));
		memcpy(it[n].id, e->id, CS_ID_LEN);
		it[n].loc = e->loc;
		it[n].len = e->lenf & CS_E_LEN_MASK;
		it[n].p = p;
		n++;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

static int item_setup(struct cs_store *s, struct item *it, bool direct)
{
	uint64_t off = cs__loc_off(it->loc), end = off + CS_REC_HDR_LEN + it->len;
	int dfd = direct ? cs__pack_dfd(s, it->p) : -1;

	free(it->mem);
	it->direct = dfd >= 0;
	if (it->direct) {
		it->fd = dfd;
		it->foff = P2P_ALIGN_DOWN(off, (uint64_t)CS_DIO_ALIGN);
		it->want = (size_t)(P2P_ALIGN_UP(end, (uint64_t)CS_DIO_ALIGN) - it->foff);
		it->skip = (size_t)(off - it->foff);
		it->mem = aligned_alloc(CS_DIO_ALIGN, it->want);
	} else {
		it->fd = it->p->fd;
		it->foff = off;
		it->want = (size_t)(end - off);
		it->skip = 0;
		it->mem = malloc(it->want ? it->want : 1);
	}
	return it->mem ? 0 : -ENOMEM;
}

/* Read the rest of @it synchronously (after a short read, or without a ring). */
static void item_read_sync(struct item *it)
{
	size_t got = it->res > 0 ? (size_t)it->res : 0;

	while (got < it->want) {
		ssize_t n = pread(it->fd, it->mem + got, it->want - got, (off_t)(it->foff + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			it->res = -errno;
			return;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	it->res = (int)got;
}

/* 0 if the record is intact and its data hashes to its id. */
static int item_check(struct cs_store *s, struct item *it)
{
	size_t need = it->skip + CS_REC_HDR_LEN + it->len;
	uint8_t id[CS_ID_LEN];
	int rc;

	if (it->res < 0 && it->direct && it->res == -EINVAL) {
		/* Direct I/O refused here: read it buffered. */
		if ((rc = item_setup(s, it, false)) < 0)
			return rc;
		it->res = 0;
		item_read_sync(it);
	} else if (it->res >= 0 && (size_t)it->res < need) {
		item_read_sync(it);
	}
	if (it->res < 0)
		return -EIO;
	rc = cs__verify(it->p, it->loc, it->id, it->len, it->mem + it->skip,
			it->mem + it->skip + CS_REC_HDR_LEN,
			(size_t)it->res > it->skip ? (size_t)it->res - it->skip : 0);
	if (rc < 0)
		return rc;
	cs_id_compute(it->mem + it->skip + CS_REC_HDR_LEN, it->len, id);
	return memcmp(id, it->id, CS_ID_LEN) == 0 ? 0 : -EBADMSG;
}

static void item_done(struct cs_store *s, struct item *it)
{
	free(it->mem);
	it->mem = NULL;
	pthread_mutex_lock(&s->lock);
	cs__pack_unref(s, it->p);
	pthread_mutex_unlock(&s->lock);
}

static bool ring_submit(struct io_uring *ring, struct item *it)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return false;
	io_uring_prep_read(sqe, it->fd, it->mem, (unsigned)it->want, it->foff);
	io_uring_sqe_set_data(sqe, it);
	return io_uring_submit(ring) >= 0;
}

/* Wait until @it has completed (other items may complete first). */
static void ring_wait(struct io_uring *ring, struct item *it)
{
	while (!it->done) {
		struct io_uring_cqe *cqe;
		struct item *x;
		int rc = io_uring_wait_cqe(ring, &cqe);

		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			/* The ring broke: read this one by hand (others are still owned by the ring). */
			it->res = 0;
			item_read_sync(it);
			it->done = true;
			return;
		}
		x = io_uring_cqe_get_data(cqe);
		x->res = cqe->res;
		x->done = true;
		io_uring_cqe_seen(ring, cqe);
	}
}

long cs_scrub(struct cs_store *s, cs_scrub_bad_fn *bad, cs_scrub_progress_fn *progress, void *arg)
{
	struct item *it = calloc(SCRUB_BATCH, sizeof(*it));
	uint64_t total, done = 0, next_report = PROGRESS_BYTES;
	struct io_uring ring;
	bool have_ring, direct = true;
	uint32_t slot = 0;
	long nbad = 0;

	if (!it)
		return -ENOMEM;
	have_ring = io_uring_queue_init(SCRUB_QD * 2, &ring, 0) == 0;
	pthread_mutex_lock(&s->lock);
	total = s->st.bytes;
	pthread_mutex_unlock(&s->lock);
	for (;;) {
		size_t n = collect(s, &slot, it, SCRUB_BATCH), issued = 0;

		if (!n)
			break;
		for (size_t i = 0; i < n; i++) {
			int rc;

			/* Keep up to SCRUB_QD reads ahead of the chunk being hashed. */
			while (issued < n && issued < i + SCRUB_QD) {
				struct item *x = &it[issued++];

				if (item_setup(s, x, direct) < 0 || !have_ring ||
				    !ring_submit(&ring, x)) {
					x->res = 0;
					if (x->mem)
						item_read_sync(x);
					else
						x->res = -ENOMEM;
					x->done = true;
				}
			}
			if (have_ring)
				ring_wait(&ring, &it[i]);
			if (it[i].direct && it[i].res == -EINVAL)
				direct = false;
			rc = it[i].res == -ENOMEM ? -ENOMEM : item_check(s, &it[i]);
			/* A read error is damage too: drop the chunk so it can be fetched again. */
			if ((rc == -EBADMSG || rc == -EIO) &&
			    cs__read_failed(s, it[i].id, it[i].loc) == -EBADMSG) {
				nbad++;
				if (bad)
					bad(arg, it[i].id, rc);
			}
			done += it[i].len;
			item_done(s, &it[i]);
			if (progress && done >= next_report) {
				progress(arg, done, P2P_MAX(total, done));
				next_report = done + PROGRESS_BYTES;
			}
		}
	}
	if (progress)
		progress(arg, done, P2P_MAX(total, done));
	if (have_ring)
		io_uring_queue_exit(&ring);
	free(it);
	return nbad;
}

int cs_foreach(struct cs_store *s, cs_foreach_fn *fn, void *arg)
{
	struct {
		uint8_t id[CS_ID_LEN];
		uint32_t len;
		bool pinned;
	} b[256];
	uint32_t slot = 0;

	for (;;) {
		size_t n = 0;

		pthread_mutex_lock(&s->lock);
		for (; slot < s->ix.nslots && n < ARRAY_SIZE(b); slot++) {
			const struct cs_entry *e = cs__index_at(&s->ix, slot);

			if ((e->lenf & (CS_E_LIVE | CS_E_WRITING)) != CS_E_LIVE)
				continue;
			memcpy(b[n].id, e->id, CS_ID_LEN);
			b[n].len = e->lenf & CS_E_LEN_MASK;
			b[n].pinned = e->lenf & CS_E_PINNED;
			n++;
		}
		pthread_mutex_unlock(&s->lock);
		if (!n)
			return 0;
		for (size_t i = 0; i < n; i++)
			fn(arg, b[i].id, b[i].len, b[i].pinned);
	}
}

/*
 * Marks: an entry is marked in the current round when its CS_E_MARK bit
 * equals s->mark_val. Outside a round every entry's bit differs from
 * mark_val, so cs_mark_begin() has nothing to clear; cs_mark_end() sets
 * every bit to mark_val as it walks and then flips mark_val.
 */
void cs_mark_begin(struct cs_store *s)
{
	pthread_mutex_lock(&s->lock);
	s->marking = true;
	pthread_mutex_unlock(&s->lock);
}

void cs_mark(struct cs_store *s, const uint8_t id[static CS_ID_LEN])
{
	uint32_t slot;

	pthread_mutex_lock(&s->lock);
	if ((slot = cs__index_find(&s->ix, id)) != CS_NO_SLOT) {
		struct cs_entry *e = cs__index_at(&s->ix, slot);

		e->lenf = (e->lenf & ~CS_E_MARK) | s->mark_val;
	}
	pthread_mutex_unlock(&s->lock);
}

long cs_mark_end(struct cs_store *s)
{
	uint32_t slot = 0;
	long n = 0;
	bool last = false;

	while (!last) {
		pthread_mutex_lock(&s->lock);
		for (uint32_t k = 0; slot < s->ix.nslots && k < 65536; slot++, k++) {
			struct cs_entry *e = cs__index_at(&s->ix, slot);

			if (!(e->lenf & CS_E_LIVE))
				continue;
			if ((e->lenf & CS_E_MARK) != s->mark_val &&
			    (e->lenf & (CS_E_PINNED | CS_E_WRITING)) == CS_E_PINNED) {
				cs__set_pinned(s, e, false);
				n++;
			}
			e->lenf = (e->lenf & ~CS_E_MARK) | s->mark_val;
		}
		if (slot >= s->ix.nslots) {
			last = true;
			s->marking = false;
			s->mark_val ^= CS_E_MARK;
			/*
			 * No unpin records: the next checkpoint carries the change,
			 * and losing it to a crash only keeps chunks pinned.
			 */
			if (n && !s->opts.read_only) {
				s->ckpt_wanted = true;
				pthread_cond_signal(&s->maint_cond);
			}
		}
		pthread_mutex_unlock(&s->lock);
	}
	return n;
}
