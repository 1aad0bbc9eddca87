/* host.c - placeholder: the host tier is not implemented yet. */
#include <errno.h>

#include "tier.h"

int kvt_host_tier_create(uint64_t budget, struct kvt_tier **out)
{
	(void)budget;
	(void)out;
	return -ENOSYS;
}
