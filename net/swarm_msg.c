// SPDX-License-Identifier: MIT
/*
 * net/swarm_msg.c - decoding and encoding the members' messages (layout:
 * net/swarm.h). Parsing reads through common/rbuf.h only; every count is
 * checked against its limit and the exact remaining length before use.
 */
#include "net/swarm_msg.h"

#include <errno.h>
#include <string.h>

#include "common/rbuf.h"

int swarm_msg_decode(const uint8_t *buf, size_t len, struct swarm_msg *m)
{
	struct rbuf r;
	uint8_t n8;
	uint16_t n16;

	memset(m, 0, sizeof(*m));
	rbuf_init(&r, buf, len);
	if (rbuf_u8(&r, &m->type) < 0)
		return -EPROTO;
	switch (m->type) {
	case SWARM_M_HELLO:
		if (rbuf_u8(&r, &m->u.hello.version) < 0 || rbuf_ref(&r, 32, &m->u.hello.tag) < 0 ||
		    rbuf_ref(&r, 32, &m->u.hello.proof) < 0 || rbuf_u16(&r, &m->u.hello.port) < 0 ||
		    rbuf_u8(&r, &m->u.hello.flags) < 0)
			return -EPROTO;
		break;
	case SWARM_M_GET:
		if (rbuf_u32(&r, &m->u.get.reqid) < 0 || rbuf_ref(&r, 32, &m->u.get.id) < 0)
			return -EPROTO;
		if (rbuf_left(&r) && (rbuf_u8(&r, &m->u.get.flags) < 0 || !m->u.get.flags))
			return -EPROTO; /* no flags: no byte */
		break;
	case SWARM_M_DATA:
		if (rbuf_u32(&r, &m->u.data.reqid) < 0 || rbuf_u32(&r, &m->u.data.total) < 0 ||
		    rbuf_u32(&r, &m->u.data.off) < 0)
			return -EPROTO;
		m->u.data.len = rbuf_left(&r);
		if (rbuf_ref(&r, m->u.data.len, &m->u.data.bytes) < 0)
			return -EPROTO;
		if (!m->u.data.total || m->u.data.total > SWARM_CHUNK_LIMIT || !m->u.data.len ||
		    m->u.data.len > SWARM_PIECE_LIMIT || m->u.data.off >= m->u.data.total ||
		    m->u.data.len > m->u.data.total - m->u.data.off)
			return -EPROTO;
		return 0;
	case SWARM_M_NOTFOUND:
		if (rbuf_u32(&r, &m->u.notfound.reqid) < 0)
			return -EPROTO;
		if (rbuf_left(&r) && (rbuf_u8(&r, &m->u.notfound.reason) < 0 ||
				      m->u.notfound.reason == SWARM_NF_MISSING))
			return -EPROTO; /* the reason byte is absent for "missing" */
		break;
	case SWARM_M_PEX:
		if (rbuf_u8(&r, &n8) < 0 || n8 > SWARM_PEX_LIMIT ||
		    rbuf_left(&r) != (size_t)n8 * SWARM_PEX_ENTRY)
			return -EPROTO;
		m->u.pex.n = n8;
		if (rbuf_ref(&r, (size_t)n8 * SWARM_PEX_ENTRY, &m->u.pex.entries) < 0)
			return -EPROTO;
		break;
	case SWARM_M_HAVE:
		if (rbuf_u16(&r, &n16) < 0 || n16 > SWARM_HAVE_LIMIT ||
		    rbuf_left(&r) != (size_t)n16 * 8)
			return -EPROTO;
		m->u.have.n = n16;
		if (rbuf_ref(&r, (size_t)n16 * 8, &m->u.have.prefixes) < 0)
			return -EPROTO;
		break;
	case SWARM_M_PING:
	case SWARM_M_PONG:
		if (rbuf_ref(&r, 8, &m->u.ping.nonce) < 0)
			return -EPROTO;
		break;
	default:
		if (m->type >= SWARM_APP_FIRST) {
			m->u.app.len = rbuf_left(&r);
			return rbuf_ref(&r, m->u.app.len, &m->u.app.body) < 0 ? -EPROTO : 0;
		}
		return 0; /* a newer version's: ignored */
	}
	return rbuf_end(&r) < 0 ? -EPROTO : 0;
}

bool swarm_msg_pex_entry(const struct swarm_msg *m, unsigned i, uint8_t id[static 32],
			 struct dht_addr *addr, uint16_t *age)
{
	const uint8_t *e = m->u.pex.entries + (size_t)i * SWARM_PEX_ENTRY;
	uint8_t fam = e[32];

	memcpy(id, e, 32);
	memset(addr, 0, sizeof(*addr));
	addr->family = fam;
	addr->port = (uint16_t)(e[49] << 8 | e[50]);
	*age = (uint16_t)(e[51] << 8 | e[52]);
	if ((fam != 4 && fam != 6) || !addr->port)
		return false;
	memcpy(addr->ip, e + 33, fam == 4 ? 4 : 16);
	return true;
}

uint64_t swarm_msg_have_prefix(const struct swarm_msg *m, unsigned i)
{
	return be64_get(m->u.have.prefixes + (size_t)i * 8);
}

long swarm_msg_encode(const struct swarm_msg *m, uint8_t *out, size_t cap)
{
	struct wbuf w;

	wbuf_init(&w, out, cap);
	wbuf_u8(&w, m->type);
	switch (m->type) {
	case SWARM_M_HELLO:
		wbuf_u8(&w, m->u.hello.version);
		wbuf_bytes(&w, m->u.hello.tag, 32);
		wbuf_bytes(&w, m->u.hello.proof, 32);
		wbuf_u16(&w, m->u.hello.port);
		wbuf_u8(&w, m->u.hello.flags);
		break;
	case SWARM_M_GET:
		wbuf_u32(&w, m->u.get.reqid);
		wbuf_bytes(&w, m->u.get.id, 32);
		if (m->u.get.flags)
			wbuf_u8(&w, m->u.get.flags);
		break;
	case SWARM_M_DATA:
		wbuf_u32(&w, m->u.data.reqid);
		wbuf_u32(&w, m->u.data.total);
		wbuf_u32(&w, m->u.data.off);
		break;
	case SWARM_M_NOTFOUND:
		wbuf_u32(&w, m->u.notfound.reqid);
		if (m->u.notfound.reason != SWARM_NF_MISSING)
			wbuf_u8(&w, m->u.notfound.reason);
		break;
	case SWARM_M_PEX:
		if (m->u.pex.n > SWARM_PEX_LIMIT)
			return -EMSGSIZE;
		wbuf_u8(&w, (uint8_t)m->u.pex.n);
		wbuf_bytes(&w, m->u.pex.entries, (size_t)m->u.pex.n * SWARM_PEX_ENTRY);
		break;
	case SWARM_M_HAVE:
		if (m->u.have.n > SWARM_HAVE_LIMIT)
			return -EMSGSIZE;
		wbuf_u16(&w, (uint16_t)m->u.have.n);
		wbuf_bytes(&w, m->u.have.prefixes, (size_t)m->u.have.n * 8);
		break;
	case SWARM_M_PING:
	case SWARM_M_PONG:
		wbuf_bytes(&w, m->u.ping.nonce, 8);
		break;
	default:
		if (m->type < SWARM_APP_FIRST)
			return -EINVAL;
		wbuf_bytes(&w, m->u.app.body, m->u.app.len);
	}
	return wbuf_done(&w);
}
