/*
 * hmap.h - open-addressing hash map from a 16-byte key to a uint32 value
 * (an index into the caller's own record array). Linear probing, backward-
 * shift deletion, grows at 70% load. Not thread-safe.
 */
#ifndef KVTIER_COMMON_HMAP_H
#define KVTIER_COMMON_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct kvt_hkey {
	uint64_t a, b;
};

struct kvt_hmap {
	struct kvt_hslot *slots; /* cap entries */
	size_t cap;              /* power of two, or 0 */
	size_t n;
};

/* Zero-initialised struct kvt_hmap is an empty map. */
void kvt_hmap_free(struct kvt_hmap *m);

/* Inserts or replaces. Returns 0 or -ENOMEM (map unchanged). */
int kvt_hmap_put(struct kvt_hmap *m, struct kvt_hkey k, uint32_t v);

/* Returns 0 and *v, or KVT_ENOTFOUND. */
int kvt_hmap_get(const struct kvt_hmap *m, struct kvt_hkey k, uint32_t *v);

/* Removes k. Returns 0 or KVT_ENOTFOUND. */
int kvt_hmap_del(struct kvt_hmap *m, struct kvt_hkey k);

#endif
