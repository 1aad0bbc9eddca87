/* checksum.h - the one block checksum of kvtier: XXH3-64 (internal). */
#ifndef KVTIER_COMMON_CHECKSUM_H
#define KVTIER_COMMON_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

static inline uint64_t kvt_checksum(const void *data, size_t len)
{
	return (uint64_t)XXH3_64bits(data, len);
}

#endif
