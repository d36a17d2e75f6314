// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_dht_msg.c - DHT datagrams from anyone on the internet:
 * the decoder, and the whole engine behind dht_input().
 *
 * Input: a sequence of records
 *   u8 from (which of 8 peers sends it; bit 7: splice in the transaction id
 *   of our last request to that peer, so replies reach the lookups),
 *   u8 advance (ms of virtual time before it), u16 length, datagram.
 * Each input runs on a fresh engine that knows the 8 peers and has a
 * FIND_NODE, GET_PROVIDERS, GET, PUT and ADD_PROVIDER lookup running, so
 * answers, tokens, stores and timeouts are all reachable. Checked: nothing
 * crashes or leaks (ASan), everything the engine sends decodes, decoded
 * counts stay within their limits, and the statistics add up.
 */
#include "net/dht_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PEERS 8

static uint64_t last_txid[PEERS];
static uint64_t rng;

static struct dht_addr peer_addr(unsigned i)
{
	struct dht_addr a = { .family = i % 4 == 3 ? 6 : 4, .port = (uint16_t)(6881 + i) };

	a.ip[0] = 10;
	a.ip[3] = (uint8_t)(1 + i);
	return a;
}

static void sink(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len)
{
	struct dht_msg m;

	(void)arg;
	/* What we send must always decode. */
	if (len > DHT_MSG_MAX || dht__msg_decode(buf, len, &m) != 0)
		abort();
	for (unsigned i = 0; i < PEERS; i++) {
		struct dht_addr a = peer_addr(i);

		if (dht_addr_eq(&a, to))
			last_txid[i] = m.txid;
	}
}

/* Deterministic randomness: the same input always runs the same way. */
static void rnd(void *arg, void *buf, size_t len)
{
	(void)arg;
	for (size_t i = 0; i < len; i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		((uint8_t *)buf)[i] = (uint8_t)(rng >> 56);
	}
}

static void check_stats(const struct dht *d)
{
	struct dht_stats st;
	uint64_t in = 0;

	dht_get_stats(d, &st);
	for (unsigned t = 0; t < DHT_MSG_TYPES; t++)
		in += st.type[t].msgs_in;
	if (in + st.dropped_malformed != st.msgs_in || st.contacts > 256 * DHT_K ||
	    st.lookups_running > DHT_LOOKUPS_MAX)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t id[DHT_ID_LEN] = { 0x42, 0x17 };
	static struct dht_record rec;
	static uint8_t sk[64];
	static bool ready;
	struct dht_opts o = { .id = id, .send = sink, .random = rnd, .rate_slots = 16 };
	struct dht *d;
	struct dht_msg m;
	uint64_t now = 1000000;
	size_t off = 0;

	if (!ready) {
		if (sodium_init() < 0)
			abort();
		crypto_sign_keypair(rec.pk, sk);
		rec.salt_len = 3;
		memcpy(rec.salt, "key", 3);
		rec.seq = 7;
		rec.value_len = 5;
		memcpy(rec.value, "value", 5);
		dht_record_sign(&rec, sk);
		ready = true;
	}
	/* The decoder alone, on the whole input. */
	if (dht__msg_decode(data, size, &m) == 0 &&
	    (m.nnodes > DHT_K || m.nproviders > DHT_PROVIDERS_MAX ||
	     (m.has_record &&
	      (m.record.value_len > DHT_VALUE_MAX || m.record.salt_len > DHT_SALT_MAX))))
		abort();

	rng = 1;
	memset(last_txid, 0, sizeof(last_txid));
	if (dht_new(&o, now, &d) < 0)
		abort();
	for (unsigned i = 0; i < PEERS; i++) {
		struct dht_contact c = { .addr = peer_addr(i) };

		rnd(NULL, c.id, DHT_ID_LEN);
		if (dht__rt_add_unverified(&d->rt, &c) < 0)
			abort();
	}
	{
		uint8_t t[DHT_ID_LEN] = { 0x43 };

		if (dht_find_node(d, now, t, NULL, NULL) < 0 ||
		    dht_get_providers(d, now, t, NULL, NULL) < 0 ||
		    dht_add_provider(d, now, t, 0, NULL, NULL) < 0 ||
		    dht_put(d, now, &rec, 0, NULL, NULL) < 0 || dht_get(d, now, t, NULL, NULL) < 0)
			abort();
		(void)dht_tick(d, now);
	}
	while (size - off >= 4) {
		uint8_t from = data[off], adv = data[off + 1];
		size_t len = (size_t)data[off + 2] << 8 | data[off + 3];
		struct dht_addr a = peer_addr(from % PEERS);
		uint8_t buf[DHT_MSG_MAX + 64];

		off += 4;
		len = len < size - off ? len : size - off;
		len = len < sizeof(buf) ? len : sizeof(buf);
		memcpy(buf, data + off, len);
		off += len;
		if ((from & 0x80) && len >= 10)
			for (int i = 0; i < 8; i++)
				buf[2 + i] = (uint8_t)(last_txid[from % PEERS] >> (56 - 8 * i));
		now += adv;
		dht_input(d, now, &a, buf, len);
		(void)dht_tick(d, now);
		check_stats(d);
	}
	/* Let every timer run out: lookups end, nothing is left behind. */
	for (int i = 0; i < 40; i++) {
		now += 500;
		(void)dht_tick(d, now);
	}
	check_stats(d);
	dht_free(d);
	return 0;
}
