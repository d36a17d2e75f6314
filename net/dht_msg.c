// SPDX-License-Identifier: MIT
/*
 * net/dht_msg.c - the DHT's binary messages.
 *
 *   u8 version (1) | u8 type | u64 transaction id | 32 sender id | body
 *
 *   PING          -
 *   PONG          address (the requester's, as the responder saw it)
 *   FIND_NODE     32 target
 *   NODES         u8 n (<= 20), n contacts
 *   GET_PROVIDERS 32 key
 *   PROVIDERS     u64 token, u8 p (<= 16), p contacts, u8 n (<= 20), n contacts
 *   ADD_PROVIDER  32 key, u64 token, u16 port
 *   ACK           - *   ERROR         u8 code
 *   GET           32 target
 *   VALUE         u64 token, u8 has (0/1), [record], u8 n (<= 20), n contacts
 *   PUT           u64 token, u64 cas, record
 *
 *   record  = 32 public key, u8 salt length (<= 64), salt, u64 seq,
 *             u16 value length (<= 1000), value, 64 signature
 *
 *   address = u8 family (4 or 6), 4 or 16 bytes, u16 port (not 0)
 *   contact = 32 id, address
 *
 * Big-endian; nothing may follow the body; a datagram is at most
 * DHT_MSG_MAX bytes both ways.
 */
#include "net/dht_int.h"
#include "common/rbuf.h"

#include <errno.h>
#include <string.h>

bool dht__addr_valid(const struct dht_addr *a)
{
	return (a->family == 4 || a->family == 6) && a->port != 0;
}

static int get_addr(struct rbuf *r, struct dht_addr *a)
{
	int rc;

	memset(a, 0, sizeof(*a));
	if ((rc = rbuf_u8(r, &a->family)) < 0)
		return rc;
	if (a->family != 4 && a->family != 6)
		return -EPROTO;
	if ((rc = rbuf_copy(r, a->ip, a->family == 4 ? 4 : 16)) < 0 ||
	    (rc = rbuf_u16(r, &a->port)) < 0)
		return rc;
	return a->port ? 0 : -EPROTO;
}

static int get_contacts(struct rbuf *r, struct dht_contact *out, size_t max, size_t *ret_n)
{
	uint8_t n;
	int rc;

	if ((rc = rbuf_u8(r, &n)) < 0)
		return rc;
	if (n > max) /* cap before the loop */
		return -EPROTO;
	for (size_t i = 0; i < n; i++)
		if ((rc = rbuf_copy(r, out[i].id, DHT_ID_LEN)) < 0 ||
		    (rc = get_addr(r, &out[i].addr)) < 0)
			return rc;
	*ret_n = n;
	return 0;
}

static int get_record(struct rbuf *r, struct dht_record *rec)
{
	int rc;

	if ((rc = rbuf_copy(r, rec->pk, 32)) < 0 || (rc = rbuf_u8(r, &rec->salt_len)) < 0)
		return rc;
	if (rec->salt_len > DHT_SALT_MAX)
		return -EPROTO;
	if ((rc = rbuf_copy(r, rec->salt, rec->salt_len)) < 0 ||
	    (rc = rbuf_u64(r, &rec->seq)) < 0 || (rc = rbuf_u16(r, &rec->value_len)) < 0)
		return rc;
	if (rec->value_len > DHT_VALUE_MAX)
		return -EPROTO;
	if ((rc = rbuf_copy(r, rec->value, rec->value_len)) < 0 ||
	    (rc = rbuf_copy(r, rec->sig, 64)) < 0)
		return rc;
	return 0;
}

int dht__msg_decode(const uint8_t *buf, size_t len, struct dht_msg *m)
{
	struct rbuf r;
	uint8_t ver;
	int rc;

	if (len > DHT_MSG_MAX)
		return -EPROTO;
	memset(m, 0, sizeof(*m));
	rbuf_init(&r, buf, len);
	if ((rc = rbuf_u8(&r, &ver)) < 0 || (rc = rbuf_u8(&r, &m->type)) < 0 ||
	    (rc = rbuf_u64(&r, &m->txid)) < 0 || (rc = rbuf_copy(&r, m->sender, DHT_ID_LEN)) < 0)
		return -EPROTO;
	if (ver != DHT_VERSION)
		return -EPROTO;
	switch (m->type) {
	case DHT_PING:
	case DHT_ACK:
		break;
	case DHT_PONG:
		rc = get_addr(&r, &m->observed);
		break;
	case DHT_FIND_NODE:
	case DHT_GET_PROVIDERS:
		rc = rbuf_copy(&r, m->target, DHT_ID_LEN);
		break;
	case DHT_NODES:
		rc = get_contacts(&r, m->nodes, DHT_K, &m->nnodes);
		break;
	case DHT_PROVIDERS:
		if ((rc = rbuf_u64(&r, &m->token)) < 0 ||
		    (rc = get_contacts(&r, m->providers, DHT_PROVIDERS_MAX, &m->nproviders)) < 0)
			break;
		rc = get_contacts(&r, m->nodes, DHT_K, &m->nnodes);
		break;
	case DHT_ADD_PROVIDER:
		if ((rc = rbuf_copy(&r, m->target, DHT_ID_LEN)) < 0 ||
		    (rc = rbuf_u64(&r, &m->token)) < 0)
			break;
		rc = rbuf_u16(&r, &m->port);
		break;
	case DHT_ERROR:
		rc = rbuf_u8(&r, &m->error);
		break;
	case DHT_GET:
		rc = rbuf_copy(&r, m->target, DHT_ID_LEN);
		break;
	case DHT_VALUE: {
		uint8_t has;

		if ((rc = rbuf_u64(&r, &m->token)) < 0 || (rc = rbuf_u8(&r, &has)) < 0)
			break;
		if (has > 1) {
			rc = -EPROTO;
			break;
		}
		m->has_record = has;
		if (has && (rc = get_record(&r, &m->record)) < 0)
			break;
		rc = get_contacts(&r, m->nodes, DHT_K, &m->nnodes);
		break;
	}
	case DHT_PUT:
		if ((rc = rbuf_u64(&r, &m->token)) < 0 || (rc = rbuf_u64(&r, &m->cas)) < 0)
			break;
		m->has_record = true;
		rc = get_record(&r, &m->record);
		break;
	default:
		return -EPROTO;
	}
	if (rc < 0 || rbuf_left(&r) != 0)
		return -EPROTO;
	return 0;
}

static void put_addr(struct wbuf *w, const struct dht_addr *a)
{
	wbuf_u8(w, a->family);
	wbuf_bytes(w, a->ip, a->family == 4 ? 4 : 16);
	wbuf_u16(w, a->port);
}

static size_t contact_len(const struct dht_contact *c)
{
	return DHT_ID_LEN + 1 + (c->addr.family == 4 ? 4 : 16) + 2;
}

/* As many of @c[0..n) as fit in @room bytes (after the count byte). */
static size_t fitting(const struct dht_contact *c, size_t n, size_t room)
{
	size_t k = 0, used = 0;

	while (k < n && used + contact_len(&c[k]) <= room)
		used += contact_len(&c[k++]);
	return k;
}

static void put_contacts(struct wbuf *w, const struct dht_contact *c, size_t n)
{
	wbuf_u8(w, (uint8_t)n);
	for (size_t i = 0; i < n; i++) {
		wbuf_bytes(w, c[i].id, DHT_ID_LEN);
		put_addr(w, &c[i].addr);
	}
}

static void put_record(struct wbuf *w, const struct dht_record *r)
{
	wbuf_bytes(w, r->pk, 32);
	wbuf_u8(w, r->salt_len);
	wbuf_bytes(w, r->salt, r->salt_len);
	wbuf_u64(w, r->seq);
	wbuf_u16(w, r->value_len);
	wbuf_bytes(w, r->value, r->value_len);
	wbuf_bytes(w, r->sig, 64);
}

size_t dht__msg_encode(const struct dht_msg *m, uint8_t buf[static DHT_MSG_MAX])
{
	struct wbuf w;
	size_t np, nn;

	wbuf_init(&w, buf, DHT_MSG_MAX);
	wbuf_u8(&w, DHT_VERSION);
	wbuf_u8(&w, m->type);
	wbuf_u64(&w, m->txid);
	wbuf_bytes(&w, m->sender, DHT_ID_LEN);
	switch (m->type) {
	case DHT_PONG:
		put_addr(&w, &m->observed);
		break;
	case DHT_FIND_NODE:
	case DHT_GET_PROVIDERS:
		wbuf_bytes(&w, m->target, DHT_ID_LEN);
		break;
	case DHT_NODES:
		nn = fitting(m->nodes, P2P_MIN(m->nnodes, (size_t)DHT_K), DHT_MSG_MAX - w.len - 1);
		put_contacts(&w, m->nodes, nn);
		break;
	case DHT_PROVIDERS:
		wbuf_u64(&w, m->token);
		np = fitting(m->providers, P2P_MIN(m->nproviders, (size_t)DHT_PROVIDERS_MAX),
			     DHT_MSG_MAX - w.len - 2);
		put_contacts(&w, m->providers, np);
		nn = fitting(m->nodes, P2P_MIN(m->nnodes, (size_t)DHT_K), DHT_MSG_MAX - w.len - 1);
		put_contacts(&w, m->nodes, nn);
		break;
	case DHT_ADD_PROVIDER:
		wbuf_bytes(&w, m->target, DHT_ID_LEN);
		wbuf_u64(&w, m->token);
		wbuf_u16(&w, m->port);
		break;
	case DHT_ERROR:
		wbuf_u8(&w, m->error);
		break;
	case DHT_GET:
		wbuf_bytes(&w, m->target, DHT_ID_LEN);
		break;
	case DHT_VALUE:
		wbuf_u64(&w, m->token);
		wbuf_u8(&w, m->has_record ? 1 : 0);
		if (m->has_record)
			put_record(&w, &m->record);
		nn = fitting(m->nodes, P2P_MIN(m->nnodes, (size_t)DHT_K), DHT_MSG_MAX - w.len - 1);
		put_contacts(&w, m->nodes, nn);
		break;
	case DHT_PUT:
		wbuf_u64(&w, m->token);
		wbuf_u64(&w, m->cas);
		put_record(&w, &m->record);
		break;
	default:
		break;
	}
	return w.err ? 0 : w.len;
}
