// SPDX-License-Identifier: MIT
/*
 * net/ident.c - node identity: key file, id derivation, proof of work.
 *
 * The secret key lives in sodium_malloc'd memory (guard pages, wiped on free)
 * and never leaves this file except as signatures.
 */
#define LOG_SUBSYS "ident"
#include "net/ident.h"
#include "common/log.h"
#include "common/rbuf.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDENT_MAGIC 0x50324e4bU /* "P2NK" */
#define IDENT_VERSION 1
#define IDENT_FILE_LEN (4 + 1 + 3 + 32 + PEER_PK_LEN)

struct peer_ident {
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	uint8_t pk[PEER_PK_LEN];
	uint8_t seed[crypto_sign_SEEDBYTES];
	uint8_t id[PEER_ID_LEN];
};

void peer_id_from_pk(const uint8_t pk[static PEER_PK_LEN], uint8_t ret_id[static PEER_ID_LEN])
{
	crypto_hash_sha256(ret_id, pk, PEER_PK_LEN);
}

bool peer_id_pow_ok(const uint8_t id[static PEER_ID_LEN], unsigned bits)
{
	uint8_t h[32];

	if (bits == 0)
		return true;
	if (bits > PEER_POW_MAX)
		return false;
	crypto_hash_sha256(h, id, PEER_ID_LEN);
	for (unsigned i = 0; i < bits; i++)
		if (h[i / 8] & (0x80U >> (i % 8)))
			return false;
	return true;
}

bool peer_id_verify(const uint8_t id[static PEER_ID_LEN], const uint8_t pk[static PEER_PK_LEN],
		    unsigned pow_bits)
{
	uint8_t want[PEER_ID_LEN];

	peer_id_from_pk(pk, want);
	return sodium_memcmp(want, id, PEER_ID_LEN) == 0 && peer_id_pow_ok(id, pow_bits);
}

bool peer_sig_verify(const uint8_t pk[static PEER_PK_LEN], const void *msg, size_t len,
		     const uint8_t sig[static PEER_SIG_LEN])
{
	return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

static struct peer_ident *ident_alloc(void)
{
	struct peer_ident *id;

	if (sodium_init() < 0)
		return NULL;
	if (!(id = sodium_malloc(sizeof(*id))))
		return NULL;
	memset(id, 0, sizeof(*id));
	return id;
}

/* Fill @id from its seed; 0, or -EKEYREJECTED if the id misses @pow_bits. */
static int ident_derive(struct peer_ident *id, unsigned pow_bits)
{
	crypto_sign_seed_keypair(id->pk, id->sk, id->seed);
	peer_id_from_pk(id->pk, id->id);
	return peer_id_pow_ok(id->id, pow_bits) ? 0 : -EKEYREJECTED;
}

static void ident_make(struct peer_ident *id, unsigned pow_bits)
{
	do
		randombytes_buf(id->seed, sizeof(id->seed));
	while (ident_derive(id, pow_bits) < 0);
}

int peer_ident_generate(unsigned pow_bits, struct peer_ident **ret_ident)
{
	struct peer_ident *id;

	if (pow_bits > PEER_POW_MAX)
		return -EINVAL;
	if (!(id = ident_alloc()))
		return -ENOMEM;
	ident_make(id, pow_bits);
	*ret_ident = id;
	return 0;
}

static int ident_read(const char *path, struct peer_ident *id, unsigned pow_bits)
{
	uint8_t buf[IDENT_FILE_LEN + 1], pk[PEER_PK_LEN], resv[3];
	struct stat st;
	struct rbuf r;
	uint32_t magic;
	uint8_t ver;
	ssize_t n;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (st.st_mode & 077) {
		log_error("%s is readable by others (mode %o): fix with chmod 600 %s", path,
			  st.st_mode & 0777, path);
		close(fd);
		return -EPERM;
	}
	n = read(fd, buf, sizeof(buf));
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	rbuf_init(&r, buf, (size_t)n);
	if (rbuf_u32(&r, &magic) < 0 || rbuf_u8(&r, &ver) < 0 || rbuf_copy(&r, resv, 3) < 0 ||
	    rbuf_copy(&r, id->seed, sizeof(id->seed)) < 0 || rbuf_copy(&r, pk, sizeof(pk)) < 0 ||
	    rbuf_end(&r) < 0 || magic != IDENT_MAGIC || ver != IDENT_VERSION) {
		sodium_memzero(buf, sizeof(buf));
		return -EBADMSG;
	}
	sodium_memzero(buf, sizeof(buf));
	rc = ident_derive(id, pow_bits);
	if (sodium_memcmp(pk, id->pk, sizeof(pk)) != 0)
		return -EBADMSG;
	return rc;
}

static int ident_write(const char *dir, const char *path, const struct peer_ident *id)
{
	uint8_t buf[IDENT_FILE_LEN];
	char tmp[PATH_MAX];
	struct wbuf w;
	int fd, dfd, rc = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	wbuf_init(&w, buf, sizeof(buf));
	wbuf_u32(&w, IDENT_MAGIC);
	wbuf_u8(&w, IDENT_VERSION);
	wbuf_bytes(&w, (const uint8_t[3]){ 0 }, 3);
	wbuf_bytes(&w, id->seed, sizeof(id->seed));
	wbuf_bytes(&w, id->pk, sizeof(id->pk));
	assert(wbuf_done(&w) == (long)sizeof(buf));
	(void)unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		rc = -errno;
		goto out;
	}
	if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		(void)unlink(tmp);
		goto out;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
out:
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int peer_ident_load(const char *state_dir, unsigned pow_bits, struct peer_ident **ret_ident)
{
	struct peer_ident *id;
	char path[PATH_MAX];
	int rc;

	if (pow_bits > PEER_POW_MAX)
		return -EINVAL;
	if ((size_t)snprintf(path, sizeof(path), "%s/node.key", state_dir) >= sizeof(path))
		return -ENAMETOOLONG;
	if (!(id = ident_alloc()))
		return -ENOMEM;
	rc = ident_read(path, id, pow_bits);
	if (rc == -ENOENT) {
		ident_make(id, pow_bits);
		rc = ident_write(state_dir, path, id);
		if (rc == 0) {
			char hex[17];

			p2p_hex(hex, id->id, 8);
			log_info("created node identity %s in %s", hex, path);
		}
	} else if (rc == -EKEYREJECTED) {
		log_error("node id in %s does not meet the required proof of work (%u bits): move "
			  "the file away to make a new identity",
			  path, pow_bits);
	} else if (rc == -EBADMSG) {
		log_error("%s is damaged: move it away to make a new identity", path);
	}
	if (rc < 0) {
		sodium_free(id);
		return rc;
	}
	*ret_ident = id;
	return 0;
}

void peer_ident_free(struct peer_ident *ident)
{
	if (ident)
		sodium_free(ident); /* zeroes before unmapping */
}

const uint8_t *peer_ident_id(const struct peer_ident *ident)
{
	return ident->id;
}

const uint8_t *peer_ident_pk(const struct peer_ident *ident)
{
	return ident->pk;
}

void peer_ident_sign(const struct peer_ident *ident, const void *msg, size_t len,
		     uint8_t ret_sig[static PEER_SIG_LEN])
{
	crypto_sign_detached(ret_sig, NULL, msg, len, ident->sk);
}
