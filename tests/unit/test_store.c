// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_store.c - the chunk store: round trips, dedup, verified
 * puts, pins, corruption detection (get, read, scrub), eviction and the disk
 * space it returns, the disk reserve, crash recovery under SIGKILL, torn and
 * holed pack tails, the directory lock, asynchronous reads on an event
 * loop, concurrent puts, marks and foreach, pack deletion, index memory.
 */
#include "chunkstore/cs_int.h"
#include "chunkstore/store.h"
#include "common/ev.h"
#include "common/tm.h"
#include "tests/lib/t.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct chunk {
	uint8_t id[CS_ID_LEN];
	uint8_t *data;
	size_t len;
};

static struct chunk mk(size_t len)
{
	struct chunk c = { .len = len };

	c.data = malloc(len ? len : 1);
	T_ASSERT(c.data);
	t_rand_fill(c.data, len);
	cs_id_compute(c.data, len, c.id);
	return c;
}

static struct chunk *mk_many(size_t n, size_t minlen, size_t maxlen)
{
	struct chunk *c = calloc(n, sizeof(*c));

	T_ASSERT(c);
	for (size_t i = 0; i < n; i++)
		c[i] = mk(minlen + t_rand() % (maxlen - minlen + 1));
	return c;
}

static void free_many(struct chunk *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].data);
	free(c);
}

static void expect_chunk(struct cs_store *s, const struct chunk *c)
{
	uint8_t *buf;
	size_t len;
	uint32_t hlen;

	T_ASSERT_OK(cs_get(s, c->id, &buf, &len));
	T_ASSERT_EQ(len, c->len);
	T_ASSERT_MEM_EQ(buf, c->data, len);
	free(buf);
	T_ASSERT_OK(cs_has(s, c->id, &hlen));
	T_ASSERT_EQ(hlen, c->len);
}

static struct cs_store *open_store(const char *dir, const struct cs_store_opts *o)
{
	struct cs_store *s;

	T_ASSERT_OK(cs_store_open(dir, o, &s));
	return s;
}

static struct cs_stats stats(struct cs_store *s)
{
	struct cs_stats st;

	cs_store_stats(s, &st);
	return st;
}

/* Sum of st_blocks * 512 and of sizes over the pack files in @dir. */
static void pack_usage(const char *dir, uint64_t *ret_alloc, uint64_t *ret_size, int *ret_n)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	T_ASSERT(d);
	*ret_alloc = *ret_size = 0;
	*ret_n = 0;
	while ((e = readdir(d))) {
		char path[1024];
		struct stat st;

		if (!strstr(e->d_name, ".pack"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		T_ASSERT(stat(path, &st) == 0);
		*ret_alloc += (uint64_t)st.st_blocks * 512;
		*ret_size += (uint64_t)st.st_size;
		(*ret_n)++;
	}
	closedir(d);
}

/* Find @len bytes of @data in a pack file: its path and offset. */
static bool find_on_disk(const char *dir, const uint8_t *data, size_t len, char *ret_path,
			 off_t *ret_off)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;

	T_ASSERT(d);
	while (!found && (e = readdir(d))) {
		char path[1024];
		struct stat st;
		uint8_t *buf;
		void *at;
		int fd;

		if (!strstr(e->d_name, ".pack"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = open(path, O_RDONLY);
		T_ASSERT(fd >= 0 && fstat(fd, &st) == 0);
		buf = malloc((size_t)st.st_size + 1);
		T_ASSERT(buf && pread(fd, buf, (size_t)st.st_size, 0) == st.st_size);
		close(fd);
		if ((at = memmem(buf, (size_t)st.st_size, data, len))) {
			strcpy(ret_path, path);
			*ret_off = (off_t)((uint8_t *)at - buf);
			found = true;
		}
		free(buf);
	}
	closedir(d);
	return found;
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	T_ASSERT(fd >= 0);
	T_ASSERT(pread(fd, &b, 1, off) == 1);
	b ^= 0x40;
	T_ASSERT(pwrite(fd, &b, 1, off) == 1);
	close(fd);
}

/* ---- round trips ---- */

static void put_get_has_round_trip(void)
{
	char *dir = t_tmpdir("cs");
	struct chunk *c = mk_many(60, 0, 300000);
	struct cs_store *s = open_store(dir, NULL);
	uint8_t absent[CS_ID_LEN] = { 1 }, *buf;
	struct cs_stats st;
	uint64_t bytes = 0;
	uint32_t len;
	size_t blen;

	for (size_t i = 0; i < 60; i++) {
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, i % 2 ? CS_PUT_PIN : 0), 1);
		bytes += c[i].len;
	}
	for (size_t i = 0; i < 60; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_EQ(cs_has(s, absent, &len), -ENOENT);
	T_ASSERT_EQ(cs_get(s, absent, &buf, &blen), -ENOENT);
	st = stats(s);
	T_ASSERT_EQ(st.chunks, 60);
	T_ASSERT_EQ(st.bytes, bytes);
	T_ASSERT_EQ(st.pinned_chunks, 30);
	T_ASSERT_EQ(st.pinned_bytes + st.cache_bytes, bytes);
	T_ASSERT_EQ(st.puts, 60);
	T_ASSERT_EQ(st.gets, 60);
	T_ASSERT(st.disk_bytes >= bytes);
	T_ASSERT(st.index_mem > 0);
	T_ASSERT_OK(cs_store_close(s));

	/* A clean close leaves a checkpoint that covers everything: nothing to scan. */
	s = open_store(dir, NULL);
	st = stats(s);
	T_ASSERT_EQ(st.chunks, 60);
	T_ASSERT_EQ(st.pinned_chunks, 30);
	T_ASSERT_EQ(st.open_scan_bytes, 0);
	for (size_t i = 0; i < 60; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_OK(cs_store_close(s));
	free_many(c, 60);
	t_tmpdir_remove(dir);
	free(dir);
}

static void dedup_verify_and_limits(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store *s = open_store(dir, NULL);
	struct chunk a = mk(100000), b = mk(5000);
	uint8_t wrong[CS_ID_LEN];
	uint64_t disk;
	uint32_t len;

	T_ASSERT_EQ(cs_put(s, a.id, a.data, a.len, 0), 1);
	disk = stats(s).disk_bytes;
	T_ASSERT_EQ(cs_put(s, a.id, a.data, a.len, 0), 0);
	T_ASSERT_EQ(cs_put(s, a.id, a.data, a.len, CS_PUT_VERIFY), 0);
	T_ASSERT_EQ(stats(s).dedup_hits, 2);
	T_ASSERT_EQ(stats(s).disk_bytes, disk);
	T_ASSERT_EQ(stats(s).chunks, 1);

	memcpy(wrong, b.id, CS_ID_LEN);
	wrong[5] ^= 1;
	T_ASSERT_EQ(cs_put(s, wrong, b.data, b.len, CS_PUT_VERIFY), -EBADMSG);
	T_ASSERT_EQ(cs_has(s, wrong, &len), -ENOENT);
	T_ASSERT_EQ(cs_put(s, b.id, b.data, b.len, CS_PUT_VERIFY), 1);
	expect_chunk(s, &b);
	T_ASSERT_EQ(cs_put(s, wrong, b.data, CS_CHUNK_MAX_LIMIT + 1, 0), -EMSGSIZE);
	T_ASSERT_OK(cs_store_close(s));
	free(a.data);
	free(b.data);
	t_tmpdir_remove(dir);
	free(dir);
}

/* Runs @fn in a child process that exits without closing the store: a crash for the disk. */
static void in_child(void (*fn)(const char *dir, void *arg), const char *dir, void *arg)
{
	pid_t pid = fork();
	int status;

	T_ASSERT(pid >= 0);
	if (pid == 0) {
		fn(dir, arg);
		_exit(0);
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

struct pin_case {
	struct chunk c[3];
};

static void pin_child(const char *dir, void *arg)
{
	struct pin_case *pc = arg;
	struct cs_store *s = open_store(dir, NULL);

	/* c0: put pinned, then unpinned; c1: put unpinned, then pinned; c2: pinned by a put. */
	T_ASSERT_OK(cs_unpin(s, pc->c[0].id));
	T_ASSERT_OK(cs_pin(s, pc->c[1].id));
	T_ASSERT_EQ(cs_put(s, pc->c[2].id, pc->c[2].data, pc->c[2].len, CS_PUT_PIN), 0);
	T_ASSERT_OK(cs_store_sync(s));
	/* No close: the records must carry the pin changes. */
}

static void pin_and_unpin_survive_a_crash(void)
{
	char *dir = t_tmpdir("cs");
	struct pin_case pc = { { mk(4000), mk(5000), mk(6000) } };
	struct cs_store *s = open_store(dir, NULL);
	uint8_t absent[CS_ID_LEN] = { 9 };
	struct cs_stats st;

	T_ASSERT_EQ(cs_put(s, pc.c[0].id, pc.c[0].data, pc.c[0].len, CS_PUT_PIN), 1);
	T_ASSERT_EQ(cs_put(s, pc.c[1].id, pc.c[1].data, pc.c[1].len, 0), 1);
	T_ASSERT_EQ(cs_put(s, pc.c[2].id, pc.c[2].data, pc.c[2].len, 0), 1);
	T_ASSERT_EQ(cs_pin(s, absent), -ENOENT);
	T_ASSERT_EQ(cs_unpin(s, absent), -ENOENT);
	st = stats(s);
	T_ASSERT_EQ(st.pinned_chunks, 1);
	T_ASSERT_EQ(st.pinned_bytes, 4000);
	T_ASSERT_EQ(st.cache_bytes, 11000);
	T_ASSERT_OK(cs_store_close(s));

	in_child(pin_child, dir, &pc);
	s = open_store(dir, NULL);
	st = stats(s);
	T_ASSERT(st.open_scan_bytes > 0);
	T_ASSERT_EQ(st.pinned_chunks, 2);
	T_ASSERT_EQ(st.pinned_bytes, 11000);
	T_ASSERT_EQ(st.cache_bytes, 4000);
	for (int i = 0; i < 3; i++)
		expect_chunk(s, &pc.c[i]);
	T_ASSERT_OK(cs_store_close(s));
	for (int i = 0; i < 3; i++)
		free(pc.c[i].data);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- corruption ---- */

struct read_result {
	int calls, rc;
	struct cs_buf *buf;
};

static void on_read_cb(void *arg, int rc, struct cs_buf *b)
{
	struct read_result *r = arg;

	r->calls++;
	r->rc = rc;
	r->buf = b ? cs_buf_ref(b) : NULL;
}

static void run_loop_until(struct ev_loop *l, const int *calls, int want)
{
	uint64_t until = tm_mono_ms() + 10000;

	while (*calls < want && tm_mono_ms() < until)
		T_ASSERT_OK(ev_loop_run_once(l, 50));
	T_ASSERT(*calls >= want);
}

struct bad_list {
	int n;
	uint8_t ids[8][CS_ID_LEN];
	int rc[8];
};

static void on_bad(void *arg, const uint8_t id[static CS_ID_LEN], int rc)
{
	struct bad_list *b = arg;

	if (b->n < 8) {
		memcpy(b->ids[b->n], id, CS_ID_LEN);
		b->rc[b->n] = rc;
	}
	b->n++;
}

static void corruption_is_detected_never_returned(void)
{
	char *dir = t_tmpdir("cs"), path[1024];
	struct chunk *c = mk_many(6, 20000, 60000);
	struct cs_store *s = open_store(dir, NULL);
	struct read_result rr = { 0 };
	struct cs_buf *b = NULL;
	struct bad_list bad = { 0 };
	struct ev_loop *l;
	struct chunk liar = mk(7000);
	uint8_t *buf;
	size_t len;
	uint32_t hlen;
	off_t off;

	for (int i = 0; i < 6; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, CS_PUT_PIN), 1);
	/* A record whose checksums hold but whose data is not what its id says. */
	liar.id[0] ^= 0xff;
	T_ASSERT_EQ(cs_put(s, liar.id, liar.data, liar.len, 0), 1);
	T_ASSERT_OK(cs_store_sync(s));

	/* Data byte of c0 (get), c1 (read), c2 (scrub); header byte of c3 (get). */
	for (int i = 0; i < 3; i++) {
		T_ASSERT(find_on_disk(dir, c[i].data, 64, path, &off));
		flip_byte(path, off + (off_t)c[i].len / 2);
	}
	T_ASSERT(find_on_disk(dir, c[3].data, 64, path, &off));
	flip_byte(path, off - 40); /* inside the id field of the header */

	T_ASSERT_EQ(cs_get(s, c[0].id, &buf, &len), -EBADMSG);
	T_ASSERT_EQ(cs_has(s, c[0].id, &hlen), -ENOENT); /* dropped: can be fetched again */
	T_ASSERT_EQ(cs_get(s, c[0].id, &buf, &len), -ENOENT);
	T_ASSERT_EQ(cs_get(s, c[3].id, &buf, &len), -EBADMSG);
	T_ASSERT_EQ(stats(s).corrupt, 2);

	T_ASSERT_OK(ev_loop_new(64, &l));
	cs_store_set_loop(s, l);
	T_ASSERT_EQ(cs_read(s, c[1].id, on_read_cb, &rr, &b), 0);
	run_loop_until(l, &rr.calls, 1);
	T_ASSERT_EQ(rr.calls, 1);
	T_ASSERT_EQ(rr.rc, -EBADMSG);
	T_ASSERT(rr.buf == NULL);
	T_ASSERT_EQ(cs_read(s, c[1].id, on_read_cb, &rr, &b), -ENOENT);

	T_ASSERT_EQ(cs_scrub(s, on_bad, NULL, &bad), 2);
	T_ASSERT_EQ(bad.n, 2);
	for (int i = 0; i < 2; i++) {
		T_ASSERT_EQ(bad.rc[i], -EBADMSG);
		T_ASSERT(memcmp(bad.ids[i], c[2].id, CS_ID_LEN) == 0 ||
			 memcmp(bad.ids[i], liar.id, CS_ID_LEN) == 0);
	}
	T_ASSERT_EQ(stats(s).corrupt, 5);
	T_ASSERT_EQ(stats(s).chunks, 2);
	for (int i = 4; i < 6; i++)
		expect_chunk(s, &c[i]);
	/* A second scrub finds a clean store; a refetched chunk is stored anew. */
	memset(&bad, 0, sizeof(bad));
	T_ASSERT_EQ(cs_scrub(s, on_bad, NULL, &bad), 0);
	T_ASSERT_EQ(cs_put(s, c[0].id, c[0].data, c[0].len, CS_PUT_VERIFY), 1);
	expect_chunk(s, &c[0]);
	T_ASSERT_OK(cs_store_close(s));
	ev_loop_free(l);

	/* The drops persist: after reopening, only the good and the refetched chunks. */
	s = open_store(dir, NULL);
	T_ASSERT_EQ(stats(s).chunks, 3);
	T_ASSERT_EQ(cs_scrub(s, NULL, NULL, NULL), 0);
	T_ASSERT_OK(cs_store_close(s));
	free(liar.data);
	free_many(c, 6);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- eviction ---- */

static void eviction_is_lru_spares_pins_and_frees_space(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts o = { .cache_quota = 16 * 65536 };
	struct chunk *c = mk_many(40, 65536, 65536), *p = mk_many(24, 65536, 65536);
	struct cs_store *s = open_store(dir, &o);
	uint64_t alloc0, alloc1, size;
	struct cs_stats st;
	uint8_t *buf;
	size_t len;
	uint32_t hlen;
	int n;

	for (int i = 0; i < 16; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, 0), 1);
	/* Pinned data is outside the quota and never evicted. */
	for (int i = 0; i < 24; i++)
		T_ASSERT_EQ(cs_put(s, p[i].id, p[i].data, p[i].len, CS_PUT_PIN), 1);
	T_ASSERT_EQ(stats(s).evictions, 0);
	/* Use c0..c3: they become the most recent. */
	for (int i = 0; i < 4; i++) {
		T_ASSERT_OK(cs_get(s, c[i].id, &buf, &len));
		free(buf);
	}
	T_ASSERT_OK(cs_store_sync(s));
	pack_usage(dir, &alloc0, &size, &n);
	for (int i = 16; i < 40; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, 0), 1);
	st = stats(s);
	T_ASSERT_EQ(st.evictions, 24);
	T_ASSERT(st.cache_bytes <= o.cache_quota);
	/* Least recently used first: c4..c15 went, then c0..c3, then c16..c23. */
	for (int i = 4; i < 16; i++)
		T_ASSERT_EQ(cs_has(s, c[i].id, &hlen), -ENOENT);
	for (int i = 24; i < 40; i++)
		expect_chunk(s, &c[i]);
	for (int i = 0; i < 24; i++)
		expect_chunk(s, &p[i]);
	T_ASSERT_EQ(cs_put(s, c[0].id, c[0].data, 17 * 65536, 0), -ENOSPC); /* over the quota */

	/* Once the deletes are durable the space comes back (blocks punched out), at once. */
	T_ASSERT_OK(cs_store_sync(s));
	for (uint64_t until = tm_mono_ms() + 5000;; usleep(10000)) {
		pack_usage(dir, &alloc1, &size, &n);
		if (alloc1 < alloc0 + 4 * 65536 || tm_mono_ms() > until)
			break;
	}
	printf("# packs: %llu bytes allocated before 24 more puts, %llu after (24 evicted)\n",
	       (unsigned long long)alloc0, (unsigned long long)alloc1);
	T_ASSERT(alloc1 < alloc0 + 4 * 65536);
	T_ASSERT(stats(s).disk_bytes < size);
	T_ASSERT_OK(cs_store_close(s));

	/* Evictions persist. */
	s = open_store(dir, &o);
	T_ASSERT_EQ(stats(s).chunks, 16 + 24);
	for (int i = 4; i < 24; i++)
		T_ASSERT_EQ(cs_has(s, c[i].id, &hlen), -ENOENT);
	T_ASSERT_OK(cs_store_close(s));
	free_many(c, 40);
	free_many(p, 24);
	t_tmpdir_remove(dir);
	free(dir);
}

static void sampled_eviction_keeps_the_recently_used(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts o = { .cache_quota = 1000 * 2048 };
	struct chunk *c = mk_many(2000, 2048, 2048);
	struct cs_store *s = open_store(dir, &o);
	int kept = 0;
	uint32_t hlen;

	for (int i = 0; i < 1000; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, 0), 1);
	/* Touch 100 of the oldest, then push 1000 more through the cache. */
	for (int i = 0; i < 100; i++)
		T_ASSERT_OK(cs_has(s, c[i].id, &hlen));
	for (int i = 0; i < 100; i++) {
		uint8_t *buf;
		size_t len;

		T_ASSERT_OK(cs_get(s, c[i].id, &buf, &len));
		free(buf);
	}
	for (int i = 1000; i < 1500; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, 0), 1);
	for (int i = 0; i < 100; i++)
		kept += cs_has(s, c[i].id, &hlen) == 0;
	printf("# %d of 100 recently used chunks survived 500 evictions\n", kept);
	T_ASSERT(kept >= 90);
	T_ASSERT(stats(s).cache_bytes <= o.cache_quota);
	T_ASSERT_EQ(stats(s).evictions, 500);
	T_ASSERT_OK(cs_store_close(s));
	free_many(c, 2000);
	t_tmpdir_remove(dir);
	free(dir);
}

static void disk_reserve_refuses_puts(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts o = { .min_free = 1ULL << 60 };
	struct cs_store *s = open_store(dir, &o);
	struct chunk a = mk(1000);
	uint32_t hlen;

	T_ASSERT_EQ(cs_put(s, a.id, a.data, a.len, CS_PUT_PIN), -ENOSPC);
	T_ASSERT_EQ(cs_has(s, a.id, &hlen), -ENOENT);
	T_ASSERT_EQ(stats(s).chunks, 0);
	T_ASSERT_OK(cs_store_close(s));
	free(a.data);
	t_tmpdir_remove(dir);
	free(dir);
}

/*
 * A real ENOSPC from the disk (not the reserve): an 8 MiB tmpfs, filled up
 * by another file after the store measured it. Runs in a child with its own
 * mount namespace, so the mount dies with it. Needs root.
 */
static void enospc_child(const char *dir, void *arg)
{
	struct cs_store_opts o = { .min_free = 1 };
	struct chunk *c = mk_many(8, 100000, 100000), big = mk(1 << 20);
	char store[1024], filler[1024];
	struct cs_store *s;
	uint8_t *junk;
	uint32_t hlen;
	int fd;

	(void)arg;
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=8m") < 0)
		_exit(T_SKIP);
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	s = open_store(store, &o);
	for (int i = 0; i < 4; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, CS_PUT_PIN), 1);
	/* Fill the filesystem behind the store's back. */
	fd = open(filler, O_WRONLY | O_CREAT, 0600);
	junk = calloc(1, 65536);
	T_ASSERT(fd >= 0 && junk);
	while (write(fd, junk, 65536) > 0)
		;
	close(fd);
	T_ASSERT_EQ(cs_put(s, big.id, big.data, big.len, CS_PUT_PIN), -ENOSPC);
	T_ASSERT_EQ(cs_has(s, big.id, &hlen), -ENOENT); /* nothing half-indexed */
	for (int i = 0; i < 4; i++)
		expect_chunk(s, &c[i]);
	/* Room again: puts work, and everything survives a reopen. */
	T_ASSERT(unlink(filler) == 0);
	for (int i = 4; i < 8; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, CS_PUT_PIN), 1);
	T_ASSERT_OK(cs_store_close(s));
	s = open_store(store, &o);
	T_ASSERT_EQ(stats(s).chunks, 8);
	for (int i = 0; i < 8; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_EQ(cs_has(s, big.id, &hlen), -ENOENT);
	T_ASSERT_EQ(cs_scrub(s, NULL, NULL, NULL), 0);
	T_ASSERT_OK(cs_store_close(s));
	free(junk);
	free(big.data);
	free_many(c, 8);
}

static void disk_full_is_a_clean_error(void)
{
	char *dir = t_tmpdir("cs");
	pid_t pid = fork();
	int status;

	T_ASSERT(pid >= 0);
	if (pid == 0) {
		enospc_child(dir, NULL);
		_exit(0);
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	T_ASSERT(WIFEXITED(status));
	if (WEXITSTATUS(status) == T_SKIP)
		printf("# skipped: mounting a small tmpfs needs root\n");
	else
		T_ASSERT_EQ(WEXITSTATUS(status), 0);
	t_tmpdir_remove(dir);
	free(dir);
}

static void maintenance_checkpoints_and_punches_unasked(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts o = { .cache_quota = 4 << 20 };
	struct chunk *c = mk_many(24, 1 << 20, 1 << 20);
	struct cs_store *s = open_store(dir, &o);
	uint64_t alloc, size, until;
	int n;

	cs__set_ckpt_interval(s, 8 << 20);
	for (int i = 0; i < 24; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, 0), 1);
	T_ASSERT_EQ(stats(s).evictions, 20);
	/* No sync, no checkpoint call: the store's own thread does both within seconds. */
	until = tm_mono_ms() + 10000;
	do {
		usleep(50000);
		pack_usage(dir, &alloc, &size, &n);
	} while ((stats(s).checkpoints == 0 || alloc > (8ULL << 20)) && tm_mono_ms() < until);
	printf("# %llu checkpoints; packs hold %llu MiB in %llu MiB of files\n",
	       (unsigned long long)stats(s).checkpoints, (unsigned long long)(alloc >> 20),
	       (unsigned long long)(size >> 20));
	T_ASSERT(stats(s).checkpoints >= 1);
	T_ASSERT(alloc <= (8ULL << 20));
	for (int i = 20; i < 24; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_OK(cs_store_close(s));
	free_many(c, 24);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- crash recovery ---- */

#define CRASH_ROUNDS 6

struct crash_ctx {
	struct cs_store *s;
	int wfd;
	pthread_mutex_t lock; /* the pipe */
};

struct crash_thr {
	struct crash_ctx *x;
	uint64_t rng;
};

static void *crash_writer(void *arg)
{
	struct crash_thr *t = arg;
	struct crash_ctx *x = t->x;
	uint8_t rec[64][1 + CS_ID_LEN];
	int n = 0;

	for (;;) {
		struct chunk c;
		bool pin;

		t->rng ^= t->rng << 13;
		t->rng ^= t->rng >> 7;
		t->rng ^= t->rng << 17;
		c.len = 1024 + t->rng % (512 * 1024);
		pin = (t->rng >> 20) % 4 != 0;
		c.data = malloc(c.len);
		T_ASSERT(c.data);
		for (size_t i = 0; i < c.len; i += 8) {
			uint64_t v = t->rng * (i + 1) ^ i;

			memcpy(c.data + i, &v, P2P_MIN((size_t)8, c.len - i));
		}
		cs_id_compute(c.data, c.len, c.id);
		T_ASSERT_EQ(cs_put(x->s, c.id, c.data, c.len, pin ? CS_PUT_PIN : 0), 1);
		rec[n][0] = pin;
		memcpy(rec[n] + 1, c.id, CS_ID_LEN);
		n++;
		free(c.data);
		if (n == 64 || (t->rng >> 30) % 3 == 0) {
			T_ASSERT_OK(cs_store_sync(x->s));
			/* Synced: the parent may now expect these. */
			pthread_mutex_lock(&x->lock);
			T_ASSERT(write(x->wfd, rec, (size_t)n * sizeof(rec[0])) ==
				 (ssize_t)(n * sizeof(rec[0])));
			pthread_mutex_unlock(&x->lock);
			n = 0;
		}
	}
	return NULL;
}

/*
 * Two threads put and sync at once (so a kill can leave a hole before
 * complete records) while the main thread checkpoints every 40 ms.
 */
static void crash_child(const char *dir, int wfd)
{
	struct cs_store_opts o = { .pack_size = 8 << 20, .cache_quota = 24 << 20 };
	struct crash_ctx x = { .s = open_store(dir, &o), .wfd = wfd };
	struct crash_thr t[2];
	pthread_t th[2];

	pthread_mutex_init(&x.lock, NULL);
	for (int i = 0; i < 2; i++) {
		t[i].x = &x;
		t[i].rng = t_rand() | 1;
		T_ASSERT_EQ(pthread_create(&th[i], NULL, crash_writer, &t[i]), 0);
	}
	for (;;) {
		usleep(40000);
		T_ASSERT_OK(cs_store_checkpoint(x.s));
	}
}

struct verify_arg {
	uint8_t (*recs)[1 + CS_ID_LEN];
	size_t have;
	int round;
	size_t pinned_checked, cache_seen;
	uint64_t scanned;
	bool close;
};

static void verify_after_crash(const char *dir, void *arg)
{
	struct verify_arg *v = arg;
	struct cs_store *s = open_store(dir, NULL);
	struct cs_stats st = stats(s);
	uint64_t alloc, size;
	int npacks;

	pack_usage(dir, &alloc, &size, &npacks);
	printf("# round %d: %zu synced chunks reported, store %llu chunks, %llu MiB in %d packs, "
	       "open scanned %llu KiB in %llu us\n",
	       v->round, v->have, (unsigned long long)st.chunks, (unsigned long long)(size >> 20),
	       npacks, (unsigned long long)(st.open_scan_bytes >> 10),
	       (unsigned long long)st.open_usec);
	fflush(stdout);
	v->scanned = st.open_scan_bytes;
	/*
	 * No full rescan: only what followed the last checkpoint (the child
	 * checkpoints every 40 ms; a slow disk stretches that a little).
	 */
	T_ASSERT(st.open_scan_bytes <= (64ULL << 20));
	T_ASSERT(size < (256ULL << 20) || st.open_scan_bytes < size / 4);
	for (size_t i = 0; i < v->have; i++) {
		uint8_t *buf, id[CS_ID_LEN];
		size_t len;
		int rc = cs_get(s, v->recs[i] + 1, &buf, &len);

		if (v->recs[i][0]) {
			T_ASSERT_OK(rc); /* pinned and synced: must be there */
			v->pinned_checked++;
		} else if (rc == -ENOENT) {
			continue; /* an unpinned chunk may have been evicted */
		}
		T_ASSERT_OK(rc);
		cs_id_compute(buf, len, id);
		T_ASSERT_MEM_EQ(id, v->recs[i] + 1, CS_ID_LEN);
		v->cache_seen += !v->recs[i][0];
		free(buf);
	}
	/* Whatever is present, synced or not, is intact. */
	T_ASSERT_EQ(cs_scrub(s, NULL, NULL, NULL), 0);
	T_ASSERT_EQ(stats(s).corrupt, 0);
	if (v->close)
		T_ASSERT_OK(cs_store_close(s));
}

static void synced_chunks_survive_sigkill(void)
{
	char *dir = t_tmpdir("cs");
	size_t cap = 1 << 16, have = 0, pinned_checked = 0, cache_seen = 0;
	uint8_t(*recs)[1 + CS_ID_LEN] = malloc(cap * sizeof(*recs));
	uint64_t scanned_max = 0;

	T_ASSERT(recs);
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		struct verify_arg v;
		int pfd[2], status;
		size_t partial = 0;
		uint64_t until;
		pid_t pid;

		T_ASSERT(pipe(pfd) == 0);
		pid = fork();
		T_ASSERT(pid >= 0);
		if (pid == 0) {
			close(pfd[0]);
			t_rand_seed(t_seed() + (uint64_t)round * 7919 + 1);
			crash_child(dir, pfd[1]);
			_exit(0);
		}
		close(pfd[1]);
		/* Let it run 150..650 ms, collecting what it reports synced, then kill -9. */
		until = tm_mono_ms() + 150 + t_rand() % 500;
		T_ASSERT(fcntl(pfd[0], F_SETFL, O_NONBLOCK) == 0);
		for (;;) {
			ssize_t r;

			if (have == cap) {
				cap *= 2;
				recs = realloc(recs, cap * sizeof(*recs));
				T_ASSERT(recs);
			}
			r = read(pfd[0], (uint8_t *)(recs + have) + partial,
				 sizeof(*recs) - partial);
			if (r > 0) {
				partial += (size_t)r;
				if (partial == sizeof(*recs)) {
					have++;
					partial = 0;
				}
				continue;
			}
			if (tm_mono_ms() >= until)
				break;
			usleep(2000);
		}
		kill(pid, SIGKILL);
		T_ASSERT(waitpid(pid, &status, 0) == pid);
		T_ASSERT(WIFSIGNALED(status));
		close(pfd[0]);

		/*
		 * Odd rounds check and close cleanly (a checkpoint); even rounds
		 * check in a child that exits without closing, so the next child
		 * opens what the crash left plus another crash on top.
		 */
		v = (struct verify_arg){
			.recs = recs, .have = have, .round = round, .close = round % 2
		};
		if (round % 2) {
			verify_after_crash(dir, &v);
			pinned_checked += v.pinned_checked;
			cache_seen += v.cache_seen;
			scanned_max = P2P_MAX(scanned_max, v.scanned);
		} else {
			in_child(verify_after_crash, dir, &v);
		}
	}
	printf("# %zu pinned synced chunks verified (odd rounds), %zu cached ones, largest open "
	       "scan %llu KiB\n",
	       pinned_checked, cache_seen, (unsigned long long)(scanned_max >> 10));
	T_ASSERT(pinned_checked > 0);
	free(recs);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- torn and holed tails ---- */

struct torn_case {
	struct chunk *c;
	int n;
};

static void torn_child(const char *dir, void *arg)
{
	struct torn_case *tc = arg;
	struct cs_store *s = open_store(dir, NULL);

	for (int i = 0; i < tc->n; i++)
		T_ASSERT_EQ(cs_put(s, tc->c[i].id, tc->c[i].data, tc->c[i].len, CS_PUT_PIN), 1);
	T_ASSERT_OK(cs_store_sync(s));
	/* Crash: no close, no checkpoint. */
}

static void torn_tail_and_hole_drop_only_the_damaged(void)
{
	char *dir = t_tmpdir("cs"), path[1024], path2[1024];
	struct chunk *b = mk_many(4, 10000, 90000), *t = mk_many(6, 10000, 90000);
	struct torn_case tc = { t, 6 };
	struct cs_store *s = open_store(dir, NULL);
	uint8_t junk[1000];
	struct stat st;
	struct chunk more = mk(3000);
	uint32_t hlen;
	off_t off, off2;
	int fd;

	for (int i = 0; i < 4; i++)
		T_ASSERT_EQ(cs_put(s, b[i].id, b[i].data, b[i].len, CS_PUT_PIN), 1);
	T_ASSERT_OK(cs_store_close(s));
	in_child(torn_child, dir, &tc);

	/* Tear t5 in half and append garbage after it. */
	T_ASSERT(find_on_disk(dir, t[5].data, 64, path, &off));
	T_ASSERT(truncate(path, off + (off_t)t[5].len / 2) == 0);
	t_rand_fill(junk, sizeof(junk));
	fd = open(path, O_WRONLY | O_APPEND);
	T_ASSERT(fd >= 0 && write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	close(fd);
	/* And break t2's header: a hole with complete records after it (t3, t4). */
	T_ASSERT(find_on_disk(dir, t[2].data, 64, path2, &off2));
	flip_byte(path2, off2 - CS_REC_HDR_LEN + 2);

	s = open_store(dir, NULL);
	T_ASSERT(stats(s).open_scan_bytes > 0);
	for (int i = 0; i < 4; i++)
		expect_chunk(s, &b[i]);
	for (int i = 0; i < 6; i++) {
		if (i == 2 || i == 5)
			T_ASSERT_EQ(cs_has(s, t[i].id, &hlen), -ENOENT);
		else
			expect_chunk(s, &t[i]);
	}
	/* The torn record and the garbage are gone from the file. */
	T_ASSERT(stat(path, &st) == 0);
	T_ASSERT(st.st_size < off - (off_t)CS_REC_HDR_LEN + 1);
	T_ASSERT_EQ(cs_put(s, more.id, more.data, more.len, 0), 1);
	T_ASSERT_EQ(cs_put(s, t[5].id, t[5].data, t[5].len, CS_PUT_PIN), 1);
	T_ASSERT_OK(cs_store_close(s));
	s = open_store(dir, NULL);
	T_ASSERT_EQ(stats(s).chunks, 4 + 4 + 2);
	expect_chunk(s, &more);
	expect_chunk(s, &t[5]);
	T_ASSERT_EQ(cs_scrub(s, NULL, NULL, NULL), 0);
	T_ASSERT_OK(cs_store_close(s));
	free(more.data);
	free_many(b, 4);
	free_many(t, 6);
	t_tmpdir_remove(dir);
	free(dir);
}

static uint64_t sum_len(const struct chunk *c, int n)
{
	uint64_t t = 0;

	for (int i = 0; i < n; i++)
		t += c[i].len;
	return t;
}

static void corrupt_checkpoint_falls_back_to_a_scan(void)
{
	char *dir = t_tmpdir("cs"), path[1024];
	struct chunk *c = mk_many(10, 1000, 50000);
	struct cs_store *s = open_store(dir, NULL);

	for (int i = 0; i < 10; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, i % 2 ? CS_PUT_PIN : 0), 1);
	T_ASSERT_OK(cs_store_close(s));
	snprintf(path, sizeof(path), "%s/index", dir);
	flip_byte(path, 100);
	s = open_store(dir, NULL);
	T_ASSERT(stats(s).open_scan_bytes > 0);
	T_ASSERT_EQ(stats(s).chunks, 10);
	T_ASSERT_EQ(stats(s).pinned_chunks, 5);
	for (int i = 0; i < 10; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_OK(cs_store_close(s));
	free_many(c, 10);
	t_tmpdir_remove(dir);
	free(dir);
}

/* Large records (written with O_DIRECT, aligned and padded) between small
 * ones (buffered): a scan without a checkpoint finds every one. */
static void mixed_records_survive_a_full_scan(void)
{
	char *dir = t_tmpdir("cs"), path[1024];
	struct chunk c[24];
	struct cs_store *s = open_store(dir, NULL);
	uint64_t alloc, size;
	int npacks;

	for (int i = 0; i < 24; i++) {
		c[i] = mk(i % 3 ? 1000 + (size_t)i * 37 : 70000 + (size_t)i * 4099);
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, CS_PUT_PIN), 1);
	}
	T_ASSERT_OK(cs_store_sync(s));
	for (int i = 0; i < 24; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_OK(cs_store_close(s));
	snprintf(path, sizeof(path), "%s/index", dir);
	T_ASSERT_OK(unlink(path));
	s = open_store(dir, NULL);
	T_ASSERT(stats(s).open_scan_bytes > 0);
	T_ASSERT_EQ(stats(s).chunks, 24);
	for (int i = 0; i < 24; i++)
		expect_chunk(s, &c[i]);
	/* Padding costs at most an aligned block before and after each large record. */
	pack_usage(dir, &alloc, &size, &npacks);
	T_ASSERT(size <= 4096 + 8 * 2 * 4096 + 24 * (CS_REC_HDR_LEN + 8) + sum_len(c, 24));
	T_ASSERT_OK(cs_store_close(s));
	for (int i = 0; i < 24; i++)
		free(c[i].data);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- the lock ---- */

static void second_open_is_refused(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts ro = { .read_only = true };
	struct cs_store *s = open_store(dir, NULL), *s2, *r1, *r2;
	struct chunk a = mk(1234);

	T_ASSERT_EQ(cs_put(s, a.id, a.data, a.len, 0), 1);
	T_ASSERT_EQ(cs_store_open(dir, NULL, &s2), -EBUSY);
	T_ASSERT_EQ(cs_store_open(dir, &ro, &s2), -EBUSY);
	T_ASSERT_OK(cs_store_close(s));
	/* Readers share; a writer waits for them. */
	r1 = open_store(dir, &ro);
	r2 = open_store(dir, &ro);
	T_ASSERT_EQ(cs_store_open(dir, NULL, &s2), -EBUSY);
	expect_chunk(r1, &a);
	T_ASSERT_EQ(cs_put(r1, a.id, a.data, a.len, 0), -EROFS);
	T_ASSERT_OK(cs_store_close(r1));
	T_ASSERT_OK(cs_store_close(r2));
	s = open_store(dir, NULL);
	expect_chunk(s, &a);
	T_ASSERT_OK(cs_store_close(s));
	free(a.data);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- cs_read on a loop ---- */

static void async_reads(enum cs_read_mode mode)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts o = { .mem_cache = 4 << 20 };
	struct chunk *c = mk_many(40, 0, 200000), big = mk(2 << 20);
	struct cs_store *s = open_store(dir, &o);
	struct read_result r1 = { 0 }, r2 = { 0 }, many[40];
	uint8_t absent[CS_ID_LEN] = { 3 };
	struct cs_buf *b = NULL, *keep;
	struct ev_loop *l;
	uint64_t gets;
	int done = 0;

	c[0].len = 0; /* an empty chunk too */
	cs_id_compute(c[0].data, 0, c[0].id);
	for (int i = 0; i < 40; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, 0), 1);
	T_ASSERT_EQ(cs_put(s, big.id, big.data, big.len, 0), 1);
	T_ASSERT_OK(ev_loop_new(8, &l));
	cs_store_set_loop(s, l);
	cs__set_read_mode(s, mode);

	/* Miss: a read is started and the callback brings verified data. */
	T_ASSERT_EQ(cs_read(s, c[1].id, on_read_cb, &r1, &b), 0);
	run_loop_until(l, &r1.calls, 1);
	T_ASSERT_EQ(r1.rc, 0);
	T_ASSERT_EQ(cs_buf_len(r1.buf), c[1].len);
	T_ASSERT_MEM_EQ(cs_buf_data(r1.buf), c[1].data, c[1].len);
	/* Hit: no callback, a new reference at once. */
	T_ASSERT_EQ(cs_read(s, c[1].id, on_read_cb, &r1, &b), 1);
	T_ASSERT(b == r1.buf);
	cs_buf_unref(b);
	cs_buf_unref(r1.buf);
	T_ASSERT_EQ(r1.calls, 1);
	T_ASSERT(stats(s).mem_cache_bytes >= c[1].len);

	/* Two readers of one chunk share one disk read and one buffer. */
	gets = stats(s).gets;
	T_ASSERT_EQ(cs_read(s, c[2].id, on_read_cb, &r1, &b), 0);
	T_ASSERT_EQ(cs_read(s, c[2].id, on_read_cb, &r2, &b), 0);
	run_loop_until(l, &r2.calls, 1);
	T_ASSERT_EQ(r1.calls, 2);
	T_ASSERT_EQ(r1.rc, 0);
	T_ASSERT_EQ(r2.rc, 0);
	T_ASSERT(r1.buf == r2.buf);
	T_ASSERT_MEM_EQ(cs_buf_data(r2.buf), c[2].data, c[2].len);
	T_ASSERT_EQ(stats(s).gets, gets + 1);
	cs_buf_unref(r2.buf);
	keep = r1.buf; /* outlives the store */

	/* Absent: an error now, no callback. */
	T_ASSERT_EQ(cs_read(s, absent, on_read_cb, &r1, &b), -ENOENT);
	T_ASSERT_EQ(r1.calls, 2);

	/* Many at once, more than the ring holds. */
	memset(many, 0, sizeof(many));
	for (int i = 0; i < 40; i++) {
		int rc = cs_read(s, c[i].id, on_read_cb, &many[i], &b);

		T_ASSERT(rc == 0 || rc == 1);
		if (rc == 1) {
			many[i].calls = 1;
			many[i].buf = b;
		}
	}
	for (uint64_t until = tm_mono_ms() + 10000; done < 40 && tm_mono_ms() < until;) {
		T_ASSERT_OK(ev_loop_run_once(l, 50));
		done = 0;
		for (int i = 0; i < 40; i++)
			done += many[i].calls;
	}
	T_ASSERT_EQ(done, 40);
	for (int i = 0; i < 40; i++) {
		T_ASSERT_EQ(many[i].rc, 0);
		T_ASSERT_EQ(cs_buf_len(many[i].buf), c[i].len);
		T_ASSERT_MEM_EQ(cs_buf_data(many[i].buf), c[i].data, c[i].len);
		cs_buf_unref(many[i].buf);
	}
	/* A chunk larger than a quarter of the cache is not kept. */
	memset(&r1, 0, sizeof(r1));
	T_ASSERT_EQ(cs_read(s, big.id, on_read_cb, &r1, &b), 0);
	run_loop_until(l, &r1.calls, 1);
	T_ASSERT_MEM_EQ(cs_buf_data(r1.buf), big.data, big.len);
	cs_buf_unref(r1.buf);
	T_ASSERT_EQ(cs_read(s, big.id, on_read_cb, &r1, &b), 0);
	run_loop_until(l, &r1.calls, 2);
	cs_buf_unref(r1.buf);
	T_ASSERT(stats(s).mem_cache_bytes <= o.mem_cache);

	T_ASSERT_OK(cs_store_close(s));
	T_ASSERT_MEM_EQ(cs_buf_data(keep), c[2].data, c[2].len);
	cs_buf_unref(keep);
	T_ASSERT_EQ(ev_loop_inflight(l), 0);
	ev_loop_free(l);
	free(big.data);
	free_many(c, 40);
	t_tmpdir_remove(dir);
	free(dir);
}

static void async_reads_direct(void)
{
	async_reads(CS_READ_DIRECT);
}

static void async_reads_buffered(void)
{
	async_reads(CS_READ_BUFFERED);
}

static void async_reads_auto(void)
{
	async_reads(CS_READ_AUTO);
}

static void drop_pack_cache(const char *dir)
{
	char path[4096];

	for (unsigned no = 1; no < 8; no++) {
		int fd;

		snprintf(path, sizeof(path), "%s/%08x.pack", dir, no);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		T_ASSERT_OK(fdatasync(fd));
		T_ASSERT_OK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
		close(fd);
	}
}

/* Records the page cache holds are read through it; others go direct. A
 * small record is written through the page cache, a large one around it. */
static void auto_reads_choose_by_page_cache(void)
{
	char *dir = t_tmpdir("cs-auto");
	struct cs_store_opts o = { .mem_cache = 1 << 20 };
	struct chunk c = mk(20000), d = mk(300000);
	struct cs_store *s = open_store(dir, &o);
	struct read_result r = { 0 };
	struct cs_buf *b = NULL;
	struct ev_loop *l;
	int pfd;
	char probe[4096];

	T_ASSERT_EQ(cs_put(s, c.id, c.data, c.len, 0), 1);
	T_ASSERT_EQ(cs_put(s, d.id, d.data, d.len, 0), 1);
	T_ASSERT_OK(cs_store_sync(s));
	T_ASSERT_OK(ev_loop_new(8, &l));
	cs_store_set_loop(s, l);

	/* Just written: in the page cache, read buffered. */
	T_ASSERT_EQ(cs_read(s, c.id, on_read_cb, &r, &b), 0);
	run_loop_until(l, &r.calls, 1);
	T_ASSERT_EQ(r.rc, 0);
	T_ASSERT_MEM_EQ(cs_buf_data(r.buf), c.data, c.len);
	cs_buf_unref(r.buf);
	T_ASSERT_EQ(stats(s).direct_gets, 0);

	/* Written direct, or dropped from the page cache: read direct, where
	 * the filesystem allows it. */
	drop_pack_cache(dir);
	snprintf(probe, sizeof(probe), "%s/00000001.pack", dir);
	pfd = open(probe, O_RDONLY | O_DIRECT | O_CLOEXEC);
	T_ASSERT_EQ(cs_read(s, d.id, on_read_cb, &r, &b), 0);
	run_loop_until(l, &r.calls, 2);
	T_ASSERT_EQ(r.rc, 0);
	T_ASSERT_MEM_EQ(cs_buf_data(r.buf), d.data, d.len);
	cs_buf_unref(r.buf);
	if (pfd >= 0) {
		T_ASSERT_EQ(stats(s).direct_gets, 1);
		close(pfd);
	} else {
		T_ASSERT_EQ(stats(s).direct_gets, 0); /* tmpfs and the like: buffered */
	}

	T_ASSERT_OK(cs_store_close(s));
	ev_loop_free(l);
	free(c.data);
	free(d.data);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- concurrency ---- */

#define SHARED 300
#define OWN 100

struct put_thread {
	struct cs_store *s;
	struct chunk *shared, *own;
	int stored[SHARED];
	int seed;
};

static void *put_worker(void *arg)
{
	struct put_thread *t = arg;

	for (int k = 0; k < SHARED; k++) {
		int i = (k * 7 + t->seed * 101) % SHARED;
		int rc = cs_put(t->s, t->shared[i].id, t->shared[i].data, t->shared[i].len,
				k % 3 ? CS_PUT_PIN : 0);

		T_ASSERT(rc == 0 || rc == 1);
		t->stored[i] = rc;
		if (k < OWN)
			T_ASSERT_EQ(
			    cs_put(t->s, t->own[k].id, t->own[k].data, t->own[k].len, CS_PUT_PIN),
			    1);
	}
	return NULL;
}

static void *ckpt_worker(void *arg)
{
	struct cs_store *s = arg;

	for (int i = 0; i < 5; i++) {
		T_ASSERT_OK(cs_store_checkpoint(s));
		T_ASSERT_OK(cs_store_sync(s));
		usleep(5000);
	}
	return NULL;
}

static void concurrent_puts(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts o = { .pack_size = 4 << 20 };
	struct chunk *shared = mk_many(SHARED, 100, 60000), *own[4];
	struct cs_store *s = open_store(dir, &o);
	struct put_thread t[4];
	pthread_t th[5];

	for (int i = 0; i < 4; i++) {
		own[i] = mk_many(OWN, 100, 60000);
		t[i] = (struct put_thread){ .s = s, .shared = shared, .own = own[i], .seed = i };
		T_ASSERT_EQ(pthread_create(&th[i], NULL, put_worker, &t[i]), 0);
	}
	T_ASSERT_EQ(pthread_create(&th[4], NULL, ckpt_worker, s), 0);
	for (int i = 0; i < 5; i++)
		T_ASSERT_EQ(pthread_join(th[i], NULL), 0);
	/* Each shared chunk was stored by exactly one thread. */
	for (int k = 0; k < SHARED; k++)
		T_ASSERT_EQ(t[0].stored[k] + t[1].stored[k] + t[2].stored[k] + t[3].stored[k], 1);
	T_ASSERT_EQ(stats(s).chunks, SHARED + 4 * OWN);
	for (int k = 0; k < SHARED; k++)
		expect_chunk(s, &shared[k]);
	T_ASSERT_OK(cs_store_close(s));
	s = open_store(dir, &o);
	T_ASSERT_EQ(stats(s).chunks, SHARED + 4 * OWN);
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < OWN; k++)
			expect_chunk(s, &own[i][k]);
	T_ASSERT_EQ(cs_scrub(s, NULL, NULL, NULL), 0);
	T_ASSERT_OK(cs_store_close(s));
	for (int i = 0; i < 4; i++)
		free_many(own[i], OWN);
	free_many(shared, SHARED);
	t_tmpdir_remove(dir);
	free(dir);
}

/* ---- marks, foreach, packs, memory ---- */

struct seen {
	int n, pinned;
	uint8_t ids[8][CS_ID_LEN];
	bool pin[8];
};

static void on_each(void *arg, const uint8_t id[static CS_ID_LEN], uint32_t len, bool pinned)
{
	struct seen *s = arg;

	(void)len;
	if (s->n < 8) {
		memcpy(s->ids[s->n], id, CS_ID_LEN);
		s->pin[s->n] = pinned;
	}
	s->n++;
	s->pinned += pinned;
}

static bool seen_pinned(const struct seen *s, const struct chunk *c)
{
	for (int i = 0; i < s->n && i < 8; i++)
		if (memcmp(s->ids[i], c->id, CS_ID_LEN) == 0)
			return s->pin[i];
	T_FAIL("chunk not listed by cs_foreach");
}

static void marks_unpin_the_unreferenced(void)
{
	char *dir = t_tmpdir("cs");
	struct chunk *c = mk_many(5, 1000, 2000);
	struct cs_store *s = open_store(dir, NULL);
	struct seen seen = { 0 };

	for (int i = 0; i < 3; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, CS_PUT_PIN), 1);
	T_ASSERT_EQ(cs_put(s, c[3].id, c[3].data, c[3].len, 0), 1);
	cs_mark_begin(s);
	cs_mark(s, c[0].id);
	T_ASSERT_EQ(cs_put(s, c[1].id, c[1].data, c[1].len, CS_PUT_PIN), 0); /* put: referenced */
	T_ASSERT_EQ(cs_put(s, c[4].id, c[4].data, c[4].len, CS_PUT_PIN),
		    1);			/* new during the round */
	T_ASSERT_EQ(cs_mark_end(s), 1); /* c2 */
	T_ASSERT_OK(cs_foreach(s, on_each, &seen));
	T_ASSERT_EQ(seen.n, 5);
	T_ASSERT_EQ(seen.pinned, 3);
	T_ASSERT(seen_pinned(&seen, &c[0]) && seen_pinned(&seen, &c[1]) &&
		 seen_pinned(&seen, &c[4]));
	T_ASSERT(!seen_pinned(&seen, &c[2]) && !seen_pinned(&seen, &c[3]));
	/* A round that marks nothing unpins all that is pinned. */
	cs_mark_begin(s);
	T_ASSERT_EQ(cs_mark_end(s), 3);
	T_ASSERT_EQ(stats(s).pinned_chunks, 0);
	T_ASSERT_OK(cs_store_close(s));
	s = open_store(dir, NULL);
	T_ASSERT_EQ(stats(s).pinned_chunks, 0);
	T_ASSERT_OK(cs_store_close(s));
	free_many(c, 5);
	t_tmpdir_remove(dir);
	free(dir);
}

static void emptied_packs_are_deleted(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store_opts o = { .pack_size = 256 << 10, .cache_quota = 512 << 10 };
	struct chunk *c = mk_many(100, 32768, 32768);
	struct cs_store *s = open_store(dir, &o);
	uint64_t alloc, size;
	int n0, n1;

	for (int i = 0; i < 100; i++)
		T_ASSERT_EQ(cs_put(s, c[i].id, c[i].data, c[i].len, 0), 1);
	T_ASSERT_OK(cs_store_sync(s));
	pack_usage(dir, &alloc, &size, &n0);
	T_ASSERT_OK(cs_store_checkpoint(s));
	pack_usage(dir, &alloc, &size, &n1);
	printf("# %d packs before the checkpoint, %d after\n", n0, n1);
	T_ASSERT(n0 >= 10);
	T_ASSERT(n1 <= 4);
	for (int i = 84; i < 100; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_OK(cs_store_close(s));
	s = open_store(dir, &o);
	T_ASSERT_EQ(stats(s).chunks, 16);
	for (int i = 84; i < 100; i++)
		expect_chunk(s, &c[i]);
	T_ASSERT_OK(cs_store_close(s));
	free_many(c, 100);
	t_tmpdir_remove(dir);
	free(dir);
}

static void index_memory_per_chunk(void)
{
	char *dir = t_tmpdir("cs");
	struct cs_store *s = open_store(dir, NULL);
	const int n = 200000;
	struct cs_stats st;
	uint64_t t0;

	for (int i = 0; i < n; i++) {
		uint8_t data[8], id[CS_ID_LEN];

		memcpy(data, &i, sizeof(i));
		memset(data + 4, 0xa5, 4);
		cs_id_compute(data, sizeof(data), id);
		T_ASSERT_EQ(cs_put(s, id, data, sizeof(data), CS_PUT_PIN), 1);
	}
	st = stats(s);
	printf("# index: %llu bytes for %llu chunks = %.1f bytes per chunk\n",
	       (unsigned long long)st.index_mem, (unsigned long long)st.chunks,
	       (double)st.index_mem / (double)st.chunks);
	T_ASSERT(st.index_mem <= 64ULL * st.chunks);
	T_ASSERT_OK(cs_store_close(s));
	t0 = tm_mono_ns();
	s = open_store(dir, NULL);
	printf("# reopened %d chunks in %.1f ms\n", n, (double)(tm_mono_ns() - t0) / 1e6);
	T_ASSERT_EQ(stats(s).chunks, (uint64_t)n);
	T_ASSERT_OK(cs_store_close(s));
	t_tmpdir_remove(dir);
	free(dir);
}

T_MAIN(T_CASE(put_get_has_round_trip), T_CASE(dedup_verify_and_limits),
       T_CASE(pin_and_unpin_survive_a_crash), T_CASE(corruption_is_detected_never_returned),
       T_CASE(eviction_is_lru_spares_pins_and_frees_space),
       T_CASE(sampled_eviction_keeps_the_recently_used), T_CASE(disk_reserve_refuses_puts),
       T_CASE(disk_full_is_a_clean_error), T_CASE(maintenance_checkpoints_and_punches_unasked),
       T_CASE(synced_chunks_survive_sigkill), T_CASE(torn_tail_and_hole_drop_only_the_damaged),
       T_CASE(corrupt_checkpoint_falls_back_to_a_scan), T_CASE(mixed_records_survive_a_full_scan),
       T_CASE(second_open_is_refused), T_CASE(async_reads_direct), T_CASE(async_reads_buffered),
       T_CASE(async_reads_auto), T_CASE(auto_reads_choose_by_page_cache), T_CASE(concurrent_puts),
       T_CASE(marks_unpin_the_unreferenced), T_CASE(emptied_packs_are_deleted),
       T_CASE(index_memory_per_chunk))
