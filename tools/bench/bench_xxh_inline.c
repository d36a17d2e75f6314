// SPDX-License-Identifier: MIT
/*
 * tools/bench/bench_xxh_inline.c - XXH3 compiled into the program
 * (XXH_INLINE_ALL) with the project's flags, for bench_crypto to compare
 * with libxxhash's entry points. A file of its own: the inline build renames
 * nothing, so it cannot share a translation unit with calls into the library.
 */
#include <stddef.h>
#include <stdint.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t bench_xxh3_inline(const void *data, size_t len);

uint64_t bench_xxh3_inline(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}
