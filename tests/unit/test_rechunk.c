// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_rechunk.c - incremental re-chunking after writes and
 * truncations gives exactly the chunks that chunking the whole new file
 * gives, while re-reading only the regions around the changes.
 */
#include "fs/fs_rechunk.h"
#include "tests/lib/t.h"

#include <fcntl.h>
#include <unistd.h>

static const struct cs_cdc_params small = { 16 * 1024, 64 * 1024, 256 * 1024 };

static void full_chunk(struct cs_store *cs, const uint8_t *data, uint64_t size, struct mf *ret)
{
	uint64_t pos = 0;

	mf_init(ret);
	while (pos < size) {
		size_t want = size - pos < small.max_size ? (size_t)(size - pos) : small.max_size;
		size_t cut = cs_cdc_cut(&small, data + pos, want, pos + want == size);
		uint8_t id[CS_ID_LEN];

		T_ASSERT(cut > 0 && cut <= want);
		cs_id_compute(data + pos, cut, id);
		T_ASSERT_OK(cs_put(cs, id, data + pos, cut, CS_PUT_PIN));
		T_ASSERT_OK(mf_append(ret, id, (uint32_t)cut));
		pos += cut;
	}
}

static void same_chunks(const struct mf *a, const struct mf *b)
{
	T_ASSERT_EQ(a->size, b->size);
	T_ASSERT_EQ(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		T_ASSERT_EQ(a->c[i].len, b->c[i].len);
		T_ASSERT_MEM_EQ(a->c[i].id, b->c[i].id, CS_ID_LEN);
	}
}

struct world {
	char *dir;
	struct cs_store *cs;
	uint8_t *data; /* the new content */
	uint64_t size, cap;
	int sfd;
	struct fs_ext dirty;
	struct mf base;
	struct ev_pool *pool;		/* helpers for hashing, or NULL */
	struct fs_rechunk_cache *cache; /* a window kept between re-chunks, or NULL */
};

static void world_init(struct world *w, uint64_t size)
{
	struct cs_store_opts o = { 0 };
	char path[512];

	w->pool = NULL;
	w->cache = NULL;
	w->dir = t_tmpdir("rechunk");
	snprintf(path, sizeof(path), "%s/store", w->dir);
	T_ASSERT_OK(cs_store_open(path, &o, &w->cs));
	w->cap = size * 2 + 8 * 1024 * 1024;
	w->data = calloc(1, w->cap);
	w->size = size;
	t_rand_fill(w->data, size);
	/* Some repeated content, so dedup happens inside a file too. */
	if (size > 600000)
		memcpy(w->data + 400000, w->data + 100000, 200000);
	full_chunk(w->cs, w->data, size, &w->base);
	snprintf(path, sizeof(path), "%s/staging", w->dir);
	w->sfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	T_ASSERT(w->sfd >= 0);
	fs_ext_init(&w->dirty);
}

static void world_done(struct world *w)
{
	close(w->sfd);
	fs_ext_done(&w->dirty);
	mf_done(&w->base);
	free(w->data);
	T_ASSERT_OK(cs_store_close(w->cs));
	t_tmpdir_remove(w->dir);
	free(w->dir);
}

static void w_write(struct world *w, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);

	T_ASSERT(off + len <= w->cap);
	t_rand_fill(buf, len);
	T_ASSERT(pwrite(w->sfd, buf, len, (off_t)off) == (ssize_t)len);
	if (off > w->size) {
		memset(w->data + w->size, 0, off - w->size);
		T_ASSERT_OK(fs_ext_add(&w->dirty, w->size, off));
	}
	memcpy(w->data + off, buf, len);
	T_ASSERT_OK(fs_ext_add(&w->dirty, off, off + len));
	if (off + len > w->size)
		w->size = off + len;
	free(buf);
}

static void w_truncate(struct world *w, uint64_t size)
{
	if (size < w->size) {
		fs_ext_truncate(&w->dirty, size);
		T_ASSERT(ftruncate(w->sfd, (off_t)size) == 0);
	} else if (size > w->size) {
		T_ASSERT(size <= w->cap);
		T_ASSERT(ftruncate(w->sfd, (off_t)w->size) == 0);
		memset(w->data + w->size, 0, size - w->size);
		T_ASSERT_OK(fs_ext_add(&w->dirty, w->size, size));
	}
	w->size = size;
}

static void check(struct world *w, struct fs_rechunk_stats *ret_st)
{
	struct fs_rechunk_in in = {
		.base = &w->base,
		.dirty = &w->dirty,
		.size = w->size,
		.staging_fd = w->sfd,
		.cdc = &small,
		.cs = w->cs,
		.put_flags = CS_PUT_PIN,
		.pool = w->pool,
		.cache = w->cache,
	};
	struct mf got, want;
	struct fs_rechunk_stats st;

	T_ASSERT_OK(fs_rechunk(&in, &got, &st));
	full_chunk(w->cs, w->data, w->size, &want);
	same_chunks(&got, &want);
	if (ret_st)
		*ret_st = st;
	mf_done(&got);
	mf_done(&want);
}

static void one_small_write_keeps_the_other_chunks(void)
{
	struct world w;
	struct fs_rechunk_stats st;

	world_init(&w, 8 * 1024 * 1024);
	w_write(&w, 3 * 1024 * 1024 + 123, 100);
	check(&w, &st);
	/* Only the chunks around the write are re-read and hashed. */
	T_ASSERT(st.bytes_hashed <= 4 * small.max_size);
	T_ASSERT(st.chunks_kept + 4 >= w.base.n);
	world_done(&w);
}

static void append_rechunks_only_the_tail(void)
{
	struct world w;
	struct fs_rechunk_stats st;

	world_init(&w, 4 * 1024 * 1024);
	w_write(&w, w.size, 300000);
	check(&w, &st);
	T_ASSERT(st.bytes_hashed <= 300000 + small.max_size);
	world_done(&w);
}

static void new_file_from_nothing(void)
{
	struct world w;

	world_init(&w, 0);
	w_write(&w, 0, 3 * 1024 * 1024 + 5);
	check(&w, NULL);
	world_done(&w);
}

static void truncations(void)
{
	struct world w;

	world_init(&w, 2 * 1024 * 1024);
	w_truncate(&w, 1000000); /* shrink mid-chunk */
	check(&w, NULL);
	w_truncate(&w, 1500000); /* extend with zeros */
	check(&w, NULL);
	w_truncate(&w, 0);
	check(&w, NULL);
	world_done(&w);
}

static void random_histories(struct ev_pool *pool, int rounds)
{
	for (int round = 0; round < rounds; round++) {
		struct world w;
		int ops = 1 + (int)(t_rand() % 8);

		world_init(&w, t_rand() % (6 * 1024 * 1024));
		w.pool = pool;
		for (int i = 0; i < ops; i++) {
			uint64_t r = t_rand() % 100;

			if (r < 70 || w.size == 0)
				w_write(&w, t_rand() % (w.size + 200000), 1 + t_rand() % 300000);
			else if (r < 85)
				w_truncate(&w, t_rand() % w.size);
			else
				w_truncate(&w, w.size + t_rand() % 500000);
		}
		check(&w, NULL);
		world_done(&w);
	}
}

static void random_histories_match_full_chunking(void)
{
	random_histories(NULL, 12);
}

/* The same with helpers hashing beside the caller: the same chunk lists. */
static void helpers_give_the_same_chunks(void)
{
	struct ev_pool *pool;
	struct world w;
	struct fs_rechunk_stats st;

	T_ASSERT_OK(ev_pool_new(3, &pool));
	random_histories(pool, 12);
	/* A long new file: many batches, each shared with a helper. */
	world_init(&w, 6 * 1024 * 1024);
	w.pool = pool;
	w_truncate(&w, 0);
	w_write(&w, 0, 20 * 1024 * 1024);
	check(&w, &st);
	T_ASSERT_EQ(st.chunks_kept, 0);
	T_ASSERT_EQ(st.bytes_hashed, 20 * 1024 * 1024);
	world_done(&w);
	ev_pool_free(pool);
}

/* A window kept from one re-chunk to the next (holding the last one's
 * bytes, and larger than needed) gives the same chunk lists. */
static void a_kept_window_gives_the_same_chunks(void)
{
	struct fs_rechunk_cache cache;
	struct ev_pool *pool;

	fs_rechunk_cache_init(&cache);
	T_ASSERT_OK(ev_pool_new(2, &pool));
	for (int round = 0; round < 6; round++) {
		struct world w;

		/* 6 MiB, then smaller: the 2 MiB window is kept and reused. */
		world_init(&w, round ? t_rand() % (3 * 1024 * 1024) : 0);
		w.cache = &cache;
		w.pool = round % 2 ? pool : NULL;
		if (!round)
			w_write(&w, 0, 6 * 1024 * 1024);
		else
			w_write(&w, t_rand() % (w.size + 1), 1 + t_rand() % (2 * 1024 * 1024));
		check(&w, NULL);
		T_ASSERT(cache.buf && cache.cap >= 8 * small.max_size);
		world_done(&w);
	}
	fs_rechunk_cache_drop(&cache);
	T_ASSERT(!cache.buf && !cache.cap);
	fs_rechunk_cache_done(&cache);
	ev_pool_free(pool);
}

T_MAIN(T_CASE(one_small_write_keeps_the_other_chunks), T_CASE(append_rechunks_only_the_tail),
       T_CASE(new_file_from_nothing), T_CASE(truncations),
       T_CASE(random_histories_match_full_chunking), T_CASE(helpers_give_the_same_chunks),
       T_CASE(a_kept_window_gives_the_same_chunks))
