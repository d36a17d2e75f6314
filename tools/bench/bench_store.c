// SPDX-License-Identifier: MIT
/*
 * tools/bench/bench_store.c - the chunk store against the disk it sits on,
 * measured in one run:
 *
 *   chunker        FastCDC (4 lanes) vs the serial gear loop; SHA-256 ids
 *   put            cs_put of the chunked data + cs_store_sync, 1 and 2
 *                  threads, vs the device's streaming write (dd
 *                  oflag=direct) and pwrite + fdatasync of the same bytes
 *   get / read     cs_get (buffered) and cs_read (io_uring, 8 in flight,
 *                  O_DIRECT and buffered), hot and cold, vs pread of the
 *                  same file in 1 MiB blocks (cold: the page cache is
 *                  dropped, which needs root; otherwise cold is skipped)
 *   open           of the store the puts left: after a clean close, after a
 *                  crash (a child that wrote 64 MiB past the checkpoint),
 *                  and with no checkpoint (a full scan: what it saves)
 *   index          bytes of index memory per chunk at 1 M chunks, and the
 *                  open time of such a store
 *
 * Throughputs are medians of runs. Usage:
 *   bench_store [--quick] [--dir DIR]   (DIR: where to put the store; /tmp)
 */
#include "chunkstore/cdc.h"
#include "chunkstore/cs_int.h"
#include "chunkstore/store.h"
#include "common/ev.h"
#include "common/tm.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int runs = 3;
static size_t data_len = 1ULL << 30;
static uint32_t index_chunks = 1000000;
static const char *base_dir = "/tmp";
static bool can_drop;

struct chunk {
	uint8_t id[CS_ID_LEN];
	size_t off, len;
};

static uint8_t *data;
static struct chunk *chunks;
static size_t nchunks;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static double secs(uint64_t t0)
{
	return (double)(tm_mono_ns() - t0) / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void drop_caches(void)
{
	int fd;

	sync();
	if ((fd = open("/proc/sys/vm/drop_caches", O_WRONLY)) >= 0) {
		if (write(fd, "3", 1) != 1)
			can_drop = false;
		close(fd);
	}
}

static struct cs_store *open_store(const char *dir, const struct cs_store_opts *o)
{
	struct cs_store *s;
	int rc;

	if ((rc = cs_store_open(dir, o, &s)) < 0)
		die("cs_store_open", rc);
	return s;
}

/* ---- chunker ---- */

static void bench_chunker(void)
{
	double lanes[8], serial[8], sha[8];

	for (size_t pos = 0; pos < data_len;) /* warm up: caches, clocks */
		pos += cs_cdc_cut(&cs_cdc_default, data + pos, data_len - pos, true);
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = tm_mono_ns();

		nchunks = 0;
		for (size_t pos = 0; pos < data_len;) {
			size_t n = cs_cdc_cut(&cs_cdc_default, data + pos, data_len - pos, true);

			chunks[nchunks].off = pos;
			chunks[nchunks++].len = n;
			pos += n;
		}
		lanes[r] = (double)data_len / secs(t0) / 1e9;
		t0 = tm_mono_ns();
		for (size_t pos = 0; pos < data_len;)
			pos +=
			    cs__cdc_cut_serial(&cs_cdc_default, data + pos, data_len - pos, true);
		serial[r] = (double)data_len / secs(t0) / 1e9;
		t0 = tm_mono_ns();
		for (size_t i = 0; i < nchunks; i++)
			cs_id_compute(data + chunks[i].off, chunks[i].len, chunks[i].id);
		sha[r] = (double)data_len / secs(t0) / 1e9;
	}
	printf("chunker   FastCDC 4 lanes         %7.2f GB/s   serial gear loop %5.2f GB/s   "
	       "%5.2fx  (%zu chunks, mean %.0f KiB)\n",
	       median(lanes, runs), median(serial, runs),
	       median(lanes, runs) / median(serial, runs), nchunks,
	       (double)data_len / (double)nchunks / 1024);
	printf("ids       SHA-256 (libcrypto)     %7.2f GB/s\n", median(sha, runs));
}

/* ---- raw baselines ---- */

static double raw_write(const char *path)
{
	uint64_t t0 = tm_mono_ns();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		die(path, errno);
	for (size_t i = 0; i < nchunks; i++)
		if (pwrite(fd, data + chunks[i].off, chunks[i].len, (off_t)chunks[i].off) !=
		    (ssize_t)chunks[i].len)
			die("pwrite", errno);
	if (fdatasync(fd) < 0)
		die("fdatasync", errno);
	close(fd);
	return (double)data_len / secs(t0) / 1e9;
}

/* dd oflag=direct: the device's streaming write speed. */
static double raw_write_direct(const char *path)
{
	uint64_t t0 = tm_mono_ns();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);

	if (fd < 0)
		die(path, errno);
	for (size_t off = 0; off < data_len; off += 1 << 20)
		if (pwrite(fd, data + off, 1 << 20, (off_t)off) != 1 << 20)
			die("pwrite O_DIRECT", errno);
	if (fdatasync(fd) < 0)
		die("fdatasync", errno);
	close(fd);
	return (double)data_len / secs(t0) / 1e9;
}

static double raw_read(const char *path, bool direct)
{
	uint8_t *buf = aligned_alloc(4096, 1 << 20);
	uint64_t t0 = tm_mono_ns(), off = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
	ssize_t n;

	if (fd < 0 || !buf)
		die(path, errno);
	while ((n = pread(fd, buf, 1 << 20, (off_t)off)) > 0)
		off += (uint64_t)n;
	close(fd);
	free(buf);
	return (double)off / secs(t0) / 1e9;
}

/* ---- puts ---- */

struct put_job {
	struct cs_store *s;
	size_t from, step;
};

static void *put_worker(void *arg)
{
	struct put_job *j = arg;

	for (size_t i = j->from; i < nchunks; i += j->step) {
		int rc =
		    cs_put(j->s, chunks[i].id, data + chunks[i].off, chunks[i].len, CS_PUT_PIN);

		if (rc < 0)
			die("cs_put", rc);
	}
	return NULL;
}

static double put_all(const char *dir, int threads)
{
	struct put_job j[4];
	pthread_t th[4];
	struct cs_store *s;
	uint64_t t0;
	int rc;

	rm_rf(dir);
	s = open_store(dir, NULL);
	t0 = tm_mono_ns();
	for (int i = 0; i < threads; i++) {
		j[i] = (struct put_job){ .s = s, .from = (size_t)i, .step = (size_t)threads };
		if (pthread_create(&th[i], NULL, put_worker, &j[i]) != 0)
			die("pthread_create", errno);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	if ((rc = cs_store_sync(s)) < 0)
		die("cs_store_sync", rc);
	t0 = tm_mono_ns() - t0;
	if ((rc = cs_store_close(s)) < 0)
		die("cs_store_close", rc);
	return (double)data_len / ((double)t0 / 1e9) / 1e9;
}

/* ---- gets and reads ---- */

static double get_all(struct cs_store *s)
{
	uint64_t t0 = tm_mono_ns();

	for (size_t i = 0; i < nchunks; i++) {
		uint8_t *buf;
		size_t len;
		int rc = cs_get(s, chunks[i].id, &buf, &len);

		if (rc < 0)
			die("cs_get", rc);
		free(buf);
	}
	return (double)data_len / secs(t0) / 1e9;
}

struct reader {
	struct cs_store *s;
	struct ev_loop *l;
	size_t next, done;
	int err;
};

static void start_reads(struct reader *r);

static void on_chunk(void *arg, int rc, struct cs_buf *b)
{
	struct reader *r = arg;

	(void)b;
	if (rc < 0)
		r->err = rc;
	r->done++;
	start_reads(r);
}

/* Keep 8 reads in flight. */
static void start_reads(struct reader *r)
{
	while (r->next < nchunks && r->next - r->done < 8) {
		struct cs_buf *b;
		int rc = cs_read(r->s, chunks[r->next].id, on_chunk, r, &b);

		r->next++;
		if (rc == 1) {
			cs_buf_unref(b);
			r->done++;
		} else if (rc < 0) {
			r->err = rc;
			r->done++;
		}
	}
}

static double read_all(struct cs_store *s, struct ev_loop *l, bool direct)
{
	struct reader r = { .s = s, .l = l };
	uint64_t t0 = tm_mono_ns();
	int rc;

	cs__set_read_mode(s, direct ? CS_READ_DIRECT : CS_READ_BUFFERED);
	start_reads(&r);
	while (r.done < nchunks)
		if ((rc = ev_loop_run_once(l, 1000)) < 0)
			die("ev_loop_run_once", rc);
	if (r.err)
		die("cs_read", r.err);
	return (double)data_len / secs(t0) / 1e9;
}

static double open_ms(const char *dir, struct cs_stats *ret_st)
{
	uint64_t t0 = tm_mono_ns();
	struct cs_store *s = open_store(dir, NULL);
	double ms = secs(t0) * 1e3;
	int rc;

	cs_store_stats(s, ret_st);
	if ((rc = cs_store_close(s)) < 0)
		die("cs_store_close", rc);
	return ms;
}

/* Open times of the store the puts left (~1 MiB chunks): what a checkpoint saves. */
static void bench_open(const char *dir)
{
	struct cs_stats st;
	char path[600];
	double ms;
	pid_t pid;
	int status;

	ms = open_ms(dir, &st);
	printf("open      clean close             %7.1f ms   (%llu chunks, %llu MiB; scanned %llu "
	       "KiB)\n",
	       ms, (unsigned long long)st.chunks, (unsigned long long)(st.bytes >> 20),
	       (unsigned long long)(st.open_scan_bytes >> 10));
	/* A crash after 64 MiB of new chunks past the checkpoint. */
	if ((pid = fork()) == 0) {
		struct cs_store *s = open_store(dir, NULL);
		uint8_t *d = malloc(1 << 20), id[CS_ID_LEN];

		for (int i = 0; d && i < 64; i++) {
			if (getrandom(d, 1 << 20, 0) != 1 << 20)
				_exit(1);
			cs_id_compute(d, 1 << 20, id);
			if (cs_put(s, id, d, 1 << 20, CS_PUT_PIN) < 0)
				_exit(1);
		}
		_exit(!d || cs_store_sync(s) < 0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("crash child", EIO);
	if (can_drop)
		drop_caches();
	ms = open_ms(dir, &st);
	printf("open      after a crash           %7.1f ms   (replayed %llu MiB after the "
	       "checkpoint%s)\n",
	       ms, (unsigned long long)(st.open_scan_bytes >> 20), can_drop ? ", cold" : "");
	snprintf(path, sizeof(path), "%s/index", dir);
	unlink(path);
	if (can_drop)
		drop_caches();
	ms = open_ms(dir, &st);
	printf("open      no checkpoint: baseline %7.1f ms   (full scan of %llu MiB%s)\n", ms,
	       (unsigned long long)(st.open_scan_bytes >> 20), can_drop ? ", cold" : "");
}

static void bench_put_get(void)
{
	double put1[8], put2[8], raww[8], rawwd[8], rawh[8], rawc[8], rawd[8], geth[8], getc[8],
	    rdh[8], rdc[8], rbh[8], rbc[8], scr[8];
	struct cs_store_opts ro = { .mem_cache = 1 << 20 }; /* chunks bypass the memory cache */
	char dir[512], raw[512];
	struct ev_loop *l;
	uint64_t t0;
	long bad;
	int rc;

	snprintf(dir, sizeof(dir), "%s/bench-store-%d", base_dir, (int)getpid());
	snprintf(raw, sizeof(raw), "%s/bench-raw-%d", base_dir, (int)getpid());
	if ((rc = ev_loop_new(64, &l)) < 0)
		die("ev_loop_new", rc);
	for (int r = 0; r < runs; r++) {
		struct cs_store *s;

		rawwd[r] = raw_write_direct(raw);
		raww[r] = raw_write(raw);
		rawh[r] = raw_read(raw, false);
		rawd[r] = raw_read(raw, true); /* O_DIRECT: from the disk whatever is cached */
		if (can_drop) {
			drop_caches();
			rawc[r] = raw_read(raw, false);
		}
		put2[r] = put_all(dir, 2);
		put1[r] = put_all(dir, 1);
		s = open_store(dir, &ro);
		cs_store_set_loop(s, l);
		geth[r] = get_all(s);
		rdh[r] = read_all(s, l, true);
		rbh[r] = read_all(s, l, false);
		if (can_drop) {
			drop_caches();
			getc[r] = get_all(s);
			drop_caches();
			rdc[r] = read_all(s, l, true);
			drop_caches();
			rbc[r] = read_all(s, l, false);
		}
		if (can_drop)
			drop_caches();
		t0 = tm_mono_ns();
		if ((bad = cs_scrub(s, NULL, NULL, NULL)) != 0)
			die("cs_scrub", bad < 0 ? (int)bad : EBADMSG);
		scr[r] = (double)data_len / secs(t0) / 1e9;
		if ((rc = cs_store_close(s)) < 0)
			die("cs_store_close", rc);
	}
	printf("raw write pwrite 1 MiB+fdatasync  %6.2f GB/s   dd oflag=direct      %5.2f GB/s\n",
	       median(raww, runs), median(rawwd, runs));
	printf("put       1 thread + sync         %7.2f GB/s   raw O_DIRECT write   %5.2f GB/s   "
	       "%5.2fx\n",
	       median(put1, runs), median(rawwd, runs), median(put1, runs) / median(rawwd, runs));
	printf("put       2 threads + sync        %7.2f GB/s   raw O_DIRECT write   %5.2f GB/s   "
	       "%5.2fx\n",
	       median(put2, runs), median(rawwd, runs), median(put2, runs) / median(rawwd, runs));
	printf("get hot   cs_get                  %7.2f GB/s   raw pread 1 MiB      %5.2f GB/s   "
	       "%5.2fx\n",
	       median(geth, runs), median(rawh, runs), median(geth, runs) / median(rawh, runs));
	printf("read hot  cs_read qd8 O_DIRECT    %7.2f GB/s   raw pread 1 MiB      %5.2f GB/s   "
	       "%5.2fx\n",
	       median(rdh, runs), median(rawh, runs), median(rdh, runs) / median(rawh, runs));
	printf("read hot  cs_read qd8 buffered    %7.2f GB/s   raw pread 1 MiB      %5.2f GB/s   "
	       "%5.2fx\n",
	       median(rbh, runs), median(rawh, runs), median(rbh, runs) / median(rawh, runs));
	if (can_drop) {
		printf("get cold  cs_get                  %7.2f GB/s   raw pread 1 MiB      %5.2f "
		       "GB/s   %5.2fx\n",
		       median(getc, runs), median(rawc, runs),
		       median(getc, runs) / median(rawc, runs));
		printf("read cold cs_read qd8 O_DIRECT    %7.2f GB/s   raw pread O_DIRECT   %5.2f "
		       "GB/s   %5.2fx\n",
		       median(rdc, runs), median(rawd, runs),
		       median(rdc, runs) / median(rawd, runs));
		printf("read cold cs_read qd8 buffered    %7.2f GB/s   raw pread 1 MiB      %5.2f "
		       "GB/s   %5.2fx\n",
		       median(rbc, runs), median(rawc, runs),
		       median(rbc, runs) / median(rawc, runs));
	} else {
		printf("cold reads: skipped (dropping the page cache needs root)\n");
	}
	printf("scrub     %-4s O_DIRECT + SHA-256  %6.2f GB/s   raw pread O_DIRECT   %5.2f GB/s   "
	       "%5.2fx\n",
	       can_drop ? "cold" : "", median(scr, runs), median(rawd, runs),
	       median(scr, runs) / median(rawd, runs));
	ev_loop_free(l);
	unlink(raw);
	bench_open(dir);
	rm_rf(dir);
}

/* ---- index memory and open times ---- */

static void put_tiny(struct cs_store *s, uint32_t from, uint32_t n)
{
	for (uint32_t i = from; i < from + n; i++) {
		uint8_t d[8], id[CS_ID_LEN];
		int rc;

		memcpy(d, &i, 4);
		memcpy(d + 4, "tiny", 4);
		cs_id_compute(d, sizeof(d), id);
		if ((rc = cs_put(s, id, d, sizeof(d), CS_PUT_PIN)) < 0)
			die("cs_put", rc);
	}
}

static void bench_index_and_open(void)
{
	struct cs_stats st;
	struct cs_store *s;
	char dir[512];
	uint64_t t0;
	int rc;

	snprintf(dir, sizeof(dir), "%s/bench-index-%d", base_dir, (int)getpid());
	rm_rf(dir);
	s = open_store(dir, NULL);
	t0 = tm_mono_ns();
	put_tiny(s, 0, index_chunks);
	cs_store_stats(s, &st);
	printf("index     %u chunks: %llu bytes, %.1f bytes/chunk (target <= 64); %.2f M puts/s\n",
	       index_chunks, (unsigned long long)st.index_mem,
	       (double)st.index_mem / (double)st.chunks, index_chunks / secs(t0) / 1e6);
	if ((rc = cs_store_close(s)) < 0)
		die("cs_store_close", rc);

	t0 = tm_mono_ns();
	s = open_store(dir, NULL);
	printf("open      %u chunks, clean       %7.1f ms   (checkpoint of %llu MiB)\n",
	       index_chunks, secs(t0) * 1e3,
	       (unsigned long long)(((uint64_t)index_chunks * CS_CKPT_ENT_LEN) >> 20));
	if ((rc = cs_store_close(s)) < 0)
		die("cs_store_close", rc);
	rm_rf(dir);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			runs = 1;
			data_len = 128 << 20;
			index_chunks = 100000;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			base_dir = argv[++i];
		} else {
			fprintf(stderr, "usage: bench_store [--quick] [--dir DIR]\n");
			return 2;
		}
	}
	can_drop = geteuid() == 0 && access("/proc/sys/vm/drop_caches", W_OK) == 0;
	if (!(data = aligned_alloc(4096, data_len)) ||
	    !(chunks = calloc(data_len / (256 << 10) + 2, sizeof(*chunks))))
		die("malloc", ENOMEM);
	for (size_t off = 0; off < data_len; off += 1 << 20)
		if (getrandom(data + off, 1 << 20, 0) != 1 << 20)
			die("getrandom", errno);
	printf("# %zu MiB of random data in %s, median of %d run%s\n", data_len >> 20, base_dir,
	       runs, runs > 1 ? "s" : "");
	bench_chunker();
	fflush(stdout);
	bench_put_get();
	fflush(stdout);
	bench_index_and_open();
	free(chunks);
	free(data);
	return 0;
}
