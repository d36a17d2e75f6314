/* SPDX-License-Identifier: MIT */
/*
 * common/tm.h - clocks.
 *
 * Monotonic time for deadlines and rates (never goes back); real time for
 * what users and peers see (file times, hybrid logical clocks).
 */
#ifndef P2P_COMMON_TM_H
#define P2P_COMMON_TM_H

#include <stdint.h>
#include <time.h>

static inline uint64_t tm_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t tm_mono_ms(void)
{
	return tm_mono_ns() / 1000000ULL;
}

static inline uint64_t tm_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t tm_real_ms(void)
{
	return tm_real_ns() / 1000000ULL;
}

#endif
