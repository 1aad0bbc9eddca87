/* factory_host.c - the host tier under the contract suite. */
#include "contract.h"

int contract_tier_open(const char *dir, uint64_t budget, struct kvt_tier **out)
{
	(void)dir;
	return kvt_host_tier_create(budget, out);
}

int contract_tier_persistent(void)
{
	return 0;
}
