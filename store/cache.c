/*
 * cache.c - named caches: create/open/drop, append and read.
 *
 * Tokens of a layer fill a tail block in memory; a full block is stored raw
 * (the recent window). Once a block is older than recent_tokens it is
 * re-encoded with the cold codec: K and V each become a self-describing
 * codec stream (kvtier/codec.h), stored back to back. The partial tail is
 * written as a short block on flush so a restart finds every token.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "checksum.h"
#include "kvtier/codec.h"
#include "store_internal.h"
#include "store_locate.h"

void kvt_cache_block_codec(const struct kvt_cache_config *cfg,
			   struct kvt_codec_params *p)
{
	*p = cfg->cold;
	p->residual = 0;
	p->saliency = NULL;
	if (p->id == KVT_CODEC_KIVI && p->group > cfg->shape.block_tokens)
		p->group = (uint16_t)cfg->shape.block_tokens;
}

/* A cache's cold codec must apply to both halves of one block. */
static int block_codec_check(const struct kvt_cache_config *cfg)
{
	struct kvt_codec_params p;
	struct kvt_tensor_desc d = {cfg->shape.n_kv_heads, cfg->shape.block_tokens,
				    cfg->shape.head_dim, cfg->shape.dtype};
	if (cfg->cold.saliency)
		return -EINVAL;
	kvt_cache_block_codec(cfg, &p);
	int rc = kvt_codec_check(&p, KVT_KIND_KEY, &d);
	/* KIVI key groups run along the block's tokens: whole groups only. */
	if (rc == 0 && p.id == KVT_CODEC_KIVI && cfg->shape.block_tokens % p.group)
		rc = KVT_ECODEC;
	return rc ? rc : kvt_codec_check(&p, KVT_KIND_VALUE, &d);
}

int kvt_cache_config_check(const struct kvt_cache_config *cfg)
{
	int rc = kvt_shape_check(&cfg->shape);
	return rc ? rc : block_codec_check(cfg);
}

static int name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	return n >= 1 && n <= KVT_NAME_MAX && !strchr(name, '/');
}

int kvt_cache_rec_init(struct cache_rec *c)
{
	size_t bb = kvt_block_bytes(&c->cfg.shape);
	c->layers = calloc(c->cfg.shape.n_layers, sizeof *c->layers);
	if (!c->layers)
		return -ENOMEM;
	for (uint32_t l = 0; l < c->cfg.shape.n_layers; l++) {
		if (!(c->layers[l].tail = calloc(1, bb))) {
			kvt_cache_rec_free(c);
			return -ENOMEM;
		}
	}
	return 0;
}

void kvt_cache_rec_free(struct cache_rec *c)
{
	if (!c)
		return;
	for (uint32_t l = 0; c->layers && l < c->cfg.shape.n_layers; l++) {
		free(c->layers[l].tail);
		free(c->layers[l].scores);
	}
	free(c->layers);
	kvt_meta_free_all(c);
	free(c);
}

/* ---------------------------------------------------------------- handles */

static int handle_new(struct kvt_store *st, struct cache_rec *c,
		      struct kvt_cache **out)
{
	struct kvt_cache *h = malloc(sizeof *h);
	if (!h)
		return -ENOMEM;
	*h = (struct kvt_cache){st, c};
	c->handles++;
	*out = h;
	return 0;
}

static int create(struct kvt_store *st, const char *name,
		  const struct kvt_cache_config *cfg, struct kvt_cache **out);

int kvt_cache_create(struct kvt_store *st, const char *name,
		     const struct kvt_cache_config *cfg, struct kvt_cache **out)
{
	if (!st || !cfg || !out || !name_ok(name) || name[0] == '.')
		return -EINVAL;
	return create(st, name, cfg, out);
}

int kvt_cache_create_hidden(struct kvt_store *st, const char *name,
			    const struct kvt_cache_config *cfg,
			    struct kvt_cache **out)
{
	if (!st || !cfg || !out || !name_ok(name) || name[0] != '.')
		return -EINVAL;
	return create(st, name, cfg, out);
}

int kvt_cache_rename_locked(struct kvt_store *st, struct cache_rec *c,
			    const char *name)
{
	if (!name_ok(name) || name[0] == '.')
		return -EINVAL;
	if (kvt_store_find_locked(st, name))
		return KVT_EEXIST;
	/* Old name first: a crash in between leaves orphan blocks (deleted at
	 * the next open), never two names for one cache. */
	char old[KVT_NAME_MAX + 1];
	int rc = kvt_catalog_del_locked(st, c->name);
	if (rc)
		return rc;
	strcpy(old, c->name);
	strcpy(c->name, name);
	rc = kvt_catalog_put_locked(st, c);
	if (rc) { /* keep the old name, so the caller can still drop it */
		strcpy(c->name, old);
		kvt_catalog_put_locked(st, c);
		return rc;
	}
	return kvt_meta_rename_locked(st, c, old);
}

static int create(struct kvt_store *st, const char *name,
		  const struct kvt_cache_config *cfg, struct kvt_cache **out)
{
	int rc = kvt_cache_config_check(cfg);
	if (rc)
		return rc;
	struct cache_rec *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	strcpy(c->name, name);
	c->cfg = *cfg;
	c->cfg.cold.saliency = NULL;
	if ((rc = kvt_cache_rec_init(c))) {
		free(c);
		return rc;
	}
	pthread_mutex_lock(&st->lock);
	if (kvt_store_find_locked(st, name))
		rc = KVT_EEXIST;
	c->id = st->next_id;
	if (rc == 0)
		rc = kvt_catalog_put_locked(st, c);
	if (rc == 0)
		rc = handle_new(st, c, out);
	if (rc == 0) {
		st->next_id++;
		c->next = st->caches;
		st->caches = c;
	}
	pthread_mutex_unlock(&st->lock);
	if (rc)
		kvt_cache_rec_free(c);
	return rc;
}

int kvt_cache_open(struct kvt_store *st, const char *name,
		   struct kvt_cache **out)
{
	if (!st || !out || !name_ok(name))
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	struct cache_rec *c = kvt_store_find_locked(st, name);
	int rc = c ? handle_new(st, c, out) : KVT_ENOTFOUND;
	pthread_mutex_unlock(&st->lock);
	return rc;
}

void kvt_cache_close(struct kvt_cache *cache)
{
	if (!cache)
		return;
	pthread_mutex_lock(&cache->st->lock);
	cache->rec->handles--;
	pthread_mutex_unlock(&cache->st->lock);
	free(cache);
}

static uint64_t layer_blocks(const struct cache_rec *c, uint32_t l)
{
	uint64_t bt = c->cfg.shape.block_tokens;
	return (c->layers[l].n_tokens + bt - 1) / bt;
}

int kvt_cache_drop(struct kvt_store *st, const char *name)
{
	if (!st || !name_ok(name))
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	struct cache_rec *c = kvt_store_find_locked(st, name), **pp;
	int rc = !c ? KVT_ENOTFOUND : c->handles ? KVT_EBUSY : 0;
	/* Catalog first: a crash after it leaves orphan blocks, which the
	 * next open deletes, never a cache with missing blocks. */
	if (rc == 0)
		rc = kvt_catalog_del_locked(st, name);
	if (rc == 0)
		kvt_meta_drop_locked(st, c); /* leftovers are reclaimed at open */
	if (rc == 0) {
		for (uint32_t l = 0; l < c->cfg.shape.n_layers; l++)
			for (uint64_t b = 0; b < layer_blocks(c, l); b++) {
				struct kvt_block_key k = {c->id, l, (uint32_t)b};
				kvt_block_del_locked(st, &k);
			}
		for (pp = &st->caches; *pp != c; pp = &(*pp)->next)
			;
		*pp = c->next;
		kvt_cache_rec_free(c);
	}
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* ---------------------------------------------------------------- blocks */

/* window: the block is in the recent window once the append ends. */
static int put_raw(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		   uint64_t block, const void *raw, uint32_t n_tokens, int window)
{
	struct kvt_block_key k = {c->id, layer, (uint32_t)block};
	uint32_t bb = (uint32_t)kvt_block_bytes(&c->cfg.shape);
	struct kvt_block_meta m = {.len = bb, .raw_len = bb,
				   .codec = KVT_CODEC_RAW,
				   .n_tokens = (uint16_t)n_tokens,
				   .checksum = kvt_checksum(raw, bb)};
	int rc = kvt_block_put_locked(st, &k, raw, &m);
	if (rc == 0 && window && n_tokens == c->cfg.shape.block_tokens)
		kvt_gpu_window_add_locked(st, &k, raw, &m);
	return rc;
}

/* Encodes a raw block with the cache's cold codec into *enc (malloc'd);
 * saliency (block_tokens scores, may be NULL) picks ZipCache's salient
 * tokens. */
static int encode_block(const struct cache_rec *c, const uint8_t *raw,
			const float *saliency, uint8_t **enc, uint32_t *len)
{
	const struct kvt_shape *s = &c->cfg.shape;
	struct kvt_tensor_desc d = {s->n_kv_heads, s->block_tokens, s->head_dim,
				    s->dtype};
	struct kvt_codec_params p;
	size_t kn, vn, kw, vw, half = kvt_block_bytes(s) / 2;
	kvt_cache_block_codec(&c->cfg, &p);
	p.saliency = saliency;
	int rc = kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &kn);
	rc = rc ? rc : kvt_codec_encoded_size(&p, KVT_KIND_VALUE, &d, &vn);
	uint8_t *buf = rc ? NULL : malloc(kn + vn);
	if (!rc && !buf)
		rc = -ENOMEM;
	rc = rc ? rc : kvt_codec_encode(&p, KVT_KIND_KEY, &d, raw, buf, kn, &kw);
	rc = rc ? rc : kvt_codec_encode(&p, KVT_KIND_VALUE, &d, raw + half,
					buf + kn, vn, &vw);
	if (rc) {
		free(buf);
		return rc;
	}
	*enc = buf;
	*len = (uint32_t)(kw + vw);
	return 0;
}

/* The kept scores of block b's tokens into bs; NULL when none is known. */
static const float *block_scores(const struct cache_rec *c,
				 const struct layer_state *ls, uint64_t b,
				 float *bs)
{
	const uint32_t bt = c->cfg.shape.block_tokens;
	int any = 0;
	for (uint32_t i = 0; i < bt; i++) {
		uint64_t t = b * bt + i;
		int kept = t >= ls->scores_first &&
			   t - ls->scores_first < ls->n_scores;
		bs[i] = kept ? ls->scores[t - ls->scores_first] : NAN;
		any |= !isnan(bs[i]);
	}
	return any ? bs : NULL;
}

/* Re-encodes one raw block that left the recent window. */
static int make_cold(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		     uint64_t block, uint8_t *raw, float *bs)
{
	struct kvt_block_key k = {c->id, layer, (uint32_t)block};
	struct kvt_block_meta m;
	uint32_t bb = (uint32_t)kvt_block_bytes(&c->cfg.shape), len;
	uint8_t *enc;
	int rc = kvt_block_get_locked(st, &k, raw, bb, &m);
	if (rc || m.codec != KVT_CODEC_RAW)
		return rc;
	rc = encode_block(c, raw, block_scores(c, &c->layers[layer], block, bs),
			  &enc, &len);
	if (rc)
		return rc;
	struct kvt_block_meta n = {.len = len, .raw_len = bb,
				   .codec = (uint8_t)c->cfg.cold.id,
				   .n_tokens = m.n_tokens,
				   .checksum = kvt_checksum(enc, len)};
	rc = kvt_block_put_locked(st, &k, enc, &n);
	free(enc);
	return rc;
}

/* ---------------------------------------------------------------- scores */

/* Forgets the scores of tokens before `end` (their blocks are cold). */
static void scores_drop(struct layer_state *ls, uint64_t end)
{
	if (ls->n_scores == 0 || end <= ls->scores_first)
		return;
	uint64_t k = end - ls->scores_first;
	k = k < ls->n_scores ? k : ls->n_scores;
	memmove(ls->scores, ls->scores + k, (ls->n_scores - k) * sizeof *ls->scores);
	ls->n_scores -= (uint32_t)k;
	ls->scores_first += k;
}

/* Keeps the scores of n appended tokens (NaN for NULL) for a ZipCache cold
 * codec; nothing is kept until some scores are given. */
static int scores_push(const struct cache_rec *c, struct layer_state *ls,
		       uint32_t n, const float *scores)
{
	if (c->cfg.cold.id != KVT_CODEC_ZIPCACHE || (!scores && !ls->n_scores))
		return 0;
	if (ls->n_scores == 0)
		ls->scores_first = ls->n_tokens;
	if ((uint64_t)ls->n_scores + n > UINT32_MAX)
		return -ENOMEM;
	if (ls->n_scores + n > ls->cap_scores) {
		uint32_t cap = ls->n_scores + n;
		cap = cap < 2 * ls->cap_scores ? 2 * ls->cap_scores : cap;
		float *p = realloc(ls->scores, (size_t)cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		ls->scores = p;
		ls->cap_scores = cap;
	}
	for (uint32_t i = 0; i < n; i++)
		ls->scores[ls->n_scores + i] = scores ? scores[i] : NAN;
	ls->n_scores += n;
	return 0;
}

/* Moves blocks that left the recent window to the cold codec. Failure
 * leaves them raw (still correct) and is retried on the next append. */
static void age_blocks(struct kvt_store *st, struct cache_rec *c, uint32_t layer)
{
	struct layer_state *ls = &c->layers[layer];
	uint64_t bt = c->cfg.shape.block_tokens;
	if (c->cfg.cold.id == KVT_CODEC_RAW || ls->n_tokens < c->cfg.recent_tokens)
		return;
	uint64_t limit = (ls->n_tokens - c->cfg.recent_tokens) / bt;
	if (ls->n_cold >= limit)
		return;
	uint8_t *raw = malloc(kvt_block_bytes(&c->cfg.shape));
	float *bs = malloc(bt * sizeof *bs);
	while (raw && bs && ls->n_cold < limit &&
	       make_cold(st, c, layer, ls->n_cold, raw, bs) == 0)
		ls->n_cold++;
	free(raw);
	free(bs);
	scores_drop(ls, ls->n_cold * bt);
}

/* Blocks that left the recent window give up its pin on their GPU copy. */
static void window_trim(struct kvt_store *st, struct cache_rec *c, uint32_t layer)
{
	struct layer_state *ls = &c->layers[layer];
	uint64_t bt = c->cfg.shape.block_tokens, r = c->cfg.recent_tokens;
	uint64_t limit = ls->n_tokens > r ? (ls->n_tokens - r) / bt : 0;
	for (; ls->win_first < limit; ls->win_first++) {
		struct kvt_block_key k = {c->id, layer, (uint32_t)ls->win_first};
		kvt_gpu_window_leave_locked(st, &k);
	}
}

/* ---------------------------------------------------------------- append */

/* Copies tokens [from, from + n) of k/v ([heads][total][dim]) into the tail
 * at position at. */
static void tail_copy(const struct kvt_shape *s, uint8_t *tail, uint32_t at,
		      const uint8_t *k, const uint8_t *v, uint32_t total,
		      uint32_t from, uint32_t n)
{
	size_t row = (size_t)s->head_dim * kvt_dtype_size(s->dtype);
	size_t half = kvt_block_bytes(s) / 2;
	for (size_t h = 0; h < s->n_kv_heads; h++) {
		size_t dst = (h * s->block_tokens + at) * row;
		size_t src = (h * total + from) * row;
		memcpy(tail + dst, k + src, n * row);
		memcpy(tail + half + dst, v + src, n * row);
	}
}

static void rollback(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		     uint64_t first_new, uint64_t end, const struct layer_state *saved,
		     const uint8_t *saved_tail)
{
	for (uint64_t b = first_new; b < end; b++) {
		struct kvt_block_key k = {c->id, layer, (uint32_t)b};
		kvt_block_del_locked(st, &k);
	}
	struct layer_state *ls = &c->layers[layer];
	memcpy(ls->tail, saved_tail, kvt_block_bytes(&c->cfg.shape));
	ls->n_tokens = saved->n_tokens;
	ls->tail_tokens = saved->tail_tokens;
	ls->n_scores = saved->n_scores;
	ls->scores_first = saved->scores_first;
}

static int append_locked(struct kvt_store *st, struct cache_rec *c,
			 uint32_t layer, uint32_t n, const uint8_t *k,
			 const uint8_t *v, const float *scores)
{
	struct layer_state *ls = &c->layers[layer], saved = *ls;
	const struct kvt_shape *s = &c->cfg.shape;
	size_t bb = kvt_block_bytes(s);
	uint8_t *saved_tail = malloc(bb);
	if (!saved_tail)
		return -ENOMEM;
	memcpy(saved_tail, ls->tail, bb);
	uint64_t first_block = ls->n_tokens / s->block_tokens, b = first_block;
	const uint64_t end = ls->n_tokens + n, recent = c->cfg.recent_tokens;
	const uint64_t win = end > recent ? (end - recent) / s->block_tokens : 0;
	int rc = scores_push(c, ls, n, scores);
	if (rc) {
		free(saved_tail);
		return rc;
	}
	for (uint32_t done = 0; done < n && rc == 0;) {
		uint32_t m = s->block_tokens - ls->tail_tokens;
		m = m < n - done ? m : n - done;
		tail_copy(s, ls->tail, ls->tail_tokens, k, v, n, done, m);
		ls->tail_tokens += m;
		ls->n_tokens += m;
		done += m;
		if (ls->tail_tokens < s->block_tokens)
			break;
		rc = put_raw(st, c, layer, b, ls->tail, s->block_tokens, b >= win);
		if (rc == 0) {
			b++;
			ls->tail_tokens = 0;
			memset(ls->tail, 0, bb);
		}
	}
	/* The first block may have been stored partial by a flush: it goes
	 * too, the restored in-memory tail holds its tokens. */
	if (rc)
		rollback(st, c, layer, first_block, b + 1, &saved, saved_tail);
	free(saved_tail);
	if (rc == 0)
		age_blocks(st, c, layer);
	if (rc == 0)
		window_trim(st, c, layer);
	return rc;
}

int kvt_cache_append_scored(struct kvt_cache *cache, uint32_t layer,
			    uint32_t n_tokens, const void *k, const void *v,
			    const float *scores)
{
	if (!cache || !k || !v || layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	if (n_tokens == 0)
		return 0;
	pthread_mutex_lock(&cache->st->lock);
	int rc = append_locked(cache->st, cache->rec, layer, n_tokens, k, v,
			       scores);
	pthread_mutex_unlock(&cache->st->lock);
	return rc;
}

int kvt_cache_append(struct kvt_cache *cache, uint32_t layer, uint32_t n_tokens,
		     const void *k, const void *v)
{
	return kvt_cache_append_scored(cache, layer, n_tokens, k, v, NULL);
}

/* ---------------------------------------------------------------- shared with append_device.c */

int kvt_cache_put_raw_locked(struct kvt_store *st, struct cache_rec *c,
			     uint32_t layer, uint64_t block, const void *raw,
			     uint32_t n_tokens, int window)
{
	return put_raw(st, c, layer, block, raw, n_tokens, window);
}

void kvt_cache_tail_copy(const struct kvt_shape *s, uint8_t *tail, uint32_t at,
			 const uint8_t *k, const uint8_t *v, uint32_t total,
			 uint32_t from, uint32_t n)
{
	tail_copy(s, tail, at, k, v, total, from, n);
}

void kvt_cache_rollback_locked(struct kvt_store *st, struct cache_rec *c,
			       uint32_t layer, uint64_t first_new, uint64_t end,
			       const struct layer_state *saved,
			       const uint8_t *saved_tail)
{
	rollback(st, c, layer, first_new, end, saved, saved_tail);
}

int kvt_cache_scores_push(const struct cache_rec *c, struct layer_state *ls,
			  uint32_t n, const float *scores)
{
	return scores_push(c, ls, n, scores);
}

void kvt_cache_appended_locked(struct kvt_store *st, struct cache_rec *c,
			       uint32_t layer)
{
	age_blocks(st, c, layer);
	window_trim(st, c, layer);
}

/* ---------------------------------------------------------------- read */

/* Decodes a stored block (raw or two codec streams) into a raw block. */
static int decode_block(const struct cache_rec *c, const uint8_t *enc,
			const struct kvt_block_meta *m, uint8_t *raw)
{
	size_t bb = kvt_block_bytes(&c->cfg.shape), half = bb / 2;
	struct kvt_codec_header h;
	if (m->codec == KVT_CODEC_RAW) {
		if (m->len != bb)
			return KVT_ECORRUPT;
		memcpy(raw, enc, bb);
		return 0;
	}
	if (m->len < KVT_CODEC_HEADER_BYTES)
		return KVT_ECORRUPT;
	size_t klen = KVT_CODEC_HEADER_BYTES + (size_t)kvt_get_u32(enc + 32);
	if (klen > m->len || kvt_codec_read_header(enc, klen, &h) ||
	    kvt_codec_decode(enc, klen, raw, half, NULL) ||
	    kvt_codec_decode(enc + klen, m->len - klen, raw + half, half, NULL))
		return KVT_ECORRUPT;
	return 0;
}

/* Reads stored block b of a layer, verifies it and decodes it raw. */
static int fetch_stored(struct kvt_store *st, struct cache_rec *c,
			uint32_t layer, uint64_t b, uint8_t *raw,
			uint8_t *scratch, uint32_t *n_tokens)
{
	size_t bb = kvt_block_bytes(&c->cfg.shape);
	struct kvt_block_key k = {c->id, layer, (uint32_t)b};
	struct kvt_block_meta m;
	int rc = kvt_block_get_locked(st, &k, scratch, bb, &m);
	if (rc == KVT_ENOTFOUND)
		return KVT_ECORRUPT; /* a block below n_tokens must exist */
	if (rc == 0 && kvt_checksum(scratch, m.len) != m.checksum)
		rc = KVT_ECORRUPT;
	if (rc == 0)
		rc = decode_block(c, scratch, &m, raw);
	if (rc == 0)
		*n_tokens = m.n_tokens;
	return rc;
}

/* Fetches block b of a layer as a raw block (the tail from memory). */
static int fetch_raw(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		     uint64_t b, uint8_t *raw, uint8_t *scratch, uint32_t *n_tokens)
{
	struct layer_state *ls = &c->layers[layer];
	if (b == ls->n_tokens / c->cfg.shape.block_tokens) {
		memcpy(raw, ls->tail, kvt_block_bytes(&c->cfg.shape));
		*n_tokens = ls->tail_tokens;
		return 0;
	}
	return fetch_stored(st, c, layer, b, raw, scratch, n_tokens);
}

static int read_locked(struct kvt_store *st, struct cache_rec *c, uint32_t layer,
		       uint64_t first, uint32_t n, uint8_t *k, uint8_t *v)
{
	const struct kvt_shape *s = &c->cfg.shape;
	size_t bb = kvt_block_bytes(s), half = bb / 2;
	size_t row = (size_t)s->head_dim * kvt_dtype_size(s->dtype);
	uint8_t *raw = malloc(2 * bb);
	if (!raw)
		return -ENOMEM;
	int rc = 0;
	for (uint64_t t = first; t < first + n && rc == 0;) {
		uint64_t b = t / s->block_tokens, off = t % s->block_tokens;
		uint64_t m = s->block_tokens - off;
		uint32_t valid;
		m = m < first + n - t ? m : first + n - t;
		rc = fetch_raw(st, c, layer, b, raw, raw + bb, &valid);
		for (size_t h = 0; rc == 0 && h < s->n_kv_heads; h++) {
			size_t src = (h * s->block_tokens + off) * row;
			size_t dst = (h * (size_t)n + (t - first)) * row;
			memcpy(k + dst, raw + src, m * row);
			memcpy(v + dst, raw + half + src, m * row);
		}
		t += m;
	}
	free(raw);
	return rc;
}

int kvt_cache_read(struct kvt_cache *cache, uint32_t layer, uint64_t first,
		   uint32_t n_tokens, void *k, void *v)
{
	if (!cache || !k || !v || layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	struct kvt_store *st = cache->st;
	pthread_mutex_lock(&st->lock);
	struct cache_rec *c = cache->rec;
	int rc = first + n_tokens > c->layers[layer].n_tokens
			 ? KVT_ENOTFOUND
			 : read_locked(st, c, layer, first, n_tokens, k, v);
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int kvt_cache_fetch_raw_locked(struct kvt_store *st, struct cache_rec *c,
			       uint32_t layer, uint64_t b, uint8_t *raw,
			       uint8_t *scratch, uint32_t *n_tokens)
{
	return fetch_raw(st, c, layer, b, raw, scratch, n_tokens);
}

int kvt_cache_read_block(struct kvt_cache *cache, uint32_t layer,
			 uint64_t block, void *dst, size_t dst_len,
			 uint32_t *n_tokens)
{
	if (!cache || !dst || layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	struct kvt_store *st = cache->st;
	struct cache_rec *c = cache->rec;
	size_t bb = kvt_block_bytes(&c->cfg.shape);
	if (dst_len < bb)
		return -ENOBUFS;
	uint8_t *scratch = malloc(bb);
	if (!scratch)
		return -ENOMEM;
	uint32_t valid = 0;
	pthread_mutex_lock(&st->lock);
	int rc = block >= layer_blocks(c, layer)
			 ? KVT_ENOTFOUND
			 : fetch_raw(st, c, layer, block, dst, scratch, &valid);
	pthread_mutex_unlock(&st->lock);
	free(scratch);
	if (rc == 0 && n_tokens)
		*n_tokens = valid;
	return rc;
}

int kvt_cache_layer_tokens(struct kvt_cache *cache, uint32_t layer,
			   uint64_t *n_tokens)
{
	if (!cache || !n_tokens || layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	pthread_mutex_lock(&cache->st->lock);
	*n_tokens = cache->rec->layers[layer].n_tokens;
	pthread_mutex_unlock(&cache->st->lock);
	return 0;
}

/* ---------------------------------------------------------------- durability */

int kvt_cache_flush_tails_locked(struct kvt_store *st, struct cache_rec *c)
{
	int rc = 0;
	for (uint32_t l = 0; l < c->cfg.shape.n_layers && rc == 0; l++) {
		struct layer_state *ls = &c->layers[l];
		if (ls->tail_tokens)
			rc = put_raw(st, c, l, ls->n_tokens / c->cfg.shape.block_tokens,
				     ls->tail, ls->tail_tokens, 0);
	}
	return rc;
}

int kvt_cache_recover_locked(struct kvt_store *st, struct cache_rec *c)
{
	const struct kvt_shape *s = &c->cfg.shape;
	uint8_t *scratch = malloc(kvt_block_bytes(s));
	if (!scratch)
		return -ENOMEM;
	int rc = 0;
	for (uint32_t l = 0; l < s->n_layers && rc == 0; l++) {
		struct layer_state *ls = &c->layers[l];
		struct kvt_block_meta m;
		uint64_t b = 0;
		for (;; b++) {
			struct kvt_block_key k = {c->id, l, (uint32_t)b};
			if (kvt_block_stat_locked(st, &k, &m))
				break;
			if (m.codec != KVT_CODEC_RAW && ls->n_cold == b)
				ls->n_cold = b + 1;
			ls->n_tokens += m.n_tokens;
			if (m.n_tokens < s->block_tokens) {
				/* The partial tail: back into memory. A damaged
				 * tail is dropped, the full blocks are kept. */
				uint32_t valid = 0;
				ls->n_tokens -= m.n_tokens;
				if (fetch_stored(st, c, l, b, ls->tail, scratch,
						 &valid) == 0)
					ls->tail_tokens = valid;
				else
					memset(ls->tail, 0, kvt_block_bytes(s));
				ls->n_tokens += ls->tail_tokens;
				break;
			}
		}
	}
	free(scratch);
	return rc;
}

/* ---------------------------------------------------------------- sharing */

int kvt_store_locate_block(struct kvt_cache *cache, uint32_t layer,
			   uint64_t block, struct kvt_block_loc *loc,
			   struct kvt_block_meta *meta)
{
	if (!cache || !loc || !meta || layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	struct kvt_store *st = cache->st;
	struct cache_rec *c = cache->rec;
	struct kvt_block_key k = {c->id, layer, (uint32_t)block};
	struct kvt_block_meta m;
	pthread_mutex_lock(&st->lock);
	uint64_t full = c->layers[layer].n_tokens / c->cfg.shape.block_tokens;
	int rc = block >= layer_blocks(c, layer) ? KVT_ENOTFOUND
		 : block >= full		 ? -ENOTSUP
						 : kvt_block_locate_locked(st, &k, loc, &m);
	if (rc == 0 && m.codec != KVT_CODEC_RAW)
		rc = -ENOTSUP;
	pthread_mutex_unlock(&st->lock);
	if (rc == 0)
		*meta = m;
	return rc;
}
