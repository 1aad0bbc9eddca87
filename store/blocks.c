/*
 * blocks.c - the block directory and the movement policy.
 *
 * Each stored block has one record: the tiers holding a copy and whether
 * the host copy is newer than the disk one. New blocks go to the host tier;
 * when it is full, the least recently used host blocks are written to disk
 * (if not there already) and dropped from the host (demotion). A read of a
 * block that is only on disk copies it back to the host when it fits
 * (promotion). With a disk tier, flush writes every dirty host block there,
 * so the disk holds every acknowledged block after kvt_store_flush.
 *
 * A block may also have a decoded copy on the GPU (gpu.c, reload.c); it is
 * always an extra copy, never the only one. Host copies read by a pending
 * GPU request (host_pins) are skipped by demotion, and a put or delete of
 * one completes that request first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define MAX_DEMOTIONS_PER_PUT 4096
#define FLUSH_BATCH 128 /* blocks per batched write to disk */

static struct kvt_hkey hkey(const struct kvt_block_key *k)
{
	return (struct kvt_hkey){k->cache_id, (uint64_t)k->layer << 32 | k->block};
}

static struct block_rec *rec_find(struct kvt_store *st,
				  const struct kvt_block_key *k, uint32_t *idx)
{
	uint32_t i;
	if (kvt_hmap_get(&st->dir, hkey(k), &i))
		return NULL;
	if (idx)
		*idx = i;
	return &st->blocks[i];
}

static int rec_new(struct kvt_store *st, const struct kvt_block_key *k,
		   uint32_t *out)
{
	uint32_t i;
	if (st->n_free_recs) {
		i = st->free_recs[--st->n_free_recs];
	} else {
		if (st->n_recs == st->cap_recs) {
			size_t cap = st->cap_recs ? st->cap_recs * 2 : 1024;
			struct block_rec *b = realloc(st->blocks, cap * sizeof *b);
			if (b)
				st->blocks = b;
			uint32_t *f = realloc(st->free_recs, cap * sizeof *f);
			if (f)
				st->free_recs = f;
			if (!b || !f)
				return -ENOMEM;
			st->cap_recs = cap;
		}
		i = (uint32_t)st->n_recs++;
	}
	int rc = kvt_hmap_put(&st->dir, hkey(k), i);
	if (rc) {
		st->free_recs[st->n_free_recs++] = i;
		return rc;
	}
	st->blocks[i] = (struct block_rec){.key = *k, .used = 1,
					   .lru_prev = KVT_NIL,
					   .lru_next = KVT_NIL,
					   .gpu_prev = KVT_NIL,
					   .gpu_next = KVT_NIL};
	*out = i;
	return 0;
}

struct block_rec *kvt_block_rec_locked(struct kvt_store *st,
				       const struct kvt_block_key *key,
				       uint32_t *idx)
{
	return rec_find(st, key, idx);
}

/* ---------------------------------------------------------------- accounting */

static void account(struct kvt_store *st, const struct block_rec *r, int sign)
{
	struct cache_rec *c = kvt_store_find_id_locked(st, r->key.cache_id);
	uint64_t raw = r->meta.raw_len, len = r->meta.len;
	if (sign > 0) {
		st->raw_bytes += raw, st->stored_bytes += len;
		if (c)
			c->n_blocks++, c->raw_bytes += raw, c->stored_bytes += len;
	} else {
		st->raw_bytes -= raw, st->stored_bytes -= len;
		if (c)
			c->n_blocks--, c->raw_bytes -= raw, c->stored_bytes -= len;
	}
}

/* ---------------------------------------------------------------- LRU */

static void lru_unlink(struct kvt_store *st, uint32_t i)
{
	struct block_rec *r = &st->blocks[i];
	if (r->lru_prev != KVT_NIL)
		st->blocks[r->lru_prev].lru_next = r->lru_next;
	else if (st->lru_head == i)
		st->lru_head = r->lru_next;
	if (r->lru_next != KVT_NIL)
		st->blocks[r->lru_next].lru_prev = r->lru_prev;
	else if (st->lru_tail == i)
		st->lru_tail = r->lru_prev;
	r->lru_prev = r->lru_next = KVT_NIL;
}

static void lru_push(struct kvt_store *st, uint32_t i)
{
	struct block_rec *r = &st->blocks[i];
	r->lru_prev = KVT_NIL;
	r->lru_next = st->lru_head;
	if (st->lru_head != KVT_NIL)
		st->blocks[st->lru_head].lru_prev = i;
	st->lru_head = i;
	if (st->lru_tail == KVT_NIL)
		st->lru_tail = i;
}

static void lru_touch(struct kvt_store *st, uint32_t i)
{
	if (st->lru_head == i)
		return;
	lru_unlink(st, i);
	lru_push(st, i);
}

/* ---------------------------------------------------------------- movement */

/* Copies the host version of record i to disk. */
static int write_back(struct kvt_store *st, uint32_t i, void *buf, size_t cap)
{
	struct block_rec *r = &st->blocks[i];
	struct kvt_tier *h = st->tier[KVT_TIER_HOST], *d = st->tier[KVT_TIER_DISK];
	int rc = h->ops->get(h, &r->key, buf, cap, NULL);
	if (rc == 0)
		rc = d->ops->put(d, &r->key, buf, &r->meta);
	if (rc == 0) {
		r->where |= BLOCK_ON_DISK;
		r->dirty = 0;
	}
	return rc;
}

/* Moves the least recently used host block that no GPU request reads to
 * disk. KVT_ENOSPACE when there is nothing to demote or nowhere to put it. */
static int demote_one(struct kvt_store *st)
{
	uint32_t i = st->lru_tail;
	struct kvt_tier *h = st->tier[KVT_TIER_HOST];
	while (i != KVT_NIL && st->blocks[i].host_pins)
		i = st->blocks[i].lru_prev;
	if (i == KVT_NIL || !st->tier[KVT_TIER_DISK])
		return KVT_ENOSPACE;
	struct block_rec *r = &st->blocks[i];
	if (r->dirty || !(r->where & BLOCK_ON_DISK)) {
		void *buf = malloc(r->meta.len ? r->meta.len : 1);
		if (!buf)
			return -ENOMEM;
		int rc = write_back(st, i, buf, r->meta.len);
		free(buf);
		if (rc)
			return rc;
	}
	h->ops->del(h, &r->key);
	r->where &= (uint8_t)~BLOCK_IN_HOST;
	lru_unlink(st, i);
	st->demotions++;
	return 0;
}

static int put_host(struct kvt_store *st, const struct kvt_block_key *key,
		    const void *data, const struct kvt_block_meta *meta)
{
	struct kvt_tier *h = st->tier[KVT_TIER_HOST];
	int rc = h->ops->put(h, key, data, meta);
	for (int n = 0; rc == KVT_ENOSPACE && n < MAX_DEMOTIONS_PER_PUT; n++) {
		if (demote_one(st))
			return KVT_ENOSPACE;
		rc = h->ops->put(h, key, data, meta);
	}
	return rc;
}

int kvt_block_put_locked(struct kvt_store *st, const struct kvt_block_key *key,
			 const void *data, const struct kvt_block_meta *meta)
{
	uint32_t i;
	struct block_rec *r = rec_find(st, key, &i);
	int fresh = !r, rc;
	if (r && r->host_pins) /* its host bytes are being read: finish that */
		kvt_gpu_settle_locked(st);
	if (fresh && (rc = rec_new(st, key, &i)))
		return rc;
	r = &st->blocks[i];
	/* The record is unlinked while demotions run so it is never chosen. */
	if (r->where & BLOCK_IN_HOST)
		lru_unlink(st, i);
	rc = put_host(st, key, data, meta);
	r = &st->blocks[i];
	if (rc == KVT_ENOSPACE && st->tier[KVT_TIER_DISK]) {
		struct kvt_tier *d = st->tier[KVT_TIER_DISK];
		rc = d->ops->put(d, key, data, meta);
		if (rc == 0 && (r->where & BLOCK_IN_HOST)) {
			st->tier[KVT_TIER_HOST]->ops->del(st->tier[KVT_TIER_HOST], key);
			r->where &= (uint8_t)~BLOCK_IN_HOST;
		}
		if (rc == 0) {
			if (!fresh) {
				account(st, r, -1);
				kvt_gpu_forget_locked(st, i);
			}
			r->meta = *meta;
			r->where |= BLOCK_ON_DISK;
			r->dirty = 0;
			account(st, r, +1);
			return 0;
		}
	}
	if (rc) {
		if (fresh) {
			kvt_hmap_del(&st->dir, hkey(key));
			r->used = 0;
			st->free_recs[st->n_free_recs++] = i;
		} else if (r->where & BLOCK_IN_HOST) {
			lru_push(st, i);
		}
		return rc;
	}
	if (!fresh) {
		account(st, r, -1);
		kvt_gpu_forget_locked(st, i);
	}
	r->meta = *meta;
	r->where |= BLOCK_IN_HOST;
	r->dirty = st->tier[KVT_TIER_DISK] != NULL;
	lru_push(st, i);
	account(st, r, +1);
	return 0;
}

static void promote(struct kvt_store *st, uint32_t i, const void *data)
{
	struct block_rec *r = &st->blocks[i];
	/* LRU: the block just read is the most recent; older host blocks make
	 * room. On failure the block simply stays on disk only. */
	if (!st->tier[KVT_TIER_HOST] || put_host(st, &r->key, data, &r->meta))
		return;
	r = &st->blocks[i];
	r->where |= BLOCK_IN_HOST;
	r->dirty = 0;
	lru_push(st, i);
	st->promotions++;
}

int kvt_block_get_locked(struct kvt_store *st, const struct kvt_block_key *key,
			 void *dst, size_t cap, struct kvt_block_meta *meta)
{
	uint32_t i;
	struct block_rec *r = rec_find(st, key, &i);
	if (!r)
		return KVT_ENOTFOUND;
	if (r->where & BLOCK_IN_HOST) {
		struct kvt_tier *h = st->tier[KVT_TIER_HOST];
		int rc = h->ops->get(h, key, dst, cap, meta);
		if (rc == 0)
			lru_touch(st, i);
		return rc;
	}
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	if (!d || !(r->where & BLOCK_ON_DISK))
		return KVT_ECORRUPT;
	int rc = d->ops->get(d, key, dst, cap, meta);
	if (rc == 0)
		promote(st, i, dst);
	return rc;
}

int kvt_block_peek_many_locked(struct kvt_store *st, size_t n,
			       const struct kvt_block_key *keys,
			       void *const *dsts, size_t cap)
{
	struct kvt_tier *h = st->tier[KVT_TIER_HOST], *d = st->tier[KVT_TIER_DISK];
	struct kvt_block_key dk[KVT_PEEK_BATCH];
	void *dd[KVT_PEEK_BATCH];
	size_t caps[KVT_PEEK_BATCH], m = 0;
	int res[KVT_PEEK_BATCH], rc = n > KVT_PEEK_BATCH ? -EINVAL : 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct block_rec *r = rec_find(st, &keys[i], NULL);
		if (!r)
			rc = KVT_ENOTFOUND;
		else if (r->where & BLOCK_IN_HOST)
			rc = h->ops->get(h, &keys[i], dsts[i], cap, NULL);
		else if (d && (r->where & BLOCK_ON_DISK))
			dk[m] = keys[i], dd[m] = dsts[i], caps[m++] = cap;
		else
			rc = KVT_ECORRUPT;
	}
	if (rc || !m)
		return rc;
	if (d->ops->get_many) /* the disk-only ones in one batch */
		return d->ops->get_many(d, m, dk, dd, caps, res);
	for (size_t j = 0; rc == 0 && j < m; j++)
		rc = d->ops->get(d, &dk[j], dd[j], cap, NULL);
	return rc;
}

int kvt_block_stat_locked(struct kvt_store *st, const struct kvt_block_key *key,
			  struct kvt_block_meta *meta)
{
	struct block_rec *r = rec_find(st, key, NULL);
	if (!r)
		return KVT_ENOTFOUND;
	*meta = r->meta;
	return 0;
}

int kvt_block_del_locked(struct kvt_store *st, const struct kvt_block_key *key)
{
	uint32_t i;
	struct block_rec *r = rec_find(st, key, &i);
	if (!r)
		return KVT_ENOTFOUND;
	if (r->host_pins)
		kvt_gpu_settle_locked(st);
	kvt_gpu_forget_locked(st, i);
	for (int t = 0; t < KVT_TIER_COUNT; t++)
		if ((r->where & (1u << t)) && st->tier[t])
			st->tier[t]->ops->del(st->tier[t], key);
	if (r->where & BLOCK_IN_HOST)
		lru_unlink(st, i);
	account(st, r, -1);
	kvt_hmap_del(&st->dir, hkey(key));
	r->used = 0;
	st->free_recs[st->n_free_recs++] = i;
	return 0;
}

int kvt_block_adopt_locked(struct kvt_store *st, const struct kvt_block_key *key,
			   const struct kvt_block_meta *meta, unsigned where)
{
	uint32_t i;
	int rc = rec_new(st, key, &i);
	if (rc)
		return rc;
	st->blocks[i].meta = *meta;
	st->blocks[i].where = (uint8_t)where;
	account(st, &st->blocks[i], +1);
	return 0;
}

/* Writes up to n dirty host records (indices idx) to disk in one batch,
 * straight from the host arenas. */
static int flush_batch(struct kvt_store *st, const uint32_t *idx, size_t n)
{
	struct kvt_tier *h = st->tier[KVT_TIER_HOST], *d = st->tier[KVT_TIER_DISK];
	struct kvt_block_key keys[FLUSH_BATCH] = {{0}};
	struct kvt_block_meta metas[FLUSH_BATCH] = {{0}};
	const void *datas[FLUSH_BATCH] = {0};
	int res[FLUSH_BATCH];
	for (size_t j = 0; j < n; j++) {
		struct block_rec *r = &st->blocks[idx[j]];
		struct kvt_block_loc loc;
		int rc = h->ops->locate(h, &r->key, &loc);
		if (rc)
			return rc;
		keys[j] = r->key;
		metas[j] = r->meta;
		datas[j] = loc.ptr;
	}
	int rc = d->ops->put_many
			 ? d->ops->put_many(d, n, keys, datas, metas, res)
			 : 0;
	for (size_t j = 0; j < n; j++) {
		if (!d->ops->put_many)
			res[j] = d->ops->put(d, &keys[j], datas[j], &metas[j]);
		if (res[j] == 0) {
			st->blocks[idx[j]].where |= BLOCK_ON_DISK;
			st->blocks[idx[j]].dirty = 0;
		} else if (!rc) {
			rc = res[j];
		}
	}
	return rc;
}

int kvt_blocks_flush_locked(struct kvt_store *st)
{
	if (!st->tier[KVT_TIER_DISK])
		return 0;
	uint32_t idx[FLUSH_BATCH];
	size_t n = 0;
	int rc = 0;
	for (size_t i = 0; i < st->n_recs && rc == 0; i++) {
		struct block_rec *r = &st->blocks[i];
		if (!r->used || !r->dirty || !(r->where & BLOCK_IN_HOST))
			continue;
		idx[n++] = (uint32_t)i;
		if (n == FLUSH_BATCH) {
			rc = flush_batch(st, idx, n);
			n = 0;
		}
	}
	return rc ? rc : n ? flush_batch(st, idx, n) : 0;
}

int kvt_block_locate_locked(struct kvt_store *st,
			    const struct kvt_block_key *key,
			    struct kvt_block_loc *loc,
			    struct kvt_block_meta *meta)
{
	uint32_t i;
	struct block_rec *r = rec_find(st, key, &i);
	if (!r)
		return KVT_ENOTFOUND;
	struct kvt_tier *h = st->tier[KVT_TIER_HOST];
	if (!(r->where & BLOCK_IN_HOST) || !h->ops->locate)
		return -ENOTSUP;
	int rc = h->ops->locate(h, key, loc);
	if (rc == 0) {
		*meta = r->meta;
		lru_touch(st, i);
	}
	return rc;
}

void kvt_blocks_free(struct kvt_store *st)
{
	kvt_hmap_free(&st->dir);
	free(st->blocks);
	free(st->free_recs);
	st->blocks = NULL;
	st->free_recs = NULL;
}

/* ---------------------------------------------------------------- prefetch */

#define PREFETCH_BATCH 128

/* Reads the disk-only records idx[0..n) with one batched read and copies
 * them to the host tier. */
static int promote_batch(struct kvt_store *st, const uint32_t *idx, size_t n)
{
	struct kvt_tier *d = st->tier[KVT_TIER_DISK];
	struct kvt_block_key keys[PREFETCH_BATCH];
	void *dsts[PREFETCH_BATCH] = {0};
	size_t caps[PREFETCH_BATCH];
	int res[PREFETCH_BATCH], rc = 0;
	for (size_t j = 0; j < n; j++)
		res[j] = -EIO;
	for (size_t j = 0; j < n && rc == 0; j++) {
		keys[j] = st->blocks[idx[j]].key;
		caps[j] = st->blocks[idx[j]].meta.len;
		if (!(dsts[j] = malloc(caps[j] ? caps[j] : 1)))
			rc = -ENOMEM;
	}
	if (rc == 0 && d->ops->get_many)
		rc = d->ops->get_many(d, n, keys, dsts, caps, res);
	else
		for (size_t j = 0; j < n && rc == 0; j++)
			rc = res[j] = d->ops->get(d, &keys[j], dsts[j], caps[j], NULL);
	for (size_t j = 0; j < n; j++)
		if (res[j] == 0)
			promote(st, idx[j], dsts[j]);
	for (size_t j = 0; j < n; j++)
		free(dsts[j]);
	return rc;
}

int kvt_blocks_prefetch_locked(struct kvt_store *st,
			       const struct kvt_block_key *keys, size_t n,
			       uint8_t *where)
{
	uint32_t idx[PREFETCH_BATCH];
	size_t m = 0;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint32_t r;
		if (!rec_find(st, &keys[i], &r))
			return KVT_ENOTFOUND;
		if (st->blocks[r].where & BLOCK_IN_HOST) {
			lru_touch(st, r);
			continue;
		}
		if (!st->tier[KVT_TIER_DISK] || !st->tier[KVT_TIER_HOST])
			continue;
		idx[m++] = r;
		if (m == PREFETCH_BATCH) {
			rc = promote_batch(st, idx, m);
			m = 0;
		}
	}
	if (rc == 0 && m)
		rc = promote_batch(st, idx, m);
	for (size_t i = 0; where && rc == 0 && i < n; i++) {
		struct block_rec *b = rec_find(st, &keys[i], NULL);
		where[i] = b->where & BLOCK_IN_HOST ? KVT_TIER_HOST : KVT_TIER_DISK;
	}
	return rc;
}
