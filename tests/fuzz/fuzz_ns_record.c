// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_ns_record.c - namespace records from peers: the record
 * decoder, and the merge and view code behind ns_apply().
 *
 * The input is split into records at "\xffNSREC\xff". Each piece
 *  1. goes to ns_record_decode(); one that decodes must encode back to the
 *     same bytes (a node keeps only the signature of a received record and
 *     encodes the body again when it commits it);
 *  2. goes to ns_apply() as it is, which must refuse it unless its
 *     signature is good;
 *  3. if it decodes, is signed with the harness's share key and applied, so
 *     that the fuzzer reaches the merge rules (heads, names, cycles, conflict
 *     copies) and not only the signature check.
 * Then a local change (chosen by the first byte) runs on the merged state,
 * the namespace commits, every record it hands out must decode and carry a
 * good signature, and the visible tree must be consistent (lookup finds
 * what readdir lists, each inode once).
 *
 * One namespace serves many inputs (in /dev/shm when there is one, so that
 * commits are cheap; removed at exit) and starts afresh every few hundred
 * inputs to bound memory.
 */
#include "fs/ns.h"
#include "fs/ns_record.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t sep[] = "\xffNSREC\xff";
static uint8_t pk[32], sk[64];
static char dir[64];
static struct ns *ns;
static unsigned uses;

static void remove_dir(void)
{
	char cmd[128];

	ns_close(ns);
	ns = NULL;
	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			abort();
		dir[0] = '\0';
	}
}

static void reset(void)
{
	uint8_t node[NS_NODE_ID_LEN] = { 1 };
	struct ns_open_opts o = { .share_pk = pk, .share_sk = sk, .node_id = node };

	remove_dir();
	snprintf(dir, sizeof(dir), "%s/p2pfs-fuzz-ns-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(dir) || ns_open(dir, &o, &ns) < 0)
		abort();
	uses = 0;
}

static void one(const uint8_t *p, size_t len)
{
	static uint8_t buf[NS_REC_MAX];
	struct ns_record rec;
	long body;
	int rc;

	if (ns_record_decode(p, len, &rec) < 0) {
		if (ns_apply(ns, p, len) >= 0) /* must fail cleanly */
			abort();
		return;
	}
	body = ns_record_encode(&rec, buf, sizeof(buf));
	if (body < 0 || (size_t)body != len - NS_REC_SIG_LEN || memcmp(buf, p, (size_t)body))
		abort(); /* not canonical: a committed copy would not verify */
	rc = ns_apply(ns, p, len);
	if (rc >= 0 && !ns_record_verify(p, len, pk))
		abort();
	memcpy(buf, p, len);
	ns_record_sign(buf, len - NS_REC_SIG_LEN, pk, sk);
	rc = ns_apply(ns, buf, len);
	if (rc == -EBADMSG || rc == -EPROTO || rc == -EMSGSIZE)
		abort(); /* it decodes and is signed */
}

/* A local change on whatever state the records made. */
static void local_change(uint8_t op, uint8_t arg)
{
	struct ns_stats st;
	struct ns_attr a = { .mode = arg, .uid = arg, .mtime = arg };
	struct ns_content c = { .kind = NS_CONTENT_CHUNK };
	uint64_t ino, n;
	int rc = 0;

	ns_get_stats(ns, &st);
	n = st.records + 2;
	ino = 1 + arg % n;
	memset(c.id, arg, sizeof(c.id));
	switch (op % 6) {
	case 0:
		rc = ns_setattr(ns, ino, &a, NS_SET_MODE | NS_SET_MTIME);
		break;
	case 1:
		rc = ns_set_content(ns, ino, 1 + arg, &c, arg);
		break;
	case 2:
		rc = ns_create(ns, ino, "fuzz", arg % 2 ? NS_DIR : NS_FILE, 0644, 0, 0, NULL, &n);
		break;
	case 3:
		rc = ns_xattr_set(ns, ino, "user.fuzz", &arg, 1, 0);
		break;
	case 4:
		rc = ns_rename(ns, ino, "fuzz", 1 + (uint64_t)(arg / 2) % (st.records + 2), "moved",
			       arg % 3 == 0 ? NS_RENAME_EXCHANGE : 0);
		break;
	default:
		rc = ns_unlink(ns, ino, "fuzz");
		if (rc == -EISDIR)
			rc = ns_rmdir(ns, ino, "fuzz");
	}
	(void)rc; /* anything from 0 to -ENOENT; the checks below are what matter */
}

static int check_record(void *arg, const uint8_t *rec, size_t len)
{
	struct ns_record r;

	(void)arg;
	if (ns_record_decode(rec, len, &r) < 0 || !ns_record_verify(rec, len, pk))
		abort();
	return 0;
}

struct walk {
	unsigned entries;
	uint64_t dir;
};

static int walk_cb(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		   uint64_t next)
{
	struct walk *w = arg, sub;
	uint64_t found;

	(void)next;
	if (++w->entries > 1000000 || ns_lookup(ns, w->dir, name, &found) < 0 || found != ino ||
	    a->deleted || !ns_name_ok(name, strlen(name))) {
		fprintf(stderr,
			"fuzz_ns_record: %s (inode %llu in %llu) is listed, lookup: %d %llu\n",
			name, (unsigned long long)ino, (unsigned long long)w->dir,
			ns_lookup(ns, w->dir, name, &found), (unsigned long long)found);
		abort();
	}
	if (a->type == NS_DIR) {
		sub.entries = w->entries;
		sub.dir = ino;
		if (ns_readdir(ns, ino, 0, walk_cb, &sub) < 0)
			abort();
		w->entries = sub.entries;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct walk w = { .dir = NS_ROOT_INO };
	size_t start = 0;

	if (!ns) {
		uint8_t seed[32] = { 7 };

		if (sodium_init() < 0)
			abort();
		crypto_sign_seed_keypair(pk, sk, seed);
		reset();
		atexit(remove_dir);
	}
	if (++uses > 300)
		reset();
	for (size_t i = 0; i + sizeof(sep) - 1 <= size; i++)
		if (!memcmp(data + i, sep, sizeof(sep) - 1)) {
			one(data + start, i - start);
			start = i + sizeof(sep) - 1;
			i = start - 1;
		}
	one(data + start, size - start);
	if (size >= 2)
		local_change(data[0], data[1]);
	if (ns_commit(ns) < 0 || ns_foreach_record(ns, check_record, NULL) < 0)
		abort();
	if (ns_readdir(ns, NS_ROOT_INO, 0, walk_cb, &w) < 0)
		abort();
	return 0;
}
