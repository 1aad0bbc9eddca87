/*
 * append_device.c - kvt_cache_append_device: K/V produced on the GPU.
 *
 * One call is three phases, the store untouched until the third:
 *  1. plan: which tokens complete the host tail, which full blocks come
 *     from the device, which of them are cold at the end of the call, and
 *     which window blocks of earlier calls leave the window now with a
 *     pinned raw GPU copy to quantize from;
 *  2. GPU: the KIVI-cold blocks in chunks that fit the GPU tier (halved
 *     until one does): slots reserved, one gather assembles the chunk's
 *     blocks there, one kvt_gpu_tier_spill quantizes them (the first chunk
 *     also the leaving window blocks) and gathers the encoded bytes out to
 *     pinned staging, slots dropped; then slots for the new window blocks
 *     (when they fit) and one gather that assembles them there and copies
 *     out, to staging, the raw host twins and the tail tokens; one sync;
 *  3. CPU: the blocks are stored from staging as kvt_cache_append stores
 *     them (checksums of the stored bytes, host tier, demotion), the tail
 *     tokens go through the host tail; a failure rolls back as append does.
 * A failure in 1 or 2 drops the reserved slots and changes nothing else
 * (unpinned GPU copies evicted for room excepted).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "gpu_tier.h"
#include "kvt_kernels.h"
#include "store_internal.h"

#define STAGE_ALIGN 256u

enum { NEW_SPILL = 1, NEW_WINDOW = 2, NEW_ADOPTED = 4 };

struct dev_plan {
	const uint8_t *k, *v;   /* the caller's device buffers */
	uint32_t n;             /* tokens of the call */
	uint32_t head;          /* tokens completing the host tail */
	uint32_t nfull;         /* full blocks from the device */
	uint32_t rest;          /* tokens of the new tail */
	uint64_t first_block;   /* the tail block before the call */
	uint64_t first_full;    /* block index of the first full device block */
	uint64_t win;           /* blocks below it leave the window */
	size_t bb, row;         /* raw block bytes, bytes of one token row */
	int kivi;               /* KIVI cold codec: spill on the GPU */
	struct kvt_kivi_geom geom;
	size_t enc, enc_slot;   /* KIVI block bytes, its staging stride */
	uint8_t *flags;         /* nfull NEW_* bits */
	void **slot;            /* nfull GPU slot addresses (or NULL) */
	uint32_t n_old;         /* earlier window blocks spilled from the GPU */
	uint32_t n_spill;       /* n_old + new spilled blocks */
	struct kvt_block_key *spill_keys; /* n_spill: old ones, then new */
	uint32_t *spill_of;     /* nfull: index in spill_keys of new block j */
	uint32_t *spill_js;     /* new spilled block i -> its j */
	uint32_t *raw_of;       /* nfull: raw twin index in staging */
	uint32_t n_raw, n_win;  /* raw twins, window blocks wanting a slot */
	uint32_t *win_js;       /* window block i -> its j */
	size_t off_raw, off_enc, off_head, off_rest, stage_len;
};

static size_t align_up(size_t n)
{
	return (n + STAGE_ALIGN - 1) / STAGE_ALIGN * STAGE_ALIGN;
}

static struct kvt_block_key key_of(const struct cache_rec *c, uint32_t layer,
				   uint64_t b)
{
	return (struct kvt_block_key){c->id, layer, (uint32_t)b};
}

void kvt_append_device_free(struct kvt_store *st)
{
	kvt_gpu_batch_free(st->dev_batch);
	kvt_gpu_batch_free(st->dev_chunk);
	kvt_gpu_host_free(st->dev_stage);
	st->dev_batch = st->dev_chunk = NULL;
	st->dev_stage = NULL;
	st->dev_batch_cap = st->dev_chunk_cap = 0;
	st->dev_stage_len = 0;
}

static void plan_free(struct dev_plan *p)
{
	free(p->flags);
	free(p->slot);
	free(p->spill_keys);
	free(p->spill_of);
	free(p->spill_js);
	free(p->raw_of);
	free(p->win_js);
}

/* ---------------------------------------------------------------- plan */

static void plan_shape(const struct cache_rec *c, uint32_t layer,
		       struct dev_plan *p)
{
	const struct kvt_shape *s = &c->cfg.shape;
	const struct layer_state *ls = &c->layers[layer];
	const uint32_t bt = s->block_tokens, t0 = ls->tail_tokens;
	const uint64_t end = ls->n_tokens + p->n, recent = c->cfg.recent_tokens;
	struct kvt_codec_params q;
	p->head = t0 ? (bt - t0 < p->n ? bt - t0 : p->n) : 0;
	p->nfull = (p->n - p->head) / bt;
	p->rest = p->n - p->head - p->nfull * bt;
	p->first_block = ls->n_tokens / bt;
	p->first_full = (ls->n_tokens + p->head) / bt;
	p->win = end > recent ? (end - recent) / bt : 0;
	p->bb = kvt_block_bytes(s);
	p->row = (size_t)s->head_dim * kvt_dtype_size(s->dtype);
	kvt_cache_block_codec(&c->cfg, &q);
	p->kivi = q.id == KVT_CODEC_KIVI;
	p->geom = (struct kvt_kivi_geom){s->n_kv_heads, bt, s->head_dim, s->dtype,
					 q.bits, q.group, 0};
}

/* A window block of an earlier append that leaves the window now and has
 * a raw GPU copy to quantize from. */
static int old_spillable(struct kvt_store *st, const struct kvt_block_key *k,
			 size_t bb)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	struct block_rec *r = kvt_block_rec_locked(st, k, NULL);
	struct kvt_block_meta m;
	/* Pinned (by the window, or a reload): never evicted meanwhile. */
	return r && (r->where & BLOCK_ON_GPU) && r->gpu_pins &&
	       r->meta.codec == KVT_CODEC_RAW &&
	       g->ops->stat(g, k, &m) == 0 && m.codec == KVT_CODEC_RAW &&
	       m.len == bb;
}

static int plan_alloc(struct dev_plan *p, size_t n_max)
{
	const size_t m = p->nfull + 1;
	p->flags = calloc(m, 1);
	p->slot = calloc(m, sizeof *p->slot);
	p->spill_of = calloc(m, sizeof *p->spill_of);
	p->spill_js = calloc(m, sizeof *p->spill_js);
	p->raw_of = calloc(m, sizeof *p->raw_of);
	p->win_js = calloc(m, sizeof *p->win_js);
	p->spill_keys = malloc((n_max + 1) * sizeof *p->spill_keys);
	return p->flags && p->slot && p->spill_of && p->spill_js && p->raw_of &&
		       p->win_js && p->spill_keys
		       ? 0
		       : -ENOMEM;
}

static int plan_blocks(struct kvt_store *st, const struct cache_rec *c,
		       uint32_t layer, struct dev_plan *p)
{
	const uint64_t n_cold = c->layers[layer].n_cold;
	const uint64_t old_end = p->win < p->first_block ? p->win : p->first_block;
	int rc = plan_alloc(p, p->nfull + (old_end > n_cold ? old_end - n_cold : 0));
	if (rc)
		return rc;
	for (uint64_t b = n_cold; p->kivi && b < old_end; b++) {
		struct kvt_block_key k = key_of(c, layer, b);
		if (old_spillable(st, &k, p->bb))
			p->spill_keys[p->n_old++] = k;
	}
	p->n_spill = p->n_old;
	for (uint32_t j = 0; j < p->nfull; j++) {
		uint64_t b = p->first_full + j;
		if (p->kivi && b < p->win) {
			p->flags[j] = NEW_SPILL;
			p->spill_js[p->n_spill - p->n_old] = j;
			p->spill_of[j] = p->n_spill;
			p->spill_keys[p->n_spill++] = key_of(c, layer, b);
			continue;
		}
		p->raw_of[j] = p->n_raw++;
		if (b >= p->win && st->cfg.gpu_recent) {
			p->flags[j] = NEW_WINDOW;
			p->win_js[p->n_win++] = j;
		}
	}
	return 0;
}

static void plan_stage(const struct kvt_shape *s, struct dev_plan *p)
{
	if (p->kivi)
		kvt_kivi_geom_sizes(&p->geom, NULL, NULL, &p->enc);
	p->enc_slot = align_up(p->enc);
	p->off_raw = 0;
	p->off_enc = align_up(p->n_raw * p->bb);
	p->off_head = p->off_enc + p->n_spill * p->enc_slot;
	p->off_rest = align_up(p->off_head + 2 * (size_t)s->n_kv_heads * p->head * p->row);
	p->stage_len = p->off_rest + 2 * (size_t)s->n_kv_heads * p->rest * p->row + 1;
}

/* ---------------------------------------------------------------- GPU slots */

/* Drops the slots of new blocks js[0..n) (those not adopted). */
static void slots_drop(struct kvt_store *st, const struct cache_rec *c,
		       uint32_t layer, struct dev_plan *p, const uint32_t *js,
		       uint32_t n)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	for (uint32_t i = 0; i < n; i++) {
		uint32_t j = js[i];
		if (!p->slot[j] || (p->flags[j] & NEW_ADOPTED))
			continue;
		struct kvt_block_key k = key_of(c, layer, p->first_full + j);
		g->ops->del(g, &k);
		p->slot[j] = NULL;
	}
}

/* Slots for new blocks js[0..n), all or none: KVT_ENOSPACE when they do
 * not fit beside the pinned copies. */
static int slots_alloc(struct kvt_store *st, const struct cache_rec *c,
		       uint32_t layer, struct dev_plan *p, const uint32_t *js,
		       uint32_t n)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	struct kvt_tier_usage u;
	struct kvt_block_meta m = {.len = (uint32_t)p->bb, .raw_len = (uint32_t)p->bb,
				   .codec = KVT_CODEC_RAW,
				   .n_tokens = (uint16_t)c->cfg.shape.block_tokens};
	if (n == 0)
		return 0;
	struct kvt_block_key *keys = malloc(n * sizeof *keys);
	struct kvt_block_meta *metas = malloc(n * sizeof *metas);
	void **addrs = malloc(n * sizeof *addrs);
	int rc = keys && metas && addrs ? 0 : -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		keys[i] = key_of(c, layer, p->first_full + js[i]);
		metas[i] = m;
	}
	const uint64_t need = (uint64_t)n * align_up(p->bb);
	if (rc == 0 && (rc = g->ops->usage(g, &u)) == 0 && need > u.capacity)
		rc = KVT_ENOSPACE; /* evicting would not help: keep the copies */
	if (rc == 0)
		rc = kvt_gpu_make_room_locked(st, need);
	if (rc == 0)
		rc = kvt_gpu_tier_alloc(g, n, keys, metas, addrs);
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		p->slot[js[i]] = addrs[i];
	free(keys);
	free(metas);
	free(addrs);
	return rc;
}

/* ---------------------------------------------------------------- GPU work */

static int batch_ready(struct kvt_gpu_batch **b, uint32_t *cap, uint32_t items)
{
	if (items <= *cap)
		return 0;
	uint32_t n = items > 2 * *cap ? items : 2 * *cap;
	struct kvt_gpu_batch *nb;
	int rc = kvt_gpu_batch_create(n, &nb);
	if (rc)
		return rc;
	kvt_gpu_batch_free(*b);
	*b = nb;
	*cap = n;
	return 0;
}

static int stage_ready(struct kvt_store *st, const struct kvt_shape *s,
		       const struct dev_plan *p)
{
	const uint32_t per_block = 2 * s->n_kv_heads;
	int rc = batch_ready(&st->dev_batch, &st->dev_batch_cap,
			     per_block * (2 * p->n_raw + 2));
	if (rc == 0)
		rc = batch_ready(&st->dev_chunk, &st->dev_chunk_cap,
				 per_block * (p->n_spill - p->n_old + 1));
	if (rc || p->stage_len <= st->dev_stage_len)
		return rc;
	size_t cap = p->stage_len > 2 * st->dev_stage_len ? p->stage_len
							  : 2 * st->dev_stage_len;
	void *h;
	if ((rc = kvt_gpu_host_alloc(cap, &h)))
		return rc;
	kvt_gpu_host_free(st->dev_stage);
	st->dev_stage = h;
	st->dev_stage_len = cap;
	return 0;
}

static void item(struct kvt_gpu_item *it, uint32_t *ni, const uint8_t *src,
		 uint8_t *dst, size_t len)
{
	if (len)
		it[(*ni)++] = (struct kvt_gpu_item){src, dst, len};
}

/* Tokens [from, from + cnt) of every head of K and V into a staging area
 * laid out [heads][cnt][dim] for K, then the same for V. */
static void items_tokens(const struct kvt_shape *s, const struct dev_plan *p,
			 struct kvt_gpu_item *it, uint32_t *ni, uint32_t from,
			 uint32_t cnt, uint8_t *dst)
{
	const size_t len = cnt * p->row, vhalf = s->n_kv_heads * len;
	for (size_t h = 0; cnt && h < s->n_kv_heads; h++) {
		size_t src = (h * p->n + from) * p->row;
		item(it, ni, p->k + src, dst + h * len, len);
		item(it, ni, p->v + src, dst + vhalf + h * len, len);
	}
}

/* Full block j: its rows into dst, laid out as a raw block. */
static void items_block(const struct kvt_shape *s, const struct dev_plan *p,
			struct kvt_gpu_item *it, uint32_t *ni, uint32_t j,
			uint8_t *dst)
{
	const size_t len = s->block_tokens * p->row;
	const uint32_t from = p->head + j * s->block_tokens;
	for (size_t h = 0; h < s->n_kv_heads; h++) {
		size_t src = (h * p->n + from) * p->row;
		item(it, ni, p->k + src, dst + h * len, len);
		item(it, ni, p->v + src, dst + p->bb / 2 + h * len, len);
	}
}

/* New spilled blocks [i0, i0 + m) (the first chunk: with the leaving
 * window blocks): assembled in their slots, quantized, copied out. */
static int spill_chunk(struct kvt_store *st, const struct kvt_shape *s,
		       struct dev_plan *p, uint32_t i0, uint32_t m,
		       struct kvt_stream *stream)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	struct kvt_gpu_item *it = kvt_gpu_batch_items(st->dev_chunk);
	const uint32_t first = i0 ? p->n_old + i0 : 0, end = p->n_old + i0 + m;
	uint32_t ni = 0;
	int rc = 0;
	for (uint32_t i = i0; i < i0 + m; i++)
		items_block(s, p, it, &ni, p->spill_js[i], p->slot[p->spill_js[i]]);
	if (ni)
		rc = kvt_gpu_gather(st->dev_chunk, ni, stream);
	/* NULL is the legacy stream here but the tier's own in the spill. */
	if (rc == 0 && ni && !stream)
		rc = kvt_stream_sync(NULL);
	void **dsts = rc ? NULL : malloc((end - first) * sizeof *dsts);
	if (rc == 0 && !dsts)
		rc = -ENOMEM;
	for (uint32_t i = first; rc == 0 && i < end; i++)
		dsts[i - first] = st->dev_stage + p->off_enc + i * p->enc_slot;
	if (rc == 0)
		rc = kvt_gpu_tier_spill(g, end - first, p->spill_keys + first, dsts,
					&p->geom, stream);
	free(dsts);
	if (rc == 0)
		rc = kvt_gpu_tier_reload_wait(g, NULL);
	if (rc)
		kvt_stream_sync(stream);
	return rc;
}

/* Every spilled block, in chunks that fit the GPU tier (halved until
 * one does; KVT_ENOSPACE when not even one block fits). */
static int spill_all(struct kvt_store *st, const struct cache_rec *c,
		     uint32_t layer, struct dev_plan *p, struct kvt_stream *stream)
{
	const uint32_t n_new = p->n_spill - p->n_old;
	uint32_t done = 0, k = n_new;
	if (p->n_spill == 0)
		return 0;
	do {
		uint32_t m = k < n_new - done ? k : n_new - done;
		int rc = slots_alloc(st, c, layer, p, p->spill_js + done, m);
		if (rc == KVT_ENOSPACE && m > 1) {
			k = m / 2;
			continue;
		}
		if (rc == 0)
			rc = spill_chunk(st, &c->cfg.shape, p, done, m, stream);
		slots_drop(st, c, layer, p, p->spill_js + done, m);
		if (rc)
			return rc;
		done += m;
	} while (done < n_new);
	return 0;
}

/* Window slots (when they fit), then one gather: the window blocks into
 * them, the raw host twins and the tail tokens into staging. */
static int gather_rest(struct kvt_store *st, const struct cache_rec *c,
		       uint32_t layer, struct dev_plan *p, struct kvt_stream *stream)
{
	const struct kvt_shape *s = &c->cfg.shape;
	struct kvt_gpu_item *it = kvt_gpu_batch_items(st->dev_batch);
	uint8_t *dev;
	uint32_t ni = 0;
	int rc = kvt_gpu_host_device_ptr(st->dev_stage, (void **)&dev);
	if (rc)
		return rc;
	if (slots_alloc(st, c, layer, p, p->win_js, p->n_win))
		p->n_win = 0; /* no room: host copies only, as kvt_cache_append */
	for (uint32_t j = 0; j < p->nfull; j++) {
		if (p->slot[j])
			items_block(s, p, it, &ni, j, p->slot[j]);
		if (!(p->flags[j] & NEW_SPILL))
			items_block(s, p, it, &ni, j, dev + p->off_raw + p->raw_of[j] * p->bb);
	}
	items_tokens(s, p, it, &ni, 0, p->head, dev + p->off_head);
	items_tokens(s, p, it, &ni, p->head + p->nfull * s->block_tokens, p->rest,
		     dev + p->off_rest);
	if (ni)
		rc = kvt_gpu_gather(st->dev_batch, ni, stream);
	return rc ? rc : kvt_stream_sync(stream);
}

static int gpu_run(struct kvt_store *st, const struct cache_rec *c,
		   uint32_t layer, struct dev_plan *p, struct kvt_stream *stream)
{
	int rc = stage_ready(st, &c->cfg.shape, p);
	if (rc == 0)
		rc = spill_all(st, c, layer, p, stream);
	return rc ? rc : gather_rest(st, c, layer, p, stream);
}

/* ---------------------------------------------------------------- CPU commit */

static int put_encoded(struct kvt_store *st, const struct kvt_block_key *k,
		       const struct dev_plan *p, uint32_t spill_idx,
		       uint16_t n_tokens)
{
	const uint8_t *enc = st->dev_stage + p->off_enc + spill_idx * p->enc_slot;
	struct kvt_block_meta m = {.len = (uint32_t)p->enc, .raw_len = (uint32_t)p->bb,
				   .codec = KVT_CODEC_KIVI, .n_tokens = n_tokens,
				   .checksum = kvt_checksum(enc, p->enc)};
	return kvt_block_put_locked(st, k, enc, &m);
}

static int put_new(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		   struct dev_plan *p, uint32_t j)
{
	const uint16_t bt = (uint16_t)c->cfg.shape.block_tokens;
	struct kvt_block_key k = key_of(c, layer, p->first_full + j);
	if (p->flags[j] & NEW_SPILL)
		return put_encoded(st, &k, p, p->spill_of[j], bt);
	const uint8_t *raw = st->dev_stage + p->off_raw + p->raw_of[j] * p->bb;
	struct kvt_block_meta m = {.len = (uint32_t)p->bb, .raw_len = (uint32_t)p->bb,
				   .codec = KVT_CODEC_RAW, .n_tokens = bt,
				   .checksum = kvt_checksum(raw, p->bb)};
	int rc = kvt_block_put_locked(st, &k, raw, &m);
	uint32_t i;
	if (rc == 0 && p->slot[j] && kvt_block_rec_locked(st, &k, &i)) {
		kvt_gpu_adopt_locked(st, i);
		st->blocks[i].gpu_window = 1;
		p->flags[j] |= NEW_ADOPTED;
	}
	return rc;
}

/* The tail tokens of staging area `at` (cnt of them) into the host tail;
 * a completed tail is stored raw. */
static int tail_add(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		    const struct dev_plan *p, size_t at, uint32_t cnt)
{
	const struct kvt_shape *s = &c->cfg.shape;
	struct layer_state *ls = &c->layers[layer];
	const uint8_t *k = st->dev_stage + at;
	const uint8_t *v = k + (size_t)s->n_kv_heads * cnt * p->row;
	uint64_t b = ls->n_tokens / s->block_tokens;
	if (!cnt)
		return 0;
	kvt_cache_tail_copy(s, ls->tail, ls->tail_tokens, k, v, cnt, 0, cnt);
	ls->tail_tokens += cnt;
	ls->n_tokens += cnt;
	if (ls->tail_tokens < s->block_tokens)
		return 0;
	int rc = kvt_cache_put_raw_locked(st, c, layer, b, ls->tail,
					  s->block_tokens, b >= p->win);
	if (rc == 0) {
		ls->tail_tokens = 0;
		memset(ls->tail, 0, p->bb);
	}
	return rc;
}

static int commit(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		  struct dev_plan *p)
{
	struct layer_state *ls = &c->layers[layer], saved = *ls;
	uint8_t *saved_tail = malloc(p->bb);
	if (!saved_tail)
		return -ENOMEM;
	memcpy(saved_tail, ls->tail, p->bb);
	int rc = kvt_cache_scores_push(c, ls, p->n, NULL);
	if (rc == 0)
		rc = tail_add(st, c, layer, p, p->off_head, p->head);
	for (uint32_t j = 0; rc == 0 && j < p->nfull; j++)
		if ((rc = put_new(st, c, layer, p, j)) == 0)
			ls->n_tokens += c->cfg.shape.block_tokens;
	if (rc == 0)
		rc = tail_add(st, c, layer, p, p->off_rest, p->rest);
	if (rc) {
		uint64_t end = ls->n_tokens / c->cfg.shape.block_tokens + 1;
		kvt_cache_rollback_locked(st, c, layer, p->first_block, end, &saved,
					  saved_tail);
	}
	free(saved_tail);
	return rc;
}

/* Earlier window blocks quantized on the GPU: stored cold now. A failure
 * leaves them raw; kvt_cache_appended_locked then tries the CPU codec. */
static void commit_old(struct kvt_store *st, const struct dev_plan *p)
{
	for (uint32_t i = 0; i < p->n_old; i++) {
		struct block_rec *r = kvt_block_rec_locked(st, &p->spill_keys[i], NULL);
		if (!r || put_encoded(st, &p->spill_keys[i], p, i, r->meta.n_tokens))
			return;
	}
}

/* ---------------------------------------------------------------- entry */

static int append_device_locked(struct kvt_store *st, struct cache_rec *c,
				uint32_t layer, struct dev_plan *p,
				struct kvt_stream *stream)
{
	kvt_gpu_settle_locked(st);
	plan_shape(c, layer, p);
	int rc = plan_blocks(st, c, layer, p);
	if (rc)
		return rc;
	plan_stage(&c->cfg.shape, p);
	rc = gpu_run(st, c, layer, p, stream);
	if (rc == 0)
		rc = commit(st, c, layer, p);
	/* Window slots not adopted (a failure) go. */
	slots_drop(st, c, layer, p, p->win_js, p->n_win);
	if (rc)
		return rc;
	commit_old(st, p);
	kvt_cache_appended_locked(st, c, layer);
	return 0;
}

int kvt_cache_append_device(struct kvt_cache *cache, uint32_t layer,
			    uint32_t n_tokens, const void *k_dev,
			    const void *v_dev, struct kvt_stream *stream)
{
	if (!cache || !k_dev || !v_dev || layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	struct kvt_store *st = cache->st;
	struct dev_plan p = {.k = k_dev, .v = v_dev, .n = n_tokens};
	pthread_mutex_lock(&st->lock);
	int rc = !st->tier[KVT_TIER_GPU] ? KVT_ENOGPU : 0;
	if (rc == 0 && n_tokens)
		rc = append_device_locked(st, cache->rec, layer, &p, stream);
	pthread_mutex_unlock(&st->lock);
	plan_free(&p);
	return rc;
}
