/*
 * gpu.c - the store's directory of the GPU tier.
 *
 * The GPU tier holds decoded raw copies of blocks that kvt_cache_reload
 * brought there; the host or disk copy stays the block's real home, so a
 * GPU copy can be dropped at any time nobody uses it. A reload pins the
 * copies it hands out until kvt_reload_release; eviction takes the least
 * recently reloaded unpinned copy. A copy whose block is replaced (a raw
 * block re-encoded cold) or deleted while pinned becomes an orphan: its
 * bytes stay where the reload's caller reads them until the last pin goes.
 *
 * The GPU tier waits for its pending request inside every operation and
 * would then lose the request's per-item results, so everything here that
 * touches the tier settles that request first.
 */
#include <errno.h>
#include <stdlib.h>

#include "gpu_tier.h"
#include "kvtier/kvtier.h"
#include "store_internal.h"

static int key_eq(const struct kvt_block_key *a, const struct kvt_block_key *b)
{
	return a->cache_id == b->cache_id && a->layer == b->layer &&
	       a->block == b->block;
}

/* ---------------------------------------------------------------- LRU */

static void gpu_unlink(struct kvt_store *st, uint32_t i)
{
	struct block_rec *r = &st->blocks[i];
	if (r->gpu_prev != KVT_NIL)
		st->blocks[r->gpu_prev].gpu_next = r->gpu_next;
	else if (st->gpu_head == i)
		st->gpu_head = r->gpu_next;
	if (r->gpu_next != KVT_NIL)
		st->blocks[r->gpu_next].gpu_prev = r->gpu_prev;
	else if (st->gpu_tail == i)
		st->gpu_tail = r->gpu_prev;
	r->gpu_prev = r->gpu_next = KVT_NIL;
}

static void gpu_push(struct kvt_store *st, uint32_t i)
{
	struct block_rec *r = &st->blocks[i];
	r->gpu_prev = KVT_NIL;
	r->gpu_next = st->gpu_head;
	if (st->gpu_head != KVT_NIL)
		st->blocks[st->gpu_head].gpu_prev = i;
	st->gpu_head = i;
	if (st->gpu_tail == KVT_NIL)
		st->gpu_tail = i;
}

/* ---------------------------------------------------------------- the request */

/* A failed item: the tier has already removed its key. */
static void item_failed(struct kvt_store *st, struct kvt_reload *r,
			size_t item, int err)
{
	struct reload_item *it = &r->items[item];
	uint32_t i;
	struct block_rec *b = kvt_block_rec_locked(st, &it->key, &i);
	if (b && (b->where & BLOCK_ON_GPU) && b->gpu_gen == it->gen) {
		gpu_unlink(st, i);
		b->where &= (uint8_t)~BLOCK_ON_GPU;
		b->gpu_pins = 0;
	}
	it->gen = 0;
	r->out[item].status = err;
	r->out[item].addr = NULL;
	if (!r->status)
		r->status = err;
}

void kvt_gpu_settle_locked(struct kvt_store *st)
{
	struct kvt_reload *r = st->gpu_inflight;
	if (!r)
		return;
	st->gpu_inflight = NULL;
	r->pending = 0;
	int rc = kvt_gpu_tier_reload_wait(st->tier[KVT_TIER_GPU], r->gpu_res);
	for (uint32_t j = 0; j < r->n_gpu; j++) {
		struct reload_item *it = &r->items[r->gpu_item[j]];
		struct block_rec *b = kvt_block_rec_locked(st, &it->key, NULL);
		if (b && b->host_pins)
			b->host_pins--;
		int res = r->gpu_res[j];
		if (res == 0 && rc == KVT_ECUDA)
			res = KVT_ECUDA;
		if (res)
			item_failed(st, r, r->gpu_item[j], res);
	}
}

/* ---------------------------------------------------------------- copies */

static void gpu_del(struct kvt_store *st, const struct kvt_block_key *key)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	kvt_gpu_settle_locked(st);
	g->ops->del(g, key);
}

static int orphan_add(struct kvt_store *st, const struct block_rec *b)
{
	if (st->n_gpu_orphans == st->cap_gpu_orphans) {
		size_t cap = st->cap_gpu_orphans ? 2 * st->cap_gpu_orphans : 16;
		struct gpu_orphan *o = realloc(st->gpu_orphans, cap * sizeof *o);
		if (!o)
			return -ENOMEM;
		st->gpu_orphans = o;
		st->cap_gpu_orphans = cap;
	}
	st->gpu_orphans[st->n_gpu_orphans++] =
		(struct gpu_orphan){b->key, b->gpu_gen, b->gpu_pins};
	return 0;
}

void kvt_gpu_forget_locked(struct kvt_store *st, uint32_t i)
{
	struct block_rec *b = &st->blocks[i];
	if (!(b->where & BLOCK_ON_GPU))
		return;
	gpu_unlink(st, i);
	b->where &= (uint8_t)~BLOCK_ON_GPU;
	if (b->gpu_window && b->gpu_pins)
		b->gpu_pins--;
	b->gpu_window = 0;
	/* Out of memory for the orphan: the pinned copy stays in the tier
	 * untracked (its reader is safe; its room is lost until close). */
	if (b->gpu_pins == 0)
		gpu_del(st, &b->key);
	else
		(void)orphan_add(st, b);
	b->gpu_pins = 0;
}

uint32_t kvt_gpu_adopt_locked(struct kvt_store *st, uint32_t i)
{
	struct block_rec *b = &st->blocks[i];
	if (++st->gpu_gen == 0)
		st->gpu_gen = 1;
	b->where |= BLOCK_ON_GPU;
	b->gpu_gen = st->gpu_gen;
	b->gpu_pins = 1;
	gpu_push(st, i);
	return b->gpu_gen;
}

void kvt_gpu_pin_locked(struct kvt_store *st, uint32_t i)
{
	st->blocks[i].gpu_pins++;
	gpu_unlink(st, i);
	gpu_push(st, i);
}

void kvt_gpu_unpin_locked(struct kvt_store *st, const struct kvt_block_key *key,
			  uint32_t gen)
{
	struct block_rec *b = kvt_block_rec_locked(st, key, NULL);
	if (b && (b->where & BLOCK_ON_GPU) && b->gpu_gen == gen) {
		if (b->gpu_pins)
			b->gpu_pins--;
		return;
	}
	for (size_t j = 0; j < st->n_gpu_orphans; j++) {
		struct gpu_orphan *o = &st->gpu_orphans[j];
		if (o->gen != gen || !key_eq(&o->key, key))
			continue;
		if (--o->pins == 0) {
			gpu_del(st, key);
			*o = st->gpu_orphans[--st->n_gpu_orphans];
		}
		return;
	}
}

int kvt_gpu_evict_one_locked(struct kvt_store *st)
{
	uint32_t i = st->gpu_tail;
	while (i != KVT_NIL && st->blocks[i].gpu_pins)
		i = st->blocks[i].gpu_prev;
	if (i == KVT_NIL)
		return KVT_ENOSPACE;
	gpu_unlink(st, i);
	st->blocks[i].where &= (uint8_t)~BLOCK_ON_GPU;
	gpu_del(st, &st->blocks[i].key);
	return 0;
}

int kvt_gpu_make_room_locked(struct kvt_store *st, uint64_t need)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	struct kvt_tier_usage u;
	kvt_gpu_settle_locked(st);
	for (;;) {
		int rc = g->ops->usage(g, &u);
		if (rc)
			return rc;
		if (u.used_bytes + need <= u.capacity)
			return 0;
		if (kvt_gpu_evict_one_locked(st))
			return KVT_ENOSPACE;
	}
}

void kvt_gpu_window_add_locked(struct kvt_store *st,
			       const struct kvt_block_key *key, const void *data,
			       const struct kvt_block_meta *meta)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	struct kvt_block_meta m;
	uint32_t i;
	if (!g || !st->cfg.gpu_recent)
		return;
	struct block_rec *b = kvt_block_rec_locked(st, key, &i);
	const uint64_t slot = ((uint64_t)meta->len + 255) / 256 * 256;
	if (!b || (b->where & BLOCK_ON_GPU) || kvt_gpu_make_room_locked(st, slot))
		return;
	/* An orphan holds the key: its reader must keep its bytes. */
	if (g->ops->stat(g, key, &m) != KVT_ENOTFOUND || g->ops->put(g, key, data, meta))
		return;
	kvt_gpu_adopt_locked(st, i);
	st->blocks[i].gpu_window = 1;
}

void kvt_gpu_window_leave_locked(struct kvt_store *st,
				 const struct kvt_block_key *key)
{
	struct block_rec *b = kvt_block_rec_locked(st, key, NULL);
	if (!b || !b->gpu_window)
		return;
	b->gpu_window = 0;
	if (b->gpu_pins)
		b->gpu_pins--;
}

void kvt_gpu_dir_free(struct kvt_store *st)
{
	free(st->gpu_orphans);
	st->gpu_orphans = NULL;
	st->n_gpu_orphans = st->cap_gpu_orphans = 0;
}
