/*
 * store_locate.h - zero-copy access to stored blocks, for kvtierd.
 *
 * Not part of the public API: the daemon shares host-tier arenas (memfds)
 * with its clients and answers reads with (fd, offset, len).
 */
#ifndef KVTIER_STORE_LOCATE_H
#define KVTIER_STORE_LOCATE_H

#include <stdint.h>

#include "kvtier/kvtier.h"
#include "tier.h"

/*
 * Fills *loc (loc->fd is borrowed from the store: do not close it) and
 * *meta for full block `block` of `layer` when it is a raw block held by
 * the host tier. The location stays valid until the block is replaced
 * (re-encoded cold, demoted) or deleted; readers verify meta->checksum.
 * Errors: -ENOTSUP (quantized, on disk, or the in-memory tail: read it with
 * kvt_cache_read_block instead), KVT_ENOTFOUND, -EINVAL.
 */
int kvt_store_locate_block(struct kvt_cache *cache, uint32_t layer,
			   uint64_t block, struct kvt_block_loc *loc,
			   struct kvt_block_meta *meta);

#endif
