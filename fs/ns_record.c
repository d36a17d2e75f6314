// SPDX-License-Identifier: MIT
/*
 * fs/ns_record.c - encode, decode and sign namespace records (layout in
 * ns_record.h). Decoding is the trust boundary for records from peers and
 * from disk: it checks every field and never reads past the buffer.
 */
#include "fs/ns_record.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

static const char sig_domain[] = "p2pfs-ns-record-1";

bool ns_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > NS_NAME_MAX)
		return false;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	return !memchr(name, '/', len) && !memchr(name, '\0', len);
}

int ns_xattrs_check(const uint8_t *p, size_t len, unsigned n)
{
	const uint8_t *prev = NULL;
	uint8_t prev_len = 0;
	struct rbuf r;

	if (n > NS_XATTR_COUNT_MAX || len > NS_XATTR_TOTAL_MAX + (size_t)n * 5)
		return -EPROTO;
	rbuf_init(&r, p, len);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *name;
		uint8_t nl;
		uint32_t vl;
		int cmp;

		if (rbuf_u8(&r, &nl) < 0 || nl == 0 || rbuf_ref(&r, nl, &name) < 0 ||
		    memchr(name, '\0', nl) || rbuf_u32(&r, &vl) < 0 || vl > NS_XATTR_VALUE_MAX ||
		    rbuf_skip(&r, vl) < 0)
			return -EPROTO;
		if (prev) {
			cmp = memcmp(prev, name, P2P_MIN(prev_len, nl));
			if (cmp > 0 || (cmp == 0 && prev_len >= nl))
				return -EPROTO;
		}
		prev = name;
		prev_len = nl;
	}
	if (rbuf_left(&r) != 0 || len - (size_t)n * 5 > NS_XATTR_TOTAL_MAX)
		return -EPROTO;
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static int decode_body(struct rbuf *r, struct ns_record *rec)
{
	uint8_t ver, flags;
	const uint8_t *p;
	uint64_t mtime;
	bool found_self = false;
	int rc;

	if ((rc = rbuf_u8(r, &ver)) < 0 || (rc = rbuf_u8(r, &rec->type)) < 0 ||
	    (rc = rbuf_u8(r, &flags)) < 0 || (rc = rbuf_u8(r, &rec->content_kind)) < 0)
		return rc;
	if (ver != NS_REC_VERSION || rec->type < NS_DIR || rec->type > NS_SYMLINK ||
	    (flags & ~1U) || rec->content_kind > NS_CONTENT_MANIFEST)
		return -EPROTO;
	rec->deleted = flags & 1;
	if ((rc = rbuf_copy(r, rec->id, NS_ID_LEN)) < 0 ||
	    (rc = rbuf_copy(r, rec->parent, NS_ID_LEN)) < 0 || (rc = rbuf_u64(r, &rec->hlc)) < 0 ||
	    (rc = rbuf_copy(r, rec->writer, NS_NODE_ID_LEN)) < 0 ||
	    (rc = rbuf_u32(r, &rec->mode)) < 0 || (rc = rbuf_u32(r, &rec->uid)) < 0 ||
	    (rc = rbuf_u32(r, &rec->gid)) < 0 || (rc = rbuf_u64(r, &rec->size)) < 0 ||
	    (rc = rbuf_u64(r, &mtime)) < 0)
		return rc;
	rec->mtime = (int64_t)mtime;
	if (rec->mode & ~07777U || rec->hlc == 0)
		return -EPROTO;
	/* Only files have content; a directory's size is 0. */
	if (rec->content_kind != NS_CONTENT_NONE) {
		if (rec->type != NS_FILE || rbuf_copy(r, rec->content, CS_ID_LEN) < 0)
			return -EPROTO;
	} else {
		memset(rec->content, 0, CS_ID_LEN);
	}
	if (rec->type == NS_DIR && rec->size != 0)
		return -EPROTO;
	if ((rc = rbuf_u8(r, &rec->name_len)) < 0 || (rc = rbuf_ref(r, rec->name_len, &p)) < 0)
		return rc;
	rec->name = (const char *)p;
	if (all_zero(rec->id, NS_ID_LEN)) {
		/* The root: a directory with no parent and no name, never deleted. */
		if (rec->type != NS_DIR || rec->name_len || rec->deleted ||
		    !all_zero(rec->parent, NS_ID_LEN))
			return -EPROTO;
	} else if (!ns_name_ok(rec->name, rec->name_len) ||
		   !memcmp(rec->id, rec->parent, NS_ID_LEN)) {
		return -EPROTO;
	}
	if ((rc = rbuf_u16(r, &rec->target_len)) < 0 || (rc = rbuf_ref(r, rec->target_len, &p)) < 0)
		return rc;
	rec->target = (const char *)p;
	if (rec->type == NS_SYMLINK) {
		if (rec->target_len == 0 || rec->target_len > NS_SYMLINK_MAX ||
		    memchr(p, '\0', rec->target_len) || rec->size != rec->target_len)
			return -EPROTO;
	} else if (rec->target_len) {
		return -EPROTO;
	}
	if ((rc = rbuf_u8(r, &rec->vv_n)) < 0)
		return rc;
	if (rec->vv_n == 0 || rec->vv_n > NS_VV_MAX)
		return -EPROTO;
	for (unsigned i = 0; i < rec->vv_n; i++) {
		struct ns_vv_ent *v = &rec->vv[i];

		if ((rc = rbuf_copy(r, v->writer, NS_NODE_ID_LEN)) < 0 ||
		    (rc = rbuf_u64(r, &v->hlc)) < 0)
			return rc;
		if (v->hlc == 0 ||
		    (i && memcmp(rec->vv[i - 1].writer, v->writer, NS_NODE_ID_LEN) >= 0))
			return -EPROTO;
		if (!memcmp(v->writer, rec->writer, NS_NODE_ID_LEN)) {
			if (v->hlc != rec->hlc)
				return -EPROTO;
			found_self = true;
		} else if (v->hlc > rec->hlc) {
			/* A record has seen nothing newer than itself. */
			return -EPROTO;
		}
	}
	if (!found_self)
		return -EPROTO;
	if ((rc = rbuf_u16(r, &rec->xattr_n)) < 0)
		return rc;
	if (rec->xattr_n > NS_XATTR_COUNT_MAX)
		return -EPROTO;
	rec->xattrs = r->p;
	{
		/* Walk the entries to find their extent, then validate them. */
		struct rbuf x = *r;

		for (unsigned i = 0; i < rec->xattr_n; i++) {
			uint8_t nl;
			uint32_t vl;

			if (rbuf_u8(&x, &nl) < 0 || rbuf_skip(&x, nl) < 0 ||
			    rbuf_u32(&x, &vl) < 0 || vl > NS_XATTR_VALUE_MAX ||
			    rbuf_skip(&x, vl) < 0)
				return -EPROTO;
		}
		rec->xattrs_len = (uint32_t)(x.p - r->p);
		if (ns_xattrs_check(rec->xattrs, rec->xattrs_len, rec->xattr_n) < 0)
			return -EPROTO;
		*r = x;
	}
	return 0;
}

int ns_record_decode(const uint8_t *buf, size_t len, struct ns_record *rec)
{
	struct rbuf r;
	int rc;

	if (len > NS_REC_MAX)
		return -EMSGSIZE;
	if (len < NS_REC_FIXED_LEN + NS_REC_SIG_LEN)
		return -EPROTO;
	rbuf_init(&r, buf, len - NS_REC_SIG_LEN);
	if ((rc = decode_body(&r, rec)) < 0)
		return rc;
	if (rbuf_left(&r) != 0)
		return -EPROTO;
	rec->sig = buf + len - NS_REC_SIG_LEN;
	return 0;
}

long ns_record_encode(const struct ns_record *rec, uint8_t *buf, size_t cap)
{
	struct wbuf w;

	wbuf_init(&w, buf, cap);
	wbuf_u8(&w, NS_REC_VERSION);
	wbuf_u8(&w, rec->type);
	wbuf_u8(&w, rec->deleted ? 1 : 0);
	wbuf_u8(&w, rec->content_kind);
	wbuf_bytes(&w, rec->id, NS_ID_LEN);
	wbuf_bytes(&w, rec->parent, NS_ID_LEN);
	wbuf_u64(&w, rec->hlc);
	wbuf_bytes(&w, rec->writer, NS_NODE_ID_LEN);
	wbuf_u32(&w, rec->mode);
	wbuf_u32(&w, rec->uid);
	wbuf_u32(&w, rec->gid);
	wbuf_u64(&w, rec->size);
	wbuf_u64(&w, (uint64_t)rec->mtime);
	if (rec->content_kind != NS_CONTENT_NONE)
		wbuf_bytes(&w, rec->content, CS_ID_LEN);
	wbuf_u8(&w, rec->name_len);
	wbuf_bytes(&w, rec->name, rec->name_len);
	wbuf_u16(&w, rec->target_len);
	wbuf_bytes(&w, rec->target, rec->target_len);
	wbuf_u8(&w, rec->vv_n);
	for (unsigned i = 0; i < rec->vv_n; i++) {
		wbuf_bytes(&w, rec->vv[i].writer, NS_NODE_ID_LEN);
		wbuf_u64(&w, rec->vv[i].hlc);
	}
	wbuf_u16(&w, rec->xattr_n);
	wbuf_bytes(&w, rec->xattrs, rec->xattrs_len);
	return wbuf_done(&w);
}

/* What the share key signs: domain || share public key || body. */
static size_t sig_msg(uint8_t *msg, const uint8_t share_pk[static 32], const uint8_t *body,
		      size_t len)
{
	memcpy(msg, sig_domain, sizeof(sig_domain) - 1);
	memcpy(msg + sizeof(sig_domain) - 1, share_pk, 32);
	memcpy(msg + sizeof(sig_domain) - 1 + 32, body, len);
	return sizeof(sig_domain) - 1 + 32 + len;
}

void ns_record_sign(uint8_t *buf, size_t body_len, const uint8_t share_pk[static 32],
		    const uint8_t share_sk[static 64])
{
	/* Plain Ed25519 over the whole message keeps signatures deterministic
	 * per record, which conflict copies rely on. */
	uint8_t msg[sizeof(sig_domain) - 1 + 32 + NS_REC_MAX];
	size_t n = sig_msg(msg, share_pk, buf, body_len);

	crypto_sign_detached(buf + body_len, NULL, msg, n, share_sk);
}

bool ns_record_verify(const uint8_t *buf, size_t len, const uint8_t share_pk[static 32])
{
	uint8_t msg[sizeof(sig_domain) - 1 + 32 + NS_REC_MAX];
	size_t n;

	if (len < NS_REC_SIG_LEN || len > NS_REC_MAX)
		return false;
	n = sig_msg(msg, share_pk, buf, len - NS_REC_SIG_LEN);
	return crypto_sign_verify_detached(buf + len - NS_REC_SIG_LEN, msg, n, share_pk) == 0;
}
