/* rekv.c - ReKV-style prefill, retrieval and loading over kvtier (see rekv.h). */
#include "rekv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct llm_rekv {
	struct llm_model *m;
	struct llm_pool *pool;
	struct llm_config c;
	struct llm_rekv_config cfg;
	struct llm_kvstore **stores;
	uint32_t n_stores, bt, max_tokens, max_blocks;
	uint32_t n;        /* document tokens prefilled */
	/* sliding window per layer: [kv_head][cap][dim], cap = sink+window+chunk */
	float **wk, **wv;
	uint32_t *wlen, wcap;
	int64_t *sink_pos; /* per layer: position the sink keys are rotated to */
	/* retrieval metadata: key sums [layer][block][kv_head][dim] */
	float *ksum;
	uint16_t *hk, *hv; /* f16 staging of one chunk for the store */
	/* Saliency for ZipCache stores (cfg.saliency): those get each token
	 * late, when it leaves the window (or at llm_rekv_flush), with its
	 * score: attention received / (queries that saw it * n_head). */
	uint8_t *held;     /* per store: 1 = appended late with scores */
	uint32_t n_held;
	uint32_t *sent;    /* per layer: tokens appended to the held stores */
	float *sal;        /* [layer][max_tokens] attention received */
	uint32_t *sal_n;   /* [layer][max_tokens] queries that saw the token */
	float *att;        /* [wcap] the model's column sums of one layer */
	float *gs;         /* [wcap] scores staging */
	uint16_t *gk, *gv; /* [kv_head][wcap][dim] f16 staging */
};

void llm_rekv_config_init(struct llm_rekv_config *cfg)
{
	*cfg = (struct llm_rekv_config){128, 1024, 32, 32, 0, 0, 1};
}

/* Undoes RoPE on one head vector at position pos (see model.h). */
static void unrope(const struct llm_config *c, float *x, uint32_t pos)
{
	llm_rope_shift(c, x, -(int64_t)pos);
}

static int alloc_windows(struct llm_rekv *r)
{
	size_t per = (size_t)r->c.n_kv_head * r->wcap * r->c.head_dim * sizeof(float);
	r->wk = calloc(r->c.n_layers, sizeof(float *));
	r->wv = calloc(r->c.n_layers, sizeof(float *));
	r->wlen = calloc(r->c.n_layers, sizeof(uint32_t));
	r->sink_pos = calloc(r->c.n_layers, sizeof(int64_t));
	if (!r->wk || !r->wv || !r->wlen || !r->sink_pos)
		return -ENOMEM;
	for (uint32_t l = 0; l < r->c.n_layers; l++)
		if (!(r->wk[l] = malloc(per)) || !(r->wv[l] = malloc(per)))
			return -ENOMEM;
	return 0;
}

static int alloc_rest(struct llm_rekv *r)
{
	size_t kvd = (size_t)r->c.n_kv_head * r->c.head_dim;
	r->ksum = calloc((size_t)r->c.n_layers * r->max_blocks * kvd, sizeof(float));
	r->hk = malloc((size_t)r->cfg.chunk * kvd * 2);
	r->hv = malloc((size_t)r->cfg.chunk * kvd * 2);
	return r->ksum && r->hk && r->hv ? 0 : -ENOMEM;
}

static int alloc_saliency(struct llm_rekv *r)
{
	size_t kvd = (size_t)r->c.n_kv_head * r->c.head_dim;
	size_t per = (size_t)r->c.n_layers * r->max_tokens;
	r->held = calloc(r->n_stores ? r->n_stores : 1, 1);
	if (!r->held)
		return -ENOMEM;
	for (uint32_t s = 0; s < r->n_stores && r->cfg.saliency; s++)
		r->n_held += r->held[s] = (uint8_t)llm_kvstore_wants_scores(r->stores[s]);
	if (!r->n_held)
		return 0;
	r->sent = calloc(r->c.n_layers, sizeof(uint32_t));
	r->sal = calloc(per, sizeof(float));
	r->sal_n = calloc(per, sizeof(uint32_t));
	r->att = malloc(r->wcap * sizeof(float));
	r->gs = malloc(r->wcap * sizeof(float));
	r->gk = malloc(r->wcap * kvd * 2);
	r->gv = malloc(r->wcap * kvd * 2);
	return r->sent && r->sal && r->sal_n && r->att && r->gs && r->gk && r->gv
		       ? 0 : -ENOMEM;
}

int llm_rekv_create(struct llm_model *m, struct llm_pool *pool,
		    const struct llm_rekv_config *cfg, struct llm_kvstore **stores,
		    uint32_t n_stores, uint32_t max_tokens, struct llm_rekv **out)
{
	if (!m || !pool || !cfg || (!stores && n_stores) || cfg->chunk == 0 ||
	    max_tokens == 0)
		return -EINVAL;
	const struct llm_config *c = llm_model_config(m);
	uint32_t bt = n_stores ? llm_kvstore_config(stores[0])->shape.block_tokens : 16;
	for (uint32_t i = 0; i < n_stores; i++) {
		const struct kvt_shape *s = &llm_kvstore_config(stores[i])->shape;
		if (s->block_tokens != bt || s->n_layers != c->n_layers ||
		    s->n_kv_heads != c->n_kv_head || s->head_dim != c->head_dim ||
		    s->dtype != KVT_DTYPE_F16)
			return -EINVAL;
	}
	struct llm_rekv *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct llm_rekv){.m = m, .pool = pool, .c = *c, .cfg = *cfg,
			       .stores = stores, .n_stores = n_stores, .bt = bt,
			       .max_tokens = max_tokens};
	r->max_blocks = (max_tokens + bt - 1) / bt;
	if (r->cfg.max_pos == 0)
		r->cfg.max_pos = c->n_ctx_train ? c->n_ctx_train : UINT32_MAX;
	r->wcap = cfg->sink + cfg->window + cfg->chunk;
	int rc = alloc_windows(r);
	if (rc == 0)
		rc = alloc_rest(r);
	if (rc == 0)
		rc = alloc_saliency(r);
	if (rc) {
		llm_rekv_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void llm_rekv_free(struct llm_rekv *r)
{
	if (!r)
		return;
	for (uint32_t l = 0; r->wk && l < r->c.n_layers; l++) {
		free(r->wk[l]);
		free(r->wv ? r->wv[l] : NULL);
	}
	free(r->wk);
	free(r->wv);
	free(r->wlen);
	free(r->sink_pos);
	free(r->ksum);
	free(r->hk);
	free(r->hv);
	free(r->held);
	free(r->sent);
	free(r->sal);
	free(r->sal_n);
	free(r->att);
	free(r->gs);
	free(r->gk);
	free(r->gv);
	free(r);
}

uint32_t llm_rekv_tokens(const struct llm_rekv *r) { return r->n; }
uint32_t llm_rekv_blocks(const struct llm_rekv *r) { return (r->n + r->bt - 1) / r->bt; }
uint32_t llm_rekv_block_tokens(const struct llm_rekv *r) { return r->bt; }

int llm_rekv_forced(const struct llm_rekv *r, uint32_t b)
{
	uint32_t sink_b = (r->cfg.sink + r->bt - 1) / r->bt;
	uint32_t recent_first = r->n > r->cfg.recent ? (r->n - r->cfg.recent) / r->bt : 0;
	return b < sink_b || b >= recent_first;
}

/* ---------------------------------------------------------------- prefill */

/* Past the model's positions the sink would sit further from the new
 * tokens than it ever was in training: move its keys to just before the
 * window (as StreamingLLM does), so every distance stays in range. */
static void move_sink(struct llm_rekv *r, uint32_t l)
{
	uint32_t s = r->cfg.sink < r->wlen[l] ? r->cfg.sink : r->wlen[l], hd = r->c.head_dim;
	if ((uint64_t)r->n + r->cfg.chunk <= r->cfg.max_pos || r->wlen[l] <= s)
		return;
	int64_t target = (int64_t)r->n - (int64_t)(r->wlen[l] - s) - (int64_t)s;
	int64_t shift = target - r->sink_pos[l];
	for (uint32_t h = 0; shift && h < r->c.n_kv_head; h++)
		for (uint32_t t = 0; t < s; t++)
			llm_rope_shift(&r->c, r->wk[l] + ((size_t)h * r->wcap + t) * hd, shift);
	r->sink_pos[l] = target;
}

static int window_context(void *arg, uint32_t layer, struct llm_ctx_view *view)
{
	struct llm_rekv *r = arg;
	move_sink(r, layer);
	*view = (struct llm_ctx_view){r->wlen[layer], r->wcap, r->wk[layer], r->wv[layer], NULL};
	return 0;
}

static int prefill_context(void *arg, uint32_t layer, struct llm_ctx_view *view)
{
	struct llm_rekv *r = arg;
	int rc = window_context(r, layer, view);
	if (rc == 0 && r->n_held) {
		memset(r->att, 0, r->wcap * sizeof(float));
		view->att_sum = r->att;
	}
	return rc;
}

/* Document position of window slot i when the window holds n tokens, the
 * last at position end - 1 (the sink first, then consecutive tokens). */
static uint32_t slot_pos(const struct llm_rekv *r, uint32_t i, uint32_t n, uint32_t end)
{
	return i < r->cfg.sink ? i : end - n + i;
}

/* Adds layer l's column sums (r->att, window of n then T new tokens) to the
 * tokens' saliency: every window token was seen by T queries, new token i
 * by T - i. */
static void saliency_add(struct llm_rekv *r, uint32_t l, uint32_t T)
{
	uint32_t n = r->wlen[l];
	float *sal = r->sal + (size_t)l * r->max_tokens;
	uint32_t *cnt = r->sal_n + (size_t)l * r->max_tokens;
	for (uint32_t i = 0; i < n + T; i++) {
		uint32_t p = slot_pos(r, i, n + T, r->n + T);
		sal[p] += r->att[i] / (float)r->c.n_head;
		cnt[p] += i < n ? T : T - (i - n);
	}
}

/* Window slot i of layer l to f16 staging slot c ([head][wcap][dim]); sink
 * keys moved by move_sink are rotated back to their positions. */
static void stage_slot(struct llm_rekv *r, uint32_t l, uint32_t i, uint32_t c)
{
	uint32_t hd = r->c.head_dim;
	float tmp[KVT_MAX_HEAD_DIM];
	for (uint32_t h = 0; h < r->c.n_kv_head; h++) {
		size_t src = ((size_t)h * r->wcap + i) * hd, dst = ((size_t)h * r->wcap + c) * hd;
		memcpy(tmp, r->wk[l] + src, hd * sizeof(float));
		if (i < r->cfg.sink && r->sink_pos[l])
			llm_rope_shift(&r->c, tmp, -r->sink_pos[l]);
		for (uint32_t d = 0; d < hd; d++) {
			r->gk[dst + d] = llm_f32_to_f16(tmp[d]);
			r->gv[dst + d] = llm_f32_to_f16(r->wv[l][src + d]);
		}
	}
}

/* Appends the tokens [sent[l], upto) of layer l, all in the window (n
 * tokens, the last at position end - 1), to the held stores with their
 * scores. */
static int held_send(struct llm_rekv *r, uint32_t l, uint32_t n, uint32_t end,
		     uint32_t upto)
{
	uint32_t hd = r->c.head_dim, H = r->c.n_kv_head, c = 0, from = r->sent[l];
	if (upto <= from)
		return 0;
	const float *sal = r->sal + (size_t)l * r->max_tokens;
	const uint32_t *cnt = r->sal_n + (size_t)l * r->max_tokens;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t p = slot_pos(r, i, n, end);
		if (p < from || p >= upto)
			continue;
		if (p != from + c)
			return -EINVAL; /* not in the window: a bug */
		r->gs[c] = cnt[p] ? sal[p] / (float)cnt[p] : 0.0f;
		stage_slot(r, l, i, c++);
	}
	if (c != upto - from)
		return -EINVAL;
	/* the store wants [head][c][dim]: close the gaps of the wcap stride */
	for (uint32_t h = 1; h < H; h++) {
		memmove(r->gk + (size_t)h * c * hd, r->gk + (size_t)h * r->wcap * hd, c * hd * 2);
		memmove(r->gv + (size_t)h * c * hd, r->gv + (size_t)h * r->wcap * hd, c * hd * 2);
	}
	for (uint32_t s = 0; s < r->n_stores; s++) {
		int rc = r->held[s] ? llm_kvstore_append_scored(r->stores[s], l, c, r->gk,
								 r->gv, r->gs) : 0;
		if (rc)
			return rc;
	}
	r->sent[l] = upto;
	return 0;
}

int llm_rekv_saliency(const struct llm_rekv *r, uint32_t layer, float *out)
{
	if (!r->n_held)
		return -ENOTSUP;
	if (layer >= r->c.n_layers || !out)
		return -EINVAL;
	const float *sal = r->sal + (size_t)layer * r->max_tokens;
	const uint32_t *cnt = r->sal_n + (size_t)layer * r->max_tokens;
	for (uint32_t t = 0; t < r->n; t++)
		out[t] = cnt[t] ? sal[t] / (float)cnt[t] : 0.0f;
	return 0;
}

int llm_rekv_flush(struct llm_rekv *r)
{
	for (uint32_t l = 0; r->n_held && l < r->c.n_layers; l++) {
		int rc = held_send(r, l, r->wlen[l], r->n, r->n);
		if (rc)
			return rc;
	}
	return 0;
}

/* Appends T tokens to layer l's window and drops the oldest non-sink ones
 * beyond the window (sent to the held stores first). */
static int window_push(struct llm_rekv *r, uint32_t l, uint32_t T,
		       const float *k, const float *v)
{
	uint32_t hd = r->c.head_dim, H = r->c.n_kv_head, n = r->wlen[l];
	for (uint32_t t = 0; t < T; t++)
		for (uint32_t h = 0; h < H; h++) {
			size_t dst = ((size_t)h * r->wcap + n + t) * hd, src = ((size_t)t * H + h) * hd;
			memcpy(r->wk[l] + dst, k + src, hd * sizeof(float));
			memcpy(r->wv[l] + dst, v + src, hd * sizeof(float));
		}
	n += T;
	uint32_t keep = r->cfg.sink + r->cfg.window;
	if (n > keep) {
		uint32_t drop = n - keep, s = r->cfg.sink;
		int rc = r->n_held ? held_send(r, l, n, r->n + T, r->n + T - n + s + drop) : 0;
		if (rc)
			return rc;
		for (uint32_t h = 0; h < H; h++) {
			float *bk = r->wk[l] + (size_t)h * r->wcap * hd;
			float *bv = r->wv[l] + (size_t)h * r->wcap * hd;
			memmove(bk + (size_t)s * hd, bk + (size_t)(s + drop) * hd,
				(size_t)(n - s - drop) * hd * sizeof(float));
			memmove(bv + (size_t)s * hd, bv + (size_t)(s + drop) * hd,
				(size_t)(n - s - drop) * hd * sizeof(float));
		}
		n = keep;
	}
	r->wlen[l] = n;
	return 0;
}

static void add_key_sums(struct llm_rekv *r, uint32_t l, uint32_t T, const float *k)
{
	uint32_t hd = r->c.head_dim;
	size_t kvd = (size_t)r->c.n_kv_head * hd;
	float tmp[KVT_MAX_HEAD_DIM];
	for (uint32_t t = 0; t < T; t++) {
		uint32_t b = (r->n + t) / r->bt;
		float *dst = r->ksum + ((size_t)l * r->max_blocks + b) * kvd;
		for (uint32_t h = 0; h < r->c.n_kv_head; h++) {
			memcpy(tmp, k + (size_t)t * kvd + (size_t)h * hd, hd * sizeof(float));
			if (r->cfg.rope_free)
				unrope(&r->c, tmp, r->n + t);
			for (uint32_t d = 0; d < hd; d++)
				dst[(size_t)h * hd + d] += tmp[d];
		}
	}
}

/* Token-major fp32 to the store's [head][token][dim] fp16. */
static void to_store_layout(const struct llm_rekv *r, uint32_t T, const float *x,
			    uint16_t *out)
{
	uint32_t hd = r->c.head_dim, H = r->c.n_kv_head;
	for (uint32_t h = 0; h < H; h++)
		for (uint32_t t = 0; t < T; t++)
			for (uint32_t d = 0; d < hd; d++)
				out[((size_t)h * T + t) * hd + d] =
					llm_f32_to_f16(x[((size_t)t * H + h) * hd + d]);
}

static int prefill_emit(void *arg, uint32_t l, uint32_t T, const float *q,
			const float *k, const float *v)
{
	(void)q;
	struct llm_rekv *r = arg;
	to_store_layout(r, T, k, r->hk);
	to_store_layout(r, T, v, r->hv);
	for (uint32_t s = 0; s < r->n_stores; s++) {
		int rc = r->held[s] ? 0 : llm_kvstore_append(r->stores[s], l, T, r->hk, r->hv);
		if (rc)
			return rc;
	}
	add_key_sums(r, l, T, k);
	if (r->n_held)
		saliency_add(r, l, T);
	return window_push(r, l, T, k, v);
}

int llm_rekv_prefill(struct llm_rekv *r, const int32_t *ids, uint32_t n,
		     llm_progress_fn progress, void *arg)
{
	if (r->n + n > r->max_tokens)
		return -EINVAL;
	struct llm_hooks hk = {prefill_context, prefill_emit, r};
	for (uint32_t done = 0; done < n;) {
		uint32_t T = n - done < r->cfg.chunk ? n - done : r->cfg.chunk;
		int rc = llm_forward(r->m, r->pool, ids + done, T, r->n, &hk, NULL, 0);
		if (rc)
			return rc;
		r->n += T;
		done += T;
		if (progress)
			progress(arg, done, n);
	}
	return 0;
}

/* ---------------------------------------------------------------- probe */

struct probe {
	struct llm_rekv *r;
	struct llm_query *q;
};

static int probe_context(void *arg, uint32_t layer, struct llm_ctx_view *view)
{
	return window_context(((struct probe *)arg)->r, layer, view);
}

static int probe_emit(void *arg, uint32_t l, uint32_t T, const float *q,
		      const float *k, const float *v)
{
	(void)k, (void)v;
	struct probe *p = arg;
	const struct llm_config *c = &p->r->c;
	uint32_t hd = c->head_dim, group = c->n_head / c->n_kv_head;
	float *mean = p->q->mean + (size_t)l * c->n_kv_head * hd, tmp[KVT_MAX_HEAD_DIM];
	float *all = p->q->all + (size_t)l * c->n_head * T * hd;
	for (uint32_t t = 0; t < T; t++)
		for (uint32_t h = 0; h < c->n_head; h++) {
			const float *src = q + ((size_t)t * c->n_head + h) * hd;
			memcpy(all + ((size_t)h * T + t) * hd, src, hd * sizeof(float));
			memcpy(tmp, src, hd * sizeof(float));
			if (p->r->cfg.rope_free)
				unrope(c, tmp, p->r->n + t);
			for (uint32_t d = 0; d < hd; d++)
				mean[(h / group) * hd + d] += tmp[d] / (float)(T * group);
		}
	return 0;
}

int llm_rekv_probe(struct llm_rekv *r, const int32_t *q, uint32_t nq,
		   struct llm_query *out)
{
	const struct llm_config *c = &r->c;
	struct llm_query x = {c->n_layers, nq, NULL, NULL};
	int frc = llm_rekv_flush(r); /* the held stores get the rest */
	if (frc)
		return frc;
	x.mean = calloc((size_t)c->n_layers * c->n_kv_head * c->head_dim, sizeof(float));
	x.all = malloc((size_t)c->n_layers * c->n_head * nq * c->head_dim * sizeof(float));
	if (!x.mean || !x.all) {
		llm_query_free(&x);
		return -ENOMEM;
	}
	struct probe p = {r, &x};
	struct llm_hooks hk = {probe_context, probe_emit, &p};
	int rc = llm_forward(r->m, r->pool, q, nq, r->n, &hk, NULL, 0);
	if (rc) {
		llm_query_free(&x);
		return rc;
	}
	*out = x;
	return 0;
}

void llm_query_free(struct llm_query *q)
{
	free(q->mean);
	free(q->all);
	q->mean = q->all = NULL;
}

/* ---------------------------------------------------------------- select */

struct scored {
	float s;
	uint32_t b;
};

static int by_score_desc(const void *a, const void *b)
{
	float x = ((const struct scored *)a)->s, y = ((const struct scored *)b)->s;
	return x < y ? 1 : x > y ? -1 : 0;
}

static int by_index(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static float cosine(const float *a, const float *b, uint32_t n)
{
	double ab = 0, aa = 0, bb = 0;
	for (uint32_t i = 0; i < n; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return aa > 0 && bb > 0 ? (float)(ab / sqrt(aa * bb)) : 0.0f;
}

static float block_score(const struct llm_rekv *r, const float *qmean, uint32_t l,
			 uint32_t b)
{
	uint32_t hd = r->c.head_dim, H = r->c.n_kv_head;
	const float *ks = r->ksum + ((size_t)l * r->max_blocks + b) * H * hd;
	float s = 0;
	for (uint32_t h = 0; h < H; h++)
		s += cosine(qmean + ((size_t)l * H + h) * hd, ks + (size_t)h * hd, hd);
	return s / (float)H;
}

int llm_rekv_score(const struct llm_rekv *r, const struct llm_query *q, float *scores)
{
	const float *qmean = q->mean;
	uint32_t nb = llm_rekv_blocks(r);
	for (uint32_t l = 0; l < r->c.n_layers; l++)
		for (uint32_t b = 0; b < nb; b++)
			scores[(size_t)l * nb + b] = block_score(r, qmean, l, b);
	return 0;
}

/* Forced blocks first (sink, recent), then the best-scoring others. */
static void select_layer(const struct llm_rekv *r, const float *scores, uint32_t k,
			 struct scored *tmp, uint32_t *out)
{
	uint32_t nb = llm_rekv_blocks(r);
	uint32_t sink_b = (r->cfg.sink + r->bt - 1) / r->bt;
	uint32_t recent_first = r->n > r->cfg.recent ? (r->n - r->cfg.recent) / r->bt : 0;
	uint32_t m = 0, o = 0;
	for (uint32_t b = 0; b < nb; b++) {
		if (b < sink_b || b >= recent_first)
			out[o++] = b;
		else
			tmp[m++] = (struct scored){scores[b], b};
	}
	qsort(tmp, m, sizeof(*tmp), by_score_desc);
	for (uint32_t i = 0; o < k && i < m; i++)
		out[o++] = tmp[i].b;
	qsort(out, o, sizeof(uint32_t), by_index);
}

static uint32_t forced_blocks(const struct llm_rekv *r)
{
	uint32_t nb = llm_rekv_blocks(r), sink_b = (r->cfg.sink + r->bt - 1) / r->bt;
	uint32_t recent_first = r->n > r->cfg.recent ? (r->n - r->cfg.recent) / r->bt : 0;
	uint32_t f = (sink_b < nb ? sink_b : nb) + (nb - recent_first);
	if (recent_first < sink_b)
		f = nb;
	return f < nb ? f : nb;
}

static int sel_alloc(uint32_t n_layers, uint32_t stride, struct llm_selection *sel)
{
	sel->n_layers = n_layers;
	sel->stride = stride;
	sel->count = calloc(n_layers, sizeof(uint32_t));
	sel->blocks = malloc((size_t)n_layers * (stride ? stride : 1) * sizeof(uint32_t));
	if (!sel->count || !sel->blocks) {
		llm_selection_free(sel);
		return -ENOMEM;
	}
	return 0;
}

uint32_t llm_selection_max(const struct llm_selection *sel)
{
	uint32_t m = 0;
	for (uint32_t l = 0; l < sel->n_layers; l++)
		m = sel->count[l] > m ? sel->count[l] : m;
	return m;
}

int llm_rekv_select_scores(const struct llm_rekv *r, const float *scores,
			   uint32_t budget_tokens, struct llm_selection *sel)
{
	uint32_t nb = llm_rekv_blocks(r), k = budget_tokens / r->bt;
	uint32_t f = forced_blocks(r);
	k = k < f ? f : k > nb ? nb : k;
	struct scored *tmp = malloc((nb ? nb : 1) * sizeof(*tmp));
	int rc = tmp ? sel_alloc(r->c.n_layers, k, sel) : -ENOMEM;
	for (uint32_t l = 0; rc == 0 && l < r->c.n_layers; l++) {
		select_layer(r, scores + (size_t)l * nb, k, tmp, sel->blocks + (size_t)l * k);
		sel->count[l] = k;
	}
	free(tmp);
	return rc;
}

int llm_rekv_select(const struct llm_rekv *r, const struct llm_query *q,
		    uint32_t budget_tokens, struct llm_selection *sel)
{
	float *scores = malloc(((size_t)r->c.n_layers * llm_rekv_blocks(r) + 1) * sizeof(float));
	int rc = scores ? llm_rekv_score(r, q, scores) : -ENOMEM;
	if (rc == 0)
		rc = llm_rekv_select_scores(r, scores, budget_tokens, sel);
	free(scores);
	return rc;
}

int llm_rekv_retrieve(const struct llm_rekv *r, uint32_t store,
		      enum kvt_retrieval_mode mode, const struct llm_query *q,
		      uint32_t budget_tokens, struct llm_selection *sel)
{
	struct kvt_retrieve_params p;
	kvt_retrieve_params_init(&p);
	p.mode = mode;
	p.n_q_heads = r->c.n_head;
	p.n_queries = q->nq;
	p.sink_tokens = r->cfg.sink;
	p.recent_tokens = r->cfg.recent;
	uint32_t floor = (uint32_t)forced_blocks(r) * r->bt;
	p.budget_tokens = budget_tokens > floor ? budget_tokens : floor;
	size_t per = (size_t)r->c.n_head * q->nq * r->c.head_dim;
	int rc = sel_alloc(r->c.n_layers, llm_rekv_blocks(r), sel);
	for (uint32_t l = 0; rc == 0 && l < r->c.n_layers; l++) {
		struct kvt_selection ks = {0};
		rc = llm_kvstore_retrieve(r->stores[store], l, &p, q->all + l * per, &ks);
		if (rc == 0 && ks.n_blocks > sel->stride)
			rc = KVT_ECORRUPT;
		if (rc == 0) {
			memcpy(sel->blocks + (size_t)l * sel->stride, ks.blocks,
			       ks.n_blocks * sizeof(uint32_t));
			sel->count[l] = ks.n_blocks;
		}
		kvt_selection_free(&ks);
	}
	if (rc)
		llm_selection_free(sel);
	return rc;
}

int llm_rekv_select_all(const struct llm_rekv *r, struct llm_selection *sel)
{
	uint32_t nb = llm_rekv_blocks(r);
	int rc = sel_alloc(r->c.n_layers, nb, sel);
	for (uint32_t l = 0; rc == 0 && l < r->c.n_layers; l++) {
		for (uint32_t b = 0; b < nb; b++)
			sel->blocks[(size_t)l * nb + b] = b;
		sel->count[l] = nb;
	}
	return rc;
}

void llm_selection_free(struct llm_selection *sel)
{
	free(sel->blocks);
	free(sel->count);
	sel->blocks = NULL;
	sel->count = NULL;
}

/* ---------------------------------------------------------------- load */

/* Whether answers move retrieved blocks to consecutive positions. */
static int moves(const struct llm_rekv *r)
{
	return (uint64_t)r->n + 256 > r->cfg.max_pos;
}

uint32_t llm_rekv_answer_pos(const struct llm_rekv *r, const struct llm_selection *sel)
{
	return moves(r) ? llm_selection_max(sel) * r->bt : r->n;
}

static void from_block(const struct llm_rekv *r, const uint16_t *blk, uint32_t valid,
		       float *k, float *v, uint32_t cap, uint32_t at, int64_t shift)
{
	uint32_t hd = r->c.head_dim, H = r->c.n_kv_head, bt = r->bt;
	const uint16_t *bv = blk + (size_t)H * bt * hd;
	for (uint32_t h = 0; h < H; h++)
		for (uint32_t t = 0; t < valid; t++)
			for (uint32_t d = 0; d < hd; d++) {
				size_t src = ((size_t)h * bt + t) * hd + d;
				size_t dst = ((size_t)h * cap + at + t) * hd + d;
				k[dst] = llm_f16_to_f32(blk[src]);
				v[dst] = llm_f16_to_f32(bv[src]);
			}
	for (uint32_t h = 0; shift && h < H; h++)
		for (uint32_t t = 0; t < valid; t++)
			llm_rope_shift(&r->c, k + ((size_t)h * cap + at + t) * hd, shift);
}

int llm_rekv_load(struct llm_rekv *r, uint32_t store, const struct llm_selection *sel,
		  struct llm_kvbuf *kb, uint64_t *bytes)
{
	struct llm_kvstore *s = r->stores[store];
	size_t bb = kvt_block_bytes(&llm_kvstore_config(s)->shape);
	int frc = llm_rekv_flush(r);
	if (frc)
		return frc;
	uint16_t *blk = malloc(bb);
	if (!blk)
		return -ENOMEM;
	uint64_t total = 0;
	int rc = 0;
	for (uint32_t l = 0; l < sel->n_layers && rc == 0; l++) {
		float *k, *v;
		uint32_t cap, at = 0;
		llm_kvbuf_layer(kb, l, &k, &v, &cap);
		for (uint32_t i = 0; i < sel->count[l] && rc == 0; i++) {
			uint32_t valid = 0;
			uint32_t b = sel->blocks[(size_t)l * sel->stride + i];
			rc = llm_kvstore_read_block(s, l, b, blk, bb, &valid);
			if (rc == 0 && at + valid > cap)
				rc = -ENOSPC;
			if (rc == 0) {
				int64_t shift = moves(r) ? (int64_t)at - (int64_t)b * r->bt : 0;
				from_block(r, blk, valid, k, v, cap, at, shift);
				at += valid;
				total += bb;
			}
		}
		llm_kvbuf_set_len(kb, l, at);
	}
	free(blk);
	if (bytes)
		*bytes = total;
	return rc;
}
