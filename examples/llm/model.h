/*
 * model.h - forward pass of a Llama-architecture model from a GGUF file
 * (SmolLM2-135M-Instruct: 30 layers, 9 query heads, 3 KV heads, head_dim
 * 64, RoPE base 100000, tied embeddings), in fp32 on the CPU, threaded.
 *
 * The model keeps no KV cache of its own: the caller decides, per layer,
 * which earlier keys and values the new tokens attend to (a context view,
 * e.g. sink + sliding window during prefill, or retrieved blocks + question
 * while answering), and receives the new tokens' post-RoPE keys, values and
 * queries through a hook, to store them wherever it likes (a kvtier cache).
 *
 * RoPE follows GGUF's llama convention (the converter permuted Q and K):
 * dimensions (2i, 2i+1) of each head rotate by pos * base^(-2i/head_dim).
 */
#ifndef LLM_MODEL_H
#define LLM_MODEL_H

#include <stdint.h>

#include "gguf.h"
#include "pool.h"
#include "quant.h"

struct llm_config {
	uint32_t n_layers, n_embd, n_ff, n_head, n_kv_head, head_dim, vocab;
	uint32_t n_ctx_train; /* llama.context_length; 0 when absent */
	float rope_base, norm_eps;
};

/* Rotates head vector x (head_dim floats, already RoPE'd at some position
 * p) to position p + delta: RoPE rotations compose, R(p + d) = R(d) R(p). */
void llm_rope_shift(const struct llm_config *c, float *x, int64_t delta);

struct llm_model;

/*
 * Loads the weights of an open GGUF file (they stay in its mapping: keep g
 * open while the model lives). Errors: KVT_EFORMAT (architecture not llama,
 * a tensor missing or of the wrong shape/type; message in err), -ENOMEM.
 */
int llm_model_load(const struct llm_gguf *g, struct llm_model **out, char *err,
		   size_t cap);

void llm_model_free(struct llm_model *m);

const struct llm_config *llm_model_config(const struct llm_model *m);

/*
 * Earlier keys/values a layer attends to: n tokens, laid out
 * [kv_head][stride][head_dim] (k and v alike), all visible to every new
 * token (they precede it). n may be 0.
 */
struct llm_ctx_view {
	uint32_t n, stride;
	const float *k, *v;
	/* Optional (NULL: none): n + T floats to which the layer adds, per
	 * context token then per new token, the attention probabilities it
	 * receives summed over every query head and new token (column sums of
	 * the softmax; ZipCache's saliency numerator). Left for the caller. */
	float *att_sum;
};

struct llm_hooks {
	/* Fills *view for `layer` (required). Returns 0 or an error to abort. */
	int (*context)(void *arg, uint32_t layer, struct llm_ctx_view *view);
	/* Optional: the new tokens' post-RoPE q [T][n_head*head_dim], k and v
	 * [T][n_kv_head*head_dim], token-major; called after the layer's
	 * attention (the view may be changed now). Returns 0 or an error. */
	int (*emit)(void *arg, uint32_t layer, uint32_t T, const float *q,
		    const float *k, const float *v);
	void *arg;
};

/*
 * Runs T tokens at positions pos0 .. pos0+T-1 through the model. Each new
 * token attends to its layer's context view and causally to the new tokens
 * before it. If logits is not NULL, writes the logits of the last n_logits
 * tokens into it ([n_logits][vocab]). Returns 0, a hook's error, -EINVAL,
 * or -ENOMEM.
 */
int llm_forward(struct llm_model *m, struct llm_pool *pool,
		const int32_t *tokens, uint32_t T, uint32_t pos0,
		const struct llm_hooks *hooks, float *logits, uint32_t n_logits);

/* Index of the largest of n values (the first on ties). */
uint32_t llm_argmax(const float *x, uint32_t n);

#endif /* LLM_MODEL_H */
