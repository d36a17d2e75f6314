// SPDX-License-Identifier: MIT
/*
 * tools/bench/smallfiles.c - create + write + close N small files in a
 * directory, then stat them all; prints the rates as one JSON line.
 *
 * Usage: smallfiles DIR COUNT BYTES
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char path[4096];
	unsigned count;
	size_t bytes;
	char *buf;
	double t0, t1, t2;

	if (argc != 4) {
		fprintf(stderr, "usage: smallfiles DIR COUNT BYTES\n");
		return 2;
	}
	count = (unsigned)strtoul(argv[2], NULL, 10);
	bytes = strtoul(argv[3], NULL, 10);
	buf = malloc(bytes ? bytes : 1);
	srand(1);
	for (size_t k = 0; k < bytes; k++)
		buf[k] = (char)(rand() & 0xff);
	t0 = now();
	for (unsigned i = 0; i < count; i++) {
		int fd;

		/* Distinct content per file, as real small files have. */
		if (bytes >= sizeof(i))
			memcpy(buf, &i, sizeof(i));
		snprintf(path, sizeof(path), "%s/f%07u", argv[1], i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, buf, bytes) != (ssize_t)bytes || close(fd) < 0) {
			fprintf(stderr, "smallfiles: %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	t1 = now();
	for (unsigned i = 0; i < count; i++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s/f%07u", argv[1], i);
		if (stat(path, &st) < 0 || (size_t)st.st_size != bytes) {
			fprintf(stderr, "smallfiles: stat %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	t2 = now();
	printf("{\"create_per_s\": %.0f, \"stat_per_s\": %.0f}\n", count / (t1 - t0),
	       count / (t2 - t1));
	free(buf);
	return 0;
}
