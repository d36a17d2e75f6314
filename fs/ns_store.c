// SPDX-License-Identifier: MIT
/*
 * fs/ns_store.c - the namespace on disk: a snapshot of heads ("ns.snap")
 * plus an append-only log of records committed since ("ns.log").
 *
 * Both files: a 40-byte header (magic, version, share public key), then
 * frames of u32 length, u64 XXH3-64 of the record, the signed record. The
 * snapshot is written to a temporary file, fsynced and renamed, so it is
 * always whole; the log is appended with pwrite + fdatasync, and a torn
 * tail (short frame, bad checksum) is cut off at load. Records read back
 * from our own disk are decoded with the full checks but their signatures
 * are not re-verified (that was done when they arrived), so a million
 * entries load in about a second.
 */
#define LOG_SUBSYS "ns"
#include "fs/ns_int.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#define HDR_LEN 40
#define FRAME_HDR 12
#define SNAP_MAGIC 0x50324e53U /* "P2NS" */
#define LOG_MAGIC 0x50324e4cU  /* "P2NL" */
#define FILE_VERSION 1
/* Compact at start-up once the log is this big and bigger than the snapshot. */
#define COMPACT_AT (8 * MiB)

struct ns_commit_item {
	struct ns_entry *e;
	uint64_t hlc;
	uint32_t writer;
	uint32_t off, len; /* the frame within buf */
	bool sign;
};

struct ns_commit {
	struct ns *ns;
	uint64_t at; /* log offset of buf[0] */
	uint8_t *buf;
	size_t len, cap;
	struct ns_commit_item *it;
	size_t n, cap_it;
};

static void hdr_build(uint8_t out[static HDR_LEN], uint32_t magic, const uint8_t *pk)
{
	memset(out, 0, HDR_LEN);
	be32_put(out, magic);
	out[4] = FILE_VERSION;
	memcpy(out + 8, pk, NS_SHARE_PK_LEN);
}

static int hdr_check(const struct ns *ns, const uint8_t *p, size_t len, uint32_t magic,
		     const char *path)
{
	uint8_t want[HDR_LEN];

	hdr_build(want, magic, ns->share_pk);
	if (len < HDR_LEN || memcmp(p, want, 8)) {
		log_error("%s is not a p2pfs namespace file (or from a newer version)", path);
		return -EBADMSG;
	}
	if (memcmp(p + 8, ns->share_pk, NS_SHARE_PK_LEN)) {
		log_error("%s belongs to another share", path);
		return -EBADMSG;
	}
	return 0;
}

static char *path_of(const struct ns *ns, const char *name)
{
	char *p;

	return asprintf(&p, "%s/%s", ns->dir, name) < 0 ? NULL : p;
}

/* Load frames from @p[HDR_LEN..len). Returns the offset of the first bad frame. */
static size_t load_frames(struct ns *ns, const uint8_t *p, size_t len, uint64_t locbit, int *ret_rc)
{
	size_t off = HDR_LEN;

	*ret_rc = 0;
	while (len - off >= FRAME_HDR) {
		uint32_t rl = be32_get(p + off);
		uint64_t sum = be64_get(p + off + 4);
		const uint8_t *r = p + off + FRAME_HDR;
		struct ns_record rec;
		struct ns_entry *e;
		struct ns_head h;
		int rc;

		if (rl > NS_REC_MAX || rl > len - off - FRAME_HDR || XXH3_64bits(r, rl) != sum ||
		    ns_record_decode(r, rl, &rec) < 0)
			break;
		if (!(e = ns__entry_get(ns, rec.id)) ||
		    (rc = ns__head_from_record(ns, &rec, &h)) < 0) {
			*ret_rc = -ENOMEM;
			return off;
		}
		h.state = NS_H_COMMITTED;
		h.loc = locbit | off;
		if ((rc = ns__merge(ns, e, &h)) < 0) {
			*ret_rc = rc;
			return off;
		}
		off += FRAME_HDR + rl;
	}
	return off;
}

static int map_file(int fd, const uint8_t **ret_p, size_t *ret_len)
{
	struct stat st;
	void *p;

	if (fstat(fd, &st) < 0)
		return -errno;
	*ret_len = (size_t)st.st_size;
	*ret_p = NULL;
	if (st.st_size == 0)
		return 0;
	if ((p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED)
		return -errno;
	(void)madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
	*ret_p = p;
	return 0;
}

static int load_snapshot(struct ns *ns)
{
	char *path = path_of(ns, "ns.snap");
	const uint8_t *p;
	size_t len, end;
	int rc;

	if (!path)
		return -ENOMEM;
	if ((ns->snap_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = errno == ENOENT ? 0 : -errno;
		if (rc < 0)
			log_error("cannot open %s: %s", path, strerror(-rc));
		free(path);
		return rc;
	}
	if ((rc = map_file(ns->snap_fd, &p, &len)) < 0)
		goto out;
	if ((rc = hdr_check(ns, p, len, SNAP_MAGIC, path)) == 0) {
		end = load_frames(ns, p, len, NS_LOC_SNAP, &rc);
		if (rc == 0 && end != len) {
			log_error("%s is damaged at offset %zu: the namespace cannot be loaded "
				  "whole; restore the file or move the namespace directory away",
				  path, end);
			rc = -EBADMSG;
		}
		ns->snap_len = len;
	}
	munmap((void *)p, len);
out:
	free(path);
	return rc;
}

static int load_log(struct ns *ns)
{
	char *path = path_of(ns, "ns.log");
	uint8_t hdr[HDR_LEN];
	const uint8_t *p;
	size_t len, end;
	int rc;

	if (!path)
		return -ENOMEM;
	if ((ns->log_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		rc = -errno;
		log_error("cannot open %s: %s", path, strerror(-rc));
		free(path);
		return rc;
	}
	if ((rc = map_file(ns->log_fd, &p, &len)) < 0)
		goto out;
	if (len < HDR_LEN) {
		/* New, or a crash while writing the header: start afresh. */
		hdr_build(hdr, LOG_MAGIC, ns->share_pk);
		if (pwrite(ns->log_fd, hdr, HDR_LEN, 0) != HDR_LEN ||
		    ftruncate(ns->log_fd, HDR_LEN) < 0 || fdatasync(ns->log_fd) < 0)
			rc = errno ? -errno : -EIO;
		ns->log_end = HDR_LEN;
	} else if ((rc = hdr_check(ns, p, len, LOG_MAGIC, path)) == 0) {
		end = load_frames(ns, p, len, 0, &rc);
		if (rc == 0 && end != len) {
			log_warn("%s: dropping %zu bytes of an unfinished write at offset %zu "
				 "(a crash before they were synced)",
				 path, len - end, end);
			if (ftruncate(ns->log_fd, (off_t)end) < 0 || fdatasync(ns->log_fd) < 0)
				rc = -errno;
		}
		ns->log_end = end;
	}
	if (p)
		munmap((void *)p, len);
out:
	free(path);
	return rc;
}

int ns__store_open(struct ns *ns, const char *dir)
{
	int rc;

	if (!(ns->dir = strdup(dir)))
		return -ENOMEM;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		log_error("cannot create %s: %s", dir, strerror(-rc));
		return rc;
	}
	if ((rc = load_snapshot(ns)) < 0 || (rc = load_log(ns)) < 0)
		return rc;
	if (ns->log_end > COMPACT_AT && ns->log_end > ns->snap_len && ns->writable) {
		/* Not fatal: the log stays valid if compaction fails. */
		if ((rc = ns_compact(ns)) < 0)
			log_warn("compacting the namespace log failed: %s", strerror(-rc));
	}
	return 0;
}

void ns__store_close(struct ns *ns)
{
	if (ns->log_fd >= 0)
		close(ns->log_fd);
	if (ns->snap_fd >= 0)
		close(ns->snap_fd);
	ns->log_fd = ns->snap_fd = -1;
}

/* ---- commit ---- */

static int commit_reserve(struct ns_commit *c, size_t n)
{
	if (c->len + n > c->cap) {
		size_t cap = P2P_MAX(c->cap * 2, c->len + n + 64 * KiB);
		uint8_t *nb = realloc(c->buf, cap);

		if (!nb)
			return -ENOMEM;
		c->buf = nb;
		c->cap = cap;
	}
	if (c->n == c->cap_it) {
		size_t cap = c->cap_it ? c->cap_it * 2 : 64;
		struct ns_commit_item *ni = realloc(c->it, cap * sizeof(*ni));

		if (!ni)
			return -ENOMEM;
		c->it = ni;
		c->cap_it = cap;
	}
	return 0;
}

static int commit_add(struct ns_commit *c, struct ns_entry *e, struct ns_head *h)
{
	struct ns_record rec;
	struct ns_commit_item *it;
	long body;
	int rc;

	if ((rc = commit_reserve(c, FRAME_HDR + NS_REC_MAX)) < 0)
		return rc;
	ns__head_to_record(c->ns, e, h, &rec);
	body = ns_record_encode(&rec, c->buf + c->len + FRAME_HDR, NS_REC_MAX - NS_REC_SIG_LEN);
	if (body < 0)
		return (int)body;
	it = &c->it[c->n++];
	it->e = e;
	it->hlc = h->hlc;
	it->writer = h->writer;
	it->off = (uint32_t)c->len;
	it->len = (uint32_t)(FRAME_HDR + (size_t)body + NS_REC_SIG_LEN);
	it->sign = !h->has_sig;
	if (h->has_sig)
		memcpy(c->buf + c->len + FRAME_HDR + body, ns__head_sig(h), NS_REC_SIG_LEN);
	c->len += it->len;
	h->state = NS_H_COMMITTING;
	c->ns->st.pending--;
	return 0;
}

struct ns_commit *ns_commit_begin(struct ns *ns)
{
	struct ns_commit *c;

	if (ns->inflight || ns->pending.n == 0)
		return NULL;
	if (!(c = calloc(1, sizeof(*c))))
		return NULL;
	c->ns = ns;
	c->at = ns->log_end;
	for (size_t i = 0; i < ns->pending.n; i++) {
		struct ns_entry *e = ns->pending.v[i];
		struct ns_head *hs[1 + NS_VV_MAX * 4 + 2];
		unsigned nh = 0;

		if (e->h.state == NS_H_PENDING)
			hs[nh++] = &e->h;
		for (unsigned j = 0; j < e->nmore; j++)
			if (e->more[j].state == NS_H_PENDING)
				hs[nh++] = &e->more[j];
		for (unsigned j = 0; j < nh; j++)
			if (commit_add(c, e, hs[j]) < 0) {
				/* Out of memory: commit what we have; the rest stays pending. */
				for (size_t k = i; k < ns->pending.n; k++)
					ns->pending.v[k - i] = ns->pending.v[k];
				ns->pending.n -= i;
				goto out;
			}
		e->flags &= ~NS_E_PENDQ;
	}
	ns->pending.n = 0;
out:
	if (c->n == 0) {
		free(c->buf);
		free(c->it);
		free(c);
		return NULL;
	}
	ns->inflight = c;
	return c;
}

int ns_commit_run(struct ns_commit *c)
{
	struct ns *ns = c->ns;
	size_t done = 0;

	for (size_t i = 0; i < c->n; i++) {
		struct ns_commit_item *it = &c->it[i];
		uint8_t *rec = c->buf + it->off + FRAME_HDR;
		uint32_t rl = it->len - FRAME_HDR;

		if (it->sign)
			ns_record_sign(rec, rl - NS_REC_SIG_LEN, ns->share_pk, ns->share_sk);
		be32_put(c->buf + it->off, rl);
		be64_put(c->buf + it->off + 4, XXH3_64bits(rec, rl));
	}
	while (done < c->len) {
		ssize_t n = pwrite(ns->log_fd, c->buf + done, c->len - done, (off_t)(c->at + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	if (fdatasync(ns->log_fd) < 0)
		return -errno;
	return 0;
}

static struct ns_head *find_head(struct ns_entry *e, uint64_t hlc, uint32_t writer)
{
	if (e->h.state == NS_H_COMMITTING && e->h.hlc == hlc && e->h.writer == writer)
		return &e->h;
	for (unsigned i = 0; i < e->nmore; i++)
		if (e->more[i].state == NS_H_COMMITTING && e->more[i].hlc == hlc &&
		    e->more[i].writer == writer)
			return &e->more[i];
	return NULL;
}

void ns_commit_end(struct ns *ns, struct ns_commit *c, int rc)
{
	for (size_t i = 0; i < c->n; i++) {
		struct ns_commit_item *it = &c->it[i];
		struct ns_head *h = find_head(it->e, it->hlc, it->writer);

		if (!h)
			continue; /* superseded while the commit ran */
		if (rc == 0) {
			h->state = NS_H_COMMITTED;
			h->loc = c->at + it->off;
			ns__head_drop_sig(ns, h);
		} else {
			h->state = NS_H_PENDING;
			ns->st.pending++;
			ns__mark_pending(ns, it->e);
		}
	}
	if (rc == 0) {
		ns->log_end = c->at + c->len;
		for (size_t i = 0; ns->committed_fn && i < c->n; i++)
			ns->committed_fn(ns->committed_arg, c->buf + c->it[i].off + FRAME_HDR,
					 c->it[i].len - FRAME_HDR);
	} else if (ftruncate(ns->log_fd, (off_t)c->at) < 0) {
		log_warn("cannot cut the namespace log back after a failed commit: %s",
			 strerror(errno));
	}
	ns->inflight = NULL;
	free(c->buf);
	free(c->it);
	free(c);
}

int ns_commit(struct ns *ns)
{
	struct ns_commit *c;
	int rc;

	if (ns->inflight)
		return -EBUSY;
	if (!(c = ns_commit_begin(ns)))
		return ns->pending.n ? -ENOMEM : 0;
	rc = ns_commit_run(c);
	ns_commit_end(ns, c, rc);
	return rc;
}

/* ---- reading committed records back ---- */

static int read_frame(struct ns *ns, uint64_t loc, uint8_t *buf, size_t *ret_len)
{
	int fd = (loc & NS_LOC_SNAP) ? ns->snap_fd : ns->log_fd;
	off_t off = (off_t)(loc & ~NS_LOC_SNAP);
	uint8_t hdr[FRAME_HDR];
	uint32_t rl;

	if (pread(fd, hdr, FRAME_HDR, off) != FRAME_HDR)
		return -EIO;
	rl = be32_get(hdr);
	if (rl > NS_REC_MAX || pread(fd, buf, rl, off + FRAME_HDR) != (ssize_t)rl)
		return -EIO;
	if (XXH3_64bits(buf, rl) != be64_get(hdr + 4)) {
		log_error("namespace record at %s offset %llu fails its checksum",
			  (loc & NS_LOC_SNAP) ? "ns.snap" : "ns.log", (unsigned long long)off);
		return -EBADMSG;
	}
	*ret_len = rl;
	return 0;
}

int ns_foreach_record(struct ns *ns, ns_record_fn *fn, void *arg)
{
	uint8_t *buf = malloc(NS_REC_MAX);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < ns->nentries && rc == 0; i++) {
		struct ns_entry *e = ns->by_ino[i];

		for (unsigned j = 0; j <= e->nmore && rc == 0; j++) {
			struct ns_head *h = j == 0 ? &e->h : &e->more[j - 1];
			size_t len;

			if (h->state != NS_H_COMMITTED)
				continue;
			if ((rc = read_frame(ns, h->loc, buf, &len)) < 0)
				break;
			if (fn(arg, buf, len))
				rc = 1;
		}
	}
	free(buf);
	return rc < 0 ? rc : 0;
}

/* ---- compaction ---- */

int ns_compact(struct ns *ns)
{
	char *tmp = path_of(ns, "ns.snap.tmp"), *snap = path_of(ns, "ns.snap");
	uint8_t hdr[HDR_LEN], *buf = malloc(NS_REC_MAX + FRAME_HDR);
	uint64_t *locs = NULL, off = HDR_LEN;
	size_t nlocs = 0, cap = 0;
	FILE *f = NULL;
	int fd = -1, dfd, rc = 0;

	if (!tmp || !snap || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	if (ns->inflight) {
		rc = -EBUSY;
		goto out;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    !(f = fdopen(fd, "w"))) {
		rc = -errno;
		goto out;
	}
	fd = -1;
	hdr_build(hdr, SNAP_MAGIC, ns->share_pk);
	if (fwrite(hdr, 1, HDR_LEN, f) != HDR_LEN)
		goto werr;
	for (size_t i = 0; i < ns->nentries; i++) {
		struct ns_entry *e = ns->by_ino[i];

		for (unsigned j = 0; j <= e->nmore; j++) {
			struct ns_head *h = j == 0 ? &e->h : &e->more[j - 1];
			size_t len;

			if (h->state != NS_H_COMMITTED)
				continue;
			if ((rc = read_frame(ns, h->loc, buf + FRAME_HDR, &len)) < 0)
				goto out;
			be32_put(buf, (uint32_t)len);
			be64_put(buf + 4, XXH3_64bits(buf + FRAME_HDR, len));
			if (fwrite(buf, 1, FRAME_HDR + len, f) != FRAME_HDR + len)
				goto werr;
			if (nlocs == cap) {
				uint64_t *nl;

				cap = cap ? cap * 2 : 4096;
				if (!(nl = realloc(locs, cap * sizeof(*nl)))) {
					rc = -ENOMEM;
					goto out;
				}
				locs = nl;
			}
			locs[nlocs++] = NS_LOC_SNAP | off;
			off += FRAME_HDR + len;
		}
	}
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		goto werr;
	if (rename(tmp, snap) < 0)
		goto werr;
	if ((dfd = open(ns->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	/* The new snapshot is durable: switch to it, then empty the log. */
	if (ns->snap_fd >= 0)
		close(ns->snap_fd);
	if ((ns->snap_fd = open(snap, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		goto out;
	}
	nlocs = 0;
	for (size_t i = 0; i < ns->nentries; i++) {
		struct ns_entry *e = ns->by_ino[i];

		for (unsigned j = 0; j <= e->nmore; j++) {
			struct ns_head *h = j == 0 ? &e->h : &e->more[j - 1];

			if (h->state == NS_H_COMMITTED)
				h->loc = locs[nlocs++];
		}
	}
	ns->snap_len = off;
	if (ftruncate(ns->log_fd, HDR_LEN) < 0 || fdatasync(ns->log_fd) < 0)
		goto werr;
	ns->log_end = HDR_LEN;
	goto out;
werr:
	rc = errno ? -errno : -EIO;
	log_error("writing the namespace snapshot failed: %s", strerror(-rc));
	(void)unlink(tmp);
out:
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	free(locs);
	free(buf);
	free(tmp);
	free(snap);
	return rc;
}
