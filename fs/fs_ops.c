// SPDX-License-Identifier: MIT
/*
 * fs/fs_ops.c - FUSE metadata operations: names, attributes, directories,
 * symlinks, extended attributes, statfs.
 *
 * Every operation here is answered from the local namespace at once: none
 * waits on the disk or the network (directory fsync waits for a commit).
 * Permission checks are the kernel's (mounted with default_permissions).
 *
 * Virtual extended attributes, readable but never listed or stored (so
 * `cp -a` and `rsync -X` do not try to copy them):
 *   user.p2pfs.state  (root only) the daemon's state directory, which is how
 *                     `p2pfs status MOUNTPOINT` finds the control socket;
 *   user.p2pfs.cid    a file's content id ("chunk:<hex>" or "manifest:<hex>");
 *   user.p2pfs.local  "<bytes stored here> <size>" of a file;
 *   user.p2pfs.peers  how many connected members hold all of a file.
 */
#define LOG_SUBSYS "fs"
#include "fs/fs_int.h"
#include "common/tm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#define XATTR_STATE "user.p2pfs.state"
#define XATTR_CID "user.p2pfs.cid"
#define XATTR_LOCAL "user.p2pfs.local"
#define XATTR_PEERS "user.p2pfs.peers"

static struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int fill_entry(struct fs *fs, uint64_t ino, struct fuse_entry_param *e)
{
	struct ns_attr a;
	int rc;

	memset(e, 0, sizeof(*e));
	if ((rc = fs_getattr_ino(fs, ino, &a)) < 0)
		return rc;
	e->ino = ino;
	e->generation = 1;
	e->attr_timeout = fs->o.attr_timeout;
	e->entry_timeout = fs->o.entry_timeout;
	fs_fill_stat(fs, ino, &a, &e->attr);
	return 0;
}

static void reply_entry(fuse_req_t req, struct fs *fs, uint64_t ino)
{
	struct fuse_entry_param e;
	int rc;

	if ((rc = fill_entry(fs, ino, &e)) < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = req_fs(req);
	uint64_t ino;
	int rc = ns_lookup(fs->ns, parent, name, &ino);

	if (rc == -ENOENT) {
		/* A negative entry the kernel may cache; remote creates invalidate it. */
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->o.entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_entry(req, fs, ino);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* Inode numbers live as long as the namespace: nothing to release. */
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct ns_attr a;
	struct stat st;
	int rc;

	(void)fi;
	if ((rc = fs_getattr_ino(fs, ino, &a)) < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fs_fill_stat(fs, ino, &a, &st);
	fuse_reply_attr(req, &st, fs->o.attr_timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct ns_attr a, cur;
	struct stat st;
	unsigned mask = 0;
	int rc;

	(void)fi;
	if ((rc = ns_getattr(fs->ns, ino, &cur)) < 0)
		goto err;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (cur.type == NS_DIR) {
			rc = -EISDIR;
			goto err;
		}
		if (cur.type != NS_FILE) {
			rc = -EINVAL;
			goto err;
		}
		if ((rc = fs_truncate(fs, ino, (uint64_t)attr->st_size)) < 0)
			goto err;
	}
	memset(&a, 0, sizeof(a));
	if (to_set & FUSE_SET_ATTR_MODE) {
		a.mode = attr->st_mode & 07777;
		mask |= NS_SET_MODE;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		a.uid = attr->st_uid;
		mask |= NS_SET_UID;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		a.gid = attr->st_gid;
		mask |= NS_SET_GID;
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			a.mtime = (int64_t)tm_real_ns();
		else
			a.mtime =
			    (int64_t)attr->st_mtim.tv_sec * 1000000000 + attr->st_mtim.tv_nsec;
		mask |= NS_SET_MTIME;
	}
	/* atime is not kept (the mount behaves as noatime); ctime is the record's time. */
	if (mask) {
		struct fs_node *n = fs_node_find(fs, ino);

		rc = ns_setattr(fs->ns, ino, &a, mask);
		/* An unlinked file that is still open keeps working: its attributes
		 * live on in the open node until the last close. */
		if (rc == -ENOENT && n && n->opens)
			rc = 0;
		if (rc < 0)
			goto err;
		if (n && (mask & NS_SET_MTIME))
			n->mtime = a.mtime;
		fs_mark_ns_dirty(fs);
	}
	if ((rc = fs_getattr_ino(fs, ino, &cur)) < 0)
		goto err;
	fs_fill_stat(fs, ino, &cur, &st);
	fuse_reply_attr(req, &st, fs->o.attr_timeout);
	return;
err:
	fuse_reply_err(req, -rc);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = req_fs(req);
	const char *target;
	int rc = ns_readlink(fs->ns, ino, &target);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target);
}

/* The group of a new entry: the parent's if it is set-group-ID (BSD semantics), else the caller's. */
static void new_owner(struct fs *fs, fuse_req_t req, uint64_t parent, uint32_t *uid, uint32_t *gid,
		      bool *sgid_dir)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ns_attr pa;

	*uid = ctx->uid;
	*gid = ctx->gid;
	*sgid_dir = false;
	if (ns_getattr(fs->ns, parent, &pa) == 0 && (pa.mode & S_ISGID)) {
		*gid = pa.gid;
		*sgid_dir = true;
	}
}

static void make_entry(fuse_req_t req, fuse_ino_t parent, const char *name, enum ns_type type,
		       mode_t mode, const char *target)
{
	struct fs *fs = req_fs(req);
	uint32_t uid, gid;
	bool sgid;
	uint64_t ino;
	int rc;

	new_owner(fs, req, parent, &uid, &gid, &sgid);
	if (type == NS_DIR && sgid)
		mode |= S_ISGID;
	rc = ns_create(fs->ns, parent, name, type, mode & 07777, uid, gid, target, &ino);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fs_mark_ns_dirty(fs);
	reply_entry(req, fs, ino);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	/* Devices, FIFOs and sockets cannot be shared between machines. */
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	make_entry(req, parent, name, NS_FILE, mode, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_entry(req, parent, name, NS_DIR, mode, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	make_entry(req, parent, name, NS_SYMLINK, 0777, link);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = req_fs(req);
	uint64_t ino = 0;
	int rc;

	if (ns_lookup(fs->ns, parent, name, &ino) < 0)
		ino = 0;
	rc = ns_unlink(fs->ns, parent, name);
	if (rc == 0) {
		fs_mark_ns_dirty(fs);
		if (ino)
			fs_node_discard(fs, ino);
	}
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = req_fs(req);
	int rc = ns_rmdir(fs->ns, parent, name);

	if (rc == 0)
		fs_mark_ns_dirty(fs);
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = req_fs(req);
	uint64_t target, now;
	unsigned nsf = 0;
	int rc;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT is for overlay filesystems */
		return;
	}
	if (flags & RENAME_NOREPLACE)
		nsf |= NS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		nsf |= NS_RENAME_EXCHANGE;
	if (ns_lookup(fs->ns, newparent, newname, &target) < 0)
		target = 0;
	rc = ns_rename(fs->ns, parent, name, newparent, newname, nsf);
	if (rc == 0) {
		fs_mark_ns_dirty(fs);
		/* A replaced target is gone (an exchanged one lives on elsewhere). */
		if (target && !(nsf & NS_RENAME_EXCHANGE) &&
		    ns_lookup(fs->ns, newparent, newname, &now) == 0 && now != target)
			fs_node_discard(fs, target);
	}
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	/* link(2): "EPERM: the filesystem does not support the creation of hard links". */
	fuse_reply_err(req, EPERM);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct ns_attr a;
	int rc = ns_getattr(fs->ns, ino, &a);

	if (rc == 0 && a.type != NS_DIR)
		rc = -ENOTDIR;
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

struct dir_fill {
	fuse_req_t req;
	struct fs *fs;
	char *buf;
	size_t size, pos;
	bool plus;
	bool full;
};

/* FUSE offsets: 1 and 2 follow "." and ".."; a namespace cookie c becomes c + 2. */
static int dir_add(struct dir_fill *d, const char *name, uint64_t ino, const struct ns_attr *a,
		   uint64_t next_off)
{
	size_t n;

	if (d->plus) {
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		if (a) {
			e.ino = ino;
			e.generation = 1;
			e.attr_timeout = d->fs->o.attr_timeout;
			e.entry_timeout = d->fs->o.entry_timeout;
			fs_fill_stat(d->fs, ino, a, &e.attr);
		} else {
			/* "." and "..": no lookup reference is taken for them. */
			e.attr.st_ino = ino;
			e.attr.st_mode = S_IFDIR;
		}
		n = fuse_add_direntry_plus(d->req, d->buf + d->pos, d->size - d->pos, name, &e,
					   (off_t)next_off);
	} else {
		struct stat st;

		memset(&st, 0, sizeof(st));
		st.st_ino = ino;
		st.st_mode = a ? (a->type == NS_DIR	  ? S_IFDIR
				  : a->type == NS_SYMLINK ? S_IFLNK
							  : S_IFREG)
			       : S_IFDIR;
		n = fuse_add_direntry(d->req, d->buf + d->pos, d->size - d->pos, name, &st,
				      (off_t)next_off);
	}
	if (n > d->size - d->pos) {
		d->full = true;
		return 1;
	}
	d->pos += n;
	return 0;
}

static int dir_child(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		     uint64_t next_cookie)
{
	struct dir_fill *d = arg;
	struct ns_attr merged;

	/* Files being written show their current size. */
	if (a->type == NS_FILE && fs_node_find(d->fs, ino) &&
	    fs_getattr_ino(d->fs, ino, &merged) == 0)
		a = &merged;
	return dir_add(d, name, ino, a, next_cookie + 2);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct dir_fill d = { .req = req, .fs = req_fs(req), .size = size, .plus = plus };
	uint64_t parent;
	int rc = 0;

	if (!(d.buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off == 0 && dir_add(&d, ".", ino, NULL, 1))
		goto reply;
	if (off <= 1) {
		if (ns_parent(d.fs->ns, ino, &parent) < 0)
			parent = ino;
		if (dir_add(&d, "..", parent, NULL, 2))
			goto reply;
	}
	rc = ns_readdir(d.fs->ns, ino, off >= 2 ? (uint64_t)off - 2 : 0, dir_child, &d);
reply:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, d.buf, d.pos);
	free(d.buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_waiter *w = fs_waiter_new(req, FS_WAIT_COMMIT, ino, fi);

	(void)datasync;
	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fs->st.fsyncs++;
	fs_commit_wait(fs, w);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = req_fs(req);
	struct statvfs disk, st;
	struct ns_stats ns;

	(void)ino;
	memset(&st, 0, sizeof(st));
	ns_get_stats(fs->ns, &ns);
	if (statvfs(fs->staging_dir, &disk) == 0) {
		double scale = (double)disk.f_frsize / 4096.0;

		st.f_blocks = (fsblkcnt_t)((double)disk.f_blocks * scale);
		st.f_bfree = (fsblkcnt_t)((double)disk.f_bfree * scale);
		st.f_bavail = (fsblkcnt_t)((double)disk.f_bavail * scale);
	}
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_ffree = 1ULL << 32;
	st.f_favail = st.f_ffree;
	st.f_files = st.f_ffree + ns.files + ns.dirs + ns.symlinks;
	st.f_namemax = NS_NAME_MAX;
	fuse_reply_statfs(req, &st);
}

/* ---- extended attributes ---- */

static void reply_xattr_value(fuse_req_t req, const void *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

static bool xattr_ns_supported(const char *name)
{
	/* ACLs would need the kernel's POSIX ACL support; say so instead of storing them. */
	return strncmp(name, "system.", 7) != 0;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = req_fs(req);
	long rc;
	void *buf = NULL;

	if (!strcmp(name, XATTR_STATE) && ino == NS_ROOT_INO) {
		reply_xattr_value(req, fs->state_dir, strlen(fs->state_dir), size);
		return;
	}
	if (!strcmp(name, XATTR_CID)) {
		struct ns_content c;
		char val[80];

		if ((rc = ns_get_content(fs->ns, ino, &c)) < 0) {
			fuse_reply_err(req, (int)-rc);
			return;
		}
		if (c.kind == NS_CONTENT_NONE) {
			fuse_reply_err(req, ENODATA);
			return;
		}
		memcpy(val, c.kind == NS_CONTENT_CHUNK ? "chunk:" : "manifest:",
		       c.kind == NS_CONTENT_CHUNK ? 6 : 9);
		p2p_hex(val + (c.kind == NS_CONTENT_CHUNK ? 6 : 9), c.id, CS_ID_LEN);
		reply_xattr_value(req, val, strlen(val), size);
		return;
	}
	if (!strcmp(name, XATTR_LOCAL) || !strcmp(name, XATTR_PEERS)) {
		uint64_t local, total;
		unsigned holders;
		char val[64];

		if ((rc = fs_file_presence(fs, ino, &local, &total, &holders)) < 0) {
			fuse_reply_err(req, rc == -EISDIR ? ENODATA : (int)-rc);
			return;
		}
		if (!strcmp(name, XATTR_LOCAL))
			snprintf(val, sizeof(val), "%llu %llu", (unsigned long long)local,
				 (unsigned long long)total);
		else
			snprintf(val, sizeof(val), "%u", holders);
		reply_xattr_value(req, val, strlen(val), size);
		return;
	}
	if (!xattr_ns_supported(name)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = ns_xattr_get(fs->ns, ino, name, buf, size);
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = req_fs(req);
	char *buf = NULL;
	long rc;

	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = ns_xattr_list(fs->ns, ino, buf, size);
	if (rc < 0)
		fuse_reply_err(req, (int)-rc);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
	free(buf);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct fs *fs = req_fs(req);
	unsigned f = 0;
	int rc;

	if (!strncmp(name, "user.p2pfs.", 11)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (!xattr_ns_supported(name)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	if (flags & XATTR_CREATE)
		f |= NS_XATTR_CREATE;
	if (flags & XATTR_REPLACE)
		f |= NS_XATTR_REPLACE;
	rc = ns_xattr_set(fs->ns, ino, name, value, size, f);
	if (rc == 0)
		fs_mark_ns_dirty(fs);
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs *fs = req_fs(req);
	int rc;

	if (!xattr_ns_supported(name)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	rc = ns_xattr_remove(fs->ns, ino, name);
	if (rc == 0)
		fs_mark_ns_dirty(fs);
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

void fs_ops_init(struct fuse_lowlevel_ops *ops)
{
	ops->lookup = op_lookup;
	ops->forget = op_forget;
	ops->forget_multi = op_forget_multi;
	ops->getattr = op_getattr;
	ops->setattr = op_setattr;
	ops->readlink = op_readlink;
	ops->mknod = op_mknod;
	ops->mkdir = op_mkdir;
	ops->symlink = op_symlink;
	ops->unlink = op_unlink;
	ops->rmdir = op_rmdir;
	ops->rename = op_rename;
	ops->link = op_link;
	ops->opendir = op_opendir;
	ops->readdir = op_readdir;
	ops->readdirplus = op_readdirplus;
	ops->releasedir = op_releasedir;
	ops->fsyncdir = op_fsyncdir;
	ops->statfs = op_statfs;
	ops->getxattr = op_getxattr;
	ops->listxattr = op_listxattr;
	ops->setxattr = op_setxattr;
	ops->removexattr = op_removexattr;
	ops->create = fs_op_create;
	ops->open = fs_op_open;
	ops->read = fs_op_read;
	ops->write = fs_op_write;
	ops->flush = fs_op_flush;
	ops->release = fs_op_release;
	ops->fsync = fs_op_fsync;
	ops->fallocate = fs_op_fallocate;
	ops->lseek = fs_op_lseek;
}
