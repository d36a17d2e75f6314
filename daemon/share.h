/* SPDX-License-Identifier: MIT */
/*
 * daemon/share.h - a share's keys on disk.
 *
 * A share is named by its Ed25519 public key. Holding the secret key is the
 * write capability; the public key plus the 32-byte read key is the read
 * capability (DESIGN.md "Data model"). The keys live in
 * STATE/shares/<public key hex>/share.key, mode 0600:
 *
 *   offset  size  field
 *   0       4     magic "P2SK"
 *   4       1     version (1)
 *   5       1     flags: bit 0 = the secret key is present (writable)
 *   6       2     reserved, 0
 *   8       32    public key
 *   40      64    secret key (zeros when read-only)
 *   104     32    read key
 *   136     8     XXH3-64 of bytes 0..135 (catches a damaged file)
 *
 * STATE/shares/default names the node's default share (its hex id).
 */
#ifndef P2P_DAEMON_SHARE_H
#define P2P_DAEMON_SHARE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"

#define SHARE_PK_LEN 32
#define SHARE_SK_LEN 64
#define SHARE_RK_LEN 32

struct share {
	uint8_t pk[SHARE_PK_LEN];
	uint8_t sk[SHARE_SK_LEN];
	uint8_t rk[SHARE_RK_LEN];
	bool writable;
	bool created; /* made just now (not joined or loaded) */
	char *dir;    /* STATE/shares/<hex> */
};

/* A new share (keys made here) in @state_dir; the default one if @make_default. */
P2P_MUST_CHECK int share_create(const char *state_dir, bool make_default, struct share *ret);
/* The share of a link, stored in @state_dir if new (a write link upgrades a
 * read-only copy). Prints errors: -EINVAL not a link, -EBADMSG a typo. */
P2P_MUST_CHECK int share_join(const char *state_dir, const char *link, struct share *ret);
P2P_MUST_CHECK int share_parse_link(const char *link, struct share *ret);
/* "p2pfs://w/…" (needs the secret key: -EACCES) or "p2pfs://r/…". @len >= SHARE_LINK_MAX. */
#define SHARE_LINK_MAX 128
P2P_MUST_CHECK int share_link(const struct share *s, bool write, char *out, size_t len);
/* Load the default share, creating a new share on first use. Prints errors. */
P2P_MUST_CHECK int share_default(const char *state_dir, struct share *ret);
P2P_MUST_CHECK int share_load(const char *dir, struct share *ret);
void share_done(struct share *s);

#endif
