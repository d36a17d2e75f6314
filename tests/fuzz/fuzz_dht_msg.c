// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_dht_msg.c - DHT datagrams from anyone on the internet:
 * the decoder, and the engine behind dht_input() (which answers, learns
 * contacts and matches replies).
 */
#include "net/dht_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dht *d;
static uint64_t now = 1000;

static void sink(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len)
{
	struct dht_msg m;

	(void)arg;
	(void)to;
	/* What we send must always decode. */
	if (dht__msg_decode(buf, len, &m) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dht_msg m;
	struct dht_addr from = { .family = 4, .port = 6881, .ip = { 10, 0, 0, 1 } };

	if (!d) {
		static const uint8_t id[DHT_ID_LEN] = { 0x42 };
		struct dht_opts o = { .id = id, .send = sink, .rate_per_s = 1000000 };

		if (dht_new(&o, now, &d) < 0)
			abort();
	}
	if (dht__msg_decode(data, size, &m) == 0 && m.nnodes > DHT_K)
		abort();
	if (size)
		from.ip[3] = data[0]; /* a few distinct sources */
	dht_input(d, now, &from, data, size);
	now += 7;
	(void)dht_tick(d, now);
	return 0;
}
