// SPDX-License-Identifier: MIT
/* tests/unit/test_ident.c - node identity: key file, id derivation, proof of work. */
#include "net/ident.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void key_file_created_0600_and_reloaded(void)
{
	char *dir = t_tmpdir("ident"), path[512];
	struct peer_ident *a, *b;
	struct stat st;

	T_ASSERT_OK(peer_ident_load(dir, 0, &a));
	snprintf(path, sizeof(path), "%s/node.key", dir);
	T_ASSERT_OK(stat(path, &st));
	T_ASSERT_EQ(st.st_mode & 0777, 0600);
	T_ASSERT_OK(peer_ident_load(dir, 0, &b));
	T_ASSERT_MEM_EQ(peer_ident_id(a), peer_ident_id(b), PEER_ID_LEN);
	T_ASSERT(peer_id_verify(peer_ident_id(a), peer_ident_pk(a), 0));
	peer_ident_free(a);
	peer_ident_free(b);
	t_tmpdir_remove(dir);
	free(dir);
}

static void damaged_or_open_key_file_refused(void)
{
	char *dir = t_tmpdir("ident"), path[512];
	struct peer_ident *a;
	uint8_t byte;
	int fd;

	T_ASSERT_OK(peer_ident_load(dir, 0, &a));
	peer_ident_free(a);
	snprintf(path, sizeof(path), "%s/node.key", dir);
	fd = open(path, O_RDWR);
	T_ASSERT(fd >= 0);
	T_ASSERT_EQ(pread(fd, &byte, 1, 20), 1);
	byte ^= 1;
	T_ASSERT_EQ(pwrite(fd, &byte, 1, 20), 1);
	close(fd);
	T_ASSERT_EQ(peer_ident_load(dir, 0, &a), -EBADMSG);
	T_ASSERT_OK(chmod(path, 0644));
	T_ASSERT_EQ(peer_ident_load(dir, 0, &a), -EPERM);
	T_ASSERT_OK(truncate(path, 10));
	T_ASSERT_OK(chmod(path, 0600));
	T_ASSERT_EQ(peer_ident_load(dir, 0, &a), -EBADMSG);
	t_tmpdir_remove(dir);
	free(dir);
}

static void proof_of_work_required_and_checked(void)
{
	char *dir = t_tmpdir("ident");
	struct peer_ident *a, *b;

	T_ASSERT_OK(peer_ident_generate(8, &a));
	T_ASSERT(peer_id_pow_ok(peer_ident_id(a), 8));
	T_ASSERT(peer_id_verify(peer_ident_id(a), peer_ident_pk(a), 8));
	peer_ident_free(a);
	/* A stored id with no work is refused when the network asks for 12 bits
	 * (unless it happens to meet them: 1 in 4096). */
	T_ASSERT_OK(peer_ident_load(dir, 0, &a));
	if (!peer_id_pow_ok(peer_ident_id(a), 12))
		T_ASSERT_EQ(peer_ident_load(dir, 12, &b), -EKEYREJECTED);
	peer_ident_free(a);
	T_ASSERT_EQ(peer_ident_generate(PEER_POW_MAX + 1, &a), -EINVAL);
	t_tmpdir_remove(dir);
	free(dir);
}

static void id_bound_to_key_and_signatures_verify(void)
{
	struct peer_ident *a, *b;
	uint8_t sig[PEER_SIG_LEN];
	const char msg[] = "hello";

	T_ASSERT_OK(peer_ident_generate(0, &a));
	T_ASSERT_OK(peer_ident_generate(0, &b));
	T_ASSERT(!peer_id_verify(peer_ident_id(a), peer_ident_pk(b), 0));
	peer_ident_sign(a, msg, sizeof(msg), sig);
	T_ASSERT(peer_sig_verify(peer_ident_pk(a), msg, sizeof(msg), sig));
	T_ASSERT(!peer_sig_verify(peer_ident_pk(b), msg, sizeof(msg), sig));
	sig[3] ^= 4;
	T_ASSERT(!peer_sig_verify(peer_ident_pk(a), msg, sizeof(msg), sig));
	peer_ident_free(a);
	peer_ident_free(b);
}

T_MAIN(T_CASE(key_file_created_0600_and_reloaded), T_CASE(damaged_or_open_key_file_refused),
       T_CASE(proof_of_work_required_and_checked), T_CASE(id_bound_to_key_and_signatures_verify))
