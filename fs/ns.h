/* SPDX-License-Identifier: MIT */
/*
 * fs/ns.h - the namespace of one share: a replicated, signed map of entries
 * merged as a CRDT, and the tree view that FUSE shows.
 *
 * Data model (DESIGN.md "Data model"):
 *  - An entry is a file, directory or symlink, keyed by a stable 16-byte entry
 *    id (not by path: renaming a directory with a million files is one
 *    update). The root directory has the all-zero id and always exists.
 *  - Every change is a record: the entry's whole new state (parent id, name,
 *    type, mode, uid, gid, size, mtime, content reference, extended
 *    attributes, deleted flag), a hybrid-logical-clock version, the writer's
 *    node id and a version vector, signed with the share's Ed25519 key.
 *    Record layout: see the table in ns_record.h.
 *
 * Merge rules (a state-based CRDT; every node that holds the same set of
 * records shows the same tree, whatever order they arrived in):
 *  1. For each entry id the namespace keeps its heads: the records not
 *     dominated by another record's version vector. A record dominated by (or
 *     equal to) a head is ignored; a new record replaces the heads it
 *     dominates.
 *  2. One live head: that is the entry. Several heads (concurrent writes):
 *     the live head with the greatest (hlc, writer id) wins; deletions lose
 *     to live heads (nothing is silently lost). Every other live head whose
 *     content differs from the winner's is shown as a conflict copy: an
 *     entry whose id, name and attributes are derived deterministically from
 *     the losing head (same parent, name "stem.conflict-<writer8>-<UTC
 *     time>.ext", the loser's content, version vector {loser writer: loser
 *     hlc}). The copy is virtual (a function of the heads, identical on every
 *     node, read-only members included) until a writer supersedes the
 *     conflict with a new local version: then it becomes a real signed
 *     record. Ed25519 signatures are deterministic, so every writer that
 *     does this produces the same bytes and copies never multiply; a copy
 *     edited or deleted is a record like any other.
 *  3. Two live entries with one (parent, name): the greatest (hlc, writer,
 *     id) keeps the name, the others are shown under a conflict name. New
 *     entries get ids derived from (parent id, name, type) so that the same
 *     path created on two nodes concurrently is one entry (rule 2 applies).
 *  4. A deleted directory that still holds live entries is shown, so nothing
 *     becomes unreachable; entries whose parent chain forms a cycle (two
 *     concurrent moves) are shown under the root, the one moved last first.
 *     Entries whose parent record has not arrived yet are not shown.
 *
 * Inode numbers: the view gives every entry it has seen an inode number that
 * is stable for the lifetime of the struct ns and never reused (root is 1,
 * FUSE_ROOT_ID). Deleted entries keep theirs (an unlinked file may still be
 * open).
 *
 * Persistence: records are appended to a log (crash-safe: each record is
 * framed with its length and an XXH3 checksum; a torn tail is dropped at
 * load) and compacted into a snapshot. Local changes are kept in memory as
 * unsigned pending records until ns_commit() signs them and makes them
 * durable. The caller syncs the chunk store before committing, so a
 * committed record never refers to a chunk that is not durable.
 *
 * Threads: a struct ns belongs to one thread (the daemon's event loop),
 * except the ns_commit_run() step, which runs on a worker.
 */
#ifndef P2P_FS_NS_H
#define P2P_FS_NS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "chunkstore/cdc.h"
#include "common/util.h"

#define NS_ID_LEN 16
#define NS_NODE_ID_LEN 32
#define NS_SHARE_PK_LEN 32
#define NS_SHARE_SK_LEN 64
#define NS_NAME_MAX 255
#define NS_SYMLINK_MAX 4095
#define NS_XATTR_NAME_MAX 255
#define NS_XATTR_VALUE_MAX 65536 /* per attribute, like ext4 with ea_inode */
#define NS_XATTR_TOTAL_MAX 65536 /* names + values per entry */
#define NS_XATTR_COUNT_MAX 256
#define NS_VV_MAX 8 /* version-vector entries kept per record */
#define NS_ROOT_INO 1

enum ns_type {
	NS_DIR = 1,
	NS_FILE = 2,
	NS_SYMLINK = 3,
};

/* What a file's bytes are. */
enum ns_content_kind {
	NS_CONTENT_NONE = 0,	 /* empty file, directory */
	NS_CONTENT_CHUNK = 1,	 /* the file is one chunk: id is the chunk id */
	NS_CONTENT_MANIFEST = 2, /* id is a manifest id (fs/mf.h) */
};

struct ns_content {
	uint8_t kind; /* enum ns_content_kind */
	uint8_t id[CS_ID_LEN];
};

struct ns_attr {
	uint8_t type;  /* enum ns_type */
	uint32_t mode; /* permission bits only (07777) */
	uint32_t uid;
	uint32_t gid;
	uint64_t size;	/* files: bytes; symlinks: target length; dirs: 0 */
	int64_t mtime;	/* ns since the epoch */
	int64_t ctime;	/* ns since the epoch: time of the record (its hlc) */
	uint32_t nlink; /* dirs: 2 + subdirectories; others: 1; deleted: 0 */
	bool deleted;
};

struct ns;

struct ns_open_opts {
	const uint8_t *share_pk; /* NS_SHARE_PK_LEN bytes; required */
	const uint8_t *share_sk; /* NS_SHARE_SK_LEN bytes, or NULL: read-only member */
	const uint8_t *node_id;	 /* NS_NODE_ID_LEN bytes; required */
};

/* Open (creating if absent) the namespace stored in @dir. */
P2P_MUST_CHECK int ns_open(const char *dir, const struct ns_open_opts *opts, struct ns **ret_ns);
/* Frees; pending uncommitted changes are lost (call ns_commit first). NULL is a no-op. */
void ns_close(struct ns *ns);
bool ns_read_only(const struct ns *ns);

/* ---- queries (never touch the disk or the network) ---- */

/* -ENOENT, -ENOTDIR (parent not a directory). */
P2P_MUST_CHECK int ns_lookup(struct ns *ns, uint64_t parent, const char *name, uint64_t *ret_ino);
/* Works on deleted entries too (attr.deleted, nlink 0). -ENOENT for an unknown ino. */
P2P_MUST_CHECK int ns_getattr(struct ns *ns, uint64_t ino, struct ns_attr *ret_attr);
/* The target stays valid until the next change to the namespace. -EINVAL if not a symlink. */
P2P_MUST_CHECK int ns_readlink(struct ns *ns, uint64_t ino, const char **ret_target);
P2P_MUST_CHECK int ns_get_content(struct ns *ns, uint64_t ino, struct ns_content *ret_content);
/* The entry id of @ino (for logs, xattrs and the control socket). */
P2P_MUST_CHECK int ns_entry_id(struct ns *ns, uint64_t ino, uint8_t ret_id[static NS_ID_LEN]);
/* Parent inode of a directory (for ".."). */
P2P_MUST_CHECK int ns_parent(struct ns *ns, uint64_t ino, uint64_t *ret_parent);

/*
 * ns_readdir() - list directory @dir from position @cookie (0: the start).
 * Calls @fn for each child (not "." or "..") with the cookie that resumes
 * after it; stops when @fn returns nonzero. Cookies stay valid across
 * changes: an entry neither added nor removed meanwhile is listed exactly
 * once by a listing that resumes from a cookie. Returns 0, -ENOTDIR, -ENOENT.
 */
typedef int ns_readdir_fn(void *arg, const char *name, uint64_t ino, const struct ns_attr *attr,
			  uint64_t next_cookie);
P2P_MUST_CHECK int ns_readdir(struct ns *ns, uint64_t dir, uint64_t cookie, ns_readdir_fn *fn,
			      void *arg);

/* Extended attributes. get/list follow getxattr(2)/listxattr(2): with @size 0
 * return the size needed; -ERANGE if @size is too small; -ENODATA. */
P2P_MUST_CHECK long ns_xattr_get(struct ns *ns, uint64_t ino, const char *name, void *buf,
				 size_t size);
P2P_MUST_CHECK long ns_xattr_list(struct ns *ns, uint64_t ino, char *buf, size_t size);

struct ns_stats {
	uint64_t files, dirs, symlinks; /* live entries in the view */
	uint64_t bytes;			/* sum of live file sizes */
	uint64_t records;		/* head records held, tombstones included */
	uint64_t tombstones;
	uint64_t conflicts; /* entries shown with a conflict name or copy */
	uint64_t pending;   /* records not yet committed */
	uint64_t mem_bytes; /* memory the namespace uses */
	uint64_t log_bytes, snapshot_bytes;
};

void ns_get_stats(struct ns *ns, struct ns_stats *ret_stats);

/* ---- local changes: each makes a new pending record (not yet durable) ---- */
/* All return -EROFS on a read-only namespace, -ENOENT/-ENOTDIR for a bad
 * parent, -ENAMETOOLONG, -EINVAL for names that are empty, ".", ".." or
 * contain '/'. */

/* Create a file, directory or symlink (@target for symlinks). -EEXIST. */
P2P_MUST_CHECK int ns_create(struct ns *ns, uint64_t parent, const char *name, enum ns_type type,
			     uint32_t mode, uint32_t uid, uint32_t gid, const char *target,
			     uint64_t *ret_ino);

#define NS_SET_MODE (1U << 0)
#define NS_SET_UID (1U << 1)
#define NS_SET_GID (1U << 2)
#define NS_SET_MTIME (1U << 3)
/* Change attributes named by @mask from @attr. */
P2P_MUST_CHECK int ns_setattr(struct ns *ns, uint64_t ino, const struct ns_attr *attr,
			      unsigned mask);
/* A new version of a file's bytes (also used for truncate). -EISDIR, -EINVAL. */
P2P_MUST_CHECK int ns_set_content(struct ns *ns, uint64_t ino, uint64_t size,
				  const struct ns_content *content, int64_t mtime);
/* Remove a file or symlink (-EISDIR), or an empty directory (ns_rmdir: -ENOTDIR, -ENOTEMPTY). */
P2P_MUST_CHECK int ns_unlink(struct ns *ns, uint64_t parent, const char *name);
P2P_MUST_CHECK int ns_rmdir(struct ns *ns, uint64_t parent, const char *name);

#define NS_RENAME_NOREPLACE (1U << 0)
#define NS_RENAME_EXCHANGE (1U << 1)
/*
 * rename(2) semantics: replaces a target of a compatible type (-EISDIR,
 * -ENOTDIR, -ENOTEMPTY otherwise), -EEXIST with NOREPLACE, -ENOENT with
 * EXCHANGE and no target, -EINVAL when moving a directory into itself.
 */
P2P_MUST_CHECK int ns_rename(struct ns *ns, uint64_t parent, const char *name, uint64_t newparent,
			     const char *newname, unsigned flags);

#define NS_XATTR_CREATE (1U << 0)  /* -EEXIST if present */
#define NS_XATTR_REPLACE (1U << 1) /* -ENODATA if absent */
P2P_MUST_CHECK int ns_xattr_set(struct ns *ns, uint64_t ino, const char *name, const void *value,
				size_t size, unsigned flags);
P2P_MUST_CHECK int ns_xattr_remove(struct ns *ns, uint64_t ino, const char *name);

/* ---- commit: make pending records durable ---- */

/*
 * A commit in three steps, so the slow part (signing, writing, fdatasync)
 * runs on a worker while the loop keeps serving:
 *   ns_commit_begin()  loop thread: takes the pending records (NULL if none);
 *   ns_commit_run()    any thread: signs, appends to the log, fdatasyncs;
 *   ns_commit_end()    loop thread: marks them committed (or, on error, pending again).
 * At most one commit is in flight. ns_commit() does all three on the caller's thread.
 */
struct ns_commit;
struct ns_commit *ns_commit_begin(struct ns *ns);
P2P_MUST_CHECK int ns_commit_run(struct ns_commit *c);
void ns_commit_end(struct ns *ns, struct ns_commit *c, int rc);
P2P_MUST_CHECK int ns_commit(struct ns *ns);

/* Rewrite the snapshot from the current heads and start an empty log. */
P2P_MUST_CHECK int ns_compact(struct ns *ns);

/* ---- replication ---- */

/*
 * ns_apply() - merge a signed record received from a peer. Verifies its
 * signature with the share key and its fields, then applies rule 1. Returns
 * 1 if the view changed, 0 if the record was already known or dominated,
 * -EBADMSG (bad signature), -EPROTO (malformed), -EMSGSIZE.
 */
P2P_MUST_CHECK int ns_apply(struct ns *ns, const uint8_t *rec, size_t len);

/* Called for each view change that ns_apply causes (for kernel cache invalidation). */
typedef void ns_change_fn(void *arg, uint64_t parent, const char *name, uint64_t ino);
void ns_set_change_cb(struct ns *ns, ns_change_fn *fn, void *arg);

/* Called on the loop thread after each commit with every record it made
 * durable, signed, as peers get them (local changes and applied ones). */
typedef void ns_committed_fn(void *arg, const uint8_t *rec, size_t len);
void ns_set_committed_cb(struct ns *ns, ns_committed_fn *fn, void *arg);

/*
 * Calls @fn with every signed head record (committed ones only): the state to
 * hand a peer. Stops when @fn returns nonzero.
 */
typedef int ns_record_fn(void *arg, const uint8_t *rec, size_t len);
P2P_MUST_CHECK int ns_foreach_record(struct ns *ns, ns_record_fn *fn, void *arg);

/* ---- helpers exposed for tests and tools ---- */

/* Hybrid logical clock: 48-bit milliseconds << 16 | 16-bit counter. */
uint64_t ns_hlc_now(struct ns *ns);

#endif
