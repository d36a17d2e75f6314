/* SPDX-License-Identifier: MIT */
/*
 * tests/lib/t.h - assertions and helpers for the unit tests.
 *
 * A unit test is a standalone binary: each T_TEST runs in order, a failed
 * assertion prints file:line and the expression and exits 1; exit 77 means
 * "skipped" (meson's convention).
 */
#ifndef P2P_TESTS_T_H
#define P2P_TESTS_T_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_SKIP 77

#define T_FAIL(...)                                             \
	do {                                                    \
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__);                   \
		fputc('\n', stderr);                            \
		exit(1);                                        \
	} while (0)

#define T_ASSERT(e)                                         \
	do {                                                \
		if (!(e))                                   \
			T_FAIL("assertion failed: %s", #e); \
	} while (0)

#define T_ASSERT_EQ(a, b)                                                            \
	do {                                                                         \
		long long t_a_ = (long long)(a), t_b_ = (long long)(b);              \
		if (t_a_ != t_b_)                                                    \
			T_FAIL("%s == %s failed: %lld != %lld", #a, #b, t_a_, t_b_); \
	} while (0)

#define T_ASSERT_OK(e)                                                                    \
	do {                                                                              \
		long long t_rc_ = (long long)(e);                                         \
		if (t_rc_ < 0)                                                            \
			T_FAIL("%s failed: %lld (%s)", #e, t_rc_, strerror((int)-t_rc_)); \
	} while (0)

#define T_ASSERT_MEM_EQ(a, b, n)                                    \
	do {                                                        \
		if (memcmp((a), (b), (n)) != 0)                     \
			T_FAIL("memory differs: %s vs %s", #a, #b); \
	} while (0)

typedef void t_test_fn(void);

struct t_case {
	const char *name;
	t_test_fn *fn;
};

/* Run @cases in order, print one line each; honours T_ONLY=name. */
int t_run(const struct t_case *cases, size_t n);

/* Deterministic PRNG (xorshift64*), seeded from T_SEED or a fixed default. */
uint64_t t_rand(void);
void t_rand_seed(uint64_t seed);
uint64_t t_seed(void);
void t_rand_fill(void *buf, size_t len);

/* A fresh temporary directory (removed by t_tmpdir_remove). Caller frees. */
char *t_tmpdir(const char *tag);
void t_tmpdir_remove(const char *dir);

#define T_MAIN(...)                                                             \
	int main(void)                                                          \
	{                                                                       \
		static const struct t_case t_cases_[] = { __VA_ARGS__ };        \
		return t_run(t_cases_, sizeof(t_cases_) / sizeof(t_cases_[0])); \
	}

#define T_CASE(fn)      \
	{               \
#fn, fn \
	}

#endif
