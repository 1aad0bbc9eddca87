/* faq_suite.h - the suite state of the model tests that also need the
 * Debian FAQ: the model set (model_set.h) and the parsed FAQ, opened by
 * setup() and closed by teardown() (for TestSuite .init / .fini). */
#ifndef TESTS_LLM_FAQ_SUITE_H
#define TESTS_LLM_FAQ_SUITE_H

#include "model_set.h"
#include "qa.h"

static struct llm_gguf *g;
static struct llm_model *model;
static struct llm_tok *tok;
static struct llm_pool *pool;
static struct llm_faq faq;

static void setup(void)
{
	char err[512] = "";
	load_model_set(&g, &model, &tok, &pool);
	cr_assert_eq(llm_faq_load(LLM_FAQ_PATH, &faq, err, sizeof(err)), 0,
		     "%s (scripts/setup.sh installs debian-faq)", err);
}

static void teardown(void)
{
	llm_faq_free(&faq);
	free_model_set(g, model, tok, pool);
}

/* A cache configuration for the model's K/V (its shape, fp16, 16-token
 * blocks, a 32-token recent window, raw cold blocks). */
static void model_cache_config(struct kvt_cache_config *cc)
{
	const struct llm_config *c = llm_model_config(model);
	kvt_cache_config_init(cc);
	cc->shape.n_layers = c->n_layers;
	cc->shape.n_kv_heads = c->n_kv_head;
	cc->shape.head_dim = c->head_dim;
	cc->recent_tokens = 32;
}

#endif
