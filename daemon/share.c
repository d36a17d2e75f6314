// SPDX-License-Identifier: MIT
/*
 * daemon/share.c - loading and creating share key files (format in share.h).
 *
 * Key files are written to a temporary name, fsynced and renamed, so a crash
 * never leaves a half-written key; a file readable by others is refused.
 */
#define LOG_SUBSYS "share"
#include "daemon/share.h"
#include "common/rbuf.h"
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#define SHARE_MAGIC 0x5032534bU /* "P2SK" */
#define SHARE_FILE_LEN 144

void share_done(struct share *s)
{
	sodium_memzero(s->sk, sizeof(s->sk));
	sodium_memzero(s->rk, sizeof(s->rk));
	free(s->dir);
	s->dir = NULL;
}

int share_load(const char *dir, struct share *s)
{
	char *path = cfg_path(dir, "share.key");
	uint8_t buf[SHARE_FILE_LEN + 1];
	struct stat st;
	struct rbuf r;
	uint32_t magic;
	uint8_t ver, flags;
	uint16_t resv;
	uint64_t sum;
	ssize_t n;
	int fd, rc = -EPROTO;

	memset(s, 0, sizeof(*s));
	if (!path)
		return -ENOMEM;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		cli_err("cannot open the share key %s: %s", path, strerror(-rc));
		free(path);
		return rc;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
		cli_err("share key %s is readable by others (mode %o): fix with chmod 600 %s", path,
			st.st_mode & 0777, path);
		close(fd);
		free(path);
		return -EPERM;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n != SHARE_FILE_LEN)
		goto bad;
	rbuf_init(&r, buf, (size_t)n);
	if (rbuf_u32(&r, &magic) < 0 || rbuf_u8(&r, &ver) < 0 || rbuf_u8(&r, &flags) < 0 ||
	    rbuf_u16(&r, &resv) < 0 || rbuf_copy(&r, s->pk, SHARE_PK_LEN) < 0 ||
	    rbuf_copy(&r, s->sk, SHARE_SK_LEN) < 0 || rbuf_copy(&r, s->rk, SHARE_RK_LEN) < 0 ||
	    rbuf_u64(&r, &sum) < 0 || rbuf_end(&r) < 0)
		goto bad;
	if (magic != SHARE_MAGIC || ver != 1 || (flags & ~1U) || resv ||
	    sum != XXH3_64bits(buf, SHARE_FILE_LEN - 8))
		goto bad;
	s->writable = flags & 1;
	if (s->writable) {
		uint8_t pk[SHARE_PK_LEN];

		/* The secret key must match the public key it claims. */
		if (crypto_sign_ed25519_sk_to_pk(pk, s->sk) != 0 ||
		    sodium_memcmp(pk, s->pk, SHARE_PK_LEN) != 0)
			goto bad;
	}
	if (!(s->dir = strdup(dir))) {
		rc = -ENOMEM;
		goto out;
	}
	free(path);
	return 0;
bad:
	cli_err("share key %s is damaged (restore it from a backup, or remove its directory "
		"%s to start a new share)",
		path, dir);
out:
	share_done(s);
	free(path);
	return rc;
}

static int write_atomic(const char *path, const uint8_t *data, size_t len)
{
	char tmp[4200];
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Write @s's key file into STATE/shares/<hex>/ (creating the directory). */
static int share_store(const char *state_dir, struct share *s)
{
	uint8_t buf[SHARE_FILE_LEN];
	char hex[2 * SHARE_PK_LEN + 1], *dir = NULL, *path = NULL;
	struct wbuf w;
	int rc = -ENOMEM;

	wbuf_init(&w, buf, sizeof(buf));
	wbuf_u32(&w, SHARE_MAGIC);
	wbuf_u8(&w, 1);
	wbuf_u8(&w, s->writable ? 1 : 0);
	wbuf_u16(&w, 0);
	wbuf_bytes(&w, s->pk, SHARE_PK_LEN);
	wbuf_bytes(&w, s->sk, SHARE_SK_LEN);
	wbuf_bytes(&w, s->rk, SHARE_RK_LEN);
	wbuf_u64(&w, XXH3_64bits(buf, SHARE_FILE_LEN - 8));
	if (wbuf_done(&w) != SHARE_FILE_LEN)
		return -EINVAL;
	p2p_hex(hex, s->pk, SHARE_PK_LEN);
	{
		char *shares = cfg_path(state_dir, "shares");

		dir = shares ? cfg_path(shares, hex) : NULL;
		free(shares);
	}
	if (!dir || !(path = cfg_path(dir, "share.key")))
		goto out;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		rc = -errno;
	else if ((rc = write_atomic(path, buf, sizeof(buf))) == 0)
		rc = fsync_dir(dir);
	if (rc == 0) {
		free(s->dir);
		s->dir = dir;
		dir = NULL;
	}
out:
	sodium_memzero(buf, sizeof(buf));
	free(dir);
	free(path);
	return rc;
}

static int set_default(const char *state_dir, const uint8_t pk[static SHARE_PK_LEN])
{
	char hex[2 * SHARE_PK_LEN + 1], *shares = cfg_path(state_dir, "shares");
	char *def = shares ? cfg_path(shares, "default") : NULL;
	int rc;

	p2p_hex(hex, pk, SHARE_PK_LEN);
	rc = def ? write_atomic(def, (const uint8_t *)hex, strlen(hex)) : -ENOMEM;
	if (rc == 0)
		rc = fsync_dir(shares);
	free(def);
	free(shares);
	return rc;
}

int share_create(const char *state_dir, bool make_default, struct share *s)
{
	char hex[2 * SHARE_PK_LEN + 1];
	int rc;

	memset(s, 0, sizeof(*s));
	crypto_sign_ed25519_keypair(s->pk, s->sk);
	randombytes_buf(s->rk, sizeof(s->rk));
	s->writable = true;
	s->created = true;
	if ((rc = share_store(state_dir, s)) == 0 && make_default)
		rc = set_default(state_dir, s->pk);
	if (rc < 0) {
		cli_err_path(rc, "cannot create a share in", state_dir);
		share_done(s);
		return rc;
	}
	p2p_hex(hex, s->pk, SHARE_PK_LEN);
	log_notice("created a new share %.16s…", hex);
	return 0;
}

/* ---- links: p2pfs://w/<base32> (write) and p2pfs://r/<base32> (read) ----
 * payload: version (1), then for w the Ed25519 seed (32) and the read key
 * (32), for r the public key (32) and the read key (32); then 4 bytes of
 * SHA-256("p2pfs-link" || kind || payload), so a typo is an error and never
 * another share. Base32 (RFC 4648, lower case, no padding). */

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
#define LINK_PAYLOAD (1 + 32 + 32)
#define LINK_BYTES (LINK_PAYLOAD + 4)

static void link_sum(char kind, const uint8_t *payload, uint8_t out[4])
{
	crypto_hash_sha256_state st;
	uint8_t h[32];

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)"p2pfs-link", 10);
	crypto_hash_sha256_update(&st, (const uint8_t *)&kind, 1);
	crypto_hash_sha256_update(&st, payload, LINK_PAYLOAD);
	crypto_hash_sha256_final(&st, h);
	memcpy(out, h, 4);
}

int share_link(const struct share *s, bool write, char *out, size_t len)
{
	uint8_t raw[LINK_BYTES];
	char kind = write ? 'w' : 'r';
	size_t o, bits = 0;
	uint32_t acc = 0;

	if (write && !s->writable)
		return -EACCES;
	if (len < 12 + (LINK_BYTES * 8 + 4) / 5 + 1)
		return -ENOSPC;
	raw[0] = 1;
	memcpy(raw + 1, write ? s->sk : s->pk, 32); /* libsodium's sk starts with the seed */
	memcpy(raw + 33, s->rk, 32);
	link_sum(kind, raw, raw + LINK_PAYLOAD);
	o = (size_t)snprintf(out, len, "p2pfs://%c/", kind);
	for (size_t i = 0; i < LINK_BYTES; i++) {
		acc = acc << 8 | raw[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = b32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits)
		out[o++] = b32[(acc << (5 - bits)) & 31];
	out[o] = '\0';
	sodium_memzero(raw, sizeof(raw));
	return 0;
}

int share_parse_link(const char *link, struct share *s)
{
	uint8_t raw[LINK_BYTES], sum[4];
	size_t n = 0, bits = 0;
	uint32_t acc = 0;
	char kind;
	const char *p;

	memset(s, 0, sizeof(*s));
	if (strncmp(link, "p2pfs://", 8) || (link[8] != 'w' && link[8] != 'r') || link[9] != '/')
		return -EINVAL;
	kind = link[8];
	for (p = link + 10; *p; p++) {
		const char *at = strchr(b32, *p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);

		if (!at || !*p)
			return -EINVAL;
		acc = acc << 5 | (uint32_t)(at - b32);
		bits += 5;
		if (bits >= 8) {
			if (n == LINK_BYTES)
				return -EINVAL;
			raw[n++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	if (n != LINK_BYTES || raw[0] != 1)
		return -EINVAL;
	link_sum(kind, raw, sum);
	if (sodium_memcmp(sum, raw + LINK_PAYLOAD, 4) != 0)
		return -EBADMSG;
	memcpy(s->rk, raw + 33, 32);
	if (kind == 'w') {
		crypto_sign_ed25519_seed_keypair(s->pk, s->sk, raw + 1);
		s->writable = true;
	} else {
		memcpy(s->pk, raw + 1, 32);
	}
	sodium_memzero(raw, sizeof(raw));
	return 0;
}

int share_join(const char *state_dir, const char *link, struct share *s)
{
	struct share have;
	char hex[2 * SHARE_PK_LEN + 1], *shares, *dir;
	int rc;

	if ((rc = share_parse_link(link, s)) < 0) {
		cli_err(rc == -EBADMSG
			    ? "that share link has a typo (its checksum does not match): "
			      "copy it again"
			    : "'%s' is not a p2pfs share link (p2pfs://w/… or p2pfs://r/…)",
			link);
		return rc;
	}
	p2p_hex(hex, s->pk, SHARE_PK_LEN);
	shares = cfg_path(state_dir, "shares");
	dir = shares ? cfg_path(shares, hex) : NULL;
	free(shares);
	if (!dir) {
		share_done(s);
		return -ENOMEM;
	}
	/* Known already: keep it, but a write link upgrades a read-only copy. */
	if (access(dir, F_OK) == 0 && (rc = share_load(dir, &have)) == 0) {
		if (have.writable || !s->writable) {
			share_done(s);
			*s = have;
			free(dir);
			return 0;
		}
		share_done(&have);
	}
	free(dir);
	if ((rc = share_store(state_dir, s)) < 0) {
		cli_err_path(rc, "cannot store the share in", state_dir);
		share_done(s);
	}
	return rc;
}

int share_default(const char *state_dir, struct share *s)
{
	char *shares = cfg_path(state_dir, "shares"), *def = NULL, *dir = NULL;
	char hex[2 * SHARE_PK_LEN + 2];
	uint8_t pk[SHARE_PK_LEN];
	ssize_t n;
	int fd, rc;

	if (!shares || !(def = cfg_path(shares, "default"))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((fd = open(def, O_RDONLY | O_CLOEXEC)) < 0) {
		int open_err = errno;

		rc = open_err == ENOENT ? share_create(state_dir, true, s) : -open_err;
		if (rc < 0 && open_err != ENOENT)
			cli_err_path(rc, "cannot read", def);
		goto out;
	}
	n = read(fd, hex, sizeof(hex) - 1);
	close(fd);
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	hex[n] = '\0';
	if (n > 0 && hex[n - 1] == '\n')
		hex[n - 1] = '\0';
	if (p2p_unhex(pk, sizeof(pk), hex) < 0) {
		cli_err("%s does not name a share (expected %d hex digits)", def, 2 * SHARE_PK_LEN);
		rc = -EPROTO;
		goto out;
	}
	if (!(dir = cfg_path(shares, hex))) {
		rc = -ENOMEM;
		goto out;
	}
	rc = share_load(dir, s);
	if (rc == 0 && memcmp(pk, s->pk, sizeof(pk)) != 0) {
		cli_err("share key in %s does not belong to share %.16s…", dir, hex);
		share_done(s);
		rc = -EPROTO;
	}
out:
	free(dir);
	free(def);
	free(shares);
	return rc;
}
