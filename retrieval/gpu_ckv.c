/*
 * gpu_ckv.c - the ClusterKV side of kvt_retrieve_gpu: a device copy of a
 * layer's cluster means (fp16), sizes and per-token cluster ids, and the
 * launch of its block keys (kernels/select.cu).
 *
 * Clusters and tokens of closed chunks never change: they are uploaded
 * once. The open chunk's clusters (key sums on the host) are turned into
 * fp16 means, and its tokens' ids (refinement may move them) uploaded, on
 * every call. The host turns them into means in float; the device rounds
 * them to fp16 first, so blocks of the open chunk may score a little
 * differently.
 */
#include <errno.h>
#include <math.h>

#include "gpu_internal.h"
#include "half.h"

size_t kvt_rg_ckv_staging(const struct kvt_rindex *x, uint32_t layer)
{
	const struct rlayer *l = &x->layers[layer];
	size_t open = l->n_clusters - rl_chunk_c0(x, l);
	return open * x->shape.n_kv_heads * x->shape.head_dim * 2;
}

static int ckv_reserve(struct kvt_rindex_gpu *g, struct glayer *gl,
		       uint32_t clusters, uint64_t tokens)
{
	size_t H = g->shape.n_kv_heads, d = g->shape.head_dim;
	int rc = 0;
	if (clusters > gl->cap_c) {
		uint32_t cap = gl->cap_c ? gl->cap_c : 64;
		while (cap < clusters)
			cap = cap > UINT32_MAX / 2 ? clusters : cap * 2;
		rc = kvt_rg_regrow(g, (void **)&gl->mean, H * d * 2, gl->closed_c, cap);
		if (rc == 0)
			rc = kvt_rg_regrow(g, (void **)&gl->ccount, H * 4, gl->closed_c, cap);
		if (rc == 0)
			gl->cap_c = cap;
	}
	if (rc == 0 && tokens > gl->cap_t) {
		uint64_t cap = gl->cap_t ? gl->cap_t : 4096;
		while (cap < tokens)
			cap *= 2;
		rc = kvt_rg_regrow(g, (void **)&gl->assign, H * 2, gl->closed_t, cap);
		if (rc == 0)
			gl->cap_t = cap;
	}
	return rc;
}

/* The open chunk's clusters as fp16 means, into staging. */
static void open_means(const struct kvt_rindex *x, const struct rlayer *l,
		       uint32_t c0, uint16_t *out)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	for (uint32_t c = c0; c < l->n_clusters; c++)
		for (size_t h = 0; h < H; h++) {
			const float *sum = l->csum + ((size_t)(c - c0) * H + h) * d;
			uint32_t cnt = l->ccount[(size_t)c * H + h];
			float inv = cnt ? 1.0f / (float)cnt : 0.0f;
			uint16_t *o = out + ((size_t)(c - c0) * H + h) * d;
			for (size_t e = 0; e < d; e++)
				o[e] = kvt_f32_to_f16(sum[e] * inv);
		}
}

static int upload(struct kvt_rindex_gpu *g, void *dst, const void *src,
		  size_t len)
{
	return len ? kvt_gpu_copy_async(dst, src, len, g->s) : 0;
}

int kvt_rg_ckv_sync(struct kvt_rindex_gpu *g, const struct kvt_rindex *x,
		    uint32_t layer, void *aux)
{
	const struct rlayer *l = &x->layers[layer];
	struct glayer *gl = &g->layers[layer];
	size_t H = x->shape.n_kv_heads, row = H * x->shape.head_dim;
	uint32_t c0 = rl_chunk_c0(x, l), nc = l->n_clusters;
	uint64_t t0 = l->n_tokens - l->pend_n, nt = l->n_tokens;
	if (gl->closed_c > c0 || gl->closed_t > t0) /* the host index was rebuilt */
		gl->closed_c = 0, gl->closed_t = 0;
	int rc = ckv_reserve(g, gl, nc, nt);
	uint32_t fc = gl->closed_c;
	uint64_t ft = gl->closed_t;
	if (rc == 0)
		rc = upload(g, gl->mean + fc * row, l->cmean + fc * row,
			    (size_t)(c0 - fc) * row * 2);
	if (rc == 0)
		rc = upload(g, gl->ccount + fc * H, l->ccount + fc * H,
			    (size_t)(nc - fc) * H * 4);
	if (rc == 0)
		rc = upload(g, gl->assign + ft * H, l->assign + ft * H,
			    (size_t)(nt - ft) * H * 2);
	if (rc == 0 && nc > c0) {
		open_means(x, l, c0, aux);
		rc = upload(g, gl->mean + (size_t)c0 * row, aux,
			    (size_t)(nc - c0) * row * 2);
	}
	if (rc == 0) /* staging is free after the request's final sync */
		gl->closed_c = c0, gl->closed_t = t0;
	return rc;
}

int kvt_rg_ckv_keys(struct kvt_rindex_gpu *g, const struct kvt_rindex *x,
		    uint32_t layer, const struct kvt_rt_layout *lay,
		    const struct kvt_retrieve_params *p, const struct request *r)
{
	const struct glayer *gl = &g->layers[layer];
	struct kvt_ckv_args a = {
		.q = g->q.p, .rows = r->rows, .rows_per_head = r->per_head,
		.mean = gl->mean, .ccount = gl->ccount, .assign = gl->assign,
		.n_kv_heads = x->shape.n_kv_heads, .head_dim = x->shape.head_dim,
		.n_clusters = r->nf, .k_chunk = x->k_chunk,
		.chunk_tokens = x->cfg.chunk_tokens, .n_tokens = lay->n,
		.block_tokens = lay->bt, .n_blocks = lay->nb,
		.sink_blocks = (uint32_t)kvt_rt_sink_blocks(lay, p),
		.recent_first = (uint32_t)kvt_rt_recent_first(lay, p),
		.scale = 1.0f / sqrtf((float)x->shape.head_dim),
		.lg = g->lg.p, .stats = g->stats.p, .w = g->w.p, .key = g->key.p};
	if (a.sink_blocks > a.recent_first)
		a.sink_blocks = a.recent_first;
	return kvt_gpu_clusterkv_keys(&a, g->s);
}
