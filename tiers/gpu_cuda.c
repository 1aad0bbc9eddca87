/* gpu_cuda.c - placeholder until the CUDA GPU tier lands. */
#include "tier.h"

int kvt_gpu_tier_create(uint64_t budget, struct kvt_tier **out)
{
	(void)budget;
	(void)out;
	return KVT_ENOGPU;
}
