/* llm_set.h - the model, its tokenizer and a worker pool, opened and
 * closed together (what every LLM tool starts with). */
#ifndef LLM_SET_H
#define LLM_SET_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "model.h"
#include "pool.h"
#include "tokenizer.h"

/*
 * Opens the GGUF file at path, loads the model and the tokenizer from it
 * and starts a pool of `threads` workers (0: all online CPUs). On failure
 * err (cap bytes) says why (a missing file: run scripts/fetch_model.sh),
 * what was opened stays in the out-parameters for llm_set_close, and the
 * error is returned (those of llm_gguf_open, llm_model_load, llm_tok_load,
 * llm_pool_create).
 */
int llm_set_open(const char *path, uint32_t threads, struct llm_gguf **g,
		 struct llm_model **m, struct llm_tok **tok, struct llm_pool **pool,
		 char *err, size_t cap);

/* Releases what llm_set_open opened (NULLs are skipped). */
void llm_set_close(struct llm_gguf *g, struct llm_model *m, struct llm_tok *tok,
		   struct llm_pool *pool);

#endif
