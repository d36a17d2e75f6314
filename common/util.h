/* SPDX-License-Identifier: MIT */
/*
 * common/util.h - tiny macros every module uses.
 *
 * Owns nothing; has no state. Only macros that several modules need belong here
 * (DESIGN.md: common/ stays small).
 */
#ifndef P2P_COMMON_UTIL_H
#define P2P_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fallible functions carry this so a forgotten error check is a warning. */
#define P2P_MUST_CHECK __attribute__((warn_unused_result))
#define P2P_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define P2P_UNUSED __attribute__((unused))

/* ISO form (offsetof), as warning_level=3 is pedantic about statement expressions. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define P2P_MIN(a, b) ((a) < (b) ? (a) : (b))
#define P2P_MAX(a, b) ((a) > (b) ? (a) : (b))
#define P2P_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define P2P_ALIGN_DOWN(x, a) ((x) & ~((__typeof__(x))(a)-1))

#define KiB (1024ULL)
#define MiB (1024ULL * 1024ULL)
#define GiB (1024ULL * 1024ULL * 1024ULL)

/* Hex of the first bytes of an id, for log lines ("ids cut to 8 hex digits"). */
static inline void p2p_hex8(char out[static 9], const uint8_t *id)
{
	static const char d[] = "0123456789abcdef";

	for (int i = 0; i < 4; i++) {
		out[2 * i] = d[id[i] >> 4];
		out[2 * i + 1] = d[id[i] & 15];
	}
	out[8] = '\0';
}

/* Full hex of @n bytes into @out (2n+1 bytes). */
static inline void p2p_hex(char *out, const uint8_t *in, size_t n)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Parse exactly 2n hex digits into @out; returns 0 or -EINVAL. */
int p2p_unhex(uint8_t *out, size_t n, const char *hex);

/* "1.5G", "512M", "100k", "4096" -> bytes (binary units). Returns 0 or -EINVAL. */
int p2p_parse_size(const char *s, uint64_t *ret_bytes);

/* Human-readable size into @buf ("1.50 GiB"). Returns @buf. */
char *p2p_fmt_size(char *buf, size_t len, uint64_t bytes);

#endif
