/* kvbuf.c - in-memory fp32 KV cache and greedy generation (see kvbuf.h). */
#include "kvbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct llm_kvbuf {
	struct llm_config cfg;
	uint32_t cap;
	uint32_t *len; /* per layer */
	float **k, **v;
};

int llm_kvbuf_create(const struct llm_config *cfg, uint32_t cap,
		     struct llm_kvbuf **out)
{
	struct llm_kvbuf *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	b->cap = cap;
	b->len = calloc(cfg->n_layers, sizeof(uint32_t));
	b->k = calloc(cfg->n_layers, sizeof(float *));
	b->v = calloc(cfg->n_layers, sizeof(float *));
	size_t per = (size_t)cfg->n_kv_head * cap * cfg->head_dim * sizeof(float);
	int ok = b->len && b->k && b->v;
	for (uint32_t l = 0; ok && l < cfg->n_layers; l++)
		ok = (b->k[l] = malloc(per)) && (b->v[l] = malloc(per));
	if (!ok) {
		llm_kvbuf_free(b);
		return -ENOMEM;
	}
	*out = b;
	return 0;
}

void llm_kvbuf_free(struct llm_kvbuf *b)
{
	if (!b)
		return;
	for (uint32_t l = 0; b->k && l < b->cfg.n_layers; l++) {
		free(b->k[l]);
		free(b->v ? b->v[l] : NULL);
	}
	free(b->k);
	free(b->v);
	free(b->len);
	free(b);
}

uint32_t llm_kvbuf_len(const struct llm_kvbuf *b) { return b->len[0]; }

void llm_kvbuf_truncate(struct llm_kvbuf *b, uint32_t n)
{
	for (uint32_t l = 0; l < b->cfg.n_layers; l++)
		if (b->len[l] > n)
			b->len[l] = n;
}

void llm_kvbuf_set_len(struct llm_kvbuf *b, uint32_t l, uint32_t n)
{
	b->len[l] = n <= b->cap ? n : b->cap;
}

void llm_kvbuf_layer(struct llm_kvbuf *b, uint32_t l, float **k, float **v,
		     uint32_t *cap)
{
	*k = b->k[l];
	*v = b->v[l];
	*cap = b->cap;
}

static int kb_context(void *arg, uint32_t layer, struct llm_ctx_view *view)
{
	struct llm_kvbuf *b = arg;
	*view = (struct llm_ctx_view){b->len[layer], b->cap, b->k[layer], b->v[layer], NULL};
	return 0;
}

static int kb_emit(void *arg, uint32_t layer, uint32_t T, const float *q,
		   const float *k, const float *v)
{
	(void)q;
	struct llm_kvbuf *b = arg;
	uint32_t hd = b->cfg.head_dim, H = b->cfg.n_kv_head, n = b->len[layer];
	if (n + T > b->cap)
		return -ENOSPC;
	for (uint32_t t = 0; t < T; t++)
		for (uint32_t h = 0; h < H; h++) {
			size_t dst = ((size_t)h * b->cap + n + t) * hd;
			size_t src = ((size_t)t * H + h) * hd;
			memcpy(b->k[layer] + dst, k + src, hd * sizeof(float));
			memcpy(b->v[layer] + dst, v + src, hd * sizeof(float));
		}
	b->len[layer] = n + T;
	return 0;
}

void llm_kvbuf_hooks(struct llm_kvbuf *b, struct llm_hooks *out)
{
	*out = (struct llm_hooks){kb_context, kb_emit, b};
}

int llm_generate(struct llm_model *m, struct llm_pool *pool, struct llm_kvbuf *b,
		 const int32_t *prompt, uint32_t n, uint32_t pos0, uint32_t max_new,
		 const int32_t *stops, uint32_t n_stops,
		 int32_t *out, uint32_t *n_out, float *logits_out)
{
	const struct llm_config *c = llm_model_config(m);
	struct llm_hooks hk;
	llm_kvbuf_hooks(b, &hk);
	float *logits = malloc((size_t)c->vocab * sizeof(float));
	if (!logits)
		return -ENOMEM;
	uint32_t produced = 0;
	int rc = llm_forward(m, pool, prompt, n, pos0, &hk, logits, 1);
	while (rc == 0 && produced < max_new) {
		int32_t id = (int32_t)llm_argmax(logits, c->vocab);
		if (logits_out)
			memcpy(logits_out + (size_t)produced * c->vocab, logits,
			       (size_t)c->vocab * sizeof(float));
		out[produced++] = id;
		int stop = produced == max_new;
		for (uint32_t i = 0; i < n_stops; i++)
			stop |= id == stops[i];
		if (stop)
			break;
		rc = llm_forward(m, pool, &id, 1, pos0 + n + produced - 1, &hk, logits, 1);
	}
	free(logits);
	*n_out = produced;
	return rc;
}
