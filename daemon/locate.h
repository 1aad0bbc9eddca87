/*
 * locate.h - where a stored block's bytes live, for zero-copy sharing.
 *
 * kvtierd shares host-tier blocks by passing the host arena's memfd to the
 * client and replying with (region, offset, len). Blocks on the disk tier
 * (or a partial tail block held by the store) are not addressable and are
 * copied into the client's staging memfd instead.
 *
 * GPU hook: a block whose home is the GPU tier would be exported here with
 * a CUDA IPC handle (cudaIpcGetMemHandle on the tier's pool + offset) and a
 * region kind of its own; that path is not implemented, such blocks are
 * reported as not addressable and take the staging copy.
 */
#ifndef KVTIER_DAEMON_LOCATE_H
#define KVTIER_DAEMON_LOCATE_H

#include <stdint.h>

#include "kvtier/kvtier.h"
#include "tier.h"

/*
 * Fills *loc (loc->fd borrowed from the tier: do not close it) and *meta
 * for block `block` of `layer` when it lives in an addressable host tier.
 * Errors: -ENOTSUP (not addressable: use a copy), KVT_ENOTFOUND, -EINVAL.
 */
int kvt_daemon_locate(struct kvt_cache *cache, uint32_t layer, uint64_t block,
		      struct kvt_block_loc *loc, struct kvt_block_meta *meta);

#endif
