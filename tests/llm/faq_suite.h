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

#endif
