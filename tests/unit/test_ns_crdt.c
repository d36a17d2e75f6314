// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_ns_crdt.c - the namespace as a CRDT: local operations,
 * persistence, and the property that merging one set of signed records in
 * any order (and any number of times) gives the same tree.
 */
#include "fs/ns.h"
#include "fs/ns_record.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Random operations may fail (EEXIST, ENOTEMPTY...): that is part of the test. */
#define MAY_FAIL(x)                  \
	do {                         \
		int may_fail_ = (x); \
		(void)may_fail_;     \
	} while (0)

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

	memset(id, node, sizeof(id));
	T_ASSERT_OK(ns_open(dir, &o, &ns));
	return ns;
}

/* ---- a canonical text dump of the visible tree ---- */

struct dump {
	char *s;
	size_t len, cap;
};

static void dump_add(struct dump *d, const char *line)
{
	size_t n = strlen(line);

	if (d->len + n + 1 > d->cap) {
		d->cap = (d->len + n + 1) * 2;
		d->s = realloc(d->s, d->cap);
		T_ASSERT(d->s);
	}
	memcpy(d->s + d->len, line, n + 1);
	d->len += n;
}

struct kid {
	char name[NS_NAME_MAX + 1];
	uint64_t ino;
};

struct kids {
	struct kid *v;
	size_t n, cap;
};

static int collect(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		   uint64_t next)
{
	struct kids *k = arg;

	(void)a;
	(void)next;
	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 16;
		k->v = realloc(k->v, k->cap * sizeof(*k->v));
		T_ASSERT(k->v);
	}
	snprintf(k->v[k->n].name, sizeof(k->v[k->n].name), "%s", name);
	k->v[k->n++].ino = ino;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct kid *)a)->name, ((const struct kid *)b)->name);
}

static void dump_dir(struct ns *ns, uint64_t dir, const char *path, struct dump *d)
{
	struct kids k = { 0 };

	T_ASSERT_OK(ns_readdir(ns, dir, 0, collect, &k));
	if (k.n)
		qsort(k.v, k.n, sizeof(*k.v), by_name);
	for (size_t i = 0; i < k.n; i++) {
		char p[4096], line[8192], hex[65], xa[512];
		struct ns_content c;
		struct ns_attr a;
		const char *target = "";
		long xl;

		snprintf(p, sizeof(p), "%s/%s", path, k.v[i].name);
		T_ASSERT_OK(ns_getattr(ns, k.v[i].ino, &a));
		T_ASSERT_OK(ns_get_content(ns, k.v[i].ino, &c));
		sodium_bin2hex(hex, sizeof(hex), c.id, 32);
		if (a.type == NS_SYMLINK)
			T_ASSERT_OK(ns_readlink(ns, k.v[i].ino, &target));
		xl = ns_xattr_list(ns, k.v[i].ino, xa, sizeof(xa) - 1);
		T_ASSERT(xl >= 0);
		for (long j = 0; j < xl; j++)
			if (!xa[j])
				xa[j] = ',';
		xa[xl] = '\0';
		snprintf(line, sizeof(line),
			 "%s t%u m%o u%u g%u s%llu mt%lld c%u:%.16s l%s x%s del%d\n", p, a.type,
			 a.mode, a.uid, a.gid, (unsigned long long)a.size, (long long)a.mtime,
			 c.kind, hex, target, xa, a.deleted);
		dump_add(d, line);
		if (a.type == NS_DIR)
			dump_dir(ns, k.v[i].ino, p, d);
	}
	free(k.v);
}

static char *dump_tree(struct ns *ns)
{
	struct dump d = { 0 };

	dump_add(&d, "/\n");
	dump_dir(ns, NS_ROOT_INO, "", &d);
	return d.s;
}

/* ---- record collection ---- */

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
		rs->rec = realloc(rs->rec, rs->cap * sizeof(*rs->rec));
		rs->len = realloc(rs->len, rs->cap * sizeof(*rs->len));
		T_ASSERT(rs->rec && rs->len);
	}
	rs->rec[rs->n] = malloc(len);
	T_ASSERT(rs->rec[rs->n]);
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
}

/* Commit @ns and add its heads to @all. */
static void commit_collect(struct ns *ns, struct recset *all)
{
	T_ASSERT_OK(ns_commit(ns));
	T_ASSERT_OK(ns_foreach_record(ns, rs_add, all));
}

static int apply_cb(void *arg, const uint8_t *rec, size_t len)
{
	int rc = ns_apply(arg, rec, len);

	if (rc < 0)
		fprintf(stderr, "ns_apply: %d\n", rc);
	T_ASSERT(rc == 0 || rc == 1);
	return 0;
}

/* Everything @from has, @to learns. */
static void sync_to(struct ns *from, struct ns *to, struct recset *all)
{
	commit_collect(from, all);
	T_ASSERT_OK(ns_foreach_record(from, apply_cb, to));
	commit_collect(to, all);
}

static struct ns_content content_of(uint32_t v)
{
	struct ns_content c = { .kind = NS_CONTENT_MANIFEST };

	memset(c.id, 0, sizeof(c.id));
	memcpy(c.id, &v, sizeof(v));
	c.id[31] = 0x5a;
	return c;
}

static uint64_t lookup(struct ns *ns, uint64_t dir, const char *name)
{
	uint64_t ino = 0;

	T_ASSERT_OK(ns_lookup(ns, dir, name, &ino));
	return ino;
}

/* ---- tests ---- */

static void local_operations_and_errors(void)
{
	char *dir = t_tmpdir("ns");
	struct ns *ns;
	struct ns_attr a;
	struct ns_content c = content_of(7);
	uint64_t d, f, l, g;
	const char *target;
	char buf[64];

	keys_once();
	ns = open_ns(dir, 1, true);
	T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, "d", NS_DIR, 0755, 1, 2, NULL, &d));
	T_ASSERT_OK(ns_create(ns, d, "f", NS_FILE, 0644, 1, 2, NULL, &f));
	T_ASSERT_OK(ns_create(ns, d, "l", NS_SYMLINK, 0777, 0, 0, "f", &l));
	T_ASSERT_EQ(ns_create(ns, d, "f", NS_FILE, 0644, 0, 0, NULL, &g), -EEXIST);
	T_ASSERT_EQ(ns_create(ns, d, "a/b", NS_FILE, 0644, 0, 0, NULL, &g), -EINVAL);
	T_ASSERT_EQ(ns_create(ns, d, "..", NS_FILE, 0644, 0, 0, NULL, &g), -EINVAL);
	T_ASSERT_EQ(ns_create(ns, f, "x", NS_FILE, 0644, 0, 0, NULL, &g), -ENOTDIR);
	memset(buf, 'n', sizeof(buf));
	{
		char longname[300];

		memset(longname, 'x', 299);
		longname[299] = '\0';
		T_ASSERT_EQ(ns_create(ns, d, longname, NS_FILE, 0644, 0, 0, NULL, &g),
			    -ENAMETOOLONG);
	}
	T_ASSERT_OK(ns_readlink(ns, l, &target));
	T_ASSERT(!strcmp(target, "f"));
	T_ASSERT_OK(ns_set_content(ns, f, 1000, &c, 42));
	T_ASSERT_OK(ns_getattr(ns, f, &a));
	T_ASSERT_EQ(a.size, 1000);
	T_ASSERT_EQ(a.mtime, 42);
	T_ASSERT_EQ(ns_set_content(ns, d, 1, &c, 1), -EISDIR);
	T_ASSERT_OK(ns_create(ns, d, "sub", NS_DIR, 0700, 0, 0, NULL, &g));
	T_ASSERT_OK(ns_getattr(ns, d, &a));
	T_ASSERT_EQ(a.nlink, 3);
	T_ASSERT_EQ(ns_rmdir(ns, NS_ROOT_INO, "d"), -ENOTEMPTY);
	T_ASSERT_EQ(ns_unlink(ns, d, "sub"), -EISDIR);
	T_ASSERT_EQ(ns_rmdir(ns, d, "f"), -ENOTDIR);
	T_ASSERT_EQ(ns_rename(ns, NS_ROOT_INO, "d", g, "inside", 0), -EINVAL);
	T_ASSERT_EQ(ns_rename(ns, d, "f", d, "l", NS_RENAME_NOREPLACE), -EEXIST);
	T_ASSERT_OK(ns_rename(ns, d, "f", d, "l", NS_RENAME_EXCHANGE));
	T_ASSERT_EQ(lookup(ns, d, "l"), f);
	T_ASSERT_EQ(lookup(ns, d, "f"), l);
	T_ASSERT_OK(ns_rename(ns, d, "f", NS_ROOT_INO, "moved", 0));
	T_ASSERT_EQ(lookup(ns, NS_ROOT_INO, "moved"), l);
	T_ASSERT_OK(ns_rename(ns, NS_ROOT_INO, "moved", d, "l", 0)); /* replaces the file */
	T_ASSERT_OK(ns_getattr(ns, f, &a));
	T_ASSERT(a.deleted);
	T_ASSERT_EQ(ns_xattr_set(ns, f, "user.a", "1", 1, 0), -ENOENT); /* f was replaced */
	T_ASSERT_EQ(ns_xattr_set(ns, l, "user.a", "1", 1, NS_XATTR_REPLACE), -ENODATA);
	T_ASSERT_OK(ns_xattr_set(ns, l, "user.b", "22", 2, 0));
	T_ASSERT_OK(ns_xattr_set(ns, l, "user.a", "1", 1, 0));
	T_ASSERT_EQ(ns_xattr_set(ns, l, "user.a", "1", 1, NS_XATTR_CREATE), -EEXIST);
	T_ASSERT_EQ(ns_xattr_get(ns, l, "user.b", NULL, 0), 2);
	T_ASSERT_EQ(ns_xattr_get(ns, l, "user.b", buf, 1), -ERANGE);
	T_ASSERT_EQ(ns_xattr_list(ns, l, buf, sizeof(buf)), 14);
	T_ASSERT(!strcmp(buf, "user.a") && !strcmp(buf + 7, "user.b"));
	T_ASSERT_OK(ns_xattr_remove(ns, l, "user.a"));
	T_ASSERT_EQ(ns_xattr_get(ns, l, "user.a", buf, sizeof(buf)), -ENODATA);
	T_ASSERT_OK(ns_rmdir(ns, d, "sub"));
	T_ASSERT_OK(ns_getattr(ns, d, &a));
	T_ASSERT_EQ(a.nlink, 2);
	ns_close(ns);
	/* Nothing was committed: a reopened namespace is empty. */
	ns = open_ns(dir, 1, true);
	T_ASSERT_EQ(ns_lookup(ns, NS_ROOT_INO, "d", &g), -ENOENT);
	ns_close(ns);
	/* Read-only members cannot change anything. */
	ns = open_ns(dir, 1, false);
	T_ASSERT_EQ(ns_create(ns, NS_ROOT_INO, "x", NS_FILE, 0644, 0, 0, NULL, &g), -EROFS);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static int count_cb(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		    uint64_t next)
{
	size_t *n = arg;

	(void)name;
	(void)ino;
	(void)a;
	(void)next;
	(*n)++;
	return 0;
}

struct resume {
	uint64_t cookie;
	size_t seen;
	int limit;
	uint64_t inos[4096];
};

static int resume_cb(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		     uint64_t next)
{
	struct resume *r = arg;

	(void)name;
	(void)a;
	r->inos[r->seen++] = ino;
	r->cookie = next;
	return --r->limit <= 0;
}

static void readdir_resumes_across_changes(void)
{
	char *dir = t_tmpdir("ns"), name[32];
	struct ns *ns;
	struct resume r = { 0 };
	uint64_t ino;
	size_t n = 0;

	keys_once();
	ns = open_ns(dir, 1, true);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, name, NS_FILE, 0644, 0, 0, NULL, &ino));
	}
	/* Resume listing in pieces while removing entries already listed and adding new ones. */
	for (int round = 0; round < 100; round++) {
		r.limit = 10;
		T_ASSERT_OK(ns_readdir(ns, NS_ROOT_INO, r.cookie, resume_cb, &r));
		snprintf(name, sizeof(name), "k%d", round);
		T_ASSERT_OK(ns_unlink(ns, NS_ROOT_INO, name));
		snprintf(name, sizeof(name), "new%d", round);
		T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, name, NS_FILE, 0644, 0, 0, NULL, &ino));
	}
	/* Every original entry was listed exactly once (the removed ones had been listed). */
	T_ASSERT(r.seen >= 1000);
	for (size_t i = 1; i < r.seen; i++)
		T_ASSERT(r.inos[i] > r.inos[i - 1]);
	T_ASSERT_OK(ns_readdir(ns, NS_ROOT_INO, 0, count_cb, &n));
	T_ASSERT_EQ(n, 1000);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
}

static void commit_reopen_compact_and_torn_tail(void)
{
	char *dir = t_tmpdir("ns"), path[600], *before, *after;
	struct ns *ns;
	struct ns_content c = content_of(9);
	uint64_t d, f;
	FILE *fp;

	keys_once();
	ns = open_ns(dir, 1, true);
	T_ASSERT_OK(ns_create(ns, NS_ROOT_INO, "d", NS_DIR, 0755, 0, 0, NULL, &d));
	for (int i = 0; i < 50; i++) {
		char name[16];

		snprintf(name, sizeof(name), "f%d", i);
		T_ASSERT_OK(ns_create(ns, d, name, NS_FILE, 0600, 3, 4, NULL, &f));
		T_ASSERT_OK(ns_set_content(ns, f, 100 + (uint64_t)i, &c, i));
		T_ASSERT_OK(ns_xattr_set(ns, f, "user.k", name, strlen(name), 0));
	}
	T_ASSERT_OK(ns_commit(ns));
	before = dump_tree(ns);
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	after = dump_tree(ns);
	T_ASSERT(!strcmp(before, after));
	free(after);
	T_ASSERT_OK(ns_compact(ns));
	ns_close(ns);
	ns = open_ns(dir, 1, true);
	after = dump_tree(ns);
	T_ASSERT(!strcmp(before, after));
	free(after);
	/* A torn write at the end of the log: the valid prefix loads. */
	T_ASSERT_OK(ns_create(ns, d, "last", NS_FILE, 0600, 0, 0, NULL, &f));
	T_ASSERT_OK(ns_commit(ns));
	ns_close(ns);
	snprintf(path, sizeof(path), "%s/ns.log", dir);
	T_ASSERT((fp = fopen(path, "ab")));
	fwrite("garbage-tail", 1, 12, fp);
	fclose(fp);
	ns = open_ns(dir, 1, true);
	T_ASSERT(lookup(ns, d, "last") > 0);
	ns_close(ns);
	T_ASSERT_OK(truncate(path, 60));
	ns = open_ns(dir, 1, true);
	after = dump_tree(ns);
	T_ASSERT(!strcmp(before, after)); /* "last" was cut off with the torn tail */
	free(after);
	ns_close(ns);
	free(before);
	t_tmpdir_remove(dir);
	free(dir);
}

static void bad_records_rejected(void)
{
	char *dir = t_tmpdir("ns"), *dir2 = t_tmpdir("ns");
	struct recset rs = { 0 };
	struct ns *a, *b;
	uint64_t f;
	uint8_t other_pk[32], other_sk[64], buf[NS_REC_MAX + 1];

	keys_once();
	a = open_ns(dir, 1, true);
	b = open_ns(dir2, 2, true);
	T_ASSERT_OK(ns_create(a, NS_ROOT_INO, "f", NS_FILE, 0644, 0, 0, NULL, &f));
	commit_collect(a, &rs);
	T_ASSERT(rs.n >= 1);
	for (size_t i = 0; i < rs.n; i++) {
		size_t len = rs.len[i];
		struct ns_record rec;

		memcpy(buf, rs.rec[i], len);
		for (size_t k = 0; k < len; k++) { /* a flipped bit anywhere */
			buf[k] ^= 0x10;
			int rc = ns_apply(b, buf, len);
			T_ASSERT(rc == -EBADMSG || rc == -EPROTO);
			buf[k] ^= 0x10;
		}
		for (size_t k = 0; k < len; k++) /* truncated anywhere */
			T_ASSERT(ns_apply(b, buf, k) < 0);
		T_ASSERT_EQ(ns_apply(b, buf, NS_REC_MAX + 1), -EMSGSIZE);
		/* Re-signed with another key. */
		crypto_sign_keypair(other_pk, other_sk);
		T_ASSERT_OK(ns_record_decode(buf, len, &rec));
		ns_record_sign(buf, len - 64, share_pk, other_sk);
		T_ASSERT_EQ(ns_apply(b, buf, len), -EBADMSG);
		/* And the genuine record is accepted, once. */
		T_ASSERT_EQ(ns_apply(b, rs.rec[i], len), 1);
		T_ASSERT_EQ(ns_apply(b, rs.rec[i], len), 0);
	}
	ns_close(a);
	ns_close(b);
	rs_free(&rs);
	t_tmpdir_remove(dir);
	t_tmpdir_remove(dir2);
	free(dir);
	free(dir2);
}

/* ---- the merge property ---- */

#define NODES 3

struct sim {
	char *dirs[NODES];
	struct ns *n[NODES];
	struct recset all;
};

/* A random visible entry of @ns (of @type, or any when 0); 0 if none. */
struct pick {
	uint64_t ino, parent;
	char name[NS_NAME_MAX + 1];
	uint8_t type;
};

static void walk_pick(struct ns *ns, uint64_t dir, uint8_t type, struct pick *p, unsigned *seen)
{
	struct kids k = { 0 };

	T_ASSERT_OK(ns_readdir(ns, dir, 0, collect, &k));
	for (size_t i = 0; i < k.n; i++) {
		struct ns_attr a;

		T_ASSERT_OK(ns_getattr(ns, k.v[i].ino, &a));
		if (!type || a.type == type) {
			/* reservoir sampling */
			if (t_rand() % ++*seen == 0) {
				p->ino = k.v[i].ino;
				p->parent = dir;
				p->type = a.type;
				snprintf(p->name, sizeof(p->name), "%s", k.v[i].name);
			}
		}
		if (a.type == NS_DIR)
			walk_pick(ns, k.v[i].ino, type, p, seen);
	}
	free(k.v);
}

static bool pick(struct ns *ns, uint8_t type, struct pick *p)
{
	unsigned seen = 0;

	memset(p, 0, sizeof(*p));
	walk_pick(ns, NS_ROOT_INO, type, p, &seen);
	return seen > 0;
}

static uint64_t pick_dir(struct ns *ns)
{
	struct pick p;

	if (t_rand() % 3 == 0 || !pick(ns, NS_DIR, &p))
		return NS_ROOT_INO;
	return p.ino;
}

static void random_op(struct ns *ns)
{
	char name[32];
	struct pick p;
	uint64_t ino;
	struct ns_attr a = { 0 };
	struct ns_content c = content_of((uint32_t)t_rand());

	snprintf(name, sizeof(name), "n%u", (unsigned)(t_rand() % 12));
	switch (t_rand() % 9) {
	case 0:
	case 1:
		MAY_FAIL(ns_create(ns, pick_dir(ns), name, NS_FILE, 0644, 0, 0, NULL, &ino));
		break;
	case 2:
		MAY_FAIL(ns_create(ns, pick_dir(ns), name, NS_DIR, 0755, 0, 0, NULL, &ino));
		break;
	case 3:
		if (pick(ns, NS_FILE, &p))
			T_ASSERT_OK(ns_set_content(ns, p.ino, t_rand() % 100000 + 1, &c,
						   (int64_t)t_rand() % 1000));
		break;
	case 4:
		if (pick(ns, 0, &p)) {
			a.mode = (uint32_t)(t_rand() & 0777);
			T_ASSERT_OK(ns_setattr(ns, p.ino, &a, NS_SET_MODE));
		}
		break;
	case 5:
		if (pick(ns, 0, &p))
			MAY_FAIL(ns_rename(ns, p.parent, p.name, pick_dir(ns), name, 0));
		break;
	case 6:
		if (pick(ns, NS_FILE, &p))
			T_ASSERT_OK(ns_unlink(ns, p.parent, p.name));
		break;
	case 7:
		if (pick(ns, NS_DIR, &p))
			MAY_FAIL(ns_rmdir(ns, p.parent, p.name));
		break;
	default:
		if (pick(ns, 0, &p))
			T_ASSERT_OK(ns_xattr_set(ns, p.ino, "user.v", name, strlen(name), 0));
	}
}

static void sim_open(struct sim *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < NODES; i++) {
		s->dirs[i] = t_tmpdir("ns-node");
		s->n[i] = open_ns(s->dirs[i], (uint8_t)(0x10 + i), true);
	}
}

static void sim_close(struct sim *s)
{
	for (int i = 0; i < NODES; i++) {
		ns_close(s->n[i]);
		t_tmpdir_remove(s->dirs[i]);
		free(s->dirs[i]);
	}
	rs_free(&s->all);
}

/* Everyone learns everything (two rounds, so materialized conflict copies travel too). */
static void sim_full_sync(struct sim *s)
{
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < NODES; i++)
			for (int j = 0; j < NODES; j++)
				if (i != j)
					sync_to(s->n[i], s->n[j], &s->all);
}

/* Apply every record of @rs in a random order (with repeats) to a fresh namespace. */
static char *merge_shuffled(const struct recset *rs, bool writable, bool twice)
{
	char *dir = t_tmpdir("ns-merge"), *out;
	size_t n = rs->n, *order = malloc(2 * n * sizeof(*order)), m = twice ? 2 * n : n;
	struct ns *ns;

	T_ASSERT(order);
	for (size_t i = 0; i < m; i++)
		order[i] = i % n;
	for (size_t i = m; i > 1; i--) {
		size_t j = t_rand() % i, tmp = order[i - 1];

		order[i - 1] = order[j];
		order[j] = tmp;
	}
	ns = open_ns(dir, 0x77, writable);
	for (size_t i = 0; i < m; i++) {
		int rc = ns_apply(ns, rs->rec[order[i]], rs->len[order[i]]);

		if (rc < 0)
			fprintf(stderr, "ns_apply of record %zu: %d\n", order[i], rc);
		T_ASSERT(rc == 0 || rc == 1);
	}
	out = dump_tree(ns);
	ns_close(ns);
	t_tmpdir_remove(dir);
	free(dir);
	free(order);
	return out;
}

static void check_order_independence(struct sim *s, int perms)
{
	char *ref = merge_shuffled(&s->all, true, false);

	for (int p = 0; p < perms; p++) {
		char *got = merge_shuffled(&s->all, p % 3 != 0, p % 2 == 0);

		if (strcmp(ref, got)) {
			fprintf(stderr, "---- reference\n%s---- permutation %d\n%s", ref, p, got);
			T_FAIL("merge result depends on the order");
		}
		free(got);
	}
	/* Every node that has seen everything shows that same tree. */
	for (int i = 0; i < NODES; i++) {
		char *got = dump_tree(s->n[i]);

		if (strcmp(ref, got)) {
			fprintf(stderr, "---- reference\n%s---- node %d\n%s", ref, i, got);
			T_FAIL("a node's tree differs from the merge of all records");
		}
		free(got);
	}
	free(ref);
}

static size_t count_lines_with(const char *s, const char *what)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, what)); p++)
		n++;
	return n;
}

static void concurrent_edits_keep_both_versions(void)
{
	struct sim s;
	struct ns_content c1 = content_of(1), c2 = content_of(2);
	uint64_t f0, f1, x;
	char *t;

	keys_once();
	sim_open(&s);
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "doc.txt", NS_FILE, 0644, 0, 0, NULL, &f0));
	sim_full_sync(&s);
	f1 = lookup(s.n[1], NS_ROOT_INO, "doc.txt");
	/* Partitioned: both edit the same file, both create the same new path. */
	T_ASSERT_OK(ns_set_content(s.n[0], f0, 10, &c1, 1));
	T_ASSERT_OK(ns_set_content(s.n[1], f1, 20, &c2, 2));
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "same", NS_DIR, 0755, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_create(s.n[1], NS_ROOT_INO, "same", NS_DIR, 0755, 0, 0, NULL, &x));
	T_ASSERT_OK(ns_create(s.n[0], x = lookup(s.n[0], NS_ROOT_INO, "same"), "a", NS_FILE, 0644,
			      0, 0, NULL, &f0));
	T_ASSERT_OK(ns_create(s.n[1], lookup(s.n[1], NS_ROOT_INO, "same"), "b", NS_FILE, 0644, 0, 0,
			      NULL, &f1));
	sim_full_sync(&s);
	t = dump_tree(s.n[2]);
	/* The winner keeps the name, the loser is one conflict copy beside it. */
	T_ASSERT_EQ(count_lines_with(t, "/doc.conflict-"), 1);
	T_ASSERT_EQ(count_lines_with(t, "/doc.txt "), 1);
	T_ASSERT(strstr(t, "s10 ") && strstr(t, "s20 "));
	/* The same directory made on both sides is one directory holding both files. */
	T_ASSERT(strstr(t, "/same/a ") && strstr(t, "/same/b "));
	T_ASSERT_EQ(count_lines_with(t, "/same "), 1);
	free(t);
	check_order_independence(&s, 30);
	/* Nobody multiplies the copy: one more full exchange changes nothing. */
	{
		size_t before = s.all.n;

		sim_full_sync(&s);
		T_ASSERT_EQ(s.all.n, before);
	}
	sim_close(&s);
}

static void crossed_directory_moves_stay_reachable(void)
{
	struct sim s;
	uint64_t a, b, f;
	char *t;

	keys_once();
	sim_open(&s);
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "A", NS_DIR, 0755, 0, 0, NULL, &a));
	T_ASSERT_OK(ns_create(s.n[0], NS_ROOT_INO, "B", NS_DIR, 0755, 0, 0, NULL, &b));
	T_ASSERT_OK(ns_create(s.n[0], a, "inA", NS_FILE, 0644, 0, 0, NULL, &f));
	T_ASSERT_OK(ns_create(s.n[0], b, "inB", NS_FILE, 0644, 0, 0, NULL, &f));
	sim_full_sync(&s);
	/* Concurrently: A into B on node 0, B into A on node 1 (a cycle once merged). */
	T_ASSERT_OK(ns_rename(s.n[0], NS_ROOT_INO, "A", lookup(s.n[0], NS_ROOT_INO, "B"), "A", 0));
	T_ASSERT_OK(ns_rename(s.n[1], NS_ROOT_INO, "B", lookup(s.n[1], NS_ROOT_INO, "A"), "B", 0));
	/* And node 2 deletes a directory while node 0 adds a file to it. */
	T_ASSERT_OK(ns_create(s.n[2], NS_ROOT_INO, "gone", NS_DIR, 0755, 0, 0, NULL, &f));
	sim_full_sync(&s);
	T_ASSERT_OK(ns_rmdir(s.n[2], NS_ROOT_INO, "gone"));
	T_ASSERT_OK(ns_create(s.n[0], lookup(s.n[0], NS_ROOT_INO, "gone"), "kept", NS_FILE, 0644, 0,
			      0, NULL, &f));
	sim_full_sync(&s);
	t = dump_tree(s.n[1]);
	T_ASSERT(strstr(t, "/inA ") && strstr(t, "/inB "));
	T_ASSERT(strstr(t, "/gone/kept "));
	free(t);
	check_order_independence(&s, 30);
	sim_close(&s);
}

static void random_histories_merge_in_any_order(void)
{
	for (int history = 0; history < 6; history++) {
		struct sim s;

		keys_once();
		sim_open(&s);
		for (int step = 0; step < 120; step++) {
			random_op(s.n[t_rand() % NODES]);
			if (t_rand() % 8 == 0) {
				int i = (int)(t_rand() % NODES), j = (int)(t_rand() % NODES);

				if (i != j)
					sync_to(s.n[i], s.n[j], &s.all);
			}
		}
		sim_full_sync(&s);
		check_order_independence(&s, 25);
		sim_close(&s);
	}
}

T_MAIN(T_CASE(local_operations_and_errors), T_CASE(readdir_resumes_across_changes),
       T_CASE(commit_reopen_compact_and_torn_tail), T_CASE(bad_records_rejected),
       T_CASE(concurrent_edits_keep_both_versions), T_CASE(crossed_directory_moves_stay_reachable),
       T_CASE(random_histories_merge_in_any_order))
