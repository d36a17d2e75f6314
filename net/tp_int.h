/* SPDX-License-Identifier: MIT */
/*
 * net/tp_int.h - internals of the transport engine shared with its own
 * tests; never included by other modules.
 */
#ifndef P2P_NET_TP_INT_H
#define P2P_NET_TP_INT_H

#include "net/tp.h"

/*
 * Replace the rekey limits of both directions of @t (by default
 * TP_REKEY_FRAMES and TP_REKEY_BYTES). Two ends that disagree lose each
 * other at the first rekey: tests use this to show that keys really change
 * at the boundary, and to cross it quickly.
 */
void tp__set_rekey_limits(struct tp *t, uint64_t frames, uint64_t bytes);

#endif
