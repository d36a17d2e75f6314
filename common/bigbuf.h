/* SPDX-License-Identifier: MIT */
/*
 * common/bigbuf.h - reused buffers for chunk-sized data.
 *
 * A chunk that arrives from a peer or is read from a pack needs a buffer of
 * a few hundred KiB to a few MiB. glibc maps each such allocation afresh and
 * unmaps it on free, so every 4 KiB page of every chunk cost a page fault
 * (zeroing, a memory-cgroup charge) and every free a TLB flush: on a read
 * over the network that was a third of the receiving thread's time. These
 * buffers go back to a small pool instead and are handed out again as they
 * are.
 *
 * Thread-safe: a buffer may be given back by another thread than the one
 * that took it. Buffers are aligned for O_DIRECT (P2P_BIGBUF_ALIGN) and
 * hold whatever they held before.
 */
#ifndef P2P_COMMON_BIGBUF_H
#define P2P_COMMON_BIGBUF_H

#include <stddef.h>
#include <stdint.h>

#define P2P_BIGBUF_ALIGN 4096U

/* A buffer of at least @len bytes (@len ≥ 1), or NULL when out of memory. */
void *p2p_bigbuf_get(size_t len);

/* Give back @p (NULL is a no-op); @len must be what it was taken with. */
void p2p_bigbuf_put(void *p, size_t len);

/* Free the buffers the pool keeps if none was taken for a few seconds, so
 * an idle daemon gives the memory back; call it now and then. */
void p2p_bigbuf_trim(void);

struct p2p_bigbuf_stats {
	uint64_t gets, reused; /* reused: served from the pool */
	uint64_t pooled_bytes; /* kept for reuse now */
};

void p2p_bigbuf_stats(struct p2p_bigbuf_stats *ret);

#endif
