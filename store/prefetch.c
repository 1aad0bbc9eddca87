/* prefetch.c - kvt_cache_prefetch: bring chosen blocks to the host tier. */
#include <errno.h>
#include <stdlib.h>

#include "store_internal.h"

static int prefetch_locked(struct kvt_store *st, struct cache_rec *c,
			   uint32_t layer, const uint32_t *blocks, size_t n,
			   uint8_t *where)
{
	uint32_t bt = c->cfg.shape.block_tokens;
	uint64_t nt = c->layers[layer].n_tokens, full = nt / bt;
	uint64_t nb = (nt + bt - 1) / bt;
	struct kvt_block_key *keys = malloc((n ? n : 1) * sizeof *keys);
	size_t *pos = malloc((n ? n : 1) * sizeof *pos);
	size_t m = 0;
	int rc = keys && pos ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (blocks[i] >= nb)
			rc = KVT_ENOTFOUND;
		else if (blocks[i] >= full && where) /* the tail, in memory */
			where[i] = KVT_TIER_HOST;
		else if (blocks[i] < full)
			keys[m] = (struct kvt_block_key){c->id, layer, blocks[i]},
			pos[m++] = i;
	}
	uint8_t *w = rc == 0 && where ? malloc(m ? m : 1) : NULL;
	if (rc == 0 && where && !w)
		rc = -ENOMEM;
	if (rc == 0)
		rc = kvt_blocks_prefetch_locked(st, keys, m, w);
	for (size_t j = 0; rc == 0 && w && j < m; j++)
		where[pos[j]] = w[j];
	free(w);
	free(keys);
	free(pos);
	return rc;
}

int kvt_cache_prefetch(struct kvt_cache *cache, uint32_t layer,
		       const uint32_t *blocks, size_t n, uint8_t *where)
{
	if (!cache || (!blocks && n) || layer >= cache->rec->cfg.shape.n_layers)
		return -EINVAL;
	struct kvt_store *st = cache->st;
	pthread_mutex_lock(&st->lock);
	int rc = prefetch_locked(st, cache->rec, layer, blocks, n, where);
	pthread_mutex_unlock(&st->lock);
	return rc;
}
