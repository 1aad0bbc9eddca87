/*
 * reload.c - kvt_cache_reload: chosen blocks of a layer made available as
 * raw blocks for attention, on the GPU tier when there is one.
 *
 * Order of an enqueue: settle the previous GPU request (the tier has one
 * in flight at a time), read disk-only blocks into the host tier in
 * batches, reuse GPU copies that are current, make room for the others
 * (evicting unpinned copies, oldest first), pin their host copies and
 * issue one kvt_gpu_tier_reload for them all. Everything else (no GPU
 * tier, the partial tail, a block whose host copy could not be had) is
 * decoded on the CPU into the reload's own host memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_tier.h"
#include "store_internal.h"

#define GPU_ALIGN 256u /* the GPU tier rounds extents to this */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* KVT_ENOTFOUND past the layer's blocks, -EINVAL for a duplicate. */
static int check_blocks(const struct cache_rec *c, uint32_t layer,
			const uint32_t *blocks, size_t n)
{
	uint64_t bt = c->cfg.shape.block_tokens;
	uint64_t nb = (c->layers[layer].n_tokens + bt - 1) / bt;
	uint32_t *v = malloc(n * sizeof *v);
	if (!v)
		return -ENOMEM;
	memcpy(v, blocks, n * sizeof *v);
	qsort(v, n, sizeof *v, cmp_u32);
	int rc = v[n - 1] >= nb ? KVT_ENOTFOUND : 0;
	for (size_t i = 1; rc == 0 && i < n; i++)
		if (v[i] == v[i - 1])
			rc = -EINVAL;
	free(v);
	return rc;
}

/* Largest host buffer a store keeps between reloads. */
#define SPARE_MAX ((size_t)256 << 20)

/* len bytes for a reload's host blocks: the store's spare when it is big
 * enough, else fresh memory. Caller holds the lock. */
static uint8_t *host_take(struct kvt_store *st, size_t len, size_t *got)
{
	if (st->reload_spare && st->reload_spare_len >= len) {
		uint8_t *p = st->reload_spare;
		*got = st->reload_spare_len;
		st->reload_spare = NULL, st->reload_spare_len = 0;
		return p;
	}
	*got = len;
	return malloc(len ? len : 1);
}

/* Keeps a released reload's buffer as the spare (the larger one wins). */
static void host_give(struct kvt_store *st, uint8_t *p, size_t len)
{
	if (p && len <= SPARE_MAX && len > st->reload_spare_len) {
		free(st->reload_spare);
		st->reload_spare = p, st->reload_spare_len = len;
	} else {
		free(p);
	}
}

void kvt_reload_spare_free(struct kvt_store *st)
{
	free(st->reload_spare);
	st->reload_spare = NULL, st->reload_spare_len = 0;
}

static void reload_free(struct kvt_reload *r)
{
	if (!r)
		return;
	free(r->items);
	free(r->out);
	free(r->host);
	free(r->gpu_item);
	free(r->gpu_res);
	free(r);
}

static struct kvt_reload *reload_new(struct kvt_store *st, struct cache_rec *c,
				     uint32_t layer, const uint32_t *blocks,
				     size_t n)
{
	struct kvt_reload *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->items = calloc(n, sizeof *r->items);
	r->out = calloc(n, sizeof *r->out);
	r->gpu_item = calloc(n, sizeof *r->gpu_item);
	r->gpu_res = calloc(n, sizeof *r->gpu_res);
	if (!r->items || !r->out || !r->gpu_item || !r->gpu_res) {
		reload_free(r);
		return NULL;
	}
	r->st = st;
	r->c = c;
	r->n = n;
	size_t bb = kvt_block_bytes(&c->cfg.shape);
	for (size_t i = 0; i < n; i++) {
		r->items[i] = (struct reload_item){{c->id, layer, blocks[i]}, 0, -1};
		r->out[i] = (struct kvt_reload_block){.block = blocks[i],
						      .tier = KVT_TIER_HOST,
						      .bytes = bb};
	}
	return r;
}

static int full_block(const struct kvt_reload *r, size_t i)
{
	const struct cache_rec *c = r->c;
	uint32_t layer = r->items[i].key.layer;
	return r->items[i].key.block <
	       c->layers[layer].n_tokens / c->cfg.shape.block_tokens;
}

/* Full blocks held only on disk, read into the host tier in batches. A
 * failure here only leaves a block on disk: the host path reports it. */
static int bring_to_host(struct kvt_store *st, struct kvt_reload *r)
{
	struct kvt_block_key *keys = malloc(r->n * sizeof *keys);
	size_t m = 0;
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < r->n; i++) {
		struct block_rec *b = kvt_block_rec_locked(st, &r->items[i].key, NULL);
		if (full_block(r, i) && b && !(b->where & (BLOCK_IN_HOST | BLOCK_ON_GPU)))
			keys[m++] = r->items[i].key;
	}
	int rc = m ? kvt_blocks_prefetch_locked(st, keys, m, NULL) : 0;
	free(keys);
	return rc == -ENOMEM ? rc : 0;
}

/* ---------------------------------------------------------------- GPU */

static void gpu_out(struct kvt_store *st, struct kvt_reload *r, size_t i,
		    const struct block_rec *b)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	struct kvt_block_loc loc;
	if (g->ops->locate(g, &r->items[i].key, &loc))
		loc.ptr = NULL; /* cannot happen: the copy was just stored */
	r->out[i].tier = KVT_TIER_GPU;
	r->out[i].addr = loc.ptr;
	r->out[i].n_tokens = b->meta.n_tokens;
}

/* Pins current GPU copies and picks the blocks to transfer (their host
 * copy present, their key free in the tier). Returns the reused count. */
static size_t gpu_plan(struct kvt_store *st, struct kvt_reload *r)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	size_t reused = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct reload_item *it = &r->items[i];
		struct kvt_block_meta m;
		uint32_t bi;
		struct block_rec *b = kvt_block_rec_locked(st, &it->key, &bi);
		if (!full_block(r, i) || !b)
			continue;
		if (b->where & BLOCK_ON_GPU) {
			kvt_gpu_pin_locked(st, bi);
			it->gen = b->gpu_gen;
			gpu_out(st, r, i, b);
			reused++;
		} else if ((b->where & BLOCK_IN_HOST) &&
			   g->ops->stat(g, &it->key, &m) == KVT_ENOTFOUND) {
			it->gpu = (int32_t)r->n_gpu;
			r->gpu_item[r->n_gpu++] = (uint32_t)i;
		}
	}
	return reused;
}

static void gpu_unplan(struct kvt_store *st, struct kvt_reload *r)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->items[i].gen)
			kvt_gpu_unpin_locked(st, &r->items[i].key, r->items[i].gen);
		r->items[i].gen = 0;
		r->items[i].gpu = -1;
	}
	r->n_gpu = 0;
}

static void cache_geoms(const struct cache_rec *c, struct kvt_kivi_geom *kg,
			struct kvt_zip_geom *zg, struct kvt_block_codecs *cd)
{
	const struct kvt_shape *s = &c->cfg.shape;
	struct kvt_codec_params p;
	kvt_cache_block_codec(&c->cfg, &p);
	*kg = (struct kvt_kivi_geom){s->n_kv_heads, s->block_tokens, s->head_dim,
				     s->dtype, p.bits, p.group, 0};
	*zg = (struct kvt_zip_geom){s->n_kv_heads, s->block_tokens, s->head_dim,
				    s->dtype, p.bits, p.high_bits};
	cd->kivi = p.id == KVT_CODEC_KIVI ? kg : NULL;
	cd->zip = p.id == KVT_CODEC_ZIPCACHE ? zg : NULL;
}

/* The GPU request's arrays, from the host copies (pinned meanwhile). */
static int gpu_sources(struct kvt_store *st, struct kvt_reload *r,
		       struct kvt_block_key *keys, const void **srcs,
		       struct kvt_block_meta *metas)
{
	struct kvt_tier *h = st->tier[KVT_TIER_HOST];
	for (uint32_t j = 0; j < r->n_gpu; j++) {
		struct reload_item *it = &r->items[r->gpu_item[j]];
		struct block_rec *b = kvt_block_rec_locked(st, &it->key, NULL);
		struct kvt_block_loc loc;
		int rc = h->ops->locate(h, &it->key, &loc);
		if (rc)
			return rc;
		keys[j] = it->key;
		srcs[j] = loc.ptr;
		metas[j] = b->meta;
	}
	return 0;
}

/* Issues the request; a full pool (fragmented) gets one more eviction. */
static int gpu_issue(struct kvt_store *st, struct kvt_reload *r,
		     struct kvt_stream *stream)
{
	struct kvt_kivi_geom kg;
	struct kvt_zip_geom zg;
	struct kvt_block_codecs cd;
	struct kvt_block_key *keys = malloc(r->n_gpu * sizeof *keys);
	const void **srcs = malloc(r->n_gpu * sizeof *srcs);
	struct kvt_block_meta *metas = malloc(r->n_gpu * sizeof *metas);
	int rc = keys && srcs && metas ? 0 : -ENOMEM;
	cache_geoms(r->c, &kg, &zg, &cd);
	if (rc == 0)
		rc = gpu_sources(st, r, keys, srcs, metas);
	do {
		if (rc == 0 || rc == KVT_ENOSPACE)
			rc = kvt_gpu_tier_reload(st->tier[KVT_TIER_GPU], r->n_gpu, keys,
						 srcs, metas, &cd, stream);
	} while (rc == KVT_ENOSPACE && kvt_gpu_evict_one_locked(st) == 0);
	free(keys);
	free(srcs);
	free(metas);
	return rc;
}

static void gpu_commit(struct kvt_store *st, struct kvt_reload *r)
{
	for (uint32_t j = 0; j < r->n_gpu; j++) {
		size_t i = r->gpu_item[j];
		uint32_t bi;
		struct block_rec *b = kvt_block_rec_locked(st, &r->items[i].key, &bi);
		b->host_pins++;
		r->items[i].gen = kvt_gpu_adopt_locked(st, bi);
		gpu_out(st, r, i, b);
	}
	if (r->n_gpu) {
		r->pending = 1;
		st->gpu_inflight = r;
	}
}

static int gpu_reload(struct kvt_store *st, struct kvt_reload *r,
		      struct kvt_stream *stream)
{
	struct kvt_tier *g = st->tier[KVT_TIER_GPU];
	struct kvt_tier_usage u;
	const uint64_t slot = (r->out[0].bytes + GPU_ALIGN - 1) / GPU_ALIGN * GPU_ALIGN;
	size_t reused = gpu_plan(st, r);
	int rc = g->ops->usage(g, &u);
	if (rc == 0 && (uint64_t)(reused + r->n_gpu) * slot > u.capacity)
		rc = KVT_ENOSPACE;
	if (rc == 0 && r->n_gpu)
		rc = kvt_gpu_make_room_locked(st, r->n_gpu * slot);
	if (rc == 0 && r->n_gpu)
		rc = gpu_issue(st, r, stream);
	if (rc) {
		gpu_unplan(st, r);
		return rc;
	}
	gpu_commit(st, r);
	return 0;
}

/* ---------------------------------------------------------------- host */

/* The blocks not on the GPU, decoded here into the reload's memory. */
static int host_path(struct kvt_store *st, struct kvt_reload *r)
{
	const size_t bb = r->out[0].bytes;
	size_t m = 0, k = 0;
	for (size_t i = 0; i < r->n; i++)
		m += r->out[i].tier == KVT_TIER_HOST;
	if (m == 0)
		return 0;
	uint8_t *scratch = malloc(bb);
	r->host = host_take(st, m * bb, &r->host_len);
	if (!scratch || !r->host) {
		free(scratch);
		return -ENOMEM;
	}
	for (size_t i = 0; i < r->n; i++) {
		struct kvt_reload_block *o = &r->out[i];
		if (o->tier != KVT_TIER_HOST)
			continue;
		uint8_t *dst = r->host + k++ * bb;
		o->status = kvt_cache_fetch_raw_locked(st, r->c, r->items[i].key.layer,
						       o->block, dst, scratch, &o->n_tokens);
		o->addr = o->status ? NULL : dst;
		if (o->status && !r->status)
			r->status = o->status;
	}
	free(scratch);
	return 0;
}

/* ---------------------------------------------------------------- API */

/* Completes the GPU request and drops every pin of r. */
static void unpin_all(struct kvt_store *st, struct kvt_reload *r)
{
	if (r->pending)
		kvt_gpu_settle_locked(st);
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].gen)
			kvt_gpu_unpin_locked(st, &r->items[i].key, r->items[i].gen);
}

static int reload_locked(struct kvt_store *st, struct cache_rec *c,
			 uint32_t layer, const uint32_t *blocks, size_t n,
			 struct kvt_stream *stream, struct kvt_reload **out)
{
	int rc = check_blocks(c, layer, blocks, n);
	if (rc)
		return rc;
	struct kvt_reload *r = reload_new(st, c, layer, blocks, n);
	if (!r)
		return -ENOMEM;
	if (st->tier[KVT_TIER_GPU])
		kvt_gpu_settle_locked(st);
	rc = bring_to_host(st, r);
	if (rc == 0 && st->tier[KVT_TIER_GPU])
		rc = gpu_reload(st, r, stream);
	if (rc == 0 && (rc = host_path(st, r)))
		unpin_all(st, r);
	if (rc) {
		reload_free(r);
		return rc;
	}
	c->handles++;
	*out = r;
	return 0;
}

int kvt_cache_reload(struct kvt_cache *cache, uint32_t layer,
		     const uint32_t *blocks, size_t n, struct kvt_stream *stream,
		     struct kvt_reload **out)
{
	if (!cache || !blocks || !n || !out ||
	    layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	struct kvt_store *st = cache->st;
	pthread_mutex_lock(&st->lock);
	int rc = reload_locked(st, cache->rec, layer, blocks, n, stream, out);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int kvt_reload_poll(struct kvt_reload *r)
{
	if (!r)
		return -EINVAL;
	struct kvt_store *st = r->st;
	pthread_mutex_lock(&st->lock);
	int rc = r->pending ? kvt_gpu_tier_reload_poll(st->tier[KVT_TIER_GPU]) : 0;
	if (rc != -EAGAIN) {
		if (r->pending)
			kvt_gpu_settle_locked(st);
		rc = r->status;
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int kvt_reload_wait(struct kvt_reload *r, const struct kvt_reload_block **blocks,
		    size_t *n)
{
	if (!r || !blocks || !n)
		return -EINVAL;
	struct kvt_store *st = r->st;
	pthread_mutex_lock(&st->lock);
	if (r->pending)
		kvt_gpu_settle_locked(st);
	int rc = r->status;
	pthread_mutex_unlock(&st->lock);
	*blocks = r->out;
	*n = r->n;
	return rc;
}

void kvt_reload_release(struct kvt_reload *r)
{
	if (!r)
		return;
	struct kvt_store *st = r->st;
	pthread_mutex_lock(&st->lock);
	unpin_all(st, r);
	r->c->handles--;
	host_give(st, r->host, r->host_len);
	r->host = NULL;
	pthread_mutex_unlock(&st->lock);
	reload_free(r);
}
