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

/* kvt_cache_read_block / kvt_client_cache_read_block. */
int llm_kvstore_read_block(struct llm_kvstore *s, uint32_t layer, uint64_t block,
			   void *dst, size_t len, uint32_t *n_tokens);

/* Statistics of the whole store the cache lives in. */
int llm_kvstore_stats(struct llm_kvstore *s, struct kvt_stats *out);

/* Description and sizes of this cache. */
int llm_kvstore_info(struct llm_kvstore *s, struct kvt_cache_info *out);

const struct kvt_cache_config *llm_kvstore_config(const struct llm_kvstore *s);

#endif /* LLM_KVSTORE_H */
