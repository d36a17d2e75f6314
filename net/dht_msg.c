// SPDX-License-Identifier: MIT
/*
 * net/dht_msg.c - the DHT's datagrams: encoding and bounds-checked decoding.
 * No state, no I/O, no allocation.
 *
 * Every datagram (big-endian, at most DHT_MSG_MAX = 1400 bytes both ways):
 *
 *   off  size  field
 *     0     1  version (2)
 *     1     1  type
 *     2     8  transaction id (chosen at random by the requester; echoed)
 *    10    32  sender's node id
 *    42     -  body:
 *
 *   PING           -
 *   PONG           address: the requester's, as the responder saw it
 *   FIND_NODE      32 target
 *   NODES          u64 token, u8 n (<= 20), n nodes
 *   GET_PROVIDERS  32 key
 *   PROVIDERS      u64 token, u8 p (<= 16), p contacts, u8 n (<= 20), n nodes
 *   ADD_PROVIDER   32 key, u64 token, u16 port (0: the source port)
 *   ACK            -
 *   ERROR          u8 code (enum dht_err), u64 seq (the stored one, for SEQ and CAS)
 *   GET            32 target, u64 seq (send the record only if it is newer; 0: any)
 *   VALUE          u64 token, u8 has (0 or 1), [record], u8 n (<= 20), n nodes
 *   PUT            u64 token, u64 cas (0: none), record
 *
 *   address = u8 family (4 or 6), 4 or 16 bytes, u16 port (not 0; address not all zero,
 *             except for a provider that names itself: the address it was asked at)
 *   contact = 32 id, address                         (39 or 51 bytes)
 *   node    = 32 id, u8 rtt, address                 (40 or 52 bytes)
 *             rtt: the sender's round trip to that node (dht__rtt_code: four
 *             steps per doubling of milliseconds; 0 = not measured)
 *   record  = 32 public key, u8 salt length (<= 64), salt, u64 seq,
 *             u16 value length (<= 1000), value, 64 signature
 *
 * Invariants:
 *  1. Decoding never reads outside [buf, buf + len): everything goes through
 *     an rbuf; counts and lengths are checked against their maxima before
 *     anything is read, and nothing may follow the body.
 *  2. Whatever the encoder produces decodes (the fuzz target checks every
 *     datagram the engine sends); lists too long for one datagram are cut.
 */
#include "net/dht_int.h"
#include "common/rbuf.h"

#include <errno.h>
#include <string.h>

bool dht__addr_valid(const struct dht_addr *a)
{
	static const uint8_t zero[16];

	if ((a->family != 4 && a->family != 6) || a->port == 0)
		return false;
	return memcmp(a->ip, zero, a->family == 4 ? 4 : 16) != 0;
}

bool dht_addr_eq(const struct dht_addr *a, const struct dht_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       !memcmp(a->ip, b->ip, a->family == 4 ? 4 : 16);
}

size_t dht__contact_wire_len(const struct dht_contact *c)
{
	return DHT_ID_LEN + 1 + (c->addr.family == 4 ? 4 : 16) + 2;
}

/* ---- decoding ---- */

/* @self_ok: an all-zero address (with a port) is allowed: a provider that
 * names itself, whose address is the one the answer came from. */
static int get_addr(struct rbuf *r, struct dht_addr *a, bool self_ok)
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
	if (self_ok && a->port && dht__ip_unspecified(a))
		return 0;
	return dht__addr_valid(a) ? 0 : -EPROTO;
}

/* A list of contacts, or of nodes when @rtt is not NULL. */
static int get_contacts(struct rbuf *r, struct dht_contact *out, uint8_t *rtt, size_t max,
			size_t *ret_n)
{
	uint8_t n;
	int rc;

	if ((rc = rbuf_u8(r, &n)) < 0)
		return rc;
	if (n > max) /* cap before the loop, not inside it */
		return -EPROTO;
	for (size_t i = 0; i < n; i++)
		if ((rc = rbuf_copy(r, out[i].id, DHT_ID_LEN)) < 0 ||
		    (rtt && (rc = rbuf_u8(r, &rtt[i])) < 0) ||
		    (rc = get_addr(r, &out[i].addr, !rtt)) < 0)
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

static int get_body(struct rbuf *r, struct dht_msg *m)
{
	uint8_t has;
	int rc;

	switch (m->type) {
	case DHT_PING:
	case DHT_ACK:
		return 0;
	case DHT_PONG:
		return get_addr(r, &m->observed, false);
	case DHT_FIND_NODE:
	case DHT_GET_PROVIDERS:
		return rbuf_copy(r, m->target, DHT_ID_LEN);
	case DHT_NODES:
		if ((rc = rbuf_u64(r, &m->token)) < 0)
			return rc;
		return get_contacts(r, m->nodes, m->node_rtt, DHT_K, &m->nnodes);
	case DHT_PROVIDERS:
		if ((rc = rbuf_u64(r, &m->token)) < 0 ||
		    (rc = get_contacts(r, m->providers, NULL, DHT_PROVIDERS_MAX, &m->nproviders)) <
			0)
			return rc;
		return get_contacts(r, m->nodes, m->node_rtt, DHT_K, &m->nnodes);
	case DHT_ADD_PROVIDER:
		if ((rc = rbuf_copy(r, m->target, DHT_ID_LEN)) < 0 ||
		    (rc = rbuf_u64(r, &m->token)) < 0)
			return rc;
		return rbuf_u16(r, &m->port);
	case DHT_ERROR:
		if ((rc = rbuf_u8(r, &m->error)) < 0)
			return rc;
		return rbuf_u64(r, &m->seq);
	case DHT_GET:
		if ((rc = rbuf_copy(r, m->target, DHT_ID_LEN)) < 0)
			return rc;
		return rbuf_u64(r, &m->seq);
	case DHT_VALUE:
		if ((rc = rbuf_u64(r, &m->token)) < 0 || (rc = rbuf_u8(r, &has)) < 0)
			return rc;
		if (has > 1)
			return -EPROTO;
		m->has_record = has;
		if (has && (rc = get_record(r, &m->record)) < 0)
			return rc;
		return get_contacts(r, m->nodes, m->node_rtt, DHT_K, &m->nnodes);
	case DHT_PUT:
		if ((rc = rbuf_u64(r, &m->token)) < 0 || (rc = rbuf_u64(r, &m->cas)) < 0)
			return rc;
		m->has_record = true;
		return get_record(r, &m->record);
	default:
		return -EPROTO;
	}
}

int dht__msg_decode(const uint8_t *buf, size_t len, struct dht_msg *m)
{
	struct rbuf r;
	uint8_t ver;
	int rc;

	if (len > DHT_MSG_MAX)
		return -EMSGSIZE;
	dht__msg_init(m, 0, 0);
	rbuf_init(&r, buf, len);
	if (rbuf_u8(&r, &ver) < 0 || rbuf_u8(&r, &m->type) < 0 || rbuf_u64(&r, &m->txid) < 0 ||
	    rbuf_copy(&r, m->sender, DHT_ID_LEN) < 0)
		return -EPROTO;
	if (ver != DHT_VERSION)
		return -EPROTONOSUPPORT;
	if ((rc = get_body(&r, m)) < 0)
		return -EPROTO;
	if (rbuf_end(&r) < 0)
		return -EPROTO;
	return 0;
}

/* ---- encoding ---- */

static void put_addr(struct wbuf *w, const struct dht_addr *a)
{
	wbuf_u8(w, a->family);
	wbuf_bytes(w, a->ip, a->family == 4 ? 4 : 16);
	wbuf_u16(w, a->port);
}

/* As many valid contacts of @c[0..n) as fit, after the count byte, leaving
 * @reserve bytes; nodes (with their round trips) when @rtt is not NULL. */
static void put_contacts(struct wbuf *w, const struct dht_contact *c, const uint8_t *rtt, size_t n,
			 size_t max, size_t reserve)
{
	size_t room = w->cap - w->len, used = 1, k = 0;
	uint8_t *count;

	if (room < 1 + reserve) {
		w->err = -EMSGSIZE;
		return;
	}
	room -= reserve;
	if (!(count = wbuf_reserve(w, 1)))
		return;
	for (size_t i = 0; i < n && k < max; i++) {
		size_t cl = dht__contact_wire_len(&c[i]) + (rtt ? 1 : 0);

		if (!dht__addr_valid(&c[i].addr) &&
		    (rtt || !c[i].addr.port || !dht__ip_unspecified(&c[i].addr)))
			continue;
		if (used + cl > room)
			break;
		wbuf_bytes(w, c[i].id, DHT_ID_LEN);
		if (rtt)
			wbuf_u8(w, rtt[i]);
		put_addr(w, &c[i].addr);
		used += cl;
		k++;
	}
	*count = (uint8_t)k;
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

	if (((m->type == DHT_VALUE && m->has_record) || m->type == DHT_PUT) &&
	    (m->record.salt_len > DHT_SALT_MAX || m->record.value_len > DHT_VALUE_MAX))
		return 0;
	wbuf_init(&w, buf, DHT_MSG_MAX);
	wbuf_u8(&w, DHT_VERSION);
	wbuf_u8(&w, m->type);
	wbuf_u64(&w, m->txid);
	wbuf_bytes(&w, m->sender, DHT_ID_LEN);
	switch (m->type) {
	case DHT_PING:
	case DHT_ACK:
		break;
	case DHT_PONG:
		if (!dht__addr_valid(&m->observed))
			return 0;
		put_addr(&w, &m->observed);
		break;
	case DHT_FIND_NODE:
	case DHT_GET_PROVIDERS:
		wbuf_bytes(&w, m->target, DHT_ID_LEN);
		break;
	case DHT_NODES:
		wbuf_u64(&w, m->token);
		put_contacts(&w, m->nodes, m->node_rtt, m->nnodes, DHT_K, 0);
		break;
	case DHT_PROVIDERS:
		wbuf_u64(&w, m->token);
		put_contacts(&w, m->providers, NULL, m->nproviders, DHT_PROVIDERS_MAX, 1);
		put_contacts(&w, m->nodes, m->node_rtt, m->nnodes, DHT_K, 0);
		break;
	case DHT_ADD_PROVIDER:
		wbuf_bytes(&w, m->target, DHT_ID_LEN);
		wbuf_u64(&w, m->token);
		wbuf_u16(&w, m->port);
		break;
	case DHT_ERROR:
		wbuf_u8(&w, m->error);
		wbuf_u64(&w, m->seq);
		break;
	case DHT_GET:
		wbuf_bytes(&w, m->target, DHT_ID_LEN);
		wbuf_u64(&w, m->seq);
		break;
	case DHT_VALUE:
		wbuf_u64(&w, m->token);
		wbuf_u8(&w, m->has_record ? 1 : 0);
		if (m->has_record)
			put_record(&w, &m->record);
		put_contacts(&w, m->nodes, m->node_rtt, m->nnodes, DHT_K, 0);
		break;
	case DHT_PUT:
		wbuf_u64(&w, m->token);
		wbuf_u64(&w, m->cas);
		put_record(&w, &m->record);
		break;
	default:
		return 0;
	}
	return w.err ? 0 : w.len;
}

const char *dht_msg_type_name(unsigned type)
{
	static const char *const names[DHT_MSG_TYPES] = {
		[DHT_PING] = "PING",
		[DHT_PONG] = "PONG",
		[DHT_FIND_NODE] = "FIND_NODE",
		[DHT_NODES] = "NODES",
		[DHT_GET_PROVIDERS] = "GET_PROVIDERS",
		[DHT_PROVIDERS] = "PROVIDERS",
		[DHT_ADD_PROVIDER] = "ADD_PROVIDER",
		[DHT_ACK] = "ACK",
		[DHT_ERROR] = "ERROR",
		[DHT_GET] = "GET",
		[DHT_VALUE] = "VALUE",
		[DHT_PUT] = "PUT",
	};

	return type < DHT_MSG_TYPES ? names[type] : NULL;
}
