/* SPDX-License-Identifier: MIT */
/*
 * common/log.h - one line per event, "subsys: message".
 *
 * Each .c file defines LOG_SUBSYS before including this header. common/,
 * chunkstore/ and parsers log at debug at most and return the error; the
 * caller that has the context logs it once. Lines that a remote peer can
 * trigger go through a struct log_rl so a peer cannot flood the log.
 *
 * Thread-safe: each line is one write(2).
 */
#ifndef P2P_COMMON_LOG_H
#define P2P_COMMON_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"

enum log_level {
	LOG_LVL_ERROR,
	LOG_LVL_WARN,
	LOG_LVL_NOTICE,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/* Where lines go: a file descriptor (stderr by default). Not owned. */
void log_set_fd(int fd);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parse "error".."debug"; returns 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *ret_lvl);

void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...) P2P_PRINTF(3, 4);

#ifndef LOG_SUBSYS
#define LOG_SUBSYS "p2pfs"
#endif

#define log_error(...) log_msg(LOG_LVL_ERROR, LOG_SUBSYS, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, LOG_SUBSYS, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, LOG_SUBSYS, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, LOG_SUBSYS, __VA_ARGS__)
#define log_debug(...)                                                   \
	do {                                                             \
		if (log_get_level() >= LOG_LVL_DEBUG)                    \
			log_msg(LOG_LVL_DEBUG, LOG_SUBSYS, __VA_ARGS__); \
	} while (0)

/*
 * Rate limit: at most @burst lines per @interval_ms. Zero-initialise. Not
 * thread-safe by itself: keep one per thread or per object.
 */
struct log_rl {
	uint64_t window_start; /* monotonic ms */
	uint32_t count;
	uint32_t suppressed;
};

bool log_rl_allow(struct log_rl *rl, uint32_t burst, uint64_t interval_ms);

#endif
