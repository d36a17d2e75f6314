// SPDX-License-Identifier: MIT
/*
 * tests/unit/test_dht_msg.c - the DHT datagram codec (net/dht_msg.c): every
 * type round-trips, and every malformed form is refused: each truncation, a
 * trailing byte, another version, unknown types, counts and lengths over
 * their maxima, bad flags, families, ports and addresses, oversize
 * datagrams; lists too long for a datagram are cut by the encoder.
 */
#include "net/dht_int.h"
#include "tests/lib/t.h"

#include <errno.h>
#include <string.h>

static const uint8_t types[] = { DHT_PING,	    DHT_PONG,	   DHT_FIND_NODE,    DHT_NODES,
				 DHT_GET_PROVIDERS, DHT_PROVIDERS, DHT_ADD_PROVIDER, DHT_ACK,
				 DHT_ERROR,	    DHT_GET,	   DHT_VALUE,	     DHT_PUT };

static void fill_contact(struct dht_contact *c, int i, int fam)
{
	memset(c, 0, sizeof(*c));
	t_rand_fill(c->id, DHT_ID_LEN);
	c->addr.family = (uint8_t)fam;
	t_rand_fill(c->addr.ip, fam == 4 ? 4 : 16);
	c->addr.ip[0] |= 1; /* never all zero */
	c->addr.port = (uint16_t)(1000 + i);
}

/* A message of @type with every field its type carries set; @v6 picks the
 * contacts' family (IPv6 makes lists long enough to be cut). */
static struct dht_msg sample(uint8_t type, bool v6)
{
	static struct dht_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.txid = t_rand();
	t_rand_fill(m.sender, DHT_ID_LEN);
	t_rand_fill(m.target, DHT_ID_LEN);
	m.token = t_rand();
	m.port = 4242;
	m.error = DHT_ERR_CAS;
	m.seq = t_rand();
	m.cas = 5;
	fill_contact(&m.providers[0], 0, v6 ? 6 : 4);
	m.observed = m.providers[0].addr;
	if (type == DHT_NODES || type == DHT_PROVIDERS || type == DHT_VALUE) {
		m.nnodes = DHT_K;
		for (int i = 0; i < DHT_K; i++) {
			fill_contact(&m.nodes[i], i, v6 ? 6 : 4);
			m.node_rtt[i] = (uint8_t)(i * 7);
		}
	}
	if (type == DHT_PROVIDERS) {
		m.nproviders = v6 ? DHT_PROVIDERS_MAX : 3;
		for (size_t i = 0; i < m.nproviders; i++)
			fill_contact(&m.providers[i], (int)i, v6 ? 6 : 4);
	}
	if (type == DHT_VALUE || type == DHT_PUT) {
		m.has_record = true;
		t_rand_fill(m.record.pk, 32);
		m.record.salt_len = 5;
		memcpy(m.record.salt, "salty", 5);
		m.record.seq = 77;
		m.record.value_len = v6 ? DHT_VALUE_MAX : 300;
		t_rand_fill(m.record.value, m.record.value_len);
		t_rand_fill(m.record.sig, 64);
	}
	return m;
}

static void contacts_equal(const struct dht_contact *a, const struct dht_contact *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		T_ASSERT_MEM_EQ(a[i].id, b[i].id, DHT_ID_LEN);
		T_ASSERT(dht_addr_eq(&a[i].addr, &b[i].addr));
	}
}

static void every_type_round_trips(void)
{
	for (int v6 = 0; v6 < 2; v6++)
		for (size_t t = 0; t < sizeof(types); t++) {
			struct dht_msg m = sample(types[t], v6), back;
			uint8_t buf[DHT_MSG_MAX];
			size_t len = dht__msg_encode(&m, buf);

			T_ASSERT(len >= DHT_HDR_LEN && len <= DHT_MSG_MAX);
			T_ASSERT_OK(dht__msg_decode(buf, len, &back));
			T_ASSERT_EQ(back.type, m.type);
			T_ASSERT_EQ(back.txid, m.txid);
			T_ASSERT_MEM_EQ(back.sender, m.sender, DHT_ID_LEN);
			switch (types[t]) {
			case DHT_PONG:
				T_ASSERT(dht_addr_eq(&back.observed, &m.observed));
				break;
			case DHT_FIND_NODE:
			case DHT_GET_PROVIDERS:
				T_ASSERT_MEM_EQ(back.target, m.target, DHT_ID_LEN);
				break;
			case DHT_GET:
				T_ASSERT_MEM_EQ(back.target, m.target, DHT_ID_LEN);
				T_ASSERT_EQ(back.seq, m.seq);
				break;
			case DHT_ADD_PROVIDER:
				T_ASSERT_MEM_EQ(back.target, m.target, DHT_ID_LEN);
				T_ASSERT_EQ(back.token, m.token);
				T_ASSERT_EQ(back.port, 4242);
				break;
			case DHT_ERROR:
				T_ASSERT_EQ(back.error, DHT_ERR_CAS);
				T_ASSERT_EQ(back.seq, m.seq);
				break;
			case DHT_PUT:
				T_ASSERT_EQ(back.token, m.token);
				T_ASSERT_EQ(back.cas, 5);
				break;
			default:
				break;
			}
			if (types[t] == DHT_NODES || types[t] == DHT_PROVIDERS ||
			    types[t] == DHT_VALUE) {
				T_ASSERT_EQ(back.token, m.token);
				/* Lists that do not fit a datagram are cut, never overflow. */
				T_ASSERT(back.nnodes > 0 && back.nnodes <= m.nnodes);
				if (!v6 && types[t] != DHT_VALUE)
					T_ASSERT_EQ(back.nnodes, m.nnodes);
				contacts_equal(back.nodes, m.nodes, back.nnodes);
				T_ASSERT_MEM_EQ(back.node_rtt, m.node_rtt, back.nnodes);
			}
			if (types[t] == DHT_PROVIDERS) {
				T_ASSERT_EQ(back.nproviders, m.nproviders);
				contacts_equal(back.providers, m.providers, back.nproviders);
			}
			if (types[t] == DHT_VALUE || types[t] == DHT_PUT) {
				T_ASSERT(back.has_record);
				T_ASSERT_MEM_EQ(back.record.pk, m.record.pk, 32);
				T_ASSERT_EQ(back.record.salt_len, 5);
				T_ASSERT_MEM_EQ(back.record.salt, "salty", 5);
				T_ASSERT_EQ(back.record.seq, 77);
				T_ASSERT_EQ(back.record.value_len, m.record.value_len);
				T_ASSERT_MEM_EQ(back.record.value, m.record.value,
						m.record.value_len);
				T_ASSERT_MEM_EQ(back.record.sig, m.record.sig, 64);
			}
		}
}

static void long_lists_are_cut_to_fit(void)
{
	struct dht_msg m = sample(DHT_PROVIDERS, true), back;
	uint8_t buf[DHT_MSG_MAX];
	size_t len = dht__msg_encode(&m, buf);

	/* 16 IPv6 providers (816 bytes) and 20 IPv6 nodes (1040) cannot share 1400. */
	T_ASSERT(len <= DHT_MSG_MAX);
	T_ASSERT_OK(dht__msg_decode(buf, len, &back));
	T_ASSERT_EQ(back.nproviders, DHT_PROVIDERS_MAX);
	T_ASSERT(back.nnodes < DHT_K);
	T_ASSERT(len + 52 > DHT_MSG_MAX); /* ... but as many as fit */
	/* A full record leaves room for a few contacts only. */
	m = sample(DHT_VALUE, true);
	len = dht__msg_encode(&m, buf);
	T_ASSERT_OK(dht__msg_decode(buf, len, &back));
	T_ASSERT(back.has_record && back.record.value_len == DHT_VALUE_MAX);
	T_ASSERT(back.nnodes < DHT_K);
	/* Invalid contacts are left out rather than sent. */
	m = sample(DHT_NODES, false);
	m.nodes[3].addr.port = 0;
	m.nodes[4].addr.family = 9;
	len = dht__msg_encode(&m, buf);
	T_ASSERT_OK(dht__msg_decode(buf, len, &back));
	T_ASSERT_EQ(back.nnodes, DHT_K - 2);
	T_ASSERT_MEM_EQ(back.nodes[3].id, m.nodes[5].id, DHT_ID_LEN);
}

static void what_cannot_be_encoded_is_not(void)
{
	struct dht_msg m = sample(DHT_PUT, false);
	uint8_t buf[DHT_MSG_MAX];

	m.record.value_len = DHT_VALUE_MAX + 1;
	T_ASSERT_EQ(dht__msg_encode(&m, buf), 0);
	m = sample(DHT_VALUE, false);
	m.record.salt_len = DHT_SALT_MAX + 1;
	T_ASSERT_EQ(dht__msg_encode(&m, buf), 0);
	m = sample(DHT_PONG, false);
	m.observed.port = 0;
	T_ASSERT_EQ(dht__msg_encode(&m, buf), 0);
	m = sample(DHT_PING, false);
	m.type = 0;
	T_ASSERT_EQ(dht__msg_encode(&m, buf), 0);
	m.type = 200;
	T_ASSERT_EQ(dht__msg_encode(&m, buf), 0);
}

static void every_truncation_and_extension_is_rejected(void)
{
	for (int v6 = 0; v6 < 2; v6++)
		for (size_t t = 0; t < sizeof(types); t++) {
			struct dht_msg m = sample(types[t], v6), back;
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

/* Decode @buf after setting byte @at to @v; returns the decoder's answer. */
static int poke(uint8_t *buf, size_t len, size_t at, uint8_t v)
{
	struct dht_msg back;
	uint8_t old = buf[at];
	int rc;

	buf[at] = v;
	rc = dht__msg_decode(buf, len, &back);
	buf[at] = old;
	return rc;
}

static size_t encode(uint8_t type, bool v6, uint8_t *buf, struct dht_msg *ret)
{
	*ret = sample(type, v6);
	return dht__msg_encode(ret, buf);
}

static void bad_fields_are_rejected(void)
{
	uint8_t buf[DHT_MSG_MAX + 1];
	struct dht_msg m, back;
	size_t len, at;

	len = encode(DHT_NODES, false, buf, &m);
	T_ASSERT_OK(dht__msg_decode(buf, len, &back));
	T_ASSERT_EQ(poke(buf, len, 0, DHT_VERSION + 1), -EPROTONOSUPPORT);
	T_ASSERT_EQ(poke(buf, len, 0, 0), -EPROTONOSUPPORT);
	T_ASSERT_EQ(poke(buf, len, 1, 0), -EPROTO);	       /* type 0 */
	T_ASSERT_EQ(poke(buf, len, 1, DHT_TYPE_END), -EPROTO); /* unknown type */
	T_ASSERT_EQ(poke(buf, len, 1, 0xff), -EPROTO);
	at = DHT_HDR_LEN + 8; /* the node count, after the token */
	T_ASSERT_EQ(poke(buf, len, at, DHT_K + 1), -EPROTO);
	T_ASSERT_EQ(poke(buf, len, at, 0xff), -EPROTO);
	/* A node: 32 id, u8 rtt, family, address, port. Any rtt byte is fine. */
	T_ASSERT_OK(poke(buf, len, at + 1 + DHT_ID_LEN, 0xff));
	T_ASSERT_EQ(poke(buf, len, at + 2 + DHT_ID_LEN, 5), -EPROTO); /* family */
	T_ASSERT_EQ(poke(buf, len, at + 2 + DHT_ID_LEN, 0), -EPROTO);
	/* Port 0 (the last two bytes of the first node). */
	buf[at + 2 + DHT_ID_LEN + 5] = 0;
	T_ASSERT_EQ(poke(buf, len, at + 2 + DHT_ID_LEN + 6, 0), -EPROTO);
	len = encode(DHT_NODES, false, buf, &m);
	/* Address 0.0.0.0. */
	memset(buf + at + 2 + DHT_ID_LEN + 1, 0, 4);
	T_ASSERT_EQ(dht__msg_decode(buf, len, &back), -EPROTO);
	/* Over the maximum datagram, whatever it holds. */
	len = encode(DHT_PING, false, buf, &m);
	T_ASSERT_EQ(dht__msg_decode(buf, DHT_MSG_MAX + 1, &back), -EMSGSIZE);

	/* PROVIDERS: both counts are capped. */
	len = encode(DHT_PROVIDERS, false, buf, &m);
	at = DHT_HDR_LEN + 8;
	T_ASSERT_EQ(poke(buf, len, at, DHT_PROVIDERS_MAX + 1), -EPROTO);
	at += 1 + 3 * (DHT_ID_LEN + 7);
	T_ASSERT_EQ(poke(buf, len, at, DHT_K + 1), -EPROTO);

	/* VALUE: the has-record flag is 0 or 1; salt and value lengths capped. */
	len = encode(DHT_VALUE, false, buf, &m);
	at = DHT_HDR_LEN + 8;
	T_ASSERT_EQ(poke(buf, len, at, 2), -EPROTO);
	T_ASSERT_EQ(poke(buf, len, at + 1 + 32, DHT_SALT_MAX + 1), -EPROTO);
	at += 1 + 32 + 1 + 5 + 8; /* the value length */
	buf[at + 1] = (uint8_t)(DHT_VALUE_MAX + 1);
	T_ASSERT_EQ(poke(buf, len, at, (DHT_VALUE_MAX + 1) >> 8), -EPROTO);
	len = encode(DHT_VALUE, false, buf, &m);
	T_ASSERT_EQ(poke(buf, len, at, 0xff), -EPROTO);

	/* PUT: the same record limits. */
	len = encode(DHT_PUT, false, buf, &m);
	at = DHT_HDR_LEN + 16 + 32;
	T_ASSERT_EQ(poke(buf, len, at, DHT_SALT_MAX + 1), -EPROTO);
	T_ASSERT_EQ(poke(buf, len, at, 0xff), -EPROTO);

	/* PONG: the observed address. */
	len = encode(DHT_PONG, false, buf, &m);
	T_ASSERT_EQ(poke(buf, len, DHT_HDR_LEN, 6), -EPROTO); /* says v6, has v4 bytes */
	T_ASSERT_EQ(poke(buf, len, DHT_HDR_LEN, 7), -EPROTO);
}

static void random_bytes_never_crash(void)
{
	uint8_t buf[DHT_MSG_MAX + 16];
	struct dht_msg back;
	size_t accepted = 0;

	for (int i = 0; i < 300000; i++) {
		size_t len = t_rand() % sizeof(buf);

		t_rand_fill(buf, len);
		if (len > 2) {
			buf[0] = DHT_VERSION;
			buf[1] = (uint8_t)(1 + t_rand() % 13);
		}
		if (i % 4 == 0 && len > DHT_HDR_LEN + 9) {
			/* Small counts, so list parsing gets exercised. */
			buf[DHT_HDR_LEN] = (uint8_t)(t_rand() % 3);
			buf[DHT_HDR_LEN + 8] = (uint8_t)(t_rand() % 3);
		}
		if (dht__msg_decode(buf, len, &back) == 0) {
			accepted++;
			T_ASSERT(len <= DHT_MSG_MAX);
			T_ASSERT(back.nnodes <= DHT_K && back.nproviders <= DHT_PROVIDERS_MAX);
			T_ASSERT(back.record.salt_len <= DHT_SALT_MAX || !back.has_record);
			T_ASSERT(back.record.value_len <= DHT_VALUE_MAX || !back.has_record);
			for (size_t k = 0; k < back.nnodes; k++)
				T_ASSERT(dht__addr_valid(&back.nodes[k].addr));
		}
	}
	T_ASSERT(accepted > 0); /* PING, ACK and friends are easy to hit */
}

static void type_names(void)
{
	for (size_t t = 0; t < sizeof(types); t++)
		T_ASSERT(dht_msg_type_name(types[t]) != NULL);
	T_ASSERT(dht_msg_type_name(0) == NULL);
	T_ASSERT(dht_msg_type_name(DHT_MSG_TYPES) == NULL);
	T_ASSERT(!strcmp(dht_msg_type_name(DHT_FIND_NODE), "FIND_NODE"));
}

T_MAIN(T_CASE(every_type_round_trips), T_CASE(long_lists_are_cut_to_fit),
       T_CASE(what_cannot_be_encoded_is_not), T_CASE(every_truncation_and_extension_is_rejected),
       T_CASE(bad_fields_are_rejected), T_CASE(random_bytes_never_crash), T_CASE(type_names))
