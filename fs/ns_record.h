/* SPDX-License-Identifier: MIT */
/*
 * fs/ns_record.h - the signed namespace record: one version of one entry,
 * as stored in the log and snapshot and sent to peers.
 *
 * Layout (big-endian, no padding):
 *
 *   u8   version (1)           u8  type (enum ns_type)
 *   u8   flags (bit 0: deleted) u8 content kind (enum ns_content_kind)
 *   16   entry id               16  parent id (all zero for the root)
 *   u64  hlc                    32  writer node id
 *   u32  mode (07777)  u32 uid  u32 gid
 *   u64  size                   i64 mtime (ns)
 *   32   content id             (only if content kind != NONE)
 *   u8   name length, name      (1..255 bytes; 0 only for the root)
 *   u16  target length, target  (symlinks: 1..4095 = size; others 0)
 *   u8   vv count (1..8), then count x (32 writer id, u64 hlc), writers
 *        strictly ascending; the record's own writer is present with its hlc
 *   u16  xattr count (<= 256), then count x (u8 name length, name,
 *        u32 value length, value), names strictly ascending
 *   64   Ed25519 signature by the share key over
 *        "p2pfs-ns-record-1" || share public key || every byte above
 *
 * Every field is checked on decode (ranges, lengths, forbidden bytes in
 * names, ordering, trailing bytes); the signature is checked separately so
 * a node can skip it for records it wrote to its own disk.
 */
#ifndef P2P_FS_NS_RECORD_H
#define P2P_FS_NS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/rbuf.h"
#include "fs/ns.h"

#define NS_REC_VERSION 1
#define NS_REC_SIG_LEN 64
#define NS_REC_FIXED_LEN (4 + 16 + 16 + 8 + 32 + 12 + 16)
/* The largest record: fixed part, content id, name, target, vv, xattrs, signature. */
#define NS_REC_MAX                                                                               \
	(NS_REC_FIXED_LEN + 32 + 1 + NS_NAME_MAX + 2 + NS_SYMLINK_MAX + 1 + NS_VV_MAX * 40 + 2 + \
	 NS_XATTR_COUNT_MAX * 5 + NS_XATTR_TOTAL_MAX + NS_REC_SIG_LEN)

struct ns_vv_ent {
	uint8_t writer[NS_NODE_ID_LEN];
	uint64_t hlc;
};

/* A decoded record. Pointers borrow from the buffer it was decoded from. */
struct ns_record {
	uint8_t type, content_kind;
	bool deleted;
	uint8_t id[NS_ID_LEN], parent[NS_ID_LEN];
	uint64_t hlc;
	uint8_t writer[NS_NODE_ID_LEN];
	uint32_t mode, uid, gid;
	uint64_t size;
	int64_t mtime;
	uint8_t content[CS_ID_LEN];
	const char *name; /* not NUL-terminated */
	uint8_t name_len;
	const char *target; /* not NUL-terminated */
	uint16_t target_len;
	uint8_t vv_n;
	struct ns_vv_ent vv[NS_VV_MAX];
	uint16_t xattr_n;
	const uint8_t *xattrs; /* the packed xattr entries (after the count) */
	uint32_t xattrs_len;
	const uint8_t *sig; /* NULL for an unsigned record */
};

/*
 * Decode and validate @len bytes (a whole signed record). -EPROTO on any
 * malformed field, -EMSGSIZE if over NS_REC_MAX. @rec borrows from @buf.
 */
P2P_MUST_CHECK int ns_record_decode(const uint8_t *buf, size_t len, struct ns_record *rec);
/* Encode the unsigned body (no signature). Returns the length or -EMSGSIZE. */
P2P_MUST_CHECK long ns_record_encode(const struct ns_record *rec, uint8_t *buf, size_t cap);
/* Append the signature to the body of @body_len bytes at @buf (room for 64 more). */
void ns_record_sign(uint8_t *buf, size_t body_len, const uint8_t share_pk[static 32],
		    const uint8_t share_sk[static 64]);
/* Check the signature of a whole decoded record of @len bytes. */
P2P_MUST_CHECK bool ns_record_verify(const uint8_t *buf, size_t len,
				     const uint8_t share_pk[static 32]);

/* Validate a packed xattr block (@n entries, names ascending). 0 or -EPROTO. */
P2P_MUST_CHECK int ns_xattrs_check(const uint8_t *p, size_t len, unsigned n);
/* A name usable in a directory: 1..255 bytes, no '/', no NUL, not "." or "..". */
bool ns_name_ok(const char *name, size_t len);

#endif
