// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_ns_record.c - namespace records from peers: the record
 * decoder, and the merge and view code behind ns_apply().
 *
 * The input is split into records at "\xffNSREC\xff". Each is decoded as it
 * is; a record that decodes is then signed with the harness's share key, so
 * that the fuzzer reaches the merge rules (heads, names, cycles, conflict
 * copies) and not only the signature check. Every few hundred inputs the
 * namespace starts afresh, bounding memory.
 */
#include "fs/ns.h"
#include "fs/ns_record.h"

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

static void reset(void)
{
	uint8_t node[NS_NODE_ID_LEN] = { 1 };
	struct ns_open_opts o = { .share_pk = pk, .share_sk = sk, .node_id = node };
	char cmd[128];

	ns_close(ns);
	ns = NULL;
	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			abort();
	}
	snprintf(dir, sizeof(dir), "/tmp/p2pfs-fuzz-ns-XXXXXX");
	if (!mkdtemp(dir) || ns_open(dir, &o, &ns) < 0)
		abort();
	uses = 0;
}

static void one(const uint8_t *p, size_t len)
{
	static uint8_t buf[NS_REC_MAX];
	struct ns_record rec;

	if (ns_record_decode(p, len, &rec) < 0) {
		int rc = ns_apply(ns, p, len); /* must fail cleanly */

		if (rc >= 0)
			abort();
		return;
	}
	memcpy(buf, p, len);
	ns_record_sign(buf, len - NS_REC_SIG_LEN, pk, sk);
	{
		int rc = ns_apply(ns, buf, len);

		(void)rc;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t start = 0;

	if (!ns) {
		uint8_t seed[32] = { 7 };

		if (sodium_init() < 0)
			abort();
		crypto_sign_seed_keypair(pk, sk, seed);
		reset();
	}
	if (++uses > 500)
		reset();
	for (size_t i = 0; i + sizeof(sep) - 1 <= size; i++)
		if (!memcmp(data + i, sep, sizeof(sep) - 1)) {
			one(data + start, i - start);
			start = i + sizeof(sep) - 1;
			i = start - 1;
		}
	one(data + start, size - start);
	return 0;
}
