/* model.c - Llama forward pass over GGUF weights (see model.h). */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "kvtier/kvtier.h"

struct layer {
	const float *attn_norm, *ffn_norm;
	struct llm_matrix wq, wk, wv, wo, gate, up, down;
};

struct llm_model {
	struct llm_config cfg;
	struct llm_matrix embd, output;
	const float *out_norm;
	struct layer *layers;
	float *inv_freq; /* head_dim / 2 */
};

/* ---------------------------------------------------------------- loading */

static int get_matrix(const struct llm_gguf *g, const char *name, uint32_t n_in,
		      uint32_t n_out, struct llm_matrix *m, char *err, size_t cap)
{
	const struct llm_gguf_tensor *t;
	if (llm_gguf_find_tensor(g, name, &t) != 0)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tensor %s missing", name);
	if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tensor %s: shape %llux%llu, expected %ux%u", name,
			    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
			    n_in, n_out);
	if (t->type == LLM_GGML_F32 && n_in % 8)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tensor %s: rows not a multiple of 8", name);
	*m = (struct llm_matrix){t->type, t->data, n_in, n_out,
				 llm_ggml_type_bytes(t->type, n_in)};
	return 0;
}

static int get_vector(const struct llm_gguf *g, const char *name, uint32_t n,
		      const float **out, char *err, size_t cap)
{
	const struct llm_gguf_tensor *t;
	if (llm_gguf_find_tensor(g, name, &t) != 0)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tensor %s missing", name);
	if (t->type != LLM_GGML_F32 || t->ne[0] != n || t->n_dims != 1)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tensor %s: expected %u f32", name, n);
	*out = t->data;
	return 0;
}

static int read_config(const struct llm_gguf *g, struct llm_config *c, char *err,
		       size_t cap)
{
	struct llm_gguf_str arch;
	if (llm_gguf_get_str(g, "general.architecture", &arch) != 0 || arch.n != 5 ||
	    memcmp(arch.p, "llama", 5) != 0)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "not a llama-architecture model");
	int rc = 0;
	rc |= llm_gguf_get_u32(g, "llama.block_count", &c->n_layers);
	rc |= llm_gguf_get_u32(g, "llama.embedding_length", &c->n_embd);
	rc |= llm_gguf_get_u32(g, "llama.feed_forward_length", &c->n_ff);
	rc |= llm_gguf_get_u32(g, "llama.attention.head_count", &c->n_head);
	rc |= llm_gguf_get_u32(g, "llama.attention.head_count_kv", &c->n_kv_head);
	rc |= llm_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps);
	if (rc)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "llama hyper-parameters missing");
	if (llm_gguf_get_f32(g, "llama.rope.freq_base", &c->rope_base) != 0)
		c->rope_base = 10000.0f;
	if (llm_gguf_get_u32(g, "llama.context_length", &c->n_ctx_train) != 0)
		c->n_ctx_train = 0;
	if (c->n_head == 0 || c->n_kv_head == 0 || c->n_head % c->n_kv_head ||
	    c->n_embd % c->n_head || c->n_layers == 0 || c->n_layers > 1024)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "inconsistent head counts");
	c->head_dim = c->n_embd / c->n_head;
	if (c->head_dim % 8)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "head_dim %u is not a multiple of 8", c->head_dim);
	return 0;
}

static int load_layer(const struct llm_gguf *g, const struct llm_config *c,
		      uint32_t l, struct layer *L, char *err, size_t cap)
{
	char n[96];
	uint32_t kvd = c->n_kv_head * c->head_dim;
	int rc = 0;
#define NAME(s) (snprintf(n, sizeof(n), "blk.%u." s, l), n)
	rc = rc ? rc : get_vector(g, NAME("attn_norm.weight"), c->n_embd, &L->attn_norm, err, cap);
	rc = rc ? rc : get_vector(g, NAME("ffn_norm.weight"), c->n_embd, &L->ffn_norm, err, cap);
	rc = rc ? rc : get_matrix(g, NAME("attn_q.weight"), c->n_embd, c->n_embd, &L->wq, err, cap);
	rc = rc ? rc : get_matrix(g, NAME("attn_k.weight"), c->n_embd, kvd, &L->wk, err, cap);
	rc = rc ? rc : get_matrix(g, NAME("attn_v.weight"), c->n_embd, kvd, &L->wv, err, cap);
	rc = rc ? rc : get_matrix(g, NAME("attn_output.weight"), c->n_embd, c->n_embd, &L->wo, err, cap);
	rc = rc ? rc : get_matrix(g, NAME("ffn_gate.weight"), c->n_embd, c->n_ff, &L->gate, err, cap);
	rc = rc ? rc : get_matrix(g, NAME("ffn_up.weight"), c->n_embd, c->n_ff, &L->up, err, cap);
	rc = rc ? rc : get_matrix(g, NAME("ffn_down.weight"), c->n_ff, c->n_embd, &L->down, err, cap);
#undef NAME
	return rc;
}

static int load_weights(const struct llm_gguf *g, struct llm_model *m, char *err,
			size_t cap)
{
	struct llm_config *c = &m->cfg;
	const struct llm_gguf_tensor *t;
	if (llm_gguf_find_tensor(g, "token_embd.weight", &t) != 0 || t->n_dims != 2)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tensor token_embd.weight missing");
	c->vocab = (uint32_t)t->ne[1];
	int rc = get_matrix(g, "token_embd.weight", c->n_embd, c->vocab, &m->embd, err, cap);
	if (rc == 0 && llm_gguf_find_tensor(g, "output.weight", &t) == 0)
		rc = get_matrix(g, "output.weight", c->n_embd, c->vocab, &m->output, err, cap);
	else if (rc == 0)
		m->output = m->embd; /* tied embeddings */
	if (rc == 0)
		rc = get_vector(g, "output_norm.weight", c->n_embd, &m->out_norm, err, cap);
	for (uint32_t l = 0; l < c->n_layers && rc == 0; l++)
		rc = load_layer(g, c, l, &m->layers[l], err, cap);
	return rc;
}

int llm_model_load(const struct llm_gguf *g, struct llm_model **out, char *err,
		   size_t cap)
{
	struct llm_model *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	int rc = read_config(g, &m->cfg, err, cap);
	if (rc == 0) {
		m->layers = calloc(m->cfg.n_layers, sizeof(*m->layers));
		m->inv_freq = calloc(m->cfg.head_dim / 2, sizeof(float));
		rc = m->layers && m->inv_freq ? load_weights(g, m, err, cap) : -ENOMEM;
	}
	if (rc) {
		llm_model_free(m);
		return rc;
	}
	for (uint32_t i = 0; i < m->cfg.head_dim / 2; i++)
		m->inv_freq[i] = (float)pow(m->cfg.rope_base,
					    -2.0 * i / (double)m->cfg.head_dim);
	*out = m;
	return 0;
}

void llm_model_free(struct llm_model *m)
{
	if (!m)
		return;
	free(m->layers);
	free(m->inv_freq);
	free(m);
}

const struct llm_config *llm_model_config(const struct llm_model *m)
{
	return &m->cfg;
}

/* ---------------------------------------------------------------- kernels */

#define ROWS_PER_TASK 32

struct matmul_job {
	const struct llm_matrix *m;
	const float *x;
	float *y;
	uint32_t T, stride;
	float *scratch; /* per worker: 4 * n_in */
	uint32_t scratch_n;
};

static void matmul_task(void *arg, uint32_t task, uint32_t worker)
{
	struct matmul_job *j = arg;
	uint32_t o0 = task * ROWS_PER_TASK, o1 = o0 + ROWS_PER_TASK;
	if (o1 > j->m->n_out)
		o1 = j->m->n_out;
	llm_matmul_rows(j->m, j->x, j->T, j->y, j->stride, o0, o1,
			j->scratch + (size_t)worker * j->scratch_n);
}

static void matmul(struct llm_pool *pool, const struct llm_matrix *m,
		   const float *x, uint32_t T, float *y, float *scratch,
		   uint32_t scratch_n)
{
	struct matmul_job j = {m, x, y, T, m->n_out, scratch, scratch_n};
	llm_pool_run(pool, matmul_task, &j, (m->n_out + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
}

static void rmsnorm(const float *x, const float *w, uint32_t n, float eps, float *y)
{
	double ss = 0;
	for (uint32_t i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	float s = (float)(1.0 / sqrt(ss / n + eps));
	for (uint32_t i = 0; i < n; i++)
		y[i] = x[i] * s * w[i];
}

static void rope(const struct llm_model *m, float *x, uint32_t heads, uint32_t pos)
{
	uint32_t hd = m->cfg.head_dim;
	for (uint32_t i = 0; i < hd / 2; i++) {
		double a = (double)pos * m->inv_freq[i];
		float c = (float)cos(a), s = (float)sin(a);
		for (uint32_t h = 0; h < heads; h++) {
			float *p = x + (size_t)h * hd + 2 * i;
			float x0 = p[0], x1 = p[1];
			p[0] = x0 * c - x1 * s;
			p[1] = x0 * s + x1 * c;
		}
	}
}

void llm_rope_shift(const struct llm_config *c, float *x, int64_t delta)
{
	for (uint32_t i = 0; i < c->head_dim / 2; i++) {
		double a = (double)delta * pow(c->rope_base, -2.0 * i / (double)c->head_dim);
		float cs = (float)cos(a), sn = (float)sin(a), x0 = x[2 * i], x1 = x[2 * i + 1];
		x[2 * i] = x0 * cs - x1 * sn;
		x[2 * i + 1] = x0 * sn + x1 * cs;
	}
}

/* ---------------------------------------------------------------- attention */

#define ATT_TILE 16

struct att_job {
	const struct llm_config *c;
	struct llm_ctx_view view;
	const float *q, *k, *v; /* new tokens, token-major */
	float *out;             /* [T][n_embd] */
	uint32_t T, tiles;
	float *scores;          /* per worker: view.n + T */
	float *colsum;          /* per worker: view.n + T, when view.att_sum */
};

static void att_one(const struct att_job *j, uint32_t h, uint32_t t, float *s,
		    float *cs)
{
	const struct llm_config *c = j->c;
	uint32_t hd = c->head_dim, g = h / (c->n_head / c->n_kv_head);
	uint32_t kvd = c->n_kv_head * hd, n = j->view.n;
	const float *q = j->q + (size_t)t * c->n_embd + (size_t)h * hd;
	const float *ck = j->view.k + (size_t)g * j->view.stride * hd;
	const float *cv = j->view.v + (size_t)g * j->view.stride * hd;
	float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY;
	for (uint32_t i = 0; i < n; i++)
		s[i] = llm_dot(q, ck + (size_t)i * hd, hd) * scale;
	for (uint32_t i = 0; i <= t; i++)
		s[n + i] = llm_dot(q, j->k + (size_t)i * kvd + (size_t)g * hd, hd) * scale;
	for (uint32_t i = 0; i < n + t + 1; i++)
		mx = s[i] > mx ? s[i] : mx;
	double sum = 0;
	for (uint32_t i = 0; i < n + t + 1; i++)
		sum += (s[i] = expf(s[i] - mx));
	float inv = (float)(1.0 / sum), *o = j->out + (size_t)t * c->n_embd + (size_t)h * hd;
	memset(o, 0, hd * sizeof(float));
	for (uint32_t i = 0; i < n; i++)
		llm_axpy(o, s[i] * inv, cv + (size_t)i * hd, hd);
	for (uint32_t i = 0; i <= t; i++)
		llm_axpy(o, s[n + i] * inv, j->v + (size_t)i * kvd + (size_t)g * hd, hd);
	for (uint32_t i = 0; cs && i < n + t + 1; i++)
		cs[i] += s[i] * inv;
}

static void att_task(void *arg, uint32_t task, uint32_t worker)
{
	struct att_job *j = arg;
	uint32_t h = task / j->tiles, t0 = (task % j->tiles) * ATT_TILE;
	size_t w = (size_t)worker * (j->view.n + j->T);
	float *s = j->scores + w, *cs = j->colsum ? j->colsum + w : NULL;
	for (uint32_t t = t0; t < t0 + ATT_TILE && t < j->T; t++)
		att_one(j, h, t, s, cs);
}

/* ---------------------------------------------------------------- forward */

struct fwd_buf {
	float *x, *h, *q, *k, *v, *att, *gate, *up, *scratch, *scores, *colsum;
	uint32_t scratch_n, scores_n, colsum_n;
};

static void free_buf(struct fwd_buf *b)
{
	free(b->x); free(b->h); free(b->q); free(b->k); free(b->v);
	free(b->att); free(b->gate); free(b->up); free(b->scratch); free(b->scores);
	free(b->colsum);
}

static int alloc_buf(const struct llm_config *c, uint32_t T, uint32_t workers,
		     struct fwd_buf *b)
{
	size_t kvd = (size_t)c->n_kv_head * c->head_dim, big = c->n_ff > c->n_embd ? c->n_ff : c->n_embd;
	memset(b, 0, sizeof(*b));
	b->scratch_n = 4 * (uint32_t)big;
	b->x = malloc(T * c->n_embd * sizeof(float));
	b->h = malloc(T * c->n_embd * sizeof(float));
	b->q = malloc(T * c->n_embd * sizeof(float));
	b->att = malloc(T * c->n_embd * sizeof(float));
	b->k = malloc(T * kvd * sizeof(float));
	b->v = malloc(T * kvd * sizeof(float));
	b->gate = malloc(T * (size_t)c->n_ff * sizeof(float));
	b->up = malloc(T * (size_t)c->n_ff * sizeof(float));
	b->scratch = malloc((size_t)workers * b->scratch_n * sizeof(float));
	if (!b->x || !b->h || !b->q || !b->att || !b->k || !b->v || !b->gate ||
	    !b->up || !b->scratch) {
		free_buf(b);
		return -ENOMEM;
	}
	return 0;
}

/* Makes *buf hold at least need floats (contents lost). */
static int grow(float **buf, uint32_t *cap, uint32_t need)
{
	if (need <= *cap)
		return 0;
	free(*buf);
	*buf = malloc((size_t)need * sizeof(float));
	*cap = *buf ? need : 0;
	return *buf ? 0 : -ENOMEM;
}

static int attention(struct llm_model *m, struct llm_pool *pool, uint32_t l,
		     uint32_t T, const struct llm_hooks *hk, struct fwd_buf *b)
{
	struct att_job j = {&m->cfg, {0}, b->q, b->k, b->v, b->att, T,
			    (T + ATT_TILE - 1) / ATT_TILE, NULL, NULL};
	int rc = hk->context(hk->arg, l, &j.view);
	if (rc)
		return rc;
	uint32_t need = (j.view.n + T) * llm_pool_size(pool);
	if ((rc = grow(&b->scores, &b->scores_n, need)) != 0)
		return rc;
	j.scores = b->scores;
	if (j.view.att_sum && (rc = grow(&b->colsum, &b->colsum_n, need)) == 0) {
		memset(b->colsum, 0, (size_t)need * sizeof(float));
		j.colsum = b->colsum;
	}
	if (rc)
		return rc;
	llm_pool_run(pool, att_task, &j, m->cfg.n_head * j.tiles);
	for (uint32_t w = 0; j.colsum && w < llm_pool_size(pool); w++)
		for (uint32_t i = 0; i < j.view.n + T; i++)
			j.view.att_sum[i] += j.colsum[(size_t)w * (j.view.n + T) + i];
	return 0;
}

static int layer_fwd(struct llm_model *m, struct llm_pool *pool, uint32_t l,
		     uint32_t T, uint32_t pos0, const struct llm_hooks *hk,
		     struct fwd_buf *b)
{
	const struct llm_config *c = &m->cfg;
	const struct layer *L = &m->layers[l];
	size_t e = c->n_embd, f = c->n_ff, kvd = (size_t)c->n_kv_head * c->head_dim;
	for (uint32_t t = 0; t < T; t++)
		rmsnorm(b->x + t * e, L->attn_norm, c->n_embd, c->norm_eps, b->h + t * e);
	matmul(pool, &L->wq, b->h, T, b->q, b->scratch, b->scratch_n);
	matmul(pool, &L->wk, b->h, T, b->k, b->scratch, b->scratch_n);
	matmul(pool, &L->wv, b->h, T, b->v, b->scratch, b->scratch_n);
	for (uint32_t t = 0; t < T; t++) {
		rope(m, b->q + t * e, c->n_head, pos0 + t);
		rope(m, b->k + t * kvd, c->n_kv_head, pos0 + t);
	}
	/* Attention before emit: a hook may then append the new keys to the
	 * buffer its context view points into. */
	int rc = attention(m, pool, l, T, hk, b);
	if (rc == 0 && hk->emit)
		rc = hk->emit(hk->arg, l, T, b->q, b->k, b->v);
	if (rc)
		return rc;
	matmul(pool, &L->wo, b->att, T, b->h, b->scratch, b->scratch_n);
	for (size_t i = 0; i < T * e; i++)
		b->x[i] += b->h[i];
	for (uint32_t t = 0; t < T; t++)
		rmsnorm(b->x + t * e, L->ffn_norm, c->n_embd, c->norm_eps, b->h + t * e);
	matmul(pool, &L->gate, b->h, T, b->gate, b->scratch, b->scratch_n);
	matmul(pool, &L->up, b->h, T, b->up, b->scratch, b->scratch_n);
	for (size_t i = 0; i < T * f; i++) {
		float g = b->gate[i];
		b->gate[i] = g / (1.0f + expf(-g)) * b->up[i];
	}
	matmul(pool, &L->down, b->gate, T, b->h, b->scratch, b->scratch_n);
	for (size_t i = 0; i < T * e; i++)
		b->x[i] += b->h[i];
	return 0;
}

int llm_forward(struct llm_model *m, struct llm_pool *pool,
		const int32_t *tokens, uint32_t T, uint32_t pos0,
		const struct llm_hooks *hooks, float *logits, uint32_t n_logits)
{
	const struct llm_config *c = &m->cfg;
	if (!tokens || T == 0 || !hooks || !hooks->context || n_logits > T)
		return -EINVAL;
	for (uint32_t t = 0; t < T; t++)
		if (tokens[t] < 0 || (uint32_t)tokens[t] >= c->vocab)
			return -EINVAL;
	struct fwd_buf b;
	int rc = alloc_buf(c, T, llm_pool_size(pool), &b);
	if (rc)
		return rc;
	for (uint32_t t = 0; t < T; t++)
		llm_matrix_row(&m->embd, (uint32_t)tokens[t], b.x + (size_t)t * c->n_embd);
	for (uint32_t l = 0; l < c->n_layers && rc == 0; l++)
		rc = layer_fwd(m, pool, l, T, pos0, hooks, &b);
	if (rc == 0 && logits && n_logits) {
		uint32_t first = T - n_logits;
		for (uint32_t t = 0; t < n_logits; t++)
			rmsnorm(b.x + (size_t)(first + t) * c->n_embd, m->out_norm, c->n_embd,
				c->norm_eps, b.h + (size_t)t * c->n_embd);
		matmul(pool, &m->output, b.h, n_logits, logits, b.scratch, b.scratch_n);
	}
	free_buf(&b);
	return rc;
}

uint32_t llm_argmax(const float *x, uint32_t n)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}
