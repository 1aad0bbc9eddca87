/* factory_disk.c - the disk tier under the contract suite (zstd on, so the
 * compressed path is covered too). */
#include "contract.h"

int contract_tier_open(const char *dir, uint64_t budget, struct kvt_tier **out)
{
	return kvt_disk_tier_create(dir, budget, 1, out);
}

int contract_tier_persistent(void)
{
	return 1;
}
