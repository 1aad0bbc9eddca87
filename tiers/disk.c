/* disk.c - placeholder: the disk tier is not implemented yet. */
#include <errno.h>

#include "tier.h"

int kvt_disk_tier_create(const char *dir, uint64_t budget, int zstd_level,
			 struct kvt_tier **out)
{
	(void)dir;
	(void)budget;
	(void)zstd_level;
	(void)out;
	return -ENOSYS;
}
