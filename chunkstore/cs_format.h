/* SPDX-License-Identifier: MIT */
/*
 * chunkstore/cs_format.h - the on-disk formats of the chunk store: pack
 * files, their records and the index checkpoint. Internal to chunkstore/
 * (and its fuzz targets); nothing outside reads these bytes.
 *
 * A store directory holds:
 *   %08x.pack   append-only pack files, numbered from 1, never rewritten
 *   index       the last index checkpoint (replaced atomically by rename)
 *   index.tmp   a checkpoint being written (removed at open)
 *
 * All integers are big-endian; no struct is ever cast onto these bytes.
 *
 * Pack header (CS_PACK_HDR_LEN = 64 bytes, at offset 0 of every pack):
 *   off size  meaning
 *     0    8  magic "p2pfsPK\x01"
 *     8    4  format version (1)
 *    12    4  pack number (must match the file name; < 2^24)
 *    16    8  salt: random per pack, seeds the record header checksums
 *    24    8  creation time, Unix ns (informational)
 *    32   24  zero
 *    56    8  XXH3-64 of bytes 0..55 (seed 0)
 *
 * Record (from offset 64, each at a multiple of 8):
 *   off size  meaning
 *     0    4  magic 0x70325263 ("p2Rc")
 *     4    1  type: 1 chunk, 2 delete, 3 pin, 4 unpin
 *     5    1  flags: bit 0 = pinned (chunk records only); other bits zero
 *     6    2  zero
 *     8    4  data length (chunk: 0..CS_CHUNK_MAX_LIMIT; other types: 0)
 *    12    4  zero
 *    16    8  ref: for delete/pin/unpin, the location of the chunk record
 *             they apply to; 0 for chunk records
 *    24   32  chunk id (SHA-256 of the data)
 *    56    8  XXH3-64 of the data (seed 0); 0 for other types
 *    64    8  XXH3-64 of bytes 0..63, seeded with (pack salt ^ location)
 *    72  len  data, then zeros up to the next multiple of 8
 *
 * A location is (pack number << 40 | byte offset in the pack). Seeding the
 * header checksum with it means a record is valid only where it was
 * written: a copy of a pack stored as chunk data (a backup of a store kept
 * in p2pfs) or bytes crafted by a peer cannot pass for a record when the
 * tail scan resynchronises past a torn write; the salt is never sent
 * anywhere, so a peer cannot compute a valid header for our packs.
 *
 * Checkpoint ("index"):
 *   header, CS_CKPT_HDR_LEN = 64 bytes:
 *   off size  meaning
 *     0    8  magic "p2pfsIX\x01"
 *     8    4  format version (1)
 *    12    4  entry size (48)
 *    16    8  entry count
 *    24    8  cover: a location; every record before it (in pack order,
 *             then offset order) is reflected in the entries, so opening
 *             replays only records at or after it
 *    32    4  LRU clock at the time of the checkpoint
 *    36    4  zero
 *    40    8  XXH3-64 of all entry bytes (seed 0)
 *    48    8  zero
 *    56    8  XXH3-64 of bytes 0..55 (seed 0)
 *   then count entries of CS_CKPT_ENT_LEN = 48 bytes:
 *     0   32  chunk id
 *    32    8  location of its chunk record
 *    40    4  bits 0..24 data length, bit 31 pinned, others zero
 *    44    4  last access (LRU clock)
 *   and nothing after the last entry.
 *
 * Invariants:
 *  1. Every decoder checks lengths before reading and every field against
 *     its limit; a record or checkpoint that fails any check is not used.
 *  2. Decoders never allocate: the caller provides fixed-size outputs.
 */
#ifndef P2P_CHUNKSTORE_CS_FORMAT_H
#define P2P_CHUNKSTORE_CS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chunkstore/cdc.h"
#include "common/util.h"

#define CS_PACK_HDR_LEN 64U
#define CS_REC_HDR_LEN 72U
#define CS_CKPT_HDR_LEN 64U
#define CS_CKPT_ENT_LEN 48U
#define CS_REC_MAGIC 0x70325263U
#define CS_FORMAT_VERSION 1U

#define CS_LOC_OFF_BITS 40
#define CS_PACK_NO_MAX ((1U << 24) - 1)
#define CS_PACK_SIZE_MAX (1ULL << CS_LOC_OFF_BITS)

static inline uint64_t cs__loc(uint32_t pack, uint64_t off)
{
	return (uint64_t)pack << CS_LOC_OFF_BITS | off;
}

static inline uint32_t cs__loc_pack(uint64_t loc)
{
	return (uint32_t)(loc >> CS_LOC_OFF_BITS);
}

static inline uint64_t cs__loc_off(uint64_t loc)
{
	return loc & (CS_PACK_SIZE_MAX - 1);
}

/* Bytes a record with @len data bytes takes in a pack. */
static inline uint64_t cs__rec_size(uint64_t len)
{
	return CS_REC_HDR_LEN + ((len + 7) & ~7ULL);
}

enum cs_rec_type {
	CS_REC_CHUNK = 1,
	CS_REC_DELETE = 2,
	CS_REC_PIN = 3,
	CS_REC_UNPIN = 4,
};

#define CS_REC_F_PINNED (1U << 0)

struct cs_rec {
	uint8_t type;  /* enum cs_rec_type */
	uint8_t flags; /* CS_REC_F_* */
	uint32_t len;  /* data bytes */
	uint64_t ref;  /* location the record applies to (delete/pin/unpin) */
	uint8_t id[CS_ID_LEN];
	uint64_t data_hash;
};

struct cs_pack_hdr {
	uint32_t no;
	uint64_t salt;
	uint64_t created_ns;
};

struct cs_ckpt_hdr {
	uint64_t count;
	uint64_t cover; /* location */
	uint32_t clock;
	uint64_t entries_hash;
};

struct cs_ckpt_ent {
	uint8_t id[CS_ID_LEN];
	uint64_t loc;
	uint32_t len;
	bool pinned;
	uint32_t atime;
};

/* XXH3-64 of @len bytes (the fastest code path the CPU has). */
uint64_t cs__xxh(const void *data, size_t len, uint64_t seed);

/* Seed of the header checksum of the record at @loc in a pack with @salt. */
static inline uint64_t cs__rec_seed(uint64_t salt, uint64_t loc)
{
	return salt ^ loc;
}

void cs__rec_encode(uint8_t out[static CS_REC_HDR_LEN], const struct cs_rec *r, uint64_t seed);
/*
 * Decode the record header in the first CS_REC_HDR_LEN of @n bytes at @p.
 * Returns 0, -EPROTO when short or a field is invalid, -EBADMSG when the
 * checksum fails. Does not check the data.
 */
P2P_MUST_CHECK int cs__rec_decode(const uint8_t *p, size_t n, uint64_t seed, struct cs_rec *ret);

void cs__pack_hdr_encode(uint8_t out[static CS_PACK_HDR_LEN], const struct cs_pack_hdr *h);
/* 0, -EPROTO (short, bad magic/version/field) or -EBADMSG (checksum). */
P2P_MUST_CHECK int cs__pack_hdr_decode(const uint8_t *p, size_t n, struct cs_pack_hdr *ret);

void cs__ckpt_hdr_encode(uint8_t out[static CS_CKPT_HDR_LEN], const struct cs_ckpt_hdr *h);
P2P_MUST_CHECK int cs__ckpt_hdr_decode(const uint8_t *p, size_t n, struct cs_ckpt_hdr *ret);
void cs__ckpt_ent_encode(uint8_t out[static CS_CKPT_ENT_LEN], const struct cs_ckpt_ent *e);
P2P_MUST_CHECK int cs__ckpt_ent_decode(const uint8_t *p, size_t n, struct cs_ckpt_ent *ret);

/*
 * cs__ckpt_load() - read a checkpoint from @fd (at offset 0), calling @fn
 * for each entry in file order, and @ahead (may be NULL) with the id of an
 * entry a few places before @fn gets it, so that the caller can prefetch.
 * Entries arrive before the checksum over all of them is known: on any
 * error the caller must discard what @fn built. Returns 0, -EPROTO
 * (malformed), -EBADMSG (checksum), a negative errno from read, or what @fn
 * returned if negative.
 */
typedef int cs_ckpt_ent_fn(void *arg, const struct cs_ckpt_ent *e);
typedef void cs_ckpt_ahead_fn(void *arg, const uint8_t id[static CS_ID_LEN]);
P2P_MUST_CHECK int cs__ckpt_load(int fd, struct cs_ckpt_hdr *ret_hdr, cs_ckpt_ent_fn *fn,
				 cs_ckpt_ahead_fn *ahead, void *arg);

/*
 * cs__pack_scan() - walk the records of pack @no (salt @salt) in @fd from
 * @start (a multiple of 8, >= CS_PACK_HDR_LEN) to @end (the file length).
 * @fn gets every record whose header and data checksums hold, in offset
 * order, with its location. A bad header is skipped 8 bytes at a time until
 * a valid one (so records written after a hole left by a crashed writer are
 * found); a record with a valid header but bad data is skipped whole.
 * *ret_valid_end is the end of the last valid record (or @start), and
 * *ret_read the bytes read. Returns 0, a negative errno from read, or what
 * @fn returned if negative.
 */
typedef int cs_scan_fn(void *arg, uint64_t loc, const struct cs_rec *r);
P2P_MUST_CHECK int cs__pack_scan(int fd, uint32_t no, uint64_t salt, uint64_t start, uint64_t end,
				 cs_scan_fn *fn, void *arg, uint64_t *ret_valid_end,
				 uint64_t *ret_read);

#endif
