/* model_set.h - the real model, tokenizer and worker pool, opened for a
 * test suite's setup (needs the kvt_llm library). */
#ifndef TESTS_LLM_MODEL_SET_H
#define TESTS_LLM_MODEL_SET_H

#include "gguf.h"
#include "model.h"
#include "model_fixture.h"
#include "pool.h"
#include "tokenizer.h"

/* Fetches and opens the model, its tokenizer and a worker pool (all CPUs);
 * any failure fails the test with the loader's message. */
static void load_model_set(struct llm_gguf **g, struct llm_model **model,
			   struct llm_tok **tok, struct llm_pool **pool)
{
	char path[4096], err[512] = "";
	fetch_model(path, sizeof(path));
	cr_assert_eq(llm_gguf_open(path, g, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(llm_model_load(*g, model, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(llm_tok_load(*g, tok, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(llm_pool_create(0, pool), 0);
}

static void free_model_set(struct llm_gguf *g, struct llm_model *model,
			   struct llm_tok *tok, struct llm_pool *pool)
{
	llm_pool_free(pool);
	llm_tok_free(tok);
	llm_model_free(model);
	llm_gguf_close(g);
}

#endif
