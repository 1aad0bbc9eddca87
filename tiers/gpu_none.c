/* gpu_none.c - the GPU tier of a build without CUDA: always absent. */
#include "tier.h"

int kvt_gpu_tier_create(uint64_t budget, struct kvt_tier **out)
{
	(void)budget;
	(void)out;
	return KVT_ENOGPU;
}
