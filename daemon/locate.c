/* locate.c - placeholder until the store exposes block locations. */
#include <errno.h>

#include "locate.h"

int kvt_daemon_locate(struct kvt_cache *cache, uint32_t layer, uint64_t block,
		      struct kvt_block_loc *loc, struct kvt_block_meta *meta)
{
	(void)cache;
	(void)layer;
	(void)block;
	(void)loc;
	(void)meta;
	return -ENOTSUP;
}
