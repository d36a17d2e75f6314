// SPDX-License-Identifier: MIT
/*
 * chunkstore/ckpt.c - index checkpoints: written atomically (temp file,
 * fdatasync, rename, fsync of the directory), loaded at open so that only
 * the records written after it are replayed. Format in cs_format.h.
 *
 * A checkpoint is fuzzy: puts go on while it is written. It first fixes its
 * cover, the location of the oldest write still in flight (or the append
 * offset), makes everything before the cover durable, then copies the index
 * in batches, taking the lock per batch so that puts are not held up. An
 * entry copied may change after its batch; every change that matters is a
 * record at or after the cover (puts, deletes, pins all are), and replay is
 * idempotent, so opening gives the same index either way. The one change
 * that has no record, cs_mark_end()'s unpinning, is safe to lose. The copied
 * entries are made durable before the rename, so the checkpoint never names
 * a record that a crash could tear.
 *
 * Invariants:
 *  1. "index" is always a complete checkpoint or absent.
 *  2. Every record before a durable checkpoint's cover is durable.
 *  3. One checkpoint is written at a time (s->ckpt_lock).
 */
#define LOG_SUBSYS "cs"
#include "chunkstore/cs_int.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#define BATCH 21845U /* entries per write: just under 1 MiB */

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf = (const uint8_t *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int write_entries(struct cs_store *s, int fd, uint64_t *ret_count, uint64_t *ret_hash,
			 uint64_t *ret_snap)
{
	uint8_t *buf = malloc((size_t)BATCH * CS_CKPT_ENT_LEN);
	XXH3_state_t *st = XXH3_createState();
	uint64_t off = CS_CKPT_HDR_LEN, count = 0, snap = 0;
	uint32_t slot = 0;
	int rc = 0;

	if (!buf || !st) {
		rc = -ENOMEM;
		goto out;
	}
	(void)XXH3_64bits_reset(st);
	for (bool last = false; !last;) {
		size_t n = 0;

		pthread_mutex_lock(&s->lock);
		for (; slot < s->ix.nslots && n < BATCH; slot++) {
			const struct cs_entry *e = cs__index_at(&s->ix, slot);
			struct cs_ckpt_ent ce;

			if ((e->lenf & (CS_E_LIVE | CS_E_WRITING)) != CS_E_LIVE)
				continue;
			memcpy(ce.id, e->id, CS_ID_LEN);
			ce.loc = e->loc;
			ce.len = e->lenf & CS_E_LEN_MASK;
			ce.pinned = e->lenf & CS_E_PINNED;
			ce.atime = e->atime;
			cs__ckpt_ent_encode(buf + n * CS_CKPT_ENT_LEN, &ce);
			n++;
		}
		if (slot >= s->ix.nslots) {
			last = true;
			snap = s->seq; /* every entry copied was written by a ticket <= this */
		}
		pthread_mutex_unlock(&s->lock);
		if (!n)
			continue;
		if ((rc = pwrite_full(fd, buf, n * CS_CKPT_ENT_LEN, off)) < 0)
			goto out;
		(void)XXH3_64bits_update(st, buf, n * CS_CKPT_ENT_LEN);
		off += n * CS_CKPT_ENT_LEN;
		count += n;
	}
	*ret_count = count;
	*ret_hash = XXH3_64bits_digest(st);
	*ret_snap = snap;
out:
	XXH3_freeState(st);
	free(buf);
	return rc;
}

int cs__ckpt_write(struct cs_store *s)
{
	struct cs_ckpt_hdr h = { 0 };
	uint8_t hb[CS_CKPT_HDR_LEN];
	uint64_t snap;
	int fd = -1, rc;

	pthread_mutex_lock(&s->ckpt_lock);
	pthread_mutex_lock(&s->lock);
	h.cover = s->wr_head ? s->wr_head->loc : cs__loc(s->cur->no, s->cur->size);
	h.clock = s->clock;
	snap = s->seq;
	s->since_ckpt = 0;
	pthread_mutex_unlock(&s->lock);
	if ((rc = cs__sync_upto(s, snap)) < 0)
		goto out;
	fd = openat(s->dirfd, "index.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = write_entries(s, fd, &h.count, &h.entries_hash, &snap)) < 0)
		goto out;
	if ((rc = cs__sync_upto(s, snap)) < 0)
		goto out;
	cs__ckpt_hdr_encode(hb, &h);
	if ((rc = pwrite_full(fd, hb, sizeof(hb), 0)) < 0)
		goto out;
	if (fdatasync(fd) < 0 || close(fd) < 0) {
		rc = -errno;
		fd = -1;
		goto out;
	}
	fd = -1;
	if (renameat(s->dirfd, "index.tmp", s->dirfd, "index") < 0 || fsync(s->dirfd) < 0) {
		rc = -errno;
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	s->ckpt_cover = h.cover;
	s->st.checkpoints++;
	pthread_mutex_unlock(&s->lock);
	cs__packs_retire(s, h.cover);
out:
	if (fd >= 0) {
		close(fd);
		(void)unlinkat(s->dirfd, "index.tmp", 0);
	}
	pthread_mutex_unlock(&s->ckpt_lock);
	return rc;
}

static int load_ent(void *arg, const struct cs_ckpt_ent *e)
{
	struct cs_store *s = arg;
	struct cs_pack *p = cs__pack_find(s, cs__loc_pack(e->loc));
	int rc;

	if (!p || cs__loc_off(e->loc) + cs__rec_size(e->len) > p->size) {
		/* Its pack is gone or shorter than the record: lost, and said so in the stats. */
		s->st.corrupt++;
		return 0;
	}
	rc = cs__entry_load(s, e->id, e->loc, e->len, e->pinned, e->atime);
	return rc == -EEXIST ? 0
			     : rc; /* copied twice by a fuzzy checkpoint: either copy is right */
}

static void load_ahead(void *arg, const uint8_t id[static CS_ID_LEN])
{
	cs__index_prefetch(&((struct cs_store *)arg)->ix, id);
}

int cs__ckpt_read(struct cs_store *s, uint64_t *ret_cover)
{
	struct cs_ckpt_hdr h;
	struct stat st;
	int fd, rc;

	if ((fd = openat(s->dirfd, "index", O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > CS_CKPT_HDR_LEN) {
		/* Size the table once rather than doubling through a large load. */
		uint64_t n = ((uint64_t)st.st_size - CS_CKPT_HDR_LEN) / CS_CKPT_ENT_LEN;
		uint64_t seed = s->ix.seed;

		if (n <= CS_INDEX_MAX) {
			cs__index_done(&s->ix);
			if ((rc = cs__index_init(&s->ix, seed, n)) < 0) {
				close(fd);
				return rc;
			}
		}
	}
	pthread_mutex_lock(&s->lock);
	rc = cs__ckpt_load(fd, &h, load_ent, load_ahead, s);
	if (rc < 0) {
		int r = cs__index_reset(s);

		s->st.corrupt = 0;
		if (r < 0)
			rc = r;
	} else {
		s->clock = h.clock;
		*ret_cover = h.cover;
	}
	pthread_mutex_unlock(&s->lock);
	close(fd);
	return rc;
}
