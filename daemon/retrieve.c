/* retrieve.c - kvt_daemon_retrieve over the real store and retrieval index. */
#include "retrieve.h"

static int index_of(struct kvt_cache *cache, struct kvt_rindex **index)
{
	if (*index)
		return kvt_rindex_update_from_cache(*index, cache);
	int rc = kvt_rindex_open(cache, index);
	/* The index is derived data: one that is missing or unusable is built
	 * again from the keys rather than failing every request. */
	if (rc == KVT_ENOTFOUND || rc == KVT_ECORRUPT || rc == KVT_EFORMAT ||
	    rc == KVT_EVERSION || rc == KVT_ESHAPE)
		return kvt_rindex_build_from_cache(cache, NULL, index);
	if (rc == 0 && (rc = kvt_rindex_update_from_cache(*index, cache))) {
		kvt_rindex_free(*index);
		*index = NULL;
		if (rc == KVT_ECORRUPT) /* made for another cache */
			rc = kvt_rindex_build_from_cache(cache, NULL, index);
	}
	return rc;
}

int kvt_daemon_retrieve(struct kvt_cache *cache, struct kvt_rindex **index,
			uint32_t layer, const struct kvt_retrieve_params *p,
			const float *q, struct kvt_selection *out)
{
	int rc = index_of(cache, index);
	return rc ? rc : kvt_retrieve(*index, layer, p, q, out);
}

void kvt_daemon_retrieve_free(struct kvt_rindex *index)
{
	kvt_rindex_free(index);
}
