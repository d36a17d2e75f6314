// SPDX-License-Identifier: MIT
/*
 * tests/fuzz/fuzz_swarm_msg.c - any bytes as a message from a member
 * (net/swarm_msg.h). Besides memory errors it checks: a message that
 * decodes re-encodes to exactly the bytes it came from (so nothing is
 * accepted that the codec would not have written, and no field is lost),
 * DATA pieces lie inside their chunk, counts stay within their limits, and
 * every PEX entry and HAVE prefix can be read.
 */
#include "net/swarm_msg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(e)                 \
	do {                     \
		if (!(e))        \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[1 + 2 + SWARM_HAVE_LIMIT * 8 + 64];
	struct swarm_msg m;
	long n;

	if (swarm_msg_decode(data, size, &m) < 0)
		return 0;
	CHECK(size >= 1 && m.type == data[0]);
	if (m.type == 0 || (m.type > SWARM_M_PONG && m.type < SWARM_APP_FIRST))
		return 0; /* unknown to this version: ignored, never acted on */
	switch (m.type) {
	case SWARM_M_DATA:
		CHECK(m.u.data.len >= 1 && m.u.data.len <= SWARM_PIECE_LIMIT);
		CHECK(m.u.data.total >= 1 && m.u.data.total <= SWARM_CHUNK_LIMIT);
		CHECK((uint64_t)m.u.data.off + m.u.data.len <= m.u.data.total);
		CHECK(m.u.data.bytes == data + SWARM_DATA_HDR);
		break;
	case SWARM_M_PEX:
		CHECK(m.u.pex.n <= SWARM_PEX_LIMIT);
		for (unsigned i = 0; i < m.u.pex.n; i++) {
			uint8_t id[32];
			struct dht_addr a;
			uint16_t age;

			if (swarm_msg_pex_entry(&m, i, id, &a, &age))
				CHECK((a.family == 4 || a.family == 6) && a.port);
		}
		break;
	case SWARM_M_HAVE:
		CHECK(m.u.have.n <= SWARM_HAVE_LIMIT);
		for (unsigned i = 0; i < m.u.have.n; i++)
			(void)swarm_msg_have_prefix(&m, i);
		break;
	default:
		break;
	}
	if (m.type >= SWARM_APP_FIRST && size > sizeof(out))
		return 0;
	n = swarm_msg_encode(&m, out, sizeof(out));
	CHECK(n > 0);
	if (m.type == SWARM_M_DATA) {
		CHECK((size_t)n == SWARM_DATA_HDR && !memcmp(out, data, SWARM_DATA_HDR));
	} else {
		CHECK((size_t)n == size && !memcmp(out, data, size));
	}
	return 0;
}
