/*
 * load.c - indexing a stored cache, and loading a selection into a pool
 * of raw blocks with its block table.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rindex_internal.h"

#define READ_TOKENS 4096 /* tokens read from the cache at once */

static int same_shape(const struct kvt_shape *a, const struct kvt_shape *b)
{
	return a->n_layers == b->n_layers && a->n_kv_heads == b->n_kv_heads &&
	       a->head_dim == b->head_dim && a->block_tokens == b->block_tokens &&
	       a->dtype == b->dtype;
}

static int update_layer(struct kvt_rindex *x, struct kvt_cache *cache,
			uint32_t layer, void *k, void *v)
{
	uint64_t have = x->layers[layer].n_tokens, n;
	int rc = kvt_cache_layer_tokens(cache, layer, &n);
	if (rc == 0 && have > n)
		return KVT_ECORRUPT; /* indexes tokens the cache does not hold */
	while (rc == 0 && have < n) {
		uint32_t m = n - have < READ_TOKENS ? (uint32_t)(n - have)
						     : READ_TOKENS;
		rc = kvt_cache_read(cache, layer, have, m, k, v);
		if (rc == 0)
			rc = kvt_rindex_add(x, layer, k, m);
		have += m;
	}
	return rc;
}

int kvt_rindex_update_from_cache(struct kvt_rindex *idx, struct kvt_cache *cache)
{
	if (!idx || !cache)
		return -EINVAL;
	struct kvt_cache_info *info = malloc(sizeof *info);
	if (!info)
		return -ENOMEM;
	int rc = kvt_cache_get_info(cache, info);
	if (rc == 0 && !same_shape(&info->config.shape, &idx->shape))
		rc = KVT_ESHAPE;
	free(info);
	const struct kvt_shape *s = &idx->shape;
	size_t bytes = (size_t)s->n_kv_heads * READ_TOKENS * s->head_dim *
		       kvt_dtype_size(s->dtype);
	void *k = rc ? NULL : malloc(bytes), *v = rc ? NULL : malloc(bytes);
	if (rc == 0 && (!k || !v))
		rc = -ENOMEM;
	for (uint32_t l = 0; rc == 0 && l < s->n_layers; l++)
		rc = update_layer(idx, cache, l, k, v);
	free(k);
	free(v);
	return rc;
}

int kvt_rindex_build_from_cache(struct kvt_cache *cache,
				const struct kvt_rindex_config *cfg,
				struct kvt_rindex **out)
{
	if (!cache || !out)
		return -EINVAL;
	struct kvt_cache_info *info = malloc(sizeof *info);
	if (!info)
		return -ENOMEM;
	struct kvt_rindex *x = NULL;
	int rc = kvt_cache_get_info(cache, info);
	if (rc == 0)
		rc = kvt_rindex_create(&info->config.shape, cfg, &x);
	free(info);
	if (rc == 0)
		rc = kvt_rindex_update_from_cache(x, cache);
	if (rc) {
		kvt_rindex_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

/* ---------------------------------------------------------------- loading */

void kvt_block_table_free(struct kvt_block_table *t)
{
	if (!t)
		return;
	free(t->block);
	free(t->slot);
	free(t->n_valid);
	memset(t, 0, sizeof *t);
}

static int table_alloc(struct kvt_block_table *t, uint32_t n)
{
	t->block = malloc(((size_t)n + 1) * sizeof *t->block);
	t->slot = malloc(((size_t)n + 1) * sizeof *t->slot);
	t->n_valid = malloc(((size_t)n + 1) * sizeof *t->n_valid);
	if (t->block && t->slot && t->n_valid)
		return 0;
	kvt_block_table_free(t);
	return -ENOMEM;
}

int kvt_retrieve_load(struct kvt_cache *cache, const struct kvt_selection *sel,
		      void *pool, size_t pool_len, struct kvt_block_table *table)
{
	struct kvt_cache_info *info;
	if (!cache || !sel || !pool || !table || (sel->n_blocks && !sel->blocks))
		return -EINVAL;
	if (!(info = malloc(sizeof *info)))
		return -ENOMEM;
	int rc = kvt_cache_get_info(cache, info);
	size_t bb = kvt_block_bytes(&info->config.shape);
	uint32_t bt = info->config.shape.block_tokens;
	free(info);
	if (rc)
		return rc;
	if (pool_len / bb < sel->n_blocks)
		return -ENOBUFS;
	rc = kvt_cache_prefetch(cache, sel->layer, sel->blocks, sel->n_blocks,
				NULL);
	struct kvt_block_table t = {sel->n_blocks, bt, bb, NULL, NULL, NULL};
	if (rc == 0)
		rc = table_alloc(&t, sel->n_blocks);
	for (uint32_t i = 0; rc == 0 && i < sel->n_blocks; i++) {
		t.block[i] = sel->blocks[i];
		t.slot[i] = i;
		rc = kvt_cache_read_block(cache, sel->layer, sel->blocks[i],
					  (char *)pool + (size_t)i * bb, bb,
					  &t.n_valid[i]);
	}
	if (rc) {
		kvt_block_table_free(&t);
		return rc;
	}
	*table = t;
	return 0;
}
