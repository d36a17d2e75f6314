/* SPDX-License-Identifier: MIT */
/*
 * chunkstore/cdc.h - content-defined chunking (FastCDC) and chunk ids.
 *
 * FastCDC with a gear rolling hash and normalized chunking: a stricter mask
 * before the average size and a looser one after it, so chunk sizes cluster
 * around the average; no cut before min_size, a forced cut at max_size.
 * Cut points depend only on the bytes near them, so an insertion shifts at
 * most the chunks around it.
 *
 * Chunk id = SHA-256 of the chunk bytes (libcrypto: 2.1 GB/s with SHA-NI on
 * the target machines, DESIGN.md "Crypto and hashing").
 */
#ifndef P2P_CHUNKSTORE_CDC_H
#define P2P_CHUNKSTORE_CDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define CS_ID_LEN 32
/* Largest chunk any share may configure; also the largest record the store accepts. */
#define CS_CHUNK_MAX_LIMIT (16U * 1024U * 1024U)
#define CS_CHUNK_MIN_LIMIT (4U * 1024U)

struct cs_cdc_params {
	uint32_t min_size;
	uint32_t avg_size; /* a power of two */
	uint32_t max_size;
};

/* 256 KiB / 1 MiB / 4 MiB. */
extern const struct cs_cdc_params cs_cdc_default;

/* 0 if min < avg < max, avg a power of two, all within the limits; else -EINVAL. */
P2P_MUST_CHECK int cs_cdc_params_check(const struct cs_cdc_params *p);

/*
 * cs_cdc_cut() - length of the chunk that starts at @buf.
 * @buf holds the next @len bytes of the stream from the chunk start. Returns
 * the chunk length (1..max_size, <= len), or 0 when no cut point lies in
 * @len bytes, @len < max_size and @eof is false: call again with more data.
 * With @eof, the remaining bytes (<= max_size) end the last chunk.
 */
size_t cs_cdc_cut(const struct cs_cdc_params *p, const uint8_t *buf, size_t len, bool eof);

/* SHA-256 of @len bytes. Thread-safe. */
void cs_id_compute(const void *data, size_t len, uint8_t id[static CS_ID_LEN]);

/*
 * The same id computed piece by piece, for bytes hashed as they arrive
 * (while still in the CPU's cache). begin returns NULL when out of memory;
 * end writes the id and frees the context, drop only frees it (NULL is a
 * no-op for both drop and update's caller to skip).
 */
struct cs_id_ctx;
struct cs_id_ctx *cs_id_begin(void);
void cs_id_update(struct cs_id_ctx *c, const void *data, size_t len);
void cs_id_end(struct cs_id_ctx *c, uint8_t id[static CS_ID_LEN]);
void cs_id_drop(struct cs_id_ctx *c);

#endif
