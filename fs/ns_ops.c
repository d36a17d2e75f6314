// SPDX-License-Identifier: MIT
/*
 * fs/ns_ops.c - the namespace's public face: open/close, queries, local
 * changes (each a new pending head that dominates the entry's heads) and
 * ns_apply() for records from peers.
 */
#define LOG_SUBSYS "ns"
#include "fs/ns_int.h"
#include "common/log.h"
#include "common/tm.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t zero_id[NS_ID_LEN];

uint64_t ns_hlc_now(struct ns *ns)
{
	uint64_t t = tm_real_ms() << 16;

	ns->hlc_last = t > ns->hlc_last ? t : ns->hlc_last + 1;
	return ns->hlc_last;
}

bool ns_read_only(const struct ns *ns)
{
	return !ns->writable;
}

void ns_set_committed_cb(struct ns *ns, ns_committed_fn *fn, void *arg)
{
	ns->committed_fn = fn;
	ns->committed_arg = arg;
}

void ns_set_change_cb(struct ns *ns, ns_change_fn *fn, void *arg)
{
	ns->change_fn = fn;
	ns->change_arg = arg;
}

void ns_get_stats(struct ns *ns, struct ns_stats *ret_stats)
{
	*ret_stats = ns->st;
	ret_stats->mem_bytes = ns->mem;
	ret_stats->log_bytes = ns->log_end;
	ret_stats->snapshot_bytes = ns->snap_len;
}

int ns_open(const char *dir, const struct ns_open_opts *opts, struct ns **ret_ns)
{
	struct ns *ns;
	int rc = -ENOMEM;

	if (sodium_init() < 0)
		return -EIO;
	if (!(ns = calloc(1, sizeof(*ns))))
		return -ENOMEM;
	ns->log_fd = ns->snap_fd = -1;
	memcpy(ns->share_pk, opts->share_pk, NS_SHARE_PK_LEN);
	if (opts->share_sk) {
		memcpy(ns->share_sk, opts->share_sk, NS_SHARE_SK_LEN);
		ns->writable = true;
	}
	ns->self = ns__writer_idx(ns, opts->node_id);
	ns->id_mask = ns->name_mask = 1023;
	if (!(ns->id_tab = ns__calloc(ns, 1024 * sizeof(*ns->id_tab))) ||
	    !(ns->name_tab = ns__calloc(ns, 1024 * sizeof(*ns->name_tab))) ||
	    !(ns->root = ns__entry_get(ns, zero_id)) || !(ns->root->h.name = ns__calloc(ns, 1)) ||
	    !(ns->root->dir = ns__calloc(ns, sizeof(*ns->root->dir))))
		goto err;
	ns->root->h.state = NS_H_IMPLICIT;
	ns->root->h.type = NS_DIR;
	ns->root->h.mode = 0755;
	ns->loading = true;
	rc = ns__store_open(ns, dir);
	ns->loading = false;
	if (rc < 0)
		goto err;
	*ret_ns = ns;
	return 0;
err:
	ns_close(ns);
	return rc;
}

static void head_free_cb(struct ns_head *h, void *arg)
{
	ns__head_free(arg, h);
}

void ns_close(struct ns *ns)
{
	if (!ns)
		return;
	ns__store_close(ns);
	for (size_t i = 0; i < ns->nentries; i++) {
		struct ns_entry *e = ns->by_ino[i];

		ns__heads_foreach(e, head_free_cb, ns);
		free(e->more);
		if (e->dir)
			free(e->dir->v);
		free(e->dir);
		free(e);
	}
	for (size_t i = 0; i < ARRAY_SIZE(ns->cnames); i++)
		while (ns->cnames[i]) {
			struct ns_cname *c = ns->cnames[i];

			ns->cnames[i] = c->next;
			free(c);
		}
	free(ns->by_ino);
	free(ns->id_tab);
	free(ns->name_tab);
	free(ns->writers);
	free(ns->writer_tab);
	free(ns->pending.v);
	free(ns->broken.v);
	free(ns->dir);
	sodium_memzero(ns->share_sk, sizeof(ns->share_sk));
	free(ns);
}

/* ---- queries ---- */

static int get_dir(struct ns *ns, uint64_t ino, struct ns_entry **ret)
{
	struct ns_entry *d = ns__entry_by_ino(ns, ino);

	if (!d || !ns__visible(ns, d))
		return -ENOENT;
	if (d->h.type != NS_DIR)
		return -ENOTDIR;
	*ret = d;
	return 0;
}

static int name_check(const char *name)
{
	size_t len = strlen(name);

	if (len > NS_NAME_MAX)
		return -ENAMETOOLONG;
	return ns_name_ok(name, len) ? 0 : -EINVAL;
}

static struct ns_entry *child(struct ns *ns, struct ns_entry *d, const char *name)
{
	struct ns_entry *e = ns__name_find(ns, d, name);

	return e && (e->flags & NS_E_SHOWN) ? e : NULL;
}

int ns_lookup(struct ns *ns, uint64_t parent, const char *name, uint64_t *ret_ino)
{
	struct ns_entry *d, *e;
	int rc;

	if ((rc = get_dir(ns, parent, &d)) < 0)
		return rc;
	if (strlen(name) > NS_NAME_MAX)
		return -ENAMETOOLONG;
	if (!(e = child(ns, d, name)))
		return -ENOENT;
	*ret_ino = e->ino;
	return 0;
}

static void fill_attr(const struct ns_entry *e, struct ns_attr *a)
{
	bool shown_deleted = e->h.deleted && (e->flags & NS_E_SHOWN);

	a->type = e->h.type;
	a->mode = e->h.mode;
	a->uid = e->h.uid;
	a->gid = e->h.gid;
	a->size = e->h.size;
	a->mtime = e->h.mtime;
	a->ctime = (int64_t)((e->h.hlc >> 16) * 1000000);
	a->deleted = e->h.deleted && !shown_deleted;
	if (a->deleted)
		a->nlink = 0;
	else if (e->h.type == NS_DIR)
		a->nlink = 2 + (e->dir ? e->dir->nsubdirs : 0);
	else
		a->nlink = 1;
}

int ns_getattr(struct ns *ns, uint64_t ino, struct ns_attr *ret_attr)
{
	struct ns_entry *e = ns__entry_by_ino(ns, ino);

	if (!e || e->h.state == NS_H_NONE)
		return -ENOENT;
	fill_attr(e, ret_attr);
	return 0;
}

int ns_readlink(struct ns *ns, uint64_t ino, const char **ret_target)
{
	struct ns_entry *e = ns__entry_by_ino(ns, ino);

	if (!e || e->h.state == NS_H_NONE)
		return -ENOENT;
	if (e->h.type != NS_SYMLINK)
		return -EINVAL;
	*ret_target = e->h.name + strlen(e->h.name) + 1;
	return 0;
}

int ns_get_content(struct ns *ns, uint64_t ino, struct ns_content *ret_content)
{
	struct ns_entry *e = ns__entry_by_ino(ns, ino);

	if (!e || e->h.state == NS_H_NONE)
		return -ENOENT;
	ret_content->kind = e->h.kind;
	memcpy(ret_content->id, e->h.content, CS_ID_LEN);
	return 0;
}

int ns_entry_id(struct ns *ns, uint64_t ino, uint8_t ret_id[static NS_ID_LEN])
{
	struct ns_entry *e = ns__entry_by_ino(ns, ino);

	if (!e)
		return -ENOENT;
	memcpy(ret_id, e->id, NS_ID_LEN);
	return 0;
}

int ns_parent(struct ns *ns, uint64_t ino, uint64_t *ret_parent)
{
	struct ns_entry *e = ns__entry_by_ino(ns, ino);

	if (!e)
		return -ENOENT;
	*ret_parent = e->lparent ? e->lparent->ino : NS_ROOT_INO;
	return 0;
}

int ns_readdir(struct ns *ns, uint64_t dir, uint64_t cookie, ns_readdir_fn *fn, void *arg)
{
	struct ns_entry *d;
	size_t lo, hi;
	int rc;

	if ((rc = get_dir(ns, dir, &d)) < 0)
		return rc;
	if (!d->dir)
		return 0;
	ns__dir_sort(ns, d);
	lo = 0;
	hi = d->dir->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (d->dir->v[mid]->ino <= cookie)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < d->dir->n; i++) {
		struct ns_entry *c = d->dir->v[i];
		struct ns_attr a;

		if (c->lparent != d || !(c->flags & NS_E_SHOWN))
			continue;
		fill_attr(c, &a);
		if (fn(arg, ns__vname(ns, c), c->ino, &a, c->ino))
			break;
	}
	return 0;
}

/* ---- extended attributes (packed: u8 name length, name, u32 value length, value) ---- */

struct xa {
	const uint8_t *name, *val;
	uint8_t nl;
	uint32_t vl;
};

static bool xa_next(struct rbuf *r, struct xa *x)
{
	return rbuf_left(r) && rbuf_u8(r, &x->nl) == 0 && rbuf_ref(r, x->nl, &x->name) == 0 &&
	       rbuf_u32(r, &x->vl) == 0 && rbuf_ref(r, x->vl, &x->val) == 0;
}

static struct ns_entry *xattr_entry(struct ns *ns, uint64_t ino)
{
	struct ns_entry *e = ns__entry_by_ino(ns, ino);

	return e && e->h.state != NS_H_NONE ? e : NULL;
}

long ns_xattr_get(struct ns *ns, uint64_t ino, const char *name, void *buf, size_t size)
{
	struct ns_entry *e = xattr_entry(ns, ino);
	size_t nl = strlen(name);
	struct rbuf r;
	struct xa x;

	if (!e)
		return -ENOENT;
	rbuf_init(&r, e->h.xattrs, e->h.xattrs_len);
	while (xa_next(&r, &x)) {
		if (x.nl != nl || memcmp(x.name, name, nl))
			continue;
		if (size == 0)
			return x.vl;
		if (size < x.vl)
			return -ERANGE;
		if (x.vl)
			memcpy(buf, x.val, x.vl);
		return x.vl;
	}
	return -ENODATA;
}

long ns_xattr_list(struct ns *ns, uint64_t ino, char *buf, size_t size)
{
	struct ns_entry *e = xattr_entry(ns, ino);
	size_t need = 0;
	struct rbuf r;
	struct xa x;

	if (!e)
		return -ENOENT;
	rbuf_init(&r, e->h.xattrs, e->h.xattrs_len);
	while (xa_next(&r, &x)) {
		if (size && need + x.nl + 1 <= size) {
			memcpy(buf + need, x.name, x.nl);
			buf[need + x.nl] = '\0';
		}
		need += x.nl + 1u;
	}
	if (size && need > size)
		return -ERANGE;
	return (long)need;
}

/* ---- local changes ---- */

static int vv_join_add(struct ns_vv *vv, unsigned *n, uint32_t w, uint64_t hlc)
{
	for (unsigned i = 0; i < *n; i++)
		if (vv[i].w == w) {
			if (hlc > vv[i].hlc)
				vv[i].hlc = hlc;
			return 0;
		}
	vv[(*n)++] = (struct ns_vv){ w, hlc };
	return 0;
}

static void vv_join_head(struct ns_vv *vv, unsigned *n, const struct ns_head *h)
{
	if (h->state == NS_H_NONE || h->state == NS_H_IMPLICIT)
		return;
	if (!h->vv)
		(void)vv_join_add(vv, n, h->writer, h->hlc);
	else
		for (unsigned i = 0; i < h->vv_n; i++)
			(void)vv_join_add(vv, n, h->vv[i].w, h->vv[i].hlc);
}

static int by_hlc_desc(const void *a, const void *b)
{
	const struct ns_vv *x = a, *y = b;

	return x->hlc < y->hlc ? 1 : x->hlc > y->hlc ? -1 : 0;
}

/* The version vector of a new local record on @e: the join of its heads plus us. */
static int new_vv(struct ns *ns, struct ns_entry *e, struct ns_head *nh)
{
	struct ns_vv vv[NS_VV_MAX * (NS_VV_MAX * 4 + 3)];
	unsigned n = 0;

	if (e->h.state != NS_H_NONE) {
		vv_join_head(vv, &n, &e->h);
		for (unsigned i = 0; i < e->nmore; i++)
			vv_join_head(vv, &n, &e->more[i]);
	}
	/* A version is newer than everything it has seen, whatever the clocks say. */
	for (unsigned i = 0; i < n; i++)
		if (vv[i].hlc >= nh->hlc)
			nh->hlc = vv[i].hlc + 1;
	if (nh->hlc > ns->hlc_last)
		ns->hlc_last = nh->hlc;
	(void)vv_join_add(vv, &n, ns->self, nh->hlc);
	if (n == 1) {
		nh->vv = NULL;
		nh->vv_n = 0;
		return 0;
	}
	/* Keep the newest NS_VV_MAX (we are the newest of all). */
	qsort(vv, n, sizeof(vv[0]), by_hlc_desc);
	if (n > NS_VV_MAX)
		n = NS_VV_MAX;
	if (!(nh->vv = ns__alloc(ns, n * sizeof(*nh->vv))))
		return -ENOMEM;
	memcpy(nh->vv, vv, n * sizeof(*nh->vv));
	nh->vv_n = (uint8_t)n;
	return 0;
}

/* Stamp @nh as a new local version of @e and merge it. */
static int commit_local(struct ns *ns, struct ns_entry *e, struct ns_head *nh)
{
	int rc;

	nh->hlc = ns_hlc_now(ns);
	nh->writer = ns->self;
	nh->state = NS_H_PENDING;
	nh->loc = 0;
	nh->has_sig = 0;
	ns->st.pending++;
	if (e->nmore) {
		/* This version supersedes concurrent ones: their copies become real
		 * records now, as they stop following from the heads. */
		uint8_t ids[NS_MAX_HEADS][NS_ID_LEN];
		unsigned n = ns__conflict_copies(ns, e, ids, NS_MAX_HEADS);

		for (unsigned i = 0; i < n; i++)
			ns__materialize(ns, ids[i]);
	}
	if ((rc = new_vv(ns, e, nh)) < 0) {
		ns__head_free(ns, nh);
		return rc;
	}
	if ((rc = ns__merge(ns, e, nh)) < 0)
		return rc;
	if (rc == 0)
		return -EIO; /* cannot happen: a new local version dominates */
	ns__mark_pending(ns, e);
	return 0;
}

/* A copy of @e's winner to modify. */
static int head_dup(struct ns *ns, const struct ns_entry *e, struct ns_head *dst)
{
	return ns__head_copy(ns, dst, &e->h);
}

/* Give @nh a new name (keeping a symlink's target). */
static int head_rename(struct ns *ns, struct ns_head *nh, const char *name)
{
	size_t nl = strlen(name) + 1, tl = nh->type == NS_SYMLINK ? nh->target_len + 1u : 0;
	char *s = ns__alloc(ns, nl + tl);

	if (!s)
		return -ENOMEM;
	memcpy(s, name, nl);
	if (tl)
		memcpy(s + nl, nh->name + strlen(nh->name) + 1, tl);
	ns__free(ns, nh->name);
	nh->name = s;
	return 0;
}

/* A directory that is shown only because it still holds live entries comes
 * back to life when it is used again (as a parent of a local change). */
static int resurrect(struct ns *ns, struct ns_entry *d)
{
	int rc;

	for (; d && d != ns->root; d = d->lparent) {
		struct ns_head nh;

		if (!d->h.deleted)
			continue;
		if ((rc = head_dup(ns, d, &nh)) < 0)
			return rc;
		nh.deleted = 0;
		if ((rc = commit_local(ns, d, &nh)) < 0)
			return rc;
	}
	return 0;
}

static int live_entry(struct ns *ns, uint64_t ino, struct ns_entry **ret)
{
	struct ns_entry *e = ns__entry_by_ino(ns, ino);

	if (!ns->writable)
		return -EROFS;
	if (!e || e->h.state == NS_H_NONE || (e->h.deleted && !(e->flags & NS_E_SHOWN)))
		return -ENOENT;
	*ret = e;
	return 0;
}

int ns_create(struct ns *ns, uint64_t parent, const char *name, enum ns_type type, uint32_t mode,
	      uint32_t uid, uint32_t gid, const char *target, uint64_t *ret_ino)
{
	uint8_t id[NS_ID_LEN], key[NS_ID_LEN + 1];
	size_t nl = strlen(name), tl = 0;
	struct ns_entry *d, *e;
	struct ns_head nh;
	int rc;

	if (!ns->writable)
		return -EROFS;
	if ((rc = get_dir(ns, parent, &d)) < 0 || (rc = name_check(name)) < 0)
		return rc;
	if (type == NS_SYMLINK) {
		if (!target || !*target)
			return -EINVAL;
		if ((tl = strlen(target)) > NS_SYMLINK_MAX)
			return -ENAMETOOLONG;
	} else if (type != NS_FILE && type != NS_DIR) {
		return -EINVAL;
	}
	if (child(ns, d, name))
		return -EEXIST;
	if ((rc = resurrect(ns, d)) < 0)
		return rc;
	/* The same path made on two nodes at once is one entry (ns.h rule 3).
	 * An id that has a record already is never taken over: its entry may
	 * live on elsewhere (renamed away), or be removed but still open under
	 * its inode number, which must not start to name the new file. The next
	 * id is derived from the taken one, so that nodes that have seen the
	 * same history still pick the same id. */
	memcpy(key, d->id, NS_ID_LEN);
	key[NS_ID_LEN] = (uint8_t)type;
	crypto_generichash(id, sizeof(id), (const uint8_t *)name, nl, key, sizeof(key));
	for (size_t steps = 0; (e = ns__entry_find(ns, id)) && e->h.state != NS_H_NONE; steps++) {
		if (steps > ns->nentries) /* the chain went round: never with a 128-bit hash */
			randombytes_buf(id, sizeof(id));
		else
			crypto_generichash(id, sizeof(id), id, sizeof(id), key, sizeof(key));
	}
	if (!(e = ns__entry_get(ns, id)))
		return -ENOMEM;
	memset(&nh, 0, sizeof(nh));
	if (!(nh.name = ns__alloc(ns, nl + 1 + (tl ? tl + 1 : 0))))
		return -ENOMEM;
	memcpy(nh.name, name, nl + 1);
	if (tl)
		memcpy(nh.name + nl + 1, target, tl + 1);
	nh.type = (uint8_t)type;
	nh.mode = mode & 07777;
	nh.uid = uid;
	nh.gid = gid;
	nh.size = tl;
	nh.target_len = (uint16_t)tl;
	nh.mtime = (int64_t)tm_real_ns();
	nh.parent = d;
	if ((rc = commit_local(ns, e, &nh)) < 0)
		return rc;
	*ret_ino = e->ino;
	return 0;
}

int ns_setattr(struct ns *ns, uint64_t ino, const struct ns_attr *attr, unsigned mask)
{
	struct ns_entry *e;
	struct ns_head nh;
	int rc;

	if ((rc = live_entry(ns, ino, &e)) < 0 || (rc = head_dup(ns, e, &nh)) < 0)
		return rc;
	nh.deleted = 0;
	if (mask & NS_SET_MODE)
		nh.mode = attr->mode & 07777;
	if (mask & NS_SET_UID)
		nh.uid = attr->uid;
	if (mask & NS_SET_GID)
		nh.gid = attr->gid;
	if (mask & NS_SET_MTIME)
		nh.mtime = attr->mtime;
	return commit_local(ns, e, &nh);
}

int ns_set_content(struct ns *ns, uint64_t ino, uint64_t size, const struct ns_content *content,
		   int64_t mtime)
{
	struct ns_entry *e;
	struct ns_head nh;
	int rc;

	if ((rc = live_entry(ns, ino, &e)) < 0)
		return rc;
	if (e->h.type == NS_DIR)
		return -EISDIR;
	if (e->h.type != NS_FILE || content->kind > NS_CONTENT_MANIFEST ||
	    (content->kind == NS_CONTENT_NONE && size != 0))
		return -EINVAL;
	if ((rc = head_dup(ns, e, &nh)) < 0)
		return rc;
	nh.size = size;
	nh.kind = content->kind;
	memcpy(nh.content, content->id, CS_ID_LEN);
	if (content->kind == NS_CONTENT_NONE)
		memset(nh.content, 0, CS_ID_LEN);
	nh.mtime = mtime;
	return commit_local(ns, e, &nh);
}

static int remove_entry(struct ns *ns, struct ns_entry *e)
{
	struct ns_head nh;
	int rc;

	if ((rc = head_dup(ns, e, &nh)) < 0)
		return rc;
	nh.deleted = 1;
	return commit_local(ns, e, &nh);
}

int ns_unlink(struct ns *ns, uint64_t parent, const char *name)
{
	struct ns_entry *d, *e;
	int rc;

	if (!ns->writable)
		return -EROFS;
	if ((rc = get_dir(ns, parent, &d)) < 0)
		return rc;
	if (!(e = child(ns, d, name)))
		return -ENOENT;
	if (e->h.type == NS_DIR)
		return -EISDIR;
	return remove_entry(ns, e);
}

int ns_rmdir(struct ns *ns, uint64_t parent, const char *name)
{
	struct ns_entry *d, *e;
	int rc;

	if (!ns->writable)
		return -EROFS;
	if ((rc = get_dir(ns, parent, &d)) < 0)
		return rc;
	if (!(e = child(ns, d, name)))
		return -ENOENT;
	if (e->h.type != NS_DIR)
		return -ENOTDIR;
	if (e->dir && e->dir->nshown)
		return -ENOTEMPTY;
	return remove_entry(ns, e);
}

/* Is @a equal to @d or below it? */
static bool is_below(const struct ns *ns, const struct ns_entry *a, const struct ns_entry *d)
{
	for (size_t steps = 0; a && steps <= ns->nentries; steps++, a = a->lparent)
		if (a == d)
			return true;
	return false;
}

static int move_entry(struct ns *ns, struct ns_entry *e, struct ns_entry *to, const char *name)
{
	struct ns_head nh;
	int rc;

	if ((rc = head_dup(ns, e, &nh)) < 0)
		return rc;
	if ((rc = head_rename(ns, &nh, name)) < 0) {
		ns__head_free(ns, &nh);
		return rc;
	}
	nh.parent = to;
	nh.deleted = 0;
	return commit_local(ns, e, &nh);
}

int ns_rename(struct ns *ns, uint64_t parent, const char *name, uint64_t newparent,
	      const char *newname, unsigned flags)
{
	struct ns_entry *p, *q, *e, *t;
	char *oldname = NULL;
	int rc;

	if (!ns->writable)
		return -EROFS;
	if ((flags & ~(NS_RENAME_NOREPLACE | NS_RENAME_EXCHANGE)) ||
	    ((flags & NS_RENAME_NOREPLACE) && (flags & NS_RENAME_EXCHANGE)))
		return -EINVAL;
	if ((rc = get_dir(ns, parent, &p)) < 0 || (rc = get_dir(ns, newparent, &q)) < 0 ||
	    (rc = name_check(newname)) < 0)
		return rc;
	if (!(e = child(ns, p, name)))
		return -ENOENT;
	t = child(ns, q, newname);
	if (t == e)
		return 0;
	if (e->h.type == NS_DIR && is_below(ns, q, e))
		return -EINVAL;
	if (flags & NS_RENAME_EXCHANGE) {
		if (!t)
			return -ENOENT;
		if (t->h.type == NS_DIR && is_below(ns, p, t))
			return -EINVAL;
		if (!(oldname = strdup(name)))
			return -ENOMEM;
		if ((rc = resurrect(ns, q)) == 0 && (rc = resurrect(ns, p)) == 0 &&
		    (rc = move_entry(ns, e, q, newname)) == 0)
			rc = move_entry(ns, t, p, oldname);
		free(oldname);
		return rc;
	}
	if (t) {
		if (flags & NS_RENAME_NOREPLACE)
			return -EEXIST;
		if (e->h.type == NS_DIR && t->h.type != NS_DIR)
			return -ENOTDIR;
		if (e->h.type != NS_DIR && t->h.type == NS_DIR)
			return -EISDIR;
		if (t->h.type == NS_DIR && t->dir && t->dir->nshown)
			return -ENOTEMPTY;
	}
	if ((rc = resurrect(ns, q)) < 0)
		return rc;
	if (t && (rc = remove_entry(ns, t)) < 0)
		return rc;
	return move_entry(ns, e, q, newname);
}

/* Insert, replace (@value non-NULL) or remove (@value NULL) one attribute. */
static int xattr_edit(struct ns *ns, uint64_t ino, const char *name, const void *value, size_t size,
		      unsigned flags)
{
	size_t nl = strlen(name), total, cap;
	struct ns_entry *e;
	struct ns_head nh;
	uint8_t *blob;
	struct wbuf w;
	struct rbuf r;
	struct xa x;
	bool found = false, placed = false;
	unsigned n = 0;
	int rc;

	if (nl == 0 || nl > NS_XATTR_NAME_MAX)
		return nl ? -ERANGE : -EINVAL;
	if (value && size > NS_XATTR_VALUE_MAX)
		return -E2BIG;
	if ((rc = live_entry(ns, ino, &e)) < 0)
		return rc;
	cap = e->h.xattrs_len + (value ? 5 + nl + size : 0);
	if (!(blob = malloc(cap ? cap : 1)))
		return -ENOMEM;
	wbuf_init(&w, blob, cap);
	rbuf_init(&r, e->h.xattrs, e->h.xattrs_len);
	while (xa_next(&r, &x)) {
		int c = memcmp(x.name, name, P2P_MIN(x.nl, nl));

		if (c == 0)
			c = x.nl < nl ? -1 : x.nl > nl;
		if (c == 0) {
			found = true;
			continue;
		}
		if (c > 0 && value && !placed) {
			wbuf_u8(&w, (uint8_t)nl);
			wbuf_bytes(&w, name, nl);
			wbuf_u32(&w, (uint32_t)size);
			wbuf_bytes(&w, value, size);
			placed = true;
			n++;
		}
		wbuf_u8(&w, x.nl);
		wbuf_bytes(&w, x.name, x.nl);
		wbuf_u32(&w, x.vl);
		wbuf_bytes(&w, x.val, x.vl);
		n++;
	}
	if (value && !placed) {
		wbuf_u8(&w, (uint8_t)nl);
		wbuf_bytes(&w, name, nl);
		wbuf_u32(&w, (uint32_t)size);
		wbuf_bytes(&w, value, size);
		n++;
	}
	rc = 0;
	if ((flags & NS_XATTR_CREATE) && found)
		rc = -EEXIST;
	else if (((flags & NS_XATTR_REPLACE) || !value) && !found)
		rc = -ENODATA;
	else if (wbuf_done(&w) < 0)
		rc = -EIO;
	else if (n > NS_XATTR_COUNT_MAX || (total = w.len - (size_t)n * 5) > NS_XATTR_TOTAL_MAX)
		rc = -ENOSPC;
	if (rc < 0 || (rc = head_dup(ns, e, &nh)) < 0) {
		free(blob);
		return rc;
	}
	ns__free(ns, nh.xattrs);
	nh.xattrs = NULL;
	nh.xattrs_len = 0;
	if (w.len) {
		if (!(nh.xattrs = ns__alloc(ns, w.len))) {
			free(blob);
			ns__head_free(ns, &nh);
			return -ENOMEM;
		}
		memcpy(nh.xattrs, blob, w.len);
		nh.xattrs_len = (uint32_t)w.len;
	}
	nh.xattr_n = (uint16_t)n;
	nh.deleted = 0;
	free(blob);
	return commit_local(ns, e, &nh);
}

int ns_xattr_set(struct ns *ns, uint64_t ino, const char *name, const void *value, size_t size,
		 unsigned flags)
{
	return xattr_edit(ns, ino, name, value ? value : "", size, flags);
}

int ns_xattr_remove(struct ns *ns, uint64_t ino, const char *name)
{
	return xattr_edit(ns, ino, name, NULL, 0, 0);
}

/* ---- replication ---- */

int ns_apply(struct ns *ns, const uint8_t *buf, size_t len)
{
	struct ns_record rec;
	struct ns_entry *e;
	struct ns_head h;
	int rc;

	if ((rc = ns_record_decode(buf, len, &rec)) < 0)
		return rc;
	if (!ns_record_verify(buf, len, ns->share_pk))
		return -EBADMSG;
	if (!(e = ns__entry_get(ns, rec.id)))
		return -ENOMEM;
	if ((rc = ns__head_from_record(ns, &rec, &h)) < 0)
		return rc;
	/* The body is re-encoded canonically at commit; only the signature is
	 * kept, after the name, until then. */
	{
		size_t nl = strlen(h.name) + 1 + (h.type == NS_SYMLINK ? h.target_len + 1u : 0);
		char *s = ns__alloc(ns, nl + NS_REC_SIG_LEN);

		if (!s) {
			ns__head_free(ns, &h);
			return -ENOMEM;
		}
		memcpy(s, h.name, nl);
		memcpy(s + nl, rec.sig, NS_REC_SIG_LEN);
		ns__free(ns, h.name);
		h.name = s;
		h.has_sig = 1;
	}
	h.state = NS_H_PENDING;
	ns->st.pending++;
	ns->in_apply = true;
	rc = ns__merge(ns, e, &h);
	ns->in_apply = false;
	if (rc > 0)
		ns__mark_pending(ns, e);
	return rc;
}
