/*
 * retrieve.h - block selection for kvtierd's RETRIEVE op.
 *
 * Like locate.h, provided by whoever links the server: kvtierd links
 * retrieve.c over the real store and retrieval index; the daemon tests'
 * stand-in store answers -ENOTSUP.
 */
#ifndef KVTIER_DAEMON_RETRIEVE_H
#define KVTIER_DAEMON_RETRIEVE_H

#include "kvtier/kvtier.h"
#include "kvtier/retrieval.h"

/*
 * kvt_retrieve on the index of an open cache. *index is the caller's slot
 * for it (NULL at first): on first use it is loaded from the cache's
 * metadata or built from its keys (also when the stored one is damaged,
 * of another version or shape, or not this cache's: the index is derived
 * data); every call first indexes tokens appended since. Errors: those of kvt_retrieve, kvt_rindex_open and
 * kvt_rindex_update_from_cache; -ENOTSUP without retrieval support.
 */
int kvt_daemon_retrieve(struct kvt_cache *cache, struct kvt_rindex **index,
			uint32_t layer, const struct kvt_retrieve_params *p,
			const float *q, struct kvt_selection *out);

/* Releases an index kvt_daemon_retrieve made (NULL is a no-op). */
void kvt_daemon_retrieve_free(struct kvt_rindex *index);

#endif
