/* factory_gpu.c - the GPU tier under the contract suite (skipped without a
 * device: the suite skips on KVT_ENOGPU). */
#include "contract.h"

int contract_tier_open(const char *dir, uint64_t budget, struct kvt_tier **out)
{
	(void)dir;
	return kvt_gpu_tier_create(budget, out);
}

int contract_tier_persistent(void)
{
	return 0;
}
