// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_ns.c - the namespace of one node: local operations and
 * their errors, readdir cookies, inode numbers, extended attributes,
 * persistence (commit, reopen, compaction, torn logs, the three-step
 * commit), signed records from peers, the record codec, and memory per
 * entry. Merging the records of several writers: test_ns_merge.c.
 *
 * Every tree comparison goes through dump_tree(): a canonical text of the
 * visible tree (walked from the root, sorted by name) that also checks the
 * view's invariants on the way (unique names, lookup agrees with readdir,
 * readdir's attributes agree with getattr, nlink of a directory is 2 plus
 * its subdirectories, each inode is listed once).
 */
#include "fs/ns.h"
#include "common/tm.h"
#include "fs/ns_record.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

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

static struct ns *open_ns(const char *dir, uint8_t node, bool writable)
{
	uint8_t id[NS_NODE_ID_LEN];
	struct ns_open_opts o = { .share_pk = share_pk,
				  .share_sk = writable ? share_sk : NULL,
				  .node_id = id };
	struct ns *ns;

	keys_once();
	memset(id, node, sizeof(id));
	T_ASSERT_OK(ns_open(dir, &o, &ns));
	T_ASSERT_EQ(ns_read_only(ns), !writable);
	return ns;
}

static struct ns_content content_of(uint32_t v)
{
	struct ns_content c = { .kind = NS_CONTENT_MANIFEST };

	memset(c.id, 0xc3, sizeof(c.id));
	memcpy(c.id, &v, sizeof(v));
	return c;
}

static uint64_t lookup(struct ns *ns, uint64_t dir, const char *name)
{
	uint64_t ino = 0;

	T_ASSERT_OK(ns_lookup(ns, dir, name, &ino));
	T_ASSERT(ino > NS_ROOT_INO);
	return ino;
}

static uint64_t mk(struct ns *ns, uint64_t dir, const char *name, enum ns_type type)
{
	uint64_t ino = 0;

	T_ASSERT_OK(ns_create(ns, dir, name, type, type == NS_DIR ? 0755 : 0644, 1000, 100,
			      type == NS_SYMLINK ? "target" : NULL, &ino));
	return ino;
}

static struct ns_attr attr_of(struct ns *ns, uint64_t ino)
{
	struct ns_attr a;

	T_ASSERT_OK(ns_getattr(ns, ino, &a));
	return a;
}

static struct ns_stats stats_of(struct ns *ns)
{
	struct ns_stats st;

	ns_get_stats(ns, &st);
	return st;
}

static char *path_in(const char *dir, const char *name)
{
	char *p;

	T_ASSERT(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static off_t file_size(const char *path)
{
	struct stat st;

	T_ASSERT(stat(path, &st) == 0);
	return st.st_size;
}

/* ---- the canonical dump ---- */

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

static void kids_free(struct kids *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i].name);
	free(k->v);
	memset(k, 0, sizeof(*k));
}

/* The children of @dir, sorted by name. */
static void list_dir(struct ns *ns, uint64_t dir, struct kids *k)
{
	memset(k, 0, sizeof(*k));
	T_ASSERT_OK(ns_readdir(ns, dir, 0, collect_cb, k));
	if (k->n)
		qsort(k->v, k->n, sizeof(*k->v), kid_by_name);
}

static void attr_same(const struct ns_attr *a, const struct ns_attr *b)
{
	T_ASSERT_EQ(a->type, b->type);
	T_ASSERT_EQ(a->mode, b->mode);
	T_ASSERT_EQ(a->uid, b->uid);
	T_ASSERT_EQ(a->gid, b->gid);
	T_ASSERT_EQ(a->size, b->size);
	T_ASSERT_EQ(a->mtime, b->mtime);
	T_ASSERT_EQ(a->ctime, b->ctime);
	T_ASSERT_EQ(a->nlink, b->nlink);
	T_ASSERT_EQ(a->deleted, b->deleted);
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
		str_addf(out, " %s=%ld:%02x%02x%02x%02x%02x%02x%02x%02x", names + i, vl, h[0], h[1],
			 h[2], h[3], h[4], h[5], h[6], h[7]);
		free(v);
	}
	free(names);
}

struct inos {
	uint64_t *v;
	size_t n, cap;
};

static void inos_add(struct inos *s, uint64_t ino)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		T_ASSERT((s->v = realloc(s->v, s->cap * sizeof(*s->v))));
	}
	s->v[s->n++] = ino;
}

static void dump_entry(struct ns *ns, uint64_t ino, const struct ns_attr *a, const char *path,
		       struct str *out)
{
	struct ns_content c;
	char hex[2 * CS_ID_LEN + 1];

	T_ASSERT_OK(ns_get_content(ns, ino, &c));
	sodium_bin2hex(hex, sizeof(hex), c.id, CS_ID_LEN);
	str_addf(out, "%s t%u m%o u%u g%u s%llu mt%lld ct%lld n%u c%u:%s", path, a->type, a->mode,
		 a->uid, a->gid, (unsigned long long)a->size, (long long)a->mtime,
		 (long long)a->ctime, a->nlink, c.kind, c.kind ? hex : "-");
	if (a->type == NS_SYMLINK) {
		const char *target;

		T_ASSERT_OK(ns_readlink(ns, ino, &target));
		T_ASSERT_EQ(strlen(target), a->size);
		str_addf(out, " ->%s", target);
	}
	dump_xattrs(ns, ino, out);
	str_addf(out, "\n");
}

static void dump_dir(struct ns *ns, uint64_t dir, const char *path, struct str *out,
		     struct inos *seen)
{
	struct kids k;
	unsigned subdirs = 0;

	list_dir(ns, dir, &k);
	for (size_t i = 0; i < k.n; i++) {
		struct kid *c = &k.v[i];
		struct ns_attr a;
		uint64_t ino, parent;
		char *p;

		if (i && strcmp(k.v[i - 1].name, c->name) == 0)
			T_FAIL("%s: two entries named %s", path, c->name);
		T_ASSERT(ns_name_ok(c->name, strlen(c->name)));
		T_ASSERT_OK(ns_lookup(ns, dir, c->name, &ino));
		if (ino != c->ino)
			T_FAIL("%s/%s: lookup gives %llu, readdir %llu", path, c->name,
			       (unsigned long long)ino, (unsigned long long)c->ino);
		a = attr_of(ns, c->ino);
		attr_same(&a, &c->a);
		T_ASSERT(!a.deleted);
		inos_add(seen, c->ino);
		T_ASSERT(asprintf(&p, "%s/%s", path, c->name) > 0);
		dump_entry(ns, c->ino, &a, p, out);
		if (a.type == NS_DIR) {
			subdirs++;
			T_ASSERT_OK(ns_parent(ns, c->ino, &parent));
			T_ASSERT_EQ(parent, dir);
			dump_dir(ns, c->ino, p, out, seen);
		}
		free(p);
	}
	if (attr_of(ns, dir).nlink != 2 + subdirs)
		T_FAIL("%s: nlink %u with %u subdirectories", path[0] ? path : "/",
		       attr_of(ns, dir).nlink, subdirs);
	kids_free(&k);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The canonical text of the visible tree (caller frees). */
static char *dump_tree(struct ns *ns)
{
	struct str out = { 0 };
	struct inos seen = { 0 };
	struct ns_attr root = attr_of(ns, NS_ROOT_INO);

	dump_entry(ns, NS_ROOT_INO, &root, "/", &out);
	dump_dir(ns, NS_ROOT_INO, "", &out, &seen);
	if (seen.n)
		qsort(seen.v, seen.n, sizeof(*seen.v), cmp_u64);
	for (size_t i = 1; i < seen.n; i++)
		if (seen.v[i] == seen.v[i - 1])
			T_FAIL("inode %llu is listed twice", (unsigned long long)seen.v[i]);
	free(seen.v);
	return out.s;
}

static void expect_tree(struct ns *ns, const char *want)
{
	char *got = dump_tree(ns);

	if (strcmp(got, want)) {
		fprintf(stderr, "---- expected\n%s---- got\n%s", want, got);
		T_FAIL("the trees differ");
	}
	free(got);
}

/* The root lists nothing. */
static void expect_empty(struct ns *ns)
{
	struct kids k;

	list_dir(ns, NS_ROOT_INO, &k);
	if (k.n)
		T_FAIL("the root lists %zu entries, the first %s", k.n, k.v[0].name);
	kids_free(&k);
}

static int apply_cb(void *arg, const uint8_t *rec, size_t len)
{
	int rc = ns_apply(arg, rec, len);

	if (rc != 0 && rc != 1)
		T_FAIL("ns_apply: %d", rc);
	return 0;
}

/* Every committed record of @from, applied to @to. */
static void apply_all(struct ns *from, struct ns *to)
{
	T_ASSERT_OK(ns_foreach_record(from, apply_cb, to));
}

/* ---- local operations ---- */

static void create_lookup_getattr_of_each_type(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t d, f, l, ino;
	struct ns_attr a;
	struct ns_content c;
	const char *target;
	int64_t before = (int64_t)tm_real_ns();

	T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, "dir", NS_DIR, 040750, 1, 2, NULL, &d));
	T_ASSERT_OK(ns_create(ns, d, "file", NS_FILE, 0100640, 3, 4, NULL, &f));
	T_ASSERT_OK(ns_create(ns, d, "link", NS_SYMLINK, 0777, 5, 6, "../some/where", &l));
	T_ASSERT(d != f && f != l && d != l);
	T_ASSERT(d > NS_ROOT_INO && f > NS_ROOT_INO && l > NS_ROOT_INO);
	T_ASSERT_EQ(lookup(ns, NS_ROOT_INO, "dir"), d);
	T_ASSERT_EQ(lookup(ns, d, "file"), f);
	T_ASSERT_EQ(lookup(ns, d, "link"), l);
	T_ASSERT_EQ(ns_lookup(ns, d, "nope", &ino), -ENOENT);
	T_ASSERT_EQ(ns_lookup(ns, NS_ROOT_INO, "file", &ino), -ENOENT);

	a = attr_of(ns, d);
	T_ASSERT_EQ(a.type, NS_DIR);
	T_ASSERT_EQ(a.mode, 0750); /* permission bits only */
	T_ASSERT_EQ(a.uid, 1);
	T_ASSERT_EQ(a.gid, 2);
	T_ASSERT_EQ(a.size, 0);
	T_ASSERT_EQ(a.nlink, 2);
	T_ASSERT(!a.deleted);
	T_ASSERT(a.mtime >= before && a.mtime <= (int64_t)tm_real_ns());
	T_ASSERT(a.ctime / 1000000 >= before / 1000000);

	a = attr_of(ns, f);
	T_ASSERT_EQ(a.type, NS_FILE);
	T_ASSERT_EQ(a.mode, 0640);
	T_ASSERT_EQ(a.uid, 3);
	T_ASSERT_EQ(a.gid, 4);
	T_ASSERT_EQ(a.size, 0);
	T_ASSERT_EQ(a.nlink, 1);
	T_ASSERT_OK(ns_get_content(ns, f, &c));
	T_ASSERT_EQ(c.kind, NS_CONTENT_NONE);

	a = attr_of(ns, l);
	T_ASSERT_EQ(a.type, NS_SYMLINK);
	T_ASSERT_EQ(a.size, strlen("../some/where"));
	T_ASSERT_OK(ns_readlink(ns, l, &target));
	T_ASSERT(!strcmp(target, "../some/where"));
	T_ASSERT_EQ(ns_readlink(ns, f, &target), -EINVAL);
	T_ASSERT_EQ(ns_readlink(ns, d, &target), -EINVAL);

	/* The root: inode 1, its own parent, a directory. */
	a = attr_of(ns, NS_ROOT_INO);
	T_ASSERT_EQ(a.type, NS_DIR);
	T_ASSERT_EQ(a.nlink, 3);
	T_ASSERT_OK(ns_parent(ns, NS_ROOT_INO, &ino));
	T_ASSERT_EQ(ino, NS_ROOT_INO);
	T_ASSERT_OK(ns_parent(ns, d, &ino));
	T_ASSERT_EQ(ino, NS_ROOT_INO);
	T_ASSERT_EQ(ns_getattr(ns, 999999, &a), -ENOENT);
	T_ASSERT_EQ(ns_getattr(ns, 0, &a), -ENOENT);
	{
		uint8_t id1[NS_ID_LEN], id2[NS_ID_LEN], zero[NS_ID_LEN] = { 0 };

		T_ASSERT_OK(ns_entry_id(ns, NS_ROOT_INO, id1));
		T_ASSERT_MEM_EQ(id1, zero, NS_ID_LEN);
		T_ASSERT_OK(ns_entry_id(ns, f, id1));
		T_ASSERT_OK(ns_entry_id(ns, l, id2));
		T_ASSERT(memcmp(id1, id2, NS_ID_LEN) != 0);
	}
	T_ASSERT_EQ(ns_create(ns, d, "file", NS_FILE, 0644, 0, 0, NULL, &ino), -EEXIST);
	T_ASSERT_EQ(ns_create(ns, d, "file", NS_DIR, 0755, 0, 0, NULL, &ino), -EEXIST);
	T_ASSERT_EQ(ns_create(ns, d, "x", 7, 0644, 0, 0, NULL, &ino), -EINVAL);
	T_ASSERT_EQ(ns_create(ns, 424242, "x", NS_FILE, 0644, 0, 0, NULL, &ino), -ENOENT);
	free(dump_tree(ns));
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void dir_nlink_counts_subdirectories(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t a = mk(ns, NS_ROOT_INO, "a", NS_DIR), b = mk(ns, NS_ROOT_INO, "b", NS_DIR);

	mk(ns, a, "f1", NS_FILE);
	mk(ns, a, "l1", NS_SYMLINK);
	T_ASSERT_EQ(attr_of(ns, a).nlink, 2); /* files and symlinks do not count */
	mk(ns, a, "s1", NS_DIR);
	mk(ns, a, "s2", NS_DIR);
	T_ASSERT_EQ(attr_of(ns, a).nlink, 4);
	T_ASSERT_EQ(attr_of(ns, NS_ROOT_INO).nlink, 4);
	T_ASSERT_OK(ns_rename(ns, a, "s1", b, "s1", 0));
	T_ASSERT_EQ(attr_of(ns, a).nlink, 3);
	T_ASSERT_EQ(attr_of(ns, b).nlink, 3);
	T_ASSERT_OK(ns_rmdir(ns, a, "s2"));
	T_ASSERT_EQ(attr_of(ns, a).nlink, 2);
	T_ASSERT_OK(ns_rename(ns, a, "f1", b, "f1", 0));
	T_ASSERT_EQ(attr_of(ns, b).nlink, 3);
	T_ASSERT_EQ(attr_of(ns, lookup(ns, b, "f1")).nlink, 1);
	free(dump_tree(ns)); /* checks nlink of every directory */
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

struct listing {
	uint64_t cookie, last;
	int limit, calls;
	uint32_t *count; /* by ino */
	size_t ncount;
};

static int listing_cb(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		      uint64_t next)
{
	struct listing *l = arg;

	(void)name;
	(void)a;
	T_ASSERT(ino < l->ncount);
	l->count[ino]++;
	l->cookie = next;
	l->calls++;
	return --l->limit <= 0;
}

struct rd_ent {
	char name[32];
	uint64_t ino;
	bool live, touched;
};

static void readdir_lists_each_entry_once_across_changes(void)
{
	enum { N0 = 300, MAXE = 4000 };
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	struct rd_ent *ents = calloc(MAXE, sizeof(*ents));
	struct listing l = { 0 };
	uint64_t d = mk(ns, NS_ROOT_INO, "d", NS_DIR), other = mk(ns, NS_ROOT_INO, "o", NS_DIR);
	size_t n = 0, fresh = 0, rounds = 0;

	T_ASSERT(ents);
	for (; n < N0; n++) {
		snprintf(ents[n].name, sizeof(ents[n].name), "f%03zu", n);
		ents[n].ino = mk(ns, d, ents[n].name, t_rand() % 4 ? NS_FILE : NS_DIR);
		ents[n].live = true;
	}
	l.ncount = 64 * MAXE;
	T_ASSERT((l.count = calloc(l.ncount, sizeof(*l.count))));
	for (;;) {
		l.limit = 1 + (int)(t_rand() % 9);
		l.calls = 0;
		T_ASSERT_OK(ns_readdir(ns, d, l.cookie, listing_cb, &l));
		if (l.calls == 0)
			break;
		T_ASSERT(++rounds < 1000);
		/* Change the directory between the pieces of the listing. */
		for (int k = 0; k < 3 && n < MAXE - 2; k++) {
			struct rd_ent *e = &ents[t_rand() % n];
			struct rd_ent *ne = &ents[n];

			switch (t_rand() % 5) {
			case 0: /* remove */
				if (!e->live)
					break;
				if (ns_unlink(ns, d, e->name) == -EISDIR)
					T_ASSERT_OK(ns_rmdir(ns, d, e->name));
				e->live = false;
				e->touched = true;
				break;
			case 1: /* add */
				snprintf(ne->name, sizeof(ne->name), "new%zu", fresh++);
				ne->ino = mk(ns, d, ne->name, NS_FILE);
				ne->live = ne->touched = true;
				n++;
				break;
			case 2: /* rename within the directory */
				if (!e->live)
					break;
				snprintf(ne->name, sizeof(ne->name), "ren%zu", fresh++);
				T_ASSERT_OK(ns_rename(ns, d, e->name, d, ne->name, 0));
				ne->ino = e->ino;
				ne->live = ne->touched = true;
				e->live = false;
				e->touched = true;
				n++;
				break;
			case 3: /* move out and back in under a new name */
				if (!e->live)
					break;
				T_ASSERT_OK(ns_rename(ns, d, e->name, other, e->name, 0));
				snprintf(ne->name, sizeof(ne->name), "back%zu", fresh++);
				T_ASSERT_OK(ns_rename(ns, other, e->name, d, ne->name, 0));
				ne->ino = e->ino;
				ne->live = ne->touched = true;
				e->live = false;
				e->touched = true;
				n++;
				break;
			default: /* change attributes only: not an addition or removal */
				if (e->live) {
					struct ns_attr a = { .mode = 0600 };

					T_ASSERT_OK(ns_setattr(ns, e->ino, &a, NS_SET_MODE));
				}
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (ents[i].ino < l.ncount && l.count[ents[i].ino] > 1)
			T_FAIL("%s listed %u times", ents[i].name, l.count[ents[i].ino]);
		if (!ents[i].touched && l.count[ents[i].ino] != 1)
			T_FAIL("%s (never changed) listed %u times", ents[i].name,
			       l.count[ents[i].ino]);
	}
	/* A fresh listing shows exactly the live entries. */
	{
		struct kids k;
		size_t live = 0;

		list_dir(ns, d, &k);
		for (size_t i = 0; i < n; i++)
			live += ents[i].live;
		T_ASSERT_EQ(k.n, live);
		for (size_t i = 0; i < n; i++)
			if (ents[i].live)
				T_ASSERT_EQ(lookup(ns, d, ents[i].name), ents[i].ino);
		kids_free(&k);
	}
	/* Resuming from the last cookie after the end lists nothing more. */
	l.calls = 0;
	l.limit = 100;
	T_ASSERT_OK(ns_readdir(ns, d, l.cookie, listing_cb, &l));
	T_ASSERT_EQ(l.calls, 0);
	{
		uint64_t f = lookup(ns, NS_ROOT_INO, "o");
		struct listing z = { .limit = 10, .count = l.count, .ncount = l.ncount };

		T_ASSERT_OK(ns_readdir(ns, f, 0, listing_cb, &z));
		T_ASSERT_EQ(z.calls, 0); /* emptied again */
		T_ASSERT_EQ(ns_readdir(ns, 777777, 0, listing_cb, &z), -ENOENT);
	}
	free(l.count);
	free(ents);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void setattr_changes_only_the_masked_fields(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t f = mk(ns, NS_ROOT_INO, "f", NS_FILE), d = mk(ns, NS_ROOT_INO, "d", NS_DIR);
	struct ns_attr a0 = attr_of(ns, f), a, want;

	want = (struct ns_attr){ .mode = 0104711, .uid = 77, .gid = 88, .mtime = 123456789 };
	T_ASSERT_OK(ns_setattr(ns, f, &want, NS_SET_MODE));
	a = attr_of(ns, f);
	T_ASSERT_EQ(a.mode, 04711); /* setuid kept, file type bits dropped */
	T_ASSERT_EQ(a.uid, a0.uid);
	T_ASSERT_EQ(a.gid, a0.gid);
	T_ASSERT_EQ(a.mtime, a0.mtime);
	T_ASSERT(a.ctime >= a0.ctime);
	T_ASSERT_OK(ns_setattr(ns, f, &want, NS_SET_UID | NS_SET_GID));
	a = attr_of(ns, f);
	T_ASSERT_EQ(a.uid, 77);
	T_ASSERT_EQ(a.gid, 88);
	T_ASSERT_EQ(a.mtime, a0.mtime);
	T_ASSERT_OK(ns_setattr(ns, f, &want, NS_SET_MTIME));
	T_ASSERT_EQ(attr_of(ns, f).mtime, 123456789);
	want.mtime = -5; /* before the epoch */
	T_ASSERT_OK(ns_setattr(ns, f, &want, NS_SET_MTIME));
	T_ASSERT_EQ(attr_of(ns, f).mtime, -5);
	T_ASSERT_OK(ns_setattr(ns, f, &want, 0)); /* touches nothing but ctime */
	a = attr_of(ns, f);
	T_ASSERT_EQ(a.mode, 04711);
	T_ASSERT_EQ(a.uid, 77);
	/* Directories and the root too. */
	want.mode = 0700;
	T_ASSERT_OK(ns_setattr(ns, d, &want, NS_SET_MODE));
	T_ASSERT_EQ(attr_of(ns, d).mode, 0700);
	T_ASSERT_EQ(attr_of(ns, d).nlink, 2);
	want.mode = 01777;
	T_ASSERT_OK(ns_setattr(ns, NS_ROOT_INO, &want, NS_SET_MODE | NS_SET_UID));
	a = attr_of(ns, NS_ROOT_INO);
	T_ASSERT_EQ(a.mode, 01777);
	T_ASSERT_EQ(a.uid, 77);
	T_ASSERT_EQ(a.nlink, 3);
	T_ASSERT_EQ(ns_setattr(ns, 31337, &want, NS_SET_MODE), -ENOENT);
	T_ASSERT_OK(ns_commit(ns));
	{
		char *before = dump_tree(ns);

		ns_close(ns);
		ns = open_ns(dir, 1, true);
		expect_tree(ns, before);
		free(before);
	}
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void set_content_records_size_and_content(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t f = mk(ns, NS_ROOT_INO, "f", NS_FILE), d = mk(ns, NS_ROOT_INO, "d", NS_DIR);
	uint64_t l = mk(ns, NS_ROOT_INO, "l", NS_SYMLINK);
	struct ns_content c = content_of(1), got, none = { .kind = NS_CONTENT_NONE };
	struct ns_content chunk = content_of(2), bad = content_of(3);

	T_ASSERT_OK(ns_set_content(ns, f, 5000000, &c, 111));
	T_ASSERT_OK(ns_get_content(ns, f, &got));
	T_ASSERT_EQ(got.kind, NS_CONTENT_MANIFEST);
	T_ASSERT_MEM_EQ(got.id, c.id, CS_ID_LEN);
	T_ASSERT_EQ(attr_of(ns, f).size, 5000000);
	T_ASSERT_EQ(attr_of(ns, f).mtime, 111);
	T_ASSERT_EQ(stats_of(ns).bytes, 5000000);
	chunk.kind = NS_CONTENT_CHUNK;
	T_ASSERT_OK(ns_set_content(ns, f, 4096, &chunk, 112));
	T_ASSERT_OK(ns_get_content(ns, f, &got));
	T_ASSERT_EQ(got.kind, NS_CONTENT_CHUNK);
	T_ASSERT_MEM_EQ(got.id, chunk.id, CS_ID_LEN);
	/* Truncate to zero: no content, and the id is cleared whatever was passed. */
	memset(none.id, 0xee, sizeof(none.id));
	T_ASSERT_OK(ns_set_content(ns, f, 0, &none, 113));
	T_ASSERT_OK(ns_get_content(ns, f, &got));
	T_ASSERT_EQ(got.kind, NS_CONTENT_NONE);
	T_ASSERT_EQ(attr_of(ns, f).size, 0);
	T_ASSERT_EQ(stats_of(ns).bytes, 0);
	T_ASSERT_EQ(ns_set_content(ns, f, 10, &none, 1), -EINVAL); /* bytes with no content */
	bad.kind = 9;
	T_ASSERT_EQ(ns_set_content(ns, f, 10, &bad, 1), -EINVAL);
	T_ASSERT_EQ(ns_set_content(ns, d, 10, &c, 1), -EISDIR);
	T_ASSERT_EQ(ns_set_content(ns, l, 10, &c, 1), -EINVAL);
	T_ASSERT_EQ(ns_set_content(ns, 98765, 10, &c, 1), -ENOENT);
	T_ASSERT_OK(ns_set_content(ns, f, 77, &c, 114));
	T_ASSERT_OK(ns_commit(ns));
	{
		char *before = dump_tree(ns);

		ns_close(ns);
		ns = open_ns(dir, 1, false);
		expect_tree(ns, before);
		free(before);
	}
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void unlink_and_rmdir(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t d = mk(ns, NS_ROOT_INO, "d", NS_DIR), f = mk(ns, d, "f", NS_FILE), ino;
	uint64_t l = mk(ns, d, "l", NS_SYMLINK), s = mk(ns, d, "s", NS_DIR);
	struct ns_attr a;

	T_ASSERT_EQ(ns_rmdir(ns, NS_ROOT_INO, "d"), -ENOTEMPTY);
	T_ASSERT_EQ(ns_unlink(ns, NS_ROOT_INO, "d"), -EISDIR);
	T_ASSERT_EQ(ns_unlink(ns, d, "s"), -EISDIR);
	T_ASSERT_EQ(ns_rmdir(ns, d, "f"), -ENOTDIR);
	T_ASSERT_EQ(ns_rmdir(ns, d, "l"), -ENOTDIR);
	T_ASSERT_EQ(ns_unlink(ns, d, "nope"), -ENOENT);
	T_ASSERT_EQ(ns_rmdir(ns, d, "nope"), -ENOENT);
	T_ASSERT_EQ(ns_unlink(ns, f, "x"), -ENOTDIR);
	T_ASSERT_EQ(ns_rmdir(ns, f, "x"), -ENOTDIR);
	T_ASSERT_OK(ns_unlink(ns, d, "f"));
	T_ASSERT_EQ(ns_lookup(ns, d, "f", &ino), -ENOENT);
	a = attr_of(ns, f); /* an unlinked file may still be open */
	T_ASSERT(a.deleted);
	T_ASSERT_EQ(a.nlink, 0);
	T_ASSERT_EQ(ns_unlink(ns, d, "f"), -ENOENT);
	T_ASSERT_OK(ns_unlink(ns, d, "l"));
	T_ASSERT(attr_of(ns, l).deleted);
	T_ASSERT_EQ(ns_rmdir(ns, NS_ROOT_INO, "d"), -ENOTEMPTY);
	T_ASSERT_OK(ns_rmdir(ns, d, "s"));
	T_ASSERT(attr_of(ns, s).deleted);
	T_ASSERT_EQ(attr_of(ns, d).nlink, 2);
	T_ASSERT_OK(ns_rmdir(ns, NS_ROOT_INO, "d"));
	T_ASSERT(attr_of(ns, d).deleted);
	T_ASSERT_EQ(attr_of(ns, NS_ROOT_INO).nlink, 2);
	/* A removed directory cannot be used as a parent any more. */
	T_ASSERT_EQ(ns_create(ns, d, "x", NS_FILE, 0644, 0, 0, NULL, &ino), -ENOENT);
	T_ASSERT_EQ(ns_lookup(ns, d, "x", &ino), -ENOENT);
	/* Changes to removed entries fail. */
	T_ASSERT_EQ(ns_setattr(ns, f, &a, NS_SET_MODE), -ENOENT);
	T_ASSERT_EQ(ns_xattr_set(ns, f, "user.x", "1", 1, 0), -ENOENT);
	expect_empty(ns);
	T_ASSERT_EQ(stats_of(ns).files + stats_of(ns).dirs + stats_of(ns).symlinks, 0);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void rename_moves_and_replaces(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t a = mk(ns, NS_ROOT_INO, "a", NS_DIR), b = mk(ns, NS_ROOT_INO, "b", NS_DIR);
	uint64_t f = mk(ns, a, "f", NS_FILE), g = mk(ns, b, "g", NS_FILE), ino;
	uint64_t s = mk(ns, a, "sub", NS_DIR), e = mk(ns, b, "empty", NS_DIR);
	uint64_t l = mk(ns, a, "l", NS_SYMLINK), inner = mk(ns, s, "inner", NS_FILE);
	struct ns_content c = content_of(5);
	const char *target;

	T_ASSERT_OK(ns_set_content(ns, f, 10, &c, 1));
	/* Within a directory. */
	T_ASSERT_OK(ns_rename(ns, a, "f", a, "f2", 0));
	T_ASSERT_EQ(ns_lookup(ns, a, "f", &ino), -ENOENT);
	T_ASSERT_EQ(lookup(ns, a, "f2"), f);
	T_ASSERT_EQ(attr_of(ns, f).size, 10); /* content follows the entry */
	/* Across directories. */
	T_ASSERT_OK(ns_rename(ns, a, "f2", b, "f3", 0));
	T_ASSERT_EQ(lookup(ns, b, "f3"), f);
	/* A directory with its contents. */
	T_ASSERT_OK(ns_rename(ns, a, "sub", b, "sub", 0));
	T_ASSERT_EQ(lookup(ns, b, "sub"), s);
	T_ASSERT_EQ(lookup(ns, s, "inner"), inner);
	T_ASSERT_OK(ns_parent(ns, s, &ino));
	T_ASSERT_EQ(ino, b);
	/* A symlink keeps its target. */
	T_ASSERT_OK(ns_rename(ns, a, "l", NS_ROOT_INO, "l", 0));
	T_ASSERT_OK(ns_readlink(ns, lookup(ns, NS_ROOT_INO, "l"), &target));
	T_ASSERT(!strcmp(target, "target"));
	T_ASSERT_EQ(lookup(ns, NS_ROOT_INO, "l"), l);
	/* Replace a file: the old one is removed. */
	T_ASSERT_OK(ns_rename(ns, b, "f3", b, "g", 0));
	T_ASSERT_EQ(lookup(ns, b, "g"), f);
	T_ASSERT(attr_of(ns, g).deleted);
	T_ASSERT_EQ(ns_lookup(ns, b, "f3", &ino), -ENOENT);
	/* Replace an empty directory with a directory. */
	T_ASSERT_OK(ns_rename(ns, b, "sub", b, "empty", 0));
	T_ASSERT_EQ(lookup(ns, b, "empty"), s);
	T_ASSERT(attr_of(ns, e).deleted);
	T_ASSERT_EQ(attr_of(ns, b).nlink, 3);
	/* Renaming onto itself changes nothing. */
	T_ASSERT_OK(ns_rename(ns, b, "g", b, "g", 0));
	T_ASSERT_EQ(lookup(ns, b, "g"), f);
	T_ASSERT_EQ(ns_rename(ns, b, "nope", b, "x", 0), -ENOENT);
	T_ASSERT_EQ(ns_rename(ns, b, "g", 7777, "x", 0), -ENOENT);
	T_ASSERT_EQ(ns_rename(ns, b, "g", f, "x", 0), -ENOTDIR);
	T_ASSERT_EQ(ns_rename(ns, b, "g", b, "x", NS_RENAME_NOREPLACE | NS_RENAME_EXCHANGE),
		    -EINVAL);
	T_ASSERT_EQ(ns_rename(ns, b, "g", b, "x", 1U << 7), -EINVAL);
	T_ASSERT_OK(ns_commit(ns));
	{
		char *before = dump_tree(ns);

		T_ASSERT(strstr(before, "/b/empty/inner "));
		T_ASSERT(strstr(before, "/b/g t2"));
		ns_close(ns);
		ns = open_ns(dir, 1, true);
		expect_tree(ns, before);
		free(before);
	}
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void rename_noreplace_and_exchange(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t a = mk(ns, NS_ROOT_INO, "a", NS_DIR), b = mk(ns, NS_ROOT_INO, "b", NS_DIR);
	uint64_t f = mk(ns, a, "f", NS_FILE), g = mk(ns, b, "g", NS_FILE);
	uint64_t s = mk(ns, a, "s", NS_DIR), ino;

	mk(ns, s, "x", NS_FILE);
	T_ASSERT_EQ(ns_rename(ns, a, "f", b, "g", NS_RENAME_NOREPLACE), -EEXIST);
	T_ASSERT_EQ(lookup(ns, a, "f"), f);
	T_ASSERT_EQ(lookup(ns, b, "g"), g);
	T_ASSERT_OK(ns_rename(ns, a, "f", b, "h", NS_RENAME_NOREPLACE));
	T_ASSERT_EQ(lookup(ns, b, "h"), f);
	/* Exchange two files in different directories. */
	T_ASSERT_OK(ns_rename(ns, b, "h", b, "g", NS_RENAME_EXCHANGE));
	T_ASSERT_EQ(lookup(ns, b, "h"), g);
	T_ASSERT_EQ(lookup(ns, b, "g"), f);
	/* Exchange a file with a non-empty directory across directories. */
	T_ASSERT_OK(ns_rename(ns, b, "g", a, "s", NS_RENAME_EXCHANGE));
	T_ASSERT_EQ(lookup(ns, a, "s"), f);
	T_ASSERT_EQ(lookup(ns, b, "g"), s);
	T_ASSERT_EQ(lookup(ns, s, "x") > 0, 1);
	T_ASSERT_EQ(attr_of(ns, a).nlink, 2);
	T_ASSERT_EQ(attr_of(ns, b).nlink, 3);
	T_ASSERT_OK(ns_parent(ns, s, &ino));
	T_ASSERT_EQ(ino, b);
	T_ASSERT(!attr_of(ns, f).deleted && !attr_of(ns, s).deleted);
	T_ASSERT_EQ(ns_rename(ns, b, "h", b, "none", NS_RENAME_EXCHANGE), -ENOENT);
	/* Exchanging a directory with an entry below it would make a loop. */
	T_ASSERT_EQ(ns_rename(ns, b, "g", s, "x", NS_RENAME_EXCHANGE), -EINVAL);
	T_ASSERT_EQ(ns_rename(ns, s, "x", b, "g", NS_RENAME_EXCHANGE), -EINVAL);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "b", s, "x", NS_RENAME_EXCHANGE), -EINVAL);
	/* Exchange within one directory. */
	T_ASSERT_OK(ns_rename(ns, b, "g", b, "h", NS_RENAME_EXCHANGE));
	T_ASSERT_EQ(lookup(ns, b, "g"), g);
	T_ASSERT_EQ(lookup(ns, b, "h"), s);
	T_ASSERT_EQ(stats_of(ns).conflicts, 0);
	T_ASSERT_OK(ns_commit(ns));
	{
		char *before = dump_tree(ns);

		T_ASSERT(!strstr(before, "conflict"));
		ns_close(ns);
		ns = open_ns(dir, 1, true);
		expect_tree(ns, before);
		free(before);
	}
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void rename_of_a_directory_into_itself_is_einval(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t a = mk(ns, NS_ROOT_INO, "a", NS_DIR), b = mk(ns, a, "b", NS_DIR);
	uint64_t c = mk(ns, b, "c", NS_DIR);
	char *before = dump_tree(ns);

	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "a", a, "x", 0), -EINVAL);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "a", c, "x", 0), -EINVAL);
	T_ASSERT_EQ(ns_rename(ns, a, "b", c, "b", 0), -EINVAL);
	T_ASSERT_EQ(ns_rename(ns, a, "b", b, "b", 0), -EINVAL);
	expect_tree(ns, before);
	/* Moving a directory up or sideways is fine. */
	T_ASSERT_OK(ns_rename(ns, b, "c", NS_ROOT_INO, "c", 0));
	T_ASSERT_OK(ns_rename(ns, NS_ROOT_INO, "c", a, "c", 0));
	T_ASSERT_EQ(lookup(ns, a, "c"), c);
	free(before);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void type_mismatches_are_eisdir_or_enotdir(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t d = mk(ns, NS_ROOT_INO, "d", NS_DIR), f = mk(ns, NS_ROOT_INO, "f", NS_FILE);
	uint64_t full = mk(ns, NS_ROOT_INO, "full", NS_DIR), ino;
	struct listing l = { .limit = 1 };

	mk(ns, NS_ROOT_INO, "l", NS_SYMLINK);
	mk(ns, full, "x", NS_FILE);
	mk(ns, NS_ROOT_INO, "d2", NS_DIR);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "d", NS_ROOT_INO, "f", 0), -ENOTDIR);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "d", NS_ROOT_INO, "l", 0), -ENOTDIR);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "f", NS_ROOT_INO, "d", 0), -EISDIR);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "l", NS_ROOT_INO, "d", 0), -EISDIR);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "d", NS_ROOT_INO, "full", 0), -ENOTEMPTY);
	T_ASSERT_OK(ns_rename(ns, NS_ROOT_INO, "l", NS_ROOT_INO, "f", 0)); /* symlink over file */
	T_ASSERT_EQ(ns_create(ns, f, "x", NS_FILE, 0644, 0, 0, NULL, &ino), -ENOENT);
	T_ASSERT_EQ(
	    ns_create(ns, lookup(ns, NS_ROOT_INO, "f"), "x", NS_FILE, 0644, 0, 0, NULL, &ino),
	    -ENOTDIR);
	T_ASSERT_EQ(ns_lookup(ns, lookup(ns, NS_ROOT_INO, "f"), "x", &ino), -ENOTDIR);
	T_ASSERT_EQ(ns_readdir(ns, lookup(ns, NS_ROOT_INO, "f"), 0, listing_cb, &l), -ENOTDIR);
	T_ASSERT_EQ(ns_rename(ns, lookup(ns, NS_ROOT_INO, "f"), "x", NS_ROOT_INO, "y", 0),
		    -ENOTDIR);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "d", lookup(ns, NS_ROOT_INO, "f"), "y", 0),
		    -ENOTDIR);
	T_ASSERT_EQ(ns_set_content(ns, d, 0, &(struct ns_content){ 0 }, 0), -EISDIR);
	T_ASSERT_OK(ns_rename(ns, NS_ROOT_INO, "d", NS_ROOT_INO, "d2", 0)); /* empty dir */
	T_ASSERT_EQ(lookup(ns, NS_ROOT_INO, "d2"), d);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void names_are_validated(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t f = mk(ns, NS_ROOT_INO, "f", NS_FILE), ino;
	char n255[256], n256[257], t4095[4096], t4096[4097];
	static const char *const bad[] = { "", ".", "..", "a/b", "/", "ab/" };

	memset(n255, 'n', 255);
	n255[255] = '\0';
	memset(n256, 'n', 256);
	n256[256] = '\0';
	memset(t4095, 't', 4095);
	t4095[4095] = '\0';
	memset(t4096, 't', 4096);
	t4096[4096] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		T_ASSERT_EQ(ns_create(ns, NS_ROOT_INO, bad[i], NS_FILE, 0644, 0, 0, NULL, &ino),
			    -EINVAL);
		T_ASSERT_EQ(ns_create(ns, NS_ROOT_INO, bad[i], NS_DIR, 0755, 0, 0, NULL, &ino),
			    -EINVAL);
		T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "f", NS_ROOT_INO, bad[i], 0), -EINVAL);
	}
	T_ASSERT_EQ(ns_create(ns, NS_ROOT_INO, n256, NS_FILE, 0644, 0, 0, NULL, &ino),
		    -ENAMETOOLONG);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "f", NS_ROOT_INO, n256, 0), -ENAMETOOLONG);
	T_ASSERT_EQ(ns_lookup(ns, NS_ROOT_INO, n256, &ino), -ENAMETOOLONG);
	T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, n255, NS_FILE, 0644, 0, 0, NULL, &ino));
	T_ASSERT_EQ(lookup(ns, NS_ROOT_INO, n255), ino);
	T_ASSERT_OK(ns_rename(ns, NS_ROOT_INO, "f", NS_ROOT_INO, "a name with spaces\n\t\x01", 0));
	T_ASSERT_EQ(lookup(ns, NS_ROOT_INO, "a name with spaces\n\t\x01"), f);
	T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, "...", NS_FILE, 0644, 0, 0, NULL, &ino));
	T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, ".hidden", NS_FILE, 0644, 0, 0, NULL, &ino));
	T_ASSERT_OK(
	    ns_create(ns, NS_ROOT_INO, "\xc3\xa9t\xc3\xa9", NS_FILE, 0644, 0, 0, NULL, &ino));
	/* Symlink targets: 1..4095 bytes. */
	T_ASSERT_EQ(ns_create(ns, NS_ROOT_INO, "s", NS_SYMLINK, 0777, 0, 0, "", &ino), -EINVAL);
	T_ASSERT_EQ(ns_create(ns, NS_ROOT_INO, "s", NS_SYMLINK, 0777, 0, 0, NULL, &ino), -EINVAL);
	T_ASSERT_EQ(ns_create(ns, NS_ROOT_INO, "s", NS_SYMLINK, 0777, 0, 0, t4096, &ino),
		    -ENAMETOOLONG);
	T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, "s", NS_SYMLINK, 0777, 0, 0, t4095, &ino));
	T_ASSERT_EQ(attr_of(ns, ino).size, 4095);
	T_ASSERT_OK(ns_commit(ns)); /* the longest name and target encode */
	{
		char *before = dump_tree(ns);

		ns_close(ns);
		ns = open_ns(dir, 1, true);
		expect_tree(ns, before);
		free(before);
	}
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void xattrs_follow_getxattr_semantics(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t f = mk(ns, NS_ROOT_INO, "f", NS_FILE), d = mk(ns, NS_ROOT_INO, "d", NS_DIR);
	uint64_t l = mk(ns, NS_ROOT_INO, "l", NS_SYMLINK);
	char buf[256], n255[256], n256[257];
	uint8_t *big = malloc(NS_XATTR_VALUE_MAX + 1);

	T_ASSERT(big);
	memset(big, 0xab, NS_XATTR_VALUE_MAX + 1);
	memset(n255, 'x', 255);
	n255[255] = '\0';
	memset(n256, 'x', 256);
	n256[256] = '\0';
	T_ASSERT_EQ(ns_xattr_list(ns, f, NULL, 0), 0);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.a", buf, sizeof(buf)), -ENODATA);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.a", NULL, 0), -ENODATA);
	T_ASSERT_EQ(ns_xattr_set(ns, f, "user.a", "v1", 2, NS_XATTR_REPLACE), -ENODATA);
	T_ASSERT_OK(ns_xattr_set(ns, f, "user.b", "bee", 3, NS_XATTR_CREATE));
	T_ASSERT_OK(ns_xattr_set(ns, f, "user.a", "v1", 2, 0));
	T_ASSERT_OK(ns_xattr_set(ns, f, "security.c", "", 0, 0)); /* empty value */
	T_ASSERT_EQ(ns_xattr_set(ns, f, "user.a", "v2", 2, NS_XATTR_CREATE), -EEXIST);
	T_ASSERT_OK(ns_xattr_set(ns, f, "user.a", "value2", 6, NS_XATTR_REPLACE));
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.a", NULL, 0), 6);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.a", buf, 5), -ERANGE);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.a", buf, 6), 6);
	T_ASSERT_MEM_EQ(buf, "value2", 6);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "security.c", NULL, 0), 0);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "security.c", buf, sizeof(buf)), 0);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user", buf, sizeof(buf)), -ENODATA); /* no prefixes */
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.aa", buf, sizeof(buf)), -ENODATA);
	/* list: names NUL-terminated, in byte order; size 0 asks for the size. */
	T_ASSERT_EQ(ns_xattr_list(ns, f, NULL, 0), 11 + 7 + 7);
	T_ASSERT_EQ(ns_xattr_list(ns, f, buf, 24), -ERANGE);
	memset(buf, 0, sizeof(buf));
	T_ASSERT_EQ(ns_xattr_list(ns, f, buf, 25), 25);
	T_ASSERT(!strcmp(buf, "security.c") && !strcmp(buf + 11, "user.a") &&
		 !strcmp(buf + 18, "user.b"));
	/* remove */
	T_ASSERT_OK(ns_xattr_remove(ns, f, "user.a"));
	T_ASSERT_EQ(ns_xattr_remove(ns, f, "user.a"), -ENODATA);
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.a", buf, sizeof(buf)), -ENODATA);
	T_ASSERT_EQ(ns_xattr_list(ns, f, NULL, 0), 11 + 7);
	/* limits */
	T_ASSERT_EQ(ns_xattr_set(ns, f, "", "x", 1, 0), -EINVAL);
	T_ASSERT_EQ(ns_xattr_set(ns, f, n256, "x", 1, 0), -ERANGE);
	T_ASSERT_OK(ns_xattr_set(ns, f, n255, "x", 1, 0));
	T_ASSERT_EQ(ns_xattr_set(ns, d, "user.big", big, NS_XATTR_VALUE_MAX + 1, 0), -E2BIG);
	T_ASSERT_EQ(ns_xattr_set(ns, d, "user.big", big, NS_XATTR_VALUE_MAX - 8, 0), 0);
	T_ASSERT_EQ(ns_xattr_get(ns, d, "user.big", NULL, 0), NS_XATTR_VALUE_MAX - 8);
	/* names + values of one entry stay within NS_XATTR_TOTAL_MAX */
	T_ASSERT_EQ(ns_xattr_set(ns, d, "user.more", big, 9, 0), -ENOSPC);
	T_ASSERT_EQ(ns_xattr_set(ns, d, "u", big, 0, 0), -ENOSPC);
	T_ASSERT_OK(ns_xattr_set(ns, d, "user.big", big, 100, 0)); /* smaller: fits again */
	T_ASSERT_OK(ns_xattr_set(ns, d, "user.more", big, 9, 0));
	T_ASSERT_OK(ns_xattr_remove(ns, d, "user.big"));
	for (int i = 0; i < NS_XATTR_COUNT_MAX; i++) {
		char name[16];

		snprintf(name, sizeof(name), "user.%03d", i);
		T_ASSERT_OK(ns_xattr_set(ns, l, name, name, 3, 0));
	}
	T_ASSERT_EQ(ns_xattr_set(ns, l, "user.zzz", "1", 1, 0), -ENOSPC); /* count */
	T_ASSERT_OK(ns_xattr_set(ns, l, "user.000", "replaced", 8, 0));	  /* replacing is fine */
	/* on the root too */
	T_ASSERT_OK(ns_xattr_set(ns, NS_ROOT_INO, "user.root", "r", 1, 0));
	T_ASSERT_EQ(ns_xattr_get(ns, NS_ROOT_INO, "user.root", buf, sizeof(buf)), 1);
	T_ASSERT_EQ(ns_xattr_get(ns, 55555, "user.root", buf, sizeof(buf)), -ENOENT);
	T_ASSERT_EQ(ns_xattr_list(ns, 55555, buf, sizeof(buf)), -ENOENT);
	/* xattrs survive other changes and a reopen */
	T_ASSERT_OK(ns_rename(ns, NS_ROOT_INO, "f", NS_ROOT_INO, "f2", 0));
	T_ASSERT_OK(ns_set_content(ns, f, 3, &(struct ns_content){ .kind = NS_CONTENT_CHUNK }, 9));
	T_ASSERT_EQ(ns_xattr_get(ns, f, "user.b", buf, sizeof(buf)), 3);
	T_ASSERT_OK(ns_commit(ns));
	{
		char *before = dump_tree(ns);

		T_ASSERT(strstr(before, " user.b=3:"));
		T_ASSERT(strstr(before, " user.255=3:"));
		ns_close(ns);
		ns = open_ns(dir, 1, true);
		expect_tree(ns, before);
		free(before);
	}
	free(big);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void read_only_namespace_gives_erofs(void)
{
	char *dir = t_tmpdir("ns"), *before;
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t d = mk(ns, NS_ROOT_INO, "d", NS_DIR), f = mk(ns, d, "f", NS_FILE), ino;
	struct ns_attr a = { .mode = 0600 };
	struct ns_content c = content_of(1);

	T_ASSERT_OK(ns_xattr_set(ns, f, "user.x", "1", 1, 0));
	T_ASSERT_OK(ns_commit(ns));
	before = dump_tree(ns);
	ns_close(ns);
	ns = open_ns(dir, 2, false);
	expect_tree(ns, before);
	d = lookup(ns, NS_ROOT_INO, "d");
	f = lookup(ns, d, "f");
	T_ASSERT_EQ(ns_create(ns, d, "g", NS_FILE, 0644, 0, 0, NULL, &ino), -EROFS);
	T_ASSERT_EQ(ns_create(ns, d, "g", NS_DIR, 0755, 0, 0, NULL, &ino), -EROFS);
	T_ASSERT_EQ(ns_create(ns, d, "g", NS_SYMLINK, 0777, 0, 0, "t", &ino), -EROFS);
	T_ASSERT_EQ(ns_setattr(ns, f, &a, NS_SET_MODE), -EROFS);
	T_ASSERT_EQ(ns_set_content(ns, f, 1, &c, 1), -EROFS);
	T_ASSERT_EQ(ns_unlink(ns, d, "f"), -EROFS);
	T_ASSERT_EQ(ns_rmdir(ns, NS_ROOT_INO, "d"), -EROFS);
	T_ASSERT_EQ(ns_rename(ns, d, "f", d, "g", 0), -EROFS);
	T_ASSERT_EQ(ns_rename(ns, d, "f", d, "g", NS_RENAME_EXCHANGE), -EROFS);
	T_ASSERT_EQ(ns_xattr_set(ns, f, "user.y", "1", 1, 0), -EROFS);
	T_ASSERT_EQ(ns_xattr_remove(ns, f, "user.x"), -EROFS);
	T_ASSERT_EQ(stats_of(ns).pending, 0);
	T_ASSERT_OK(ns_commit(ns)); /* nothing to do */
	T_ASSERT_OK(ns_compact(ns));
	expect_tree(ns, before);
	ns_close(ns);
	ns = open_ns(dir, 2, false);
	expect_tree(ns, before);
	ns_close(ns);
	free(before);
	t_tmpdir_remove(dir);
	free(dir);
}

static void inode_numbers_are_stable_and_never_reused(void)
{
	char *dir = t_tmpdir("ns"), *dir2 = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true), *peer = open_ns(dir2, 2, true);
	uint64_t d = mk(ns, NS_ROOT_INO, "d", NS_DIR), e = mk(ns, NS_ROOT_INO, "e", NS_DIR);
	uint64_t f = mk(ns, d, "f", NS_FILE), f2, s, s2, g, g2;
	uint64_t seen[64];
	size_t nseen = 0;
	struct ns_attr a = { .mode = 0611 };
	struct ns_content c = content_of(42), c2;

	seen[nseen++] = NS_ROOT_INO;
	seen[nseen++] = d;
	seen[nseen++] = e;
	seen[nseen++] = f;
	/* Stable across renames, attribute and content changes. */
	T_ASSERT_OK(ns_rename(ns, d, "f", e, "f-moved", 0));
	T_ASSERT_EQ(lookup(ns, e, "f-moved"), f);
	T_ASSERT_OK(ns_setattr(ns, f, &a, NS_SET_MODE));
	T_ASSERT_OK(ns_set_content(ns, f, 9, &c, 9));
	T_ASSERT_EQ(lookup(ns, e, "f-moved"), f);
	/* Stable when a peer changes the entry. */
	{
		struct ns *from[2] = { ns, peer }, *to[2] = { peer, ns };

		T_ASSERT_OK(ns_commit(ns));
		for (int round = 0; round < 2; round++) {
			if (round == 1) {
				a.mode = 0601;
				T_ASSERT_OK(
				    ns_setattr(peer, lookup(peer, e, "f-moved"), &a, NS_SET_MODE));
				T_ASSERT_OK(
				    ns_rename(peer, e, "f-moved", NS_ROOT_INO, "f-peer", 0));
				T_ASSERT_OK(ns_commit(peer));
			}
			apply_all(from[round], to[round]);
		}
		T_ASSERT_EQ(lookup(ns, NS_ROOT_INO, "f-peer"), f);
		T_ASSERT_EQ(attr_of(ns, f).mode, 0601);
	}
	/* A removed file keeps its number (it may be open); a new file with its
	 * name gets a new one, and the removed one does not come back. */
	T_ASSERT_OK(ns_unlink(ns, NS_ROOT_INO, "f-peer"));
	f2 = mk(ns, NS_ROOT_INO, "f-peer", NS_FILE);
	T_ASSERT(f2 != f);
	T_ASSERT(attr_of(ns, f).deleted);
	T_ASSERT(!attr_of(ns, f2).deleted);
	T_ASSERT_OK(ns_get_content(ns, f2, &c2));
	T_ASSERT_EQ(c2.kind, NS_CONTENT_NONE);
	/* A write to the removed file (flushed after unlink) goes nowhere. */
	T_ASSERT_EQ(ns_set_content(ns, f, 9, &c, 10), -ENOENT);
	T_ASSERT_EQ(attr_of(ns, f2).size, 0);
	seen[nseen++] = f2;
	{
		/* Removed and created again at the same path, in the same directory. */
		uint64_t p1 = mk(ns, d, "plain", NS_FILE), p2;

		T_ASSERT_OK(ns_set_content(ns, p1, 9, &c, 9));
		T_ASSERT_OK(ns_unlink(ns, d, "plain"));
		p2 = mk(ns, d, "plain", NS_FILE);
		T_ASSERT(p2 != p1);
		T_ASSERT(attr_of(ns, p1).deleted);
		T_ASSERT_EQ(attr_of(ns, p1).nlink, 0);
		T_ASSERT_EQ(attr_of(ns, p2).size, 0);
		T_ASSERT_EQ(ns_set_content(ns, p1, 9, &c, 11), -ENOENT);
		T_ASSERT_EQ(attr_of(ns, p2).size, 0);
		seen[nseen++] = p1;
		seen[nseen++] = p2;
	}
	/* The same for directories, symlinks, the original path of a moved entry
	 * and a name created, removed and created again several times. */
	s = mk(ns, d, "sub", NS_DIR);
	T_ASSERT_OK(ns_rmdir(ns, d, "sub"));
	s2 = mk(ns, d, "sub", NS_DIR);
	T_ASSERT(s2 != s && attr_of(ns, s).deleted);
	seen[nseen++] = s;
	seen[nseen++] = s2;
	g = mk(ns, d, "orig", NS_FILE);
	T_ASSERT_OK(ns_rename(ns, d, "orig", e, "elsewhere", 0));
	g2 = mk(ns, d, "orig", NS_FILE);
	T_ASSERT(g2 != g);
	T_ASSERT_EQ(lookup(ns, e, "elsewhere"), g);
	seen[nseen++] = g;
	seen[nseen++] = g2;
	for (int i = 0; i < 5; i++) {
		uint64_t x = mk(ns, d, "again", i % 2 ? NS_SYMLINK : NS_FILE);

		T_ASSERT_OK(ns_unlink(ns, d, "again"));
		seen[nseen++] = x;
	}
	for (size_t i = 0; i < nseen; i++)
		for (size_t j = i + 1; j < nseen; j++)
			if (seen[i] == seen[j])
				T_FAIL("inode %llu handed out twice", (unsigned long long)seen[i]);
	/* The peer learns all this and agrees on the tree. */
	T_ASSERT_OK(ns_commit(ns));
	apply_all(ns, peer);
	{
		char *t = dump_tree(ns);

		expect_tree(peer, t);
		free(t);
	}
	ns_close(ns);
	ns_close(peer);
	t_tmpdir_remove(dir);
	t_tmpdir_remove(dir2);
	free(dir);
	free(dir2);
}

static void stats_count_entries_and_records(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t d = mk(ns, NS_ROOT_INO, "d", NS_DIR), f1 = mk(ns, d, "f1", NS_FILE);
	uint64_t f2 = mk(ns, d, "f2", NS_FILE);
	struct ns_content c = content_of(1);
	struct ns_attr a = { .mode = 0700 };
	struct ns_stats st;

	mk(ns, d, "l", NS_SYMLINK);
	T_ASSERT_OK(ns_set_content(ns, f1, 100, &c, 1));
	T_ASSERT_OK(ns_set_content(ns, f2, 50, &c, 1));
	st = stats_of(ns);
	T_ASSERT_EQ(st.files, 2);
	T_ASSERT_EQ(st.dirs, 1);
	T_ASSERT_EQ(st.symlinks, 1);
	T_ASSERT_EQ(st.bytes, 150);
	T_ASSERT_EQ(st.records, 4);
	T_ASSERT_EQ(st.tombstones, 0);
	T_ASSERT_EQ(st.pending, 4);
	T_ASSERT_EQ(st.conflicts, 0);
	T_ASSERT(st.mem_bytes > 0);
	T_ASSERT_OK(ns_unlink(ns, d, "f2"));
	st = stats_of(ns);
	T_ASSERT_EQ(st.files, 1);
	T_ASSERT_EQ(st.bytes, 100);
	T_ASSERT_EQ(st.records, 4);
	T_ASSERT_EQ(st.tombstones, 1);
	/* A change to the root is one more record. */
	T_ASSERT_OK(ns_setattr(ns, NS_ROOT_INO, &a, NS_SET_MODE));
	st = stats_of(ns);
	T_ASSERT_EQ(st.records, 5);
	T_ASSERT_EQ(st.pending, 5);
	T_ASSERT_EQ(st.log_bytes, 40);
	T_ASSERT_OK(ns_commit(ns));
	st = stats_of(ns);
	T_ASSERT_EQ(st.pending, 0);
	T_ASSERT(st.log_bytes > 40 + 5 * (NS_REC_FIXED_LEN + NS_REC_SIG_LEN));
	T_ASSERT_OK(ns_setattr(ns, NS_ROOT_INO, &a, NS_SET_MODE));
	T_ASSERT_EQ(stats_of(ns).records, 5);
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	st = stats_of(ns);
	T_ASSERT_EQ(st.files, 1);
	T_ASSERT_EQ(st.dirs, 1);
	T_ASSERT_EQ(st.symlinks, 1);
	T_ASSERT_EQ(st.bytes, 100);
	T_ASSERT_EQ(st.records, 5);
	T_ASSERT_EQ(st.tombstones, 1);
	T_ASSERT_EQ(st.pending, 0);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- persistence ---- */

/* A tree with every kind of entry and attribute, built by @n random steps. */
static void build_rich_tree(struct ns *ns, int n)
{
	static int serial; /* names stay unique across calls */
	uint64_t dirs[64] = { NS_ROOT_INO };
	size_t ndirs = 1;

	for (int i = serial; i < serial + n; i++) {
		uint64_t p = dirs[t_rand() % ndirs], ino;
		char name[32];
		struct ns_content c = content_of((uint32_t)t_rand());
		struct ns_attr a = { .mode = (uint32_t)(t_rand() & 07777),
				     .uid = (uint32_t)t_rand(),
				     .gid = (uint32_t)t_rand(),
				     .mtime = (int64_t)(t_rand() >> 1) };

		snprintf(name, sizeof(name), "e%d.%s", i, i % 3 ? "txt" : "bin");
		switch (t_rand() % 6) {
		case 0:
			T_ASSERT_OK(ns_create(ns, p, name, NS_DIR, 0755, 1, 1, NULL, &ino));
			if (ndirs < ARRAY_SIZE(dirs))
				dirs[ndirs++] = ino;
			break;
		case 1:
			T_ASSERT_OK(ns_create(ns, p, name, NS_SYMLINK, 0777, 2, 2, name, &ino));
			break;
		default:
			T_ASSERT_OK(ns_create(ns, p, name, NS_FILE, 0640, 3, 3, NULL, &ino));
			if (t_rand() % 4)
				T_ASSERT_OK(
				    ns_set_content(ns, ino, t_rand() % 100000000 + 1, &c, a.mtime));
		}
		if (t_rand() % 3 == 0)
			T_ASSERT_OK(
			    ns_setattr(ns, ino, &a, (unsigned)(t_rand() % 16) | NS_SET_MODE));
		if (t_rand() % 3 == 0)
			T_ASSERT_OK(ns_xattr_set(ns, ino, t_rand() % 2 ? "user.a" : "trusted.b",
						 name, strlen(name), 0));
		if (t_rand() % 5 == 0) { /* move it into another directory */
			uint64_t q = dirs[t_rand() % ndirs];
			int rc = ns_rename(ns, p, name, q, name, 0);

			T_ASSERT(rc == 0 || rc == -EINVAL); /* a directory into itself */
		}
		if (t_rand() % 7 == 0) {
			int rc = ns_unlink(ns, p, name);

			if (rc == -EISDIR && (rc = ns_rmdir(ns, p, name)) == 0)
				for (size_t j = 1; j < ndirs; j++)
					if (dirs[j] == ino)
						dirs[j--] = dirs[--ndirs];
			T_ASSERT(rc == 0 || rc == -ENOENT || rc == -ENOTEMPTY);
		}
	}
	serial += n;
}

static void commit_and_reopen_give_the_same_tree(void)
{
	char *dir = t_tmpdir("ns"), *before;
	struct ns *ns = open_ns(dir, 1, true);
	struct ns_stats st;

	build_rich_tree(ns, 400);
	T_ASSERT_OK(ns_commit(ns));
	before = dump_tree(ns);
	T_ASSERT(strlen(before) > 10000);
	st = stats_of(ns);
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, before);
	T_ASSERT_EQ(stats_of(ns).records, st.records);
	T_ASSERT_EQ(stats_of(ns).files, st.files);
	T_ASSERT_EQ(stats_of(ns).bytes, st.bytes);
	ns_close(ns);
	/* A read-only member and another node id see the same. */
	ns = open_ns(dir, 9, false);
	expect_tree(ns, before);
	ns_close(ns);
	/* Changes in several commits, reopened after each. */
	for (int i = 0; i < 3; i++) {
		ns = open_ns(dir, 1, true);
		expect_tree(ns, before);
		build_rich_tree(ns, 50);
		T_ASSERT_OK(ns_commit(ns));
		free(before);
		before = dump_tree(ns);
		ns_close(ns);
	}
	ns = open_ns(dir, 1, true);
	expect_tree(ns, before);
	ns_close(ns);
	free(before);
	t_tmpdir_remove(dir);
	free(dir);
}

static void uncommitted_changes_are_lost_at_close(void)
{
	char *dir = t_tmpdir("ns"), *before, *log = path_in(dir, "ns.log");
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t f = mk(ns, NS_ROOT_INO, "kept", NS_FILE);
	struct ns_content c = content_of(3);
	off_t size;

	T_ASSERT_OK(ns_commit(ns));
	before = dump_tree(ns);
	size = file_size(log);
	mk(ns, NS_ROOT_INO, "lost", NS_DIR);
	T_ASSERT_OK(ns_set_content(ns, f, 10, &c, 10));
	T_ASSERT_OK(ns_unlink(ns, NS_ROOT_INO, "kept"));
	T_ASSERT_EQ(stats_of(ns).pending, 2);
	T_ASSERT_EQ(file_size(log), size); /* nothing written before the commit */
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, before);
	T_ASSERT_EQ(attr_of(ns, lookup(ns, NS_ROOT_INO, "kept")).size, 0);
	ns_close(ns);
	free(before);
	free(log);
	t_tmpdir_remove(dir);
	free(dir);
}

static void compaction_keeps_the_tree(void)
{
	char *dir = t_tmpdir("ns"), *before, *log = path_in(dir, "ns.log");
	struct ns *ns = open_ns(dir, 1, true);
	struct ns_stats st;
	uint64_t f;

	build_rich_tree(ns, 300);
	T_ASSERT_OK(ns_commit(ns));
	/* Overwrite a lot so that the log holds many superseded records. */
	f = mk(ns, NS_ROOT_INO, "hot", NS_FILE);
	for (int i = 0; i < 200; i++) {
		struct ns_content c = content_of((uint32_t)i);

		T_ASSERT_OK(ns_set_content(ns, f, (uint64_t)i + 1, &c, i));
		T_ASSERT_OK(ns_commit(ns));
	}
	before = dump_tree(ns);
	st = stats_of(ns);
	T_ASSERT_OK(ns_compact(ns));
	T_ASSERT_EQ(stats_of(ns).log_bytes, 40);
	T_ASSERT(stats_of(ns).snapshot_bytes > 40);
	T_ASSERT(stats_of(ns).snapshot_bytes < st.log_bytes);
	T_ASSERT_EQ(file_size(log), 40);
	expect_tree(ns, before);
	/* Records are still readable from the snapshot (for peers). */
	{
		struct ns *peer;
		char *dir2 = t_tmpdir("ns");

		peer = open_ns(dir2, 2, false);
		apply_all(ns, peer);
		expect_tree(peer, before);
		ns_close(peer);
		t_tmpdir_remove(dir2);
		free(dir2);
	}
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, before);
	T_ASSERT_EQ(stats_of(ns).records, st.records);
	/* Snapshot plus a new log, compacted again. */
	build_rich_tree(ns, 50);
	T_ASSERT_OK(ns_commit(ns));
	free(before);
	before = dump_tree(ns);
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, before);
	mk(ns, NS_ROOT_INO, "pending-across-compaction", NS_FILE);
	T_ASSERT_OK(ns_compact(ns));
	T_ASSERT_EQ(stats_of(ns).pending, 1);
	T_ASSERT_OK(ns_commit(ns));
	free(before);
	before = dump_tree(ns);
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, before);
	T_ASSERT_OK(ns_compact(ns));
	T_ASSERT_OK(ns_compact(ns)); /* twice in a row */
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, before);
	ns_close(ns);
	free(before);
	free(log);
	t_tmpdir_remove(dir);
	free(dir);
}

static uint8_t *read_all(const char *path, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t n;
	uint8_t *p;

	T_ASSERT(fd >= 0);
	n = lseek(fd, 0, SEEK_END);
	T_ASSERT(n >= 0);
	T_ASSERT((p = malloc((size_t)n + 1)));
	T_ASSERT_EQ(pread(fd, p, (size_t)n, 0), n);
	close(fd);
	*ret_len = (size_t)n;
	return p;
}

static void write_all(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	T_ASSERT(fd >= 0);
	T_ASSERT_EQ(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static void torn_log_tail_loads_the_valid_prefix(void)
{
	char *dir = t_tmpdir("ns"), *log = path_in(dir, "ns.log"), *tree_a, *tree_b;
	struct ns *ns = open_ns(dir, 1, true);
	uint64_t last;
	size_t len_a, len_b;
	uint8_t *full;

	build_rich_tree(ns, 60);
	T_ASSERT_OK(ns_commit(ns));
	tree_a = dump_tree(ns);
	len_a = (size_t)file_size(log);
	last = mk(ns, NS_ROOT_INO, "last", NS_FILE);
	T_ASSERT_OK(ns_xattr_set(ns, last, "user.tail", "x", 1, 0));
	T_ASSERT_OK(ns_commit(ns)); /* one record: the last frame of the log */
	tree_b = dump_tree(ns);
	ns_close(ns);
	full = read_all(log, &len_b);
	T_ASSERT(len_b > len_a + 12 + NS_REC_FIXED_LEN);
	/* Cut anywhere inside the last frame: the prefix loads, the tail goes. */
	for (size_t cut = len_a + 1; cut < len_b; cut++) {
		write_all(log, full, cut);
		ns = open_ns(dir, 1, true);
		expect_tree(ns, tree_a);
		ns_close(ns);
		T_ASSERT_EQ(file_size(log), (off_t)len_a); /* cut back to the last whole frame */
	}
	/* A damaged last frame (a crash mid-write of a sector) is a torn tail too. */
	full[len_b - 3] ^= 0x40;
	write_all(log, full, len_b);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, tree_a);
	ns_close(ns);
	full[len_b - 3] ^= 0x40;
	/* Garbage after whole frames: every frame loads. */
	{
		uint8_t *g = malloc(len_b + 100);

		T_ASSERT(g);
		memcpy(g, full, len_b);
		for (size_t glen = 1; glen <= 100; glen += 33) {
			t_rand_fill(g + len_b, glen);
			write_all(log, g, len_b + glen);
			ns = open_ns(dir, 1, true);
			expect_tree(ns, tree_b);
			ns_close(ns);
			T_ASSERT_EQ(file_size(log), (off_t)len_b);
		}
		free(g);
	}
	/* After a torn tail, new commits append after the valid prefix. */
	write_all(log, full, len_b - 5);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, tree_a);
	mk(ns, NS_ROOT_INO, "after", NS_DIR);
	T_ASSERT_OK(ns_commit(ns));
	free(tree_b);
	tree_b = dump_tree(ns);
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	expect_tree(ns, tree_b);
	T_ASSERT(strstr(tree_b, "/after ") && !strstr(tree_b, "/last "));
	ns_close(ns);
	/* A log cut inside its header starts afresh. */
	write_all(log, full, 20);
	ns = open_ns(dir, 1, true);
	expect_empty(ns);
	ns_close(ns);
	free(full);
	free(tree_a);
	free(tree_b);
	free(log);
	t_tmpdir_remove(dir);
	free(dir);
}

static void damaged_snapshot_or_foreign_files_refuse_to_open(void)
{
	char *dir = t_tmpdir("ns"), *snap = path_in(dir, "ns.snap"), *log = path_in(dir, "ns.log");
	struct ns *ns = open_ns(dir, 1, true);
	uint8_t node[NS_NODE_ID_LEN] = { 1 }, other_pk[32], other_sk[64], *p;
	struct ns_open_opts o = { .share_pk = other_pk, .share_sk = other_sk, .node_id = node };
	size_t len;

	build_rich_tree(ns, 40);
	T_ASSERT_OK(ns_commit(ns));
	T_ASSERT_OK(ns_compact(ns));
	ns_close(ns);
	/* Another share's key: both files belong to someone else. */
	crypto_sign_keypair(other_pk, other_sk);
	T_ASSERT_EQ(ns_open(dir, &o, &ns), -EBADMSG);
	/* A snapshot damaged in the middle is not silently cut short. */
	p = read_all(snap, &len);
	p[len / 2] ^= 1;
	write_all(snap, p, len);
	o.share_pk = share_pk;
	o.share_sk = share_sk;
	T_ASSERT_EQ(ns_open(dir, &o, &ns), -EBADMSG);
	p[len / 2] ^= 1;
	write_all(snap, p, len);
	T_ASSERT_OK(ns_open(dir, &o, &ns));
	ns_close(ns);
	free(p);
	/* A log header of another kind of file. */
	p = read_all(log, &len);
	p[0] ^= 0xff;
	write_all(log, p, len);
	T_ASSERT_EQ(ns_open(dir, &o, &ns), -EBADMSG);
	free(p);
	free(snap);
	free(log);
	t_tmpdir_remove(dir);
	free(dir);
}

static int count_records_cb(void *arg, const uint8_t *rec, size_t len)
{
	(void)rec;
	(void)len;
	(*(size_t *)arg)++;
	return 0;
}

static size_t count_records(struct ns *ns)
{
	size_t n = 0;

	T_ASSERT_OK(ns_foreach_record(ns, count_records_cb, &n));
	return n;
}

static void three_step_commit_keeps_records_pending_on_error(void)
{
	char *dir = t_tmpdir("ns"), *log = path_in(dir, "ns.log"), *t;
	struct ns *ns = open_ns(dir, 1, true), *other;
	struct ns_commit *c;
	struct ns_content cc = content_of(8);
	uint64_t a = mk(ns, NS_ROOT_INO, "a", NS_FILE), b = mk(ns, NS_ROOT_INO, "b", NS_DIR);

	T_ASSERT(b);
	T_ASSERT_EQ(stats_of(ns).pending, 2);
	c = ns_commit_begin(ns);
	T_ASSERT(c);
	T_ASSERT_EQ(stats_of(ns).pending, 0);
	/* One commit at a time. */
	T_ASSERT(ns_commit_begin(ns) == NULL);
	T_ASSERT_EQ(ns_commit(ns), -EBUSY);
	T_ASSERT_EQ(ns_compact(ns), -EBUSY);
	/* The namespace keeps working while the commit runs. */
	mk(ns, NS_ROOT_INO, "during", NS_FILE);
	T_ASSERT_EQ(stats_of(ns).pending, 1);
	T_ASSERT_OK(ns_commit_run(c));
	T_ASSERT(file_size(log) > 40);
	/* The caller reports a failure (e.g. the write after it was lost). */
	ns_commit_end(ns, c, -EIO);
	T_ASSERT_EQ(stats_of(ns).pending, 3);
	T_ASSERT_EQ(stats_of(ns).log_bytes, 40);
	T_ASSERT_EQ(file_size(log), 40); /* cut back */
	T_ASSERT_EQ(count_records(ns), 0);
	other = open_ns(dir, 2, false);
	expect_empty(other);
	ns_close(other);
	/* A head superseded while its commit runs. */
	c = ns_commit_begin(ns);
	T_ASSERT(c);
	T_ASSERT_OK(ns_set_content(ns, a, 5, &cc, 5));
	T_ASSERT_EQ(stats_of(ns).pending, 1);
	T_ASSERT_OK(ns_commit_run(c));
	ns_commit_end(ns, c, 0);
	T_ASSERT_EQ(stats_of(ns).pending, 1);
	T_ASSERT_EQ(count_records(ns), 2); /* b and "during"; a's head is the pending one */
	other = open_ns(dir, 2, false);
	T_ASSERT_EQ(attr_of(other, lookup(other, NS_ROOT_INO, "a")).size, 0);
	ns_close(other);
	/* The next commit takes it; the disk then has the newest version. */
	T_ASSERT_OK(ns_commit(ns));
	T_ASSERT_EQ(stats_of(ns).pending, 0);
	t = dump_tree(ns);
	other = open_ns(dir, 2, false);
	expect_tree(other, t);
	T_ASSERT_EQ(attr_of(other, lookup(other, NS_ROOT_INO, "a")).size, 5);
	ns_close(other);
	/* Nothing pending: no commit to begin. */
	T_ASSERT(ns_commit_begin(ns) == NULL);
	free(t);
	free(log);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- signed records from peers ---- */

struct recset {
	uint8_t **rec;
	size_t *len;
	size_t n, cap;
};

static int rs_add(void *arg, const uint8_t *rec, size_t len)
{
	struct recset *rs = arg;

	for (size_t i = 0; i < rs->n; i++)
		if (rs->len[i] == len && !memcmp(rs->rec[i], rec, len))
			return 0;
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 64;
		T_ASSERT((rs->rec = realloc(rs->rec, rs->cap * sizeof(*rs->rec))));
		T_ASSERT((rs->len = realloc(rs->len, rs->cap * sizeof(*rs->len))));
	}
	T_ASSERT((rs->rec[rs->n] = malloc(len)));
	memcpy(rs->rec[rs->n], rec, len);
	rs->len[rs->n++] = len;
	return 0;
}

static void rs_free(struct recset *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->rec[i]);
	free(rs->rec);
	free(rs->len);
	memset(rs, 0, sizeof(*rs));
}

static void apply_rejects_bad_records(void)
{
	char *dir = t_tmpdir("ns"), *dir2 = t_tmpdir("ns");
	struct ns *a = open_ns(dir, 1, true), *b = open_ns(dir2, 2, false);
	struct recset rs = { 0 };
	uint8_t other_pk[32], other_sk[64], *buf = malloc(NS_REC_MAX + 2);
	uint64_t d = mk(a, NS_ROOT_INO, "d", NS_DIR), f = mk(a, d, "f", NS_FILE);
	struct ns_content c = content_of(4);
	char *tree;

	T_ASSERT(buf);
	mk(a, d, "l", NS_SYMLINK);
	T_ASSERT_OK(ns_set_content(a, f, 77, &c, 1));
	T_ASSERT_OK(ns_xattr_set(a, f, "user.k", "value", 5, 0));
	T_ASSERT_OK(ns_commit(a));
	T_ASSERT_OK(ns_foreach_record(a, rs_add, &rs));
	T_ASSERT_EQ(rs.n, 3);
	crypto_sign_keypair(other_pk, other_sk);
	for (size_t i = 0; i < rs.n; i++) {
		size_t len = rs.len[i];

		memcpy(buf, rs.rec[i], len);
		for (size_t k = 0; k < len; k++) {
			for (int bit = 0; bit < 8; bit += 7) {
				int rc;

				buf[k] ^= (uint8_t)(1U << bit);
				rc = ns_apply(b, buf, len);
				if (rc != -EBADMSG && rc != -EPROTO)
					T_FAIL("record %zu, byte %zu bit %d flipped: %d", i, k, bit,
					       rc);
				buf[k] ^= (uint8_t)(1U << bit);
			}
		}
		/* Signed by another key (over our share's public key), or for another share. */
		ns_record_sign(buf, len - NS_REC_SIG_LEN, share_pk, other_sk);
		T_ASSERT_EQ(ns_apply(b, buf, len), -EBADMSG);
		ns_record_sign(buf, len - NS_REC_SIG_LEN, other_pk, other_sk);
		T_ASSERT_EQ(ns_apply(b, buf, len), -EBADMSG);
		memset(buf + len - NS_REC_SIG_LEN, 0, NS_REC_SIG_LEN);
		T_ASSERT_EQ(ns_apply(b, buf, len), -EBADMSG);
		memcpy(buf, rs.rec[i], len);
		/* Truncated anywhere. */
		for (size_t k = 0; k < len; k++)
			T_ASSERT_EQ(ns_apply(b, buf, k), -EPROTO);
		/* Bytes appended. */
		buf[len] = 0;
		{
			int rc = ns_apply(b, buf, len + 1);

			T_ASSERT(rc == -EPROTO || rc == -EBADMSG);
		}
		/* Over the maximum. */
		memset(buf + len, 0, NS_REC_MAX + 1 - len);
		T_ASSERT_EQ(ns_apply(b, buf, NS_REC_MAX + 1), -EMSGSIZE);
		T_ASSERT_EQ(ns_apply(b, buf, SIZE_MAX), -EMSGSIZE);
	}
	/* Nothing bad got in. */
	T_ASSERT_EQ(stats_of(b).records, 0);
	expect_empty(b);
	/* The genuine records are taken once, in any order. */
	for (size_t i = rs.n; i-- > 0;)
		T_ASSERT_EQ(ns_apply(b, rs.rec[i], rs.len[i]), 1);
	for (size_t i = 0; i < rs.n; i++)
		T_ASSERT_EQ(ns_apply(b, rs.rec[i], rs.len[i]), 0);
	tree = dump_tree(a);
	expect_tree(b, tree);
	free(tree);
	rs_free(&rs);
	free(buf);
	ns_close(a);
	ns_close(b);
	t_tmpdir_remove(dir);
	t_tmpdir_remove(dir2);
	free(dir);
	free(dir2);
}

/* ---- the record codec ---- */

static uint8_t w_lo[NS_NODE_ID_LEN], w_mid[NS_NODE_ID_LEN], w_hi[NS_NODE_ID_LEN];
static uint8_t xa_blob[64];
static size_t xa_len;

/* A valid file record written by w_mid with a three-writer version vector and two xattrs. */
static void rec_valid(struct ns_record *r)
{
	struct wbuf w;

	memset(w_lo, 0x11, sizeof(w_lo));
	memset(w_mid, 0x22, sizeof(w_mid));
	memset(w_hi, 0x33, sizeof(w_hi));
	wbuf_init(&w, xa_blob, sizeof(xa_blob));
	wbuf_u8(&w, 6);
	wbuf_bytes(&w, "user.a", 6);
	wbuf_u32(&w, 1);
	wbuf_bytes(&w, "1", 1);
	wbuf_u8(&w, 6);
	wbuf_bytes(&w, "user.b", 6);
	wbuf_u32(&w, 2);
	wbuf_bytes(&w, "22", 2);
	T_ASSERT(wbuf_done(&w) > 0);
	xa_len = (size_t)wbuf_done(&w);
	memset(r, 0, sizeof(*r));
	r->type = NS_FILE;
	r->content_kind = NS_CONTENT_MANIFEST;
	memset(r->id, 0xa1, NS_ID_LEN);
	memset(r->parent, 0xb2, NS_ID_LEN);
	r->hlc = 1000ULL << 16;
	memcpy(r->writer, w_mid, NS_NODE_ID_LEN);
	r->mode = 0644;
	r->uid = 1000;
	r->gid = 100;
	r->size = 123456;
	r->mtime = -42;
	memset(r->content, 0xcc, CS_ID_LEN);
	r->name = "hello.txt";
	r->name_len = 9;
	r->vv_n = 3;
	memcpy(r->vv[0].writer, w_lo, NS_NODE_ID_LEN);
	r->vv[0].hlc = 5;
	memcpy(r->vv[1].writer, w_mid, NS_NODE_ID_LEN);
	r->vv[1].hlc = r->hlc;
	memcpy(r->vv[2].writer, w_hi, NS_NODE_ID_LEN);
	r->vv[2].hlc = r->hlc - 1;
	r->xattr_n = 2;
	r->xattrs = xa_blob;
	r->xattrs_len = (uint32_t)xa_len;
}

/* Encode and sign @r into @buf; returns the record length. */
static size_t rec_build(const struct ns_record *r, uint8_t *buf)
{
	long body = ns_record_encode(r, buf, NS_REC_MAX - NS_REC_SIG_LEN);

	T_ASSERT(body > 0);
	ns_record_sign(buf, (size_t)body, share_pk, share_sk);
	return (size_t)body + NS_REC_SIG_LEN;
}

static void rec_same(const struct ns_record *a, const struct ns_record *b)
{
	T_ASSERT_EQ(a->type, b->type);
	T_ASSERT_EQ(a->content_kind, b->content_kind);
	T_ASSERT_EQ(a->deleted, b->deleted);
	T_ASSERT_MEM_EQ(a->id, b->id, NS_ID_LEN);
	T_ASSERT_MEM_EQ(a->parent, b->parent, NS_ID_LEN);
	T_ASSERT_EQ(a->hlc, b->hlc);
	T_ASSERT_MEM_EQ(a->writer, b->writer, NS_NODE_ID_LEN);
	T_ASSERT_EQ(a->mode, b->mode);
	T_ASSERT_EQ(a->uid, b->uid);
	T_ASSERT_EQ(a->gid, b->gid);
	T_ASSERT_EQ(a->size, b->size);
	T_ASSERT_EQ(a->mtime, b->mtime);
	if (a->content_kind)
		T_ASSERT_MEM_EQ(a->content, b->content, CS_ID_LEN);
	T_ASSERT_EQ(a->name_len, b->name_len);
	T_ASSERT_MEM_EQ(a->name, b->name, a->name_len);
	T_ASSERT_EQ(a->target_len, b->target_len);
	if (a->target_len)
		T_ASSERT_MEM_EQ(a->target, b->target, a->target_len);
	T_ASSERT_EQ(a->vv_n, b->vv_n);
	for (unsigned i = 0; i < a->vv_n; i++) {
		T_ASSERT_MEM_EQ(a->vv[i].writer, b->vv[i].writer, NS_NODE_ID_LEN);
		T_ASSERT_EQ(a->vv[i].hlc, b->vv[i].hlc);
	}
	T_ASSERT_EQ(a->xattr_n, b->xattr_n);
	T_ASSERT_EQ(a->xattrs_len, b->xattrs_len);
	if (a->xattrs_len)
		T_ASSERT_MEM_EQ(a->xattrs, b->xattrs, a->xattrs_len);
}

/* @r encodes, decodes to the same fields, re-encodes to the same bytes and verifies. */
static void round_trip(const struct ns_record *r)
{
	uint8_t *buf = malloc(NS_REC_MAX), *again = malloc(NS_REC_MAX);
	struct ns_record d;
	size_t len;
	long body;

	T_ASSERT(buf && again);
	len = rec_build(r, buf);
	T_ASSERT(len <= NS_REC_MAX);
	T_ASSERT_OK(ns_record_decode(buf, len, &d));
	rec_same(r, &d);
	T_ASSERT(d.sig == buf + len - NS_REC_SIG_LEN);
	T_ASSERT(ns_record_verify(buf, len, share_pk));
	body = ns_record_encode(&d, again, NS_REC_MAX);
	T_ASSERT_EQ(body, (long)(len - NS_REC_SIG_LEN));
	T_ASSERT_MEM_EQ(again, buf, (size_t)body);
	/* The encoder refuses a buffer one byte short. */
	T_ASSERT_EQ(ns_record_encode(&d, again, (size_t)body - 1), -EMSGSIZE);
	free(buf);
	free(again);
}

static void record_round_trip(void)
{
	struct ns_record r;
	char target[NS_SYMLINK_MAX], name[NS_NAME_MAX];
	uint8_t *xa = malloc(NS_XATTR_TOTAL_MAX + NS_XATTR_COUNT_MAX * 5);
	size_t xl = 0;

	keys_once();
	T_ASSERT(xa);
	rec_valid(&r);
	round_trip(&r);
	/* deleted, chunk content */
	r.deleted = true;
	r.content_kind = NS_CONTENT_CHUNK;
	round_trip(&r);
	/* no content, one vv entry, no xattrs */
	rec_valid(&r);
	r.content_kind = NS_CONTENT_NONE;
	r.size = 0;
	memset(r.content, 0, CS_ID_LEN);
	r.vv_n = 1;
	memcpy(r.vv[0].writer, r.writer, NS_NODE_ID_LEN);
	r.vv[0].hlc = r.hlc;
	r.xattr_n = 0;
	r.xattrs_len = 0;
	round_trip(&r);
	/* a directory */
	r.type = NS_DIR;
	r.mode = 07777;
	round_trip(&r);
	/* the root: zero id and parent, no name */
	memset(r.id, 0, NS_ID_LEN);
	memset(r.parent, 0, NS_ID_LEN);
	r.name = "";
	r.name_len = 0;
	round_trip(&r);
	/* The largest record: longest name and target, a full vv, the most xattr bytes. */
	rec_valid(&r);
	memset(target, 't', sizeof(target));
	memset(name, 'n', sizeof(name));
	r.type = NS_SYMLINK;
	r.content_kind = NS_CONTENT_NONE;
	r.target = target;
	r.target_len = NS_SYMLINK_MAX;
	r.size = NS_SYMLINK_MAX;
	r.name = name;
	r.name_len = NS_NAME_MAX;
	r.vv_n = NS_VV_MAX;
	for (unsigned i = 0; i < NS_VV_MAX; i++) {
		memset(r.vv[i].writer, 0x10 + (int)i, NS_NODE_ID_LEN);
		r.vv[i].hlc = 1 + i;
	}
	memcpy(r.writer, r.vv[NS_VV_MAX - 1].writer, NS_NODE_ID_LEN);
	r.hlc = r.vv[NS_VV_MAX - 1].hlc;
	{
		/* 256 attributes: 255 of 4-byte names, and one carrying the rest of 64 KiB. */
		size_t used = 0;
		struct wbuf w;

		wbuf_init(&w, xa, NS_XATTR_TOTAL_MAX + NS_XATTR_COUNT_MAX * 5);
		for (int i = 0; i < NS_XATTR_COUNT_MAX - 1; i++) {
			char nm[5];

			snprintf(nm, sizeof(nm), "a%03d", i);
			wbuf_u8(&w, 4);
			wbuf_bytes(&w, nm, 4);
			wbuf_u32(&w, 0);
			used += 4;
		}
		wbuf_u8(&w, 4);
		wbuf_bytes(&w, "zzzz", 4);
		wbuf_u32(&w, (uint32_t)(NS_XATTR_TOTAL_MAX - used - 4));
		memset(xa + w.len, 'v', NS_XATTR_TOTAL_MAX - used - 4);
		w.len += NS_XATTR_TOTAL_MAX - used - 4;
		T_ASSERT(wbuf_done(&w) > 0);
		xl = w.len;
		r.xattr_n = NS_XATTR_COUNT_MAX;
		r.xattrs = xa;
		r.xattrs_len = (uint32_t)xl;
		T_ASSERT_OK(ns_xattrs_check(xa, xl, NS_XATTR_COUNT_MAX));
	}
	round_trip(&r);
	{
		uint8_t *buf = malloc(NS_REC_MAX);

		T_ASSERT(buf);
		T_ASSERT_EQ(rec_build(&r, buf), NS_REC_MAX - 32); /* no content id in a symlink */
		free(buf);
	}
	free(xa);
}

/* @r, encoded and signed, fails to decode with @want. */
static void expect_bad(const struct ns_record *r, int want, const char *what)
{
	uint8_t *buf = malloc(NS_REC_MAX + 64);
	struct ns_record d;
	long body;
	int rc;

	T_ASSERT(buf);
	body = ns_record_encode(r, buf, NS_REC_MAX);
	T_ASSERT(body > 0);
	ns_record_sign(buf, (size_t)body, share_pk, share_sk);
	rc = ns_record_decode(buf, (size_t)body + NS_REC_SIG_LEN, &d);
	if (rc != want)
		T_FAIL("%s: decode gives %d, expected %d", what, rc, want);
	free(buf);
}

/* A valid record with byte @off of its encoding set to @v must not decode. */
static void expect_bad_byte(size_t off, uint8_t v, const char *what)
{
	uint8_t *buf = malloc(NS_REC_MAX);
	struct ns_record r, d;
	size_t len;
	int rc;

	T_ASSERT(buf);
	rec_valid(&r);
	len = rec_build(&r, buf);
	buf[off] = v;
	ns_record_sign(buf, len - NS_REC_SIG_LEN, share_pk, share_sk);
	if ((rc = ns_record_decode(buf, len, &d)) != -EPROTO)
		T_FAIL("%s: decode gives %d", what, rc);
	free(buf);
}

static void record_decode_rejects_malformed(void)
{
	struct ns_record r;
	uint8_t blob[64];
	struct wbuf w;

	keys_once();
	rec_valid(&r);
	expect_bad_byte(0, 0, "version 0");
	expect_bad_byte(0, 2, "version 2");
	expect_bad_byte(1, 0, "type 0");
	expect_bad_byte(1, 4, "type 4");
	expect_bad_byte(2, 2, "unknown flag");
	expect_bad_byte(2, 0x81, "unknown flag with deleted");
	expect_bad_byte(3, 3, "content kind 3");

	rec_valid(&r);
	r.mode = 010644;
	expect_bad(&r, -EPROTO, "mode with file type bits");
	rec_valid(&r);
	r.hlc = 0;
	r.vv[1].hlc = 0;
	expect_bad(&r, -EPROTO, "hlc 0");
	rec_valid(&r);
	r.type = NS_DIR;
	r.content_kind = NS_CONTENT_NONE;
	expect_bad(&r, -EPROTO, "directory with a size");
	r.size = 0;
	r.content_kind = NS_CONTENT_CHUNK;
	expect_bad(&r, -EPROTO, "directory with content");
	rec_valid(&r);
	memcpy(r.parent, r.id, NS_ID_LEN);
	expect_bad(&r, -EPROTO, "own parent");

	/* names */
	{
		static const struct {
			const char *name;
			uint8_t len;
		} names[] = { { "a/b", 3 }, { "/", 1 }, { ".", 1 },
			      { "..", 2 },  { "", 0 },	{ "a\0b", 3 } };

		for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
			rec_valid(&r);
			r.name = names[i].name;
			r.name_len = names[i].len;
			expect_bad(&r, -EPROTO, "bad name");
		}
	}
	/* the root */
	rec_valid(&r);
	r.type = NS_DIR;
	r.content_kind = NS_CONTENT_NONE;
	r.size = 0;
	memset(r.id, 0, NS_ID_LEN);
	memset(r.parent, 0, NS_ID_LEN);
	r.name = "";
	r.name_len = 0;
	expect_bad(&r, 0, "the root");
	r.name = "x";
	r.name_len = 1;
	expect_bad(&r, -EPROTO, "root with a name");
	r.name_len = 0;
	r.deleted = true;
	expect_bad(&r, -EPROTO, "deleted root");
	r.deleted = false;
	r.parent[0] = 1;
	expect_bad(&r, -EPROTO, "root with a parent");
	r.parent[0] = 0;
	r.type = NS_FILE;
	expect_bad(&r, -EPROTO, "root as a file");

	/* symlink targets */
	rec_valid(&r);
	r.type = NS_SYMLINK;
	r.content_kind = NS_CONTENT_NONE;
	r.target = "dest";
	r.target_len = 4;
	r.size = 4;
	expect_bad(&r, 0, "symlink");
	r.size = 5;
	expect_bad(&r, -EPROTO, "symlink size differs from its target");
	r.size = 0;
	r.target_len = 0;
	expect_bad(&r, -EPROTO, "symlink without target");
	r.target = "de\0t";
	r.target_len = 4;
	r.size = 4;
	expect_bad(&r, -EPROTO, "NUL in target");
	r.target = "dest";
	r.content_kind = NS_CONTENT_CHUNK;
	expect_bad(&r, -EPROTO, "symlink with content");
	rec_valid(&r);
	r.target = "dest";
	r.target_len = 4;
	expect_bad(&r, -EPROTO, "file with a target");

	/* version vectors */
	rec_valid(&r);
	r.vv_n = 0;
	expect_bad(&r, -EPROTO, "empty vv");
	rec_valid(&r);
	{
		struct ns_vv_ent t = r.vv[0];

		r.vv[0] = r.vv[2];
		r.vv[2] = t;
		expect_bad(&r, -EPROTO, "vv not sorted");
	}
	rec_valid(&r);
	r.vv[2] = r.vv[1];
	expect_bad(&r, -EPROTO, "vv writer twice");
	rec_valid(&r);
	r.vv[1] = r.vv[2];
	r.vv_n = 2;
	expect_bad(&r, -EPROTO, "vv without its own writer");
	rec_valid(&r);
	r.vv[1].hlc = r.hlc - 1;
	expect_bad(&r, -EPROTO, "vv with another hlc for its own writer");
	rec_valid(&r);
	r.vv[2].hlc = r.hlc + 1;
	expect_bad(&r, -EPROTO, "vv newer than the record");
	rec_valid(&r);
	r.vv[0].hlc = 0;
	expect_bad(&r, -EPROTO, "vv entry 0");
	{
		/* more than NS_VV_MAX entries: patch the count of a full vector */
		uint8_t *buf = malloc(NS_REC_MAX);
		struct ns_record d;
		size_t len, at;

		T_ASSERT(buf);
		rec_valid(&r);
		r.xattr_n = 0;
		r.xattrs_len = 0;
		r.vv_n = NS_VV_MAX;
		for (unsigned i = 0; i < NS_VV_MAX; i++) {
			memset(r.vv[i].writer, 0x10 + (int)i, NS_NODE_ID_LEN);
			r.vv[i].hlc = 1 + i;
		}
		memcpy(r.writer, r.vv[0].writer, NS_NODE_ID_LEN);
		r.hlc = 1;
		for (unsigned i = 1; i < NS_VV_MAX; i++)
			r.vv[i].hlc = 1;
		len = rec_build(&r, buf);
		T_ASSERT_OK(ns_record_decode(buf, len, &d));
		at = len - NS_REC_SIG_LEN - 2 - NS_VV_MAX * 40 - 1;
		T_ASSERT_EQ(buf[at], NS_VV_MAX);
		buf[at] = NS_VV_MAX + 1;
		ns_record_sign(buf, len - NS_REC_SIG_LEN, share_pk, share_sk);
		T_ASSERT_EQ(ns_record_decode(buf, len, &d), -EPROTO);
		free(buf);
	}

	/* xattrs */
#define XA(name, val)                                      \
	do {                                               \
		wbuf_u8(&w, (uint8_t)(sizeof(name) - 1));  \
		wbuf_bytes(&w, name, sizeof(name) - 1);    \
		wbuf_u32(&w, (uint32_t)(sizeof(val) - 1)); \
		wbuf_bytes(&w, val, sizeof(val) - 1);      \
	} while (0)
	rec_valid(&r);
	wbuf_init(&w, blob, sizeof(blob));
	XA("user.b", "1");
	XA("user.a", "2");
	r.xattrs = blob;
	r.xattrs_len = (uint32_t)w.len;
	expect_bad(&r, -EPROTO, "xattr names not sorted");
	T_ASSERT_EQ(ns_xattrs_check(blob, w.len, 2), -EPROTO);
	wbuf_init(&w, blob, sizeof(blob));
	XA("user.a", "1");
	XA("user.a", "2");
	r.xattrs_len = (uint32_t)w.len;
	expect_bad(&r, -EPROTO, "xattr name twice");
	wbuf_init(&w, blob, sizeof(blob));
	XA("user.a", "1");
	XA("user.ab", "2");
	r.xattrs_len = (uint32_t)w.len;
	expect_bad(&r, 0, "xattr prefix sorts first");
	T_ASSERT_OK(ns_xattrs_check(blob, w.len, 2));
	wbuf_init(&w, blob, sizeof(blob));
	XA("user.ab", "1");
	XA("user.a", "2");
	r.xattrs_len = (uint32_t)w.len;
	expect_bad(&r, -EPROTO, "longer name before its prefix");
	wbuf_init(&w, blob, sizeof(blob));
	XA("", "1");
	XA("user.a", "2");
	r.xattrs_len = (uint32_t)w.len;
	expect_bad(&r, -EPROTO, "empty xattr name");
	wbuf_init(&w, blob, sizeof(blob));
	XA("a\0b", "1");
	XA("user.a", "2");
	r.xattrs_len = (uint32_t)w.len;
	expect_bad(&r, -EPROTO, "NUL in xattr name");
	wbuf_init(&w, blob, sizeof(blob));
	XA("user.a", "1");
	XA("user.b", "2");
	r.xattrs_len = (uint32_t)w.len;
	r.xattr_n = 3;
	expect_bad(&r, -EPROTO, "xattr count larger than the entries");
	r.xattr_n = 1;
	expect_bad(&r, -EPROTO, "xattr count smaller than the entries");
	r.xattr_n = NS_XATTR_COUNT_MAX + 1;
	expect_bad(&r, -EPROTO, "too many xattrs");
	wbuf_init(&w, blob, sizeof(blob));
	wbuf_u8(&w, 1);
	wbuf_bytes(&w, "a", 1);
	wbuf_u32(&w, NS_XATTR_VALUE_MAX + 1);
	r.xattrs_len = (uint32_t)w.len;
	r.xattr_n = 1;
	expect_bad(&r, -EPROTO, "xattr value over the maximum");
	T_ASSERT_EQ(ns_xattrs_check(blob, w.len, 1), -EPROTO);
	T_ASSERT_EQ(ns_xattrs_check(blob, 0, NS_XATTR_COUNT_MAX + 1), -EPROTO);
	T_ASSERT_OK(ns_xattrs_check(blob, 0, 0));
#undef XA

	/* trailing bytes inside the signed part */
	{
		uint8_t *buf = malloc(NS_REC_MAX);
		struct ns_record d;
		long body;

		T_ASSERT(buf);
		rec_valid(&r);
		body = ns_record_encode(&r, buf, NS_REC_MAX);
		T_ASSERT(body > 0);
		buf[body] = 0;
		ns_record_sign(buf, (size_t)body + 1, share_pk, share_sk);
		T_ASSERT_EQ(ns_record_decode(buf, (size_t)body + 1 + NS_REC_SIG_LEN, &d), -EPROTO);
		/* and a record over the maximum */
		T_ASSERT_EQ(ns_record_decode(buf, NS_REC_MAX + 1, &d), -EMSGSIZE);
		free(buf);
	}
	/* ns_name_ok itself */
	T_ASSERT(ns_name_ok("a", 1));
	T_ASSERT(ns_name_ok("...", 3));
	T_ASSERT(!ns_name_ok("", 0));
	T_ASSERT(!ns_name_ok(".", 1));
	T_ASSERT(!ns_name_ok("..", 2));
	T_ASSERT(!ns_name_ok("a/", 2));
	T_ASSERT(!ns_name_ok("a\0", 2));
	{
		char n[NS_NAME_MAX + 1];

		memset(n, 'n', sizeof(n));
		T_ASSERT(ns_name_ok(n, NS_NAME_MAX));
		T_ASSERT(!ns_name_ok(n, NS_NAME_MAX + 1));
	}
}

static void record_decode_rejects_every_truncation(void)
{
	uint8_t *buf = malloc(NS_REC_MAX);
	struct ns_record r, d;
	size_t len;

	keys_once();
	T_ASSERT(buf);
	rec_valid(&r);
	len = rec_build(&r, buf);
	for (size_t k = 0; k < len; k++)
		if (ns_record_decode(buf, k, &d) != -EPROTO)
			T_FAIL("a record cut to %zu of %zu bytes decodes", k, len);
	T_ASSERT_OK(ns_record_decode(buf, len, &d));
	/* and a symlink record */
	r.type = NS_SYMLINK;
	r.content_kind = NS_CONTENT_NONE;
	r.target = "somewhere/else";
	r.target_len = 14;
	r.size = 14;
	len = rec_build(&r, buf);
	for (size_t k = 0; k < len; k++)
		T_ASSERT_EQ(ns_record_decode(buf, k, &d), -EPROTO);
	T_ASSERT(!ns_record_verify(buf, len - 1, share_pk));
	T_ASSERT(ns_record_verify(buf, len, share_pk));
	free(buf);
}

/* ---- memory ---- */

static void memory_per_entry(void)
{
	enum { DIRS = 10, PER_DIR = 10000 };
	char *dir = t_tmpdir("ns-mem"), name[32];
	struct ns *ns = open_ns(dir, 1, true);
	struct ns_stats st;
	uint64_t t0 = tm_mono_ms();
	double per, per_loaded;

	for (int d = 0; d < DIRS; d++) {
		uint64_t dino;

		snprintf(name, sizeof(name), "dir-%02d", d);
		dino = mk(ns, NS_ROOT_INO, name, NS_DIR);
		for (int i = 0; i < PER_DIR; i++) {
			struct ns_content c = content_of((uint32_t)(d * PER_DIR + i));
			uint64_t f;

			snprintf(name, sizeof(name), "file-%05d.dat", i);
			T_ASSERT_OK(ns_create(ns, dino, name, NS_FILE, 0644, 1000, 1000, NULL, &f));
			T_ASSERT_OK(ns_set_content(ns, f, 1 + (uint64_t)i * 4096, &c, i));
		}
	}
	T_ASSERT_OK(ns_commit(ns));
	st = stats_of(ns);
	T_ASSERT_EQ(st.files, DIRS * PER_DIR);
	T_ASSERT_EQ(st.dirs, DIRS);
	per = (double)st.mem_bytes / (double)(st.files + st.dirs);
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	st = stats_of(ns);
	T_ASSERT_EQ(st.files, DIRS * PER_DIR);
	per_loaded = (double)st.mem_bytes / (double)(st.files + st.dirs);
	printf("# %d entries: %.1f bytes per entry after creating them, %.1f after loading "
	       "(%llu bytes; %llu ms)\n",
	       DIRS * (PER_DIR + 1), per, per_loaded, (unsigned long long)st.mem_bytes,
	       (unsigned long long)(tm_mono_ms() - t0));
	T_ASSERT(per <= 320);
	T_ASSERT(per_loaded <= 320);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

T_MAIN(T_CASE(create_lookup_getattr_of_each_type), T_CASE(dir_nlink_counts_subdirectories),
       T_CASE(readdir_lists_each_entry_once_across_changes),
       T_CASE(setattr_changes_only_the_masked_fields), T_CASE(set_content_records_size_and_content),
       T_CASE(unlink_and_rmdir), T_CASE(rename_moves_and_replaces),
       T_CASE(rename_noreplace_and_exchange), T_CASE(rename_of_a_directory_into_itself_is_einval),
       T_CASE(type_mismatches_are_eisdir_or_enotdir), T_CASE(names_are_validated),
       T_CASE(xattrs_follow_getxattr_semantics), T_CASE(read_only_namespace_gives_erofs),
       T_CASE(inode_numbers_are_stable_and_never_reused), T_CASE(stats_count_entries_and_records),
       T_CASE(commit_and_reopen_give_the_same_tree), T_CASE(uncommitted_changes_are_lost_at_close),
       T_CASE(compaction_keeps_the_tree), T_CASE(torn_log_tail_loads_the_valid_prefix),
       T_CASE(damaged_snapshot_or_foreign_files_refuse_to_open),
       T_CASE(three_step_commit_keeps_records_pending_on_error), T_CASE(apply_rejects_bad_records),
       T_CASE(record_round_trip), T_CASE(record_decode_rejects_malformed),
       T_CASE(record_decode_rejects_every_truncation), T_CASE(memory_per_entry))
