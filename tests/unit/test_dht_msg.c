// SPDX-License-Identifier: MIT
/* tests/unit/test_dht_msg.c - the DHT message codec: round trips and every malformed form. */
#include "net/dht_int.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <string.h>

static void fill_contact(struct dht_contact *c, int i, int fam)
{
	memset(c, 0, sizeof(*c));
	t_rand_fill(c->id, DHT_ID_LEN);
	c->addr.family = (uint8_t)fam;
	t_rand_fill(c->addr.ip, fam == 4 ? 4 : 16);
	c->addr.port = (uint16_t)(1000 + i);
}

static struct dht_msg sample(uint8_t type)
{
	struct dht_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.txid = t_rand();
	t_rand_fill(m.sender, DHT_ID_LEN);
	t_rand_fill(m.target, DHT_ID_LEN);
	m.token = t_rand();
	m.port = 4242;
	m.error = 1;
	fill_contact(&m.nodes[0], 0, 4);
	m.observed = m.nodes[0].addr;
	if (type == DHT_NODES || type == DHT_PROVIDERS) {
		m.nnodes = DHT_K;
		for (int i = 0; i < DHT_K; i++)
			fill_contact(&m.nodes[i], i, i % 2 ? 4 : 6);
	}
	if (type == DHT_VALUE || type == DHT_PUT) {
		m.has_record = true;
		t_rand_fill(m.record.pk, 32);
		m.record.salt_len = 5;
		memcpy(m.record.salt, "salty", 5);
		m.record.seq = 77;
		m.record.value_len = 300;
		t_rand_fill(m.record.value, 300);
		t_rand_fill(m.record.sig, 64);
		m.cas = 5;
	}
	if (type == DHT_VALUE) {
		m.nnodes = 8;
		for (int i = 0; i < 8; i++)
			fill_contact(&m.nodes[i], i, 4);
	}
	if (type == DHT_PROVIDERS) {
		m.nproviders = 3;
		for (int i = 0; i < 3; i++)
			fill_contact(&m.providers[i], i, 4);
	}
	return m;
}

static const uint8_t types[] = { DHT_PING,	    DHT_PONG,	   DHT_FIND_NODE,    DHT_NODES,
				 DHT_GET_PROVIDERS, DHT_PROVIDERS, DHT_ADD_PROVIDER, DHT_ACK,
				 DHT_ERROR,	    DHT_GET,	   DHT_VALUE,	     DHT_PUT };

static void every_type_round_trips(void)
{
	for (size_t t = 0; t < sizeof(types); t++) {
		struct dht_msg m = sample(types[t]), back;
		uint8_t buf[DHT_MSG_MAX];
		size_t len = dht__msg_encode(&m, buf);

		T_ASSERT(len > 0 && len <= DHT_MSG_MAX);
		T_ASSERT_OK(dht__msg_decode(buf, len, &back));
		T_ASSERT_EQ(back.type, m.type);
		T_ASSERT_EQ(back.txid, m.txid);
		T_ASSERT_MEM_EQ(back.sender, m.sender, DHT_ID_LEN);
		if (types[t] == DHT_FIND_NODE || types[t] == DHT_GET_PROVIDERS ||
		    types[t] == DHT_ADD_PROVIDER)
			T_ASSERT_MEM_EQ(back.target, m.target, DHT_ID_LEN);
		if (types[t] == DHT_NODES || types[t] == DHT_PROVIDERS || types[t] == DHT_VALUE) {
			/* Lists that would not fit a datagram are cut, never overflow. */
			T_ASSERT(back.nnodes > 0 && back.nnodes <= m.nnodes);
			for (size_t i = 0; i < back.nnodes; i++) {
				T_ASSERT_MEM_EQ(back.nodes[i].id, m.nodes[i].id, DHT_ID_LEN);
				T_ASSERT_EQ(back.nodes[i].addr.port, m.nodes[i].addr.port);
			}
		}
		if (types[t] == DHT_PROVIDERS)
			T_ASSERT_EQ(back.nproviders, 3);
		if (types[t] == DHT_ADD_PROVIDER) {
			T_ASSERT_EQ(back.token, m.token);
			T_ASSERT_EQ(back.port, 4242);
		}
		if (types[t] == DHT_PONG)
			T_ASSERT_EQ(back.observed.port, m.observed.port);
		if (types[t] == DHT_VALUE || types[t] == DHT_PUT) {
			T_ASSERT(back.has_record);
			T_ASSERT_EQ(back.record.seq, 77);
			T_ASSERT_EQ(back.record.value_len, 300);
			T_ASSERT_MEM_EQ(back.record.value, m.record.value, 300);
			T_ASSERT_MEM_EQ(back.record.sig, m.record.sig, 64);
		}
		if (types[t] == DHT_PUT)
			T_ASSERT_EQ(back.cas, 5);
	}
}

static void every_truncation_and_extension_is_rejected(void)
{
	for (size_t t = 0; t < sizeof(types); t++) {
		struct dht_msg m = sample(types[t]), back;
		uint8_t buf[DHT_MSG_MAX + 8];
		size_t len = dht__msg_encode(&m, buf);

		for (size_t k = 0; k < len; k++)
			T_ASSERT_EQ(dht__msg_decode(buf, k, &back), -EPROTO);
		if (len < DHT_MSG_MAX) {
			buf[len] = 0;
			T_ASSERT_EQ(dht__msg_decode(buf, len + 1, &back), -EPROTO);
		}
	}
}

static void bad_fields_are_rejected(void)
{
	struct dht_msg m = sample(DHT_NODES), back;
	uint8_t buf[DHT_MSG_MAX + 1];
	size_t len = dht__msg_encode(&m, buf);
	size_t count_at = DHT_HDR_LEN;

	buf[0] = 2; /* version */
	T_ASSERT_EQ(dht__msg_decode(buf, len, &back), -EPROTO);
	buf[0] = DHT_VERSION;
	buf[1] = 77; /* type */
	T_ASSERT_EQ(dht__msg_decode(buf, len, &back), -EPROTO);
	buf[1] = DHT_NODES;
	buf[count_at] = DHT_K + 1; /* count over the maximum */
	T_ASSERT_EQ(dht__msg_decode(buf, len, &back), -EPROTO);
	buf[count_at] = (uint8_t)m.nnodes;
	buf[count_at + 1 + DHT_ID_LEN] = 5; /* address family */
	T_ASSERT_EQ(dht__msg_decode(buf, len, &back), -EPROTO);
	T_ASSERT_EQ(dht__msg_decode(buf, DHT_MSG_MAX + 1, &back), -EPROTO);
	/* Port 0. */
	m = sample(DHT_PONG);
	m.observed.port = 0;
	len = dht__msg_encode(&m, buf);
	T_ASSERT_EQ(dht__msg_decode(buf, len, &back), -EPROTO);
}

static void random_bytes_never_crash(void)
{
	uint8_t buf[DHT_MSG_MAX];
	struct dht_msg back;

	for (int i = 0; i < 200000; i++) {
		size_t len = t_rand() % sizeof(buf);

		t_rand_fill(buf, len);
		if (len > 2) {
			buf[0] = DHT_VERSION;
			buf[1] = (uint8_t)(1 + t_rand() % 12);
		}
		if (dht__msg_decode(buf, len, &back) == 0)
			T_ASSERT(back.nnodes <= DHT_K && back.nproviders <= DHT_PROVIDERS_MAX);
	}
}

T_MAIN(T_CASE(every_type_round_trips), T_CASE(every_truncation_and_extension_is_rejected),
       T_CASE(bad_fields_are_rejected), T_CASE(random_bytes_never_crash))
