/*
 * ZipCache saliency from the model's own prefill attention: the forward
 * pass's column sums are attention probabilities (each query's sum to one
 * per head, causal), rekv's per-token scores lie in [0, 1] and favour the
 * attention sink, and a ZipCache cache filled through rekv holds every
 * token (the window's ones appended late), keeps its recent blocks equal to
 * a raw cache's, and stores the tokens with the highest scores with less
 * error than the others.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faq_suite.h"

TestSuite(llm_saliency, .init = setup, .fini = teardown, .timeout = 300);

/* No earlier context; each layer's column sums into its own row. */
struct colsum_hook {
	float *sums; /* [layer][T] */
	uint32_t T;
};

static int empty_context(void *arg, uint32_t layer, struct llm_ctx_view *view)
{
	struct colsum_hook *h = arg;
	*view = (struct llm_ctx_view){0, 1, NULL, NULL, h->sums + (size_t)layer * h->T};
	return 0;
}

Test(llm_saliency, column_sums_are_causal_attention_probabilities)
{
	const struct llm_config *c = llm_model_config(model);
	struct llm_qa_doc d;
	cr_assert_eq(llm_qa_doc_build(tok, &faq, 96, &d), 0);
	struct colsum_hook h = {calloc((size_t)c->n_layers * d.n, sizeof(float)), d.n};
	struct llm_hooks hk = {empty_context, NULL, &h};
	cr_assert_eq(llm_forward(model, pool, d.ids, d.n, 0, &hk, NULL, 0), 0);
	for (uint32_t l = 0; l < c->n_layers; l++) {
		const float *s = h.sums + (size_t)l * d.n;
		double total = 0;
		for (uint32_t t = 0; t < d.n; t++) {
			cr_assert(isfinite(s[t]) && s[t] >= 0, "layer %u token %u: %g", l, t, s[t]);
			/* token t is seen by d.n - t queries in each head */
			cr_expect_leq(s[t], (float)(c->n_head * (d.n - t)) * (1 + 1e-4f));
			total += s[t];
		}
		/* every query's probabilities sum to 1 in each head */
		cr_expect_lt(fabs(total - (double)c->n_head * d.n), 1e-3 * c->n_head * d.n,
			     "layer %u: column sums add to %f, not %u", l, total, c->n_head * d.n);
	}
	free(h.sums);
	llm_qa_doc_free(&d);
}

struct env {
	struct kvt_store *store;
	struct llm_kvstore *kv[2]; /* raw, ZipCache 2/4 bits */
	struct llm_rekv *rk;
	struct llm_qa_doc doc;
};

#define N_DOC 700
#define RATIO 0.25f

static void open_env(struct env *e)
{
	struct kvt_store_config sc;
	kvt_store_config_init(&sc);
	cr_assert_eq(kvt_store_open(&sc, &e->store), 0);
	for (int i = 0; i < 2; i++) {
		struct kvt_cache_config cc;
		model_cache_config(&cc);
		if (i == 1) {
			kvt_codec_params_init(&cc.cold, KVT_CODEC_ZIPCACHE);
			cc.cold.bits = 2;
			cc.cold.high_bits = 4;
			cc.cold.salient_ratio = RATIO;
		}
		cr_assert_eq(llm_kvstore_local(e->store, i ? "zip" : "raw", &cc, &e->kv[i]), 0);
	}
	cr_expect_eq(llm_kvstore_wants_scores(e->kv[0]), 0);
	cr_expect_eq(llm_kvstore_wants_scores(e->kv[1]), 1);
	cr_assert_eq(llm_qa_doc_build(tok, &faq, N_DOC, &e->doc), 0);
	struct llm_rekv_config rc;
	llm_rekv_config_init(&rc);
	/* tokens leave the window during the prefill, the last 32 + 256 are
	 * appended by the flush */
	rc.chunk = 64;
	rc.window = 256;
	cr_assert_eq(llm_rekv_create(model, pool, &rc, e->kv, 2, N_DOC, &e->rk), 0);
	/* in pieces: later prefills continue after what was held back */
	cr_assert_eq(llm_rekv_prefill(e->rk, e->doc.ids, 300, NULL, NULL), 0);
	cr_assert_eq(llm_rekv_prefill(e->rk, e->doc.ids + 300, e->doc.n - 300, NULL, NULL), 0);
	cr_assert_eq(llm_rekv_flush(e->rk), 0);
	cr_assert_eq(llm_rekv_flush(e->rk), 0); /* idempotent */
}

static void close_env(struct env *e)
{
	llm_rekv_free(e->rk);
	llm_kvstore_close(e->kv[0]);
	llm_kvstore_close(e->kv[1]);
	kvt_store_close(e->store);
	llm_qa_doc_free(&e->doc);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

Test(llm_saliency, scores_are_probabilities_and_favour_the_sink)
{
	const struct llm_config *c = llm_model_config(model);
	struct env e = {0};
	open_env(&e);
	uint32_t n = llm_rekv_tokens(e.rk), sink_top = 0;
	float *s = malloc(n * sizeof(float)), *sorted = malloc(n * sizeof(float));
	for (uint32_t l = 0; l < c->n_layers; l++) {
		cr_assert_eq(llm_rekv_saliency(e.rk, l, s), 0);
		for (uint32_t t = 0; t < n; t++)
			cr_assert(isfinite(s[t]) && s[t] >= 0 && s[t] <= 1 + 1e-5f,
				  "layer %u token %u: %g", l, t, s[t]);
		memcpy(sorted, s, n * sizeof(float));
		qsort(sorted, n, sizeof(float), cmp_float);
		sink_top += s[0] >= sorted[n - n / 100 - 1]; /* first token in the top 1% */
	}
	cr_log_info("first token in the top 1%% of scores in %u of %u layers", sink_top,
		    c->n_layers);
	cr_expect_geq(sink_top, c->n_layers / 2, "first token in the top 1%% in %u of %u layers",
		      sink_top, c->n_layers);
	cr_expect_eq(llm_rekv_saliency(e.rk, c->n_layers, s), -EINVAL);
	free(s);
	free(sorted);
	close_env(&e);
}

/* Relative squared error of token t (K and V, every head) of block z vs raw. */
static double token_error(const struct kvt_shape *sh, const uint16_t *z, const uint16_t *raw,
			  uint32_t t)
{
	double err = 0, ref = 0;
	size_t half = (size_t)sh->n_kv_heads * sh->block_tokens * sh->head_dim;
	for (size_t kv = 0; kv < 2; kv++)
		for (uint32_t h = 0; h < sh->n_kv_heads; h++)
			for (uint32_t d = 0; d < sh->head_dim; d++) {
				size_t i = kv * half + ((size_t)h * sh->block_tokens + t) * sh->head_dim + d;
				double a = llm_f16_to_f32(raw[i]), b = llm_f16_to_f32(z[i]);
				err += (a - b) * (a - b);
				ref += a * a;
			}
	return err / (ref > 0 ? ref : 1);
}

Test(llm_saliency, zipcache_cache_keeps_salient_tokens_at_high_bits)
{
	const struct llm_config *c = llm_model_config(model);
	struct env e = {0};
	open_env(&e);
	struct kvt_cache_info ir, iz;
	cr_assert_eq(llm_kvstore_info(e.kv[0], &ir), 0);
	cr_assert_eq(llm_kvstore_info(e.kv[1], &iz), 0);
	cr_expect_eq(iz.n_tokens, N_DOC);
	cr_expect_eq(iz.n_blocks, ir.n_blocks);
	const struct kvt_shape *sh = &llm_kvstore_config(e.kv[0])->shape;
	size_t bb = kvt_block_bytes(sh);
	uint16_t *braw = malloc(bb), *bz = malloc(bb);
	uint32_t bt = sh->block_tokens, nb = llm_rekv_blocks(e.rk), n_sal = (uint32_t)(RATIO * bt);
	uint32_t first_recent = (N_DOC - 32) / bt, n;
	float *s = malloc(N_DOC * sizeof(float)), sorted[64];
	double e_sal = 0, e_low = 0;
	uint64_t c_sal = 0, c_low = 0;
	for (uint32_t l = 0; l < c->n_layers; l++) {
		cr_assert_eq(llm_rekv_saliency(e.rk, l, s), 0);
		for (uint32_t b = 0; b < nb; b++) {
			cr_assert_eq(llm_kvstore_read_block(e.kv[0], l, b, braw, bb, &n), 0);
			cr_assert_eq(llm_kvstore_read_block(e.kv[1], l, b, bz, bb, &n), 0);
			if (b >= first_recent) { /* still raw: the same K/V, in order */
				cr_expect(memcmp(braw, bz, bb) == 0, "layer %u recent block %u differs",
					  l, b);
				continue;
			}
			/* the sink's scores grew after it was stored: skip its blocks */
			if (b * bt < 32)
				continue;
			memcpy(sorted, s + (size_t)b * bt, bt * sizeof(float));
			qsort(sorted, bt, sizeof(float), cmp_float);
			float cut = sorted[bt - n_sal];
			for (uint32_t t = 0; t < bt; t++) {
				double err = token_error(sh, bz, braw, t);
				if (s[b * bt + t] >= cut) {
					e_sal += err;
					c_sal++;
				} else {
					e_low += err;
					c_low++;
				}
			}
		}
	}
	cr_assert_gt(c_sal, 0);
	cr_assert_gt(c_low, 0);
	e_sal /= (double)c_sal;
	e_low /= (double)c_low;
	cr_log_info("relative squared error: salient %g, others %g", e_sal, e_low);
	/* 4 bits instead of 2: about 16 times less squared error */
	cr_expect_lt(e_sal, e_low / 4, "salient tokens' error %g, others' %g", e_sal, e_low);
	free(braw);
	free(bz);
	free(s);
	close_env(&e);
}

Test(llm_saliency, no_scores_without_a_zipcache_cache)
{
	struct env e = {0};
	struct kvt_store_config sc;
	const struct llm_config *c = llm_model_config(model);
	kvt_store_config_init(&sc);
	cr_assert_eq(kvt_store_open(&sc, &e.store), 0);
	struct kvt_cache_config cc;
	kvt_cache_config_init(&cc);
	cc.shape.n_layers = c->n_layers;
	cc.shape.n_kv_heads = c->n_kv_head;
	cc.shape.head_dim = c->head_dim;
	kvt_codec_params_init(&cc.cold, KVT_CODEC_KIVI);
	cr_assert_eq(llm_kvstore_local(e.store, "kivi", &cc, &e.kv[0]), 0);
	struct llm_rekv_config rc;
	llm_rekv_config_init(&rc);
	cr_assert_eq(llm_rekv_create(model, pool, &rc, e.kv, 1, 64, &e.rk), 0);
	float s[64];
	cr_expect_eq(llm_rekv_saliency(e.rk, 0, s), -ENOTSUP);
	llm_rekv_free(e.rk);
	llm_kvstore_close(e.kv[0]);
	kvt_store_close(e.store);
}
