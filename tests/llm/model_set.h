/* model_set.h - the real model, tokenizer and worker pool, opened for a
 * test suite's setup (needs the kvt_llm library). */
#ifndef TESTS_LLM_MODEL_SET_H
#define TESTS_LLM_MODEL_SET_H

#include "llm_set.h"
#include "model_fixture.h"

/* Fetches and opens the model, its tokenizer and a worker pool (all CPUs);
 * any failure fails the test with the loader's message. */
static void load_model_set(struct llm_gguf **g, struct llm_model **model,
			   struct llm_tok **tok, struct llm_pool **pool)
{
	char path[4096], err[512] = "";
	fetch_model(path, sizeof(path));
	cr_assert_eq(llm_set_open(path, 0, g, model, tok, pool, err, sizeof(err)), 0,
		     "%s", err);
}

static void free_model_set(struct llm_gguf *g, struct llm_model *model,
			   struct llm_tok *tok, struct llm_pool *pool)
{
	llm_set_close(g, model, tok, pool);
}

#endif
