/*
 * select.c - kvt_retrieve: score blocks for a query, fill the budget.
 *
 * Every mode produces one score per block of the layer; the sink and
 * recent blocks are taken first, then the best scoring others until the
 * budget is spent (a linear-time partial selection, not a sort).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "f16_internal.h"
#include "rindex_internal.h"
#include "vec.h"

const char *kvt_retrieval_mode_name(enum kvt_retrieval_mode mode)
{
	switch (mode) {
	case KVT_RETRIEVE_CLUSTERKV: return "clusterkv";
	case KVT_RETRIEVE_REKV: return "rekv";
	case KVT_RETRIEVE_RECENT: return "recent";
	case KVT_RETRIEVE_QUEST: return "quest";
	case KVT_RETRIEVE_N_MODES: break;
	}
	return "?";
}

void kvt_retrieve_params_init(struct kvt_retrieve_params *p)
{
	*p = (struct kvt_retrieve_params){.mode = KVT_RETRIEVE_CLUSTERKV,
					  .n_queries = 1, .sink_tokens = 16,
					  .recent_tokens = 128};
}

void kvt_selection_free(struct kvt_selection *sel)
{
	if (!sel)
		return;
	free(sel->blocks);
	free(sel->n_valid);
	memset(sel, 0, sizeof *sel);
}

/* ---------------------------------------------------------------- scoring */

struct query_view {
	const float *q;
	size_t d;
	uint32_t group, n_queries; /* q heads per kv head, vectors per q head */
};

/* Query vector j (0 .. group * n_queries) of kv head h. */
static const float *qvec(const struct query_view *qv, size_t h, uint32_t j)
{
	size_t first = h * qv->group * qv->n_queries;
	return qv->q + (first + j) * qv->d;
}

/* Logits q . mean / sqrt(d) of every query vector of head h against
 * cluster c into lg[(h * m + j) * C + c]: fp16 means of closed clusters,
 * key sums / size for the open chunk's; -inf for an empty cluster. */
static void cluster_logits(const struct kvt_rindex *x, const struct rlayer *l,
			   const struct query_view *qv, uint32_t c, float *lg)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	uint32_t C = l->n_clusters, m = qv->group * qv->n_queries;
	uint32_t c0 = rl_chunk_c0(x, l);
	float scale = 1.0f / sqrtf((float)d), dots[4];
	for (size_t h = 0; h < H; h++) {
		float *o = lg + h * m * C + c;
		uint32_t cnt = l->ccount[(size_t)c * H + h], j = 0;
		const uint16_t *mh = l->cmean + ((size_t)c * H + h) * d;
		const float *sf = c < c0 ? NULL : l->csum + ((size_t)(c - c0) * H + h) * d;
		float f = c < c0 ? scale : scale / (float)(cnt ? cnt : 1);
		for (; !cnt && j < m; j++)
			o[(size_t)j * C] = -INFINITY;
		/* the group's query vectors are consecutive rows of q */
		for (; j + 4 <= m; j += 4) {
			if (c < c0)
				kvt_rt_dot4_f16(mh, qvec(qv, h, j), d, d, dots);
			else
				kvt_dot4(sf, qvec(qv, h, j), d, d, dots);
			for (int i = 0; i < 4; i++)
				o[(size_t)(j + i) * C] = dots[i] * f;
		}
		for (; j < m; j++)
			o[(size_t)j * C] = f * (c < c0 ? kvt_rt_dot_f16(mh, qvec(qv, h, j), d)
						       : kvt_dot(sf, qvec(qv, h, j), d));
	}
}

/* Adds each cluster's estimated attention mass per token (summed over the
 * group's query vectors: a softmax over clusters weighted by their sizes)
 * to w[c * H + h]; lg holds the logits of head h. */
static void cluster_weights(const struct kvt_rindex *x, const struct rlayer *l,
			    uint32_t m, size_t h, float *lg, float *w)
{
	size_t H = x->shape.n_kv_heads;
	uint32_t C = l->n_clusters;
	for (uint32_t j = 0; j < m; j++) {
		float *row = lg + (size_t)j * C, mx = -INFINITY;
		for (uint32_t c = 0; c < C; c++)
			mx = row[c] > mx ? row[c] : mx;
		if (!isfinite(mx))
			continue;
		double z = 0;
		for (uint32_t c = 0; c < C; c++) {
			row[c] = expf(row[c] - mx);
			z += (double)row[c] * l->ccount[(size_t)c * H + h];
		}
		float iz = (float)(1.0 / z);
		for (uint32_t c = 0; c < C; c++)
			w[(size_t)c * H + h] += row[c] * iz;
	}
}

/* Estimated mass of n consecutive tokens of one chunk (ids a, weights wb
 * of that chunk's clusters), two partial sums to shorten the chain. */
static float span_mass(const uint16_t *restrict a, const float *restrict wb,
		       size_t H, uint64_t n)
{
	float s0 = 0, s1 = 0;
	for (uint64_t t = 0; t < n; t++, a += H) {
		size_t h = 0;
		for (; h + 1 < H; h += 2) {
			s0 += wb[(size_t)a[h] * H + h];
			s1 += wb[(size_t)a[h + 1] * H + h + 1];
		}
		if (h < H)
			s0 += wb[(size_t)a[h] * H + h];
	}
	return s0 + s1;
}

/* Block scores: the estimated mass of their tokens over all heads. */
static void token_mass(const struct kvt_rindex *x, const struct rlayer *l,
		       const float *w, float *score)
{
	size_t H = x->shape.n_kv_heads, kH = (size_t)x->k_chunk * H;
	uint64_t n = l->n_tokens, bt = x->shape.block_tokens;
	uint64_t ch = x->cfg.chunk_tokens, c = 0, c_end = ch;
	for (uint64_t t = 0, b = 0; t < n; b++) {
		uint64_t end = t + bt < n ? t + bt : n;
		float s = 0;
		while (t < end) { /* a block may straddle two chunks */
			if (t == c_end)
				c++, c_end += ch;
			uint64_t stop = end < c_end ? end : c_end;
			s += span_mass(l->assign + t * H, w + c * kH, H, stop - t);
			t = stop;
		}
		score[b] = s;
	}
}

static int score_clusterkv(const struct kvt_rindex *x, const struct rlayer *l,
			   const struct query_view *qv, float *score)
{
	size_t H = x->shape.n_kv_heads;
	uint32_t m = qv->group * qv->n_queries;
	float *w = calloc((size_t)l->n_clusters * H + 1, sizeof *w);
	float *lg = malloc(((size_t)l->n_clusters * m * H + 1) * sizeof *lg);
	int rc = w && lg ? 0 : -ENOMEM;
	if (rc == 0) {
		for (uint32_t c = 0; c < l->n_clusters; c++)
			cluster_logits(x, l, qv, c, lg);
		for (size_t h = 0; h < H; h++)
			cluster_weights(x, l, m, h, lg + h * m * l->n_clusters, w);
		token_mass(x, l, w, score);
	}
	free(w);
	free(lg);
	return rc;
}

/* Unit mean keys [H][d] of the frame being filled into out. */
static void open_frame_mean(const struct kvt_rindex *x, const struct rlayer *l,
			    float *out)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	for (size_t h = 0; h < H; h++) {
		const float *s = l->fsum + h * d;
		float nrm = kvt_norm(s, d), inv = nrm > 0 ? 1.0f / nrm : 0.0f;
		for (size_t e = 0; e < d; e++)
			out[h * d + e] = s[e] * inv;
	}
}

/* ReKV: the cosine of the group's mean query with each frame's mean key. */
static int score_rekv(const struct kvt_rindex *x, const struct rlayer *l,
		      const struct query_view *qv, float *score, uint32_t nb)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	uint32_t m = qv->group * qv->n_queries, F = x->cfg.frame_blocks;
	float *qa = calloc(H * d, sizeof *qa), *fs = calloc(l->n_frames + 1, 4);
	float *means = malloc(H * d * sizeof *means);
	if (!qa || !fs || !means) {
		free(qa), free(fs), free(means);
		return -ENOMEM;
	}
	for (size_t h = 0; h < H; h++) {
		float *a = qa + h * d;
		for (uint32_t j = 0; j < m; j++)
			kvt_axpy(a, 1.0f, qvec(qv, h, j), d);
		float n = kvt_norm(a, d), s = n > 0 ? 1.0f / n : 0.0f;
		for (size_t e = 0; e < d; e++)
			a[e] *= s;
	}
	/* the sum over heads of per-head cosines is one dot product of the
	 * [H][d] rows */
	uint32_t full = rl_full_frames(x, l);
	for (uint32_t f = 0; f < full; f++)
		fs[f] = kvt_rt_dot_f16(l->fmean + (size_t)f * H * d, qa, H * d);
	if (full < l->n_frames) {
		open_frame_mean(x, l, means);
		fs[full] = kvt_dot(qa, means, H * d);
	}
	for (uint32_t b = 0; b < nb; b++)
		score[b] = fs[b / F];
	free(qa), free(fs), free(means);
	return 0;
}

/*
 * Quest: every key k of a frame lies in the box [lo, hi] channel by
 * channel, so q . k <= q+ . hi + q- . lo (q+ and q- the positive and
 * negative parts of q): one dot product of [q+, q-] with [hi, lo]. Each
 * query vector's bounds over the frames go through a softmax weighted by
 * the frames' sizes (the frame's mass if every key reached the bound);
 * frame scores sum those masses over all query vectors of all heads.
 */

/* The group's query vectors of head h split into positive parts qp and
 * negative parts qn, [m][d] each. */
static void split_queries(const struct query_view *qv, size_t h, uint32_t m,
			  float *qp, float *qn)
{
	size_t d = qv->d;
	for (uint32_t j = 0; j < m; j++) {
		const float *q = qvec(qv, h, j);
		for (size_t e = 0; e < d; e++) {
			qp[j * d + e] = q[e] > 0 ? q[e] : 0.0f;
			qn[j * d + e] = q[e] < 0 ? q[e] : 0.0f;
		}
	}
}

/* Bounds of query vectors j.. (four, or one when `one`) against the fp16
 * box of a complete frame (hi, lo rows) into b. */
static void box_dots_f16(const uint16_t *hi, const uint16_t *lo, const float *qp,
			 const float *qn, size_t d, int one, float *b)
{
	if (one) {
		b[0] = kvt_rt_dot_f16(hi, qp, d) + kvt_rt_dot_f16(lo, qn, d);
		return;
	}
	float t[4];
	kvt_rt_dot4_f16(hi, qp, d, d, b);
	kvt_rt_dot4_f16(lo, qn, d, d, t);
	for (int i = 0; i < 4; i++)
		b[i] += t[i];
}

/* Bound logits: lg[(h * m + j) * nf + f] for head h, query vector j,
 * frame f; qp, qn are [H][m][d]. Frames outer, heads inner, so the boxes
 * stream through memory once. */
static void quest_logits(const struct kvt_rindex *x, const struct rlayer *l,
			 const float *qp, const float *qn, uint32_t m,
			 const uint16_t *open, float *lg)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim, nf = l->n_frames;
	uint32_t full = rl_full_frames(x, l);
	float scale = 1.0f / sqrtf((float)d), b[4];
	for (uint32_t f = 0; f < nf; f++)
		for (size_t h = 0; h < H; h++) {
			size_t at = ((size_t)f * H + h) * d, q0 = h * m * d;
			float *o = lg + h * m * nf + f;
			const uint16_t *hi = f < full ? l->fhi + at : open + h * d;
			const uint16_t *lo = f < full ? l->flo + at : open + (H + h) * d;
			for (uint32_t j = 0; j < m;) {
				int one = j + 4 > m;
				const float *p = qp + q0 + j * d, *n = qn + q0 + j * d;
				box_dots_f16(hi, lo, p, n, d, one, b);
				for (int i = 0; i < (one ? 1 : 4); i++, j++)
					o[j * nf] = b[i] * scale;
			}
		}
}

/* Adds each query vector's size-weighted softmax of its row to fs. */
static void quest_mass(const struct rlayer *l, uint32_t m, float *lg,
		       float *fs)
{
	size_t nf = l->n_frames;
	for (uint32_t j = 0; j < m; j++) {
		float *row = lg + j * nf, mx = -INFINITY;
		for (size_t f = 0; f < nf; f++)
			mx = row[f] > mx ? row[f] : mx;
		double z = 0;
		for (size_t f = 0; f < nf; f++) {
			row[f] = (float)l->fcount[f] * expf(row[f] - mx);
			z += row[f];
		}
		float iz = z > 0 ? (float)(1.0 / z) : 0.0f;
		for (size_t f = 0; f < nf; f++)
			fs[f] += row[f] * iz;
	}
}

static int score_quest(const struct kvt_rindex *x, const struct rlayer *l,
		       const struct query_view *qv, float *score, uint32_t nb)
{
	size_t H = x->shape.n_kv_heads, d = x->shape.head_dim;
	uint32_t m = qv->group * qv->n_queries, F = x->cfg.frame_blocks;
	float *qp = malloc(2 * H * m * d * sizeof *qp), *qn = qp ? qp + H * m * d : NULL;
	float *lg = malloc((H * m * l->n_frames + 1) * sizeof *lg);
	float *fs = calloc((size_t)l->n_frames + 1, sizeof *fs);
	uint16_t *open = malloc(2 * H * d * sizeof *open);
	int rc = qp && lg && fs && open ? 0 : -ENOMEM;
	for (size_t h = 0; rc == 0 && h < H; h++)
		split_queries(qv, h, m, qp + h * m * d, qn + h * m * d);
	if (rc == 0 && rl_full_frames(x, l) < l->n_frames)
		kvt_rl_open_bounds(x, l, open, open + H * d);
	if (rc == 0)
		quest_logits(x, l, qp, qn, m, open, lg);
	for (size_t h = 0; rc == 0 && h < H; h++)
		quest_mass(l, m, lg + h * m * l->n_frames, fs);
	for (uint32_t b = 0; rc == 0 && b < nb; b++) /* a frame's blocks share it */
		score[b] = fs[b / F] / (float)F;
	free(qp), free(lg), free(fs), free(open);
	return rc;
}

/* ---------------------------------------------------------------- choosing */

struct cand {
	float score;
	uint32_t block;
};

/* A strict order: higher score first, the newer block on ties. */
static int better(const struct cand *a, const struct cand *b)
{
	return a->score > b->score ||
	       (a->score == b->score && a->block > b->block);
}

static void swap(struct cand *a, struct cand *b)
{
	struct cand t = *a;
	*a = *b;
	*b = t;
}

/* Reorders c[0..n) so its k best (highest score) come first. */
static void top_k(struct cand *c, size_t n, size_t k)
{
	size_t lo = 0, hi = n;
	while (k > lo && k < hi && hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		swap(&c[mid], &c[hi - 1]);
		struct cand piv = c[hi - 1];
		size_t s = lo;
		for (size_t i = lo; i + 1 < hi; i++)
			if (better(&c[i], &piv))
				swap(&c[i], &c[s++]);
		swap(&c[s], &c[hi - 1]);
		if (s + 1 == k || s == k)
			return;
		if (s > k)
			hi = s;
		else
			lo = s + 1;
	}
}

uint32_t kvt_rt_valid(const struct kvt_rt_layout *g, uint32_t b)
{
	return b + 1 < g->nb ? g->bt : (uint32_t)(g->n - (uint64_t)b * g->bt);
}

uint64_t kvt_rt_mark_forced(const struct kvt_rt_layout *g,
			    const struct kvt_retrieve_params *p, uint8_t *sel)
{
	uint64_t sink_b = kvt_rt_sink_blocks(g, p);
	uint64_t first_recent = kvt_rt_recent_first(g, p);
	uint64_t tokens = 0;
	for (uint32_t b = 0; b < g->nb; b++)
		if (b < sink_b || b >= first_recent) {
			sel[b] = 1;
			tokens += kvt_rt_valid(g, b);
		}
	return tokens;
}

/* Takes the best unmarked blocks while they fit in `left` tokens. */
static int fill(const struct kvt_rt_layout *g, const float *score, uint8_t *sel,
		uint64_t left)
{
	struct cand *c = malloc(((size_t)g->nb + 1) * sizeof *c);
	if (!c)
		return -ENOMEM;
	size_t n = 0;
	for (uint32_t b = 0; b < g->nb; b++)
		if (!sel[b])
			c[n++] = (struct cand){isnan(score[b]) ? -FLT_MAX : score[b], b};
	size_t k = left / g->bt < n ? left / g->bt : n;
	top_k(c, n, k);
	for (size_t i = 0; i < k; i++)
		if (kvt_rt_valid(g, c[i].block) <= left) {
			sel[c[i].block] = 1;
			left -= kvt_rt_valid(g, c[i].block);
		}
	free(c);
	return 0;
}

int kvt_rt_emit(const struct kvt_rt_layout *g, const uint8_t *sel,
		uint32_t layer, struct kvt_selection *out)
{
	uint32_t n = 0;
	for (uint32_t b = 0; b < g->nb; b++)
		n += sel[b];
	uint32_t *blocks = malloc(((size_t)n + 1) * sizeof *blocks);
	uint32_t *nv = malloc(((size_t)n + 1) * sizeof *nv);
	if (!blocks || !nv) {
		free(blocks);
		free(nv);
		return -ENOMEM;
	}
	uint64_t tokens = 0;
	for (uint32_t b = 0, i = 0; b < g->nb; b++)
		if (sel[b]) {
			blocks[i] = b;
			nv[i++] = kvt_rt_valid(g, b);
			tokens += kvt_rt_valid(g, b);
		}
	*out = (struct kvt_selection){layer, g->bt, n, blocks, nv, tokens, g->n};
	return 0;
}

int kvt_rt_params_check(const struct kvt_rindex *x,
			const struct kvt_retrieve_params *p)
{
	uint32_t H = x->shape.n_kv_heads;
	if (p->n_q_heads == 0 || p->n_q_heads > 4096 || p->n_q_heads % H ||
	    p->n_queries == 0 || p->n_queries > 4096 ||
	    (unsigned)p->mode >= KVT_RETRIEVE_N_MODES)
		return -EINVAL;
	return 0;
}

static int score_blocks(const struct kvt_rindex *x, const struct rlayer *l,
			const struct kvt_retrieve_params *p, const float *q,
			const struct kvt_rt_layout *g, float *score)
{
	struct query_view qv = {q, x->shape.head_dim,
				p->n_q_heads / x->shape.n_kv_heads, p->n_queries};
	if (p->mode == KVT_RETRIEVE_CLUSTERKV)
		return score_clusterkv(x, l, &qv, score);
	if (p->mode == KVT_RETRIEVE_REKV)
		return score_rekv(x, l, &qv, score, g->nb);
	if (p->mode == KVT_RETRIEVE_QUEST)
		return score_quest(x, l, &qv, score, g->nb);
	for (uint32_t b = 0; b < g->nb; b++)
		score[b] = (float)b;
	return 0;
}

static int select_locked(const struct kvt_rindex *x, const struct rlayer *l,
			 const struct kvt_retrieve_params *p, const float *q,
			 const struct kvt_rt_layout *g, uint8_t *sel, float *score)
{
	if (l->n_tokens <= p->budget_tokens) {
		memset(sel, 1, g->nb);
		return 0;
	}
	uint64_t forced = kvt_rt_mark_forced(g, p, sel);
	if (forced > p->budget_tokens)
		return -EINVAL;
	int rc = score_blocks(x, l, p, q, g, score);
	return rc ? rc : fill(g, score, sel, p->budget_tokens - forced);
}

int kvt_retrieve(struct kvt_rindex *idx, uint32_t layer,
		 const struct kvt_retrieve_params *p, const float *q,
		 struct kvt_selection *out)
{
	if (!idx || !p || !q || !out || layer >= idx->shape.n_layers ||
	    kvt_rt_params_check(idx, p))
		return -EINVAL;
	const struct rlayer *l = &idx->layers[layer];
	if (l->n_tokens == 0)
		return KVT_ENOTFOUND;
	uint32_t bt = idx->shape.block_tokens;
	struct kvt_rt_layout g = {l->n_tokens, bt, (uint32_t)((l->n_tokens + bt - 1) / bt)};
	uint8_t *sel = calloc(g.nb, 1);
	float *score = calloc(g.nb, sizeof *score);
	int rc = sel && score ? 0 : -ENOMEM;
	if (rc == 0)
		rc = select_locked(idx, l, p, q, &g, sel, score);
	if (rc == 0)
		rc = kvt_rt_emit(&g, sel, layer, out);
	free(sel);
	free(score);
	return rc;
}
