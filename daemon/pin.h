/* SPDX-License-Identifier: MIT */
/*
 * daemon/pin.h - `p2pfs pin` / `p2pfs unpin` jobs in the daemon (pin.c).
 */
#ifndef P2P_DAEMON_PIN_H
#define P2P_DAEMON_PIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "chunkstore/store.h"
#include "common/ev.h"
#include "daemon/daemon.h"
#include "fs/ns.h"
#include "net/swarm.h"

struct pin_ctx {
	struct ev_loop *loop;
	struct ns *ns;
	struct cs_store *cs;
	struct swarm *swarm;
};

struct pin_set;

P2P_MUST_CHECK int pin_set_new(const struct pin_ctx *x, struct pin_set **ret);
/* Answer every client (the daemon is stopping); call before the control
 * socket and the swarm go. */
void pin_set_stop(struct pin_set *s);
/* After the swarm is freed. NULL is a no-op. */
void pin_set_free(struct pin_set *s);

/* Pin (or unpin) the files at @argv (paths relative to the mount's root;
 * directories whole); the reply goes to @c. */
void pin_start(struct pin_set *s, struct ctl_conn *c, bool unpin, int argc, char **argv);

/* Running pins for `p2pfs status`: text lines, or a JSON member (after a comma). */
void pin_set_status(struct pin_set *s, struct ctl_conn *c, FILE *json);

#endif
