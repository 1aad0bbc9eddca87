/* config.c - defaults of the public configuration structs (shared by the
 * store and the client library). */
#include <string.h>

#include "kvtier/kvtier.h"

void kvt_store_config_init(struct kvt_store_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->host_bytes = 1ull << 30;
	cfg->gpu_recent = 1;
}

void kvt_cache_config_init(struct kvt_cache_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->shape.block_tokens = 16;
	cfg->shape.dtype = KVT_DTYPE_F16;
	cfg->cold.id = KVT_CODEC_RAW;
	cfg->recent_tokens = 128;
}
