/*
 * kvstore.h - one kvtier cache seen the same way whether the store runs in
 * this process (kvtier.h) or in kvtierd (client.h), so the QA demo and its
 * bench run unchanged against either. Only kvtier's public API is used.
 */
#ifndef LLM_KVSTORE_H
#define LLM_KVSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/client.h"
#include "kvtier/kvtier.h"
#include "kvtier/retrieval.h"

struct llm_kvstore;

/* Creates cache `name` in an open in-process store (an old cache of that
 * name is dropped first). Errors: those of kvt_cache_create. */
int llm_kvstore_local(struct kvt_store *store, const char *name,
		      const struct kvt_cache_config *cfg, struct llm_kvstore **out);

/* Same through a daemon connection (kvt_client_cache_create). */
int llm_kvstore_remote(struct kvt_client *cl, const char *name,
		       const struct kvt_cache_config *cfg, struct llm_kvstore **out);

/* Closes the handle; the cache stays in the store. NULL is a no-op. */
void llm_kvstore_close(struct llm_kvstore *s);

/* kvt_cache_append / kvt_client_cache_append (k, v: [head][n][dim] f16). */
int llm_kvstore_append(struct llm_kvstore *s, uint32_t layer, uint32_t n,
		       const void *k, const void *v);

/* 1 when scores given to llm_kvstore_append_scored are used: an
 * in-process cache whose cold codec is ZipCache (kvtierd's protocol takes
 * no scores). */
int llm_kvstore_wants_scores(const struct llm_kvstore *s);

/* kvt_cache_append_scored (scores: n floats, may be NULL); a cache that does
 * not want scores gets llm_kvstore_append. */
int llm_kvstore_append_scored(struct llm_kvstore *s, uint32_t layer, uint32_t n,
			      const void *k, const void *v, const float *scores);

/* kvt_cache_read_block / kvt_client_cache_read_block. */
int llm_kvstore_read_block(struct llm_kvstore *s, uint32_t layer, uint64_t block,
			   void *dst, size_t len, uint32_t *n_tokens);

/* Statistics of the whole store the cache lives in. */
int llm_kvstore_stats(struct llm_kvstore *s, struct kvt_stats *out);

/* Description and sizes of this cache. */
int llm_kvstore_info(struct llm_kvstore *s, struct kvt_cache_info *out);

const struct kvt_cache_config *llm_kvstore_config(const struct llm_kvstore *s);

/*
 * In-process stores: keep a retrieval index (retrieval.h; cfg NULL:
 * defaults) of the keys appended from now on, for llm_kvstore_retrieve.
 * kvtierd keeps its own index, so this is a no-op for remote caches.
 * Errors: those of kvt_rindex_create.
 */
int llm_kvstore_index(struct llm_kvstore *s, const struct kvt_rindex_config *cfg);

/*
 * Block selection of kvtier's retrieval module for one layer: kvt_retrieve
 * on the local index, or kvt_client_cache_retrieve on the daemon (q:
 * float32 [n_q_heads][n_queries][head_dim]). -ENOTSUP for a local store
 * without llm_kvstore_index. Release *out with kvt_selection_free().
 */
int llm_kvstore_retrieve(struct llm_kvstore *s, uint32_t layer,
			 const struct kvt_retrieve_params *p, const float *q,
			 struct kvt_selection *out);

#endif /* LLM_KVSTORE_H */
