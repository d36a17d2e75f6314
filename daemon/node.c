// SPDX-License-Identifier: MIT
/*
 * daemon/node.c - the running daemon: opens the state directory, the chunk
 * store, the namespace and the mount, serves the control socket and shuts
 * down cleanly on `p2pfs umount`, SIGTERM/SIGINT or an external unmount.
 *
 * Threads: everything here runs on the event loop's thread; slow work (the
 * unmount call, commits, flushes, scrub) runs on the worker pool.
 *
 * Shutdown order (so nothing written is lost): unmount (the kernel flushes
 * and releases every file first), flush what is still dirty, commit the
 * namespace after syncing the store, close the store (index checkpoint),
 * then release the state lock.
 */
#define LOG_SUBSYS "daemon"
#include "daemon/daemon.h"
#include "chunkstore/store.h"
#include "common/bigbuf.h"
#include "common/tm.h"
#include "daemon/share.h"
#include "daemon/repl.h"
#include "daemon/pin.h"
#include "net/swarm.h"
#include "fs/fs.h"
#include "fs/ns.h"
#include "net/dht_node.h"
#include "net/ident.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sodium.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_ROTATE_BYTES (64ULL * 1024 * 1024)

struct scrub_job;

struct daemon {
	struct cfg *cfg;
	struct ev_loop *loop;
	struct ev_pool *pool;
	struct ev_pool *store_pool; /* chunks fetched from members are written here */
	struct cs_store *cs;
	struct ns *ns;
	struct fs *fs;
	struct ctl_server *ctl;
	struct share share;
	struct peer_ident *ident;
	uint8_t node_id[32];
	int lock_fd;
	int ready_fd;
	uint64_t start_ms;

	int sig_fd;
	struct signalfd_siginfo si;
	struct ev_op sig_op;

	bool stopping;
	bool by_signal;
	bool stopped_cleanly;
	struct ctl_conn *umount_conn;
	struct ev_timer exit_timer;
	unsigned exit_waits;
	struct scrub_job *scrub;
	struct dht_node *dn;
	struct dht_req *dht_reqs; /* lookups asked for over the control socket */
	struct swarm *swarm;	  /* the share's members */
	struct repl *repl;
	struct pin_set *pins;
};

struct dht_req {
	struct daemon *d;
	struct ctl_conn *c;
	struct dht_req *next;
	bool providers, get;
};

static void ready_reply(struct daemon *d, const char *line)
{
	if (d->ready_fd < 0)
		return;
	(void)!write(d->ready_fd, line, strlen(line));
	close(d->ready_fd);
	d->ready_fd = -1;
}

/* ---- shutdown ---- */

static void on_exit_timer(struct ev_timer *t)
{
	struct daemon *d = container_of(t, struct daemon, exit_timer);

	/* Let the last control replies reach their clients (up to ~1 s). */
	if (d->exit_waits++ < 20 && d->umount_conn) {
		if (ev_timer_start(d->loop, &d->exit_timer, 50) == 0)
			return;
	}
	ev_loop_stop(d->loop);
}

static void shutdown_done(void *arg, int rc)
{
	struct daemon *d = arg;

	if (rc == -EBUSY) {
		d->stopping = false;
		if (d->by_signal) {
			/* Asked to stop by a signal: detach lazily; the daemon ends once the
			 * last open file there is closed. */
			log_notice("%s is busy; detaching it lazily", d->cfg->mountpoint);
			d->stopping = true;
			fs_shutdown(d->fs, true, shutdown_done, d);
			return;
		}
		if (d->umount_conn) {
			ctl_end(d->umount_conn, EXIT_BUSY,
				"%s is busy: a program has a file or directory open there (see "
				"'fuser -vm %s'); close it, or use 'p2pfs umount --lazy'",
				d->cfg->mountpoint, d->cfg->mountpoint);
			d->umount_conn = NULL;
		}
		return;
	}
	if (rc < 0)
		log_error("shutdown: %s; the namespace log keeps what was committed",
			  strerror(-rc));
	else
		d->stopped_cleanly = true;
	log_notice("unmounted %s", d->cfg->mountpoint);
	if (d->umount_conn) {
		if (rc < 0)
			ctl_end(d->umount_conn, EXIT_FAIL,
				"unmounted, but the last commit failed: %s", strerror(-rc));
		else
			ctl_end(d->umount_conn, 0, NULL);
		d->umount_conn = NULL;
		if (ev_timer_start(d->loop, &d->exit_timer, 20) == 0)
			return;
	}
	ev_loop_stop(d->loop);
}

static void begin_shutdown(struct daemon *d, bool lazy, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	if (d->cfg->node_only) {
		log_notice("stopping (%s)", why);
		d->stopped_cleanly = true;
		if (d->umount_conn) {
			ctl_end(d->umount_conn, 0, NULL);
			d->umount_conn = NULL;
			if (ev_timer_start(d->loop, &d->exit_timer, 20) == 0)
				return;
		}
		ev_loop_stop(d->loop);
		return;
	}
	log_notice("unmounting %s (%s)", d->cfg->mountpoint, why);
	fs_shutdown(d->fs, lazy, shutdown_done, d);
}

static void on_session_ended(void *arg, int rc)
{
	struct daemon *d = arg;

	/* Someone unmounted us directly (umount/fusermount): everything is now flushed. */
	d->stopping = true;
	shutdown_done(d, rc);
}

static void on_signal(struct ev_op *op, int32_t res)
{
	struct daemon *d = container_of(op, struct daemon, sig_op);

	if (res != (int32_t)sizeof(d->si)) {
		log_error("reading signals: %s", res < 0 ? strerror(-res) : "short read");
		return;
	}
	if (d->si.ssi_signo == SIGTERM || d->si.ssi_signo == SIGINT) {
		d->by_signal = true;
		begin_shutdown(d, false, d->si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
	}
	if (ev_read(d->loop, &d->sig_op, d->sig_fd, &d->si, sizeof(d->si), 0) < 0)
		log_error("cannot wait for signals any more");
}

/* ---- status ---- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* A JSON reply built in memory, sent whole. */
struct json_reply {
	char *buf;
	size_t len;
	FILE *f;
};

/* NULL (the client told) when out of memory. */
static FILE *json_begin(struct ctl_conn *c, struct json_reply *r)
{
	r->buf = NULL;
	r->len = 0;
	if (!(r->f = open_memstream(&r->buf, &r->len)))
		ctl_end(c, EXIT_FAIL, "out of memory");
	return r->f;
}

static void json_end(struct ctl_conn *c, struct json_reply *r)
{
	fclose(r->f);
	ctl_printf(c, "%s", r->buf);
	free(r->buf);
	ctl_end(c, 0, NULL);
}

/* The DHT part of status: JSON members (after a comma) or text lines. */
static void dht_status(struct daemon *d, struct ctl_conn *c, FILE *json)
{
	struct dht_stats st;
	char a[32], b[32], ranges[512] = "";
	size_t off = 0;

	if (!d->dn)
		return;
	dht_get_stats(dht_node_dht(d->dn), &st);
	/* Contacts per bucket, as prefix ranges: "0-4:100 5:18 6:9 ..." */
	for (unsigned p = 0; p < 256 && off < sizeof(ranges) - 16; p++) {
		size_t n = dht_bucket_size(dht_node_dht(d->dn), p);

		if (n)
			off += (size_t)snprintf(ranges + off, sizeof(ranges) - off, "%s%u:%zu",
						off ? " " : "", p, n);
	}
	if (json) {
		fprintf(
		    json,
		    ",\"dht\":{\"listen\":\"%s\",\"contacts\":%zu,\"replacements\":%zu,"
		    "\"buckets\":\"%s\",\"msgs_in\":%llu,\"msgs_out\":%llu,\"bytes_in\":%llu,"
		    "\"bytes_out\":%llu,\"timeouts\":%llu,\"dropped\":%llu,"
		    "\"provider_keys\":%zu,\"provider_records\":%zu,\"lookups\":%zu,"
		    "\"lan_heard\":%llu,\"mem_bytes\":%zu}",
		    dht_node_listen_str(d->dn), st.contacts, st.replacements, ranges,
		    (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out,
		    (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out,
		    (unsigned long long)st.timeouts,
		    (unsigned long long)(st.dropped_malformed + st.dropped_rate + st.dropped_token),
		    st.provider_keys, st.provider_records, st.lookups_running,
		    (unsigned long long)dht_node_lan_heard(d->dn), st.mem_bytes);
		return;
	}
	ctl_printf(c, "dht listen:    %s (udp)", dht_node_listen_str(d->dn));
	ctl_printf(c, "dht peers:     %zu contacts (+%zu waiting), %llu heard on the LAN",
		   st.contacts, st.replacements, (unsigned long long)dht_node_lan_heard(d->dn));
	ctl_printf(c, "dht buckets:   %s", *ranges ? ranges : "(empty)");
	ctl_printf(c,
		   "dht traffic:   %llu msgs in (%s), %llu out (%s), %llu timeouts, %llu dropped",
		   (unsigned long long)st.msgs_in, p2p_fmt_size(a, sizeof(a), st.bytes_in),
		   (unsigned long long)st.msgs_out, p2p_fmt_size(b, sizeof(b), st.bytes_out),
		   (unsigned long long)st.timeouts,
		   (unsigned long long)(st.dropped_malformed + st.dropped_rate + st.dropped_token));
	ctl_printf(c, "dht records:   %zu keys, %zu provider records stored for others",
		   st.provider_keys, st.provider_records);
}

/* The members part of status: JSON members (after a comma) or text lines. */
static void swarm_status(struct daemon *d, struct ctl_conn *c, FILE *json)
{
	struct swarm_stats st;
	struct repl_stats rs;
	struct swarm_peer_info pi[64];
	size_t n;
	char a[32], b[32];

	if (!d->swarm)
		return;
	swarm_get_stats(d->swarm, &st);
	repl_get_stats(d->repl, &rs);
	n = swarm_peers(d->swarm, pi, ARRAY_SIZE(pi));
	if (json) {
		fprintf(json,
			",\"swarm\":{\"port\":%u,\"members\":%u,\"connecting\":%u,"
			"\"known_addrs\":%u,\"fetches\":%u,\"fetched\":%llu,"
			"\"fetched_bytes\":%llu,\"served\":%llu,\"served_bytes\":%llu,"
			"\"fetch_failed\":%llu,\"bad_chunks\":%llu,\"stalls\":%llu,"
			"\"records_in\":%llu,\"records_applied\":%llu,\"records_rejected\":%llu,"
			"\"records_out\":%llu,\"syncs\":%llu,\"rate_in\":%.0f,\"rate_out\":%.0f,"
			"\"redirects\":%llu,\"endgame\":%llu,\"relayed\":%llu,\"storing\":%llu,"
			"\"peers\":[",
			swarm_port(d->swarm), st.members, st.connecting, st.known_addrs, st.fetches,
			(unsigned long long)st.fetched, (unsigned long long)st.fetched_bytes,
			(unsigned long long)st.served, (unsigned long long)st.served_bytes,
			(unsigned long long)st.fetch_failed, (unsigned long long)st.bad_chunks,
			(unsigned long long)st.stalls, (unsigned long long)rs.records_in,
			(unsigned long long)rs.records_applied,
			(unsigned long long)rs.records_rejected, (unsigned long long)rs.records_out,
			(unsigned long long)rs.syncs, st.rate_in, st.rate_out,
			(unsigned long long)st.redirects, (unsigned long long)st.endgame,
			(unsigned long long)st.relayed, (unsigned long long)st.storing);
		for (size_t i = 0; i < n && i < ARRAY_SIZE(pi); i++) {
			char id[65];

			p2p_hex(id, pi[i].id, 32);
			fprintf(json,
				"%s{\"id\":\"%s\",\"addr\":\"%s\",\"direction\":\"%s\","
				"\"writer\":%s,\"bytes_in\":%llu,\"bytes_out\":%llu,"
				"\"chunks_in\":%llu,\"chunks_out\":%llu,\"inflight\":%u,"
				"\"connected_s\":%llu}",
				i ? "," : "", id, pi[i].addr, pi[i].outgoing ? "out" : "in",
				pi[i].writable ? "true" : "false",
				(unsigned long long)pi[i].bytes_in,
				(unsigned long long)pi[i].bytes_out,
				(unsigned long long)pi[i].chunks_in,
				(unsigned long long)pi[i].chunks_out, pi[i].inflight,
				(unsigned long long)(pi[i].connected_ms / 1000));
		}
		fprintf(json, "]");
		if (d->pins)
			pin_set_status(d->pins, c, json);
		fprintf(json, "}");
		return;
	}
	ctl_printf(c,
		   "members:       %u connected, %u connecting, %u addresses known (tcp port %u)",
		   st.members, st.connecting, st.known_addrs, swarm_port(d->swarm));
	{
		char ri[32], ro[32], sb[32];

		ctl_printf(c, "transfers:     %u chunks in flight, in %s/s, out %s/s%s%s%s",
			   st.fetches, p2p_fmt_size(ri, sizeof(ri), (uint64_t)st.rate_in),
			   p2p_fmt_size(ro, sizeof(ro), (uint64_t)st.rate_out),
			   st.storing ? " (" : "",
			   st.storing ? p2p_fmt_size(sb, sizeof(sb), st.storing) : "",
			   st.storing ? " being written to disk)" : "");
	}
	ctl_printf(
	    c,
	    "exchanged:     fetched %llu chunks (%s), served %llu (%s; %llu passed on as they arrived)",
	    (unsigned long long)st.fetched, p2p_fmt_size(a, sizeof(a), st.fetched_bytes),
	    (unsigned long long)st.served, p2p_fmt_size(b, sizeof(b), st.served_bytes),
	    (unsigned long long)st.relayed);
	if (d->pins)
		pin_set_status(d->pins, c, NULL);
	if (st.fetch_failed || st.bad_chunks || st.stalls)
		ctl_printf(c, "fetch errors:  %llu failed, %llu bad chunks, %llu stalls",
			   (unsigned long long)st.fetch_failed, (unsigned long long)st.bad_chunks,
			   (unsigned long long)st.stalls);
	ctl_printf(c,
		   "namespace:     %llu records from members (%llu new, %llu refused), %llu sent",
		   (unsigned long long)rs.records_in, (unsigned long long)rs.records_applied,
		   (unsigned long long)rs.records_rejected, (unsigned long long)rs.records_out);
	for (size_t i = 0; i < n && i < ARRAY_SIZE(pi); i++) {
		char id[9];

		p2p_hex8(id, pi[i].id);
		ctl_printf(c, "  member %s  %-22s %-3s %s  down %s  up %s", id, pi[i].addr,
			   pi[i].outgoing ? "out" : "in", pi[i].writable ? "writer" : "reader",
			   p2p_fmt_size(a, sizeof(a), pi[i].bytes_in),
			   p2p_fmt_size(b, sizeof(b), pi[i].bytes_out));
	}
}

static void peers_reply(struct daemon *d, struct ctl_conn *c, bool json)
{
	struct swarm_peer_info pi[256];
	size_t n;

	if (!d->swarm) {
		ctl_end(c, EXIT_USAGE, "a DHT node has no share members");
		return;
	}
	n = P2P_MIN(swarm_peers(d->swarm, pi, ARRAY_SIZE(pi)), ARRAY_SIZE(pi));
	if (json) {
		struct json_reply jr;
		FILE *f = json_begin(c, &jr);

		if (!f)
			return;
		fputc('[', f);
		for (size_t i = 0; i < n; i++) {
			char id[65];

			p2p_hex(id, pi[i].id, 32);
			fprintf(
			    f,
			    "%s{\"id\":\"%s\",\"addr\":\"%s\",\"direction\":\"%s\","
			    "\"writer\":%s,\"bytes_in\":%llu,\"bytes_out\":%llu,"
			    "\"chunks_in\":%llu,\"chunks_out\":%llu,\"inflight\":%u,"
			    "\"queued\":%u,\"rtt_ms\":%.1f,\"connected_s\":%llu}",
			    i ? "," : "", id, pi[i].addr, pi[i].outgoing ? "out" : "in",
			    pi[i].writable ? "true" : "false", (unsigned long long)pi[i].bytes_in,
			    (unsigned long long)pi[i].bytes_out,
			    (unsigned long long)pi[i].chunks_in,
			    (unsigned long long)pi[i].chunks_out, pi[i].inflight, pi[i].queued,
			    pi[i].rtt_us / 1000.0, (unsigned long long)(pi[i].connected_ms / 1000));
		}
		fputc(']', f);
		json_end(c, &jr);
		return;
	}
	if (!n) {
		ctl_end(c, 0, "no member connected");
		return;
	}
	ctl_printf(c, "%-16s  %-22s %-3s %-6s %10s %10s %8s %5s %8s", "node", "address", "dir",
		   "role", "down", "up", "rtt", "reqs", "since");
	for (size_t i = 0; i < n; i++) {
		char id[17], a[32], b[32], rtt[16];

		p2p_hex(id, pi[i].id, 8);
		if (pi[i].rtt_us)
			snprintf(rtt, sizeof(rtt), "%.1fms", pi[i].rtt_us / 1000.0);
		else
			snprintf(rtt, sizeof(rtt), "-");
		ctl_printf(c, "%-16s  %-22s %-3s %-6s %10s %10s %8s %5u %7llus", id, pi[i].addr,
			   pi[i].outgoing ? "out" : "in", pi[i].writable ? "writer" : "reader",
			   p2p_fmt_size(a, sizeof(a), pi[i].bytes_in),
			   p2p_fmt_size(b, sizeof(b), pi[i].bytes_out), rtt, pi[i].inflight,
			   (unsigned long long)(pi[i].connected_ms / 1000));
	}
	ctl_end(c, 0, NULL);
}

static void node_status_reply(struct daemon *d, struct ctl_conn *c, bool json)
{
	char node[65];
	uint64_t up = (tm_mono_ms() - d->start_ms) / 1000;

	p2p_hex(node, d->node_id, 32);
	if (json) {
		struct json_reply jr;
		FILE *f = json_begin(c, &jr);

		if (!f)
			return;
		fprintf(f, "{\"version\":\"%s\",\"pid\":%d,\"mode\":\"node\",\"state_dir\":",
			P2PFS_VERSION, getpid());
		json_str(f, d->cfg->state_dir);
		fprintf(f, ",\"node_id\":\"%s\",\"uptime_s\":%llu", node, (unsigned long long)up);
		dht_status(d, c, f);
		fprintf(f, "}");
		json_end(c, &jr);
		return;
	}
	ctl_printf(c, "mode:          DHT node (no mount)");
	ctl_printf(c, "state dir:     %s", d->cfg->state_dir);
	ctl_printf(c, "node id:       %s", node);
	ctl_printf(c, "uptime:        %llus", (unsigned long long)up);
	dht_status(d, c, NULL);
	ctl_end(c, 0, NULL);
}

static void cmd_status_reply(struct daemon *d, struct ctl_conn *c, bool json)
{
	struct cs_stats cs;
	struct ns_stats ns;
	struct fs_stats fs;
	char node[65], share[65], a[32], b[32], e[32];
	uint64_t up = (tm_mono_ms() - d->start_ms) / 1000;
	double dedup;

	if (d->cfg->node_only) {
		node_status_reply(d, c, json);
		return;
	}
	cs_store_stats(d->cs, &cs);
	ns_get_stats(d->ns, &ns);
	fs_get_stats(d->fs, &fs);
	p2p_hex(node, d->node_id, 32);
	p2p_hex(share, d->share.pk, SHARE_PK_LEN);
	/* Logical bytes of local files over the bytes their chunks take. */
	dedup = cs.bytes ? (double)ns.bytes / (double)cs.bytes : 1.0;
	if (json) {
		struct json_reply jr;
		FILE *f = json_begin(c, &jr);

		if (!f)
			return;
		fprintf(f, "{\"version\":\"%s\",\"pid\":%d,\"mountpoint\":", P2PFS_VERSION,
			getpid());
		json_str(f, d->cfg->mountpoint);
		fprintf(f, ",\"state_dir\":");
		json_str(f, d->cfg->state_dir);
		fprintf(
		    f,
		    ",\"node_id\":\"%s\",\"share_id\":\"%s\",\"writable\":%s,"
		    "\"uptime_s\":%llu,\"files\":%llu,\"dirs\":%llu,\"symlinks\":%llu,"
		    "\"bytes\":%llu,\"conflicts\":%llu,\"chunks\":%llu,\"chunk_bytes\":%llu,"
		    "\"pinned_bytes\":%llu,\"disk_bytes\":%llu,\"dedup_ratio\":%.3f,"
		    "\"cache_bytes\":%llu,\"cache_quota\":%llu,\"evictions\":%llu,"
		    "\"corrupt_chunks\":%llu,\"pending_records\":%llu,\"open_files\":%llu,"
		    "\"dirty_files\":%llu,\"requests\":%llu,\"read_bytes\":%llu,"
		    "\"write_bytes\":%llu,\"commits\":%llu,\"index_mem\":%llu,"
		    "\"namespace_mem\":%llu,\"read_waits\":%llu,\"staged_mem_bytes\":%llu,\"write_waits\":%llu,\"unchunked_bytes\":%llu",
		    node, share, d->share.writable ? "true" : "false", (unsigned long long)up,
		    (unsigned long long)ns.files, (unsigned long long)ns.dirs,
		    (unsigned long long)ns.symlinks, (unsigned long long)ns.bytes,
		    (unsigned long long)ns.conflicts, (unsigned long long)cs.chunks,
		    (unsigned long long)cs.bytes, (unsigned long long)cs.pinned_bytes,
		    (unsigned long long)cs.disk_bytes, dedup, (unsigned long long)cs.cache_bytes,
		    (unsigned long long)cs.cache_quota, (unsigned long long)cs.evictions,
		    (unsigned long long)cs.corrupt, (unsigned long long)ns.pending,
		    (unsigned long long)fs.open_files, (unsigned long long)fs.dirty_files,
		    (unsigned long long)fs.requests, (unsigned long long)fs.read_bytes,
		    (unsigned long long)fs.write_bytes, (unsigned long long)fs.commits,
		    (unsigned long long)cs.index_mem, (unsigned long long)ns.mem_bytes,
		    (unsigned long long)fs.read_waits, (unsigned long long)fs.staged_mem_bytes,
		    (unsigned long long)fs.write_waits, (unsigned long long)fs.unchunked_bytes);
		{
			struct p2p_bigbuf_stats bs;

			p2p_bigbuf_stats(&bs);
			fprintf(f,
				",\"mem_cache_bytes\":%llu,\"chunk_buffers\":{\"taken\":%llu,"
				"\"reused\":%llu,\"pooled_bytes\":%llu}",
				(unsigned long long)cs.mem_cache_bytes, (unsigned long long)bs.gets,
				(unsigned long long)bs.reused, (unsigned long long)bs.pooled_bytes);
		}
		dht_status(d, c, f);
		swarm_status(d, c, f);
		fprintf(f, "}");
		json_end(c, &jr);
		return;
	}
	ctl_printf(c, "mount point:   %s", d->cfg->mountpoint);
	ctl_printf(c, "state dir:     %s", d->cfg->state_dir);
	ctl_printf(c, "node id:       %s", node);
	ctl_printf(c, "share id:      %s (%s)", share,
		   d->share.writable ? "read-write" : "read-only");
	ctl_printf(c, "uptime:        %llus", (unsigned long long)up);
	ctl_printf(c, "files:         %llu files, %llu directories, %llu symlinks, %s",
		   (unsigned long long)ns.files, (unsigned long long)ns.dirs,
		   (unsigned long long)ns.symlinks, p2p_fmt_size(a, sizeof(a), ns.bytes));
	if (ns.conflicts)
		ctl_printf(c, "conflicts:     %llu", (unsigned long long)ns.conflicts);
	ctl_printf(c, "stored:        %llu chunks, %s (%s on disk), dedup ratio %.2f",
		   (unsigned long long)cs.chunks, p2p_fmt_size(a, sizeof(a), cs.bytes),
		   p2p_fmt_size(b, sizeof(b), cs.disk_bytes), dedup);
	ctl_printf(c, "pinned:        %s", p2p_fmt_size(a, sizeof(a), cs.pinned_bytes));
	ctl_printf(c, "cache:         %s of %s quota, %llu evictions",
		   p2p_fmt_size(a, sizeof(a), cs.cache_bytes),
		   p2p_fmt_size(b, sizeof(b), cs.cache_quota), (unsigned long long)cs.evictions);
	if (cs.corrupt)
		ctl_printf(c, "corrupt:       %llu chunks failed verification (run p2pfs scrub)",
			   (unsigned long long)cs.corrupt);
	ctl_printf(c, "activity:      %llu open files, %llu being written, %llu changes pending",
		   (unsigned long long)fs.open_files, (unsigned long long)fs.dirty_files,
		   (unsigned long long)ns.pending);
	ctl_printf(c, "traffic:       read %s, written %s, %llu requests, %llu commits",
		   p2p_fmt_size(a, sizeof(a), fs.read_bytes),
		   p2p_fmt_size(b, sizeof(b), fs.write_bytes), (unsigned long long)fs.requests,
		   (unsigned long long)fs.commits);
	ctl_printf(c, "memory:        index %s, namespace %s, writes waiting to be chunked %s",
		   p2p_fmt_size(a, sizeof(a), cs.index_mem),
		   p2p_fmt_size(e, sizeof(e), ns.mem_bytes),
		   p2p_fmt_size(b, sizeof(b), fs.staged_mem_bytes));
	swarm_status(d, c, NULL);
	dht_status(d, c, NULL);
	ctl_end(c, 0, NULL);
}

/* ---- scrub ---- */

#define SCRUB_LIST_MAX 20	/* damaged chunks listed to the client */
#define SCRUB_REFETCH_MAX 65536 /* damaged chunks fetched again */

struct scrub_job {
	struct ev_work w;
	struct daemon *d;
	struct ctl_conn *conn;
	struct ev_timer tick;
	_Atomic uint64_t done, total, bad;
	pthread_mutex_t lock;
	uint8_t (*ids)[32]; /* damaged chunks, up to SCRUB_REFETCH_MAX */
	unsigned nids, capids;
	long rc;
	uint64_t t0;
	unsigned refetching, refetched; /* fetches out, and done */
};

static void scrub_bad(void *arg, const uint8_t id[static CS_ID_LEN], int rc)
{
	struct scrub_job *j = arg;
	char hex[65];

	p2p_hex(hex, id, CS_ID_LEN);
	log_error("scrub: chunk %s is damaged (%s); dropped from the index", hex,
		  rc == -EBADMSG ? "content does not match its id" : strerror(-rc));
	pthread_mutex_lock(&j->lock);
	if (j->nids == j->capids && j->capids < SCRUB_REFETCH_MAX) {
		unsigned cap = j->capids ? 2 * j->capids : 64;
		uint8_t(*n)[32] = realloc(j->ids, cap * sizeof(*n));

		if (n) {
			j->ids = n;
			j->capids = cap;
		}
	}
	if (j->nids < j->capids)
		memcpy(j->ids[j->nids++], id, CS_ID_LEN);
	pthread_mutex_unlock(&j->lock);
	atomic_fetch_add(&j->bad, 1);
}

static void scrub_progress(void *arg, uint64_t done, uint64_t total)
{
	struct scrub_job *j = arg;

	atomic_store(&j->done, done);
	atomic_store(&j->total, total);
}

static void scrub_run(struct ev_work *w)
{
	struct scrub_job *j = container_of(w, struct scrub_job, w);

	j->rc = cs_scrub(j->d->cs, scrub_bad, scrub_progress, j);
}

static void scrub_tick(struct ev_timer *t)
{
	struct scrub_job *j = container_of(t, struct scrub_job, tick);
	char a[32], b[32];

	ctl_progress(j->conn, "scrub: %s of %s checked, %llu damaged",
		     p2p_fmt_size(a, sizeof(a), atomic_load(&j->done)),
		     p2p_fmt_size(b, sizeof(b), atomic_load(&j->total)),
		     (unsigned long long)atomic_load(&j->bad));
	(void)!ev_timer_start(j->d->loop, &j->tick, 500);
}

static void scrub_free(struct scrub_job *j)
{
	pthread_mutex_destroy(&j->lock);
	free(j->ids);
	free(j);
}

static void scrub_finish(struct scrub_job *j)
{
	struct ctl_conn *c = j->conn;

	j->d->scrub = NULL;
	if (!c) { /* the daemon is stopping: the client was answered */
		scrub_free(j);
		return;
	}
	if (j->refetched)
		ctl_printf(c, "fetched again from members: %u of %ld", j->refetched, j->rc);
	if (j->rc && j->refetched == (unsigned)j->rc)
		ctl_end(c, EXIT_DATA,
			"%ld damaged chunk%s replaced by verified copies from members", j->rc,
			j->rc == 1 ? "" : "s");
	else if (j->rc)
		ctl_end(c, EXIT_DATA,
			"%ld damaged chunk%s removed, %ld not available from members: files that "
			"use them read as errors until a member supplies them",
			j->rc, j->rc == 1 ? "" : "s", j->rc - (long)j->refetched);
	else
		ctl_end(c, 0, NULL);
	scrub_free(j);
}

struct scrub_refetch {
	struct scrub_job *j;
	uint8_t id[CS_ID_LEN];
};

static void scrub_refetched(void *arg, int rc, struct cs_buf *b)
{
	struct scrub_refetch *r = arg;
	struct scrub_job *j = r->j;

	(void)b;
	/* Pinned or cached before, it is kept now: its copy here was damaged once. */
	if (rc == 0 && cs_pin(j->d->cs, r->id) == 0)
		j->refetched++;
	free(r);
	if (--j->refetching == 0)
		scrub_finish(j);
}

static void scrub_done(struct ev_work *w)
{
	struct scrub_job *j = container_of(w, struct scrub_job, w);
	struct ctl_conn *c = j->conn;
	char a[32];

	ev_timer_stop(j->d->loop, &j->tick);
	if (j->rc < 0) {
		ctl_end(c, EXIT_FAIL, "scrub failed: %s", strerror((int)-j->rc));
		j->d->scrub = NULL;
		scrub_free(j);
		return;
	}
	ctl_printf(c, "scrub: %s in %.1f s, %ld damaged chunk%s",
		   p2p_fmt_size(a, sizeof(a), atomic_load(&j->done)),
		   (double)(tm_mono_ms() - j->t0) / 1000.0, j->rc, j->rc == 1 ? "" : "s");
	for (unsigned i = 0; i < j->nids && i < SCRUB_LIST_MAX; i++) {
		char hex[65];

		p2p_hex(hex, j->ids[i], CS_ID_LEN);
		ctl_printf(c, "damaged: %s", hex);
	}
	/* Fetch verified copies from the members. */
	j->refetching = 1;
	for (unsigned i = 0; j->d->swarm && i < j->nids; i++) {
		struct scrub_refetch *r = malloc(sizeof(*r));

		if (!r)
			break;
		r->j = j;
		memcpy(r->id, j->ids[i], CS_ID_LEN);
		if (swarm_fetch(j->d->swarm, r->id, NULL, 0, scrub_refetched, r) == 0)
			j->refetching++;
		else
			free(r);
	}
	if (j->refetching > 1)
		ctl_note(c, "fetching %u damaged chunk%s again from members", j->refetching - 1,
			 j->refetching == 2 ? "" : "s");
	if (--j->refetching == 0)
		scrub_finish(j);
}

static void start_scrub(struct daemon *d, struct ctl_conn *c)
{
	struct scrub_job *j;

	if (d->scrub) {
		ctl_end(c, EXIT_BUSY, "a scrub is already running");
		return;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		ctl_end(c, EXIT_FAIL, "out of memory");
		return;
	}
	j->d = d;
	j->conn = c;
	j->t0 = tm_mono_ms();
	pthread_mutex_init(&j->lock, NULL);
	ev_timer_init(&j->tick, scrub_tick);
	(void)!ev_timer_start(d->loop, &j->tick, 500);
	d->scrub = j;
	ev_work_submit(d->pool, d->loop, &j->w, scrub_run, scrub_done);
}

/* ---- control requests ---- */

static void sync_done(void *arg, int rc)
{
	struct ctl_conn *c = arg;

	if (rc < 0)
		ctl_end(c, EXIT_FAIL, "sync failed: %s", strerror(-rc));
	else
		ctl_end(c, 0, NULL);
}

/* ---- DHT requests from `p2pfs dht` ---- */

static void dht_req_unlink(struct daemon *d, struct dht_req *q)
{
	for (struct dht_req **pp = &d->dht_reqs; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			return;
		}
}

static void dht_req_done(void *arg, const struct dht_result *r)
{
	struct dht_req *q = arg;
	struct ctl_conn *c = q->c;
	char hex[65], addr[64];

	dht_req_unlink(q->d, q);
	for (size_t i = 0; i < r->nproviders; i++) {
		p2p_hex(hex, r->providers[i].id, 32);
		dht_addr_str(&r->providers[i].addr, addr, sizeof(addr));
		ctl_printf(c, "provider %s %s", hex, addr);
	}
	for (size_t i = 0; i < r->nclosest && (i < 3 || !(q->providers || q->get || r->stored));
	     i++) {
		p2p_hex(hex, r->closest[i].id, 32);
		dht_addr_str(&r->closest[i].addr, addr, sizeof(addr));
		ctl_printf(c, "node %s %s", hex, addr);
	}
	if (r->has_record) {
		p2p_hex(hex, r->record.pk, 32);
		ctl_printf(c, "value %.*s", (int)r->record.value_len,
			   (const char *)r->record.value);
		ctl_printf(c, "seq %llu, signed by %s", (unsigned long long)r->record.seq, hex);
	}
	if (r->stored) {
		p2p_hex(hex, peer_ident_pk(q->d->ident), 32);
		ctl_printf(c, "stored on %u nodes; read it with: p2pfs dht get %s NAME", r->stored,
			   hex);
	}
	ctl_printf(c, "took %u hops, %u requests, %u replies, %llu ms", r->hops, r->queries,
		   r->answers, (unsigned long long)r->elapsed_ms);
	if (r->rc == -ETIMEDOUT)
		ctl_end(c, EXIT_FAIL, "no node answered (is the node connected? see p2pfs status)");
	else if (q->providers && !r->nproviders)
		ctl_end(c, EXIT_FAIL, "no providers found");
	else if (q->get && !r->has_record)
		ctl_end(c, EXIT_FAIL, "no record found");
	else
		ctl_end(c, 0, NULL);
	free(q);
}

/* A 64-hex-digit id, or any other text: its SHA-256. */
static void parse_key(const char *s, uint8_t out[static 32])
{
	if (strlen(s) == 64 && sodium_hex2bin(out, 32, s, 64, NULL, NULL, NULL) == 0)
		return;
	crypto_hash_sha256(out, (const uint8_t *)s, strlen(s));
}

/* put NAME VALUE: a record signed with the node's key under NAME;
 * get [PUBKEY] NAME: the newest record of that key (ours by default). */
static void dht_record_request(struct daemon *d, struct ctl_conn *c, int argc, char **argv)
{
	struct dht *dht = dht_node_dht(d->dn);
	const char *name = argv[argc == 4 && !strcmp(argv[1], "get") ? 3 : 2];
	struct dht_record rec;
	struct dht_req *q;
	uint8_t target[32], signed_bytes[DHT_RECORD_SIGNED_MAX];
	int rc;

	memset(&rec, 0, sizeof(rec));
	if (strlen(name) > DHT_SALT_MAX) {
		ctl_end(c, EXIT_USAGE, "a record name has at most %d bytes", DHT_SALT_MAX);
		return;
	}
	memcpy(rec.pk, peer_ident_pk(d->ident), 32);
	if (argc == 4 && !strcmp(argv[1], "get") &&
	    (strlen(argv[2]) != 64 ||
	     sodium_hex2bin(rec.pk, 32, argv[2], 64, NULL, NULL, NULL) != 0)) {
		ctl_end(c, EXIT_USAGE, "get: the public key is 64 hex digits");
		return;
	}
	rec.salt_len = (uint8_t)strlen(name);
	memcpy(rec.salt, name, rec.salt_len);
	if (!(q = calloc(1, sizeof(*q)))) {
		ctl_end(c, EXIT_FAIL, "out of memory");
		return;
	}
	q->d = d;
	q->c = c;
	if (!strcmp(argv[1], "put")) {
		if (argc != 4 || strlen(argv[3]) > DHT_VALUE_MAX) {
			free(q);
			ctl_end(c, EXIT_USAGE, "put NAME VALUE (a value of at most %d bytes)",
				DHT_VALUE_MAX);
			return;
		}
		rec.value_len = (uint16_t)strlen(argv[3]);
		memcpy(rec.value, argv[3], rec.value_len);
		rec.seq = tm_real_ms(); /* newer puts have higher numbers */
		peer_ident_sign(d->ident, signed_bytes, dht_record_signed_bytes(&rec, signed_bytes),
				rec.sig);
		rc = dht_put(dht, dht_node_now(d->dn), &rec, 0, dht_req_done, q);
	} else {
		q->get = true;
		dht_record_target(&rec, target);
		rc = dht_get(dht, dht_node_now(d->dn), target, dht_req_done, q);
	}
	if (rc < 0) {
		free(q);
		ctl_end(c, EXIT_FAIL, "cannot start the lookup: %s", strerror(-rc));
		return;
	}
	q->next = d->dht_reqs;
	d->dht_reqs = q;
	dht_node_kick(d->dn);
}

static void dht_request(struct daemon *d, struct ctl_conn *c, int argc, char **argv)
{
	struct dht *dht = d->dn ? dht_node_dht(d->dn) : NULL;
	uint64_t now = dht_node_now(d->dn);
	struct dht_req *q;
	uint8_t key[32];
	int rc;

	if (!dht) {
		ctl_end(c, EXIT_FAIL, "this daemon runs no DHT");
		return;
	}
	if (argc == 3 && !strcmp(argv[1], "bootstrap")) {
		rc = dht_node_bootstrap(d->dn, argv[2]);
		if (rc < 0)
			ctl_end(c, EXIT_FAIL, "bootstrap %s: %s", argv[2], strerror(-rc));
		else
			ctl_end(c, 0, NULL);
		return;
	}
	if ((argc == 4 || argc == 3) && (!strcmp(argv[1], "put") || !strcmp(argv[1], "get"))) {
		dht_record_request(d, c, argc, argv);
		return;
	}
	if (argc != 3 || (strcmp(argv[1], "find-node") && strcmp(argv[1], "provide") &&
			  strcmp(argv[1], "providers"))) {
		ctl_end(c, EXIT_USAGE,
			"dht: find-node ID | provide KEY | providers KEY | bootstrap ADDR");
		return;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		ctl_end(c, EXIT_FAIL, "out of memory");
		return;
	}
	q->d = d;
	q->c = c;
	q->providers = !strcmp(argv[1], "providers");
	parse_key(argv[2], key);
	if (!strcmp(argv[1], "find-node"))
		rc = dht_find_node(dht, now, key, dht_req_done, q);
	else if (q->providers)
		rc = dht_get_providers(dht, now, key, dht_req_done, q);
	else
		rc = dht_add_provider(dht, now, key, 0, dht_req_done, q);
	if (rc < 0) {
		free(q);
		ctl_end(c, EXIT_FAIL, "cannot start the lookup: %s", strerror(-rc));
		return;
	}
	q->next = d->dht_reqs;
	d->dht_reqs = q;
	dht_node_kick(d->dn);
}

static void on_ctl(void *arg, struct ctl_conn *c, int argc, char **argv)
{
	struct daemon *d = arg;

	if (!strcmp(argv[0], "status")) {
		cmd_status_reply(d, c, argc > 1 && !strcmp(argv[1], "json"));
	} else if (!strcmp(argv[0], "umount")) {
		bool lazy = argc > 1 && !strcmp(argv[1], "lazy");

		if (d->umount_conn) {
			ctl_end(c, EXIT_BUSY, "an unmount is already in progress");
			return;
		}
		d->umount_conn = c;
		begin_shutdown(d, lazy, "p2pfs umount");
	} else if (!strcmp(argv[0], "dht")) {
		dht_request(d, c, argc, argv);
	} else if (!strcmp(argv[0], "link") && !d->cfg->node_only) {
		char link[SHARE_LINK_MAX];
		bool ro = argc > 1 && !strcmp(argv[1], "read-only");

		if (!ro && d->share.writable &&
		    share_link(&d->share, true, link, sizeof(link)) == 0)
			ctl_printf(c, "write link: %s", link);
		if (share_link(&d->share, false, link, sizeof(link)) == 0)
			ctl_printf(c, "read link:  %s", link);
		ctl_end(c, 0, NULL);
	} else if (d->cfg->node_only && (!strcmp(argv[0], "scrub") || !strcmp(argv[0], "sync"))) {
		ctl_end(c, EXIT_USAGE, "a DHT node has no mount to %s", argv[0]);
	} else if (!strcmp(argv[0], "scrub")) {
		start_scrub(d, c);
	} else if (!strcmp(argv[0], "peers")) {
		peers_reply(d, c, argc > 1 && !strcmp(argv[1], "json"));
	} else if (!strcmp(argv[0], "pin") || !strcmp(argv[0], "unpin")) {
		if (d->cfg->node_only || !d->pins)
			ctl_end(c, EXIT_USAGE, "a DHT node has no files to %s", argv[0]);
		else
			pin_start(d->pins, c, argv[0][0] == 'u', argc - 1, argv + 1);
	} else if (!strcmp(argv[0], "sync")) {
		fs_sync(d->fs, sync_done, c);
	} else if (!strcmp(argv[0], "ping")) {
		ctl_printf(c, "%d", getpid());
		ctl_end(c, 0, NULL);
	} else {
		ctl_end(c, EXIT_USAGE, "unknown request '%s'", argv[0]);
	}
}

/* ---- start-up ---- */

static void on_ready(void *arg, int rc)
{
	struct daemon *d = arg;

	(void)rc;
	log_notice("mounted %s (state %s)", d->cfg->mountpoint, d->cfg->state_dir);
	ready_reply(d, "\001ok\n");
	/* From now on messages belong in the log, not on the terminal of `p2pfs mount`. */
	if (!d->cfg->foreground) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
}

static int open_log(struct daemon *d)
{
	char *path = cfg_path(d->cfg->state_dir, "p2pfs.log");
	struct stat st;
	int fd;

	if (!path)
		return -ENOMEM;
	if (stat(path, &st) == 0 && (uint64_t)st.st_size > LOG_ROTATE_BYTES) {
		char *old = cfg_path(d->cfg->state_dir, "p2pfs.log.1");

		if (old)
			(void)!rename(path, old);
		free(old);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	free(path);
	if (fd < 0)
		return -errno;
	log_set_fd(fd);
	return 0;
}

static void signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGPIPE);
}

/* Before any thread starts (the store's, the workers'): they inherit the
 * mask, so the signals reach only the loop's signalfd. */
static int block_signals(void)
{
	sigset_t set;

	signal_set(&set);
	return pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 ? -EINVAL : 0;
}

static int setup_signals(struct daemon *d)
{
	sigset_t set;

	signal_set(&set);
	sigdelset(&set, SIGPIPE);
	sigdelset(&set, SIGHUP);
	if ((d->sig_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0)
		return -errno;
	ev_op_init(&d->sig_op, on_signal);
	return ev_read(d->loop, &d->sig_op, d->sig_fd, &d->si, sizeof(d->si), 0);
}

/* The DHT on its UDP socket, with the saved routing table and the bootstrap nodes. */
static int open_dht(struct daemon *d)
{
	struct cfg *cfg = d->cfg;
	struct dht_node_opts o = { .id = d->node_id, .lan = cfg->lan };
	char *table = cfg_path(cfg->state_dir, "dht.table");
	int rc;

	if (!table)
		return -ENOMEM;
	o.listen = cfg->nlisten ? cfg->listen[0] : NULL;
	o.table_path = table;
	o.provider_ttl_ms = (uint64_t)cfg->provider_ttl_s * 1000;
	rc = dht_node_new(d->loop, &o, &d->dn);
	free(table);
	if (rc < 0) {
		cli_err("cannot start the DHT on %s: %s", o.listen ? o.listen : "the default port",
			strerror(-rc));
		return rc;
	}
	for (unsigned i = 0; i < cfg->nbootstrap; i++)
		if ((rc = dht_node_bootstrap(d->dn, cfg->bootstrap[i])) < 0)
			log_warn("bootstrap node %s: %s", cfg->bootstrap[i], strerror(-rc));
	return 0;
}

static int fetch_chunk(void *arg, const uint8_t id[static CS_ID_LEN], const uint8_t *file,
		       bool urgent, cs_read_fn *cb, void *cb_arg)
{
	struct daemon *d = arg;

	/* A reader needs the bytes: they need not wait for the disk. */
	return swarm_fetch(d->swarm, id, file,
			   SWARM_FETCH_EARLY | (urgent ? SWARM_FETCH_URGENT : 0), cb, cb_arg);
}

static void stored_chunks(void *arg, const uint8_t *file, const uint8_t *ids, size_t n)
{
	struct daemon *d = arg;

	swarm_announce(d->swarm, ids, n);
	if (file)
		swarm_provide(d->swarm, file);
}

static unsigned chunk_holders(void *arg, const uint8_t *ids, size_t n)
{
	struct daemon *d = arg;

	return swarm_holders(d->swarm, ids, n);
}

/* The share's members: connections, chunk exchange, namespace replication. */
static int open_swarm(struct daemon *d)
{
	struct cfg *cfg = d->cfg;
	struct swarm_opts o = { 0 };
	uint8_t mk[SWARM_KEY_LEN], tag[SWARM_KEY_LEN];
	int rc;

	if ((rc = repl_new(d->loop, d->fs, d->ns, &d->repl)) < 0)
		return rc;
	swarm_share_keys(d->share.rk, mk, tag);
	o.loop = d->loop;
	o.ident = d->ident;
	o.cs = d->cs;
	o.pool = d->store_pool;
	o.dht = d->dn;
	o.member_key = mk;
	o.share_tag = tag;
	o.writable = d->share.writable;
	o.listen = cfg->nlisten ? cfg->listen[0] : NULL;
	o.fetch_timeout_ms = cfg->fetch_timeout_s * 1000;
	o.max_peers = cfg->max_peers;
	o.max_upload = cfg->max_upload;
	o.max_download = cfg->max_download;
	o.msg = repl_msg;
	o.peer_up = repl_peer_up;
	o.peer_down = repl_peer_down;
	o.arg = d->repl;
	rc = swarm_new(&o, &d->swarm);
	sodium_memzero(mk, sizeof(mk));
	if (rc < 0) {
		cli_err("cannot accept peer connections on %s (tcp): %s",
			o.listen ? o.listen : "the DHT's port", strerror(-rc));
		return rc;
	}
	for (unsigned i = 0; i < cfg->npeer; i++)
		if ((rc = swarm_add_addr(d->swarm, cfg->peer[i])) < 0)
			log_warn("member address %s: %s", cfg->peer[i], strerror(-rc));
	{
		struct pin_ctx px = {
			.loop = d->loop, .ns = d->ns, .cs = d->cs, .swarm = d->swarm
		};

		if ((rc = pin_set_new(&px, &d->pins)) < 0)
			return rc;
	}
	fs_set_fetch(d->fs, fetch_chunk, d);
	fs_set_stored_cb(d->fs, stored_chunks, d);
	fs_set_holders_cb(d->fs, chunk_holders, d);
	log_notice("accepting members on tcp port %u", swarm_port(d->swarm));
	return 0;
}

/* `p2pfs node`: identity, control socket and the DHT; no store, no mount. */
static int open_node(struct daemon *d)
{
	char *ctlp = NULL;
	int rc;

	if ((rc = block_signals()) < 0)
		return rc;
	if ((rc = peer_ident_load(d->cfg->state_dir, 0, &d->ident)) < 0) {
		cli_err_path(rc, "cannot load or create the node identity in", d->cfg->state_dir);
		return rc;
	}
	memcpy(d->node_id, peer_ident_id(d->ident), 32);
	if (!(ctlp = cfg_path(d->cfg->state_dir, "ctl.sock")))
		return -ENOMEM;
	if ((rc = ev_loop_new(256, &d->loop)) < 0) {
		cli_err("cannot set up io_uring: %s (is io_uring disabled? see "
			"/proc/sys/kernel/io_uring_disabled)",
			strerror(-rc));
		goto out;
	}
	if ((rc = ctl_server_new(d->loop, ctlp, on_ctl, d, &d->ctl)) < 0) {
		cli_err("cannot create the control socket %s: %s", ctlp, strerror(-rc));
		goto out;
	}
	if ((rc = setup_signals(d)) < 0 || (rc = open_dht(d)) < 0)
		goto out;
	log_notice("DHT node listening on %s (state %s)", dht_node_listen_str(d->dn),
		   d->cfg->state_dir);
	ready_reply(d, "\001ok\n");
	if (!d->cfg->foreground) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
out:
	free(ctlp);
	return rc;
}

static int open_all(struct daemon *d)
{
	struct cfg *cfg = d->cfg;
	struct cs_store_opts copts = { .cache_quota = cfg->cache_size };
	struct ns_open_opts nopts;
	struct fs_opts fo = { 0 };
	char *store = NULL, *nsdir = NULL, *staging = NULL, *ctlp = NULL;
	int rc;

	if ((rc = block_signals()) < 0)
		return rc;
	if ((rc = cfg->share_link ? share_join(cfg->state_dir, cfg->share_link, &d->share)
				  : share_default(cfg->state_dir, &d->share)) < 0)
		return rc;
	if ((rc = peer_ident_load(cfg->state_dir, 0, &d->ident)) < 0) {
		cli_err_path(rc, "cannot load or create the node identity in", cfg->state_dir);
		return rc;
	}
	memcpy(d->node_id, peer_ident_id(d->ident), 32);
	rc = -ENOMEM;
	if (!(store = cfg_path(cfg->state_dir, "store")) ||
	    !(nsdir = cfg_path(d->share.dir, "ns")) ||
	    !(staging = cfg_path(cfg->state_dir, "staging")) ||
	    !(ctlp = cfg_path(cfg->state_dir, "ctl.sock")))
		goto out;
	if ((rc = cs_store_open(store, &copts, &d->cs)) < 0) {
		if (rc == -ENOSPC)
			cli_err("no space left on the disk of %s: free some space, or use --state "
				"DIR on another disk",
				store);
		else
			cli_err("cannot open the chunk store %s: %s", store, strerror(-rc));
		goto out;
	}
	if (mkdir(nsdir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		cli_err_path(rc, "cannot create", nsdir);
		goto out;
	}
	memset(&nopts, 0, sizeof(nopts));
	nopts.share_pk = d->share.pk;
	nopts.share_sk = d->share.writable ? d->share.sk : NULL;
	nopts.node_id = d->node_id;
	if ((rc = ns_open(nsdir, &nopts, &d->ns)) < 0) {
		cli_err_path(rc, "cannot open the namespace in", nsdir);
		goto out;
	}
	{
		struct ns_stats nst;

		/* A share made just now: give its root directory a real record (and
		 * a time). Members joining by a link leave the root to its creator:
		 * two first records of the root would be a conflict. */
		ns_get_stats(d->ns, &nst);
		if (nst.records == 0 && !ns_read_only(d->ns) && d->share.created) {
			struct ns_attr ra = { .mtime = (int64_t)tm_real_ns() };

			if ((rc = ns_setattr(d->ns, NS_ROOT_INO, &ra, NS_SET_MTIME)) < 0 ||
			    (rc = ns_commit(d->ns)) < 0) {
				cli_err_path(rc, "cannot write the namespace in", nsdir);
				goto out;
			}
		}
	}
	if ((rc = ev_loop_new(4096, &d->loop)) < 0) {
		cli_err("cannot set up io_uring: %s (is io_uring disabled? see "
			"/proc/sys/kernel/io_uring_disabled)",
			strerror(-rc));
		goto out;
	}
	if ((rc = ev_pool_new(2, &d->pool)) < 0 || (rc = ev_pool_new(1, &d->store_pool)) < 0)
		goto out;
	cs_store_set_loop(d->cs, d->loop);
	fo.mountpoint = cfg->mountpoint;
	fo.staging_dir = staging;
	fo.state_dir = cfg->state_dir;
	fo.cdc = cs_cdc_default;
	fo.writeback_cache = cfg->writeback_cache;
	fo.read_ahead_kb = cfg->read_ahead_kb;
	fo.commit_interval_ms = cfg->commit_ms;
	fo.allow_other = geteuid() == 0;
	fo.debug = cfg->debug_fuse;
	if ((rc = fs_new(d->loop, d->pool, d->cs, d->ns, &fo, &d->fs)) < 0)
		goto out;
	fs_set_ready_cb(d->fs, on_ready, d);
	fs_set_ended_cb(d->fs, on_session_ended, d);
	if ((rc = ctl_server_new(d->loop, ctlp, on_ctl, d, &d->ctl)) < 0) {
		cli_err("cannot create the control socket %s: %s", ctlp, strerror(-rc));
		goto out;
	}
	if ((rc = setup_signals(d)) < 0 || (rc = open_dht(d)) < 0 || (rc = open_swarm(d)) < 0)
		goto out;
	if ((rc = fs_mount(d->fs)) < 0)
		cli_err("cannot mount %s (see the messages above)", cfg->mountpoint);
out:
	free(store);
	free(nsdir);
	free(staging);
	free(ctlp);
	return rc;
}

static void close_all(struct daemon *d)
{
	int rc;

	if (d->pins)
		pin_set_stop(d->pins);
	if (d->scrub && d->scrub->refetching && d->scrub->conn) {
		ctl_end(d->scrub->conn, EXIT_FAIL, "the daemon is stopping");
		d->scrub->conn = NULL; /* freed as the swarm cancels its fetches */
	}
	ctl_server_free(d->ctl);
	dht_node_free(d->dn); /* first: its lookups may name the swarm */
	if (d->fs) {
		fs_set_fetch(d->fs, NULL, NULL);
		fs_set_stored_cb(d->fs, NULL, NULL);
		fs_set_holders_cb(d->fs, NULL, NULL);
	}
	swarm_free(d->swarm);
	pin_set_free(d->pins);
	repl_free(d->repl);
	while (d->dht_reqs) {
		struct dht_req *q = d->dht_reqs;

		d->dht_reqs = q->next;
		free(q);
	}
	/* Let cancellations complete before the loop goes. */
	for (int i = 0; i < 50 && d->loop && ev_loop_inflight(d->loop) > 1; i++)
		if (ev_loop_run_once(d->loop, 20) < 0)
			break;
	/* Jobs on the workers (an unmount, a commit, a flush) finish and report
	 * back before the filesystem they belong to goes. */
	for (int i = 0; i < 3000 && fs_busy(d->fs); i++)
		if (ev_loop_run_once(d->loop, 20) < 0)
			break;
	fs_free(d->fs);
	ev_pool_free(d->pool);
	ev_pool_free(d->store_pool);
	if (d->ns && ns_commit(d->ns) < 0)
		log_error("final namespace commit failed; uncommitted changes are lost");
	if (d->ns && d->stopped_cleanly && ns_compact(d->ns) < 0)
		log_warn("could not compact the namespace log (it is still consistent)");
	ns_close(d->ns);
	if (d->cs && (rc = cs_store_close(d->cs)) < 0)
		log_error("closing the chunk store: %s", strerror(-rc));
	if (d->sig_fd >= 0)
		close(d->sig_fd);
	ev_loop_free(d->loop);
	peer_ident_free(d->ident);
	share_done(&d->share);
}

int daemon_lock_state(const char *state_dir, int *ret_exit)
{
	char *path = cfg_path(state_dir, "lock");
	char who[512] = "";
	int fd;

	if (!path) {
		*ret_exit = EXIT_FAIL;
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_err("cannot open %s: %s", path, strerror(errno));
		free(path);
		*ret_exit = EXIT_FAIL;
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, who, sizeof(who) - 1, 0);

		who[n > 0 ? n : 0] = '\0';
		if (n > 0 && who[n - 1] == '\n')
			who[n - 1] = '\0';
		cli_err(
		    "state directory %s is in use by another p2pfs daemon (%s); use --state DIR "
		    "to run a second node, or stop that one with 'p2pfs umount'",
		    state_dir, *who ? who : "pid unknown");
		close(fd);
		free(path);
		*ret_exit = EXIT_BUSY;
		return -1;
	}
	free(path);
	return fd;
}

static void write_lock_info(int fd, const char *mountpoint)
{
	char buf[4200];
	int n = mountpoint
		    ? snprintf(buf, sizeof(buf), "pid %d, mounted at %s\n", getpid(), mountpoint)
		    : snprintf(buf, sizeof(buf), "pid %d, DHT node\n", getpid());

	if (ftruncate(fd, 0) == 0)
		(void)!pwrite(fd, buf, (size_t)n, 0);
}

int daemon_run(struct cfg *cfg, int lock_fd, int ready_fd)
{
	struct daemon d = { .cfg = cfg, .lock_fd = lock_fd, .ready_fd = ready_fd, .sig_fd = -1 };
	int rc;

	d.start_ms = tm_mono_ms();
	log_set_level(cfg->log_level);
	if (!cfg->foreground && open_log(&d) < 0)
		log_set_fd(2);
	write_lock_info(lock_fd, cfg->mountpoint);
	ev_timer_init(&d.exit_timer, on_exit_timer);
	if (cfg->node_only)
		log_notice("p2pfs %s starting: DHT node, state %s", P2PFS_VERSION, cfg->state_dir);
	else
		log_notice("p2pfs %s starting: mount %s, state %s", P2PFS_VERSION, cfg->mountpoint,
			   cfg->state_dir);
	if ((rc = cfg->node_only ? open_node(&d) : open_all(&d)) < 0) {
		char line[64];

		snprintf(line, sizeof(line), "\001exit %d\n",
			 rc == -ENOSPC ? EXIT_FAIL : EXIT_FAIL);
		ready_reply(&d, line);
		close_all(&d);
		close(lock_fd);
		return EXIT_FAIL;
	}
	if ((rc = ev_loop_run(d.loop)) < 0)
		log_error("event loop failed: %s", strerror(-rc));
	close_all(&d);
	if (ftruncate(lock_fd, 0) < 0)
		log_debug("cannot clear the lock file");
	close(lock_fd);
	log_notice("stopped");
	return rc < 0 || !d.stopped_cleanly ? EXIT_FAIL : EXIT_OK;
}
