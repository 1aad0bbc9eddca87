/* rindex.c - the retrieval index: creation, adding keys, accessors. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "rindex_internal.h"
#include "vec.h"

void kvt_rindex_config_init(struct kvt_rindex_config *cfg)
{
	*cfg = (struct kvt_rindex_config){
		.cluster_tokens = 64, .chunk_tokens = 1024, .iters = 8,
		.frame_blocks = 1};
}

static int config_check(const struct kvt_rindex_config *c)
{
	if (c->cluster_tokens < 4 || c->cluster_tokens > 1024 ||
	    c->chunk_tokens > 65536 || c->chunk_tokens < c->cluster_tokens ||
	    c->chunk_tokens % c->cluster_tokens || c->iters < 1 ||
	    c->iters > 100 || c->frame_blocks < 1 || c->frame_blocks > 4096)
		return -EINVAL;
	return 0;
}

int kvt_rindex_create(const struct kvt_shape *shape,
		      const struct kvt_rindex_config *cfg,
		      struct kvt_rindex **out)
{
	struct kvt_rindex_config def;
	if (!cfg) {
		kvt_rindex_config_init(&def);
		cfg = &def;
	}
	if (!shape || !out || kvt_shape_check(shape) || config_check(cfg))
		return -EINVAL;
	struct kvt_rindex *x = calloc(1, sizeof *x);
	if (!x)
		return -ENOMEM;
	x->shape = *shape;
	x->cfg = *cfg;
	x->k_chunk = cfg->chunk_tokens / cfg->cluster_tokens;
	x->layers = calloc(shape->n_layers, sizeof *x->layers);
	if (!x->layers) {
		free(x);
		return -ENOMEM;
	}
	*out = x;
	return 0;
}

static void layer_free(struct rlayer *l)
{
	free(l->assign);
	free(l->cmean);
	free(l->csum);
	free(l->ccount);
	free(l->fmean);
	free(l->fsum);
	free(l->fhi);
	free(l->flo);
	free(l->bhi);
	free(l->blo);
	free(l->fcount);
	free(l->pend);
	free(l->pend_inv);
	free(l->usum);
	free(l->cent);
	free(l->fit);
}

void kvt_rindex_free(struct kvt_rindex *idx)
{
	if (!idx)
		return;
	for (uint32_t i = 0; idx->layers && i < idx->shape.n_layers; i++)
		layer_free(&idx->layers[i]);
	free(idx->layers);
	free(idx);
}

int kvt_rindex_get_shape(const struct kvt_rindex *idx, struct kvt_shape *shape,
			 struct kvt_rindex_config *cfg)
{
	if (!idx)
		return -EINVAL;
	if (shape)
		*shape = idx->shape;
	if (cfg)
		*cfg = idx->cfg;
	return 0;
}

/* ---------------------------------------------------------------- growth */

/* Grows *p (elem bytes per item, cap items) to hold need items, zeroing
 * the new part. */
static int grow(void **p, size_t elem, uint64_t *cap, uint64_t need)
{
	if (need <= *cap)
		return 0;
	uint64_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
	*p = q;
	*cap = n;
	return 0;
}

int kvt_rl_reserve(const struct kvt_rindex *x, struct rlayer *l,
		   uint64_t n_tokens, uint32_t n_clusters, uint32_t n_frames)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	uint64_t ct = l->cap_tokens, cc = l->cap_clusters, cc2 = cc;
	uint64_t cf = l->cap_frames, cf2 = cf, cf3 = cf, cf4 = cf;
	int rc = grow((void **)&l->assign, H * 2, &ct, n_tokens);
	if (rc == 0)
		rc = grow((void **)&l->cmean, H * d * 2, &cc, n_clusters);
	if (rc == 0)
		rc = grow((void **)&l->ccount, H * 4, &cc2, n_clusters);
	if (rc == 0)
		rc = grow((void **)&l->fmean, H * d * 2, &cf, n_frames);
	if (rc == 0)
		rc = grow((void **)&l->fcount, 4, &cf2, n_frames);
	if (rc == 0)
		rc = grow((void **)&l->fhi, H * d * 2, &cf3, n_frames);
	if (rc == 0)
		rc = grow((void **)&l->flo, H * d * 2, &cf4, n_frames);
	/* Capacities only move up together once every array has grown. */
	l->cap_tokens = ct;
	if (rc == 0) {
		l->cap_clusters = (uint32_t)(cc < cc2 ? cc : cc2);
		uint64_t a = cf < cf2 ? cf : cf2, b = cf3 < cf4 ? cf3 : cf4;
		l->cap_frames = (uint32_t)(a < b ? a : b);
	}
	return rc;
}

int kvt_rl_alloc_chunk(const struct kvt_rindex *x, struct rlayer *l)
{
	if (l->pend)
		return 0;
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	size_t ch = x->cfg.chunk_tokens, k = x->k_chunk;
	l->pend = malloc(H * ch * d * sizeof(float));
	l->pend_inv = malloc(H * ch * sizeof(float));
	l->usum = calloc(k * H * d, sizeof(float));
	l->cent = calloc(k * H * d, sizeof(float));
	l->fit = malloc(ch * sizeof(float));
	l->csum = calloc(k * H * d, sizeof(float));
	l->fsum = calloc(H * d, sizeof(float));
	l->bhi = calloc(H * d, sizeof(float));
	l->blo = calloc(H * d, sizeof(float));
	if (l->pend && l->pend_inv && l->usum && l->cent && l->fit && l->csum &&
	    l->fsum && l->bhi && l->blo)
		return 0;
	free(l->pend), free(l->pend_inv), free(l->usum), free(l->cent);
	free(l->fit), free(l->csum), free(l->fsum), free(l->bhi), free(l->blo);
	l->pend = l->pend_inv = l->usum = l->cent = l->fit = NULL;
	l->csum = l->fsum = l->bhi = l->blo = NULL;
	return -ENOMEM;
}

void kvt_rl_close_chunk(const struct kvt_rindex *x, struct rlayer *l)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	uint32_t c0 = rl_chunk_c0(x, l), k = l->n_clusters - c0;
	for (size_t j = 0; j < k; j++)
		for (size_t h = 0; h < H; h++) {
			size_t g = (c0 + j) * H + h;
			float *s = l->csum + (j * H + h) * d;
			float inv = l->ccount[g] ? 1.0f / (float)l->ccount[g] : 0.0f;
			for (size_t e = 0; e < d; e++)
				s[e] *= inv;
			kvt_from_f32(KVT_DTYPE_F16, s, l->cmean + g * d, d);
		}
	memset(l->csum, 0, (size_t)x->k_chunk * H * d * sizeof(float));
}

/* ---------------------------------------------------------------- add */

/* Tokens, clusters and frames the layer needs after n more tokens. */
static int reserve_for(const struct kvt_rindex *x, struct rlayer *l, uint32_t n)
{
	uint64_t nt = l->n_tokens + n;
	uint64_t ft = rl_frame_tokens(x);
	uint64_t chunks = (nt + x->cfg.chunk_tokens - 1) / x->cfg.chunk_tokens;
	uint64_t nc = chunks * x->k_chunk, nf = (nt + ft - 1) / ft;
	if (nc > UINT32_MAX || nf > UINT32_MAX)
		return -ENOMEM;
	int rc = kvt_rl_alloc_chunk(x, l);
	return rc ? rc : kvt_rl_reserve(x, l, nt, (uint32_t)nc, (uint32_t)nf);
}

void kvt_rl_open_bounds(const struct kvt_rindex *x, const struct rlayer *l,
			uint16_t *hi, uint16_t *lo)
{
	size_t n = (size_t)x->shape.n_kv_heads * x->shape.head_dim;
	for (size_t i = 0; i < n; i++) {
		hi[i] = kvt_f32_to_f16_ru(l->bhi[i]);
		lo[i] = kvt_f32_to_f16_rd(l->blo[i]);
	}
}

/* A complete frame keeps its unit mean key per head and its key bounds,
 * in fp16 (the bounds rounded outward, so they still hold). */
static void frame_close(const struct kvt_rindex *x, struct rlayer *l,
			uint32_t f)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim, at = (size_t)f * H * d;
	for (size_t h = 0; h < H; h++) {
		float *s = l->fsum + h * d, n = kvt_norm(s, d);
		float inv = n > 0 ? 1.0f / n : 0.0f;
		for (size_t e = 0; e < d; e++)
			s[e] *= inv;
		kvt_from_f32(KVT_DTYPE_F16, s, l->fmean + at + h * d, d);
	}
	kvt_rl_open_bounds(x, l, l->fhi + at, l->flo + at);
	memset(l->fsum, 0, H * d * sizeof(float));
}

/* Widens the open frame's bounds of head h to hold key k (the frame's
 * first key sets them). */
static void bounds_add(struct rlayer *l, size_t h, size_t d, const float *k,
		       int first)
{
	float *hi = l->bhi + h * d, *lo = l->blo + h * d;
	for (size_t e = 0; e < d; e++) {
		hi[e] = first || k[e] > hi[e] ? k[e] : hi[e];
		lo[e] = first || k[e] < lo[e] ? k[e] : lo[e];
	}
}

/* Adds the key of the token at pos (row of each head) to its frame. */
static void frame_add(const struct kvt_rindex *x, struct rlayer *l,
		      uint64_t pos, const float *const *rows)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	uint32_t f = (uint32_t)(pos / rl_frame_tokens(x));
	if (f >= l->n_frames)
		l->n_frames = f + 1;
	for (size_t h = 0; h < H; h++) {
		kvt_axpy(l->fsum + h * d, 1.0f, rows[h], d);
		bounds_add(l, h, d, rows[h], l->fcount[f] == 0);
	}
	if (++l->fcount[f] == rl_frame_tokens(x))
		frame_close(x, l, f);
}

/* Copies token t of keys into the chunk as pending token i. */
static void pend_put(const struct kvt_rindex *x, struct rlayer *l,
		     const void *keys, uint32_t n, uint32_t t, uint32_t i,
		     const float **rows)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	size_t ch = x->cfg.chunk_tokens, es = kvt_dtype_size(x->shape.dtype);
	for (size_t h = 0; h < H; h++) {
		float *dst = l->pend + (h * ch + i) * d;
		kvt_to_f32(x->shape.dtype,
			   (const char *)keys + ((h * n + t) * d) * es, dst, d);
		float nrm = kvt_norm(dst, d);
		l->pend_inv[h * ch + i] = nrm > 0 ? 1.0f / nrm : 0.0f;
		rows[h] = dst;
	}
}

static void add_one(struct kvt_rindex *x, struct rlayer *l, const void *keys,
		    uint32_t n, uint32_t t)
{
	const float *rows[KVT_MAX_KV_HEADS];
	uint32_t i = l->pend_n;
	pend_put(x, l, keys, n, t, i, rows);
	frame_add(x, l, l->n_tokens, rows);
	l->pend_n++;
	l->n_tokens++;
	kvt_km_add_token(x, l, i);
	if (l->pend_n == x->cfg.chunk_tokens) {
		kvt_km_refine(x, l);
		kvt_rl_close_chunk(x, l);
		l->pend_n = 0;
	}
}

int kvt_rindex_add(struct kvt_rindex *idx, uint32_t layer, const void *keys,
		   uint32_t n_tokens)
{
	if (!idx || layer >= idx->shape.n_layers || (!keys && n_tokens))
		return -EINVAL;
	struct rlayer *l = &idx->layers[layer];
	int rc = reserve_for(idx, l, n_tokens);
	for (uint32_t t = 0; rc == 0 && t < n_tokens; t++)
		add_one(idx, l, keys, n_tokens, t);
	return rc;
}

int kvt_rindex_refine(struct kvt_rindex *idx, uint32_t layer)
{
	if (!idx || (layer >= idx->shape.n_layers && layer != UINT32_MAX))
		return -EINVAL;
	for (uint32_t i = 0; i < idx->shape.n_layers; i++)
		if ((layer == UINT32_MAX || i == layer) && idx->layers[i].pend_n)
			kvt_km_refine(idx, &idx->layers[i]);
	return 0;
}

/* ---------------------------------------------------------------- accessors */

int kvt_rindex_layer_info(const struct kvt_rindex *idx, uint32_t layer,
			  struct kvt_rindex_layer_info *out)
{
	if (!idx || !out || layer >= idx->shape.n_layers)
		return -EINVAL;
	const struct rlayer *l = &idx->layers[layer];
	*out = (struct kvt_rindex_layer_info){l->n_tokens, l->n_clusters,
					      l->n_frames, l->pend_n};
	return 0;
}

int kvt_rindex_get_assign(const struct kvt_rindex *idx, uint32_t layer,
			  uint32_t head, uint64_t first, uint32_t n,
			  uint32_t *ids)
{
	if (!idx || !ids || layer >= idx->shape.n_layers ||
	    head >= idx->shape.n_kv_heads)
		return -EINVAL;
	const struct rlayer *l = &idx->layers[layer];
	if (first > l->n_tokens || n > l->n_tokens - first)
		return KVT_ENOTFOUND;
	size_t H = idx->shape.n_kv_heads;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t t = first + i;
		ids[i] = (uint32_t)(t / idx->cfg.chunk_tokens) * idx->k_chunk +
			 l->assign[t * H + head];
	}
	return 0;
}

int kvt_rindex_get_cluster(const struct kvt_rindex *idx, uint32_t layer,
			   uint32_t head, uint32_t cluster, uint32_t *size,
			   float *mean)
{
	if (!idx || layer >= idx->shape.n_layers ||
	    head >= idx->shape.n_kv_heads)
		return -EINVAL;
	const struct rlayer *l = &idx->layers[layer];
	if (cluster >= l->n_clusters)
		return KVT_ENOTFOUND;
	size_t H = idx->shape.n_kv_heads, d = idx->shape.head_dim;
	uint32_t cnt = l->ccount[(size_t)cluster * H + head], c0 = rl_chunk_c0(idx, l);
	if (mean && cluster < c0) {
		kvt_to_f32(KVT_DTYPE_F16, l->cmean + ((size_t)cluster * H + head) * d,
			   mean, d);
	} else if (mean) {
		const float *s = l->csum + ((size_t)(cluster - c0) * H + head) * d;
		for (size_t i = 0; i < d; i++)
			mean[i] = cnt ? s[i] / (float)cnt : 0.0f;
	}
	if (size)
		*size = cnt;
	return 0;
}

int kvt_rindex_get_frame_bounds(const struct kvt_rindex *idx, uint32_t layer,
				uint32_t head, uint32_t frame, float *hi,
				float *lo)
{
	if (!idx || layer >= idx->shape.n_layers ||
	    head >= idx->shape.n_kv_heads)
		return -EINVAL;
	const struct rlayer *l = &idx->layers[layer];
	if (frame >= l->n_frames)
		return KVT_ENOTFOUND;
	size_t H = idx->shape.n_kv_heads, d = idx->shape.head_dim;
	size_t at = ((size_t)frame * H + head) * d;
	int closed = frame < rl_full_frames(idx, l);
	if (hi && closed)
		kvt_to_f32(KVT_DTYPE_F16, l->fhi + at, hi, d);
	else if (hi)
		memcpy(hi, l->bhi + head * d, d * sizeof *hi);
	if (lo && closed)
		kvt_to_f32(KVT_DTYPE_F16, l->flo + at, lo, d);
	else if (lo)
		memcpy(lo, l->blo + head * d, d * sizeof *lo);
	return 0;
}
