/*
 * gpu_select.c - kvt_retrieve_gpu: Quest (here) and ClusterKV (gpu_ckv.c)
 * selection with the scoring and the top-k on the GPU (kernels/select.cu),
 * over a device copy of the index that follows the host index layer by
 * layer.
 *
 * Per layer the device keeps hi, lo (fp16 [cap][H][d]) and cnt ([cap]):
 * complete frames are uploaded once, when first seen closed; the open
 * frame's float bounds are rounded outward to fp16 and uploaded into its
 * slot on every call. Scratch (query rows, logits, keys, flags) grows to
 * the largest request seen. One stream per object; calls are synchronous.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "kvt_kernels.h"
#include "gpu_internal.h"

int kvt_rg_dbuf_need(struct dbuf *b, size_t len)
{
	if (len <= b->cap)
		return 0;
	kvt_gpu_free(b->p);
	b->p = NULL, b->cap = 0;
	int rc = kvt_gpu_malloc(len, &b->p);
	if (rc == 0)
		b->cap = len;
	return rc;
}

int kvt_rg_host_need(struct kvt_rindex_gpu *g, size_t len)
{
	if (len <= g->host_cap)
		return 0;
	kvt_gpu_host_free(g->host);
	g->host = NULL, g->host_cap = 0;
	int rc = kvt_gpu_host_alloc(len, &g->host);
	if (rc == 0)
		g->host_cap = len;
	return rc;
}

int kvt_rindex_gpu_create(const struct kvt_rindex *idx, struct kvt_rindex_gpu **out)
{
	if (!idx || !out)
		return -EINVAL;
	int rc = kvt_gpu_available();
	if (rc)
		return rc;
	struct kvt_rindex_gpu *g = calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	g->shape = idx->shape;
	g->layers = calloc(idx->shape.n_layers, sizeof *g->layers);
	rc = g->layers ? kvt_stream_create(&g->s) : -ENOMEM;
	if (rc) {
		kvt_rindex_gpu_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

void kvt_rindex_gpu_free(struct kvt_rindex_gpu *g)
{
	if (!g)
		return;
	if (g->s)
		kvt_stream_sync(g->s);
	for (uint32_t i = 0; g->layers && i < g->shape.n_layers; i++) {
		kvt_gpu_free(g->layers[i].hi);
		kvt_gpu_free(g->layers[i].lo);
		kvt_gpu_free(g->layers[i].cnt);
		kvt_gpu_free(g->layers[i].mean);
		kvt_gpu_free(g->layers[i].ccount);
		kvt_gpu_free(g->layers[i].assign);
	}
	struct dbuf *bufs[] = {&g->q, &g->lg, &g->stats, &g->key, &g->sel, &g->w};
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		kvt_gpu_free(bufs[i]->p);
	kvt_gpu_host_free(g->host);
	kvt_stream_destroy(g->s);
	free(g->layers);
	free(g);
}

/* ---------------------------------------------------------------- upload */

/* Moves *p (elem bytes x old items, device) into a new buffer of cap items. */
int kvt_rg_regrow(struct kvt_rindex_gpu *g, void **p, size_t elem, size_t old,
		  size_t cap)
{
	void *n;
	int rc = kvt_gpu_malloc((size_t)cap * elem, &n);
	if (rc == 0 && old)
		rc = kvt_gpu_copy_async(n, *p, (size_t)old * elem, g->s);
	if (rc == 0)
		rc = kvt_stream_sync(g->s);
	if (rc) {
		kvt_gpu_free(n);
		return rc;
	}
	kvt_gpu_free(*p);
	*p = n;
	return 0;
}

static int layer_reserve(struct kvt_rindex_gpu *g, struct glayer *gl,
			 uint32_t frames)
{
	if (frames <= gl->cap)
		return 0;
	size_t row = (size_t)g->shape.n_kv_heads * g->shape.head_dim * 2;
	uint32_t cap = gl->cap ? gl->cap : 64;
	while (cap < frames)
		cap = cap > UINT32_MAX / 2 ? frames : cap * 2;
	/* what is on the device stays: frames [0, closed) and their sizes */
	int rc = kvt_rg_regrow(g, (void **)&gl->hi, row, gl->closed, cap);
	if (rc == 0)
		rc = kvt_rg_regrow(g, (void **)&gl->lo, row, gl->closed, cap);
	if (rc == 0)
		rc = kvt_rg_regrow(g, (void **)&gl->cnt, 4, gl->closed, cap);
	if (rc == 0)
		gl->cap = cap;
	return rc;
}

/* Enqueues what the device copy of layer `layer` lacks from the host
 * index (aux: staging for the open frame's bounds, 4 * H * d bytes). */
static int layer_sync(struct kvt_rindex_gpu *g, const struct kvt_rindex *x,
		      uint32_t layer, void *aux)
{
	const struct rlayer *l = &x->layers[layer];
	struct glayer *gl = &g->layers[layer];
	uint32_t full = rl_full_frames(x, l), nf = l->n_frames;
	size_t row = (size_t)g->shape.n_kv_heads * g->shape.head_dim;
	if (gl->closed > full) /* the host index was rebuilt */
		gl->closed = 0;
	int rc = layer_reserve(g, gl, nf);
	uint32_t from = gl->closed, n = full - from;
	if (rc == 0 && n)
		rc = kvt_gpu_copy_async(gl->hi + from * row, l->fhi + from * row,
					n * row * 2, g->s);
	if (rc == 0 && n)
		rc = kvt_gpu_copy_async(gl->lo + from * row, l->flo + from * row,
					n * row * 2, g->s);
	if (rc == 0 && nf > from)
		rc = kvt_gpu_copy_async(gl->cnt + from, l->fcount + from,
					(size_t)(nf - from) * 4, g->s);
	if (rc == 0 && full < nf) {
		uint16_t *st = aux;
		kvt_rl_open_bounds(x, l, st, st + row);
		rc = kvt_gpu_copy_async(gl->hi + full * row, st, row * 2, g->s);
		if (rc == 0)
			rc = kvt_gpu_copy_async(gl->lo + full * row, st + row, row * 2, g->s);
	}
	/* Copies from pageable host memory return once the bytes are taken;
	 * the staging is not touched again before the request's final sync. */
	if (rc == 0)
		gl->closed = full;
	return rc;
}

/* ---------------------------------------------------------------- select */

/* Staging holds the query rows, then (from here) what the mode's sync
 * stages; the selection flags come back over the query rows at the end. */
static size_t aux_offset(const struct kvt_rindex_gpu *g, const struct request *r)
{
	size_t qb = 2 * (size_t)r->rows * g->shape.head_dim * sizeof(float);
	return (qb + 63) & ~(size_t)63;
}

/* Scratch and staging for a request; r->nf counts frames (Quest) or
 * clusters (ClusterKV), extra the staging the mode's sync needs. */
static int scratch(struct kvt_rindex_gpu *g, const struct request *r,
		   size_t extra)
{
	size_t H = g->shape.n_kv_heads;
	size_t qb = 2 * (size_t)r->rows * g->shape.head_dim * sizeof(float);
	size_t stage = aux_offset(g, r) + extra;
	stage = stage > r->nb ? stage : r->nb;
	int rc = kvt_rg_dbuf_need(&g->q, qb);
	if (rc == 0)
		rc = kvt_rg_dbuf_need(&g->w, (size_t)r->nf * H * sizeof(float));
	if (rc == 0)
		rc = kvt_rg_dbuf_need(&g->lg, (size_t)r->rows * r->nf * sizeof(float));
	if (rc == 0)
		rc = kvt_rg_dbuf_need(&g->stats, 2 * (size_t)r->rows * sizeof(float));
	if (rc == 0)
		rc = kvt_rg_dbuf_need(&g->key, (size_t)r->nb * 4);
	if (rc == 0)
		rc = kvt_rg_dbuf_need(&g->sel, r->nb);
	return rc ? rc : kvt_rg_host_need(g, stage);
}

/* Query rows (q's own order: kv head, then its group's vectors) into
 * staging, then uploaded: as they are (ClusterKV) or split into positive
 * and negative parts (Quest). */
static int upload_queries(struct kvt_rindex_gpu *g, const float *q,
			  const struct request *r, int split)
{
	size_t n = (size_t)r->rows * g->shape.head_dim;
	float *qp = g->host, *qn = qp + n;
	if (!split) {
		memcpy(qp, q, n * sizeof *qp);
		return kvt_gpu_copy_async(g->q.p, g->host, n * sizeof(float), g->s);
	}
	for (size_t i = 0; i < n; i++) {
		qp[i] = q[i] > 0 ? q[i] : 0.0f;
		qn[i] = q[i] < 0 ? q[i] : 0.0f;
	}
	return kvt_gpu_copy_async(g->q.p, g->host, 2 * n * sizeof(float), g->s);
}

/* Quest block keys into g->key. */
static int quest_keys(struct kvt_rindex_gpu *g, uint32_t layer,
		      const struct kvt_rt_layout *lay,
		      const struct kvt_retrieve_params *p, const struct request *r,
		      uint32_t frame_blocks)
{
	const struct glayer *gl = &g->layers[layer];
	float *qp = g->q.p;
	struct kvt_quest_args a = {
		.qp = qp, .qn = qp + (size_t)r->rows * g->shape.head_dim,
		.rows = r->rows, .rows_per_head = r->per_head,
		.hi = gl->hi, .lo = gl->lo, .cnt = gl->cnt,
		.n_kv_heads = g->shape.n_kv_heads, .head_dim = g->shape.head_dim,
		.n_frames = r->nf, .frame_blocks = frame_blocks, .n_blocks = r->nb,
		.sink_blocks = (uint32_t)kvt_rt_sink_blocks(lay, p),
		.recent_first = (uint32_t)kvt_rt_recent_first(lay, p),
		.scale = 1.0f / sqrtf((float)g->shape.head_dim),
		.lg = g->lg.p, .stats = g->stats.p, .key = g->key.p};
	if (a.sink_blocks > a.recent_first)
		a.sink_blocks = a.recent_first; /* overlapping sink and window */
	return kvt_gpu_quest_keys(&a, g->s);
}

/* The mode's keys, the top k of them, the flags back to staging. */
static int run_kernels(struct kvt_rindex_gpu *g, const struct kvt_rindex *x,
		       uint32_t layer, const struct kvt_rt_layout *lay,
		       const struct kvt_retrieve_params *p, const struct request *r)
{
	int rc = p->mode == KVT_RETRIEVE_QUEST
			 ? quest_keys(g, layer, lay, p, r, x->cfg.frame_blocks)
			 : kvt_rg_ckv_keys(g, x, layer, lay, p, r);
	if (rc == 0)
		rc = kvt_gpu_select_top(g->key.p, r->nb, (uint32_t)r->k, g->sel.p, g->s);
	if (rc == 0)
		rc = kvt_gpu_copy_async(g->host, g->sel.p, r->nb, g->s);
	return rc ? rc : kvt_stream_sync(g->s);
}

/* The GPU's picks (flags in reversed block order in staging) joined to
 * the forced blocks while they fit, as kvt_retrieve's fill does. */
static void take_picks(const struct kvt_rindex_gpu *g,
		       const struct kvt_rt_layout *lay, uint8_t *sel,
		       uint64_t left)
{
	const uint8_t *flag = g->host;
	for (uint32_t b = lay->nb; b-- > 0;)
		if (flag[lay->nb - 1 - b] && !sel[b] && kvt_rt_valid(lay, b) <= left) {
			sel[b] = 1;
			left -= kvt_rt_valid(lay, b);
		}
}

static int select_gpu(struct kvt_rindex_gpu *g, const struct kvt_rindex *x,
		      uint32_t layer, const struct kvt_retrieve_params *p,
		      const float *q, const struct kvt_rt_layout *lay, uint8_t *sel)
{
	int quest = p->mode == KVT_RETRIEVE_QUEST;
	if (lay->n <= p->budget_tokens) {
		memset(sel, 1, lay->nb);
		return 0;
	}
	uint64_t forced = kvt_rt_mark_forced(lay, p, sel), free_b = 0;
	if (forced > p->budget_tokens)
		return -EINVAL;
	for (uint32_t b = 0; b < lay->nb; b++)
		free_b += !sel[b];
	uint64_t left = p->budget_tokens - forced, k = left / lay->bt;
	const struct rlayer *l = &x->layers[layer];
	struct request r = {p->n_q_heads * p->n_queries,
			    (p->n_q_heads / x->shape.n_kv_heads) * p->n_queries,
			    quest ? l->n_frames : l->n_clusters, lay->nb,
			    k < free_b ? k : free_b};
	if (r.k == 0)
		return 0;
	size_t row = (size_t)x->shape.n_kv_heads * x->shape.head_dim;
	int rc = scratch(g, &r, quest ? 4 * row : kvt_rg_ckv_staging(x, layer));
	void *aux = (char *)g->host + aux_offset(g, &r);
	if (rc == 0)
		rc = quest ? layer_sync(g, x, layer, aux) : kvt_rg_ckv_sync(g, x, layer, aux);
	if (rc == 0)
		rc = upload_queries(g, q, &r, quest);
	if (rc == 0)
		rc = run_kernels(g, x, layer, lay, p, &r);
	if (rc) { /* what reached the device is unknown: upload it all again */
		struct glayer *gl = &g->layers[layer];
		gl->closed = 0, gl->closed_c = 0, gl->closed_t = 0;
	}
	if (rc == 0)
		take_picks(g, lay, sel, left);
	return rc;
}

int kvt_retrieve_gpu(struct kvt_rindex_gpu *g, const struct kvt_rindex *idx,
		     uint32_t layer, const struct kvt_retrieve_params *p,
		     const float *q, struct kvt_selection *out)
{
	if (!g || !idx || !p || !q || !out || layer >= idx->shape.n_layers ||
	    kvt_rt_params_check(idx, p) ||
	    memcmp(&g->shape, &idx->shape, sizeof g->shape))
		return -EINVAL;
	if (p->mode != KVT_RETRIEVE_QUEST && p->mode != KVT_RETRIEVE_CLUSTERKV)
		return -EOPNOTSUPP;
	if (p->n_q_heads * p->n_queries > 65535)
		return -EINVAL;
	const struct rlayer *l = &idx->layers[layer];
	if (l->n_tokens == 0)
		return KVT_ENOTFOUND;
	uint32_t bt = idx->shape.block_tokens;
	struct kvt_rt_layout lay = {l->n_tokens, bt,
				    (uint32_t)((l->n_tokens + bt - 1) / bt)};
	uint8_t *sel = calloc(lay.nb, 1);
	if (!sel)
		return -ENOMEM;
	int rc = select_gpu(g, idx, layer, p, q, &lay, sel);
	if (rc == 0)
		rc = kvt_rt_emit(&lay, sel, layer, out);
	free(sel);
	return rc;
}
