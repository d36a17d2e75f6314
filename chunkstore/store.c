// SPDX-License-Identifier: MIT
/*
 * chunkstore/store.c - the chunk store: open and recovery, puts, gets, pins,
 * sync, quota and eviction, the maintenance thread (see store.h; formats in
 * cs_format.h).
 *
 * Writes. A put reserves its bytes at the end of the current pack under the
 * lock (taking a ticket and an entry in CS_E_WRITING state), then writes
 * header + data + padding with one pwritev outside the lock, so puts from
 * several threads proceed in parallel and records land in reservation
 * order. Worker-thread calls (cs_put, cs_get, cs_store_sync) are synchronous
 * and make exactly one syscall for their I/O (pwritev, preadv, fdatasync);
 * an io_uring would add a submit and a wait around the same kernel work and
 * a ring per calling thread, so it is used where it pays: cs_read on the
 * event loop (many reads in flight, no thread blocked) and cs_scrub (reads
 * kept in flight while the previous chunk is hashed). After each large
 * write, sync_file_range(WRITE) starts writeback at once so the next
 * fdatasync has little left to wait for.
 *
 * Sync. cs_store_sync() waits until every write reserved before it has
 * completed (the in-flight list is in ticket order), then fdatasyncs each
 * pack written since its last sync. A failed fdatasync latches -EIO: after
 * one, the kernel may have dropped the dirty pages, so no later sync can
 * promise anything (the store must be reopened).
 *
 * Recovery. Opening loads the checkpoint ("index": entries plus the
 * location up to which they reflect the log) and replays only the records
 * from there on, verifying each record's checksums; a torn record is
 * dropped, and scanning resumes at the next valid header, since writers
 * racing at a crash can leave a hole before complete records. Replay is
 * idempotent (a chunk record adds only if absent; delete, pin and unpin
 * apply only to the record location they name), which is what lets a
 * checkpoint be taken while puts continue (ckpt.c).
 *
 * Eviction. Unpinned bytes are kept under cache_quota by evicting the least
 * recently used of a pool of sampled candidates (Redis' approach: a sample
 * of 16 per eviction, a pool of the 16 oldest seen so far). The entry leaves
 * the index at once and a delete record goes out in the same write as the
 * put that needed the room; once that record is durable (after the next
 * sync, which the maintenance thread forces within a second) the record's
 * data blocks are punched out. A pack whose live bytes reach zero is
 * deleted at the next checkpoint.
 *
 * Invariants:
 *  1. An entry not in CS_E_WRITING state points at a complete record whose
 *     write returned success.
 *  2. s->wr_head is the oldest reservation still being written; every
 *     record before it in log order has been written.
 *  3. Data blocks of a record are punched only after a durable delete
 *     record names it.
 *  4. Puts never block on other puts except on the same id.
 */
#define LOG_SUBSYS "cs"
#include "chunkstore/cs_int.h"
#include "common/log.h"
#include "common/tm.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#define DEF_QUOTA (10 * GiB)
#define DEF_PACK (4 * GiB)
#define MIN_PACK (64 * KiB)
#define MAX_PACK (CS_PACK_SIZE_MAX - 64 * MiB)
#define DEF_MEM (64 * MiB)
#define CKPT_MIN_INTERVAL (256 * MiB)
#define STATVFS_BYTES (64 * MiB)
#define STATVFS_MS 1000
#define PUNCH_DELAY_MS 1000
#define MAINT_TICK_MS 250
#define KICK_MIN (256 * KiB)

static uint64_t rand64(void)
{
	uint64_t v;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = tm_real_ns() ^ (uint64_t)getpid() << 32 ^ tm_mono_ns();
	return v;
}

/* ---- pack table (under s->lock) ---- */

struct cs_pack *cs__pack_find(struct cs_store *s, uint32_t no)
{
	uint32_t lo = 0, hi = s->npacks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (s->packs[mid]->no < no)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->npacks && s->packs[lo]->no == no ? s->packs[lo] : NULL;
}

static void pack_close(struct cs_pack *p)
{
	if (p->fd >= 0)
		close(p->fd);
	if (p->dfd >= 0)
		close(p->dfd);
	free(p);
}

void cs__pack_unref(struct cs_store *s, struct cs_pack *p)
{
	(void)s;
	assert(p->refs > 0);
	if (--p->refs == 0 && p->dead)
		pack_close(p);
}

static int pack_table_add(struct cs_store *s, struct cs_pack *p)
{
	uint32_t i;

	if (s->npacks == s->packs_cap) {
		uint32_t cap = s->packs_cap ? s->packs_cap * 2 : 16;
		struct cs_pack **np = realloc(s->packs, cap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		s->packs = np;
		s->packs_cap = cap;
	}
	for (i = s->npacks; i > 0 && s->packs[i - 1]->no > p->no; i--)
		s->packs[i] = s->packs[i - 1];
	s->packs[i] = p;
	s->npacks++;
	return 0;
}

static void pack_table_remove(struct cs_store *s, struct cs_pack *p)
{
	for (uint32_t i = 0; i < s->npacks; i++)
		if (s->packs[i] == p) {
			memmove(&s->packs[i], &s->packs[i + 1],
				(s->npacks - i - 1) * sizeof(*s->packs));
			s->npacks--;
			return;
		}
}

static void pack_name(char out[static 32], uint32_t no)
{
	snprintf(out, 32, "%08x.pack", no);
}

int cs__pack_dfd(struct cs_store *s, struct cs_pack *p)
{
	char name[32];
	int fd;

	pthread_mutex_lock(&s->lock);
	fd = p->dfd;
	pthread_mutex_unlock(&s->lock);
	if (fd != -1)
		return fd >= 0 ? fd : -1;
	pack_name(name, p->no);
	fd = openat(s->dirfd, name, (s->opts.read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	pthread_mutex_lock(&s->lock);
	if (p->dfd == -1) {
		p->dfd = fd >= 0 ? fd : -2;
		fd = -1;
	}
	if (fd >= 0)
		close(fd); /* another thread won the race */
	fd = p->dfd;
	pthread_mutex_unlock(&s->lock);
	return fd >= 0 ? fd : -1;
}

static int pack_open(struct cs_store *s, uint32_t no, struct cs_pack **ret)
{
	uint8_t hb[CS_PACK_HDR_LEN];
	struct cs_pack_hdr h;
	struct cs_pack *p;
	struct stat st;
	char name[32];
	ssize_t n;
	int rc;

	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->dfd = -1;
	pack_name(name, no);
	p->fd = openat(s->dirfd, name, (s->opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (p->fd < 0) {
		rc = -errno;
		goto err;
	}
	if (fstat(p->fd, &st) < 0) {
		rc = -errno;
		goto err;
	}
	n = pread(p->fd, hb, sizeof(hb), 0);
	if (n < 0) {
		rc = -errno;
		goto err;
	}
	if ((rc = cs__pack_hdr_decode(hb, (size_t)n, &h)) < 0)
		goto err;
	if (h.no != no) {
		rc = -EPROTO;
		goto err;
	}
	p->no = no;
	p->salt = h.salt;
	p->size = (uint64_t)st.st_size;
	p->alloc = (uint64_t)st.st_blocks * 512;
	*ret = p;
	return 0;
err:
	if (p->fd >= 0)
		close(p->fd);
	free(p);
	return rc;
}

/* Create pack @no: header written and durable, and the file's name too. */
static int pack_create(struct cs_store *s, uint32_t no, struct cs_pack **ret)
{
	struct cs_pack_hdr h = { .no = no, .salt = rand64(), .created_ns = tm_real_ns() };
	uint8_t hb[CS_PACK_HDR_LEN];
	struct cs_pack *p;
	char name[32];
	int rc;

	if (no > CS_PACK_NO_MAX)
		return -ENOSPC;
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->dfd = -1;
	pack_name(name, no);
	p->fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (p->fd < 0) {
		rc = -errno;
		free(p);
		return rc;
	}
	cs__pack_hdr_encode(hb, &h);
	if (pwrite(p->fd, hb, sizeof(hb), 0) != (ssize_t)sizeof(hb) || fdatasync(p->fd) < 0 ||
	    fsync(s->dirfd) < 0) {
		rc = errno ? -errno : -EIO;
		close(p->fd);
		(void)unlinkat(s->dirfd, name, 0);
		free(p);
		return rc;
	}
	p->no = no;
	p->salt = h.salt;
	p->size = CS_PACK_HDR_LEN;
	p->alloc = 4096;
	*ret = p;
	return 0;
}

/* ---- accounting (under s->lock) ---- */

static void account(struct cs_store *s, const struct cs_entry *e, int dir)
{
	uint64_t len = e->lenf & CS_E_LEN_MASK;
	struct cs_pack *p = cs__pack_find(s, cs__loc_pack(e->loc));

	if (dir > 0) {
		s->st.chunks++;
		s->st.bytes += len;
		if (e->lenf & CS_E_PINNED) {
			s->st.pinned_chunks++;
			s->st.pinned_bytes += len;
		} else {
			s->st.cache_bytes += len;
		}
		if (p)
			p->live += cs__rec_size(len);
	} else {
		s->st.chunks--;
		s->st.bytes -= len;
		if (e->lenf & CS_E_PINNED) {
			s->st.pinned_chunks--;
			s->st.pinned_bytes -= len;
		} else {
			s->st.cache_bytes -= len;
		}
		if (p) {
			p->live -= cs__rec_size(len);
			if (p->live == 0 && p != s->cur)
				s->ckpt_wanted = true; /* so the empty pack goes */
		}
	}
}

static void set_pinned(struct cs_store *s, struct cs_entry *e, bool pinned)
{
	uint64_t len = e->lenf & CS_E_LEN_MASK;

	if (!!(e->lenf & CS_E_PINNED) == pinned)
		return;
	if (pinned) {
		e->lenf |= CS_E_PINNED;
		s->st.pinned_chunks++;
		s->st.pinned_bytes += len;
		s->st.cache_bytes -= len;
	} else {
		e->lenf &= ~CS_E_PINNED;
		s->st.pinned_chunks--;
		s->st.pinned_bytes -= len;
		s->st.cache_bytes += len;
	}
}

void cs__set_pinned(struct cs_store *s, struct cs_entry *e, bool pinned)
{
	set_pinned(s, e, pinned);
}

static void entry_remove(struct cs_store *s, uint32_t slot)
{
	account(s, cs__index_at(&s->ix, slot), -1);
	cs__index_del(&s->ix, slot);
}

static void touch(struct cs_store *s, struct cs_entry *e)
{
	e->atime = ++s->clock;
	if (s->clock >= 1U << 31) {
		/* Keep ordering, make room: rare (2^30 uses), O(n). */
		for (uint32_t i = 0; i < s->ix.nslots; i++) {
			struct cs_entry *x = cs__index_at(&s->ix, i);

			if (x->lenf & CS_E_LIVE)
				x->atime = x->atime > 1U << 30 ? x->atime - (1U << 30) : 0;
		}
		s->clock -= 1U << 30;
		s->npool = 0;
	}
}

int cs__entry_load(struct cs_store *s, const uint8_t id[static CS_ID_LEN], uint64_t loc,
		   uint32_t len, bool pinned, uint32_t atime)
{
	struct cs_entry *e;
	uint32_t slot;
	int rc;

	if ((rc = cs__index_add(&s->ix, id, &slot)) < 0)
		return rc;
	e = cs__index_at(&s->ix, slot);
	e->loc = loc;
	e->lenf = len | CS_E_LIVE | (pinned ? CS_E_PINNED : 0) | (s->mark_val ^ CS_E_MARK);
	e->atime = atime;
	account(s, e, +1);
	return 0;
}

int cs__index_reset(struct cs_store *s)
{
	uint64_t seed = s->ix.seed;

	cs__index_done(&s->ix);
	s->st.chunks = s->st.bytes = 0;
	s->st.pinned_chunks = s->st.pinned_bytes = s->st.cache_bytes = 0;
	for (uint32_t i = 0; i < s->npacks; i++)
		s->packs[i]->live = 0;
	return cs__index_init(&s->ix, seed, 0);
}

void cs__packs_retire(struct cs_store *s, uint64_t cover)
{
	struct cs_pack *gone[64];
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < s->npacks && n < ARRAY_SIZE(gone);) {
		struct cs_pack *p = s->packs[i];

		if (p->live || p == s->cur || p->no >= cs__loc_pack(cover)) {
			i++;
			continue;
		}
		pack_table_remove(s, p);
		p->dead = true;
		p->refs++;
		gone[n++] = p;
	}
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < n; i++) {
		char name[32];

		pack_name(name, gone[i]->no);
		if (unlinkat(s->dirfd, name, 0) < 0)
			log_debug("removing empty pack %s: %s", name, strerror(errno));
	}
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < n; i++)
		cs__pack_unref(s, gone[i]);
	pthread_mutex_unlock(&s->lock);
}

/* ---- the write queue (under s->lock) ---- */

static void wr_begin(struct cs_store *s, struct cs_wr *w, uint64_t loc)
{
	w->ticket = ++s->seq;
	w->loc = loc;
	w->next = NULL;
	w->prev = s->wr_tail;
	if (s->wr_tail)
		s->wr_tail->next = w;
	else
		s->wr_head = w;
	s->wr_tail = w;
}

static void wr_end(struct cs_store *s, struct cs_wr *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		s->wr_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		s->wr_tail = w->prev;
	pthread_cond_broadcast(&s->cond);
}

/*
 * Reserve @size bytes at the end of the current pack (a new pack when it
 * would pass pack_size). Returns the pack (ref'd) and the offset.
 */
/* @size bytes at the end of the current pack (a new one if it is full),
 * starting at a multiple of @align (0 or a power of two) and taking a
 * multiple of it: the bytes skipped before are a hole replay steps over. */
static int reserve(struct cs_store *s, uint64_t size, uint64_t align, struct cs_wr *w,
		   struct cs_pack **ret_pack, uint64_t *ret_off)
{
	struct cs_pack *p = s->cur;
	int rc;

	if (align)
		size = P2P_ALIGN_UP(size, align);
	if (p->size + size + align > s->opts.pack_size && p->size > CS_PACK_HDR_LEN) {
		struct cs_pack *np;

		if ((rc = pack_create(s, p->no + 1, &np)) < 0)
			return rc;
		if ((rc = pack_table_add(s, np)) < 0) {
			pack_close(np);
			return rc;
		}
		s->cur = np;
		if (p->live == 0)
			s->ckpt_wanted = true;
		p = np;
	}
	if (align && p->size % align) {
		uint64_t pad = align - p->size % align;

		p->size += pad;
		p->alloc += pad;
	}
	*ret_off = p->size;
	p->size += size;
	p->alloc += size;
	p->refs++;
	s->since_ckpt += size;
	s->fs_written += size;
	wr_begin(s, w, cs__loc(p->no, *ret_off));
	*ret_pack = p;
	return 0;
}

/*
 * Bytes of appends between checkpoints: at least 256 MiB, and 4 times the
 * checkpoint's own size, so that writing checkpoints costs at most a quarter
 * of the write traffic while the tail an open replays stays bounded.
 */
static uint64_t ckpt_interval(const struct cs_store *s)
{
	return P2P_MAX(s->ckpt_min,
		       4 * ((uint64_t)s->ix.count * CS_CKPT_ENT_LEN + CS_CKPT_HDR_LEN));
}

void cs__set_ckpt_interval(struct cs_store *s, uint64_t bytes)
{
	pthread_mutex_lock(&s->lock);
	s->ckpt_min = bytes;
	pthread_mutex_unlock(&s->lock);
}

/* After a write: wake waiters, note the pack dirty, maybe ask for a checkpoint. */
static void write_done(struct cs_store *s, struct cs_wr *w, struct cs_pack *p)
{
	p->dirty_gen++;
	wr_end(s, w);
	cs__pack_unref(s, p);
	if (s->since_ckpt >= ckpt_interval(s)) {
		/* Wake the maintenance thread only when it has to act at once. */
		s->ckpt_wanted = true;
		if (s->maint_running)
			pthread_cond_signal(&s->maint_cond);
	}
}

static int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwritev(fd, iov, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		off += (uint64_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* ---- disk space (under s->lock) ---- */

static void statfs_refresh(struct cs_store *s)
{
	struct statvfs v;

	if (fstatvfs(s->dirfd, &v) == 0) {
		s->fs_free = (uint64_t)v.f_bavail * v.f_frsize;
		s->fs_written = 0;
		s->fs_stat_ms = tm_mono_ms();
	}
}

static int check_space(struct cs_store *s, uint64_t need)
{
	bool fresh = false;

	if (s->fs_written >= STATVFS_BYTES || tm_mono_ms() - s->fs_stat_ms >= STATVFS_MS) {
		statfs_refresh(s);
		fresh = true;
	}
	for (;;) {
		uint64_t avail = s->fs_free > s->fs_written ? s->fs_free - s->fs_written : 0;

		if (avail >= s->min_free && avail - s->min_free >= need)
			return 0;
		if (fresh)
			return -ENOSPC;
		statfs_refresh(s);
		fresh = true;
	}
}

/* ---- eviction (under s->lock) ---- */

static bool evictable(const struct cs_entry *e)
{
	return (e->lenf & (CS_E_LIVE | CS_E_PINNED | CS_E_WRITING)) == CS_E_LIVE;
}

static void pool_insert(struct cs_store *s, uint32_t slot, uint32_t atime)
{
	unsigned i, n = s->npool, cap = ARRAY_SIZE(s->pool);

	for (i = 0; i < n; i++)
		if (s->pool[i].slot == slot)
			return;
	if (n == cap && atime >= s->pool[n - 1].atime)
		return;
	if (n == cap)
		n--;
	for (i = n; i > 0 && s->pool[i - 1].atime > atime; i--)
		s->pool[i] = s->pool[i - 1];
	s->pool[i].slot = slot;
	s->pool[i].atime = atime;
	s->npool = n + 1;
}

static uint32_t evict_pick(struct cs_store *s)
{
	struct cs_index *ix = &s->ix;
	uint32_t n = ix->nslots, best = CS_NO_SLOT;

	if (n == 0 || s->st.cache_bytes == 0)
		return CS_NO_SLOT;
	if (n <= 256) {
		/* Small store: exact LRU is cheaper than sampling. */
		for (uint32_t i = 0; i < n; i++) {
			const struct cs_entry *e = cs__index_at(ix, i);

			if (evictable(e) &&
			    (best == CS_NO_SLOT || e->atime < cs__index_at(ix, best)->atime))
				best = i;
		}
		return best;
	}
	for (int round = 0; round < 8; round++) {
		for (int k = 0; k < 16; k++) {
			uint32_t slot;
			const struct cs_entry *e;

			s->rng ^= s->rng << 13;
			s->rng ^= s->rng >> 7;
			s->rng ^= s->rng << 17;
			slot = (uint32_t)(s->rng % n);
			e = cs__index_at(ix, slot);
			if (evictable(e))
				pool_insert(s, slot, e->atime);
		}
		while (s->npool) {
			uint32_t slot = s->pool[0].slot, atime = s->pool[0].atime;
			const struct cs_entry *e = cs__index_at(ix, slot);

			memmove(&s->pool[0], &s->pool[1], --s->npool * sizeof(s->pool[0]));
			if (evictable(e) && e->atime == atime)
				return slot;
		}
	}
	/* Almost everything is pinned: sampling misses, so sweep. */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t slot = (uint32_t)((s->rng + i) % n);

		if (evictable(cs__index_at(ix, slot)))
			return slot;
	}
	return CS_NO_SLOT;
}

/* Evict until @need more unpinned bytes fit the quota; victims are returned for delete records. */
static int make_room(struct cs_store *s, uint64_t need, struct cs_victim **ret_v, size_t *ret_n)
{
	struct cs_victim *v = NULL;
	size_t n = 0, cap = 0;

	if (need > s->opts.cache_quota)
		return -ENOSPC;
	while (s->st.cache_bytes + need > s->opts.cache_quota) {
		uint32_t slot = evict_pick(s);
		struct cs_entry *e;

		if (slot == CS_NO_SLOT)
			break; /* the rest is being written by other puts: overshoot briefly */
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct cs_victim *nv = realloc(v, ncap * sizeof(*nv));

			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		e = cs__index_at(&s->ix, slot);
		memcpy(v[n].id, e->id, CS_ID_LEN);
		v[n].loc = e->loc;
		v[n].len = e->lenf & CS_E_LEN_MASK;
		n++;
		entry_remove(s, slot);
		s->st.evictions++;
	}
	*ret_v = v;
	*ret_n = n;
	return 0;
}

static int punch_queue(struct cs_store *s, uint64_t ticket, uint64_t loc, uint32_t len)
{
	if (s->npunch == s->punch_cap) {
		size_t cap = s->punch_cap ? s->punch_cap * 2 : 64;
		struct cs_punch *np = realloc(s->punch, cap * sizeof(*np));

		if (!np)
			return -ENOMEM;
		s->punch = np;
		s->punch_cap = cap;
	}
	if (s->npunch == 0)
		s->punch_since_ms = tm_mono_ms();
	s->punch[s->npunch++] = (struct cs_punch){ .ticket = ticket, .loc = loc, .len = len };
	return 0;
}

/*
 * Punch out the data of every queued record whose delete record was in a
 * write with ticket <= @upto (the caller has made those durable).
 */
static void do_punches(struct cs_store *s, uint64_t upto)
{
	struct cs_punch *todo;
	struct cs_pack **packs;
	size_t n = 0, keep = 0;

	pthread_mutex_lock(&s->lock);
	if (!s->npunch || !(todo = malloc(s->npunch * (sizeof(*todo) + sizeof(*packs))))) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	packs = (struct cs_pack **)(todo + s->npunch);
	for (size_t i = 0; i < s->npunch; i++) {
		struct cs_pack *p = cs__pack_find(s, cs__loc_pack(s->punch[i].loc));

		if (s->punch[i].ticket > upto) {
			s->punch[keep++] = s->punch[i];
			continue;
		}
		if (!p)
			continue; /* pack already deleted */
		p->refs++;
		packs[n] = p;
		todo[n++] = s->punch[i];
	}
	s->npunch = keep;
	if (keep)
		s->punch_since_ms = tm_mono_ms();
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		uint64_t start = cs__loc_off(todo[i].loc) + CS_REC_HDR_LEN;
		uint64_t a = P2P_ALIGN_UP(start, 4096ULL);
		uint64_t b = P2P_ALIGN_DOWN(start + todo[i].len, 4096ULL);

		/* Whole blocks only: a partial block cannot be freed, zeroing it gains nothing. */
		if (b > a && fallocate(packs[i]->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)a, (off_t)(b - a)) == 0) {
			pthread_mutex_lock(&s->lock);
			packs[i]->alloc -= P2P_MIN(packs[i]->alloc, b - a);
			pthread_mutex_unlock(&s->lock);
		}
	}
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++)
		cs__pack_unref(s, packs[i]);
	pthread_mutex_unlock(&s->lock);
	free(todo);
}

/* ---- sync ---- */

int cs__sync_upto(struct cs_store *s, uint64_t snap)
{
	struct {
		struct cs_pack *p;
		uint64_t gen;
	} dirty[16];
	int rc = 0;

	for (;;) {
		unsigned n = 0;
		bool more = false;

		pthread_mutex_lock(&s->lock);
		while (s->wr_head && s->wr_head->ticket <= snap)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->io_err) {
			rc = s->io_err;
			pthread_mutex_unlock(&s->lock);
			return rc;
		}
		for (uint32_t i = 0; i < s->npacks; i++) {
			struct cs_pack *p = s->packs[i];

			if (p->dirty_gen == p->synced_gen)
				continue;
			if (n == ARRAY_SIZE(dirty)) {
				more = true;
				break;
			}
			p->refs++;
			dirty[n].p = p;
			dirty[n++].gen = p->dirty_gen;
		}
		pthread_mutex_unlock(&s->lock);
		for (unsigned i = 0; i < n; i++) {
			int r = fdatasync(dirty[i].p->fd) < 0 ? -errno : 0;

			pthread_mutex_lock(&s->lock);
			if (r == 0 && dirty[i].gen > dirty[i].p->synced_gen)
				dirty[i].p->synced_gen = dirty[i].gen;
			if (r < 0) {
				log_debug("fdatasync of pack %08x: %s", dirty[i].p->no,
					  strerror(-r));
				s->io_err = -EIO;
				rc = -EIO;
			}
			cs__pack_unref(s, dirty[i].p);
			pthread_mutex_unlock(&s->lock);
		}
		if (rc < 0)
			return rc;
		if (!more) {
			pthread_mutex_lock(&s->lock);
			s->synced_seq = P2P_MAX(s->synced_seq, snap);
			pthread_mutex_unlock(&s->lock);
			return 0;
		}
	}
}

int cs_store_sync(struct cs_store *s)
{
	uint64_t snap;
	int rc;

	if (s->opts.read_only)
		return 0;
	pthread_mutex_lock(&s->lock);
	snap = s->seq;
	pthread_mutex_unlock(&s->lock);
	if ((rc = cs__sync_upto(s, snap)) < 0)
		return rc;
	/* Deletes just became durable: their space can go now, but not on the caller's time. */
	pthread_mutex_lock(&s->lock);
	if (s->npunch && s->maint_running)
		pthread_cond_signal(&s->maint_cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- records other than chunks ---- */

/*
 * Append one header-only record (pin, unpin, delete) for the entry at
 * @loc. Called with s->lock held; drops it for the write and takes it back.
 */
static int write_small(struct cs_store *s, uint8_t type, const uint8_t id[static CS_ID_LEN],
		       uint64_t ref)
{
	struct cs_rec r = { .type = type, .ref = ref };
	uint8_t hdr[CS_REC_HDR_LEN];
	struct cs_pack *p;
	struct cs_wr w;
	uint64_t off;
	ssize_t n;
	int rc;

	if ((rc = check_space(s, CS_REC_HDR_LEN)) < 0)
		return rc;
	if ((rc = reserve(s, CS_REC_HDR_LEN, 0, &w, &p, &off)) < 0)
		return rc;
	memcpy(r.id, id, CS_ID_LEN);
	pthread_mutex_unlock(&s->lock);
	cs__rec_encode(hdr, &r, cs__rec_seed(p->salt, cs__loc(p->no, off)));
	do
		n = pwrite(p->fd, hdr, sizeof(hdr), (off_t)off);
	while (n < 0 && errno == EINTR);
	rc = n == (ssize_t)sizeof(hdr) ? 0 : n < 0 ? -errno : -EIO;
	pthread_mutex_lock(&s->lock);
	write_done(s, &w, p);
	return rc;
}

/*
 * Change @id's pin state (its record at @loc) and write the record that
 * makes the change survive a restart. Lock held (dropped for the write). If
 * the record cannot be written, the change is undone: the caller sees an
 * error and the state it had.
 */
static int change_pin(struct cs_store *s, const uint8_t id[static CS_ID_LEN], struct cs_entry *e,
		      bool pin)
{
	uint64_t loc = e->loc;
	uint32_t slot;
	int rc;

	set_pinned(s, e, pin);
	rc = write_small(s, pin ? CS_REC_PIN : CS_REC_UNPIN, id, loc);
	if (rc < 0 && (slot = cs__index_find(&s->ix, id)) != CS_NO_SLOT &&
	    cs__index_at(&s->ix, slot)->loc == loc)
		set_pinned(s, cs__index_at(&s->ix, slot), !pin);
	return rc;
}

/* ---- put ---- */

static void mark_entry(struct cs_store *s, struct cs_entry *e)
{
	if (s->marking)
		e->lenf = (e->lenf & ~CS_E_MARK) | s->mark_val;
}

/*
 * Large records go to the pack with O_DIRECT, from one aligned buffer per
 * thread that is reused: a buffered write copies every byte into page-cache
 * pages the kernel must find (and later reclaim), which on this VM made the
 * copy 3x slower whenever the page cache grew into memory not touched
 * lately (a long write ran at 300 instead of 600 MB/s). Each such record
 * starts on a CS_DIO_ALIGN boundary and is padded to one, so no block is
 * shared with a buffered write. Smaller records (manifests, small files)
 * stay buffered: padding would double what they take on disk.
 */
#define DIRECT_MIN (64 * 1024)

struct dio_buf {
	uint8_t *p;
	size_t cap;
};

static pthread_key_t dio_key;
static pthread_once_t dio_once = PTHREAD_ONCE_INIT;

static void dio_buf_free(void *arg)
{
	struct dio_buf *b = arg;

	free(b->p);
	free(b);
}

static void dio_key_make(void)
{
	if (pthread_key_create(&dio_key, dio_buf_free) != 0)
		abort();
}

/* This thread's aligned buffer, at least @len bytes; NULL if out of memory. */
static uint8_t *dio_buf_get(size_t len)
{
	struct dio_buf *b;

	pthread_once(&dio_once, dio_key_make);
	if (!(b = pthread_getspecific(dio_key))) {
		if (!(b = calloc(1, sizeof(*b))))
			return NULL;
		if (pthread_setspecific(dio_key, b) != 0) {
			free(b);
			return NULL;
		}
	}
	if (b->cap < len) {
		size_t cap = P2P_ALIGN_UP(len, (size_t)1 << 20);
		uint8_t *p = aligned_alloc(CS_DIO_ALIGN, cap);

		if (!p)
			return NULL;
		free(b->p);
		b->p = p;
		b->cap = cap;
	}
	return b->p;
}

/* @n iovecs laid out in this thread's aligned buffer, zeros up to @total. */
static uint8_t *dio_fill(const struct iovec *iov, int n, size_t total)
{
	uint8_t *buf = dio_buf_get(total), *at = buf;

	if (!buf)
		return NULL;
	for (int i = 0; i < n; i++) {
		memcpy(at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	memset(at, 0, total - (size_t)(at - buf));
	return buf;
}

/* Write @total bytes of @buf at @off of pack @p through its O_DIRECT
 * handle; -EINVAL if this filesystem does not allow it, -ENOTSUP if the
 * handle cannot be had now (the caller writes buffered either way). */
static int write_direct(struct cs_store *s, struct cs_pack *p, const uint8_t *buf, size_t total,
			uint64_t off)
{
	size_t done = 0;
	int fd = cs__pack_dfd(s, p);

	if (fd < 0)
		return -ENOTSUP;
	while (done < total) {
		ssize_t w = pwrite(fd, buf + done, total - done, (off_t)(off + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0 || (size_t)w % CS_DIO_ALIGN)
			return -EIO; /* short, and the rest would be misaligned */
		done += (size_t)w;
	}
	return 0;
}

int cs_put(struct cs_store *s, const uint8_t id[static CS_ID_LEN], const void *data, size_t len,
	   unsigned flags)
{
	uint8_t cid[CS_ID_LEN], *dels = NULL, hdr[CS_REC_HDR_LEN];
	static const uint8_t pad[8];
	struct cs_victim *v = NULL;
	size_t nv = 0;
	struct cs_rec r = { .type = CS_REC_CHUNK };
	struct cs_entry *e;
	struct cs_pack *p;
	struct iovec iov[4];
	struct cs_wr w;
	uint64_t off, size, dsize, loc;
	uint32_t slot;
	bool direct;
	int rc;

	if (len > CS_CHUNK_MAX_LIMIT)
		return -EMSGSIZE;
	if (s->opts.read_only)
		return -EROFS;
	if (flags & CS_PUT_VERIFY) {
		cs_id_compute(data, len, cid);
		if (memcmp(cid, id, CS_ID_LEN) != 0)
			return -EBADMSG;
	}
	pthread_mutex_lock(&s->lock);
	while ((slot = cs__index_find(&s->ix, id)) != CS_NO_SLOT) {
		e = cs__index_at(&s->ix, slot);
		if (e->lenf & CS_E_WRITING) {
			/* Another thread is writing this chunk: its outcome decides ours. */
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		s->st.dedup_hits++;
		touch(s, e);
		mark_entry(s, e);
		rc = 0;
		if (flags & CS_PUT_PIN && !(e->lenf & CS_E_PINNED))
			rc = change_pin(s, id, e, true);
		pthread_mutex_unlock(&s->lock);
		return rc;
	}
	if (s->io_err) {
		rc = s->io_err;
		goto out_unlock;
	}
	size = cs__rec_size(len);
	/* Space first: nothing is evicted for a put that cannot be written. */
	if ((rc = check_space(s, size)) < 0)
		goto out_unlock;
	if (!(flags & CS_PUT_PIN) && (rc = make_room(s, len, &v, &nv)) < 0)
		goto out_unlock;
	dsize = (uint64_t)nv * CS_REC_HDR_LEN;
	if ((rc = cs__index_add(&s->ix, id, &slot)) < 0)
		goto out_unlock;
	direct = len >= DIRECT_MIN && atomic_load(&s->direct_writes);
	if ((rc = reserve(s, dsize + size, direct ? CS_DIO_ALIGN : 0, &w, &p, &off)) < 0) {
		cs__index_del(&s->ix, slot);
		goto out_unlock;
	}
	loc = cs__loc(p->no, off + dsize);
	e = cs__index_at(&s->ix, slot);
	e->loc = loc;
	e->lenf = (uint32_t)len | CS_E_LIVE | CS_E_WRITING | (flags & CS_PUT_PIN ? CS_E_PINNED : 0);
	touch(s, e);
	if (s->marking)
		e->lenf |= s->mark_val;
	else
		e->lenf |= s->mark_val ^ CS_E_MARK; /* unmarked for the next round */
	account(s, e, +1);
	pthread_mutex_unlock(&s->lock);

	if (nv && !(dels = malloc(dsize))) {
		rc = -ENOMEM;
	} else {
		for (size_t i = 0; i < nv; i++) {
			struct cs_rec d = { .type = CS_REC_DELETE, .ref = v[i].loc };
			uint64_t dloc = cs__loc(p->no, off + i * CS_REC_HDR_LEN);

			memcpy(d.id, v[i].id, CS_ID_LEN);
			cs__rec_encode(dels + i * CS_REC_HDR_LEN, &d, cs__rec_seed(p->salt, dloc));
		}
		r.flags = flags & CS_PUT_PIN ? CS_REC_F_PINNED : 0;
		r.len = (uint32_t)len;
		memcpy(r.id, id, CS_ID_LEN);
		r.data_hash = cs__xxh(data, len, 0);
		cs__rec_encode(hdr, &r, cs__rec_seed(p->salt, loc));
		iov[0] = (struct iovec){ .iov_base = dels, .iov_len = (size_t)dsize };
		iov[1] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
		iov[2] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
		iov[3] = (struct iovec){ .iov_base = (void *)pad,
					 .iov_len = (size_t)(size - len - sizeof(hdr)) };
		size_t total = (size_t)P2P_ALIGN_UP(dsize + size, (uint64_t)CS_DIO_ALIGN);
		const uint8_t *dbuf =
		    direct ? dio_fill(nv ? iov : iov + 1, nv ? 4 : 3, total) : NULL;

		direct = dbuf != NULL;
		pthread_mutex_lock(&s->wlock);
		if (direct) {
			rc = write_direct(s, p, dbuf, total, off);
			if (rc == -EINVAL) /* refused (tmpfs): buffered from now on */
				atomic_store(&s->direct_writes, false);
			direct = rc != -EINVAL && rc != -ENOTSUP;
		}
		if (!direct)
			rc = nv ? pwritev_full(p->fd, iov, 4, off)
				: pwritev_full(p->fd, iov + 1, 3, off);
		pthread_mutex_unlock(&s->wlock);
		if (rc == 0 && !direct && size + dsize >= KICK_MIN)
			(void)sync_file_range(p->fd, (off_t)off, (off_t)(size + dsize),
					      SYNC_FILE_RANGE_WRITE);
	}
	free(dels);

	pthread_mutex_lock(&s->lock);
	e = cs__index_at(&s->ix, slot);
	e->lenf &= ~CS_E_WRITING;
	if (rc == 0) {
		s->st.puts++;
		s->st.put_bytes += len;
		for (size_t i = 0; i < nv; i++)
			if (punch_queue(s, w.ticket, v[i].loc, v[i].len) < 0)
				break; /* the space comes back when the pack goes */
		rc = 1;
	} else {
		/* Nothing half-indexed: the reserved bytes become a hole that replay skips. */
		entry_remove(s, slot);
		log_debug("writing a chunk to pack %08x: %s", p->no, strerror(-rc));
	}
	write_done(s, &w, p);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	free(v);
	return rc;
}

/* ---- lookups and reads ---- */

int cs_has(struct cs_store *s, const uint8_t id[static CS_ID_LEN], uint32_t *ret_len)
{
	uint32_t slot;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	slot = cs__index_find(&s->ix, id);
	if (slot != CS_NO_SLOT) {
		const struct cs_entry *e = cs__index_at(&s->ix, slot);

		if (!(e->lenf & CS_E_WRITING)) {
			*ret_len = e->lenf & CS_E_LEN_MASK;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void cs__touch(struct cs_store *s, const uint8_t id[static CS_ID_LEN])
{
	uint32_t slot;

	pthread_mutex_lock(&s->lock);
	if ((slot = cs__index_find(&s->ix, id)) != CS_NO_SLOT)
		touch(s, cs__index_at(&s->ix, slot));
	pthread_mutex_unlock(&s->lock);
}

int cs__lookup_for_read(struct cs_store *s, const uint8_t id[static CS_ID_LEN], uint64_t *ret_loc,
			uint32_t *ret_len, struct cs_pack **ret_pack)
{
	struct cs_entry *e;
	struct cs_pack *p;
	uint32_t slot;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	slot = cs__index_find(&s->ix, id);
	if (slot != CS_NO_SLOT) {
		e = cs__index_at(&s->ix, slot);
		if (!(e->lenf & CS_E_WRITING) && (p = cs__pack_find(s, cs__loc_pack(e->loc)))) {
			touch(s, e);
			p->refs++;
			*ret_loc = e->loc;
			*ret_len = e->lenf & CS_E_LEN_MASK;
			*ret_pack = p;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int cs__verify(const struct cs_pack *p, uint64_t loc, const uint8_t id[static CS_ID_LEN],
	       uint32_t len, const uint8_t *hdr, const uint8_t *data, size_t got)
{
	struct cs_rec r;

	if (got < CS_REC_HDR_LEN + (size_t)len)
		return -EBADMSG; /* the file ends inside the record */
	if (cs__rec_decode(hdr, CS_REC_HDR_LEN, cs__rec_seed(p->salt, loc), &r) < 0)
		return -EBADMSG;
	if (r.type != CS_REC_CHUNK || r.len != len || memcmp(r.id, id, CS_ID_LEN) != 0)
		return -EBADMSG;
	if (cs__xxh(data, len, 0) != r.data_hash)
		return -EBADMSG;
	return 0;
}

int cs__read_failed(struct cs_store *s, const uint8_t id[static CS_ID_LEN], uint64_t loc)
{
	uint32_t slot;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	slot = cs__index_find(&s->ix, id);
	if (slot != CS_NO_SLOT) {
		struct cs_entry *e = cs__index_at(&s->ix, slot);

		if (e->loc == loc && !(e->lenf & CS_E_WRITING)) {
			/*
			 * Drop it so it can be fetched again. The delete record that
			 * makes the drop survive a restart is written by the
			 * maintenance thread: the caller may be the event loop, which
			 * must not block on the disk.
			 */
			if (!s->opts.read_only && s->ndropped < s->dropped_cap) {
				struct cs_victim *v = &s->dropped[s->ndropped++];

				memcpy(v->id, id, CS_ID_LEN);
				v->loc = loc;
				v->len = e->lenf & CS_E_LEN_MASK;
				pthread_cond_signal(&s->maint_cond);
			}
			entry_remove(s, slot);
			s->st.corrupt++;
			rc = -EBADMSG;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int preadv_full(int fd, struct iovec *iov, int n, uint64_t off, size_t *ret_got)
{
	size_t got = 0;

	while (n > 0) {
		ssize_t r = preadv(fd, iov, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		off += (uint64_t)r;
		while (n > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	*ret_got = got;
	return 0;
}

int cs_get(struct cs_store *s, const uint8_t id[static CS_ID_LEN], uint8_t **ret_buf,
	   size_t *ret_len)
{
	/* Twice at most: the first location may have been evicted and re-put meanwhile. */
	for (int attempt = 0; attempt < 2; attempt++) {
		uint8_t hdr[CS_REC_HDR_LEN], *buf;
		struct iovec iov[2];
		struct cs_pack *p;
		uint64_t loc;
		uint32_t len;
		size_t got = 0;
		int rc;

		if ((rc = cs__lookup_for_read(s, id, &loc, &len, &p)) < 0)
			return rc;
		if (!(buf = malloc(len ? len : 1))) {
			rc = -ENOMEM;
		} else {
			iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
			iov[1] = (struct iovec){ .iov_base = buf, .iov_len = len };
			rc = preadv_full(p->fd, iov, 2, cs__loc_off(loc), &got);
			if (rc == 0)
				rc = cs__verify(p, loc, id, len, hdr, buf, got);
		}
		pthread_mutex_lock(&s->lock);
		cs__pack_unref(s, p);
		if (rc == 0) {
			s->st.gets++;
			s->st.get_bytes += len;
		}
		pthread_mutex_unlock(&s->lock);
		if (rc == 0) {
			*ret_buf = buf;
			*ret_len = len;
			return 0;
		}
		free(buf);
		if (rc != -EBADMSG)
			return rc;
		if ((rc = cs__read_failed(s, id, loc)) == -EBADMSG)
			return rc;
	}
	return -ENOENT;
}

/* ---- pins ---- */

static int pin_change(struct cs_store *s, const uint8_t id[static CS_ID_LEN], bool pin)
{
	struct cs_entry *e;
	uint32_t slot;
	int rc = 0;

	if (s->opts.read_only)
		return -EROFS;
	pthread_mutex_lock(&s->lock);
	slot = cs__index_find(&s->ix, id);
	if (slot == CS_NO_SLOT || (cs__index_at(&s->ix, slot)->lenf & CS_E_WRITING)) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	e = cs__index_at(&s->ix, slot);
	if (pin)
		mark_entry(s, e); /* pinned during a mark round: referenced */
	if (!!(e->lenf & CS_E_PINNED) != pin)
		rc = change_pin(s, id, e, pin);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int cs_pin(struct cs_store *s, const uint8_t id[static CS_ID_LEN])
{
	return pin_change(s, id, true);
}

int cs_unpin(struct cs_store *s, const uint8_t id[static CS_ID_LEN])
{
	return pin_change(s, id, false);
}

/* ---- the maintenance thread ---- */

/* Write delete records for @v (dropped corrupt records). Lock held; dropped for the write. */
static void write_deletes(struct cs_store *s, const struct cs_victim *v, size_t n)
{
	uint64_t size = (uint64_t)n * CS_REC_HDR_LEN, off;
	struct cs_pack *p;
	struct cs_wr w;
	uint8_t *buf;
	int rc;

	if (!(buf = malloc(size)))
		return;
	if (check_space(s, size) < 0 || reserve(s, size, 0, &w, &p, &off) < 0) {
		free(buf);
		return;
	}
	pthread_mutex_unlock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		struct cs_rec r = { .type = CS_REC_DELETE, .ref = v[i].loc };
		uint64_t loc = cs__loc(p->no, off + i * CS_REC_HDR_LEN);

		memcpy(r.id, v[i].id, CS_ID_LEN);
		cs__rec_encode(buf + i * CS_REC_HDR_LEN, &r, cs__rec_seed(p->salt, loc));
	}
	{
		struct iovec iov = { .iov_base = buf, .iov_len = (size_t)size };

		rc = pwritev_full(p->fd, &iov, 1, off);
	}
	free(buf);
	pthread_mutex_lock(&s->lock);
	if (rc == 0)
		for (size_t i = 0; i < n; i++)
			(void)punch_queue(s, w.ticket, v[i].loc, v[i].len);
	write_done(s, &w, p);
}

#define CKPT_EMPTY_PACK_MS 30000

static void *maint_main(void *arg)
{
	struct cs_store *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->maint_stop) {
		struct timespec ts;
		uint64_t now;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += MAINT_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&s->maint_cond, &s->lock, &ts);
		if (s->maint_stop)
			break;
		if (s->ndropped) {
			struct cs_victim v[64];
			size_t n = P2P_MIN(s->ndropped, ARRAY_SIZE(v));

			memcpy(v, s->dropped, n * sizeof(v[0]));
			memmove(s->dropped, s->dropped + n, (s->ndropped - n) * sizeof(v[0]));
			s->ndropped -= n;
			write_deletes(s, v, n);
		}
		now = tm_mono_ms();
		if (s->npunch) {
			/*
			 * Punch what a sync already made durable; if the oldest has
			 * waited a second for one, sync here.
			 */
			uint64_t ready = s->synced_seq, snap = s->seq;
			bool any = false, stale = now - s->punch_since_ms >= PUNCH_DELAY_MS;

			for (size_t i = 0; i < s->npunch && !any; i++)
				any = s->punch[i].ticket <= ready;
			pthread_mutex_unlock(&s->lock);
			if (any)
				do_punches(s, ready);
			else if (stale && cs__sync_upto(s, snap) == 0)
				do_punches(s, snap);
			pthread_mutex_lock(&s->lock);
		}
		if (s->ckpt_wanted && (s->since_ckpt >= ckpt_interval(s) ||
				       now - s->ckpt_last_ms >= CKPT_EMPTY_PACK_MS)) {
			int rc;

			s->ckpt_wanted = false;
			s->ckpt_last_ms = now;
			pthread_mutex_unlock(&s->lock);
			if ((rc = cs__ckpt_write(s)) < 0)
				log_debug("index checkpoint: %s", strerror(-rc));
			pthread_mutex_lock(&s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- open ---- */

static int replay(void *arg, uint64_t loc, const struct cs_rec *r)
{
	struct cs_store *s = arg;
	uint32_t slot = cs__index_find(&s->ix, r->id);
	struct cs_entry *e = slot == CS_NO_SLOT ? NULL : cs__index_at(&s->ix, slot);
	int rc;

	switch (r->type) {
	case CS_REC_CHUNK:
		if (e)
			return 0; /* reflected already, or a duplicate copy: keep the first */
		if ((rc = cs__entry_load(s, r->id, loc, r->len, r->flags & CS_REC_F_PINNED,
					 s->clock)) < 0)
			return rc;
		break;
	case CS_REC_DELETE:
		if (e && e->loc == r->ref)
			entry_remove(s, slot);
		break;
	case CS_REC_PIN:
	case CS_REC_UNPIN:
		if (e && e->loc == r->ref)
			set_pinned(s, e, r->type == CS_REC_PIN);
		break;
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Open every pack file in the directory. */
static int load_packs(struct cs_store *s)
{
	uint32_t *nos = NULL, n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, rc = 0;

	if ((fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	if (!(d = fdopendir(fd))) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((de = readdir(d))) {
		unsigned no;
		char tail;

		if (strlen(de->d_name) != 13 || sscanf(de->d_name, "%8x.pac%c", &no, &tail) != 2 ||
		    tail != 'k' || no == 0 || no > CS_PACK_NO_MAX)
			continue;
		if (n == cap) {
			uint32_t *nn = realloc(nos, (cap = cap ? cap * 2 : 64) * sizeof(*nn));

			if (!nn) {
				rc = -ENOMEM;
				goto out;
			}
			nos = nn;
		}
		nos[n++] = no;
	}
	if (n)
		qsort(nos, n, sizeof(*nos), cmp_u32);
	for (uint32_t i = 0; i < n; i++) {
		struct cs_pack *p = NULL;
		char name[32];

		rc = pack_open(s, nos[i], &p);
		if (rc == -EPROTO || rc == -EBADMSG) {
			/*
			 * No valid header: records cannot be checked without its salt.
			 * A crash while the newest pack was being created leaves this;
			 * anything else is damage, reported when its chunks are read.
			 */
			log_debug("pack %08x has no valid header; ignored", nos[i]);
			pack_name(name, nos[i]);
			if (i == n - 1 && !s->opts.read_only)
				(void)unlinkat(s->dirfd, name, 0);
			rc = 0;
			continue;
		}
		if (rc < 0)
			goto out;
		if ((rc = pack_table_add(s, p)) < 0) {
			pack_close(p);
			goto out;
		}
	}
out:
	closedir(d);
	free(nos);
	return rc;
}

static int replay_tail(struct cs_store *s, uint64_t cover)
{
	uint32_t cpack = cs__loc_pack(cover);

	for (uint32_t i = 0; i < s->npacks; i++) {
		struct cs_pack *p = s->packs[i];
		uint64_t start, valid_end, nread;
		int rc;

		if (p->no < cpack)
			continue;
		start = p->no == cpack ? cs__loc_off(cover) : CS_PACK_HDR_LEN;
		if (start > p->size) {
			/* The checkpoint saw more than the file holds: appends go after what is there. */
			p->size = P2P_ALIGN_UP(P2P_MAX(p->size, (uint64_t)CS_PACK_HDR_LEN), 8ULL);
			s->ckpt_wanted = true;
			continue;
		}
		rc = cs__pack_scan(p->fd, p->no, p->salt, start, p->size, replay, s, &valid_end,
				   &nread);
		s->st.open_scan_bytes += nread;
		if (rc < 0)
			return rc;
		if (i == s->npacks - 1 && valid_end < p->size) {
			/* Torn or garbage tail of the newest pack: appends continue after the last valid record. */
			if (!s->opts.read_only && ftruncate(p->fd, (off_t)valid_end) < 0)
				return -errno;
			log_debug("pack %08x: dropped %llu bytes of torn tail", p->no,
				  (unsigned long long)(p->size - valid_end));
			p->size = valid_end;
		}
	}
	return 0;
}

static void resolve_opts(struct cs_store *s, const struct cs_store_opts *o)
{
	if (o)
		s->opts = *o;
	if (!s->opts.cache_quota)
		s->opts.cache_quota = DEF_QUOTA;
	if (!s->opts.pack_size)
		s->opts.pack_size = DEF_PACK;
	s->opts.pack_size = P2P_MIN(P2P_MAX(s->opts.pack_size, MIN_PACK), MAX_PACK);
	if (!s->opts.mem_cache)
		s->opts.mem_cache = DEF_MEM;
}

int cs_store_open(const char *dir, const struct cs_store_opts *opts, struct cs_store **ret_store)
{
	uint64_t t0 = tm_mono_ns(), cover = 0;
	struct cs_store *s;
	struct statvfs v;
	bool have_ckpt;
	int rc;

	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	resolve_opts(s, opts);
	s->dirfd = -1;
	s->mark_val = CS_E_MARK;
	atomic_init(&s->direct_writes, true);
	s->ckpt_min = CKPT_MIN_INTERVAL;
	s->rng = rand64() | 1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->wlock, NULL);
	pthread_mutex_init(&s->ckpt_lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->maint_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (!(s->dir = strdup(dir))) {
		rc = -ENOMEM;
		goto err;
	}
	if (!s->opts.read_only && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		goto err;
	}
	if ((s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = -errno;
		goto err;
	}
	if (flock(s->dirfd, (s->opts.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto err;
	}
	if (fstatvfs(s->dirfd, &v) < 0) {
		rc = -errno;
		goto err;
	}
	s->min_free = s->opts.min_free
			  ? s->opts.min_free
			  : P2P_MIN((uint64_t)v.f_blocks * v.f_frsize / 100, (uint64_t)GiB);
	statfs_refresh(s);
	s->dropped_cap = 1024;
	if (!(s->dropped = calloc(s->dropped_cap, sizeof(*s->dropped)))) {
		rc = -ENOMEM;
		goto err;
	}
	if ((rc = cs__index_init(&s->ix, rand64(), 0)) < 0)
		goto err;
	if (!s->opts.read_only)
		(void)unlinkat(s->dirfd, "index.tmp", 0);
	if ((rc = load_packs(s)) < 0)
		goto err;

	rc = cs__ckpt_read(s, &cover);
	if (rc == -ENOMEM)
		goto err;
	have_ckpt = rc == 0;
	if (rc < 0 && rc != -ENOENT)
		log_debug("%s: index checkpoint unusable (%s); scanning the packs", dir,
			  strerror(-rc));
	if (!have_ckpt)
		cover = cs__loc(s->npacks ? s->packs[0]->no : 1, CS_PACK_HDR_LEN);
	if ((rc = replay_tail(s, cover)) < 0)
		goto err;
	s->ckpt_cover = have_ckpt ? cover : 0;

	if (!s->npacks) {
		struct cs_pack *p;

		if (s->opts.read_only) {
			rc = -ENOENT;
			goto err;
		}
		if ((rc = pack_create(s, 1, &p)) < 0)
			goto err;
		if ((rc = pack_table_add(s, p)) < 0) {
			pack_close(p);
			goto err;
		}
	}
	s->cur = s->packs[s->npacks - 1];
	/* Old packs left empty (their deletes covered by the checkpoint) go now. */
	if (!s->opts.read_only && have_ckpt)
		cs__packs_retire(s, cover);
	if (!s->opts.read_only &&
	    (!have_ckpt || s->st.open_scan_bytes > ckpt_interval(s) / 2 || s->ckpt_wanted))
		s->ckpt_wanted = true;
	s->since_ckpt = s->st.open_scan_bytes;
	s->st.open_usec = (tm_mono_ns() - t0) / 1000;
	if (!s->opts.read_only) {
		if ((rc = pthread_create(&s->maint, NULL, maint_main, s)) != 0) {
			rc = -rc;
			goto err;
		}
		s->maint_running = true;
	}
	*ret_store = s;
	return 0;
err:
	for (uint32_t i = 0; i < s->npacks; i++)
		pack_close(s->packs[i]);
	free(s->packs);
	cs__index_done(&s->ix);
	free(s->dropped);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->dir);
	pthread_cond_destroy(&s->maint_cond);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->ckpt_lock);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->wlock);
	free(s);
	return rc;
}

int cs_store_checkpoint(struct cs_store *s)
{
	if (s->opts.read_only)
		return -EROFS;
	return cs__ckpt_write(s);
}

int cs_store_close(struct cs_store *s)
{
	int rc = 0, r;

	if (!s)
		return 0;
	if (s->maint_running) {
		pthread_mutex_lock(&s->lock);
		s->maint_stop = true;
		pthread_cond_signal(&s->maint_cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->maint, NULL);
		s->maint_running = false;
	}
	cs__mem_free(s);
	if (!s->opts.read_only) {
		pthread_mutex_lock(&s->lock);
		while (s->ndropped) {
			size_t n = s->ndropped;

			s->ndropped = 0;
			write_deletes(s, s->dropped, n);
		}
		pthread_mutex_unlock(&s->lock);
		if ((rc = cs_store_sync(s)) == 0)
			do_punches(s, s->seq);
		if ((r = cs__ckpt_write(s)) < 0 && rc == 0)
			rc = r;
	}
	for (uint32_t i = 0; i < s->npacks; i++)
		pack_close(s->packs[i]);
	free(s->packs);
	free(s->punch);
	free(s->dropped);
	cs__index_done(&s->ix);
	close(s->dirfd);
	free(s->dir);
	pthread_cond_destroy(&s->maint_cond);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->ckpt_lock);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->wlock);
	free(s);
	return rc;
}

void cs_store_stats(struct cs_store *s, struct cs_stats *ret_stats)
{
	pthread_mutex_lock(&s->lock);
	*ret_stats = s->st;
	ret_stats->cache_quota = s->opts.cache_quota;
	ret_stats->index_mem = cs__index_mem(&s->ix);
	ret_stats->disk_bytes = 0;
	for (uint32_t i = 0; i < s->npacks; i++)
		ret_stats->disk_bytes += s->packs[i]->alloc;
	pthread_mutex_unlock(&s->lock);
	ret_stats->mem_cache_bytes = atomic_load(&s->mem_bytes);
}
