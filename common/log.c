// SPDX-License-Identifier: MIT
/*
 * common/log.c - formats and writes log lines.
 *
 * Invariant: a line is formatted into a stack buffer and written with a
 * single write(2), so lines from several threads never interleave.
 */
#include "common/log.h"
#include "common/tm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static enum log_level log_level = LOG_LVL_INFO;
static const char *const lvl_name[] = { "error", "warn", "notice", "info", "debug" };

void log_set_fd(int fd)
{
	log_fd = fd;
}

void log_set_level(enum log_level lvl)
{
	log_level = lvl;
}

enum log_level log_get_level(void)
{
	return log_level;
}

int log_parse_level(const char *s, enum log_level *ret_lvl)
{
	for (unsigned i = 0; i < ARRAY_SIZE(lvl_name); i++) {
		if (!strcasecmp(s, lvl_name[i])) {
			*ret_lvl = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_msg(enum log_level lvl, const char *subsys, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m;
	int saved = errno;

	if (lvl > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, lvl_name[lvl], subsys);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(log_fd, line, (size_t)n);
	errno = saved;
}

bool log_rl_allow(struct log_rl *rl, uint32_t burst, uint64_t interval_ms)
{
	uint64_t now = tm_mono_ms();

	if (now - rl->window_start >= interval_ms) {
		if (rl->suppressed)
			log_msg(LOG_LVL_NOTICE, "log", "%u similar lines suppressed",
				rl->suppressed);
		rl->window_start = now;
		rl->count = 0;
		rl->suppressed = 0;
	}
	if (rl->count < burst) {
		rl->count++;
		return true;
	}
	rl->suppressed++;
	return false;
}
