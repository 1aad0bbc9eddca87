/* llm_set.c - opening the model, tokenizer and pool together. */
#include "llm_set.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int llm_set_open(const char *path, uint32_t threads, struct llm_gguf **g,
		 struct llm_model **m, struct llm_tok **tok, struct llm_pool **pool,
		 char *err, size_t cap)
{
	int rc = llm_gguf_open(path, g, err, cap);
	if (rc == -ENOENT && err && cap)
		snprintf(err, cap, "%s: missing; run scripts/fetch_model.sh first", path);
	if (rc == 0)
		rc = llm_model_load(*g, m, err, cap);
	if (rc == 0)
		rc = llm_tok_load(*g, tok, err, cap);
	if (rc == 0 && (rc = llm_pool_create(threads, pool)) && err && cap)
		snprintf(err, cap, "worker pool: %s", strerror(-rc));
	return rc;
}

void llm_set_close(struct llm_gguf *g, struct llm_model *m, struct llm_tok *tok,
		   struct llm_pool *pool)
{
	llm_pool_free(pool);
	llm_tok_free(tok);
	llm_model_free(m);
	llm_gguf_close(g);
}
