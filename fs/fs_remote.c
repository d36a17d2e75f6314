// SPDX-License-Identifier: MIT
/*
 * fs/fs_remote.c - what other members change: namespace records applied,
 * the kernel's caches told, open files kept consistent; and chunks that
 * are not stored here asked of the network.
 *
 * Consistency for open files is close-to-open (as NFS): a file open when a
 * new version arrives keeps reading the version it opened; the next open
 * after every handle closed sees the new one. Names, attributes and
 * directory listings change at once: the kernel's cached entries and
 * attributes are invalidated as records arrive.
 *
 * The kernel is told on a worker thread: an inode invalidation may wait for
 * page locks that a read in flight holds, and that read is answered by the
 * loop thread.
 */
#define LOG_SUBSYS "fs"
#include "fs/fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fs_inval {
	struct fs_inval *next;
	uint64_t parent, ino;
	size_t namelen;
	char name[];
};

struct inval_work {
	struct ev_work w;
	struct fs *fs;
	struct fuse_session *se;
	struct fs_inval *list;
};

void fs_set_fetch(struct fs *fs, fs_fetch_fn *fn, void *arg)
{
	fs->fetch_fn = fn;
	fs->fetch_arg = arg;
}

void fs_set_stored_cb(struct fs *fs, fs_stored_fn *fn, void *arg)
{
	fs->stored_fn = fn;
	fs->stored_arg = arg;
}

void fs_announce_stored(struct fs *fs, const struct mf *m, const struct ns_content *c)
{
	uint8_t *ids;
	size_t n = 0;

	if (!fs->stored_fn || !(ids = malloc((m->n + 1) * CS_ID_LEN)))
		return;
	for (size_t i = 0; i < m->n; i++)
		memcpy(ids + CS_ID_LEN * n++, m->c[i].id, CS_ID_LEN);
	if (c->kind == NS_CONTENT_MANIFEST)
		memcpy(ids + CS_ID_LEN * n++, c->id, CS_ID_LEN);
	fs->stored_fn(fs->stored_arg, c->kind != NS_CONTENT_NONE ? c->id : NULL, ids, n);
	free(ids);
}

int fs_chunk_read(struct fs *fs, const uint8_t id[static CS_ID_LEN], const struct ns_content *file,
		  bool urgent, cs_read_fn *cb, void *arg, struct cs_buf **ret_buf)
{
	int rc = cs_read(fs->cs, id, cb, arg, ret_buf);

	if (rc == -ENOENT && fs->fetch_fn) {
		rc = fs->fetch_fn(fs->fetch_arg, id,
				  file && file->kind != NS_CONTENT_NONE ? file->id : NULL, urgent,
				  cb, arg);
		if (rc == 0)
			fs->st.fetches++;
	}
	return rc;
}

static void inval_run(struct ev_work *w)
{
	struct inval_work *iw = container_of(w, struct inval_work, w);

	for (struct fs_inval *i = iw->list; i; i = i->next) {
		/* -ENOENT: the kernel holds nothing of it; nothing to drop. */
		if (i->namelen)
			(void)fuse_lowlevel_notify_inval_entry(iw->se, i->parent, i->name,
							       i->namelen);
		(void)fuse_lowlevel_notify_inval_inode(iw->se, i->ino, 0, 0);
	}
}

static void inval_kick(struct fs *fs);

static void inval_done(struct ev_work *w)
{
	struct inval_work *iw = container_of(w, struct inval_work, w);
	struct fs *fs = iw->fs;

	while (iw->list) {
		struct fs_inval *i = iw->list;

		iw->list = i->next;
		free(i);
	}
	free(iw);
	fs->nwork--;
	fs->inval_running = false;
	inval_kick(fs);
}

static void inval_drop(struct fs *fs)
{
	while (fs->inval) {
		struct fs_inval *i = fs->inval;

		fs->inval = i->next;
		free(i);
	}
	fs->inval_tail = &fs->inval;
}

static void inval_kick(struct fs *fs)
{
	struct inval_work *iw;

	if (fs->inval_running || !fs->inval)
		return;
	if (!fs->se || fs->session_ended || fs->shutting_down) {
		inval_drop(fs);
		return;
	}
	if (!(iw = calloc(1, sizeof(*iw)))) {
		inval_drop(fs); /* the caches time out by themselves */
		return;
	}
	iw->fs = fs;
	iw->se = fs->se;
	iw->list = fs->inval;
	fs->inval = NULL;
	fs->inval_tail = &fs->inval;
	fs->inval_running = true;
	fs->nwork++;
	ev_work_submit(fs->pool, fs->loop, &iw->w, inval_run, inval_done);
}

/* ns_apply changed what (@parent, @name) or @ino shows. */
static void on_change(void *arg, uint64_t parent, const char *name, uint64_t ino)
{
	struct fs *fs = arg;
	struct fs_node *n = fs_node_find(fs, ino);
	size_t nl = name ? strlen(name) : 0;
	struct fs_inval *i;

	fs->st.remote_changes++;
	if (n && n->mf_state == FS_MF_READY && !n->is_dirty && !n->job) {
		if (!n->opens && !n->busy) {
			mf_done(&n->mf);
			n->mf_state = FS_MF_NONE;
			n->stale = false;
		} else {
			n->stale = true; /* reloaded at the first open after the last close */
		}
	}
	if (!(i = malloc(sizeof(*i) + nl + 1)))
		return;
	i->next = NULL;
	i->parent = parent;
	i->ino = ino;
	i->namelen = nl;
	memcpy(i->name, name ? name : "", nl + 1);
	*fs->inval_tail = i;
	fs->inval_tail = &i->next;
}

int fs_apply_record(struct fs *fs, const uint8_t *rec, size_t len)
{
	int rc;

	if (!fs->change_cb_set) {
		ns_set_change_cb(fs->ns, on_change, fs);
		fs->change_cb_set = true;
	}
	rc = ns_apply(fs->ns, rec, len);
	if (rc > 0)
		fs_mark_ns_dirty(fs);
	inval_kick(fs);
	return rc;
}

void fs_remote_done(struct fs *fs)
{
	inval_drop(fs);
}

void fs_set_holders_cb(struct fs *fs, fs_holders_fn *fn, void *arg)
{
	fs->holders_fn = fn;
	fs->holders_arg = arg;
}

static int get_local(void *arg, const uint8_t id[static CS_ID_LEN], uint8_t **ret_buf,
		     size_t *ret_len)
{
	return cs_get(arg, id, ret_buf, ret_len);
}

int fs_file_presence(struct fs *fs, uint64_t ino, uint64_t *ret_local, uint64_t *ret_total,
		     unsigned *ret_holders)
{
	struct fs_node *n = fs_node_find(fs, ino);
	struct ns_content c;
	struct ns_attr a;
	struct mf m;
	uint8_t *ids = NULL;
	int rc;

	*ret_local = *ret_total = 0;
	*ret_holders = 0;
	if ((rc = ns_get_content(fs->ns, ino, &c)) < 0 || (rc = ns_getattr(fs->ns, ino, &a)) < 0)
		return rc;
	if (a.type != NS_FILE)
		return -EISDIR;
	*ret_total = a.size;
	mf_init(&m);
	if (c.kind == NS_CONTENT_NONE)
		return 0;
	if (n && n->mf_state == FS_MF_READY && !memcmp(&n->content, &c, sizeof(c))) {
		rc = mf_copy(&m, &n->mf);
	} else if (c.kind == NS_CONTENT_CHUNK) {
		rc = mf_append(&m, c.id, (uint32_t)P2P_MIN(a.size, (uint64_t)CS_CHUNK_MAX_LIMIT));
	} else {
		/* From the store only: this never waits on the network. */
		rc = mf_load(c.id, get_local, fs->cs, &m);
		if (rc < 0) {
			mf_done(&m);
			if (fs->holders_fn)
				*ret_holders = fs->holders_fn(fs->holders_arg, c.id, 1);
			return 0;
		}
	}
	if (rc < 0)
		goto out;
	if ((ids = malloc((m.n + 1) * CS_ID_LEN))) {
		for (size_t i = 0; i < m.n; i++) {
			uint32_t len;

			if (cs_has(fs->cs, m.c[i].id, &len) == 0)
				*ret_local += m.c[i].len;
			memcpy(ids + i * CS_ID_LEN, m.c[i].id, CS_ID_LEN);
		}
		if (fs->holders_fn)
			*ret_holders = fs->holders_fn(fs->holders_arg, ids, m.n);
		free(ids);
	}
	rc = 0;
out:
	mf_done(&m);
	return rc;
}
