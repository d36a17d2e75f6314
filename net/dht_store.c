// SPDX-License-Identifier: MIT
/*
 * net/dht_store.c - what a node keeps for others: provider records (key ->
 * peers that hold it) and signed mutable records (after BEP 44), with
 * expiry and hard caps. No I/O; tokens are checked by the caller (dht.c)
 * before anything reaches this file.
 *
 * Both live in open-addressing hash tables (linear probing, backward-shift
 * deletion, no tombstones) hashed with SipHash under a secret key: peers
 * choose the keys, so they must not be able to choose collisions.
 *
 * Invariants:
 *  1. Never more than max_keys provider keys, providers_per_key providers
 *     per key, max_records records, and never more than store_mem_max bytes
 *     of entries; a full store refuses new keys but refreshes known ones.
 *  2. A stored record verified (signature, lengths) when it was stored, and
 *     is only replaced by a record of the same key with a higher sequence
 *     number, or the same number and the same value (a refresh); with a
 *     compare-and-swap value, only if the stored number equals it.
 *  3. Expired entries are never returned; they are freed by a sweep that
 *     visits a bounded number of slots per call.
 */
#include "net/dht_int.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- the hash table ---- */

static size_t home(const struct dht__htab *t, const uint8_t key[static DHT_ID_LEN])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	crypto_shorthash(h, key, DHT_ID_LEN, t->sipkey);
	for (size_t i = 0; i < sizeof(h); i++)
		v = v << 8 | h[i];
	return (size_t)v & (t->cap - 1);
}

static size_t find_slot(const struct dht__htab *t, const uint8_t key[static DHT_ID_LEN])
{
	size_t i;

	if (!t->cap)
		return SIZE_MAX;
	for (i = home(t, key); t->slot[i]; i = (i + 1) & (t->cap - 1))
		if (!memcmp(t->slot[i], key, DHT_ID_LEN))
			return i;
	return SIZE_MAX;
}

static void *htab_get(const struct dht__htab *t, const uint8_t key[static DHT_ID_LEN])
{
	size_t i = find_slot(t, key);

	return i == SIZE_MAX ? NULL : t->slot[i];
}

static void place(struct dht__htab *t, void *e)
{
	size_t i = home(t, e);

	while (t->slot[i])
		i = (i + 1) & (t->cap - 1);
	t->slot[i] = e;
}

/* @e starts with its 32-byte key, which is not in the table yet. */
static int htab_put(struct dht__htab *t, void *e)
{
	if (2 * (t->n + 1) > t->cap) {
		size_t ncap = t->cap ? 2 * t->cap : 16, ocap = t->cap;
		void **old = t->slot, **ns = calloc(ncap, sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		t->slot = ns;
		t->cap = ncap;
		t->sweep = 0;
		for (size_t i = 0; i < ocap; i++)
			if (old[i])
				place(t, old[i]);
		free(old);
	}
	place(t, e);
	t->n++;
	return 0;
}

/* Remove the entry at slot @i; entries after it move back so that every
 * entry stays reachable from its home slot without tombstones. */
static void htab_del_at(struct dht__htab *t, size_t i)
{
	size_t mask = t->cap - 1, j = i;

	t->slot[i] = NULL;
	t->n--;
	for (;;) {
		size_t h;

		j = (j + 1) & mask;
		if (!t->slot[j])
			return;
		h = home(t, t->slot[j]);
		/* Entry j may move to the hole i unless its home lies in (i, j]. */
		if (((j - h) & mask) >= ((j - i) & mask)) {
			t->slot[i] = t->slot[j];
			t->slot[j] = NULL;
			i = j;
		}
	}
}

static void htab_done(struct dht__htab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->slot[i]);
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

/* ---- the store ---- */

int dht__store_init(struct dht__store *s, const struct dht_opts *o, const uint8_t sipkey[static 16])
{
	memset(s, 0, sizeof(*s));
	memcpy(s->prov.sipkey, sipkey, 16);
	memcpy(s->recs.sipkey, sipkey, 16);
	s->recs.sipkey[0] ^= 1; /* independent tables */
	s->provider_ttl = o->provider_ttl_ms ? o->provider_ttl_ms : DHT_PROVIDER_TTL_MS;
	s->record_ttl = o->record_ttl_ms ? o->record_ttl_ms : DHT_RECORD_TTL_MS;
	s->max_keys = o->max_provider_keys ? o->max_provider_keys : 65536;
	s->per_key = o->providers_per_key ? o->providers_per_key : 64;
	s->per_key = P2P_MIN(s->per_key, (size_t)UINT16_MAX);
	s->max_records = o->max_records ? o->max_records : 4096;
	s->mem_max = o->store_mem_max ? o->store_mem_max : 64 * MiB;
	return 0;
}

void dht__store_done(struct dht__store *s)
{
	for (size_t i = 0; i < s->prov.cap; i++)
		if (s->prov.slot[i])
			free(((struct dht__pkey *)s->prov.slot[i])->p);
	htab_done(&s->prov);
	htab_done(&s->recs);
}

static size_t soonest(const struct dht__pkey *k)
{
	size_t old = 0;

	for (size_t i = 1; i < k->n; i++)
		if (k->p[i].expires < k->p[old].expires)
			old = i;
	return old;
}

int dht__prov_add(struct dht__store *s, uint64_t now, const uint8_t key[static DHT_ID_LEN],
		  const struct dht_contact *c)
{
	struct dht__pkey *k = htab_get(&s->prov, key);
	size_t slot;

	if (!k) {
		size_t need = sizeof(*k) + 2 * sizeof(struct dht__provider);

		if (s->prov.n >= s->max_keys || s->mem + need > s->mem_max)
			return -ENOSPC;
		if (!(k = calloc(1, sizeof(*k))))
			return -ENOMEM;
		memcpy(k->key, key, DHT_ID_LEN);
		if (!(k->p = malloc(2 * sizeof(*k->p))) || htab_put(&s->prov, k) < 0) {
			free(k->p);
			free(k);
			return -ENOMEM;
		}
		k->cap = 2;
		s->mem += need;
	}
	/* The same node again refreshes its record (and may have moved). */
	for (slot = 0; slot < k->n; slot++)
		if (!memcmp(k->p[slot].c.id, c->id, DHT_ID_LEN))
			goto set;
	for (slot = 0; slot < k->n; slot++)
		if (k->p[slot].expires <= now)
			goto set;
	if (k->n == k->cap) {
		size_t ncap = P2P_MIN(2u * k->cap, s->per_key);
		size_t grow = (ncap - k->cap) * sizeof(*k->p);
		struct dht__provider *np;

		if (ncap == k->cap || s->mem + grow > s->mem_max) {
			/* Full: the record closest to expiry gives way. */
			slot = soonest(k);
			goto set;
		}
		if (!(np = realloc(k->p, ncap * sizeof(*np))))
			return -ENOMEM;
		k->p = np;
		k->cap = (uint16_t)ncap;
		s->mem += grow;
	}
	slot = k->n++;
	s->nprov++;
set:
	k->p[slot].c = *c;
	k->p[slot].expires = now + s->provider_ttl;
	return 0;
}

size_t dht__prov_get(const struct dht__store *s, uint64_t now, const uint8_t key[static DHT_ID_LEN],
		     size_t start, struct dht_contact *out, size_t max)
{
	const struct dht__pkey *k = htab_get(&s->prov, key);
	size_t n = 0;

	if (!k || !k->n)
		return 0;
	/* Rotate the starting point, so a key with more providers than one
	 * reply can carry spreads the load over all of them. */
	for (size_t j = 0; j < k->n && n < max; j++) {
		const struct dht__provider *p = &k->p[(start + j) % k->n];

		if (p->expires > now)
			out[n++] = p->c;
	}
	return n;
}

int dht__rec_put(struct dht__store *s, uint64_t now, const struct dht_record *r, uint64_t cas,
		 uint64_t *ret_seq)
{
	uint8_t target[DHT_ID_LEN];
	struct dht__stored *st;

	if (!dht_record_verify(r))
		return DHT_ERR_SIG;
	dht_record_target(r, target);
	if ((st = htab_get(&s->recs, target)) && st->expires > now) {
		/* Compare-and-swap: refuse if someone moved past @cas. A holder
		 * of an older record only missed updates (puts reach the k
		 * closest, not always all of them): the sequence rule below is
		 * all it needs. */
		if (cas && st->r.seq > cas) {
			*ret_seq = st->r.seq;
			return DHT_ERR_CAS;
		}
		if (r->seq < st->r.seq ||
		    (r->seq == st->r.seq && (r->value_len != st->r.value_len ||
					     memcmp(r->value, st->r.value, r->value_len)))) {
			*ret_seq = st->r.seq;
			return DHT_ERR_SEQ;
		}
	} else if (!st) {
		if (s->recs.n >= s->max_records || s->mem + sizeof(*st) > s->mem_max)
			return DHT_ERR_FULL;
		if (!(st = malloc(sizeof(*st))))
			return DHT_ERR_FULL;
		memcpy(st->target, target, DHT_ID_LEN);
		if (htab_put(&s->recs, st) < 0) {
			free(st);
			return DHT_ERR_FULL;
		}
		s->mem += sizeof(*st);
	}
	st->r = *r;
	st->expires = now + s->record_ttl;
	return 0;
}

const struct dht_record *dht__rec_get(const struct dht__store *s, uint64_t now,
				      const uint8_t target[static DHT_ID_LEN])
{
	const struct dht__stored *st = htab_get(&s->recs, target);

	return st && st->expires > now ? &st->r : NULL;
}

/* Drops what expired in the entry at slot @i; true if the entry went. */
static bool expire_prov(struct dht__store *s, uint64_t now, size_t i)
{
	struct dht__pkey *k = s->prov.slot[i];

	for (size_t j = 0; j < k->n;)
		if (k->p[j].expires <= now) {
			k->p[j] = k->p[--k->n];
			s->nprov--;
		} else {
			j++;
		}
	if (k->n)
		return false;
	s->mem -= sizeof(*k) + k->cap * sizeof(*k->p);
	free(k->p);
	free(k);
	htab_del_at(&s->prov, i);
	return true;
}

static bool expire_rec(struct dht__store *s, uint64_t now, size_t i)
{
	struct dht__stored *st = s->recs.slot[i];

	if (st->expires > now)
		return false;
	free(st);
	s->mem -= sizeof(*st);
	htab_del_at(&s->recs, i);
	return true;
}

static size_t sweep(struct dht__store *s, struct dht__htab *t, uint64_t now, size_t budget,
		    bool (*expire)(struct dht__store *, uint64_t, size_t))
{
	size_t visited = 0;

	while (t->cap && visited < budget) {
		size_t i = t->sweep;

		visited++;
		/* After a deletion another entry may have moved into slot i:
		 * look at it again (the budget still bounds the work). */
		if (t->slot[i] && expire(s, now, i))
			continue;
		t->sweep = (i + 1) & (t->cap - 1);
	}
	return visited;
}

size_t dht__store_expire(struct dht__store *s, uint64_t now, size_t budget)
{
	return sweep(s, &s->prov, now, budget, expire_prov) +
	       sweep(s, &s->recs, now, budget, expire_rec);
}

size_t dht__store_mem(const struct dht__store *s)
{
	return s->mem + (s->prov.cap + s->recs.cap) * sizeof(void *);
}

/* ---- signed records ---- */

/* Signed bytes start with this, so a record signature can never be replayed
 * as a signature over anything else made with the same key. */
static const char rec_domain[16] = "p2pfs-dht-put-1";
_Static_assert(DHT_RECORD_SIGNED_MAX ==
		   sizeof(rec_domain) + 1 + DHT_SALT_MAX + 8 + 2 + DHT_VALUE_MAX,
	       "the signed bytes fit");

void dht_record_target(const struct dht_record *r, uint8_t ret_target[static DHT_ID_LEN])
{
	crypto_hash_sha256_state st;

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, r->pk, 32);
	crypto_hash_sha256_update(&st, r->salt, P2P_MIN(r->salt_len, (uint8_t)DHT_SALT_MAX));
	crypto_hash_sha256_final(&st, ret_target);
}

/* domain (16, NUL included), u8 salt length, salt, u64 seq, u16 value length, value */
size_t dht_record_signed_bytes(const struct dht_record *r,
			       uint8_t buf[static DHT_RECORD_SIGNED_MAX])
{
	size_t salt_len = P2P_MIN(r->salt_len, (uint8_t)DHT_SALT_MAX);
	size_t value_len = P2P_MIN(r->value_len, (uint16_t)DHT_VALUE_MAX);
	size_t n = 0;

	memcpy(buf, rec_domain, sizeof(rec_domain));
	n += sizeof(rec_domain);
	buf[n++] = (uint8_t)salt_len;
	memcpy(buf + n, r->salt, salt_len);
	n += salt_len;
	for (int i = 0; i < 8; i++)
		buf[n++] = (uint8_t)(r->seq >> (56 - 8 * i));
	buf[n++] = (uint8_t)(value_len >> 8);
	buf[n++] = (uint8_t)value_len;
	memcpy(buf + n, r->value, value_len);
	return n + value_len;
}

void dht_record_sign(struct dht_record *r, const uint8_t sk[static 64])
{
	uint8_t buf[DHT_RECORD_SIGNED_MAX];
	size_t n = dht_record_signed_bytes(r, buf);

	crypto_sign_detached(r->sig, NULL, buf, n, sk);
}

bool dht_record_verify(const struct dht_record *r)
{
	uint8_t buf[DHT_RECORD_SIGNED_MAX];
	size_t n;

	if (r->salt_len > DHT_SALT_MAX || r->value_len > DHT_VALUE_MAX)
		return false;
	n = dht_record_signed_bytes(r, buf);
	return crypto_sign_verify_detached(r->sig, buf, n, r->pk) == 0;
}
