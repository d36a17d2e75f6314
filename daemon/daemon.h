/* SPDX-License-Identifier: MIT */
/*
 * daemon/daemon.h - what the files of daemon/ share: configuration, the
 * control socket, command-line helpers and the running daemon.
 *
 * One file per command (cmd_*.c, after WireGuard's tools); main.c dispatches.
 * Commands that talk to a running daemon find it by --state DIR or by its
 * mount point (the root of a p2pfs mount answers the "user.p2pfs.state"
 * extended attribute with its state directory).
 *
 * Exit codes (documented in the README and in `p2pfs --help`):
 */
#ifndef P2P_DAEMON_H
#define P2P_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/ev.h"
#include "common/log.h"

enum cli_exit {
	EXIT_OK = 0,
	EXIT_FAIL = 1,	      /* the operation failed; the message says why */
	EXIT_USAGE = 2,	      /* bad command line */
	EXIT_NOT_RUNNING = 3, /* no daemon runs for that mount point or state dir */
	EXIT_BUSY = 4,	      /* mount point busy, or state dir locked by another daemon */
	EXIT_DATA = 5,	      /* scrub found damaged chunks */
};

#define CFG_MAX_ADDRS 16

struct cfg {
	char *state_dir;
	char *mountpoint;
	uint64_t cache_size; /* bytes of fetched chunks to keep */
	bool foreground;
	enum log_level log_level;
	bool writeback_cache;
	unsigned read_ahead_kb;
	unsigned commit_ms;
	bool debug_fuse;
	char *listen[CFG_MAX_ADDRS];
	unsigned nlisten;
	char *bootstrap[CFG_MAX_ADDRS];
	unsigned nbootstrap;
	bool node_only;		   /* `p2pfs node`: the DHT, no mount */
	char *share_link;	   /* mount --share LINK; NULL: the default share */
	bool lan;		   /* LAN discovery by multicast */
	unsigned provider_ttl_s;   /* DHT provider records; 0: 24 h */
	char *peer[CFG_MAX_ADDRS]; /* members to connect to, besides those found */
	unsigned npeer;
	unsigned fetch_timeout_s; /* a read waits this long for a chunk from the network */
	unsigned max_peers;	  /* members kept connected */
	uint64_t max_upload;	  /* bytes/s of chunks sent to members; 0: no limit */
	uint64_t max_download;	  /* bytes/s of chunks fetched; 0: no limit */
};

/* cfg.c */
void cfg_init(struct cfg *c);
void cfg_done(struct cfg *c);
/* /var/lib/p2pfs for root, $XDG_DATA_HOME/p2pfs (or ~/.local/share/p2pfs) otherwise. Caller frees. */
char *cfg_default_state_dir(void);
/* Read DIR/config ("key = value" lines, '#' comments) if it exists. Prints errors. */
int cfg_load_file(struct cfg *c, const char *state_dir);
/* Apply one "key", "value" setting (from the file or a --key value option). */
int cfg_set(struct cfg *c, const char *key, const char *value, const char *where);
/* One setting from the command line. */
struct cfg_opt {
	const char *key, *val;
};
/*
 * Create and resolve the state dir (@state_opt, or the default), read its
 * config file, then apply @set (the command line wins). Prints errors;
 * returns EXIT_OK, EXIT_FAIL or EXIT_USAGE.
 */
int cfg_setup(struct cfg *c, const char *state_opt, const struct cfg_opt *set, unsigned nset);
/* Create the state dir (mode 0700) and its sub-directories. Prints errors. */
int cfg_prepare_state_dir(const char *dir);
/* Join a path: caller frees. */
char *cfg_path(const char *dir, const char *name);

/* cli.c: command-line helpers */
void cli_err(const char *fmt, ...) P2P_PRINTF(1, 2);
/* "@what @path: <cause>", or for a full disk the one line that says how to fix it. */
void cli_err_path(int rc, const char *what, const char *path);
/* Resolve the state dir of a running daemon from a mount point (NULL if not p2pfs). */
char *cli_state_of_mount(const char *mountpoint, int *ret_err);
/*
 * The state dir a command should talk to: --state DIR if given, else the one
 * behind MOUNTPOINT if given, else the default. Prints the error and returns
 * NULL if a given mount point is not a p2pfs mount.
 */
char *cli_pick_state(const char *state_opt, const char *mountpoint);
/* cmd_status.c: a query of a running daemon ([MOUNTPOINT] [--state DIR]
 * [--json]): sends @request (and "json") and prints the reply. */
int cli_query(int argc, char **argv, const char *request, void (*usage)(FILE *f));
/* Wait (bounded) until the daemon of @state_dir has released its lock. */
int cli_wait_exit(const char *state_dir);
/* Lock @cfg->state_dir and run the daemon: in the foreground, or forked into
 * the background returning once it is ready. Prints "p2pfs: @what". */
int cli_start_daemon(struct cfg *cfg, const char *what);
bool cli_is_tty(FILE *f);

/*
 * ctl.c: the control socket, DIR/ctl.sock.
 *
 * Request: one line, the words of a command separated by tabs.
 * Reply lines, each starting with a tag:
 *   ". text"  output for stdout
 *   "~ text"  progress (shown on a terminal, replaced by the next one)
 *   "! text"  a message for stderr
 *   "= 0" | "= CODE message"  the end: exit code and, on failure, why
 */
struct ctl_server;
struct ctl_conn;

typedef void ctl_handler_fn(void *arg, struct ctl_conn *conn, int argc, char **argv);

int ctl_server_new(struct ev_loop *loop, const char *path, ctl_handler_fn *fn, void *arg,
		   struct ctl_server **ret);
void ctl_server_free(struct ctl_server *s);
void ctl_printf(struct ctl_conn *c, const char *fmt, ...) P2P_PRINTF(2, 3);
void ctl_progress(struct ctl_conn *c, const char *fmt, ...) P2P_PRINTF(2, 3);
void ctl_note(struct ctl_conn *c, const char *fmt, ...) P2P_PRINTF(2, 3);
/* Ends the reply; @c is gone afterwards. @msg may be NULL when code is 0. */
void ctl_end(struct ctl_conn *c, int code, const char *fmt, ...) P2P_PRINTF(3, 4);
/* True if the client hung up (long operations may stop early). */
bool ctl_gone(const struct ctl_conn *c);

/*
 * Client: send @argv to the daemon of @state_dir and relay the reply.
 * Returns the exit code; EXIT_NOT_RUNNING if nobody listens.
 */
int ctl_call(const char *state_dir, int argc, const char *const *argv, bool quiet);

/* The running daemon (node.c). */
struct daemon;
/* Runs until shutdown. @ready_fd (or -1) gets "ok\n" once the mount is ready, or an error line. */
int daemon_run(struct cfg *cfg, int lock_fd, int ready_fd);
/* Take the state dir lock (flock). Prints who holds it. Returns an fd, or -1 with the exit code in *ret_exit. */
int daemon_lock_state(const char *state_dir, int *ret_exit);

/* Commands. */
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_scrub(int argc, char **argv);
int cmd_pin(int argc, char **argv);
int cmd_unpin(int argc, char **argv);
int cmd_peers(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_link(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_dht(int argc, char **argv);
int cmd_sync(int argc, char **argv);

#endif
