/*
 * rekv.h - ReKV-style long-document QA over a kvtier store.
 *
 * Prefill: the document is fed in chunks; each chunk attends to the sink
 * (its first tokens) and a sliding window of the tokens before it, and
 * every layer's post-RoPE K and V go to one or more kvtier caches (which
 * quantize cold blocks and spill them under their budgets). Per block and
 * kv head the sum of its keys is kept here as retrieval metadata.
 *
 * Question: a probe pass runs the question over the sink + window to get
 * its queries; llm_rekv_select() scores blocks per layer by the cosine of
 * the block's mean key with the question's mean query (per kv head,
 * averaged over its GQA group and the question tokens) and keeps the best
 * under a token budget, plus the sink and the most recent blocks;
 * llm_rekv_load() makes the chosen blocks resident (read from the store,
 * decoded) in a KV buffer the answer is then generated over, at positions
 * after the document's.
 */
#ifndef LLM_REKV_H
#define LLM_REKV_H

#include <stdint.h>

#include "kvbuf.h"
#include "kvstore.h"
#include "model.h"

struct llm_rekv_config {
	uint32_t chunk;  /* prefill chunk in tokens (default 128) */
	uint32_t window; /* earlier tokens each chunk attends to (default 1024) */
	uint32_t sink;   /* first tokens always visible and retrieved (default 32) */
	uint32_t recent; /* last document tokens always retrieved (default 32) */
	uint32_t max_pos; /* positions the model handles (0: its n_ctx_train).
	                     A longer document is answered with the retrieved
	                     blocks moved to consecutive positions from 0 (keys
	                     re-rotated) and the question after them; shorter ones
	                     keep their original positions (ReKV). UINT32_MAX:
	                     never move. */
	int rope_free;   /* 1: score with RoPE undone on keys and queries (content
	                    only); 0 (default): post-RoPE, as attention sees them,
	                    which covered more of the true attention mass in
	                    bench_llm_qa (0.73 vs 0.61 at a 10% budget) */
	int saliency;    /* 1 (default): in-process ZipCache caches get ZipCache's
	                    saliency per token and layer (kvt_cache_append_scored):
	                    the prefill attention it received, summed over the
	                    chunks whose window holds it and averaged over query
	                    heads and the queries that saw it. Such a cache gets
	                    a token only when the score is final, when it leaves
	                    the window (the sink with the window's first drop), or
	                    at llm_rekv_flush with the scores so far. 0: none
	                    (every token low-bit). Other caches are unaffected. */
};

void llm_rekv_config_init(struct llm_rekv_config *cfg);

struct llm_rekv;

/*
 * A session over model m for documents of up to max_tokens tokens, writing
 * to n_stores caches (f16, the model's shape, one block size; they stay
 * owned by the caller). n_stores may be 0 (prefill without a store, to
 * time the model alone; blocks of 16 tokens). Errors: -EINVAL, -ENOMEM.
 */
int llm_rekv_create(struct llm_model *m, struct llm_pool *pool,
		    const struct llm_rekv_config *cfg, struct llm_kvstore **stores,
		    uint32_t n_stores, uint32_t max_tokens, struct llm_rekv **out);

void llm_rekv_free(struct llm_rekv *r);

typedef void (*llm_progress_fn)(void *arg, uint32_t done, uint32_t total);

/* Prefills n more document tokens (the caller's store errors pass through,
 * e.g. KVT_ENOSPACE). progress may be NULL. */
int llm_rekv_prefill(struct llm_rekv *r, const int32_t *ids, uint32_t n,
		     llm_progress_fn progress, void *arg);

/* Appends what the ZipCache caches still lack (tokens of the window, see
 * llm_rekv_config.saliency) with their scores so far; probe and load do it
 * themselves. Later prefill continues from there. Errors: the store's. */
int llm_rekv_flush(struct llm_rekv *r);

/* The saliency scores so far of layer `layer`'s llm_rekv_tokens() tokens
 * into out (what a token leaving the window is stored with). -ENOTSUP when
 * no cache takes scores, -EINVAL for a bad layer. */
int llm_rekv_saliency(const struct llm_rekv *r, uint32_t layer, float *out);

uint32_t llm_rekv_tokens(const struct llm_rekv *r);
uint32_t llm_rekv_blocks(const struct llm_rekv *r);
uint32_t llm_rekv_block_tokens(const struct llm_rekv *r);

/* 1 when block b is a sink or recent block (always selected). */
int llm_rekv_forced(const struct llm_rekv *r, uint32_t b);

/* A question's queries from the probe pass, post-RoPE. */
struct llm_query {
	uint32_t n_layers, nq;
	float *mean; /* [layer][kv_head][head_dim]: mean over tokens and group */
	float *all;  /* [layer][q_head][nq][head_dim] (retrieval.h's layout) */
};

/* Runs the question (nq ids) over sink + window and fills *out (release
 * with llm_query_free). Errors: -ENOMEM, the model's. */
int llm_rekv_probe(struct llm_rekv *r, const int32_t *q, uint32_t nq,
		   struct llm_query *out);

void llm_query_free(struct llm_query *q);

/* Blocks chosen per layer, ascending: count[l] of them at
 * blocks[l * stride ..]. */
struct llm_selection {
	uint32_t n_layers, stride;
	uint32_t *count;  /* [n_layers] */
	uint32_t *blocks; /* [n_layers][stride] */
};

/* The most blocks any layer holds. */
uint32_t llm_selection_max(const struct llm_selection *sel);

/*
 * The demo's own ReKV selection (see top): at most budget_tokens tokens per
 * layer (at least the sink and recent blocks). Release with
 * llm_selection_free().
 */
int llm_rekv_select(const struct llm_rekv *r, const struct llm_query *q,
		    uint32_t budget_tokens, struct llm_selection *sel);

/* The scores llm_rekv_select ranks blocks by: scores[layer][block]. */
int llm_rekv_score(const struct llm_rekv *r, const struct llm_query *q, float *scores);

/* Selection from any per-block scores ([layer][block], higher is better):
 * sink and recent blocks, then the best others, budget_tokens per layer. */
int llm_rekv_select_scores(const struct llm_rekv *r, const float *scores,
			   uint32_t budget_tokens, struct llm_selection *sel);

/*
 * Selection by kvtier's retrieval module (retrieval.h: ClusterKV or ReKV),
 * run by store `store` (its local index or kvtierd), with this session's
 * sink and recent windows. Errors: those of llm_kvstore_retrieve.
 */
int llm_rekv_retrieve(const struct llm_rekv *r, uint32_t store,
		      enum kvt_retrieval_mode mode, const struct llm_query *q,
		      uint32_t budget_tokens, struct llm_selection *sel);

/* Every block of the document (the full-cache reference). */
int llm_rekv_select_all(const struct llm_rekv *r, struct llm_selection *sel);

void llm_selection_free(struct llm_selection *sel);

/* Position of the question's first token after llm_rekv_load(sel): the
 * document's length, or past the moved blocks (see max_pos). */
uint32_t llm_rekv_answer_pos(const struct llm_rekv *r, const struct llm_selection *sel);

/*
 * Makes the selected blocks of store `store` resident: reads and decodes
 * them into layers of kb (which is reset first; capacity must hold
 * llm_selection_max * block tokens plus what will be appended). *bytes (may be
 * NULL) gets the raw bytes made resident. Errors: the store's.
 */
int llm_rekv_load(struct llm_rekv *r, uint32_t store, const struct llm_selection *sel,
		  struct llm_kvbuf *kb, uint64_t *bytes);

#endif /* LLM_REKV_H */
