/*
 * The store in the loop on the real model: the Debian FAQ splits into
 * question/evidence sections; a short document prefilled through rekv
 * (chunks, sliding window wider than the document, so attention is exact)
 * stores in a raw kvtier cache the same K/V a plain forward computes; the
 * answer over all retrieved blocks gives the plain forward's logits; the
 * selection keeps sink and recent blocks and honours the budget; KIVI
 * caches read back close to the raw ones.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faq_suite.h"

TestSuite(llm_qa, .init = setup, .fini = teardown, .timeout = 300);

Test(llm_qa, faq_sections_are_questions_with_bodies)
{
	cr_expect_gt(faq.n_sec, 100);
	cr_expect_str_eq(faq.sec[0].number, "1.1");
	cr_expect_str_eq(faq.sec[0].question, "What is this FAQ?");
	size_t q = 0;
	for (size_t i = 0; i < faq.n_sec; i++) {
		const struct llm_faq_section *s = &faq.sec[i];
		cr_expect(s->begin < s->body && s->body < s->end && s->end <= faq.len,
			  "section %s has no body", s->number);
		cr_expect(i == 0 || faq.sec[i - 1].end <= s->begin);
		cr_expect_null(strchr(s->question, '\n'));
		q += s->question[strlen(s->question) - 1] == '?';
	}
	cr_expect_gt(q, faq.n_sec * 3 / 4, "only %zu of %zu headings are questions", q, faq.n_sec);
}

Test(llm_qa, document_tokens_cover_sections_in_order)
{
	struct llm_qa_doc d;
	cr_assert_eq(llm_qa_doc_build(tok, &faq, 2048, &d), 0);
	cr_expect_eq(d.n, 2048);
	cr_expect_gt(d.n_sec, 2);
	for (uint32_t i = 0; i < d.n_sec; i++) {
		cr_expect(d.header <= d.sec_t0[i] && d.sec_t0[i] < d.sec_t1[i] && d.sec_t1[i] <= d.n);
		cr_expect_eq(llm_qa_section_of(&d, d.sec_t0[i]), (int)i);
		char *s;
		size_t n;
		cr_assert_eq(llm_tok_decode(tok, d.ids + d.sec_t0[i], d.sec_t1[i] - d.sec_t0[i], 0,
					    &s, &n), 0);
		cr_expect_eq(n, faq.sec[i].end - faq.sec[i].begin);
		cr_expect(memcmp(s, faq.text + faq.sec[i].begin, n) == 0);
		free(s);
	}
	llm_qa_doc_free(&d);
}

struct env {
	struct kvt_store *store;
	struct llm_kvstore *kv[2];
	struct llm_rekv *rk;
	struct llm_qa_doc doc;
};

static void open_env(struct env *e, uint32_t tokens)
{
	struct kvt_store_config sc;
	kvt_store_config_init(&sc);
	cr_assert_eq(kvt_store_open(&sc, &e->store), 0);
	for (int i = 0; i < 2; i++) {
		struct kvt_cache_config cc;
		model_cache_config(&cc);
		if (i == 1) {
			kvt_codec_params_init(&cc.cold, KVT_CODEC_KIVI);
			cc.cold.bits = 8;
		}
		cr_assert_eq(llm_kvstore_local(e->store, i ? "kivi8" : "raw", &cc, &e->kv[i]), 0);
		if (i == 0)
			cr_assert_eq(llm_kvstore_index(e->kv[0], NULL), 0);
	}
	cr_assert_eq(llm_qa_doc_build(tok, &faq, tokens, &e->doc), 0);
	struct llm_rekv_config rc;
	llm_rekv_config_init(&rc);
	rc.chunk = 64; /* several chunks, all inside the window */
	cr_assert_eq(llm_rekv_create(model, pool, &rc, e->kv, 2, tokens, &e->rk), 0);
	cr_assert_eq(llm_rekv_prefill(e->rk, e->doc.ids, e->doc.n, NULL, NULL), 0);
}

static void close_env(struct env *e)
{
	llm_rekv_free(e->rk);
	llm_kvstore_close(e->kv[0]);
	llm_kvstore_close(e->kv[1]);
	kvt_store_close(e->store);
	llm_qa_doc_free(&e->doc);
}

static float max_diff(const float *a, const float *b, size_t n)
{
	float d = 0;
	for (size_t i = 0; i < n; i++)
		d = fmaxf(d, fabsf(a[i] - b[i]));
	return d;
}

Test(llm_qa, stored_blocks_and_answer_logits_match_a_plain_forward)
{
	const struct llm_config *c = llm_model_config(model);
	struct env e = {0};
	open_env(&e, 300);
	/* plain forward of the same tokens */
	struct llm_kvbuf *plain, *ret;
	struct llm_hooks hk;
	int32_t *q;
	uint32_t nq;
	cr_assert_eq(llm_qa_question(tok, faq.sec[0].question, &q, &nq), 0);
	cr_assert_eq(llm_kvbuf_create(c, e.doc.n + nq, &plain), 0);
	llm_kvbuf_hooks(plain, &hk);
	cr_assert_eq(llm_forward(model, pool, e.doc.ids, e.doc.n, 0, &hk, NULL, 0), 0);
	/* everything back from the raw cache */
	struct llm_selection all;
	uint64_t bytes;
	cr_assert_eq(llm_rekv_select_all(e.rk, &all), 0);
	cr_expect_eq(all.count[0], (300 + 15) / 16);
	cr_assert_eq(llm_kvbuf_create(c, all.count[0] * 16 + nq, &ret), 0);
	cr_assert_eq(llm_rekv_load(e.rk, 0, &all, ret, &bytes), 0);
	cr_expect_eq(llm_kvbuf_len(ret), e.doc.n);
	cr_expect_eq(bytes, (uint64_t)all.count[0] * c->n_layers *
				    kvt_block_bytes(&llm_kvstore_config(e.kv[0])->shape));
	float worst = 0;
	for (uint32_t l = 0; l < c->n_layers; l++) {
		float *pk, *pv, *rk, *rv;
		uint32_t cap_p, cap_r;
		llm_kvbuf_layer(plain, l, &pk, &pv, &cap_p);
		llm_kvbuf_layer(ret, l, &rk, &rv, &cap_r);
		for (uint32_t h = 0; h < c->n_kv_head; h++)
			for (uint32_t t = 0; t < e.doc.n; t++)
				for (uint32_t dd = 0; dd < c->head_dim; dd++) {
					float a = pk[((size_t)h * cap_p + t) * c->head_dim + dd];
					float b = rk[((size_t)h * cap_r + t) * c->head_dim + dd];
					/* fp16 storage: relative 2^-11, plus float noise */
					float d = fabsf(a - b) / (fabsf(a) + 1.0f);
					worst = fmaxf(worst, d);
				}
	}
	cr_expect_lt(worst, 2e-3f, "stored keys differ from a plain forward by %g", worst);
	/* the answer's logits over the retrieved blocks */
	float *la = malloc(c->vocab * sizeof(float)), *lb = malloc(c->vocab * sizeof(float));
	struct llm_hooks hr;
	llm_kvbuf_hooks(ret, &hr);
	cr_assert_eq(llm_forward(model, pool, q, nq, e.doc.n, &hk, la, 1), 0);
	cr_assert_eq(llm_forward(model, pool, q, nq, e.doc.n, &hr, lb, 1), 0);
	cr_expect_eq(llm_argmax(la, c->vocab), llm_argmax(lb, c->vocab));
	float d = max_diff(la, lb, c->vocab);
	cr_expect_lt(d, 0.1f, "answer logits over stored blocks differ by %f", d);
	free(la);
	free(lb);
	free(q);
	llm_selection_free(&all);
	llm_kvbuf_free(plain);
	llm_kvbuf_free(ret);
	close_env(&e);
}

Test(llm_qa, selection_keeps_sink_recent_and_budget)
{
	const struct llm_config *c = llm_model_config(model);
	struct env e = {0};
	open_env(&e, 640);
	int32_t *q;
	uint32_t nq, nb = llm_rekv_blocks(e.rk);
	cr_assert_eq(nb, 40);
	cr_assert_eq(llm_qa_question(tok, faq.sec[1].question, &q, &nq), 0);
	struct llm_query qq;
	cr_assert_eq(llm_rekv_probe(e.rk, q, nq, &qq), 0);
	struct llm_selection sel;
	cr_assert_eq(llm_rekv_select(e.rk, &qq, 160, &sel), 0);
	cr_expect_eq(sel.count[0], 10);
	for (uint32_t l = 0; l < sel.n_layers; l++) {
		const uint32_t *b = sel.blocks + (size_t)l * sel.stride;
		cr_expect_eq(sel.count[l], 10);
		cr_expect(b[0] == 0 && b[1] == 1, "layer %u lacks the sink", l);
		cr_expect(b[8] == 38 && b[9] == 39, "layer %u lacks the recent blocks", l);
		for (uint32_t i = 1; i < sel.count[l]; i++)
			cr_expect_lt(b[i - 1], b[i]);
	}
	llm_selection_free(&sel);
	/* a budget below sink + recent still keeps them; above all: everything */
	cr_assert_eq(llm_rekv_select(e.rk, &qq, 1, &sel), 0);
	cr_expect_eq(sel.count[0], 4);
	llm_selection_free(&sel);
	cr_assert_eq(llm_rekv_select(e.rk, &qq, 100000, &sel), 0);
	cr_expect_eq(sel.count[0], nb);
	llm_selection_free(&sel);
	/* kvtier's retrieval module (ClusterKV, ReKV) through the same path */
	for (int mode = KVT_RETRIEVE_CLUSTERKV; mode <= KVT_RETRIEVE_REKV; mode++) {
		cr_assert_eq(llm_rekv_retrieve(e.rk, 0, (enum kvt_retrieval_mode)mode, &qq, 160, &sel), 0);
		for (uint32_t l = 0; l < sel.n_layers; l++) {
			const uint32_t *b = sel.blocks + (size_t)l * sel.stride;
			uint32_t n = sel.count[l];
			cr_expect(n >= 4 && n <= 10, "mode %d layer %u: %u blocks", mode, l, n);
			cr_expect(b[0] == 0 && b[1] == 1 && b[n - 2] == 38 && b[n - 1] == 39,
				  "mode %d layer %u lacks sink or recent blocks", mode, l);
			for (uint32_t i = 1; i < n; i++)
				cr_expect_lt(b[i - 1], b[i]);
		}
		llm_selection_free(&sel);
	}
	/* the local index only exists where it was asked for */
	cr_expect_eq(llm_rekv_retrieve(e.rk, 1, KVT_RETRIEVE_REKV, &qq, 160, &sel), -ENOTSUP);
	/* KIVI-8 blocks read back close to raw ones */
	struct llm_selection all;
	struct llm_kvbuf *a, *b;
	cr_assert_eq(llm_rekv_select_all(e.rk, &all), 0);
	cr_assert_eq(llm_kvbuf_create(c, nb * 16, &a), 0);
	cr_assert_eq(llm_kvbuf_create(c, nb * 16, &b), 0);
	cr_assert_eq(llm_rekv_load(e.rk, 0, &all, a, NULL), 0);
	cr_assert_eq(llm_rekv_load(e.rk, 1, &all, b, NULL), 0);
	float *ka, *va, *kb, *vb;
	uint32_t cap;
	double err = 0, mag = 0;
	for (uint32_t l = 0; l < c->n_layers; l++) {
		llm_kvbuf_layer(a, l, &ka, &va, &cap);
		llm_kvbuf_layer(b, l, &kb, &vb, &cap);
		for (size_t i = 0; i < (size_t)c->n_kv_head * cap * c->head_dim; i++) {
			err += fabs(ka[i] - kb[i]) + fabs(va[i] - vb[i]);
			mag += fabs(ka[i]) + fabs(va[i]);
		}
	}
	cr_expect_lt(err / mag, 0.02, "KIVI-8 relative error %f", err / mag);
	cr_expect_gt(err, 0, "KIVI-8 blocks are bit-identical to raw: not quantized?");
	llm_selection_free(&all);
	llm_kvbuf_free(a);
	llm_kvbuf_free(b);
	llm_query_free(&qq);
	free(q);
	close_env(&e);
}
