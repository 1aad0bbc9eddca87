/*
 * kvbuf.h - a plain in-memory fp32 KV cache (every token of every layer)
 * and greedy generation over it: the full-cache reference the store-backed
 * paths are compared with, and the engine of the small llm_run tool.
 */
#ifndef LLM_KVBUF_H
#define LLM_KVBUF_H

#include <stdint.h>

#include "model.h"

struct llm_kvbuf;

/* A buffer for up to cap tokens. -ENOMEM. */
int llm_kvbuf_create(const struct llm_config *cfg, uint32_t cap,
		     struct llm_kvbuf **out);
void llm_kvbuf_free(struct llm_kvbuf *b);

/* Tokens held (per layer, all layers alike after a full forward). */
uint32_t llm_kvbuf_len(const struct llm_kvbuf *b);

/* Forgets tokens past n (n <= length). */
void llm_kvbuf_truncate(struct llm_kvbuf *b, uint32_t n);

/* Sets the length of layer l after the caller filled it through
 * llm_kvbuf_layer (n <= capacity). */
void llm_kvbuf_set_len(struct llm_kvbuf *b, uint32_t l, uint32_t n);

/* Hooks that attend to everything held and append the new tokens.
 * -ENOSPC from emit when the buffer is full. */
void llm_kvbuf_hooks(struct llm_kvbuf *b, struct llm_hooks *out);

/* Direct access to layer l: K and V as [kv_head][cap][head_dim]. */
void llm_kvbuf_layer(struct llm_kvbuf *b, uint32_t l, float **k, float **v,
		     uint32_t *cap);

/*
 * Feeds prompt (n ids, appended after what b holds, at positions pos0 ..)
 * and then greedily generates up to max_new ids into out, stopping after
 * any of the n_stops ids in stops (included in out). *n_out gets the count. If logits_out is not
 * NULL it receives the logits of each generated step ([max_new][vocab]).
 */
int llm_generate(struct llm_model *m, struct llm_pool *pool, struct llm_kvbuf *b,
		 const int32_t *prompt, uint32_t n, uint32_t pos0, uint32_t max_new,
		 const int32_t *stops, uint32_t n_stops,
		 int32_t *out, uint32_t *n_out, float *logits_out);

#endif /* LLM_KVBUF_H */
