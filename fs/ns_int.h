/* SPDX-License-Identifier: MIT */
/*
 * fs/ns_int.h - the namespace's internal structures, shared by ns.c (merge
 * and view), ns_ops.c (local changes and queries) and ns_store.c (log,
 * snapshot, commit). Never included from outside fs/ns*.c.
 *
 * Terms:
 *  - head: a record not dominated by another of the same entry (ns.h rule 1);
 *    an entry's winner is heads[0] (stored inline as e->h).
 *  - lparent: the listing parent, i.e. the winner's parent entry, or the
 *    root for an entry that was moved out of a parent cycle (rule 4).
 *  - alive: has a head and the winner is not deleted.
 *  - live below: alive, or a directory with a live-below child (so a
 *    deleted directory that still holds live entries stays shown).
 *  - shown: not the root, has a head, live below. A shown entry is in the
 *    name table under (lparent, visible name).
 *  - visible: the root, or shown with a visible directory as lparent.
 */
#ifndef P2P_FS_NS_INT_H
#define P2P_FS_NS_INT_H

#include "fs/ns.h"
#include "fs/ns_record.h"

enum ns_head_state {
	NS_H_NONE = 0,	 /* placeholder entry: no record yet */
	NS_H_IMPLICIT,	 /* the root before any record: dominated by every record */
	NS_H_PENDING,	 /* local change, not yet signed and durable */
	NS_H_COMMITTING, /* in a commit that is running */
	NS_H_COMMITTED,	 /* durable in the log or snapshot at loc */
	NS_H_VIRTUAL,	 /* a conflict copy derived from another entry's heads, not a record */
};

#define NS_LOC_SNAP (1ULL << 63)
#define NS_MAX_HEADS (NS_VV_MAX * 4 + 1) /* concurrent versions of one entry kept */

struct ns_vv {
	uint32_t w; /* writer index */
	uint64_t hlc;
};

struct ns_head {
	uint64_t hlc;
	uint64_t size;
	int64_t mtime;
	uint64_t loc;		 /* COMMITTED: frame offset, NS_LOC_SNAP set for the snapshot */
	struct ns_entry *parent; /* NULL only for the root */
	char *name; /* name NUL, then for symlinks the target NUL, then (has_sig) a signature */
	uint8_t *xattrs;  /* packed entries (ns_record.h), or NULL */
	struct ns_vv *vv; /* NULL: just {writer: hlc} */
	uint32_t writer, mode, uid, gid;
	uint32_t xattrs_len;
	uint16_t xattr_n, target_len;
	uint8_t type, deleted, kind, vv_n, state;
	uint8_t has_sig; /* received, not yet in the log: its signature follows the name */
	uint8_t content[CS_ID_LEN];
};

struct ns_dir {
	struct ns_entry **v; /* children by ino once sorted; may hold stale pointers */
	uint32_t n, cap;
	uint32_t nlb;	    /* children (lparent == this) that are live below */
	uint32_t nshown;    /* shown children */
	uint32_t nsubdirs;  /* shown children that are directories */
	uint32_t nconflict; /* shown children under a conflict name */
	bool sorted;
};

#define NS_E_BROKEN (1U << 0)	/* moved to the root out of a parent cycle */
#define NS_E_CONFLICT (1U << 1) /* shown under a conflict name (see ns->cnames) */
#define NS_E_PENDQ (1U << 2)	/* on ns->pending */
#define NS_E_SHOWN (1U << 3)	/* in the name table */

struct ns_entry {
	uint8_t id[NS_ID_LEN];
	uint32_t ino; /* 4 billion entries per share before the view refuses more */
	uint8_t nmore;
	uint8_t flags;
	struct ns_head h;     /* the winner */
	struct ns_head *more; /* the other heads */
	struct ns_entry *lparent;
	struct ns_dir *dir;
};

struct ns_cname {
	struct ns_entry *e;
	struct ns_cname *next;
	char name[];
};

struct ns_ptrvec {
	struct ns_entry **v;
	size_t n, cap;
};

struct ns {
	uint8_t share_pk[NS_SHARE_PK_LEN];
	uint8_t share_sk[NS_SHARE_SK_LEN];
	bool writable;
	uint32_t self; /* writer index of this node */

	/* writers interned: index -> 32-byte id */
	uint8_t (*writers)[NS_NODE_ID_LEN];
	uint32_t nwriters, writers_cap;
	uint32_t *writer_tab; /* open addressing, index + 1 */
	uint32_t writer_tab_mask;

	/* Open addressing with linear probing; slots hold ino (0: empty). */
	uint32_t *id_tab;
	size_t id_mask, nentries;
	uint32_t *name_tab; /* shown entries by (lparent, visible name); backward-shift delete */
	size_t name_mask, nnames;
	struct ns_entry **by_ino; /* ino - 1 -> entry */
	size_t ino_cap;
	struct ns_cname *cnames[64]; /* conflict names, few */

	struct ns_entry *root;
	struct ns_ptrvec pending, broken;
	bool loading, in_apply;
	uint64_t hlc_last;

	ns_change_fn *change_fn;
	void *change_arg;
	ns_committed_fn *committed_fn;
	void *committed_arg;

	struct ns_stats st;
	uint64_t mem;

	/* persistence (ns_store.c) */
	char *dir;
	int log_fd, snap_fd;
	uint64_t log_end, snap_len;
	struct ns_commit *inflight;
};

/* ns.c: entries, merge, view */
void *ns__alloc(struct ns *ns, size_t n);
void *ns__calloc(struct ns *ns, size_t n);
void ns__free(struct ns *ns, void *p);
uint32_t ns__writer_idx(struct ns *ns, const uint8_t id[static NS_NODE_ID_LEN]);
struct ns_entry *ns__entry_find(struct ns *ns, const uint8_t id[static NS_ID_LEN]);
struct ns_entry *ns__entry_get(struct ns *ns, const uint8_t id[static NS_ID_LEN]);
struct ns_entry *ns__entry_by_ino(struct ns *ns, uint64_t ino);
void ns__head_free(struct ns *ns, struct ns_head *h);
/* A deep copy of @src's fields with no version vector, signature or state. */
int ns__head_copy(struct ns *ns, struct ns_head *dst, const struct ns_head *src);
/* Merge @nh (ownership passes) into @e. 1: the heads changed, 0: ignored, <0: error. */
int ns__merge(struct ns *ns, struct ns_entry *e, struct ns_head *nh);
/* Build a head from a decoded record. */
int ns__head_from_record(struct ns *ns, const struct ns_record *rec, struct ns_head *h);
/* Fill a record from a head (borrowing its strings) for encoding. */
void ns__head_to_record(struct ns *ns, const struct ns_entry *e, const struct ns_head *h,
			struct ns_record *rec);
/* Ids of the conflict copies @e's heads call for (ns.h rule 2); at most @max. */
unsigned ns__conflict_copies(struct ns *ns, struct ns_entry *e, uint8_t (*ids)[NS_ID_LEN],
			     unsigned max);
/* Turn a virtual conflict copy into a real, pending record. */
void ns__materialize(struct ns *ns, const uint8_t id[static NS_ID_LEN]);
int ns__ptrvec_push(struct ns_ptrvec *v, struct ns_entry *e);
void ns__mark_pending(struct ns *ns, struct ns_entry *e);
bool ns__alive(const struct ns_entry *e);
bool ns__shown(const struct ns_entry *e);
bool ns__visible(const struct ns *ns, const struct ns_entry *e);
const char *ns__vname(const struct ns *ns, const struct ns_entry *e);
struct ns_entry *ns__name_find(struct ns *ns, const struct ns_entry *parent, const char *name);
void ns__dir_sort(struct ns *ns, struct ns_entry *d);
void ns__heads_foreach(struct ns_entry *e, void (*fn)(struct ns_head *h, void *arg), void *arg);
/* The signature kept with a received record until it is in the log, or NULL. */
uint8_t *ns__head_sig(const struct ns_head *h);
/* Drop that signature (the record is durable now). */
void ns__head_drop_sig(struct ns *ns, struct ns_head *h);

/* ns_store.c */
int ns__store_open(struct ns *ns, const char *dir);
void ns__store_close(struct ns *ns);

#endif
