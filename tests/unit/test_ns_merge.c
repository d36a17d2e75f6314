// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_ns_merge.c - the namespace as a CRDT (ns.h rules 1-4):
 * several writer nodes (separate namespaces, one share key, their own node
 * ids) change the tree at the same time and exchange signed records at
 * random moments, so that some changes are concurrent and some causally
 * ordered. Every record any node signs is collected; the whole set is then
 * merged into fresh namespaces in many orders (with repeats, in reverse,
 * writable and read-only, committed and reopened midway) and every result
 * must be the same tree, the tree the nodes themselves show.
 *
 * Beyond "the same everywhere", the tree is checked against the records
 * with an independent model of rules 1-2: per entry id, the heads are the
 * records no other record's version vector dominates, and the winner is the
 * live head with the greatest (hlc, writer). Every live winner is reachable
 * and shows the winner's attributes; every live loser with other content
 * appears once as a conflict copy beside it.
 */
#include "common/tm.h"
#include "fs/ns.h"
#include "fs/ns_record.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#define NODES 4

static uint8_t share_pk[32], share_sk[64];

static void keys_once(void)
{
	static bool done;

	if (done)
		return;
	T_ASSERT(sodium_init() >= 0);
	crypto_sign_keypair(share_pk, share_sk);
	done = true;
}

static struct ns *open_ns(const char *dir, const uint8_t node[static NS_NODE_ID_LEN], bool writable)
{
	struct ns_open_opts o = { .share_pk = share_pk,
				  .share_sk = writable ? share_sk : NULL,
				  .node_id = node };
	struct ns *ns;

	T_ASSERT_OK(ns_open(dir, &o, &ns));
	return ns;
}

static struct ns_content content_of(uint32_t v)
{
	struct ns_content c = { .kind = NS_CONTENT_MANIFEST };

	memset(c.id, 0x5a, sizeof(c.id));
	memcpy(c.id, &v, sizeof(v));
	return c;
}

/* ---- growing strings ---- */

struct str {
	char *s;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void str_addf(struct str *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	T_ASSERT(n >= 0);
	if (s->len + (size_t)n + 1 > s->cap) {
		s->cap = (s->len + (size_t)n + 1) * 2;
		T_ASSERT((s->s = realloc(s->s, s->cap)));
	}
	va_start(ap, fmt);
	vsnprintf(s->s + s->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	s->len += (size_t)n;
}

/* ---- walking the visible tree ---- */

/* One visible entry, as the walk found it. */
struct vent {
	uint8_t id[NS_ID_LEN], parent_id[NS_ID_LEN];
	uint64_t ino, parent;
	char *name, *path;
	struct ns_attr a;
	struct ns_content c;
	char *target;
	size_t nkids;
};

struct tree {
	struct vent *v;
	size_t n, cap;
	char *dump; /* canonical text */
};

struct kid {
	char *name;
	uint64_t ino;
	struct ns_attr a;
};

struct kids {
	struct kid *v;
	size_t n, cap;
};

static int collect_cb(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		      uint64_t next)
{
	struct kids *k = arg;

	T_ASSERT(next > 0);
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 16;
		T_ASSERT((k->v = realloc(k->v, k->cap * sizeof(*k->v))));
	}
	T_ASSERT((k->v[k->n].name = strdup(name)));
	k->v[k->n].ino = ino;
	k->v[k->n++].a = *a;
	return 0;
}

static int kid_by_name(const void *a, const void *b)
{
	return strcmp(((const struct kid *)a)->name, ((const struct kid *)b)->name);
}

static void dump_xattrs(struct ns *ns, uint64_t ino, struct str *out)
{
	char *names;
	long n = ns_xattr_list(ns, ino, NULL, 0);

	T_ASSERT(n >= 0);
	T_ASSERT((names = malloc((size_t)n + 1)));
	T_ASSERT_EQ(ns_xattr_list(ns, ino, names, (size_t)n), n);
	for (long i = 0; i < n; i += (long)strlen(names + i) + 1) {
		long vl = ns_xattr_get(ns, ino, names + i, NULL, 0);
		uint8_t *v, h[8];

		T_ASSERT(vl >= 0);
		T_ASSERT((v = malloc((size_t)vl + 1)));
		T_ASSERT_EQ(ns_xattr_get(ns, ino, names + i, v, (size_t)vl), vl);
		crypto_generichash(h, sizeof(h), v, (size_t)vl, NULL, 0);
		str_addf(out, " %s=%ld:%02x%02x%02x%02x", names + i, vl, h[0], h[1], h[2], h[3]);
		free(v);
	}
	free(names);
}

static void dump_line(struct ns *ns, struct vent *e, struct str *out)
{
	char hex[2 * CS_ID_LEN + 1];

	sodium_bin2hex(hex, sizeof(hex), e->c.id, CS_ID_LEN);
	str_addf(out, "%s t%u m%o u%u g%u s%llu mt%lld ct%lld n%u c%u:%.16s", e->path, e->a.type,
		 e->a.mode, e->a.uid, e->a.gid, (unsigned long long)e->a.size,
		 (long long)e->a.mtime, (long long)e->a.ctime, e->a.nlink, e->c.kind,
		 e->c.kind ? hex : "-");
	if (e->target)
		str_addf(out, " ->%s", e->target);
	dump_xattrs(ns, e->ino, out);
	str_addf(out, "\n");
}

static struct vent *tree_add(struct tree *t)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		T_ASSERT((t->v = realloc(t->v, t->cap * sizeof(*t->v))));
	}
	memset(&t->v[t->n], 0, sizeof(t->v[0]));
	return &t->v[t->n++];
}

/* Fill @e (ino, name, path, parent set) from the namespace. */
static void vent_fill(struct ns *ns, struct vent *e)
{
	T_ASSERT_OK(ns_getattr(ns, e->ino, &e->a));
	T_ASSERT_OK(ns_get_content(ns, e->ino, &e->c));
	T_ASSERT_OK(ns_entry_id(ns, e->ino, e->id));
	T_ASSERT_OK(ns_entry_id(ns, e->parent, e->parent_id));
	if (e->a.type == NS_SYMLINK) {
		const char *target;

		T_ASSERT_OK(ns_readlink(ns, e->ino, &target));
		T_ASSERT((e->target = strdup(target)));
		T_ASSERT_EQ(strlen(target), e->a.size);
	}
}

/* Walk @dir (already entry @self of @t), checking the view's invariants. */
static void walk_dir(struct ns *ns, struct tree *t, size_t self, struct str *out)
{
	struct kids k = { 0 };
	unsigned subdirs = 0;
	uint64_t dir = t->v[self].ino;

	T_ASSERT_OK(ns_readdir(ns, dir, 0, collect_cb, &k));
	if (k.n)
		qsort(k.v, k.n, sizeof(*k.v), kid_by_name);
	t->v[self].nkids = k.n;
	for (size_t i = 0; i < k.n; i++) {
		struct vent *e;
		uint64_t ino;
		size_t at;

		if (i && !strcmp(k.v[i - 1].name, k.v[i].name))
			T_FAIL("%s: two entries named %s", t->v[self].path, k.v[i].name);
		T_ASSERT(ns_name_ok(k.v[i].name, strlen(k.v[i].name)));
		T_ASSERT_OK(ns_lookup(ns, dir, k.v[i].name, &ino));
		if (ino != k.v[i].ino)
			T_FAIL("%s/%s: lookup gives %llu, readdir %llu", t->v[self].path,
			       k.v[i].name, (unsigned long long)ino,
			       (unsigned long long)k.v[i].ino);
		at = t->n;
		e = tree_add(t);
		e->ino = k.v[i].ino;
		e->parent = dir;
		T_ASSERT((e->name = strdup(k.v[i].name)));
		T_ASSERT(asprintf(&e->path, "%s/%s", dir == NS_ROOT_INO ? "" : t->v[self].path,
				  e->name) > 0);
		vent_fill(ns, e);
		T_ASSERT(!e->a.deleted);
		if (e->a.type != k.v[i].a.type || e->a.mode != k.v[i].a.mode ||
		    e->a.uid != k.v[i].a.uid || e->a.gid != k.v[i].a.gid ||
		    e->a.size != k.v[i].a.size || e->a.mtime != k.v[i].a.mtime ||
		    e->a.ctime != k.v[i].a.ctime || e->a.nlink != k.v[i].a.nlink ||
		    e->a.deleted != k.v[i].a.deleted)
			T_FAIL("%s: readdir and getattr disagree", e->path);
		dump_line(ns, e, out);
		if (e->a.type == NS_DIR) {
			uint64_t parent;

			subdirs++;
			T_ASSERT_OK(ns_parent(ns, e->ino, &parent));
			T_ASSERT_EQ(parent, dir);
			walk_dir(ns, t, at, out);
		}
	}
	{
		struct ns_attr a;

		T_ASSERT_OK(ns_getattr(ns, dir, &a));
		if (a.nlink != 2 + subdirs)
			T_FAIL("%s: nlink %u with %u subdirectories", t->v[self].path, a.nlink,
			       subdirs);
	}
	for (size_t i = 0; i < k.n; i++)
		free(k.v[i].name);
	free(k.v);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The visible tree of @ns and its canonical dump (with the stats that are a
 * function of the records). */
static void tree_get(struct ns *ns, struct tree *t)
{
	struct str out = { 0 };
	struct ns_stats st;
	struct vent *root;
	uint64_t *inos;

	memset(t, 0, sizeof(*t));
	root = tree_add(t);
	root->ino = root->parent = NS_ROOT_INO;
	T_ASSERT((root->name = strdup("")) && (root->path = strdup("/")));
	vent_fill(ns, root);
	dump_line(ns, root, &out);
	walk_dir(ns, t, 0, &out);
	T_ASSERT((inos = malloc(t->n * sizeof(*inos))));
	for (size_t i = 0; i < t->n; i++)
		inos[i] = t->v[i].ino;
	qsort(inos, t->n, sizeof(*inos), cmp_u64);
	for (size_t i = 1; i < t->n; i++)
		if (inos[i] == inos[i - 1])
			T_FAIL("inode %llu is shown twice", (unsigned long long)inos[i]);
	free(inos);
	ns_get_stats(ns, &st);
	str_addf(&out, "stats f%llu d%llu l%llu b%llu r%llu t%llu c%llu\n",
		 (unsigned long long)st.files, (unsigned long long)st.dirs,
		 (unsigned long long)st.symlinks, (unsigned long long)st.bytes,
		 (unsigned long long)st.records, (unsigned long long)st.tombstones,
		 (unsigned long long)st.conflicts);
	t->dump = out.s;
}

static void tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		free(t->v[i].path);
		free(t->v[i].target);
	}
	free(t->v);
	free(t->dump);
	memset(t, 0, sizeof(*t));
}

static char *dump_of(struct ns *ns)
{
	struct tree t;
	char *d;

	tree_get(ns, &t);
	d = t.dump;
	t.dump = NULL;
	tree_free(&t);
	return d;
}

static void same_tree(const char *want, const char *got, const char *what)
{
	if (strcmp(want, got)) {
		fprintf(stderr, "---- reference\n%s---- %s\n%s", want, what, got);
		T_FAIL("%s: the tree differs", what);
	}
}

static const struct vent *tree_find_path(const struct tree *t, const char *path)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].path, path))
			return &t->v[i];
	return NULL;
}

static size_t tree_count(const struct tree *t, const char *part)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n; i++)
		n += strstr(t->v[i].name, part) != NULL;
	return n;
}

/* ---- the set of every signed record ---- */

struct recset {
	uint8_t **rec;
	size_t *len;
	size_t n, cap;
	uint32_t *tab; /* open addressing: index + 1 */
	size_t mask;
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static void rs_rehash(struct recset *rs)
{
	size_t mask = rs->mask ? rs->mask * 2 + 1 : 1023;

	free(rs->tab);
	T_ASSERT((rs->tab = calloc(mask + 1, sizeof(*rs->tab))));
	rs->mask = mask;
	for (size_t i = 0; i < rs->n; i++) {
		size_t h = fnv(rs->rec[i], rs->len[i]) & mask;

		while (rs->tab[h])
			h = (h + 1) & mask;
		rs->tab[h] = (uint32_t)i + 1;
	}
}

/* Add a copy of @rec unless present; returns 1 if it was new. */
static int rs_put(struct recset *rs, const uint8_t *rec, size_t len)
{
	size_t h;

	if ((rs->n + 1) * 2 > rs->mask + 1)
		rs_rehash(rs);
	for (h = fnv(rec, len) & rs->mask; rs->tab[h]; h = (h + 1) & rs->mask) {
		size_t i = rs->tab[h] - 1;

		if (rs->len[i] == len && !memcmp(rs->rec[i], rec, len))
			return 0;
	}
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 256;
		T_ASSERT((rs->rec = realloc(rs->rec, rs->cap * sizeof(*rs->rec))));
		T_ASSERT((rs->len = realloc(rs->len, rs->cap * sizeof(*rs->len))));
	}
	T_ASSERT((rs->rec[rs->n] = malloc(len)));
	memcpy(rs->rec[rs->n], rec, len);
	rs->len[rs->n] = len;
	rs->tab[h] = (uint32_t)++rs->n;
	return 1;
}

static int rs_put_cb(void *arg, const uint8_t *rec, size_t len)
{
	(void)rs_put(arg, rec, len);
	return 0;
}

static bool rs_has(const struct recset *rs, const uint8_t *rec, size_t len)
{
	for (size_t h = fnv(rec, len) & rs->mask; rs->tab[h]; h = (h + 1) & rs->mask) {
		size_t i = rs->tab[h] - 1;

		if (rs->len[i] == len && !memcmp(rs->rec[i], rec, len))
			return true;
	}
	return false;
}

/* A record a node re-encoded from what it received is the very record it got. */
static int known_cb(void *arg, const uint8_t *rec, size_t len)
{
	if (!rs_has(arg, rec, len))
		T_FAIL("a merged node holds a record that nobody signed (%zu bytes)", len);
	return 0;
}

static void rs_free(struct recset *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->rec[i]);
	free(rs->rec);
	free(rs->len);
	free(rs->tab);
	memset(rs, 0, sizeof(*rs));
}

/* ---- nodes ---- */

struct sim {
	char *dir[NODES];
	uint8_t id[NODES][NS_NODE_ID_LEN];
	struct ns *n[NODES];
	struct recset all;
	bool touch_copies; /* random operations may pick conflict copies */
};

static void sim_open(struct sim *s)
{
	keys_once();
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < NODES; i++) {
		s->dir[i] = t_tmpdir("ns-node");
		t_rand_fill(s->id[i], NS_NODE_ID_LEN);
		s->n[i] = open_ns(s->dir[i], s->id[i], true);
	}
}

static void sim_close(struct sim *s)
{
	for (int i = 0; i < NODES; i++) {
		ns_close(s->n[i]);
		t_tmpdir_remove(s->dir[i]);
		free(s->dir[i]);
	}
	rs_free(&s->all);
}

/* Commit node @i and collect what it signed (and what it holds). */
static void collect(struct sim *s, int i)
{
	T_ASSERT_OK(ns_commit(s->n[i]));
	T_ASSERT_OK(ns_foreach_record(s->n[i], rs_put_cb, &s->all));
}

struct send {
	struct ns *to;
	bool partial;
};

static int send_cb(void *arg, const uint8_t *rec, size_t len)
{
	struct send *sd = arg;
	int rc;

	if (sd->partial && t_rand() % 2)
		return 0;
	rc = ns_apply(sd->to, rec, len);
	if (rc != 0 && rc != 1)
		T_FAIL("ns_apply of a relayed record: %d", rc);
	return 0;
}

/* Node @j learns what node @i has (all of it, or a random part). */
static void sync_pair(struct sim *s, int i, int j, bool partial)
{
	struct send sd = { .to = s->n[j], .partial = partial };

	collect(s, i);
	collect(s, j);
	T_ASSERT_OK(ns_foreach_record(s->n[i], send_cb, &sd));
	collect(s, j);
}

/* Everyone learns everything. */
static void sync_all(struct sim *s)
{
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < NODES; i++)
			for (int j = 0; j < NODES; j++)
				if (i != j)
					sync_pair(s, i, j, false);
}

/* ---- random operations ---- */

static const char *const names[] = { "a",     "b.txt",	  "c.txt", "d",
				     "e.dat", "notes.md", "f",	   "g.tar.gz" };

struct pick {
	uint64_t ino, parent;
	uint8_t type;
	char name[NS_NAME_MAX + 1];
	char path[4096];
};

struct picks {
	struct pick *v;
	size_t n, cap;
};

static void gather(struct ns *ns, uint64_t dir, const char *path, struct picks *p)
{
	struct kids k = { 0 };

	T_ASSERT_OK(ns_readdir(ns, dir, 0, collect_cb, &k));
	for (size_t i = 0; i < k.n; i++) {
		struct pick *e;
		uint64_t ino;

		/* Checked at every step, not only when trees are compared. */
		T_ASSERT_OK(ns_lookup(ns, dir, k.v[i].name, &ino));
		if (ino != k.v[i].ino) {
			for (size_t j = 0; j < k.n; j++)
				fprintf(stderr, "  %s/%s: inode %llu type %u\n", path, k.v[j].name,
					(unsigned long long)k.v[j].ino, k.v[j].a.type);
			T_FAIL("%s/%s: lookup gives inode %llu, readdir %llu", path, k.v[i].name,
			       (unsigned long long)ino, (unsigned long long)k.v[i].ino);
		}

		if (p->n == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 64;
			T_ASSERT((p->v = realloc(p->v, p->cap * sizeof(*p->v))));
		}
		e = &p->v[p->n++];
		e->ino = k.v[i].ino;
		e->parent = dir;
		e->type = k.v[i].a.type;
		snprintf(e->name, sizeof(e->name), "%s", k.v[i].name);
		snprintf(e->path, sizeof(e->path), "%s/%s", path, k.v[i].name);
		if (e->type == NS_DIR) {
			char sub[4096];

			snprintf(sub, sizeof(sub), "%s", e->path);
			gather(ns, e->ino, sub, p);
		}
	}
	for (size_t i = 0; i < k.n; i++)
		free(k.v[i].name);
	free(k.v);
}

/* A random visible entry of @type (0: any); false if there is none. */
static bool pick(struct sim *s, struct ns *ns, uint8_t type, struct pick *out)
{
	struct picks p = { 0 };
	size_t n = 0, chosen = 0;

	gather(ns, NS_ROOT_INO, "", &p);
	for (size_t i = 0; i < p.n; i++) {
		if ((type && p.v[i].type != type) ||
		    (!s->touch_copies && strstr(p.v[i].name, ".conflict-")))
			continue;
		if (t_rand() % ++n == 0)
			chosen = i;
	}
	if (n)
		*out = p.v[chosen];
	free(p.v);
	return n > 0;
}

static uint64_t pick_dir(struct sim *s, struct ns *ns)
{
	struct pick p;

	return t_rand() % 3 == 0 || !pick(s, ns, NS_DIR, &p) ? NS_ROOT_INO : p.ino;
}

/* Resolve @path ("/a/b") on @ns. */
static bool resolve(struct ns *ns, const char *path, struct pick *out)
{
	char buf[4096], *save = NULL, *tok;
	uint64_t cur = NS_ROOT_INO, parent = NS_ROOT_INO;
	const char *last = NULL;
	struct ns_attr a;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		parent = cur;
		if (ns_lookup(ns, cur, tok, &cur) < 0)
			return false;
		last = tok;
	}
	if (!last || ns_getattr(ns, cur, &a) < 0)
		return false;
	out->ino = cur;
	out->parent = parent;
	out->type = a.type;
	snprintf(out->name, sizeof(out->name), "%s", last);
	snprintf(out->path, sizeof(out->path), "%s", path);
	return true;
}

static void expect_rc(int rc, const int *ok, size_t n, const char *what)
{
	if (rc == 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (rc == ok[i])
			return;
	T_FAIL("%s: unexpected %d (%s)", what, rc, strerror(-rc));
}

#define EXPECT(rc, what, ...)                                               \
	do {                                                                \
		static const int ok_[] = { 0, __VA_ARGS__ };                \
		expect_rc((rc), ok_, sizeof(ok_) / sizeof(ok_[0]), (what)); \
	} while (0)

static void op_create(struct sim *s, struct ns *ns, enum ns_type type)
{
	uint64_t ino;
	int rc =
	    ns_create(ns, pick_dir(s, ns), names[t_rand() % ARRAY_SIZE(names)], type,
		      type == NS_DIR ? 0755 : 0644, 0, 0, type == NS_SYMLINK ? "../x" : NULL, &ino);

	EXPECT(rc, "create", -EEXIST);
	if (rc == 0 && type == NS_FILE && t_rand() % 2) {
		struct ns_content c = content_of((uint32_t)t_rand());

		T_ASSERT_OK(ns_set_content(ns, ino, t_rand() % 1000000 + 1, &c, 7));
	}
}

static void op_rename(struct sim *s, struct ns *ns)
{
	struct pick p;
	unsigned flags = 0;
	uint64_t to;
	int rc;

	if (!pick(s, ns, 0, &p))
		return;
	switch (t_rand() % 6) {
	case 0:
		flags = NS_RENAME_NOREPLACE;
		break;
	case 1:
		flags = NS_RENAME_EXCHANGE;
		break;
	}
	to = pick_dir(s, ns);
	rc = ns_rename(ns, p.parent, p.name, to, names[t_rand() % ARRAY_SIZE(names)], flags);
	EXPECT(rc, "rename", -EEXIST, -EINVAL, -ENOTEMPTY, -EISDIR, -ENOTDIR, -ENOENT);
}

/* One random local change on node @i. */
static void random_op(struct sim *s, int i)
{
	struct ns *ns = s->n[i];
	struct pick p;

	switch (t_rand() % 12) {
	case 0:
	case 1:
		op_create(s, ns, NS_FILE);
		break;
	case 2:
		op_create(s, ns, NS_DIR);
		break;
	case 3:
		op_create(s, ns, NS_SYMLINK);
		break;
	case 4:
	case 5:
		if (pick(s, ns, NS_FILE, &p)) {
			struct ns_content c = content_of((uint32_t)t_rand());

			T_ASSERT_OK(ns_set_content(ns, p.ino, t_rand() % 1000000 + 1, &c,
						   (int64_t)(t_rand() % 1000)));
		}
		break;
	case 6:
		if (pick(s, ns, 0, &p)) {
			struct ns_attr a = { .mode = (uint32_t)(t_rand() & 0777),
					     .uid = (uint32_t)(t_rand() % 3),
					     .mtime = (int64_t)(t_rand() % 1000) };

			T_ASSERT_OK(ns_setattr(ns, p.ino, &a, (unsigned)(t_rand() % 16)));
		}
		break;
	case 7:
	case 8:
		op_rename(s, ns);
		break;
	case 9:
		if (pick(s, ns, t_rand() % 2 ? NS_FILE : NS_SYMLINK, &p))
			T_ASSERT_OK(ns_unlink(ns, p.parent, p.name));
		break;
	case 10:
		if (pick(s, ns, NS_DIR, &p))
			EXPECT(ns_rmdir(ns, p.parent, p.name), "rmdir", -ENOTEMPTY);
		break;
	default:
		if (pick(s, ns, 0, &p)) {
			if (t_rand() % 3)
				T_ASSERT_OK(ns_xattr_set(ns, p.ino,
							 t_rand() % 2 ? "user.x" : "user.y", p.name,
							 strlen(p.name), 0));
			else
				EXPECT(ns_xattr_remove(ns, p.ino, "user.x"), "xattr remove",
				       -ENODATA);
		}
	}
}

/* Remove everything below directory @dir on @ns (bottom up). Listed again
 * after each removal: removing one of two entries that share a name hands
 * the name to the other. A directory that was removed elsewhere and shown
 * only for what it held vanishes once that is gone. */
static void empty_dir(struct ns *ns, uint64_t dir)
{
	for (int guard = 0; guard < 10000; guard++) {
		struct kids k = { 0 };
		int rc = ns_readdir(ns, dir, 0, collect_cb, &k);

		if (rc == -ENOENT)
			return;
		T_ASSERT_OK(rc);
		if (k.n == 0) {
			free(k.v);
			return;
		}
		if (k.v[0].a.type == NS_DIR) {
			empty_dir(ns, k.v[0].ino);
			EXPECT(ns_rmdir(ns, dir, k.v[0].name), "rmdir", -ENOENT, -ENOTDIR,
			       -ENOTEMPTY);
		} else {
			T_ASSERT_OK(ns_unlink(ns, dir, k.v[0].name));
		}
		for (size_t i = 0; i < k.n; i++)
			free(k.v[i].name);
		free(k.v);
	}
	T_FAIL("a directory does not become empty");
}

/* Does anything below @dir carry a conflict name? */
static bool holds_copies(struct ns *ns, uint64_t dir)
{
	struct picks p = { 0 };
	bool found = false;

	gather(ns, dir, "", &p);
	for (size_t i = 0; i < p.n && !found; i++)
		found = strstr(p.v[i].name, ".conflict-") != NULL;
	free(p.v);
	return found;
}

/* Two nodes change the same thing at the same time (neither has seen the other's change). */
static void random_clash(struct sim *s, int i, int j)
{
	struct ns *a = s->n[i], *b = s->n[j];
	struct pick p, q, p2, q2;

	switch (t_rand() % 4) {
	case 0: /* edits of one file */
		if (pick(s, a, NS_FILE, &p) && resolve(b, p.path, &q) && q.type == NS_FILE) {
			struct ns_content c1 = content_of((uint32_t)t_rand());
			struct ns_content c2 = content_of((uint32_t)t_rand());

			T_ASSERT_OK(ns_set_content(a, p.ino, t_rand() % 5000 + 1, &c1, 1));
			T_ASSERT_OK(ns_set_content(b, q.ino, t_rand() % 5000 + 1, &c2, 2));
		}
		break;
	case 1: /* creates of one path */
		if (pick(s, a, NS_DIR, &p) && resolve(b, p.path, &q) && q.type == NS_DIR) {
			const char *name = names[t_rand() % ARRAY_SIZE(names)];
			enum ns_type type = t_rand() % 3 ? NS_FILE : NS_DIR;
			uint64_t x, y;
			int ra = ns_create(a, p.ino, name, type, 0644, 0, 0, NULL, &x);
			int rb = ns_create(b, q.ino, name, type, 0644, 0, 0, NULL, &y);

			EXPECT(ra, "create", -EEXIST);
			EXPECT(rb, "create", -EEXIST);
			if (ra == 0 && type == NS_FILE) {
				struct ns_content c = content_of((uint32_t)t_rand());

				T_ASSERT_OK(ns_set_content(a, x, 10, &c, 1));
			}
		}
		break;
	case 2: /* two directories moved into each other */
		if (pick(s, a, NS_DIR, &p) && pick(s, a, NS_DIR, &p2) && p.ino != p2.ino &&
		    resolve(b, p.path, &q) && resolve(b, p2.path, &q2) && q.type == NS_DIR &&
		    q2.type == NS_DIR) {
			int ra = ns_rename(a, p.parent, p.name, p2.ino, p.name, 0);
			int rb = ns_rename(b, q2.parent, q2.name, q.ino, q2.name, 0);

			EXPECT(ra, "crossed move", -EINVAL, -EEXIST, -ENOTEMPTY, -ENOTDIR);
			EXPECT(rb, "crossed move", -EINVAL, -EEXIST, -ENOTEMPTY, -ENOTDIR);
		}
		break;
	default: /* a directory removed while something is added to it */
		if (pick(s, a, NS_DIR, &p) && resolve(b, p.path, &q) && q.type == NS_DIR &&
		    (s->touch_copies || !holds_copies(a, p.ino))) {
			uint64_t x;

			empty_dir(a, p.ino);
			EXPECT(ns_rmdir(a, p.parent, p.name), "rmdir", -ENOENT, -ENOTDIR,
			       -ENOTEMPTY);
			EXPECT(ns_create(b, q.ino, names[t_rand() % ARRAY_SIZE(names)],
					 t_rand() % 2 ? NS_FILE : NS_DIR, 0700, 0, 0, NULL, &x),
			       "create in removed dir", -EEXIST);
		}
	}
}

/* @steps rounds of changes and random exchanges among the nodes. */
static void random_history(struct sim *s, int steps)
{
	for (int step = 0; step < steps; step++) {
		int i = (int)(t_rand() % NODES),
		    j = (int)((i + 1 + t_rand() % (NODES - 1)) % NODES);

		if (t_rand() % 6 == 0) {
			random_clash(s, i, j);
			collect(s, j);
		} else {
			for (unsigned k = 1 + t_rand() % 3; k > 0; k--)
				random_op(s, i);
		}
		collect(s, i);
		if (t_rand() % 4 == 0)
			sync_pair(s, i, j, t_rand() % 2);
		if (t_rand() % 10 == 0)
			sync_pair(s, j, i, false);
	}
}

/* ---- an independent model of the heads (ns.h rules 1-2) ---- */

struct mrec {
	struct ns_record r; /* borrows from the record set */
	bool head, winner;
};

static uint64_t vv_of(const struct ns_record *r, const uint8_t *w)
{
	for (unsigned i = 0; i < r->vv_n; i++)
		if (!memcmp(r->vv[i].writer, w, NS_NODE_ID_LEN))
			return r->vv[i].hlc;
	return 0;
}

static bool dominates(const struct ns_record *a, const struct ns_record *b)
{
	for (unsigned i = 0; i < b->vv_n; i++)
		if (vv_of(a, b->vv[i].writer) < b->vv[i].hlc)
			return false;
	return true;
}

/* Rule 2: the live head with the greatest (hlc, writer). */
static bool beats(const struct ns_record *a, const struct ns_record *b)
{
	if (a->deleted != b->deleted)
		return !a->deleted;
	if (a->hlc != b->hlc)
		return a->hlc > b->hlc;
	return memcmp(a->writer, b->writer, NS_NODE_ID_LEN) > 0;
}

static bool same_content(const struct ns_record *a, const struct ns_record *b)
{
	if (a->type != b->type || a->size != b->size || a->content_kind != b->content_kind)
		return false;
	if (a->content_kind && memcmp(a->content, b->content, CS_ID_LEN))
		return false;
	return a->target_len == b->target_len && !memcmp(a->target, b->target, a->target_len);
}

static int mrec_by_id(const void *x, const void *y)
{
	return memcmp(((const struct mrec *)x)->r.id, ((const struct mrec *)y)->r.id, NS_ID_LEN);
}

static const struct vent *tree_by_id(const struct tree *t, const uint8_t *id)
{
	for (size_t i = 0; i < t->n; i++)
		if (!memcmp(t->v[i].id, id, NS_ID_LEN))
			return &t->v[i];
	return NULL;
}

/* The infix of the conflict copy of @loser (ns.h rule 2). */
static void copy_infix(const struct ns_record *loser, char out[static 64])
{
	time_t secs = (time_t)((loser->hlc >> 16) / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(out, 64, ".conflict-%02x%02x%02x%02x-%04d%02d%02d-%02d%02d%02d", loser->writer[0],
		 loser->writer[1], loser->writer[2], loser->writer[3], tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "stem<infix>": how the copy's name starts ("stem<infix>.ext", the
 * extension kept when it is short; a copy whose name is taken gets another
 * infix after this one). */
static void copy_prefix(const struct ns_record *loser, const char *infix,
			char out[static NS_NAME_MAX + 64])
{
	const char *dot = memrchr(loser->name, '.', loser->name_len);
	size_t stem = loser->name_len;

	if (dot && dot != loser->name && loser->name_len - (size_t)(dot - loser->name) <= 16)
		stem = (size_t)(dot - loser->name);
	snprintf(out, NS_NAME_MAX + 64, "%.*s%s", (int)stem, loser->name, infix);
}

static bool shows_record(const struct vent *e, const struct ns_record *r)
{
	return e->a.type == r->type && e->a.mode == r->mode && e->a.uid == r->uid &&
	       e->a.gid == r->gid && e->a.size == r->size && e->a.mtime == r->mtime &&
	       e->c.kind == r->content_kind &&
	       (!r->content_kind || !memcmp(e->c.id, r->content, CS_ID_LEN)) &&
	       (r->type != NS_SYMLINK || (e->target && strlen(e->target) == r->target_len &&
					  !memcmp(e->target, r->target, r->target_len)));
}

/*
 * Check @t (the merge of @rs) against the model. With @copies_untouched,
 * nobody changed a conflict copy, so each one must still show its loser.
 */
static void check_against_model(const struct recset *rs, const struct tree *t,
				bool copies_untouched)
{
	struct mrec *m = calloc(rs->n ? rs->n : 1, sizeof(*m));
	size_t live = 0, copies = 0, conflicts = 0;

	T_ASSERT(m);
	for (size_t i = 0; i < rs->n; i++)
		T_ASSERT_OK(ns_record_decode(rs->rec[i], rs->len[i], &m[i].r));
	if (rs->n)
		qsort(m, rs->n, sizeof(*m), mrec_by_id);
	for (size_t g = 0, end; g < rs->n; g = end) {
		size_t win = SIZE_MAX, nlive = 0;
		const struct vent *e;

		for (end = g; end < rs->n && !memcmp(m[end].r.id, m[g].r.id, NS_ID_LEN); end++)
			;
		/* Rule 1: heads are the records nobody dominates. One writer never
		 * signs two different records for one entry and hlc. */
		for (size_t i = g; i < end; i++) {
			m[i].head = true;
			for (size_t j = g; j < end; j++) {
				if (i == j)
					continue;
				if (!memcmp(m[i].r.writer, m[j].r.writer, NS_NODE_ID_LEN) &&
				    m[i].r.hlc == m[j].r.hlc)
					T_FAIL("two different records with one writer and hlc");
				if (dominates(&m[j].r, &m[i].r))
					m[i].head = false;
			}
			if (m[i].head && (win == SIZE_MAX || beats(&m[i].r, &m[win].r)))
				win = i;
			nlive += m[i].head && !m[i].r.deleted;
		}
		T_ASSERT(win != SIZE_MAX);
		e = tree_by_id(t, m[win].r.id);
		if (m[win].r.deleted) {
			/* Shown only as a directory that still holds something. */
			if (e && (e->a.type != NS_DIR || e->nkids == 0))
				T_FAIL("%s: deleted, shown without live entries below", e->path);
			continue;
		}
		live++;
		if (!e)
			T_FAIL("a live entry (%.*s, hlc %llx) is not reachable", m[win].r.name_len,
			       m[win].r.name, (unsigned long long)m[win].r.hlc);
		if (!shows_record(e, &m[win].r))
			T_FAIL("%s does not show its winning record", e->path);
		if (m[win].r.name_len &&
		    (strlen(e->name) != m[win].r.name_len ||
		     memcmp(e->name, m[win].r.name, m[win].r.name_len)) &&
		    !strstr(e->name, ".conflict-"))
			T_FAIL("%s: shown neither under its name nor a conflict name", e->path);
		/* Under its parent; only a directory may be moved to the root, out of a cycle. */
		if (m[win].r.name_len && memcmp(e->parent_id, m[win].r.parent, NS_ID_LEN) &&
		    !(e->a.type == NS_DIR && e->parent == NS_ROOT_INO))
			T_FAIL("%s: shown under another parent", e->path);
		if (nlive < 2)
			continue;
		conflicts++;
		/* Rule 2: every live loser with other content has exactly one copy. */
		for (size_t i = g; i < end && copies_untouched; i++) {
			char infix[64], prefix[NS_NAME_MAX + 64];
			size_t found = 0, twins;

			if (i == win || !m[i].head || m[i].r.deleted ||
			    same_content(&m[i].r, &m[win].r))
				continue;
			copy_infix(&m[i].r, infix);
			copy_prefix(&m[i].r, infix, prefix);
			/* Earlier versions by the same writer in the same second that
			 * look the same (a change of xattrs only, say) may have lost
			 * before and have their own copy, which nothing tells apart. */
			twins = 0;
			for (size_t j = g; j < end; j++)
				twins += !memcmp(m[j].r.writer, m[i].r.writer, NS_NODE_ID_LEN) &&
					 (m[j].r.hlc >> 16) / 1000 == (m[i].r.hlc >> 16) / 1000 &&
					 m[j].r.hlc <= m[i].r.hlc &&
					 same_content(&m[j].r, &m[i].r) &&
					 m[j].r.mode == m[i].r.mode && m[j].r.uid == m[i].r.uid &&
					 m[j].r.gid == m[i].r.gid && m[j].r.mtime == m[i].r.mtime &&
					 m[j].r.name_len == m[i].r.name_len &&
					 !memcmp(m[j].r.name, m[i].r.name, m[i].r.name_len);
			for (size_t k = 0; k < t->n; k++)
				if (!strncmp(t->v[k].name, prefix, strlen(prefix)) &&
				    !memcmp(t->v[k].parent_id, m[i].r.parent, NS_ID_LEN) &&
				    shows_record(&t->v[k], &m[i].r))
					found++;
			if (found < 1 || found > twins) {
				fprintf(stderr,
					"loser of %02x%02x%02x%02x: s%llu mt%lld m%o c%02x%02x\n",
					m[i].r.id[0], m[i].r.id[1], m[i].r.id[2], m[i].r.id[3],
					(unsigned long long)m[i].r.size, (long long)m[i].r.mtime,
					m[i].r.mode, m[i].r.content[0], m[i].r.content[1]);
				for (size_t k = 0; k < t->n; k++)
					if (strstr(t->v[k].name, infix))
						fprintf(
						    stderr,
						    "  %s: id %02x%02x%02x%02x s%llu mt%lld m%o c%02x%02x\n",
						    t->v[k].path, t->v[k].id[0], t->v[k].id[1],
						    t->v[k].id[2], t->v[k].id[3],
						    (unsigned long long)t->v[k].a.size,
						    (long long)t->v[k].a.mtime, t->v[k].a.mode,
						    t->v[k].c.id[0], t->v[k].c.id[1]);
				for (size_t k = 0; k < rs->n; k++)
					if (memmem(m[k].r.name, m[k].r.name_len, infix,
						   strlen(infix)))
						fprintf(stderr,
							"  record %.*s: id %02x%02x%02x%02x\n",
							m[k].r.name_len, m[k].r.name, m[k].r.id[0],
							m[k].r.id[1], m[k].r.id[2], m[k].r.id[3]);
			}
			if (found < 1 || found > twins)
				T_FAIL("the loser %.*s (%s) has %zu conflict copies",
				       m[i].r.name_len, m[i].r.name, infix, found);
			copies++;
		}
	}
	/* Nothing is shown that no record (or conflict) calls for. */
	for (size_t i = 1; i < t->n; i++) {
		struct mrec key;

		memcpy(key.r.id, t->v[i].id, NS_ID_LEN);
		if (!bsearch(&key, m, rs->n, sizeof(*m), mrec_by_id) &&
		    !strstr(t->v[i].name, ".conflict-"))
			T_FAIL("%s is shown but has no record", t->v[i].path);
	}
	if (getenv("T_VERBOSE"))
		printf("# %zu records, %zu live entries, %zu with concurrent heads, %zu copies "
		       "checked\n",
		       rs->n, live, conflicts, copies);
	free(m);
}

/* ---- merging the whole set in other orders ---- */

enum merge_mode {
	M_SHUFFLE = 0,
	M_TWICE = 1U << 0,    /* every record twice, shuffled */
	M_ADJACENT = 1U << 1, /* every record twice in a row */
	M_REVERSE = 1U << 2,
	M_IN_ORDER = 1U << 3,
	M_COMMITS = 1U << 4, /* commit now and then while merging */
};

/* Apply every record of @rs in an order @mode makes to a fresh namespace. */
static char *merge_into_fresh(const struct recset *rs, bool writable, unsigned mode,
			      struct tree *ret_tree, bool reopen)
{
	char *dir = t_tmpdir("ns-merge"), *out;
	size_t n = rs->n, m = (mode & M_TWICE) ? 2 * n : n, *order;
	uint8_t node[NS_NODE_ID_LEN];
	struct ns *ns;

	T_ASSERT((order = malloc((2 * n + 1) * sizeof(*order))));
	for (size_t i = 0; i < m; i++)
		order[i] = (mode & M_REVERSE) ? n - 1 - i % n : i % n;
	if (!(mode & (M_REVERSE | M_IN_ORDER)))
		for (size_t i = m; i > 1; i--) {
			size_t j = t_rand() % i, tmp = order[i - 1];

			order[i - 1] = order[j];
			order[j] = tmp;
		}
	t_rand_fill(node, sizeof(node));
	ns = open_ns(dir, node, writable);
	for (size_t i = 0; i < m; i++) {
		size_t r = order[i];
		int rc = ns_apply(ns, rs->rec[r], rs->len[r]);

		if (rc != 0 && rc != 1)
			T_FAIL("ns_apply of record %zu: %d", r, rc);
		if (mode & M_ADJACENT)
			T_ASSERT_EQ(ns_apply(ns, rs->rec[r], rs->len[r]), 0);
		if ((mode & M_COMMITS) && t_rand() % 64 == 0)
			T_ASSERT_OK(ns_commit(ns));
	}
	if (ret_tree) {
		tree_get(ns, ret_tree);
		T_ASSERT((out = strdup(ret_tree->dump)));
	} else {
		out = dump_of(ns);
	}
	if (reopen) {
		/* What it committed loads back to the same tree, also from a snapshot. */
		char *again;

		T_ASSERT_OK(ns_commit(ns));
		T_ASSERT_OK(ns_foreach_record(ns, known_cb, (void *)rs));
		ns_close(ns);
		ns = open_ns(dir, node, writable);
		again = dump_of(ns);
		same_tree(out, again, "reopened");
		free(again);
		T_ASSERT_OK(ns_compact(ns));
		ns_close(ns);
		ns = open_ns(dir, node, !writable);
		again = dump_of(ns);
		same_tree(out, again, "compacted and reopened");
		free(again);
	}
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
	free(order);
	return out;
}

/* Merge @s->all in @perms orders; all give the tree every node shows. */
static void check_order_independence(struct sim *s, int perms, bool copies_untouched)
{
	struct tree ref;
	char *want = merge_into_fresh(&s->all, true, M_IN_ORDER, &ref, true);

	check_against_model(&s->all, &ref, copies_untouched);
	for (int p = 0; p < perms; p++) {
		unsigned mode = p == 0 ? M_REVERSE
				: p == 1
				    ? M_ADJACENT | M_COMMITS
				    : (p % 3 == 0 ? M_TWICE : 0) | (p % 4 == 0 ? M_COMMITS : 0);
		char *got = merge_into_fresh(&s->all, p % 2 == 0, mode, NULL, false);
		char what[64];

		snprintf(what, sizeof(what), "permutation %d (%s, mode %u)", p,
			 p % 2 == 0 ? "writable" : "read-only", mode);
		same_tree(want, got, what);
		free(got);
	}
	for (int i = 0; i < NODES; i++) {
		char *got = dump_of(s->n[i]), what[32];

		snprintf(what, sizeof(what), "node %d", i);
		same_tree(want, got, what);
		free(got);
	}
	tree_free(&ref);
	free(want);
}

/* Let node @i's tree be read into @t. */
static void node_tree(struct sim *s, int i, struct tree *t)
{
	tree_get(s->n[i], t);
}

static uint64_t lookup(struct ns *ns, uint64_t dir, const char *name)
{
	uint64_t ino = 0;

	T_ASSERT_OK(ns_lookup(ns, dir, name, &ino));
	return ino;
}

/* The record of entry @id that carries content @c, from the record set. */
static bool find_record(const struct recset *rs, const uint8_t *id, const struct ns_content *c,
			struct ns_record *ret)
{
	for (size_t i = 0; i < rs->n; i++) {
		struct ns_record r;

		T_ASSERT_OK(ns_record_decode(rs->rec[i], rs->len[i], &r));
		if (!memcmp(r.id, id, NS_ID_LEN) && r.content_kind == c->kind &&
		    !memcmp(r.content, c->id, CS_ID_LEN)) {
			*ret = r;
			return true;
		}
	}
	return false;
}

/*
 * With T_NS_CORPUS=DIR set, the tests write seeds for fuzz_ns_record there:
 * single records and whole histories joined by its separator.
 */
static void corpus_write(const struct recset *rs, const char *name, bool joined)
{
	const char *dir = getenv("T_NS_CORPUS");
	char path[4096];
	FILE *f;

	if (!dir)
		return;
	for (size_t i = 0; i < rs->n; i++) {
		if (!joined)
			snprintf(path, sizeof(path), "%s/%s-%zu", dir, name, i);
		else
			snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (i == 0 || !joined)
			T_ASSERT((f = fopen(path, "wb")));
		if (joined && i > 0)
			T_ASSERT_EQ(fwrite("\xffNSREC\xff", 1, 7, f), 7);
		T_ASSERT_EQ(fwrite(rs->rec[i], 1, rs->len[i], f), rs->len[i]);
		if (!joined || i == rs->n - 1)
			T_ASSERT(fclose(f) == 0);
	}
}

/* ---- tests ---- */

static void concurrent_edits_keep_the_winner_and_one_conflict_copy(void)
{
	struct sim s;
	struct ns_content c1 = content_of(0x1111), c2 = content_of(0x2222);
	struct ns_content c3 = content_of(0x3333), c4 = content_of(0x4444);
	struct ns_record r1, r2, *win, *lose;
	struct tree t;
	uint8_t id[NS_ID_LEN];
	uint64_t f;
	char infix[64], name[128];
	const struct vent *e;

	sim_open(&s);
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "doc.txt", NS_FILE, 0644, 0, 0, NULL, &f));
	T_ASSERT_OK(ns_entry_id(s.n[0], f, id));
	sync_all(&s);
	/* Partitioned: nodes 0 and 1 both write the file. */
	T_ASSERT_OK(ns_set_content(s.n[0], lookup(s.n[0], NS_ROOT_INO, "doc.txt"), 11, &c1, 1));
	T_ASSERT_OK(ns_set_content(s.n[1], lookup(s.n[1], NS_ROOT_INO, "doc.txt"), 22, &c2, 2));
	collect(&s, 0);
	collect(&s, 1);
	sync_all(&s);
	T_ASSERT(find_record(&s.all, id, &c1, &r1) && find_record(&s.all, id, &c2, &r2));
	win = (r1.hlc > r2.hlc || (r1.hlc == r2.hlc && memcmp(r1.writer, r2.writer, 32) > 0)) ? &r1
											      : &r2;
	lose = win == &r1 ? &r2 : &r1;
	copy_infix(lose, infix);
	snprintf(name, sizeof(name), "/doc%s.txt", infix);
	for (int i = 0; i < NODES; i++) {
		node_tree(&s, i, &t);
		/* The winner keeps the name, the loser's content is one copy beside it. */
		T_ASSERT((e = tree_find_path(&t, "/doc.txt")));
		T_ASSERT_EQ(e->a.size, win->size);
		T_ASSERT_MEM_EQ(e->c.id, win->content, CS_ID_LEN);
		T_ASSERT_EQ(tree_count(&t, ".conflict-"), 1);
		if (!(e = tree_find_path(&t, name)))
			T_FAIL("node %d has no %s:\n%s", i, name, t.dump);
		T_ASSERT_EQ(e->a.size, lose->size);
		T_ASSERT_MEM_EQ(e->c.id, lose->content, CS_ID_LEN);
		T_ASSERT_EQ(e->a.mode, 0644);
		tree_free(&t);
	}
	check_order_independence(&s, 20, true);
	/*
	 * Nodes 2 and 3, both having seen the conflict, write the file without
	 * hearing from each other: each turns the copy into a real record, and
	 * the two records are the same bytes.
	 */
	{
		struct recset a = { 0 }, b = { 0 };
		const uint8_t *ca = NULL, *cb = NULL;
		size_t la = 0, lb = 0;
		size_t before = s.all.n;

		T_ASSERT_OK(
		    ns_set_content(s.n[2], lookup(s.n[2], NS_ROOT_INO, "doc.txt"), 33, &c3, 3));
		T_ASSERT_OK(
		    ns_set_content(s.n[3], lookup(s.n[3], NS_ROOT_INO, "doc.txt"), 44, &c4, 4));
		T_ASSERT_OK(ns_commit(s.n[2]));
		T_ASSERT_OK(ns_commit(s.n[3]));
		T_ASSERT_OK(ns_foreach_record(s.n[2], rs_put_cb, &a));
		T_ASSERT_OK(ns_foreach_record(s.n[3], rs_put_cb, &b));
		for (size_t i = 0; i < a.n; i++) {
			struct ns_record r;

			T_ASSERT_OK(ns_record_decode(a.rec[i], a.len[i], &r));
			if (memmem(r.name, r.name_len, ".conflict-", 10)) {
				T_ASSERT(!ca);
				ca = a.rec[i];
				la = a.len[i];
				T_ASSERT_MEM_EQ(r.writer, lose->writer, NS_NODE_ID_LEN);
				T_ASSERT_EQ(r.hlc, lose->hlc);
			}
		}
		for (size_t i = 0; i < b.n; i++) {
			struct ns_record r;

			T_ASSERT_OK(ns_record_decode(b.rec[i], b.len[i], &r));
			if (memmem(r.name, r.name_len, ".conflict-", 10)) {
				T_ASSERT(!cb);
				cb = b.rec[i];
				lb = b.len[i];
			}
		}
		T_ASSERT(ca && cb);
		T_ASSERT_EQ(la, lb);
		T_ASSERT_MEM_EQ(ca, cb, la);
		collect(&s, 2);
		collect(&s, 3);
		T_ASSERT_EQ(s.all.n, before + 3); /* two new versions of doc.txt, one copy */
		rs_free(&a);
		rs_free(&b);
	}
	sync_all(&s);
	node_tree(&s, 0, &t);
	/* The first copy is real now and stays; the new clash has its own copy. */
	T_ASSERT((e = tree_find_path(&t, name)));
	T_ASSERT_MEM_EQ(e->c.id, lose->content, CS_ID_LEN);
	T_ASSERT_EQ(tree_count(&t, ".conflict-"), 2);
	T_ASSERT((e = tree_find_path(&t, "/doc.txt")));
	T_ASSERT(e->a.size == 33 || e->a.size == 44);
	tree_free(&t);
	/* More exchanges change nothing: copies do not multiply. */
	{
		size_t n = s.all.n;

		sync_all(&s);
		T_ASSERT_EQ(s.all.n, n);
	}
	check_order_independence(&s, 20, false);
	corpus_write(&s.all, "conflict", true);
	corpus_write(&s.all, "rec-conflict", false);
	sim_close(&s);
}

static void concurrent_creates_of_one_path_are_one_entry(void)
{
	struct sim s;
	struct ns_content cx = content_of(0xaaaa), cy = content_of(0xbbbb);
	uint64_t d0, d1, f0, f1, x;
	struct tree t;
	const struct vent *e;

	sim_open(&s);
	/* Directories: one entry holding what both put in it. */
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "same", NS_DIR, 0755, 0, 0, NULL, &d0));
	T_ASSERT_OK(ns_create(s.n[1], NS_ROOT_INO, "same", NS_DIR, 0700, 0, 0, NULL, &d1));
	T_ASSERT_OK(ns_create(s.n[0], d0, "from0", NS_FILE, 0644, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_create(s.n[1], d1, "from1", NS_FILE, 0644, 0, 0, NULL, &x));
	/* Files with different content: one entry and a conflict copy. */
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "f.txt", NS_FILE, 0644, 0, 0, NULL, &f0));
	T_ASSERT_OK(ns_create(s.n[1], NS_ROOT_INO, "f.txt", NS_FILE, 0644, 0, 0, NULL, &f1));
	T_ASSERT_OK(ns_set_content(s.n[0], f0, 100, &cx, 1));
	T_ASSERT_OK(ns_set_content(s.n[1], f1, 200, &cy, 1));
	/* Files with the same (empty) content: one entry, no copy. */
	T_ASSERT_OK(ns_create(s.n[2], NS_ROOT_INO, "e.txt", NS_FILE, 0644, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_create(s.n[3], NS_ROOT_INO, "e.txt", NS_FILE, 0600, 0, 0, NULL, &x));
	/* A file and a directory of one name: two entries, one renamed. */
	T_ASSERT_OK(ns_create(s.n[2], NS_ROOT_INO, "both", NS_FILE, 0644, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_create(s.n[3], NS_ROOT_INO, "both", NS_DIR, 0755, 0, 0, NULL, &x));
	for (int i = 0; i < NODES; i++)
		collect(&s, i);
	sync_all(&s);
	node_tree(&s, 0, &t);
	T_ASSERT((e = tree_find_path(&t, "/same")));
	T_ASSERT_EQ(e->nkids, 2);
	T_ASSERT(tree_find_path(&t, "/same/from0") && tree_find_path(&t, "/same/from1"));
	T_ASSERT_EQ(tree_count(&t, "same"), 1);
	T_ASSERT((e = tree_find_path(&t, "/f.txt")));
	T_ASSERT(e->a.size == 100 || e->a.size == 200);
	T_ASSERT_EQ(tree_count(&t, "f.conflict-"), 1);
	T_ASSERT(tree_find_path(&t, "/e.txt"));
	T_ASSERT_EQ(tree_count(&t, "e.conflict-"), 0);
	T_ASSERT(tree_find_path(&t, "/both"));
	T_ASSERT_EQ(tree_count(&t, "both.conflict-"), 1);
	tree_free(&t);
	check_order_independence(&s, 30, true);
	corpus_write(&s.all, "same-path", true);
	sim_close(&s);
}

static void crossed_directory_moves_keep_everything_reachable(void)
{
	struct sim s;
	static const char *const dirs[] = { "A", "B", "X", "Y", "Z" };
	struct tree t;

	sim_open(&s);
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		uint64_t d, f;
		char name[16];

		T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, dirs[i], NS_DIR, 0755, 0, 0, NULL, &d));
		snprintf(name, sizeof(name), "in%s", dirs[i]);
		T_ASSERT_OK(ns_create(s.n[0], d, name, NS_FILE, 0644, 0, 0, NULL, &f));
	}
	sync_all(&s);
	/* A into B on node 0, B into A on node 1; X->Y, Y->Z, Z->X on nodes 0, 2, 3. */
	T_ASSERT_OK(ns_rename(s.n[0], NS_ROOT_INO, "A", lookup(s.n[0], NS_ROOT_INO, "B"), "A", 0));
	T_ASSERT_OK(ns_rename(s.n[1], NS_ROOT_INO, "B", lookup(s.n[1], NS_ROOT_INO, "A"), "B", 0));
	T_ASSERT_OK(ns_rename(s.n[0], NS_ROOT_INO, "X", lookup(s.n[0], NS_ROOT_INO, "Y"), "X", 0));
	T_ASSERT_OK(ns_rename(s.n[2], NS_ROOT_INO, "Y", lookup(s.n[2], NS_ROOT_INO, "Z"), "Y", 0));
	T_ASSERT_OK(ns_rename(s.n[3], NS_ROOT_INO, "Z", lookup(s.n[3], NS_ROOT_INO, "X"), "Z", 0));
	for (int i = 0; i < NODES; i++)
		collect(&s, i);
	sync_all(&s);
	node_tree(&s, 1, &t);
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		char name[16];

		snprintf(name, sizeof(name), "in%s", dirs[i]);
		if (tree_count(&t, name) != 1 || tree_count(&t, dirs[i]) < 1)
			T_FAIL("%s or %s unreachable:\n%s", dirs[i], name, t.dump);
	}
	T_ASSERT_EQ(t.n, 1 + 2 * ARRAY_SIZE(dirs));
	tree_free(&t);
	check_order_independence(&s, 30, true);
	/* Work goes on inside the untangled tree. */
	{
		struct pick p;

		T_ASSERT(pick(&s, s.n[2], NS_DIR, &p));
		T_ASSERT_OK(ns_create(s.n[2], p.ino, "later", NS_FILE, 0644, 0, 0, NULL, &p.ino));
		T_ASSERT(pick(&s, s.n[3], NS_DIR, &p));
		EXPECT(ns_rename(s.n[3], p.parent, p.name, NS_ROOT_INO, "top", 0), "move up",
		       -EEXIST);
		collect(&s, 2);
		collect(&s, 3);
		sync_all(&s);
		check_order_independence(&s, 10, true);
	}
	corpus_write(&s.all, "cycles", true);
	sim_close(&s);
}

static void removed_directory_stays_while_it_holds_new_entries(void)
{
	struct sim s;
	uint64_t g, x;
	struct tree t;
	const struct vent *e;

	sim_open(&s);
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "gone", NS_DIR, 0755, 0, 0, NULL, &g));
	T_ASSERT_OK(ns_create(s.n[0], g, "old", NS_FILE, 0644, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_create(s.n[0], g, "olddir", NS_DIR, 0755, 0, 0, NULL, &x));
	sync_all(&s);
	/* Node 0 removes it all; nodes 1 and 2 add to it meanwhile. */
	T_ASSERT_OK(ns_unlink(s.n[0], g, "old"));
	T_ASSERT_OK(ns_rmdir(s.n[0], g, "olddir"));
	T_ASSERT_OK(ns_rmdir(s.n[0], NS_ROOT_INO, "gone"));
	g = lookup(s.n[1], NS_ROOT_INO, "gone");
	T_ASSERT_OK(ns_create(s.n[1], g, "new", NS_FILE, 0644, 0, 0, NULL, &x));
	g = lookup(s.n[2], NS_ROOT_INO, "gone");
	T_ASSERT_OK(ns_create(s.n[2], lookup(s.n[2], g, "olddir"), "deeper", NS_FILE, 0644, 0, 0,
			      NULL, &x));
	for (int i = 0; i < NODES; i++)
		collect(&s, i);
	sync_all(&s);
	for (int i = 0; i < NODES; i++) {
		node_tree(&s, i, &t);
		T_ASSERT((e = tree_find_path(&t, "/gone")));
		T_ASSERT(!e->a.deleted);
		T_ASSERT(tree_find_path(&t, "/gone/new"));
		T_ASSERT(tree_find_path(&t, "/gone/olddir/deeper"));
		T_ASSERT(!tree_find_path(&t, "/gone/old"));
		T_ASSERT_EQ(ns_rmdir(s.n[i], NS_ROOT_INO, "gone"), -ENOTEMPTY);
		tree_free(&t);
	}
	check_order_independence(&s, 20, true);
	/* Once the new entries go too, so does the directory. */
	g = lookup(s.n[3], NS_ROOT_INO, "gone");
	T_ASSERT_OK(ns_unlink(s.n[3], g, "new"));
	T_ASSERT_OK(ns_unlink(s.n[3], lookup(s.n[3], g, "olddir"), "deeper"));
	collect(&s, 3);
	sync_all(&s);
	node_tree(&s, 0, &t);
	if (t.n != 1)
		T_FAIL("the removed directory is still shown:\n%s", t.dump);
	tree_free(&t);
	check_order_independence(&s, 20, true);
	/* A node that writes into the shown-but-removed directory brings it back. */
	sim_close(&s);
	sim_open(&s);
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "d", NS_DIR, 0755, 0, 0, NULL, &g));
	sync_all(&s);
	T_ASSERT_OK(ns_rmdir(s.n[0], NS_ROOT_INO, "d"));
	T_ASSERT_OK(ns_create(s.n[1], lookup(s.n[1], NS_ROOT_INO, "d"), "a", NS_FILE, 0644, 0, 0,
			      NULL, &x));
	collect(&s, 0);
	collect(&s, 1);
	sync_all(&s);
	g = lookup(s.n[0], NS_ROOT_INO, "d");
	T_ASSERT_OK(ns_create(s.n[0], g, "b", NS_FILE, 0644, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_unlink(s.n[2], lookup(s.n[2], NS_ROOT_INO, "d"), "a"));
	collect(&s, 0);
	collect(&s, 2);
	sync_all(&s);
	node_tree(&s, 3, &t);
	T_ASSERT(tree_find_path(&t, "/d/b")); /* d was recreated by node 0's write */
	tree_free(&t);
	check_order_independence(&s, 10, true);
	sim_close(&s);
}

static void a_real_name_equal_to_a_conflict_name_stays_unique(void)
{
	struct sim s;
	struct tree t;
	uint64_t x;
	uint8_t id_f[NS_ID_LEN], id_x[NS_ID_LEN], id_w[NS_ID_LEN];
	struct ns_attr a = { .mode = 0600 }, b = { .mode = 0700 };
	char cname[NS_NAME_MAX + 1] = "", path[NS_NAME_MAX + 2];
	const struct vent *e;

	sim_open(&s);
	/* A file and a symlink made under one name: one of them shows a conflict name. */
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "a", NS_FILE, 0644, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_create(s.n[1], NS_ROOT_INO, "a", NS_SYMLINK, 0777, 0, 0, "t", &x));
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "other", NS_FILE, 0640, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_entry_id(s.n[0], x, id_f));
	collect(&s, 0);
	collect(&s, 1);
	sync_all(&s);
	node_tree(&s, 0, &t);
	for (size_t i = 1; i < t.n; i++)
		if (strstr(t.v[i].name, "a.conflict-") == t.v[i].name) {
			snprintf(cname, sizeof(cname), "%s", t.v[i].name);
			memcpy(id_x, t.v[i].id, NS_ID_LEN);
		}
	T_ASSERT(cname[0]);
	T_ASSERT((e = tree_find_path(&t, "/a")));
	memcpy(id_w, e->id, NS_ID_LEN);
	tree_free(&t);
	/* Node 0 renames "other" onto that name, replacing the entry shown there;
	 * node 1 meanwhile changes that entry (which keeps it alive) and then the
	 * one named "a" (which keeps that name). */
	T_ASSERT_OK(ns_rename(s.n[0], NS_ROOT_INO, "other", NS_ROOT_INO, cname, 0));
	x = lookup(s.n[1], NS_ROOT_INO, "a"); /* the newest change takes the name: keep W's inode */
	T_ASSERT_OK(ns_setattr(s.n[1], lookup(s.n[1], NS_ROOT_INO, cname), &a, NS_SET_MODE));
	T_ASSERT_OK(ns_setattr(s.n[1], x, &b, NS_SET_MODE));
	collect(&s, 0);
	collect(&s, 1);
	sync_all(&s);
	/* Three entries, three names; the real name belongs to the renamed file. */
	snprintf(path, sizeof(path), "/%s", cname);
	for (int i = 0; i < NODES; i++) {
		size_t conflict_named = 0;

		node_tree(&s, i, &t); /* fails on two entries with one name */
		if (t.n != 4 || getenv("T_VERBOSE"))
			fprintf(stderr, "%s(conflict name %s)\n", t.dump, cname);
		T_ASSERT_EQ(t.n, 4);
		T_ASSERT((e = tree_find_path(&t, "/a")));
		T_ASSERT_MEM_EQ(e->id, id_w, NS_ID_LEN);
		T_ASSERT((e = tree_find_path(&t, path)));
		T_ASSERT_MEM_EQ(e->id, id_f, NS_ID_LEN);
		T_ASSERT_EQ(e->ino, lookup(s.n[i], NS_ROOT_INO, cname));
		for (size_t k = 1; k < t.n; k++)
			if (!memcmp(t.v[k].id, id_x, NS_ID_LEN)) {
				T_ASSERT(strstr(t.v[k].name, "a.conflict-") == t.v[k].name);
				T_ASSERT_EQ(t.v[k].a.mode, 0600);
				conflict_named++;
			}
		T_ASSERT_EQ(conflict_named, 1);
		tree_free(&t);
	}
	check_order_independence(&s, 30, true);
	/* The renamed file goes: its conflict name is free for the other entry again. */
	T_ASSERT_OK(ns_unlink(s.n[2], NS_ROOT_INO, cname));
	collect(&s, 2);
	sync_all(&s);
	node_tree(&s, 3, &t);
	if (t.n != 3 || getenv("T_VERBOSE"))
		fprintf(stderr, "%s(conflict name %s)\n", t.dump, cname);
	T_ASSERT_EQ(t.n, 3);
	T_ASSERT((e = tree_find_path(&t, path)));
	T_ASSERT_MEM_EQ(e->id, id_x, NS_ID_LEN);
	tree_free(&t);
	check_order_independence(&s, 30, true);
	sim_close(&s);
}

/* A signed record by one writer (a one-entry version vector); @parent NULL: the root. */
static void add_record_in(struct recset *rs, const uint8_t id[static NS_ID_LEN],
			  const uint8_t *parent, const char *name, enum ns_type type, uint64_t hlc,
			  bool deleted)
{
	uint8_t buf[1024], writer[NS_NODE_ID_LEN];
	struct ns_record r = { .type = (uint8_t)type, .mode = 0644, .deleted = deleted };
	long body;

	memset(writer, 0x42, sizeof(writer));
	memcpy(r.id, id, NS_ID_LEN);
	if (parent)
		memcpy(r.parent, parent, NS_ID_LEN);
	r.hlc = hlc;
	memcpy(r.writer, writer, NS_NODE_ID_LEN);
	r.name = name;
	r.name_len = (uint8_t)strlen(name);
	r.vv_n = 1;
	memcpy(r.vv[0].writer, writer, NS_NODE_ID_LEN);
	r.vv[0].hlc = hlc;
	body = ns_record_encode(&r, buf, sizeof(buf) - NS_REC_SIG_LEN);
	T_ASSERT(body > 0);
	ns_record_sign(buf, (size_t)body, share_pk, share_sk);
	T_ASSERT_EQ(rs_put(rs, buf, (size_t)body + NS_REC_SIG_LEN), 1);
}

static void add_record(struct recset *rs, const uint8_t id[static NS_ID_LEN], const char *name,
		       uint64_t hlc, bool deleted)
{
	add_record_in(rs, id, NULL, name, NS_FILE, hlc, deleted);
}

/*
 * Two parent cycles, each shown from its greatest member moved to the root;
 * then the second one is mended. Re-examining the first (still a cycle)
 * must not make the second be skipped.
 */
static void a_mended_cycle_is_undone_whatever_else_is_broken(void)
{
	struct recset rs = { 0 };
	uint8_t a[NS_ID_LEN], b[NS_ID_LEN], x[NS_ID_LEN], y[NS_ID_LEN];
	uint64_t h = (tm_real_ms() - 1000) << 16;
	struct tree t;
	char *want;

	keys_once();
	memset(a, 0xa0, NS_ID_LEN);
	memset(b, 0xb0, NS_ID_LEN);
	memset(x, 0xc0, NS_ID_LEN);
	memset(y, 0xd0, NS_ID_LEN);
	add_record_in(&rs, x, y, "X", NS_DIR, h + 1, false);
	add_record_in(&rs, y, x, "Y", NS_DIR, h + 2, false); /* X <-> Y: Y to the root */
	add_record_in(&rs, b, a, "B", NS_DIR, h + 3, false);
	add_record_in(&rs, a, b, "A", NS_DIR, h + 4, false);	/* A <-> B: A to the root */
	add_record_in(&rs, b, NULL, "B", NS_DIR, h + 5, false); /* B moved out: A goes into B */
	want = merge_into_fresh(&rs, true, M_IN_ORDER, &t, true);
	if (!tree_find_path(&t, "/B/A") || !tree_find_path(&t, "/Y/X") || t.n != 5)
		T_FAIL("unexpected tree:\n%s", t.dump);
	tree_free(&t);
	for (int p = 0; p < 100; p++) {
		char *got = merge_into_fresh(&rs, p % 2, p == 0 ? M_REVERSE : 0, NULL, false);

		same_tree(want, got, "a permutation");
		free(got);
	}
	free(want);
	rs_free(&rs);
}

static void conflict_names_stay_unique_when_ids_share_a_prefix(void)
{
	struct recset rs = { 0 };
	uint8_t x1[NS_ID_LEN], x2[NS_ID_LEN], x3[NS_ID_LEN], y[NS_ID_LEN], z1[NS_ID_LEN];
	uint8_t z2[NS_ID_LEN], w[NS_ID_LEN];
	uint64_t h = (tm_real_ms() - 1000) << 16;
	struct tree t;
	char *want;
	static const char *const expect[] = {
		"/a",
		"/a.conflict-aabbccdd11000000", /* 4 bytes shared with x2: 8 */
		"/a.conflict-aabbccdd22000000",
		"/b",
		"/b.conflict-99887766",		/* a real name: keeps it */
		"/b.conflict-9988776600000000", /* z1 moves out of its way */
	};

	keys_once();
	memset(x1, 0, NS_ID_LEN);
	memcpy(x1, "\xaa\xbb\xcc\xdd\x11", 5);
	memcpy(x2, x1, NS_ID_LEN);
	x2[4] = 0x22;
	memcpy(x3, x1, NS_ID_LEN);
	x3[4] = 0x33;
	memset(y, 0x77, NS_ID_LEN);
	memset(z1, 0, NS_ID_LEN);
	memcpy(z1, "\x99\x88\x77\x66", 4);
	memset(z2, 0x55, NS_ID_LEN);
	memset(w, 0x66, NS_ID_LEN);
	add_record(&rs, x1, "a", h + 1, false);
	add_record(&rs, x2, "a", h + 2, false);
	add_record(&rs, x3, "a", h + 3, false); /* the newest keeps "a" */
	add_record(&rs, y, "a.conflict-aabbccdd", h + 4, false);
	add_record(&rs, y, "a.conflict-aabbccdd", h + 5, true); /* removed again */
	add_record(&rs, z1, "b", h + 6, false);
	add_record(&rs, z2, "b", h + 7, false);
	add_record(&rs, w, "b.conflict-99887766", h + 8, false);
	want = merge_into_fresh(&rs, true, M_IN_ORDER, &t, true);
	if (t.n != 1 + ARRAY_SIZE(expect))
		T_FAIL("unexpected tree:\n%s", t.dump);
	for (size_t i = 0; i < ARRAY_SIZE(expect); i++)
		if (!tree_find_path(&t, expect[i]))
			T_FAIL("no %s in\n%s", expect[i], t.dump);
	tree_free(&t);
	for (int p = 0; p < 200; p++) {
		char *got = merge_into_fresh(&rs, p % 2, p % 5 == 0 ? M_TWICE : 0, NULL, false);

		same_tree(want, got, "a permutation");
		free(got);
	}
	free(want);
	rs_free(&rs);
}

/* A file record by writer @w with content @v (a one-entry version vector). */
static size_t file_record(uint8_t *buf, const uint8_t id[static NS_ID_LEN], const char *name,
			  uint8_t w, uint64_t hlc, uint32_t v)
{
	struct ns_record r = { .type = NS_FILE, .mode = 0644, .size = 100 + v, .mtime = v };
	long body;

	memcpy(r.id, id, NS_ID_LEN);
	r.hlc = hlc;
	memset(r.writer, w, NS_NODE_ID_LEN);
	r.content_kind = NS_CONTENT_MANIFEST;
	memset(r.content, (int)v, CS_ID_LEN);
	r.name = name;
	r.name_len = (uint8_t)strlen(name);
	r.vv_n = 1;
	memcpy(r.vv[0].writer, r.writer, NS_NODE_ID_LEN);
	r.vv[0].hlc = hlc;
	body = ns_record_encode(&r, buf, 1024 - NS_REC_SIG_LEN);
	T_ASSERT(body > 0);
	ns_record_sign(buf, (size_t)body, share_pk, share_sk);
	return (size_t)body + NS_REC_SIG_LEN;
}

static int verify_cb(void *arg, const uint8_t *rec, size_t len)
{
	struct ns_record r;

	(void)arg;
	T_ASSERT_OK(ns_record_decode(rec, len, &r));
	if (!ns_record_verify(rec, len, share_pk))
		T_FAIL("a committed record does not verify");
	return 0;
}

/*
 * A record with the writer and hlc of a conflict copy's loser but other
 * fields (a writer holding the share key can sign anything) does not take
 * the copy's place; the genuine copy does, and stays verifiable.
 */
static void a_forged_conflict_copy_does_not_replace_the_real_one(void)
{
	uint8_t e[NS_ID_LEN], cid[NS_ID_LEN], buf[1024], node[NS_NODE_ID_LEN] = { 9 };
	uint64_t h = (tm_real_ms() - 1000) << 16;
	char *dir = t_tmpdir("ns-forge"), *before, *after, copy_name[NS_NAME_MAX + 1] = "";
	struct ns *ns;
	struct tree t;
	size_t len;

	keys_once();
	memset(e, 0xe1, NS_ID_LEN);
	ns = open_ns(dir, node, true);
	/* Two concurrent versions: writer 0x02 wins, 0x01's is shown as a copy. */
	T_ASSERT_EQ(ns_apply(ns, buf, file_record(buf, e, "doc.txt", 0x01, h + 1, 1)), 1);
	T_ASSERT_EQ(ns_apply(ns, buf, file_record(buf, e, "doc.txt", 0x02, h + 2, 2)), 1);
	tree_get(ns, &t);
	for (size_t i = 1; i < t.n; i++)
		if (strstr(t.v[i].name, ".conflict-")) {
			memcpy(cid, t.v[i].id, NS_ID_LEN);
			snprintf(copy_name, sizeof(copy_name), "%s", t.v[i].name);
		}
	T_ASSERT(copy_name[0]);
	before = t.dump;
	t.dump = NULL;
	tree_free(&t);
	/* Forged: the loser's writer and hlc, another name. Ignored (equal versions). */
	len = file_record(buf, cid, "forged.txt", 0x01, h + 1, 1);
	T_ASSERT_EQ(ns_apply(ns, buf, len), 0);
	after = dump_of(ns); /* also checks that lookup finds what readdir lists */
	same_tree(before, after, "after a forged copy");
	free(after);
	T_ASSERT_OK(ns_commit(ns));
	T_ASSERT_OK(ns_foreach_record(ns, verify_cb, NULL));
	/* The genuine copy (as a writer that supersedes the conflict makes it). */
	len = file_record(buf, cid, copy_name, 0x01, h + 1, 1);
	T_ASSERT_EQ(ns_apply(ns, buf, len), 1);
	after = dump_of(ns);
	same_tree(before, after, "after the real copy");
	free(after);
	T_ASSERT_OK(ns_commit(ns));
	T_ASSERT_OK(ns_foreach_record(ns, verify_cb, NULL));
	ns_close(ns);
	ns = open_ns(dir, node, true);
	after = dump_of(ns);
	same_tree(before, after, "reopened");
	free(after);
	free(before);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void random_histories_merge_in_any_order(void)
{
	int histories = 3, perms = 70;

	for (int h = 0; h < histories; h++) {
		struct sim s;
		uint64_t t0 = tm_mono_ms();

		sim_open(&s);
		/* Round 1: nobody touches conflict copies, so each must show its loser. */
		random_history(&s, 120);
		sync_all(&s);
		check_order_independence(&s, perms / 2, true);
		/* Round 2: copies are edited, moved and removed too; writes to
		 * conflicted files make their copies real records. */
		s.touch_copies = true;
		random_history(&s, 80);
		sync_all(&s);
		{
			size_t n = s.all.n;

			sync_all(&s);
			T_ASSERT_EQ(s.all.n, n); /* nothing multiplies */
		}
		check_order_independence(&s, perms - perms / 2, false);
		if (h == 0 && s.all.n > 40) {
			/* a seed of the first 40 records: libFuzzer sizes its inputs by the seeds */
			size_t n = s.all.n;

			s.all.n = 40;
			corpus_write(&s.all, "history", true);
			s.all.n = n;
		}
		printf("# history %d: %zu records, %d orders, %llu ms\n", h, s.all.n, perms,
		       (unsigned long long)(tm_mono_ms() - t0));
		sim_close(&s);
	}
}

T_MAIN(T_CASE(concurrent_edits_keep_the_winner_and_one_conflict_copy),
       T_CASE(concurrent_creates_of_one_path_are_one_entry),
       T_CASE(crossed_directory_moves_keep_everything_reachable),
       T_CASE(removed_directory_stays_while_it_holds_new_entries),
       T_CASE(a_real_name_equal_to_a_conflict_name_stays_unique),
       T_CASE(conflict_names_stay_unique_when_ids_share_a_prefix),
       T_CASE(a_mended_cycle_is_undone_whatever_else_is_broken),
       T_CASE(a_forged_conflict_copy_does_not_replace_the_real_one),
       T_CASE(random_histories_merge_in_any_order))
