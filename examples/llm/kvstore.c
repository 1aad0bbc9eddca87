/* kvstore.c - one cache over the in-process store or kvtierd (see kvstore.h). */
#include "kvstore.h"

#include <errno.h>
#include <stdlib.h>

struct llm_kvstore {
	struct kvt_cache_config cfg;
	struct kvt_store *store; /* local */
	struct kvt_cache *cache;
	struct kvt_client *cl;   /* remote */
	struct kvt_client_cache *rcache;
	struct kvt_rindex *idx;  /* local retrieval index, optional */
};

int llm_kvstore_local(struct kvt_store *store, const char *name,
		      const struct kvt_cache_config *cfg, struct llm_kvstore **out)
{
	struct llm_kvstore *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->store = store;
	kvt_cache_drop(store, name);
	int rc = kvt_cache_create(store, name, cfg, &s->cache);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int llm_kvstore_remote(struct kvt_client *cl, const char *name,
		       const struct kvt_cache_config *cfg, struct llm_kvstore **out)
{
	struct llm_kvstore *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->cl = cl;
	kvt_client_cache_drop(cl, name);
	int rc = kvt_client_cache_create(cl, name, cfg, &s->rcache);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void llm_kvstore_close(struct llm_kvstore *s)
{
	if (!s)
		return;
	kvt_rindex_free(s->idx);
	kvt_cache_close(s->cache);
	kvt_client_cache_close(s->rcache);
	free(s);
}

int llm_kvstore_wants_scores(const struct llm_kvstore *s)
{
	return s->cache && s->cfg.cold.id == KVT_CODEC_ZIPCACHE;
}

int llm_kvstore_append(struct llm_kvstore *s, uint32_t layer, uint32_t n,
		       const void *k, const void *v)
{
	return llm_kvstore_append_scored(s, layer, n, k, v, NULL);
}

int llm_kvstore_append_scored(struct llm_kvstore *s, uint32_t layer, uint32_t n,
			      const void *k, const void *v, const float *scores)
{
	if (!s->cache)
		return kvt_client_cache_append(s->rcache, layer, n, k, v);
	int rc = kvt_cache_append_scored(s->cache, layer, n, k, v,
					 llm_kvstore_wants_scores(s) ? scores : NULL);
	if (rc == 0 && s->idx)
		rc = kvt_rindex_add(s->idx, layer, k, n);
	return rc;
}

int llm_kvstore_read_block(struct llm_kvstore *s, uint32_t layer, uint64_t block,
			   void *dst, size_t len, uint32_t *n_tokens)
{
	return s->cache ? kvt_cache_read_block(s->cache, layer, block, dst, len, n_tokens)
			: kvt_client_cache_read_block(s->rcache, layer, block, dst, len,
						      n_tokens);
}

int llm_kvstore_stats(struct llm_kvstore *s, struct kvt_stats *out)
{
	return s->store ? kvt_store_stats(s->store, out) : kvt_client_stats(s->cl, out);
}

int llm_kvstore_info(struct llm_kvstore *s, struct kvt_cache_info *out)
{
	return s->cache ? kvt_cache_get_info(s->cache, out)
			: kvt_client_cache_get_info(s->rcache, out);
}

const struct kvt_cache_config *llm_kvstore_config(const struct llm_kvstore *s)
{
	return &s->cfg;
}

int llm_kvstore_index(struct llm_kvstore *s, const struct kvt_rindex_config *cfg)
{
	if (!s->cache || s->idx)
		return 0;
	return kvt_rindex_create(&s->cfg.shape, cfg, &s->idx);
}

int llm_kvstore_retrieve(struct llm_kvstore *s, uint32_t layer,
			 const struct kvt_retrieve_params *p, const float *q,
			 struct kvt_selection *out)
{
	if (!s->cache)
		return kvt_client_cache_retrieve(s->rcache, layer, p, q, out);
	return s->idx ? kvt_retrieve(s->idx, layer, p, q, out) : -ENOTSUP;
}
