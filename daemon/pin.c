// SPDX-License-Identifier: MIT
/*
 * daemon/pin.c - `p2pfs pin` and `p2pfs unpin` in the daemon.
 *
 * Pin: the paths (files, or directories taken whole) are resolved in the
 * namespace; each file's chunk list is loaded (manifest blocks fetched from
 * members when they are not stored here); chunks stored here are pinned at
 * once, the others fetched from the members, PIN_WINDOW at a time, rarest
 * first (the fewest members known to hold it, among the next PIN_LOOKAHEAD
 * in a random order, so members pinning the same file fetch different
 * chunks and then trade them), and pinned as they arrive. A chunk that
 * fails is tried again PIN_TRIES times. Progress goes to the client every
 * half second; a client that hangs up stops the job (what is pinned stays).
 *
 * Unpin: the file's chunks become evictable cache again, except chunks no
 * other connected member is known to hold: those stay pinned, so unpinning
 * never makes the last copy evictable.
 *
 * Only synchronous store calls (cs_has, cs_get of manifest blocks, cs_pin)
 * and swarm fetches: a job lives until its last fetch has called back.
 */
#define LOG_SUBSYS "pin"
#include "daemon/pin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "common/tm.h"
#include "fs/mf.h"

#define PIN_WINDOW 32
#define PIN_LOOKAHEAD 64
#define PIN_TRIES 3
#define PIN_TICK_MS 500

struct want {
	uint8_t id[CS_ID_LEN];
	uint32_t len;
	uint32_t file; /* index in the job's files */
	uint8_t tries;
};

struct pin_job;

struct pin_fetch {
	struct pin_job *j;
	size_t idx; /* in j->w, or SIZE_MAX for a manifest block */
};

struct pin_job {
	struct pin_job *next;
	struct pin_set *set;
	struct ctl_conn *c;
	bool unpin, stopped, finished;
	uint64_t *files;
	uint8_t (*fid)[CS_ID_LEN]; /* content id of each file, once read */
	size_t nfiles, capfiles, fi;
	struct mf_loader *ld;
	struct want *w;
	size_t nw, capw;
	size_t cursor; /* w[0..cursor) were taken (pinned, fetching or failed) */
	size_t *retry; /* indices to take again */
	size_t nretry, capretry;
	unsigned inflight;
	uint64_t bytes_total, bytes_done, bytes_fetched, bytes_at_tick;
	uint64_t kept; /* unpin: bytes left pinned (no other holder) */
	size_t failed;
	uint64_t t0, tick_at;
	double rate;
	struct ev_timer tick;
};

struct pin_set {
	struct pin_ctx x;
	struct pin_job *jobs;
};

int pin_set_new(const struct pin_ctx *x, struct pin_set **ret)
{
	struct pin_set *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->x = *x;
	*ret = s;
	return 0;
}

static void job_step(struct pin_job *j);

static void job_free(struct pin_job *j)
{
	struct pin_set *s = j->set;

	for (struct pin_job **pp = &s->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	ev_timer_stop(s->x.loop, &j->tick);
	if (j->ld) {
		mf_loader_done(j->ld);
		free(j->ld);
	}
	free(j->files);
	free(j->fid);
	free(j->w);
	free(j->retry);
	free(j);
}

/* Tell the client (if still there) and, once no fetch is out, free. */
static void job_end(struct pin_job *j, int code, const char *msg)
{
	if (j->c) {
		if (msg)
			ctl_end(j->c, code, "%s", msg);
		else
			ctl_end(j->c, code, NULL);
		j->c = NULL;
	}
	j->stopped = true;
	if (!j->inflight)
		job_free(j);
}

void pin_set_free(struct pin_set *s)
{
	if (!s)
		return;
	while (s->jobs) {
		struct pin_job *j = s->jobs;

		if (j->c) {
			ctl_end(j->c, EXIT_FAIL, "the daemon is stopping");
			j->c = NULL;
		}
		job_free(j);
	}
	free(s);
}

void pin_set_stop(struct pin_set *s)
{
	/* Before the control socket goes: answer every client. Jobs with
	 * fetches out are freed as the swarm cancels them. */
	for (struct pin_job *j = s->jobs; j; j = j->next) {
		j->stopped = true;
		if (j->c) {
			ctl_end(j->c, EXIT_FAIL, "the daemon is stopping");
			j->c = NULL;
		}
	}
}

/* ---- resolving paths ---- */

static int add_file(struct pin_job *j, uint64_t ino)
{
	if (j->nfiles == j->capfiles) {
		size_t cap = j->capfiles ? j->capfiles * 2 : 64;
		uint64_t *n = realloc(j->files, cap * sizeof(*n));
		uint8_t(*f)[CS_ID_LEN];

		if (!n)
			return -ENOMEM;
		j->files = n;
		if (!(f = realloc(j->fid, cap * sizeof(*f))))
			return -ENOMEM;
		j->fid = f;
		j->capfiles = cap;
	}
	j->files[j->nfiles++] = ino;
	return 0;
}

struct walk {
	struct pin_job *j;
	uint64_t *dirs;
	size_t ndirs, cap;
	int rc;
};

static int walk_one(void *arg, const char *name, uint64_t ino, const struct ns_attr *a,
		    uint64_t next)
{
	struct walk *w = arg;

	(void)name;
	(void)next;
	if (a->type == NS_FILE) {
		w->rc = add_file(w->j, ino);
	} else if (a->type == NS_DIR) {
		if (w->ndirs == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 64;
			uint64_t *n = realloc(w->dirs, cap * sizeof(*n));

			if (!n) {
				w->rc = -ENOMEM;
				return 1;
			}
			w->dirs = n;
			w->cap = cap;
		}
		w->dirs[w->ndirs++] = ino;
	}
	return w->rc < 0;
}

static int add_tree(struct pin_job *j, uint64_t dir)
{
	struct walk w = { .j = j };
	int rc = 0;

	if (!(w.dirs = malloc(64 * sizeof(*w.dirs))))
		return -ENOMEM;
	w.cap = 64;
	w.dirs[w.ndirs++] = dir;
	while (w.ndirs && rc == 0) {
		uint64_t d = w.dirs[--w.ndirs];

		rc = ns_readdir(j->set->x.ns, d, 0, walk_one, &w);
		if (rc == 0)
			rc = w.rc;
	}
	free(w.dirs);
	return rc;
}

/* "a/b/c" relative to the root of the mount. */
static int resolve(struct ns *ns, const char *path, uint64_t *ret_ino)
{
	char buf[4096], *save, *tok;
	uint64_t ino = NS_ROOT_INO;
	int rc;

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		if ((rc = ns_lookup(ns, ino, tok, &ino)) < 0)
			return rc;
	}
	*ret_ino = ino;
	return 0;
}

/* ---- chunk lists ---- */

static int add_want(struct pin_job *j, const uint8_t *id, uint32_t len)
{
	if (j->nw == j->capw) {
		size_t cap = j->capw ? j->capw * 2 : 256;
		struct want *n = realloc(j->w, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		j->w = n;
		j->capw = cap;
	}
	memcpy(j->w[j->nw].id, id, CS_ID_LEN);
	j->w[j->nw].len = len;
	j->w[j->nw].file = (uint32_t)j->fi;
	j->w[j->nw].tries = 0;
	j->nw++;
	j->bytes_total += len;
	return 0;
}

static void on_block(void *arg, int rc, struct cs_buf *b);

/* Go on loading the manifest in j->ld; 1 when a fetch is out, 0 when done. */
static int load_step(struct pin_job *j)
{
	struct pin_set *s = j->set;
	uint8_t id[CS_ID_LEN];
	int rc;

	while ((rc = mf_loader_next(j->ld, id)) == 1) {
		uint8_t *buf;
		size_t len;
		uint32_t have;

		if (cs_has(s->x.cs, id, &have) < 0) {
			struct pin_fetch *pf;

			if (j->unpin || !s->x.swarm)
				return -ENOENT;
			if (!(pf = malloc(sizeof(*pf))))
				return -ENOMEM;
			pf->j = j;
			pf->idx = SIZE_MAX;
			if ((rc = swarm_fetch(s->x.swarm, id, j->fid[j->fi], SWARM_FETCH_URGENT,
					      on_block, pf)) < 0) {
				free(pf);
				return rc;
			}
			j->inflight++;
			return 1;
		}
		if ((rc = cs_get(s->x.cs, id, &buf, &len)) < 0)
			return rc;
		rc = mf_loader_feed(j->ld, buf, len);
		free(buf);
		if (rc < 0)
			return rc;
		/* Manifest blocks are pinned (or unpinned) with the file. */
		if (j->unpin) {
			if (!s->x.swarm || !swarm_availability(s->x.swarm, id))
				j->kept += len;
			else
				(void)!cs_unpin(s->x.cs, id); /* present: just read */
		} else {
			(void)!cs_pin(s->x.cs, id); /* present: just read */
		}
	}
	return rc;
}

static void on_block(void *arg, int rc, struct cs_buf *b)
{
	struct pin_fetch *pf = arg;
	struct pin_job *j = pf->j;

	(void)b;
	free(pf);
	j->inflight--;
	if (j->stopped) {
		if (!j->inflight)
			job_free(j);
		return;
	}
	if (rc < 0) {
		char h[9];
		uint64_t ino = j->files[j->fi];

		p2p_hex8(h, j->ld->want);
		log_warn("pin: the chunk list of inode %llu (block %s) cannot be fetched: %s",
			 (unsigned long long)ino, h, strerror(-rc));
		j->failed++;
		mf_loader_done(j->ld);
		free(j->ld);
		j->ld = NULL;
		j->fi++;
	}
	job_step(j);
}

/* The manifest in j->ld is complete: take its chunks. */
static int take_manifest(struct pin_job *j)
{
	struct mf m;
	int rc = 0;

	mf_loader_take(j->ld, &m);
	mf_loader_done(j->ld);
	free(j->ld);
	j->ld = NULL;
	for (size_t i = 0; i < m.n && rc == 0; i++)
		rc = add_want(j, m.c[i].id, m.c[i].len);
	mf_done(&m);
	return rc;
}

/* Load the chunk lists of the files, one at a time. 1: waiting for a fetch. */
static int load_files(struct pin_job *j)
{
	struct pin_set *s = j->set;
	int rc;

	while (j->fi < j->nfiles) {
		struct ns_content c;
		struct ns_attr a;

		if (j->ld) {
			if ((rc = load_step(j)) == 1)
				return 1;
			if (rc == 0)
				rc = take_manifest(j);
			if (rc < 0) {
				log_warn("pin: the chunk list of inode %llu: %s",
					 (unsigned long long)j->files[j->fi], strerror(-rc));
				j->failed++;
				if (j->ld) {
					mf_loader_done(j->ld);
					free(j->ld);
					j->ld = NULL;
				}
			}
			j->fi++;
			continue;
		}
		if (ns_get_content(s->x.ns, j->files[j->fi], &c) < 0 ||
		    ns_getattr(s->x.ns, j->files[j->fi], &a) < 0) {
			j->fi++; /* gone meanwhile */
			continue;
		}
		if (c.kind == NS_CONTENT_NONE)
			memset(j->fid[j->fi], 0, CS_ID_LEN);
		else
			memcpy(j->fid[j->fi], c.id, CS_ID_LEN);
		if (c.kind == NS_CONTENT_MANIFEST) {
			if (!(j->ld = malloc(sizeof(*j->ld))))
				return -ENOMEM;
			mf_loader_init(j->ld, c.id);
			continue; /* the loader takes it from here */
		}
		if (c.kind == NS_CONTENT_CHUNK &&
		    (rc = add_want(j, c.id,
				   (uint32_t)P2P_MIN(a.size, (uint64_t)CS_CHUNK_MAX_LIMIT))) < 0)
			return rc;
		j->fi++;
	}
	return 0;
}

/* ---- fetching ---- */

static void on_chunk(void *arg, int rc, struct cs_buf *b)
{
	struct pin_fetch *pf = arg;
	struct pin_job *j = pf->j;
	struct want *w = &j->w[pf->idx];

	(void)b;
	j->inflight--;
	if (j->stopped) {
		free(pf);
		if (!j->inflight)
			job_free(j);
		return;
	}
	if (rc == 0 && cs_pin(j->set->x.cs, w->id) == 0) {
		j->bytes_done += w->len;
		j->bytes_fetched += w->len;
	} else if (++w->tries < PIN_TRIES) {
		if (j->nretry == j->capretry) {
			size_t cap = j->capretry ? j->capretry * 2 : 64;
			size_t *n = realloc(j->retry, cap * sizeof(*n));

			if (n) {
				j->retry = n;
				j->capretry = cap;
			}
		}
		if (j->nretry < j->capretry)
			j->retry[j->nretry++] = pf->idx;
		else
			j->failed++;
	} else {
		char h[9];

		p2p_hex8(h, w->id);
		log_warn("pin: chunk %s could not be fetched after %d tries: %s", h, PIN_TRIES,
			 strerror(rc ? -rc : EIO));
		j->failed++;
	}
	free(pf);
	job_step(j);
}

/* The next chunk to take: rarest among the next PIN_LOOKAHEAD. */
static bool next_want(struct pin_job *j, size_t *ret)
{
	struct pin_set *s = j->set;
	size_t best = SIZE_MAX;
	unsigned best_av = ~0u;

	if (j->nretry) {
		*ret = j->retry[--j->nretry];
		return true;
	}
	if (j->cursor == j->nw)
		return false;
	for (size_t i = j->cursor; i < j->nw && i < j->cursor + PIN_LOOKAHEAD; i++) {
		unsigned av = s->x.swarm ? swarm_availability(s->x.swarm, j->w[i].id) : 0;

		if (av < best_av) {
			best_av = av;
			best = i;
		}
	}
	/* Move it to the cursor and take it. */
	if (best != j->cursor) {
		struct want t = j->w[best];

		j->w[best] = j->w[j->cursor];
		j->w[j->cursor] = t;
	}
	*ret = j->cursor++;
	return true;
}

static void fetch_more(struct pin_job *j)
{
	struct pin_set *s = j->set;
	size_t i;

	while (j->inflight < PIN_WINDOW && next_want(j, &i)) {
		struct want *w = &j->w[i];
		struct pin_fetch *pf;
		uint32_t len;
		int rc;

		if (cs_has(s->x.cs, w->id, &len) == 0 && cs_pin(s->x.cs, w->id) == 0) {
			j->bytes_done += w->len;
			continue;
		}
		if (!s->x.swarm || !(pf = malloc(sizeof(*pf)))) {
			j->failed++;
			continue;
		}
		pf->j = j;
		pf->idx = i;
		if ((rc = swarm_fetch(s->x.swarm, w->id, j->fid[w->file], 0, on_chunk, pf)) < 0) {
			char h[9];

			free(pf);
			p2p_hex8(h, w->id);
			log_warn("pin: chunk %s: %s", h,
				 rc == -ENOENT ? "not stored here and no member is connected"
					       : strerror(-rc));
			j->failed++;
			continue;
		}
		j->inflight++;
	}
}

static void unpin_all(struct pin_job *j)
{
	struct pin_set *s = j->set;

	for (size_t i = 0; i < j->nw; i++) {
		struct want *w = &j->w[i];
		uint32_t len;

		if (cs_has(s->x.cs, w->id, &len) < 0)
			continue;
		if (!s->x.swarm || !swarm_availability(s->x.swarm, w->id)) {
			j->kept += w->len;
			continue;
		}
		if (cs_unpin(s->x.cs, w->id) == 0)
			j->bytes_done += w->len;
	}
}

static void progress(struct pin_job *j, bool final)
{
	char a[32], b[32], r[32];
	uint64_t now = tm_mono_ms();
	double secs = (double)(now - j->t0) / 1000.0;
	struct swarm_stats st = { 0 };

	if (j->set->x.swarm)
		swarm_get_stats(j->set->x.swarm, &st);
	if (final) {
		ctl_printf(j->c, "pinned %zu file%s, %s (%s fetched) in %.1f s", j->nfiles,
			   j->nfiles == 1 ? "" : "s", p2p_fmt_size(a, sizeof(a), j->bytes_done),
			   p2p_fmt_size(b, sizeof(b), j->bytes_fetched), secs);
		return;
	}
	if (now > j->tick_at) {
		double inst = (double)(j->bytes_fetched - j->bytes_at_tick) * 1000.0 /
			      (double)(now - j->tick_at);

		j->rate = j->rate ? 0.7 * j->rate + 0.3 * inst : inst;
	}
	j->tick_at = now;
	j->bytes_at_tick = j->bytes_fetched;
	if (j->bytes_done < j->bytes_total && j->rate > 1) {
		double eta = (double)(j->bytes_total - j->bytes_done) / j->rate;

		ctl_progress(j->c, "pin: %s of %s (%.0f %%), %s/s from %u peer%s, ETA %.0f s",
			     p2p_fmt_size(a, sizeof(a), j->bytes_done),
			     p2p_fmt_size(b, sizeof(b), j->bytes_total),
			     j->bytes_total ? 100.0 * (double)j->bytes_done / (double)j->bytes_total
					    : 100.0,
			     p2p_fmt_size(r, sizeof(r), (uint64_t)j->rate), st.members,
			     st.members == 1 ? "" : "s", eta);
	} else {
		ctl_progress(j->c, "pin: %s of %s, %zu file%s, %u peer%s",
			     p2p_fmt_size(a, sizeof(a), j->bytes_done),
			     p2p_fmt_size(b, sizeof(b), j->bytes_total), j->nfiles,
			     j->nfiles == 1 ? "" : "s", st.members, st.members == 1 ? "" : "s");
	}
}

static void on_tick(struct ev_timer *t)
{
	struct pin_job *j = container_of(t, struct pin_job, tick);

	if (j->stopped)
		return;
	if (!j->c || ctl_gone(j->c)) {
		log_info("pin: the client went away; stopping (what is pinned stays pinned)");
		job_end(j, EXIT_FAIL, NULL);
		return;
	}
	progress(j, false);
	if (ev_timer_start(j->set->x.loop, &j->tick, PIN_TICK_MS) < 0)
		log_warn("pin: cannot re-arm the progress timer");
}

static void job_step(struct pin_job *j)
{
	int rc;

	if (j->stopped || j->finished)
		return;
	if (j->fi < j->nfiles) {
		if ((rc = load_files(j)) == 1)
			return;
		if (rc < 0) {
			job_end(j, EXIT_FAIL, strerror(-rc));
			return;
		}
		if (!j->unpin) {
			/* A random order: members pinning the same files take
			 * different chunks first, then trade them. */
			for (size_t i = j->nw; i > 1; i--) {
				size_t k = randombytes_uniform((uint32_t)i);
				struct want t = j->w[i - 1];

				j->w[i - 1] = j->w[k];
				j->w[k] = t;
			}
		}
	}
	if (j->unpin) {
		char a[32], b[32];

		unpin_all(j);
		j->finished = true;
		ctl_printf(j->c, "unpinned %zu file%s: %s evictable now", j->nfiles,
			   j->nfiles == 1 ? "" : "s", p2p_fmt_size(a, sizeof(a), j->bytes_done));
		if (j->kept)
			ctl_printf(j->c,
				   "kept pinned: %s that no connected member is known to hold",
				   p2p_fmt_size(b, sizeof(b), j->kept));
		job_end(j, j->failed ? EXIT_FAIL : 0, NULL);
		return;
	}
	fetch_more(j);
	if (!j->inflight && j->cursor == j->nw && !j->nretry) {
		char msg[128];

		j->finished = true;
		progress(j, true);
		/* Whole files here now: say so in the DHT. */
		for (size_t i = 0;
		     !j->failed && j->set->x.swarm && i < j->nfiles && i < SWARM_PROVIDE_MAX; i++)
			if (!sodium_is_zero(j->fid[i], CS_ID_LEN))
				swarm_provide(j->set->x.swarm, j->fid[i]);
		snprintf(msg, sizeof(msg),
			 "%zu chunk%s could not be fetched (see the daemon's log)", j->failed,
			 j->failed == 1 ? "" : "s");
		job_end(j, j->failed ? EXIT_FAIL : 0, j->failed ? msg : NULL);
	}
}

void pin_start(struct pin_set *s, struct ctl_conn *c, bool unpin, int argc, char **argv)
{
	struct pin_job *j = calloc(1, sizeof(*j));
	int rc = 0;

	if (!j) {
		ctl_end(c, EXIT_FAIL, "out of memory");
		return;
	}
	j->set = s;
	j->c = c;
	j->unpin = unpin;
	j->t0 = j->tick_at = tm_mono_ms();
	ev_timer_init(&j->tick, on_tick);
	j->next = s->jobs;
	s->jobs = j;
	for (int i = 0; i < argc && rc == 0; i++) {
		uint64_t ino;
		struct ns_attr a;

		if ((rc = resolve(s->x.ns, argv[i], &ino)) < 0 ||
		    (rc = ns_getattr(s->x.ns, ino, &a)) < 0) {
			char msg[4200];

			snprintf(msg, sizeof(msg), "%s: %s", argv[i], strerror(-rc));
			job_end(j, EXIT_FAIL, msg);
			return;
		}
		if (a.type == NS_DIR)
			rc = add_tree(j, ino);
		else if (a.type == NS_FILE)
			rc = add_file(j, ino);
	}
	if (rc < 0) {
		job_end(j, EXIT_FAIL, strerror(-rc));
		return;
	}
	if (!unpin && ev_timer_start(s->x.loop, &j->tick, PIN_TICK_MS) < 0)
		log_warn("pin: no progress timer (out of memory)");
	job_step(j);
}

void pin_set_status(struct pin_set *s, struct ctl_conn *c, FILE *json)
{
	bool first = true;

	if (json)
		fprintf(json, ",\"pins\":[");
	for (struct pin_job *j = s->jobs; j; j = j->next) {
		unsigned rarest = ~0u;
		char a[32], b[32], r[32];

		if (j->stopped || j->unpin)
			continue;
		/* Availability of what is still to fetch (a sample). */
		for (size_t i = j->cursor; s->x.swarm && i < j->nw && i < j->cursor + 256; i++)
			rarest = P2P_MIN(rarest, swarm_availability(s->x.swarm, j->w[i].id));
		if (json) {
			fprintf(json,
				"%s{\"files\":%zu,\"bytes\":%llu,\"done\":%llu,\"rate\":%.0f,"
				"\"rarest_holders\":%d}",
				first ? "" : ",", j->nfiles, (unsigned long long)j->bytes_total,
				(unsigned long long)j->bytes_done, j->rate,
				rarest == ~0u ? -1 : (int)rarest);
		} else {
			ctl_printf(c, "pinning:       %zu file%s, %s of %s, %s/s%s", j->nfiles,
				   j->nfiles == 1 ? "" : "s",
				   p2p_fmt_size(a, sizeof(a), j->bytes_done),
				   p2p_fmt_size(b, sizeof(b), j->bytes_total),
				   p2p_fmt_size(r, sizeof(r), (uint64_t)j->rate), "");
			if (rarest != ~0u)
				ctl_printf(
				    c, "               rarest chunk left is held by %u member%s",
				    rarest, rarest == 1 ? "" : "s");
		}
		first = false;
	}
	if (json)
		fprintf(json, "]");
}
