// SPDX-License-Identifier: MIT
/*
 * common/bigbuf.c - the pool behind p2p_bigbuf_get/put.
 *
 * Sizes are rounded up to one of four steps per power of two (a buffer is
 * at most a quarter larger than asked), and each step has its own list, so
 * a returned buffer is found again by its length alone and nothing needs a
 * header. Chunk sizes spread over a handful of steps, which a streaming
 * read keeps busy. The pool keeps at most BIGBUF_KEEP bytes, and frees all
 * of them once nobody took a buffer for BIGBUF_IDLE_MS.
 */
#include "common/bigbuf.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/tm.h"
#include "common/util.h"

/* Under AddressSanitizer a pooled buffer is poisoned, so a use after
 * p2p_bigbuf_put() is still reported as one. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BIGBUF_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define BIGBUF_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define BIGBUF_POISON(p, n) ((void)(p), (void)(n))
#define BIGBUF_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Smaller buffers come from malloc's heap without a fresh mapping each. */
#define BIGBUF_MIN_SHIFT 16U /* pooled from 64 KiB (exclusive) */
#define BIGBUF_MAX_SHIFT 25U /* up to 32 MiB */
#define BIGBUF_STEPS 4U
#define BIGBUF_CLASSES ((BIGBUF_MAX_SHIFT - BIGBUF_MIN_SHIFT) * BIGBUF_STEPS)
#define BIGBUF_KEEP (64U * 1024U * 1024U)
#define BIGBUF_IDLE_MS 3000U

struct bigbuf_free {
	struct bigbuf_free *next;
};

static struct {
	pthread_mutex_t lock;
	struct bigbuf_free *list[BIGBUF_CLASSES];
	uint64_t kept;
	uint64_t gets, reused;
	uint64_t last_get_ms;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The class of @len and its buffer size; -1 when not pooled. */
static int bigbuf_class(size_t len, size_t *ret_cap)
{
	unsigned shift;
	size_t step, cap;

	if (len <= ((size_t)1 << BIGBUF_MIN_SHIFT) || len > ((size_t)1 << BIGBUF_MAX_SHIFT)) {
		*ret_cap = P2P_ALIGN_UP(len ? len : 1, (size_t)P2P_BIGBUF_ALIGN);
		return -1;
	}
	/* 2^shift < len ≤ 2^(shift+1): steps of 2^shift / 4 above 2^shift. */
	shift = (unsigned)(63 - __builtin_clzll((unsigned long long)(len - 1)));
	step = ((size_t)1 << shift) / BIGBUF_STEPS;
	cap = P2P_ALIGN_UP(len, step);
	*ret_cap = cap;
	return (int)((shift - BIGBUF_MIN_SHIFT) * BIGBUF_STEPS + (cap / step - BIGBUF_STEPS - 1));
}

void *p2p_bigbuf_get(size_t len)
{
	size_t cap;
	int c = bigbuf_class(len, &cap);
	struct bigbuf_free *b = NULL;

	if (c >= 0) {
		pthread_mutex_lock(&pool.lock);
		pool.gets++;
		pool.last_get_ms = tm_mono_ms();
		if ((b = pool.list[c])) {
			pool.list[c] = b->next;
			pool.kept -= cap;
			pool.reused++;
		}
		pthread_mutex_unlock(&pool.lock);
		if (b) {
			BIGBUF_UNPOISON(b, cap);
			return b;
		}
	}
	return aligned_alloc(P2P_BIGBUF_ALIGN, cap);
}

void p2p_bigbuf_put(void *p, size_t len)
{
	size_t cap;
	int c = bigbuf_class(len, &cap);
	struct bigbuf_free *b = p;

	if (!p)
		return;
	if (c >= 0) {
		pthread_mutex_lock(&pool.lock);
		if (pool.kept + cap <= BIGBUF_KEEP) {
			b->next = pool.list[c];
			BIGBUF_POISON((uint8_t *)b + sizeof(*b), cap - sizeof(*b));
			pool.list[c] = b;
			pool.kept += cap;
			b = NULL;
		}
		pthread_mutex_unlock(&pool.lock);
	}
	free(b);
}

static void bigbuf_drain(void)
{
	struct bigbuf_free *all = NULL, *b;

	pthread_mutex_lock(&pool.lock);
	for (unsigned c = 0; c < BIGBUF_CLASSES; c++) {
		while ((b = pool.list[c])) {
			pool.list[c] = b->next;
			b->next = all;
			all = b;
		}
	}
	pool.kept = 0;
	pthread_mutex_unlock(&pool.lock);
	while ((b = all)) {
		all = b->next;
		free(b); /* ASan: a freed block is its own again, poisoned or not */
	}
}

void p2p_bigbuf_trim(void)
{
	bool idle;

	pthread_mutex_lock(&pool.lock);
	idle = pool.kept && tm_mono_ms() - pool.last_get_ms >= BIGBUF_IDLE_MS;
	pthread_mutex_unlock(&pool.lock);
	if (idle)
		bigbuf_drain();
}

void p2p_bigbuf_stats(struct p2p_bigbuf_stats *ret)
{
	pthread_mutex_lock(&pool.lock);
	ret->gets = pool.gets;
	ret->reused = pool.reused;
	ret->pooled_bytes = pool.kept;
	pthread_mutex_unlock(&pool.lock);
}
