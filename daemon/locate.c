/* locate.c - kvt_daemon_locate over the real store (store_locate.h). */
#include "locate.h"
#include "store_locate.h"

int kvt_daemon_locate(struct kvt_cache *cache, uint32_t layer, uint64_t block,
		      struct kvt_block_loc *loc, struct kvt_block_meta *meta)
{
	return kvt_store_locate_block(cache, layer, block, loc, meta);
}
