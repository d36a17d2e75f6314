/* SPDX-License-Identifier: MIT */
/*
 * daemon/repl.h - the namespace among the members of a share: push of
 * committed records and anti-entropy by bucket digests (see repl.c).
 */
#ifndef P2P_DAEMON_REPL_H
#define P2P_DAEMON_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "common/ev.h"
#include "fs/fs.h"
#include "fs/ns.h"
#include "net/swarm.h"

#define REPL_MSG_DIGEST (SWARM_MSG_APP + 0)
#define REPL_MSG_RECORDS (SWARM_MSG_APP + 1)

struct repl;

struct repl_stats {
	unsigned members;
	uint64_t records_in, records_applied, records_rejected, records_out;
	uint64_t msgs_in, msgs_out, digests_in, digests_out, syncs;
};

/* Registers itself as @ns's committed-records callback. */
P2P_MUST_CHECK int repl_new(struct ev_loop *loop, struct fs *fs, struct ns *ns, struct repl **ret);
void repl_free(struct repl *r);
void repl_get_stats(const struct repl *r, struct repl_stats *ret);

/* For swarm_opts (arg = the repl). */
void repl_peer_up(void *arg, struct swarm_peer *p);
void repl_peer_down(void *arg, struct swarm_peer *p);
void repl_msg(void *arg, struct swarm_peer *p, uint8_t type, const uint8_t *body, size_t len);
/* ns_committed_fn */
void repl_committed(void *arg, const uint8_t *rec, size_t len);

#endif
