/*
 * loc_cache.h - the client's memory of where shared blocks live (internal).
 *
 * Once the daemon has said that a full raw block sits at (region, offset)
 * of its host arena with a given checksum, the client can read it again
 * without a round trip: it copies the bytes and accepts them only if they
 * still match the checksum. A mismatch (the block moved or its slot was
 * reused) drops the entry and the client asks the daemon again. Blocks are
 * immutable once full, so matching bytes are the block's bytes.
 */
#ifndef KVTIER_DAEMON_LOC_CACHE_H
#define KVTIER_DAEMON_LOC_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct kvt_loc_entry {
	uint64_t key;      /* kvt_loc_key() + 1; 0 marks an empty slot */
	uint64_t offset;
	uint64_t checksum;
	uint32_t region;   /* 0: forgotten */
	uint32_t len;
	uint32_t n_tokens;
};

struct kvt_loc_cache {
	struct kvt_loc_entry *slots;
	size_t cap;        /* power of two, or 0 */
	size_t used;       /* occupied slots, forgotten ones included */
};

#define KVT_LOC_CACHE_MAX (1u << 20) /* entries; cleared when reached */

static inline uint64_t kvt_loc_key(uint32_t layer, uint64_t block)
{
	return ((uint64_t)layer << 40) | (block & ((1ull << 40) - 1));
}

/* The entry of key, or NULL. */
const struct kvt_loc_entry *kvt_loc_cache_get(const struct kvt_loc_cache *c,
					      uint64_t key);

/* Remembers e under key (e->key is set here). Returns 0 or -ENOMEM (the
 * cache is then unchanged; it is only an optimisation). */
int kvt_loc_cache_put(struct kvt_loc_cache *c, uint64_t key,
		      const struct kvt_loc_entry *e);

/* Forgets key (no-op when absent). */
void kvt_loc_cache_forget(struct kvt_loc_cache *c, uint64_t key);

void kvt_loc_cache_free(struct kvt_loc_cache *c);

#endif
