/* gpu_none.c - the GPU tier of a build without CUDA: always absent. */
#include "gpu_tier.h"

int kvt_gpu_tier_create(uint64_t budget, struct kvt_tier **out)
{
	(void)budget;
	(void)out;
	return KVT_ENOGPU;
}

int kvt_gpu_tier_reload(struct kvt_tier *gpu, size_t n,
			const struct kvt_block_key *keys,
			const void *const *srcs,
			const struct kvt_block_meta *metas,
			const struct kvt_block_codecs *cd, struct kvt_stream *s)
{
	(void)gpu, (void)n, (void)keys, (void)srcs, (void)metas, (void)cd;
	(void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_tier_reload_poll(struct kvt_tier *gpu)
{
	(void)gpu;
	return KVT_ENOGPU;
}

int kvt_gpu_tier_reload_wait(struct kvt_tier *gpu, int *results)
{
	(void)gpu, (void)results;
	return KVT_ENOGPU;
}

int kvt_gpu_tier_spill(struct kvt_tier *gpu, size_t n,
		       const struct kvt_block_key *keys, void *const *dsts,
		       const struct kvt_kivi_geom *geom, struct kvt_stream *s)
{
	(void)gpu, (void)n, (void)keys, (void)dsts, (void)geom, (void)s;
	return KVT_ENOGPU;
}

int kvt_gpu_tier_alloc(struct kvt_tier *gpu, size_t n,
		       const struct kvt_block_key *keys,
		       const struct kvt_block_meta *metas, void **addrs)
{
	(void)gpu, (void)n, (void)keys, (void)metas, (void)addrs;
	return KVT_ENOGPU;
}
