/* SPDX-License-Identifier: MIT */
/*
 * net/dht_int.h - the DHT's message codec, shared by dht.c, the tests and
 * the fuzz target. Never included from outside net/ and tests/.
 */
#ifndef P2P_NET_DHT_INT_H
#define P2P_NET_DHT_INT_H

#include "net/dht.h"

#define DHT_VERSION 1
#define DHT_HDR_LEN (1 + 1 + 8 + DHT_ID_LEN)
#define DHT_CONTACT_MAX_LEN (DHT_ID_LEN + 1 + 16 + 2)

enum dht_type {
	DHT_PING = 1,
	DHT_PONG = 2,
	DHT_FIND_NODE = 3,
	DHT_NODES = 4,
	DHT_GET_PROVIDERS = 5,
	DHT_PROVIDERS = 6,
	DHT_ADD_PROVIDER = 7,
	DHT_ACK = 8,
	DHT_ERROR = 9,
	DHT_GET = 10,	/* 32 target */
	DHT_VALUE = 11, /* u64 token, u8 has, [record], u8 n, n contacts */
	DHT_PUT = 12,	/* u64 token, u64 cas, record */
};

#define DHT_ERR_TOKEN 1
#define DHT_ERR_SEQ 2 /* not newer than what is stored */
#define DHT_ERR_CAS 3
#define DHT_ERR_SIG 4

/* A decoded message; which fields mean something depends on the type. */
struct dht_msg {
	uint8_t type;
	uint64_t txid;
	uint8_t sender[DHT_ID_LEN];
	uint8_t target[DHT_ID_LEN]; /* FIND_NODE target, GET/ADD_PROVIDER(S) key */
	uint64_t token;		    /* PROVIDERS, ADD_PROVIDER */
	uint16_t port;		    /* ADD_PROVIDER */
	uint8_t error;		    /* ERROR */
	struct dht_addr observed;   /* PONG: the requester's address as we saw it */
	struct dht_contact nodes[DHT_K];
	size_t nnodes;
	struct dht_contact providers[DHT_PROVIDERS_MAX];
	size_t nproviders;
	uint64_t cas;		  /* PUT */
	bool has_record;	  /* VALUE, PUT */
	struct dht_record record; /* VALUE, PUT */
};

/* 0, or -EPROTO for anything malformed (every form: tests/unit/test_dht_msg.c). */
P2P_MUST_CHECK int dht__msg_decode(const uint8_t *buf, size_t len, struct dht_msg *m);
/* Encodes into @buf (DHT_MSG_MAX bytes), dropping trailing list entries that
 * would not fit. Returns the length. */
size_t dht__msg_encode(const struct dht_msg *m, uint8_t buf[static DHT_MSG_MAX]);
bool dht__addr_valid(const struct dht_addr *a);

#endif
