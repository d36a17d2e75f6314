// SPDX-License-Identifier: MIT
/*
 * tests/lib/t.c - the runner, PRNG and temp-dir helpers behind t.h.
 */
#include "tests/lib/t.h"
#include "common/tm.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng_seed;

void t_rand_seed(uint64_t seed)
{
	rng_seed = seed;
	rng_state = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

uint64_t t_seed(void)
{
	return rng_seed;
}

uint64_t t_rand(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

void t_rand_fill(void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t v = t_rand();

		memcpy(p + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = t_rand();

		memcpy(p + i, &v, len - i);
	}
}

char *t_tmpdir(const char *tag)
{
	char *d;

	if (asprintf(&d, "%s/p2pfs-test-%s-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
		     tag) < 0)
		T_FAIL("asprintf");
	if (!mkdtemp(d))
		T_FAIL("mkdtemp %s: %s", d, strerror(errno));
	return d;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void t_tmpdir_remove(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int t_run(const struct t_case *cases, size_t n)
{
	const char *only = getenv("T_ONLY");
	const char *seed = getenv("T_SEED");

	t_rand_seed(seed ? strtoull(seed, NULL, 0) : 0x5eed);
	for (size_t i = 0; i < n; i++) {
		uint64_t t0;

		if (only && strcmp(only, cases[i].name))
			continue;
		t0 = tm_mono_ms();
		cases[i].fn();
		printf("ok %zu - %s (%llu ms)\n", i + 1, cases[i].name,
		       (unsigned long long)(tm_mono_ms() - t0));
		fflush(stdout);
	}
	return 0;
}
