// SPDX-License-Identifier: MIT
/*
 * fs/ns.c - the namespace CRDT: entries and their heads, the merge (ns.h
 * rules 1-4) and the tree view kept up to date incrementally.
 *
 * Invariant: the view is a function of the set of heads only. Every change
 * goes through ns__merge(), which detaches the entry from the view, changes
 * its heads and attaches it again; attach resolves name conflicts by taking
 * the maximum and breaks parent cycles at their maximum, so the order in
 * which records arrive never shows in the result.
 */
#define LOG_SUBSYS "ns"
#include "fs/ns_int.h"
#include "common/log.h"
#include "common/tm.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- memory accounting ---- */

void *ns__alloc(struct ns *ns, size_t n)
{
	void *p = malloc(n);

	if (p)
		ns->mem += malloc_usable_size(p);
	return p;
}

void *ns__calloc(struct ns *ns, size_t n)
{
	void *p = calloc(1, n);

	if (p)
		ns->mem += malloc_usable_size(p);
	return p;
}

void ns__free(struct ns *ns, void *p)
{
	if (p) {
		ns->mem -= malloc_usable_size(p);
		free(p);
	}
}

int ns__ptrvec_push(struct ns_ptrvec *v, struct ns_entry *e)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		struct ns_entry **nv = realloc(v->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = e;
	return 0;
}

/* ---- writers ---- */

uint32_t ns__writer_idx(struct ns *ns, const uint8_t id[static NS_NODE_ID_LEN])
{
	uint32_t h, idx;

	if (ns->nwriters * 2 >= ns->writer_tab_mask + 1 || !ns->writer_tab) {
		uint32_t nmask = ns->writer_tab ? ns->writer_tab_mask * 2 + 1 : 63;
		uint32_t *nt = calloc((size_t)nmask + 1, sizeof(*nt));

		if (!nt)
			abort(); /* tiny table; out of memory here is fatal */
		for (uint32_t i = 0; i < ns->nwriters; i++) {
			h = (uint32_t)XXH3_64bits(ns->writers[i], NS_NODE_ID_LEN) & nmask;
			while (nt[h])
				h = (h + 1) & nmask;
			nt[h] = i + 1;
		}
		free(ns->writer_tab);
		ns->writer_tab = nt;
		ns->writer_tab_mask = nmask;
	}
	h = (uint32_t)XXH3_64bits(id, NS_NODE_ID_LEN) & ns->writer_tab_mask;
	while ((idx = ns->writer_tab[h])) {
		if (!memcmp(ns->writers[idx - 1], id, NS_NODE_ID_LEN))
			return idx - 1;
		h = (h + 1) & ns->writer_tab_mask;
	}
	if (ns->nwriters == ns->writers_cap) {
		uint32_t cap = ns->writers_cap ? ns->writers_cap * 2 : 16;
		void *nw = realloc(ns->writers, (size_t)cap * NS_NODE_ID_LEN);

		if (!nw)
			abort();
		ns->writers = nw;
		ns->writers_cap = cap;
	}
	memcpy(ns->writers[ns->nwriters], id, NS_NODE_ID_LEN);
	ns->writer_tab[h] = ++ns->nwriters;
	return ns->nwriters - 1;
}

/* ---- entry table ---- */

static size_t id_hash(const uint8_t *id)
{
	uint64_t v;

	memcpy(&v, id, 8); /* ids are hashes or random: their bytes are uniform */
	return (size_t)(v ^ (v >> 29));
}

struct ns_entry *ns__entry_find(struct ns *ns, const uint8_t id[static NS_ID_LEN])
{
	size_t h = id_hash(id) & ns->id_mask;
	uint32_t ino;

	while ((ino = ns->id_tab[h])) {
		struct ns_entry *e = ns->by_ino[ino - 1];

		if (!memcmp(e->id, id, NS_ID_LEN))
			return e;
		h = (h + 1) & ns->id_mask;
	}
	return NULL;
}

static void id_slot_put(uint32_t *tab, size_t mask, const struct ns_entry *e)
{
	size_t h = id_hash(e->id) & mask;

	while (tab[h])
		h = (h + 1) & mask;
	tab[h] = e->ino;
}

struct ns_entry *ns__entry_by_ino(struct ns *ns, uint64_t ino)
{
	if (ino == 0 || ino > ns->nentries)
		return NULL;
	return ns->by_ino[ino - 1];
}

static int grow_tables(struct ns *ns)
{
	if (ns->nentries == ns->ino_cap) {
		size_t cap = ns->ino_cap ? ns->ino_cap * 2 : 1024;
		struct ns_entry **nv = realloc(ns->by_ino, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		ns->mem += (cap - ns->ino_cap) * sizeof(*nv);
		ns->by_ino = nv;
		ns->ino_cap = cap;
	}
	if (ns->nentries >= UINT32_MAX - 1)
		return -EMLINK;
	if ((ns->nentries + 1) * 4 > (ns->id_mask + 1) * 3) {
		size_t nmask = ns->id_mask * 2 + 1;
		uint32_t *nt = calloc(nmask + 1, sizeof(*nt));

		if (!nt)
			return -ENOMEM;
		for (size_t i = 0; i < ns->nentries; i++)
			id_slot_put(nt, nmask, ns->by_ino[i]);
		ns->mem += (nmask - ns->id_mask) * sizeof(*nt);
		free(ns->id_tab);
		ns->id_tab = nt;
		ns->id_mask = nmask;
	}
	return 0;
}

struct ns_entry *ns__entry_get(struct ns *ns, const uint8_t id[static NS_ID_LEN])
{
	struct ns_entry *e = ns__entry_find(ns, id);

	if (e)
		return e;
	if (grow_tables(ns) < 0 || !(e = ns__calloc(ns, sizeof(*e))))
		return NULL;
	memcpy(e->id, id, NS_ID_LEN);
	e->ino = (uint32_t)++ns->nentries;
	ns->by_ino[e->ino - 1] = e;
	id_slot_put(ns->id_tab, ns->id_mask, e);
	return e;
}

/* ---- view predicates ---- */

static bool has_head(const struct ns_entry *e)
{
	return e->h.state != NS_H_NONE;
}

bool ns__alive(const struct ns_entry *e)
{
	return has_head(e) && !e->h.deleted;
}

static bool live_below(const struct ns_entry *e)
{
	return ns__alive(e) || (e->dir && e->dir->nlb > 0);
}

bool ns__shown(const struct ns_entry *e)
{
	return e->lparent && has_head(e) && live_below(e);
}

bool ns__visible(const struct ns *ns, const struct ns_entry *e)
{
	for (size_t steps = 0; steps <= ns->nentries; steps++) {
		if (e == ns->root)
			return true;
		if (!(e->flags & NS_E_SHOWN))
			return false;
		e = e->lparent;
		if (e->h.type != NS_DIR)
			return false;
	}
	return false;
}

/* ---- names ---- */

static const char *cname_get(const struct ns *ns, const struct ns_entry *e)
{
	for (struct ns_cname *c = ns->cnames[(uintptr_t)e / 64 % 64]; c; c = c->next)
		if (c->e == e)
			return c->name;
	return NULL;
}

const char *ns__vname(const struct ns *ns, const struct ns_entry *e)
{
	if (e->flags & NS_E_CONFLICT) {
		const char *n = cname_get(ns, e);

		if (n)
			return n;
	}
	return e->h.name ? e->h.name : "";
}

static size_t name_hash(const struct ns_entry *parent, const char *name)
{
	return (size_t)(XXH3_64bits(name, strlen(name)) ^
			((uintptr_t)parent * 0x9e3779b97f4a7c15ULL));
}

struct ns_entry *ns__name_find(struct ns *ns, const struct ns_entry *parent, const char *name)
{
	size_t h = name_hash(parent, name) & ns->name_mask;
	uint32_t ino;

	while ((ino = ns->name_tab[h])) {
		struct ns_entry *e = ns->by_ino[ino - 1];

		if (e->lparent == parent && !strcmp(ns__vname(ns, e), name))
			return e;
		h = (h + 1) & ns->name_mask;
	}
	return NULL;
}

static size_t name_home(const struct ns *ns, const struct ns_entry *e, size_t mask)
{
	return name_hash(e->lparent, ns__vname(ns, e)) & mask;
}

static void name_tab_grow(struct ns *ns)
{
	size_t nmask = ns->name_mask * 2 + 1;
	uint32_t *nt = calloc(nmask + 1, sizeof(*nt));

	if (!nt)
		return; /* fuller table: slower, still correct until it is full */
	for (size_t i = 0; i <= ns->name_mask; i++) {
		uint32_t ino = ns->name_tab[i];
		size_t h;

		if (!ino)
			continue;
		h = name_home(ns, ns->by_ino[ino - 1], nmask);
		while (nt[h])
			h = (h + 1) & nmask;
		nt[h] = ino;
	}
	ns->mem += (nmask - ns->name_mask) * sizeof(*nt);
	free(ns->name_tab);
	ns->name_tab = nt;
	ns->name_mask = nmask;
}

static void name_link(struct ns *ns, struct ns_entry *e)
{
	size_t h;

	if ((ns->nnames + 1) * 4 > (ns->name_mask + 1) * 3)
		name_tab_grow(ns);
	if (ns->nnames >= ns->name_mask)
		abort(); /* could not grow a full table: out of memory */
	h = name_home(ns, e, ns->name_mask);
	while (ns->name_tab[h])
		h = (h + 1) & ns->name_mask;
	ns->name_tab[h] = e->ino;
	ns->nnames++;
}

/* Remove @e (under its current key) and shift the probe run back over the hole. */
static void name_unlink(struct ns *ns, struct ns_entry *e)
{
	size_t mask = ns->name_mask, i = name_home(ns, e, mask), j;

	while (ns->name_tab[i] != e->ino) {
		assert(ns->name_tab[i]);
		i = (i + 1) & mask;
	}
	for (j = i;;) {
		size_t k;

		j = (j + 1) & mask;
		if (!ns->name_tab[j])
			break;
		k = name_home(ns, ns->by_ino[ns->name_tab[j] - 1], mask);
		/* Move j back to i unless its home lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		ns->name_tab[i] = ns->name_tab[j];
		i = j;
	}
	ns->name_tab[i] = 0;
	ns->nnames--;
}

/* "stem<mid>.ext" within NS_NAME_MAX, keeping the extension when it is short. */
static void name_with_infix(const char *name, const char *mid, char out[static NS_NAME_MAX + 1])
{
	const char *dot = strrchr(name, '.');
	size_t len = strlen(name), midlen = strlen(mid), stem, ext;

	if (!dot || dot == name || len - (size_t)(dot - name) > 16)
		dot = name + len;
	stem = (size_t)(dot - name);
	ext = len - stem;
	if (stem + midlen + ext > NS_NAME_MAX)
		stem = NS_NAME_MAX - midlen - ext;
	memcpy(out, name, stem);
	memcpy(out + stem, mid, midlen);
	memcpy(out + stem + midlen, dot, ext);
	out[stem + midlen + ext] = '\0';
}

/* Candidate @nbytes (4, 8 or 16) of @e's conflict name: "stem.conflict-<id>.ext"
 * with the first @nbytes of its entry id in hex. */
static void cname_candidate(const struct ns_entry *e, unsigned nbytes,
			    char out[static NS_NAME_MAX + 1])
{
	char mid[16 + 2 * NS_ID_LEN];
	int k = snprintf(mid, sizeof(mid), ".conflict-");

	for (unsigned i = 0; i < nbytes; i++)
		k += snprintf(mid + k, sizeof(mid) - (size_t)k, "%02x", e->id[i]);
	name_with_infix(e->h.name, mid, out);
}

/* Is @name the real name of an entry shown under it in @p? */
static bool real_name_taken(const struct ns *ns, const struct ns_entry *p, const char *name)
{
	size_t h = name_hash(p, name) & ns->name_mask;
	uint32_t ino;

	while ((ino = ns->name_tab[h])) {
		const struct ns_entry *e = ns->by_ino[ino - 1];

		if (e->lparent == p && !(e->flags & NS_E_CONFLICT) && !strcmp(e->h.name, name))
			return true;
		h = (h + 1) & ns->name_mask;
	}
	return false;
}

/* Is @cand also candidate @nbytes of another conflict-named entry beside @e? */
static bool cname_shared(const struct ns *ns, const struct ns_entry *e, unsigned nbytes,
			 const char *cand)
{
	char other[NS_NAME_MAX + 1];

	for (size_t b = 0; b < ARRAY_SIZE(ns->cnames); b++)
		for (const struct ns_cname *c = ns->cnames[b]; c; c = c->next) {
			if (c->e == e || c->e->lparent != e->lparent)
				continue;
			cname_candidate(c->e, nbytes, other);
			if (!strcmp(other, cand))
				return true;
		}
	return false;
}

/*
 * The conflict name of @e (rule 3): the first of its candidates (4, 8, then
 * 16 id bytes) that is neither the real name of an entry shown in the
 * directory (a user may give a file such a name; real names always keep
 * theirs) nor the same candidate of another conflict-named entry there
 * (entry ids that share a prefix: a writer can make them). A function of
 * the entries shown in the directory only, so that names stay unique and
 * the view stays a function of the heads; cnames_update() re-applies it.
 */
static void cname_make(const struct ns *ns, const struct ns_entry *e,
		       char out[static NS_NAME_MAX + 1])
{
	for (unsigned n = 4; n < NS_ID_LEN; n *= 2) {
		cname_candidate(e, n, out);
		if (!real_name_taken(ns, e->lparent, out) && !cname_shared(ns, e, n, out))
			return;
	}
	cname_candidate(e, NS_ID_LEN, out);
}

static void cname_set(struct ns *ns, struct ns_entry *e)
{
	char buf[NS_NAME_MAX + 1];
	struct ns_cname *c;
	size_t len;

	cname_make(ns, e, buf);
	len = strlen(buf);
	if (!(c = ns__alloc(ns, sizeof(*c) + len + 1)))
		return; /* shown under its own name: a duplicate, but nothing lost */
	c->e = e;
	memcpy(c->name, buf, len + 1);
	c->next = ns->cnames[(uintptr_t)e / 64 % 64];
	ns->cnames[(uintptr_t)e / 64 % 64] = c;
	e->flags |= NS_E_CONFLICT;
}

static void cname_clear(struct ns *ns, struct ns_entry *e)
{
	struct ns_cname **pp = &ns->cnames[(uintptr_t)e / 64 % 64];

	e->flags &= ~NS_E_CONFLICT;
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->e == e) {
			struct ns_cname *c = *pp;

			*pp = c->next;
			ns__free(ns, c);
			return;
		}
}

/* Who keeps a contested name: the greatest (hlc, writer, entry id). */
static bool name_wins(const struct ns *ns, const struct ns_entry *a, const struct ns_entry *b)
{
	int c;

	if (a->h.hlc != b->h.hlc)
		return a->h.hlc > b->h.hlc;
	c = memcmp(ns->writers[a->h.writer], ns->writers[b->h.writer], NS_NODE_ID_LEN);
	if (c)
		return c > 0;
	return memcmp(a->id, b->id, NS_ID_LEN) > 0;
}

static struct ns_dir *dir_get(struct ns *ns, struct ns_entry *d)
{
	if (!d->dir)
		d->dir = ns__calloc(ns, sizeof(*d->dir));
	return d->dir;
}

static void dir_add_child(struct ns *ns, struct ns_entry *d, struct ns_entry *e)
{
	struct ns_dir *dir = d->dir;

	if (dir->n == dir->cap) {
		uint32_t cap = dir->cap ? dir->cap * 2 : 4;
		struct ns_entry **nv;

		/* Compact first: stale pointers (moved or removed children) go. */
		if (dir->n > 2 * dir->nshown + 8) {
			ns__dir_sort(ns, d);
			if (dir->n < dir->cap)
				goto add;
		}
		if (!(nv = realloc(dir->v, (size_t)cap * sizeof(*nv))))
			return; /* listed after the next compaction */
		ns->mem += (size_t)(cap - dir->cap) * sizeof(*nv);
		dir->v = nv;
		dir->cap = cap;
	}
add:
	if (dir->n && dir->v[dir->n - 1]->ino >= e->ino)
		dir->sorted = false;
	dir->v[dir->n++] = e;
}

static int by_ino(const void *a, const void *b)
{
	const struct ns_entry *x = *(struct ns_entry *const *)a, *y = *(struct ns_entry *const *)b;

	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Sort children by inode number and drop stale and duplicate pointers. */
void ns__dir_sort(struct ns *ns, struct ns_entry *d)
{
	struct ns_dir *dir = d->dir;
	uint32_t j = 0;

	(void)ns;
	if (!dir)
		return;
	if (!dir->sorted && dir->n)
		qsort(dir->v, dir->n, sizeof(*dir->v), by_ino);
	for (uint32_t i = 0; i < dir->n; i++) {
		struct ns_entry *c = dir->v[i];

		if (c->lparent != d || !(c->flags & NS_E_SHOWN) || (j && dir->v[j - 1] == c))
			continue;
		dir->v[j++] = c;
	}
	dir->n = j;
	dir->sorted = true;
}

static void notify(struct ns *ns, struct ns_entry *e)
{
	if (ns->in_apply && ns->change_fn)
		ns->change_fn(ns->change_arg, e->lparent->ino, ns__vname(ns, e), e->ino);
}

/* After a change to what @p shows: give each conflict-named entry there the
 * name cname_make() calls for now (which does not depend on the conflict
 * names currently given, so the order of the updates does not matter). */
static void cnames_update(struct ns *ns, struct ns_entry *p)
{
	uint32_t n = 0, want = p->dir->nconflict;
	struct ns_entry **v = want ? malloc(want * sizeof(*v)) : NULL;

	if (!v)
		return; /* out of memory: names stay as they are until the next change */
	for (size_t b = 0; b < ARRAY_SIZE(ns->cnames); b++)
		for (struct ns_cname *c = ns->cnames[b]; c && n < want; c = c->next)
			if (c->e->lparent == p)
				v[n++] = c->e;
	for (uint32_t i = 0; i < n; i++) {
		struct ns_entry *c = v[i];
		char name[NS_NAME_MAX + 1];

		cname_make(ns, c, name);
		if (!strcmp(name, ns__vname(ns, c)))
			continue;
		notify(ns, c);
		name_unlink(ns, c);
		cname_clear(ns, c);
		cname_set(ns, c);
		name_link(ns, c);
		notify(ns, c);
	}
	free(v);
}

/* @e becomes shown: enter the name table, taking the name if it wins it. */
static void show(struct ns *ns, struct ns_entry *e)
{
	struct ns_entry *p = e->lparent, *holder;
	struct ns_dir *dir;

	if (!(dir = dir_get(ns, p)))
		return;
	holder = ns__name_find(ns, p, e->h.name);
	if (holder && holder->flags & NS_E_CONFLICT)
		holder = NULL; /* a conflict name equal to our real name: it moves (below) */
	if (holder) {
		if (name_wins(ns, e, holder)) {
			notify(ns, holder);
			name_unlink(ns, holder);
			cname_set(ns, holder);
			name_link(ns, holder);
			notify(ns, holder);
		} else {
			cname_set(ns, e);
		}
		dir->nconflict++;
	}
	name_link(ns, e);
	e->flags |= NS_E_SHOWN;
	dir->nshown++;
	if (e->h.type == NS_DIR)
		dir->nsubdirs++;
	dir_add_child(ns, p, e);
	notify(ns, e);
	if (dir->nconflict)
		cnames_update(ns, p);
}

static void hide(struct ns *ns, struct ns_entry *e)
{
	struct ns_entry *p = e->lparent;
	struct ns_dir *dir = p->dir;
	bool was_conflict = e->flags & NS_E_CONFLICT;

	notify(ns, e);
	name_unlink(ns, e);
	e->flags &= ~NS_E_SHOWN;
	dir->nshown--;
	if (e->h.type == NS_DIR)
		dir->nsubdirs--;
	if (was_conflict) {
		cname_clear(ns, e);
		dir->nconflict--;
	} else if (dir->nconflict) {
		/* Hand the name to the greatest entry shown under a conflict name
		 * for it (the conflict-named are few: look at them only). */
		struct ns_entry *best = NULL;

		for (size_t b = 0; b < ARRAY_SIZE(ns->cnames); b++)
			for (struct ns_cname *c = ns->cnames[b]; c; c = c->next)
				if (c->e->lparent == p && !strcmp(c->e->h.name, e->h.name) &&
				    (!best || name_wins(ns, c->e, best)))
					best = c->e;
		if (best) {
			notify(ns, best);
			name_unlink(ns, best);
			cname_clear(ns, best);
			name_link(ns, best);
			dir->nconflict--;
			notify(ns, best);
		}
	}
	if (dir->nconflict)
		cnames_update(ns, p);
}

/* A child of @p changed its live-below state by @delta: propagate upwards. */
static void lb_adjust(struct ns *ns, struct ns_entry *p, int delta)
{
	while (p) {
		bool before = live_below(p), after;

		if (!dir_get(ns, p))
			return;
		p->dir->nlb = (uint32_t)((int)p->dir->nlb + delta);
		after = live_below(p);
		if (before == after)
			return;
		if (p->lparent && has_head(p)) {
			if (after)
				show(ns, p);
			else
				hide(ns, p);
		}
		delta = after ? 1 : -1;
		p = p->lparent;
	}
}

static void stats_account(struct ns *ns, const struct ns_entry *e, int sign)
{
	if (!ns__alive(e))
		return;
	switch (e->h.type) {
	case NS_FILE:
		ns->st.files += (uint64_t)(int64_t)sign;
		ns->st.bytes += (uint64_t)((int64_t)sign * (int64_t)e->h.size);
		break;
	case NS_DIR:
		ns->st.dirs += (uint64_t)(int64_t)sign;
		break;
	default:
		ns->st.symlinks += (uint64_t)(int64_t)sign;
	}
}

static void detach(struct ns *ns, struct ns_entry *e)
{
	stats_account(ns, e, -1);
	if (!e->lparent)
		return;
	if (e->flags & NS_E_SHOWN)
		hide(ns, e);
	if (live_below(e))
		lb_adjust(ns, e->lparent, -1);
	e->lparent = NULL;
}

/* Would attaching @e under @p close a cycle? Then return the cycle's greatest member. */
static struct ns_entry *cycle_max(struct ns *ns, struct ns_entry *e, struct ns_entry *p)
{
	struct ns_entry *best = e, *q = p;

	for (size_t steps = 0; q && steps <= ns->nentries; steps++) {
		if (q == e)
			return best;
		if (name_wins(ns, q, best))
			best = q;
		q = q->lparent;
	}
	return NULL;
}

static void attach(struct ns *ns, struct ns_entry *e);

static void set_broken(struct ns *ns, struct ns_entry *e, bool broken)
{
	if (broken == !!(e->flags & NS_E_BROKEN))
		return;
	if (broken) {
		e->flags |= NS_E_BROKEN;
		(void)ns__ptrvec_push(&ns->broken, e);
	} else {
		e->flags &= ~NS_E_BROKEN;
		for (size_t i = 0; i < ns->broken.n; i++)
			if (ns->broken.v[i] == e) {
				ns->broken.v[i] = ns->broken.v[--ns->broken.n];
				break;
			}
	}
}

static void attach(struct ns *ns, struct ns_entry *e)
{
	struct ns_entry *p;

	stats_account(ns, e, +1);
	if (e == ns->root || !has_head(e))
		return;
	p = e->h.parent;
	if (e->flags & NS_E_BROKEN) {
		p = ns->root;
	} else {
		struct ns_entry *m = cycle_max(ns, e, p);

		if (m == e) {
			set_broken(ns, e, true);
			p = ns->root;
		} else if (m) {
			/* Break the cycle at its greatest member instead (rule 4). */
			detach(ns, m);
			set_broken(ns, m, true);
			attach(ns, m);
		}
	}
	e->lparent = p;
	if (live_below(e))
		lb_adjust(ns, p, +1);
	if (live_below(e))
		show(ns, e);
}

/* Re-examine entries moved to the root out of cycles: the cycle may be gone,
 * or another member may now be the greatest. Each is looked at once, from a
 * copy of the list: re-attaching one can break or mend others, and
 * set_broken() reorders the list, so scanning it in place skipped entries
 * (an entry then stayed under the root depending on the arrival order). */
static void recheck_broken(struct ns *ns)
{
	struct ns_ptrvec todo = ns->broken;

	memset(&ns->broken, 0, sizeof(ns->broken));
	for (size_t i = 0; i < todo.n; i++) {
		struct ns_entry *b = todo.v[i];

		detach(ns, b);
		set_broken(ns, b, false);
		attach(ns, b);
	}
	free(todo.v);
}

/* ---- heads ---- */

static uint64_t vv_get(const struct ns_head *h, uint32_t w)
{
	if (!h->vv)
		return h->writer == w ? h->hlc : 0;
	for (unsigned i = 0; i < h->vv_n; i++)
		if (h->vv[i].w == w)
			return h->vv[i].hlc;
	return 0;
}

/* @a has seen everything @b has (rule 1); true for equal records. */
static bool dominates(const struct ns_head *a, const struct ns_head *b)
{
	if (b->state == NS_H_IMPLICIT)
		return true;
	if (a->state == NS_H_IMPLICIT)
		return false;
	if (!b->vv)
		return vv_get(a, b->writer) >= b->hlc;
	for (unsigned i = 0; i < b->vv_n; i++)
		if (vv_get(a, b->vv[i].w) < b->vv[i].hlc)
			return false;
	return true;
}

/* The winner among heads: live before deleted, then (hlc, writer id). */
static bool head_beats(const struct ns *ns, const struct ns_head *a, const struct ns_head *b)
{
	int c;

	if (a->deleted != b->deleted)
		return !a->deleted;
	if (a->hlc != b->hlc)
		return a->hlc > b->hlc;
	c = memcmp(ns->writers[a->writer], ns->writers[b->writer], NS_NODE_ID_LEN);
	return c > 0;
}

void ns__head_free(struct ns *ns, struct ns_head *h)
{
	if (h->state == NS_H_PENDING)
		ns->st.pending--;
	ns__free(ns, h->name);
	ns__free(ns, h->xattrs);
	ns__free(ns, h->vv);
	memset(h, 0, sizeof(*h));
}

static size_t head_name_len(const struct ns_head *h)
{
	return strlen(h->name) + 1 + (h->type == NS_SYMLINK ? h->target_len + 1u : 0);
}

uint8_t *ns__head_sig(const struct ns_head *h)
{
	return h->has_sig ? (uint8_t *)h->name + head_name_len(h) : NULL;
}

void ns__head_drop_sig(struct ns *ns, struct ns_head *h)
{
	size_t nl;
	char *s;

	if (!h->has_sig)
		return;
	h->has_sig = 0;
	nl = head_name_len(h);
	if ((s = ns__alloc(ns, nl))) { /* else keep the longer allocation */
		memcpy(s, h->name, nl);
		ns__free(ns, h->name);
		h->name = s;
	}
}

void ns__heads_foreach(struct ns_entry *e, void (*fn)(struct ns_head *h, void *arg), void *arg)
{
	if (!has_head(e))
		return;
	fn(&e->h, arg);
	for (unsigned i = 0; i < e->nmore; i++)
		fn(&e->more[i], arg);
}

void ns__mark_pending(struct ns *ns, struct ns_entry *e)
{
	if (e->flags & NS_E_PENDQ)
		return;
	if (ns__ptrvec_push(&ns->pending, e) == 0)
		e->flags |= NS_E_PENDQ;
}

static void copies_update(struct ns *ns, struct ns_entry *e, uint8_t (*old)[NS_ID_LEN],
			  unsigned nold);

/* Do @a and @b encode to the same record body (for one entry)? */
static bool same_record(const struct ns_head *a, const struct ns_head *b)
{
	return a->parent == b->parent && a->type == b->type && a->deleted == b->deleted &&
	       a->kind == b->kind && !memcmp(a->content, b->content, CS_ID_LEN) &&
	       a->mode == b->mode && a->uid == b->uid && a->gid == b->gid && a->size == b->size &&
	       a->mtime == b->mtime && !a->vv && !b->vv && a->target_len == b->target_len &&
	       head_name_len(a) == head_name_len(b) &&
	       !memcmp(a->name, b->name, head_name_len(a)) && a->xattr_n == b->xattr_n &&
	       a->xattrs_len == b->xattrs_len &&
	       (!a->xattrs_len || !memcmp(a->xattrs, b->xattrs, a->xattrs_len));
}

/*
 * A real record equal to a virtual conflict copy takes its place (same view).
 * Only the very same record: one with the loser's writer and hlc but other
 * fields (a writer can sign anything) is an equal version and ignored, as
 * ever; taking its name and signature renamed a shown entry behind the name
 * table's back and committed a signature that did not match the body.
 */
static int upgrade_virtual(struct ns *ns, struct ns_head *h, struct ns_head *nh)
{
	if (h->state != NS_H_VIRTUAL || nh->state == NS_H_VIRTUAL || h->writer != nh->writer ||
	    h->hlc != nh->hlc || !same_record(h, nh))
		return 0;
	h->state = nh->state;
	h->loc = nh->loc;
	if (nh->has_sig) {
		char *t = h->name;

		h->name = nh->name;
		nh->name = t;
		h->has_sig = 1;
	}
	nh->state = NS_H_NONE; /* its pending count moved to h */
	ns__head_free(ns, nh);
	return h->state == NS_H_PENDING ? 1 : 0;
}

int ns__merge(struct ns *ns, struct ns_entry *e, struct ns_head *nh)
{
	struct ns_head all[NS_MAX_HEADS + 1];
	uint8_t old_copies[NS_MAX_HEADS][NS_ID_LEN];
	unsigned n = 0, keep = 0, best = 0, nold;
	bool was_multi = e->nmore > 0;

	if (has_head(e)) {
		if (dominates(&e->h, nh)) {
			int up = upgrade_virtual(ns, &e->h, nh);

			if (!up)
				ns__head_free(ns, nh);
			return up;
		}
		for (unsigned i = 0; i < e->nmore; i++)
			if (dominates(&e->more[i], nh)) {
				int up = upgrade_virtual(ns, &e->more[i], nh);

				if (!up)
					ns__head_free(ns, nh);
				return up;
			}
		if ((size_t)e->nmore + 2 > ARRAY_SIZE(all)) {
			/* More concurrent versions than any real history makes: refuse. */
			ns__head_free(ns, nh);
			return -EMLINK;
		}
	}
	/* The clock follows what it sees, except versions stamped more than an
	 * hour ahead of our wall clock (a writer with a broken clock). */
	if (nh->hlc > ns->hlc_last && (nh->hlc >> 16) < tm_real_ms() + 3600000)
		ns->hlc_last = nh->hlc;
	nold = ns__conflict_copies(ns, e, old_copies, NS_MAX_HEADS);
	detach(ns, e);
	if (has_head(e)) {
		all[n++] = e->h;
		for (unsigned i = 0; i < e->nmore; i++)
			all[n++] = e->more[i];
	}
	all[n++] = *nh;
	memset(nh, 0, sizeof(*nh));
	/* Drop the heads that the new one dominates. */
	for (unsigned i = 0; i < n; i++) {
		if (i != n - 1 && dominates(&all[n - 1], &all[i])) {
			/* The root's stand-in (no record yet) was never counted. */
			if (all[i].state != NS_H_IMPLICIT) {
				ns->st.records--;
				if (all[i].deleted)
					ns->st.tombstones--;
			}
			ns__head_free(ns, &all[i]);
			continue;
		}
		all[keep++] = all[i];
	}
	ns->st.records++;
	if (all[keep - 1].deleted)
		ns->st.tombstones++;
	for (unsigned i = 1; i < keep; i++)
		if (head_beats(ns, &all[i], &all[best]))
			best = i;
	e->h = all[best];
	all[best] = all[0];
	ns__free(ns, e->more);
	e->more = NULL;
	e->nmore = 0;
	if (keep > 1) {
		if (!(e->more = ns__alloc(ns, (keep - 1) * sizeof(*e->more)))) {
			/* Keep the winner only; the losers come back with anti-entropy. */
			for (unsigned i = 1; i < keep; i++)
				ns__head_free(ns, &all[i]);
			keep = 1;
		} else {
			memcpy(e->more, all + 1, (keep - 1) * sizeof(*e->more));
			e->nmore = (uint8_t)(keep - 1);
		}
	}
	if (e->nmore && !was_multi)
		ns->st.conflicts++;
	else if (!e->nmore && was_multi)
		ns->st.conflicts--;
	attach(ns, e);
	if (e->flags & NS_E_SHOWN)
		notify(ns, e); /* its attributes or content may have changed */
	if (ns->broken.n)
		recheck_broken(ns);
	if (e->nmore || nold)
		copies_update(ns, e, old_copies, nold);
	return 1;
}

/* ---- conflict copies (rule 2) ---- */

static bool same_content(const struct ns_head *a, const struct ns_head *b)
{
	if (a->type != b->type || a->size != b->size || a->kind != b->kind)
		return false;
	if (a->kind != NS_CONTENT_NONE && memcmp(a->content, b->content, CS_ID_LEN))
		return false;
	if (a->type == NS_SYMLINK)
		return !strcmp(a->name + strlen(a->name) + 1, b->name + strlen(b->name) + 1);
	return true;
}

int ns__head_copy(struct ns *ns, struct ns_head *dst, const struct ns_head *src)
{
	size_t nl = strlen(src->name) + 1 + (src->type == NS_SYMLINK ? src->target_len + 1u : 0);

	*dst = *src;
	dst->vv = NULL;
	dst->vv_n = 0;
	dst->has_sig = 0;
	dst->xattrs = NULL;
	dst->state = NS_H_NONE;
	if (!(dst->name = ns__alloc(ns, nl)))
		return -ENOMEM;
	memcpy(dst->name, src->name, nl);
	if (src->xattrs_len) {
		if (!(dst->xattrs = ns__alloc(ns, src->xattrs_len))) {
			ns__free(ns, dst->name);
			return -ENOMEM;
		}
		memcpy(dst->xattrs, src->xattrs, src->xattrs_len);
	}
	return 0;
}

/* The id of the conflict copy of @loser, a losing head of @e: derived from both only. */
static void copy_id(const struct ns *ns, const struct ns_entry *e, const struct ns_head *loser,
		    uint8_t id[static NS_ID_LEN])
{
	uint8_t seed[NS_ID_LEN + NS_NODE_ID_LEN + 8];

	memcpy(seed, e->id, NS_ID_LEN);
	memcpy(seed + NS_ID_LEN, ns->writers[loser->writer], NS_NODE_ID_LEN);
	for (int i = 0; i < 8; i++)
		seed[NS_ID_LEN + NS_NODE_ID_LEN + i] = (uint8_t)(loser->hlc >> (56 - 8 * i));
	crypto_generichash(id, NS_ID_LEN, seed, sizeof(seed), (const uint8_t *)"p2pfs-conflict",
			   14);
}

unsigned ns__conflict_copies(struct ns *ns, struct ns_entry *e, uint8_t (*ids)[NS_ID_LEN],
			     unsigned max)
{
	unsigned n = 0;

	if (e == ns->root || !has_head(e))
		return 0;
	for (unsigned i = 0; i < e->nmore && n < max; i++)
		if (!e->more[i].deleted && !same_content(&e->more[i], &e->h))
			copy_id(ns, e, &e->more[i], ids[n++]);
	return n;
}

/* Show the copy of @loser as a virtual entry (unless that entry has a record already). */
static void virtual_add(struct ns *ns, struct ns_entry *e, const struct ns_head *loser)
{
	uint8_t id[NS_ID_LEN];
	char mid[64], name[NS_NAME_MAX + 1];
	struct ns_head nh;
	struct ns_entry *c;
	struct tm tm;
	time_t secs = (time_t)((loser->hlc >> 16) / 1000);
	size_t tl = loser->type == NS_SYMLINK ? loser->target_len + 1u : 0, nl;

	copy_id(ns, e, loser, id);
	if ((c = ns__entry_find(ns, id)) && has_head(c))
		return;
	gmtime_r(&secs, &tm);
	snprintf(mid, sizeof(mid), ".conflict-%02x%02x%02x%02x-%04d%02d%02d-%02d%02d%02d",
		 ns->writers[loser->writer][0], ns->writers[loser->writer][1],
		 ns->writers[loser->writer][2], ns->writers[loser->writer][3], tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	name_with_infix(loser->name, mid, name);
	if (ns__head_copy(ns, &nh, loser) < 0)
		return;
	nl = strlen(name) + 1;
	ns__free(ns, nh.name);
	if (!(nh.name = ns__alloc(ns, nl + tl))) {
		ns__head_free(ns, &nh);
		return;
	}
	memcpy(nh.name, name, nl);
	if (tl)
		memcpy(nh.name + nl, loser->name + strlen(loser->name) + 1, tl);
	nh.vv_n = 0;
	nh.deleted = 0;
	nh.state = NS_H_VIRTUAL;
	nh.loc = 0;
	if (!(c = ns__entry_get(ns, id))) {
		ns__head_free(ns, &nh);
		return;
	}
	(void)ns__merge(ns, c, &nh);
}

/* The conflict that called for copy @id is gone: a copy nobody made real goes too. */
static void virtual_remove(struct ns *ns, const uint8_t id[static NS_ID_LEN])
{
	struct ns_entry *c = ns__entry_find(ns, id);

	if (!c || c->h.state != NS_H_VIRTUAL || c->nmore)
		return;
	detach(ns, c);
	ns->st.records--;
	ns__head_free(ns, &c->h);
	if (ns->broken.n)
		recheck_broken(ns);
}

void ns__materialize(struct ns *ns, const uint8_t id[static NS_ID_LEN])
{
	struct ns_entry *c = ns__entry_find(ns, id);

	if (!c || c->h.state != NS_H_VIRTUAL)
		return;
	c->h.state = NS_H_PENDING;
	ns->st.pending++;
	ns__mark_pending(ns, c);
}

/* After @e's heads changed: show the copies they call for, drop the ones they no longer do. */
static void copies_update(struct ns *ns, struct ns_entry *e, uint8_t (*old)[NS_ID_LEN],
			  unsigned nold)
{
	struct ns_head losers[NS_MAX_HEADS];
	uint8_t ids[NS_MAX_HEADS][NS_ID_LEN];
	unsigned n = ns__conflict_copies(ns, e, ids, NS_MAX_HEADS), k = 0;

	/* Copy the losers first: adding copies merges into other entries. */
	for (unsigned i = 0; i < e->nmore && k < n; i++)
		if (!e->more[i].deleted && !same_content(&e->more[i], &e->h) &&
		    ns__head_copy(ns, &losers[k], &e->more[i]) == 0)
			k++;
	for (unsigned i = 0; i < k; i++) {
		virtual_add(ns, e, &losers[i]);
		ns__free(ns, losers[i].name);
		ns__free(ns, losers[i].xattrs);
	}
	for (unsigned i = 0; i < nold; i++) {
		bool still = false;

		for (unsigned j = 0; j < n && !still; j++)
			still = !memcmp(old[i], ids[j], NS_ID_LEN);
		if (!still)
			virtual_remove(ns, old[i]);
	}
}

/* ---- records <-> heads ---- */

int ns__head_from_record(struct ns *ns, const struct ns_record *rec, struct ns_head *h)
{
	bool self_only = rec->vv_n == 1;
	struct ns_entry *parent = NULL;
	size_t nl = rec->name_len + 1u + (rec->target_len ? rec->target_len + 1u : 0);
	static const uint8_t zero[NS_ID_LEN];

	memset(h, 0, sizeof(*h));
	if (memcmp(rec->id, zero, NS_ID_LEN) && !(parent = ns__entry_get(ns, rec->parent)))
		return -ENOMEM;
	if (!(h->name = ns__alloc(ns, nl)))
		return -ENOMEM;
	memcpy(h->name, rec->name, rec->name_len);
	h->name[rec->name_len] = '\0';
	if (rec->target_len) {
		memcpy(h->name + rec->name_len + 1, rec->target, rec->target_len);
		h->name[nl - 1] = '\0';
	}
	if (rec->xattrs_len) {
		if (!(h->xattrs = ns__alloc(ns, rec->xattrs_len)))
			goto err;
		memcpy(h->xattrs, rec->xattrs, rec->xattrs_len);
	}
	h->writer = ns__writer_idx(ns, rec->writer);
	if (!self_only) {
		if (!(h->vv = ns__alloc(ns, rec->vv_n * sizeof(*h->vv))))
			goto err;
		for (unsigned i = 0; i < rec->vv_n; i++) {
			h->vv[i].w = ns__writer_idx(ns, rec->vv[i].writer);
			h->vv[i].hlc = rec->vv[i].hlc;
		}
		h->vv_n = rec->vv_n;
	}
	h->hlc = rec->hlc;
	h->size = rec->size;
	h->mtime = rec->mtime;
	h->parent = parent;
	h->mode = rec->mode;
	h->uid = rec->uid;
	h->gid = rec->gid;
	h->xattrs_len = rec->xattrs_len;
	h->xattr_n = rec->xattr_n;
	h->target_len = rec->target_len;
	h->type = rec->type;
	h->deleted = rec->deleted;
	h->kind = rec->content_kind;
	memcpy(h->content, rec->content, CS_ID_LEN);
	return 0;
err:
	ns__head_free(ns, h);
	return -ENOMEM;
}

static int vv_cmp(const void *a, const void *b)
{
	return memcmp(((const struct ns_vv_ent *)a)->writer, ((const struct ns_vv_ent *)b)->writer,
		      NS_NODE_ID_LEN);
}

void ns__head_to_record(struct ns *ns, const struct ns_entry *e, const struct ns_head *h,
			struct ns_record *rec)
{
	static const uint8_t zero[NS_ID_LEN];

	memset(rec, 0, sizeof(*rec));
	rec->type = h->type;
	rec->content_kind = h->kind;
	rec->deleted = h->deleted;
	memcpy(rec->id, e->id, NS_ID_LEN);
	memcpy(rec->parent, h->parent ? h->parent->id : zero, NS_ID_LEN);
	rec->hlc = h->hlc;
	memcpy(rec->writer, ns->writers[h->writer], NS_NODE_ID_LEN);
	rec->mode = h->mode;
	rec->uid = h->uid;
	rec->gid = h->gid;
	rec->size = h->size;
	rec->mtime = h->mtime;
	memcpy(rec->content, h->content, CS_ID_LEN);
	rec->name = h->name;
	rec->name_len = (uint8_t)strlen(h->name);
	if (h->type == NS_SYMLINK) {
		rec->target = h->name + rec->name_len + 1;
		rec->target_len = h->target_len;
	}
	if (!h->vv) {
		rec->vv_n = 1;
		memcpy(rec->vv[0].writer, ns->writers[h->writer], NS_NODE_ID_LEN);
		rec->vv[0].hlc = h->hlc;
	} else {
		rec->vv_n = h->vv_n;
		for (unsigned i = 0; i < h->vv_n; i++) {
			memcpy(rec->vv[i].writer, ns->writers[h->vv[i].w], NS_NODE_ID_LEN);
			rec->vv[i].hlc = h->vv[i].hlc;
		}
		qsort(rec->vv, rec->vv_n, sizeof(rec->vv[0]), vv_cmp);
	}
	rec->xattr_n = h->xattr_n;
	rec->xattrs = h->xattrs;
	rec->xattrs_len = h->xattrs_len;
}
